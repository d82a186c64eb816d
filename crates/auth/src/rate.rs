//! Rate limits: token buckets for messages and bytes, per connection and the
//! rule for when a client that keeps ignoring `rate_limited` is closed, and
//! [`KeyedLimiter`], the same budgets shared by everything with one key (all
//! sessions of one user, all connect-proxy calls from one address).
//!
//! Time is passed in, never read here, so the rules are tested exactly (and
//! a session on a paused tokio clock sees paused time).

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};
use std::sync::Mutex;
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

    /// [`check`](Self::check) with a second, shared budget: the message is
    /// allowed only if this connection's buckets have room and `shared`
    /// (charging the user's budget, say) allows it too; a refusal by either
    /// is a strike, and a refused message costs neither.
    pub fn check_with(
        &mut self,
        len: usize,
        now: Instant,
        shared: impl FnOnce() -> bool,
    ) -> Verdict {
        let msg_ok = self.messages.clone().take(1.0, now);
        let bytes_ok = self.bytes.clone().take(len as f64, now);
        if msg_ok && bytes_ok && shared() {
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
        pair_wait(&self.messages, &self.bytes, len)
    }
}

/// How long until both buckets have room for one message of `len` bytes.
fn pair_wait(messages: &TokenBucket, bytes: &TokenBucket, len: usize) -> Duration {
    let wait = |b: &TokenBucket, cost: f64| {
        if b.rate <= 0.0 {
            return 0.0;
        }
        ((cost.min(b.burst) - b.tokens).max(0.0)) / b.rate
    };
    Duration::from_secs_f64(wait(messages, 1.0).max(wait(bytes, len as f64)))
}

/// The budgets a [`KeyedLimiter`] gives each key.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KeyedLimits {
    /// Messages (or calls) per second per key; 0 = unlimited.
    pub messages_per_sec: f64,
    /// Message burst above the rate.
    pub message_burst: f64,
    /// Bytes per second per key; 0 = unlimited.
    pub bytes_per_sec: f64,
    /// Byte burst above the rate.
    pub byte_burst: f64,
    /// Keys tracked at most (at least one per shard). A key that finds its
    /// shard full of active keys is not tracked, and so limited only by
    /// whatever other bounds apply to it.
    pub max_keys: usize,
}

/// One key's buckets and when it last spent from them.
#[derive(Debug, Clone)]
struct KeyEntry {
    messages: TokenBucket,
    bytes: TokenBucket,
    last: Instant,
}

/// Shards of the key table: sessions of different users rarely wait for
/// one another.
const SHARDS: usize = 16;

/// One shard: its keys, and when idle ones were last swept out.
#[derive(Debug)]
struct Shard<K> {
    keys: HashMap<K, KeyEntry>,
    swept: Option<Instant>,
}

/// Message and byte budgets per key (a user id, a remote address), shared by
/// everyone presenting that key, in bounded memory.
///
/// An entry whose buckets have refilled completely is the same as no entry,
/// so idle keys are dropped (when a shard fills up, at most once per refill
/// period) and the table holds only keys active within the last refill
/// period, at most [`KeyedLimits::max_keys`] of them.
#[derive(Debug)]
pub struct KeyedLimiter<K> {
    limits: KeyedLimits,
    /// Time after which an unused entry is full again.
    idle: Duration,
    per_shard: usize,
    hasher: std::collections::hash_map::RandomState,
    shards: Box<[Mutex<Shard<K>>]>,
}

/// A keyed limiter's refusal: how long until the key may go on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryAfter(pub Duration);

impl<K: Hash + Eq + Clone> KeyedLimiter<K> {
    /// An empty table.
    pub fn new(limits: KeyedLimits) -> KeyedLimiter<K> {
        let refill = |burst: f64, rate: f64| {
            if rate > 0.0 {
                burst.max(1.0) / rate
            } else {
                0.0
            }
        };
        let idle = refill(limits.message_burst, limits.messages_per_sec)
            .max(refill(limits.byte_burst, limits.bytes_per_sec));
        KeyedLimiter {
            limits,
            idle: Duration::from_secs_f64(idle.min(86_400.0)),
            per_shard: limits.max_keys.div_ceil(SHARDS).max(1),
            hasher: Default::default(),
            shards: (0..SHARDS)
                .map(|_| {
                    Mutex::new(Shard {
                        keys: HashMap::new(),
                        swept: None,
                    })
                })
                .collect(),
        }
    }

    /// Whether any limit is set (else [`check`](Self::check) always allows).
    pub fn is_on(&self) -> bool {
        self.limits.messages_per_sec > 0.0 || self.limits.bytes_per_sec > 0.0
    }

    /// Charges one message of `len` bytes to `key`: both buckets or neither.
    pub fn check(&self, key: &K, len: usize, now: Instant) -> Result<(), RetryAfter> {
        if !self.is_on() {
            return Ok(());
        }
        let shard = &self.shards[(self.hasher.hash_one(key) as usize) % SHARDS];
        // A poisoned lock only means another thread panicked mid-update of
        // a few floats: the table is still usable.
        let mut shard = shard.lock().unwrap_or_else(|p| p.into_inner());
        if !shard.keys.contains_key(key) && shard.keys.len() >= self.per_shard {
            let due = shard
                .swept
                .is_none_or(|at| now.saturating_duration_since(at) >= self.idle);
            if due {
                let idle = self.idle;
                shard
                    .keys
                    .retain(|_, e| now.saturating_duration_since(e.last) < idle);
                shard.swept = Some(now);
            }
            if shard.keys.len() >= self.per_shard {
                return Ok(());
            }
        }
        let l = self.limits;
        let entry = shard.keys.entry(key.clone()).or_insert_with(|| KeyEntry {
            messages: TokenBucket::new(l.messages_per_sec, l.message_burst, now),
            bytes: TokenBucket::new(l.bytes_per_sec, l.byte_burst, now),
            last: now,
        });
        entry.last = now;
        let msg_ok = entry.messages.clone().take(1.0, now);
        let bytes_ok = entry.bytes.clone().take(len as f64, now);
        if msg_ok && bytes_ok {
            entry.messages.take(1.0, now);
            entry.bytes.take(len as f64, now);
            Ok(())
        } else {
            Err(RetryAfter(pair_wait(&entry.messages, &entry.bytes, len)))
        }
    }

    /// Keys tracked now.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).keys.len())
            .sum()
    }

    /// Whether no key is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
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

    const KEYED: KeyedLimits = KeyedLimits {
        messages_per_sec: 10.0,
        message_burst: 20.0,
        bytes_per_sec: 0.0,
        byte_burst: 0.0,
        max_keys: 32,
    };

    #[test]
    fn a_key_shares_one_budget_and_other_keys_have_their_own() {
        let t0 = Instant::now();
        let k = KeyedLimiter::<String>::new(KEYED);
        let alice = "alice".to_owned();
        assert_eq!(
            (0..30).filter(|_| k.check(&alice, 1, t0).is_ok()).count(),
            20
        );
        let refused = k.check(&alice, 1, t0).expect_err("over");
        assert!(refused.0 >= Duration::from_millis(99), "{refused:?}");
        assert!(k.check(&"bob".to_owned(), 1, t0).is_ok());
        // The rate refills it.
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(
            (0..30).filter(|_| k.check(&alice, 1, t1).is_ok()).count(),
            10
        );
    }

    #[test]
    fn keyed_bytes_are_limited_and_a_refusal_costs_nothing() {
        let t0 = Instant::now();
        let k = KeyedLimiter::<u32>::new(KeyedLimits {
            bytes_per_sec: 100.0,
            byte_burst: 100.0,
            ..KEYED
        });
        assert!(k.check(&1, 90, t0).is_ok());
        assert!(k.check(&1, 20, t0).is_err());
        // The refused message took no message token.
        assert_eq!((0..30).filter(|_| k.check(&1, 0, t0).is_ok()).count(), 19);
    }

    #[test]
    fn idle_keys_are_dropped_and_the_table_is_bounded() {
        let t0 = Instant::now();
        let k = KeyedLimiter::<u32>::new(KEYED);
        // Far more keys than the table holds, all active at once: the
        // table stays at its bound, and keys past it are let through.
        for key in 0..10_000 {
            assert!(k.check(&key, 1, t0).is_ok());
        }
        assert!(k.len() <= SHARDS * 2, "{}", k.len());
        // Once refilled (20 / 10 per s = 2 s), idle keys make room: a new
        // key is tracked, and limited.
        let t1 = t0 + Duration::from_secs(3);
        let fresh = 20_000;
        assert_eq!(
            (0..30).filter(|_| k.check(&fresh, 1, t1).is_ok()).count(),
            20
        );
        assert!(k.len() <= SHARDS * 2);
    }

    #[test]
    fn connection_and_shared_budgets_both_bind() {
        let t0 = Instant::now();
        let mut l = RateLimiter::new(LIMITS, t0);
        // The shared budget refuses: a strike, and the connection's budget
        // is not charged.
        for _ in 0..4 {
            assert_eq!(l.check_with(1, t0, || false), Verdict::Refuse);
        }
        assert_eq!(l.check_with(1, t0, || false), Verdict::Close);
        let mut l = RateLimiter::new(LIMITS, t0);
        assert_eq!(
            (0..25)
                .filter(|_| l.check_with(1, t0, || true) == Verdict::Allow)
                .count(),
            20
        );
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
