//! Per-connection rate limits: token buckets for messages and bytes, and the
//! rule for when a client that keeps ignoring `rate_limited` is closed.
//!
//! Time is passed in, never read here, so the rules are tested exactly (and
//! a session on a paused tokio clock sees paused time).

use std::time::{Duration, Instant};

/// A token bucket: `rate` tokens per second, holding at most `burst`.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket. A `rate` of 0 means unlimited.
    pub fn new(rate: f64, burst: f64, now: Instant) -> TokenBucket {
        TokenBucket {
            rate,
            burst: burst.max(1.0),
            tokens: burst.max(1.0),
            last: now,
        }
    }

    /// Takes `cost` tokens if there are enough; a cost above the whole burst
    /// is allowed from a full bucket (one oversized but legal message must
    /// not be refused forever).
    pub fn take(&mut self, cost: f64, now: Instant) -> bool {
        if self.rate <= 0.0 {
            return true;
        }
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        let cost = cost.min(self.burst);
        if self.tokens >= cost {
            self.tokens -= cost;
            true
        } else {
            false
        }
    }
}

/// Limits for one connection.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimits {
    /// Messages (data and control frames) per second; 0 = unlimited.
    pub messages_per_sec: f64,
    /// Message burst above the rate.
    pub message_burst: f64,
    /// Inbound payload bytes per second; 0 = unlimited.
    pub bytes_per_sec: f64,
    /// Byte burst above the rate.
    pub byte_burst: f64,
    /// Consecutive refused messages after which the connection is closed.
    pub max_strikes: u32,
}

/// What to do with one inbound message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Within the limits.
    Allow,
    /// Over a limit: answer `rate_limited`, drop the message.
    Refuse,
    /// Over a limit for `max_strikes` messages in a row: close (1008).
    Close,
}

/// Both buckets and the strike count of one connection.
#[derive(Debug, Clone)]
pub struct RateLimiter {
    messages: TokenBucket,
    bytes: TokenBucket,
    strikes: u32,
    max_strikes: u32,
}

impl RateLimiter {
    /// A limiter with full buckets.
    pub fn new(l: RateLimits, now: Instant) -> RateLimiter {
        RateLimiter {
            messages: TokenBucket::new(l.messages_per_sec, l.message_burst, now),
            bytes: TokenBucket::new(l.bytes_per_sec, l.byte_burst, now),
            strikes: 0,
            max_strikes: l.max_strikes.max(1),
        }
    }

    /// Accounts one inbound message of `len` payload bytes.
    pub fn check(&mut self, len: usize, now: Instant) -> Verdict {
        // Both buckets are charged only when both have room, so a refused
        // message costs nothing.
        let msg_ok = self.messages.clone().take(1.0, now);
        let bytes_ok = self.bytes.clone().take(len as f64, now);
        if msg_ok && bytes_ok {
            self.messages.take(1.0, now);
            self.bytes.take(len as f64, now);
            self.strikes = 0;
            return Verdict::Allow;
        }
        self.strikes += 1;
        if self.strikes >= self.max_strikes {
            Verdict::Close
        } else {
            Verdict::Refuse
        }
    }

    /// How long until one more message of `len` bytes would be allowed: a
    /// hint for the client (`retry_after_ms`).
    pub fn retry_after(&self, len: usize) -> Duration {
        let wait = |b: &TokenBucket, cost: f64| {
            if b.rate <= 0.0 {
                return 0.0;
            }
            ((cost.min(b.burst) - b.tokens).max(0.0)) / b.rate
        };
        Duration::from_secs_f64(wait(&self.messages, 1.0).max(wait(&self.bytes, len as f64)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: RateLimits = RateLimits {
        messages_per_sec: 10.0,
        message_burst: 20.0,
        bytes_per_sec: 1000.0,
        byte_burst: 2000.0,
        max_strikes: 5,
    };

    #[test]
    fn burst_then_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10.0, 20.0, t0);
        assert_eq!((0..25).filter(|_| b.take(1.0, t0)).count(), 20);
        // 0.5 s later: 5 more.
        let t1 = t0 + Duration::from_millis(500);
        assert_eq!((0..10).filter(|_| b.take(1.0, t1)).count(), 5);
        // Refills never exceed the burst.
        let t2 = t1 + Duration::from_secs(3600);
        assert_eq!((0..100).filter(|_| b.take(1.0, t2)).count(), 20);
    }

    #[test]
    fn zero_rate_is_unlimited() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(0.0, 1.0, t0);
        assert!((0..10_000).all(|_| b.take(1.0, t0)));
    }

    #[test]
    fn refusals_escalate_to_close_and_reset_on_success() {
        let t0 = Instant::now();
        let mut l = RateLimiter::new(LIMITS, t0);
        for _ in 0..20 {
            assert_eq!(l.check(10, t0), Verdict::Allow);
        }
        for _ in 0..4 {
            assert_eq!(l.check(10, t0), Verdict::Refuse);
        }
        assert!(l.retry_after(10) >= Duration::from_millis(99));
        // One allowed message resets the strikes.
        let t1 = t0 + Duration::from_millis(100);
        assert_eq!(l.check(10, t1), Verdict::Allow);
        for _ in 0..4 {
            assert_eq!(l.check(10, t1), Verdict::Refuse);
        }
        assert_eq!(l.check(10, t1), Verdict::Close);
    }

    #[test]
    fn bytes_are_limited_too_and_refusals_cost_nothing() {
        let t0 = Instant::now();
        let mut l = RateLimiter::new(LIMITS, t0);
        assert_eq!(l.check(1500, t0), Verdict::Allow);
        assert_eq!(l.check(600, t0), Verdict::Refuse);
        // The refused message took no message token: 19 small ones remain.
        assert_eq!(
            (0..25).filter(|_| l.check(1, t0) == Verdict::Allow).count(),
            19
        );
    }
}
