//! Retry delays with full jitter: attempt `n` waits a uniform time in
//! `[base/2, min(cap, base * 2^n)]`, so receivers that come back are not hit
//! by every node at the same instant, and no retry fires at once.

use rand::Rng;
use std::time::Duration;

/// The delay before retry number `attempt` (0-based).
pub fn delay(base: Duration, cap: Duration, attempt: u32) -> Duration {
    let ceiling = base.saturating_mul(1u32 << attempt.min(20)).min(cap);
    let hi = u64::try_from(ceiling.as_millis())
        .unwrap_or(u64::MAX)
        .max(1);
    let lo = (u64::try_from(base.as_millis()).unwrap_or(0) / 2).min(hi);
    Duration::from_millis(rand::rng().random_range(lo..=hi))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_to_the_cap_and_never_below_half_the_base() {
        let (base, cap) = (Duration::from_millis(100), Duration::from_secs(2));
        for attempt in 0..30 {
            let d = delay(base, cap, attempt);
            assert!(d >= Duration::from_millis(50), "{d:?}");
            assert!(d <= cap, "{d:?}");
        }
        assert!(delay(base, cap, 0) <= base);
    }
}
