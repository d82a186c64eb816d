//! Exponential backoff with full jitter ("AWS architecture blog" style): the
//! delay before attempt `n` is uniform in `[0, min(cap, base * 2^n)]`. Full
//! jitter spreads a herd of reconnecting nodes or clients evenly instead of in
//! synchronized waves.

use rand::Rng;
use std::time::Duration;

/// Backoff state for one reconnect loop.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    attempt: u32,
}

impl Backoff {
    /// A backoff starting at `base` and never exceeding `cap`.
    pub fn new(base: Duration, cap: Duration) -> Self {
        Backoff {
            base,
            cap,
            attempt: 0,
        }
    }

    /// The next delay; grows until a [`reset`](Self::reset).
    pub fn next_delay(&mut self) -> Duration {
        let exp = self
            .base
            .saturating_mul(1u32 << self.attempt.min(20))
            .min(self.cap);
        self.attempt = self.attempt.saturating_add(1);
        let max_ms = u64::try_from(exp.as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(rand::rng().random_range(0..=max_ms))
    }

    /// The ceiling the next delay is drawn under (for logs).
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// Back to the first step after a success.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

impl Default for Backoff {
    /// 100 ms base, 10 s cap.
    fn default() -> Self {
        Backoff::new(Duration::from_millis(100), Duration::from_secs(10))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_and_caps() {
        let mut b = Backoff::new(Duration::from_millis(10), Duration::from_millis(100));
        for i in 0..10 {
            let d = b.next_delay();
            let ceiling = (10u64 << i).min(100);
            assert!(d <= Duration::from_millis(ceiling), "{i}: {d:?}");
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(10));
    }
}
