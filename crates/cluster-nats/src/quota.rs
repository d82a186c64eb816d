//! Each owner's share of the durable store on NATS
//! ([`Retention::max_user_bytes`]).
//!
//! JetStream counts bytes per stream, not per sender, so the usage of every
//! owner is kept in a KV bucket, `{ns}_usage`, one key per owner (the escaped
//! owner id). The value is the bytes the owner appended, grouped into time
//! slots of an eighth of the retention age (`slot:bytes` pairs, ASCII).
//!
//! An append first charges its cost ([`entry_cost`]) with a revision-checked
//! update of the owner's key, refusing with [`ClusterError::QuotaExceeded`]
//! when the owner's total would pass the quota; the charge is given back
//! when the append did not store anything (a duplicate, or a failure).
//! Every node of a namespace shares the bucket, so the quota holds across
//! the cluster, and racing appends of one owner serialise on the revision.
//!
//! Give-back is by age: JetStream drops every message at the latest
//! `max_age` after it was stored, so a slot's bytes are given back once the
//! slot ended `max_age` (plus a second of slack for JetStream's expiry
//! timer) ago. Entries trimmed earlier by the per-stream length limit stay
//! counted until then. The usage therefore never counts less than what the
//! owner still holds in the store (up to clock skew between nodes): an owner
//! can be refused somewhat early, never let past its share. With no
//! retention age (entries kept until trimmed), usage is never given back
//! except on refusal or duplicates.
//!
//! What this costs: a record has at most [`MAX_SLOTS`] slots (older ones
//! are folded into the next, which only delays their give-back); keys
//! expire with the bucket's `max_age` (the retention age plus one slot and
//! the slack) once the owner stops appending; the bucket is bounded by
//! `max_bytes` like the store. Nothing is cached in the process. Every call
//! goes through the JetStream context, whose requests time out.

use async_nats::Client;
use async_nats::jetstream::kv::{
    self, CreateErrorKind, EntryErrorKind, Operation, UpdateErrorKind,
};
use bytes::Bytes;
use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tracing::{debug, warn};
use wsring_cluster::{ClusterError, Retention};

use crate::connect::fail;
use crate::names::{kv_key, usage_bucket};
use crate::setup::{context, ensure_kv};

/// Slots per retention age: the finer, the sooner aged bytes come back.
const SLOTS_PER_AGE: u64 = 8;
/// Most slots kept in one record (the live ones, plus a few written by nodes
/// whose clocks run ahead).
pub(crate) const MAX_SLOTS: usize = 16;
/// Extra time before a slot's bytes are given back, covering JetStream's
/// expiry timer running a little after `max_age`.
const EXPIRY_SLACK_MS: u64 = 1000;
/// Compare-and-set rounds before a busy owner key reports contention.
const CAS_ROUNDS: u32 = 32;

/// Bytes per time slot of one owner.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Usage {
    /// `(slot, bytes)`, slots ascending and distinct.
    slots: Vec<(u64, u64)>,
}

impl Usage {
    /// Decodes `slot:bytes` pairs separated by spaces; malformed pairs are
    /// skipped (the bucket is written by wsring only).
    pub(crate) fn decode(raw: &[u8]) -> Usage {
        let mut u = Usage::default();
        let text = std::str::from_utf8(raw).unwrap_or("");
        for pair in text.split_ascii_whitespace() {
            if let Some((s, b)) = pair.split_once(':')
                && let (Ok(s), Ok(b)) = (s.parse::<u64>(), b.parse::<u64>())
            {
                u.add(s, b);
            }
        }
        u.fold();
        u
    }

    pub(crate) fn encode(&self) -> Bytes {
        let mut out = String::new();
        for (s, b) in &self.slots {
            if !out.is_empty() {
                out.push(' ');
            }
            let _ = write!(out, "{s}:{b}");
        }
        Bytes::from(out)
    }

    pub(crate) fn total(&self) -> u64 {
        self.slots
            .iter()
            .fold(0u64, |acc, (_, b)| acc.saturating_add(*b))
    }

    pub(crate) fn add(&mut self, slot: u64, bytes: u64) {
        match self.slots.binary_search_by_key(&slot, |(s, _)| *s) {
            Ok(i) => self.slots[i].1 = self.slots[i].1.saturating_add(bytes),
            Err(i) => self.slots.insert(i, (slot, bytes)),
        }
        self.fold();
    }

    /// Takes back up to `bytes` from `slot` (nothing if that slot was
    /// already given back or folded away).
    pub(crate) fn sub(&mut self, slot: u64, bytes: u64) {
        if let Ok(i) = self.slots.binary_search_by_key(&slot, |(s, _)| *s) {
            self.slots[i].1 = self.slots[i].1.saturating_sub(bytes);
            if self.slots[i].1 == 0 {
                self.slots.remove(i);
            }
        }
    }

    /// Drops the slots for which `expired` holds.
    pub(crate) fn prune(&mut self, expired: impl Fn(u64) -> bool) {
        self.slots.retain(|(s, _)| !expired(*s));
    }

    /// Keeps at most [`MAX_SLOTS`]: the oldest are counted in the next one,
    /// which is given back later, never sooner.
    fn fold(&mut self) {
        while self.slots.len() > MAX_SLOTS {
            let (_, b) = self.slots.remove(0);
            self.slots[0].1 = self.slots[0].1.saturating_add(b);
        }
    }
}

/// Time slots of one retention age.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Clock {
    /// Slot length in ms; 0 when there is no retention age (one slot, never
    /// given back by age).
    slot_ms: u64,
    /// The retention age in ms.
    age_ms: u64,
}

impl Clock {
    pub(crate) fn new(max_age: Duration) -> Clock {
        let age_ms = u64::try_from(max_age.as_millis()).unwrap_or(u64::MAX);
        let slot_ms = if age_ms == 0 {
            0
        } else {
            (age_ms / SLOTS_PER_AGE).max(1)
        };
        Clock { slot_ms, age_ms }
    }

    /// The slot of `now_ms`.
    pub(crate) fn slot(&self, now_ms: u64) -> u64 {
        now_ms.checked_div(self.slot_ms).unwrap_or(0)
    }

    /// Whether every entry appended during `slot` has aged out by `now_ms`.
    pub(crate) fn expired(&self, slot: u64, now_ms: u64) -> bool {
        if self.slot_ms == 0 {
            return false;
        }
        let end = slot.saturating_add(1).saturating_mul(self.slot_ms);
        end.saturating_add(self.age_ms)
            .saturating_add(EXPIRY_SLACK_MS)
            <= now_ms
    }

    /// How long an owner's record must outlive its last write.
    fn record_age(&self) -> Duration {
        if self.slot_ms == 0 {
            return Duration::ZERO;
        }
        Duration::from_millis(
            self.age_ms
                .saturating_add(self.slot_ms)
                .saturating_add(EXPIRY_SLACK_MS),
        )
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// What one append charged, to give back when it stored nothing.
#[derive(Debug)]
pub(crate) struct Charge {
    key: String,
    slot: u64,
    bytes: u64,
}

/// The per-owner usage of one namespace.
pub(crate) struct OwnerUsage {
    client: Client,
    kv: kv::Store,
    max: u64,
    clock: Clock,
}

impl OwnerUsage {
    /// Opens (creating or reconciling) the usage bucket; `None` when
    /// `retention` sets no per-owner quota.
    pub(crate) async fn open(
        client: &Client,
        namespace: &str,
        retention: Retention,
        replicas: usize,
    ) -> Result<Option<OwnerUsage>, ClusterError> {
        if retention.max_user_bytes == 0 {
            return Ok(None);
        }
        let clock = Clock::new(retention.max_age);
        let js = context(client);
        let max_bytes = match i64::try_from(retention.max_bytes) {
            Ok(0) | Err(_) => -1,
            Ok(n) => n,
        };
        let kv = ensure_kv(
            &js,
            client,
            &usage_bucket(namespace),
            format!("wsring per-owner durable-store usage ({namespace})"),
            clock.record_age(),
            max_bytes,
            replicas,
        )
        .await?;
        Ok(Some(OwnerUsage {
            client: client.clone(),
            kv,
            max: retention.max_user_bytes,
            clock,
        }))
    }

    /// The owner's live usage and the revision it was read at (`None`: no
    /// record).
    async fn read(&self, key: &str) -> Result<(Usage, Option<u64>), ClusterError> {
        match self.kv.entry(key).await {
            Ok(Some(e)) if e.operation == Operation::Put => {
                let mut u = Usage::decode(&e.value);
                let now = now_ms();
                u.prune(|s| self.clock.expired(s, now));
                Ok((u, Some(e.revision)))
            }
            // Deleted or purged: `create` writes over it.
            Ok(_) => Ok((Usage::default(), None)),
            Err(e) => Err(fail(
                &self.client,
                format!("reading the store usage of {key}"),
                e.kind() == EntryErrorKind::TimedOut,
                e,
            )),
        }
    }

    /// Writes `usage` if the key is still at `rev`; `Ok(false)`: another
    /// writer got there first.
    async fn write(
        &self,
        key: &str,
        usage: &Usage,
        rev: Option<u64>,
    ) -> Result<bool, ClusterError> {
        let what = || format!("updating the store usage of {key}");
        match rev {
            Some(rev) => match self.kv.update(key, usage.encode(), rev).await {
                Ok(_) => Ok(true),
                Err(e) if e.kind() == UpdateErrorKind::WrongLastRevision => Ok(false),
                Err(e) => Err(fail(
                    &self.client,
                    what(),
                    e.kind() == UpdateErrorKind::TimedOut,
                    e,
                )),
            },
            None => match self.kv.create(key, usage.encode()).await {
                Ok(_) => Ok(true),
                Err(e) if e.kind() == CreateErrorKind::AlreadyExists => Ok(false),
                Err(e) => Err(fail(
                    &self.client,
                    what(),
                    e.kind() == CreateErrorKind::Publish,
                    e,
                )),
            },
        }
    }

    /// Counts `bytes` for `owner`, or refuses with
    /// [`ClusterError::QuotaExceeded`] when that would pass the quota.
    pub(crate) async fn charge(&self, owner: &str, bytes: u64) -> Result<Charge, ClusterError> {
        let key = kv_key(owner);
        for _ in 0..CAS_ROUNDS {
            let (mut usage, rev) = self.read(&key).await?;
            if usage.total().saturating_add(bytes) > self.max {
                debug!(
                    owner,
                    used = usage.total(),
                    bytes,
                    max = self.max,
                    "owner quota reached"
                );
                return Err(ClusterError::QuotaExceeded { max: self.max });
            }
            let slot = self.clock.slot(now_ms());
            usage.add(slot, bytes);
            if self.write(&key, &usage, rev).await? {
                return Ok(Charge { key, slot, bytes });
            }
        }
        Err(ClusterError::Contention(CAS_ROUNDS))
    }

    /// Gives back what `charge` counted for an append that stored nothing.
    /// A failure leaves the bytes counted until they age out: the owner may
    /// be refused early, never let past its share.
    pub(crate) async fn refund(&self, charge: Charge) {
        for _ in 0..CAS_ROUNDS {
            let (mut usage, rev) = match self.read(&charge.key).await {
                Ok((_, None)) => return,
                Ok(r) => r,
                Err(e) => {
                    warn!(key = %charge.key, error = %e, "could not give back store usage");
                    return;
                }
            };
            usage.sub(charge.slot, charge.bytes);
            match self.write(&charge.key, &usage, rev).await {
                Ok(true) => return,
                Ok(false) => continue,
                Err(e) => {
                    warn!(key = %charge.key, error = %e, "could not give back store usage");
                    return;
                }
            }
        }
        debug!(key = %charge.key, "store usage too busy to give back; it ages out");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_round_trips_and_sums() {
        let mut u = Usage::default();
        u.add(5, 100);
        u.add(3, 50);
        u.add(5, 1);
        assert_eq!(u.encode(), Bytes::from_static(b"3:50 5:101"));
        assert_eq!(Usage::decode(b"3:50 5:101"), u);
        assert_eq!(u.total(), 151);
        u.sub(3, 80);
        assert_eq!(u.encode(), Bytes::from_static(b"5:101"));
        u.sub(9, 1);
        assert_eq!(u.total(), 101);
        assert_eq!(Usage::decode(b"x 7:q 2:3"), {
            let mut v = Usage::default();
            v.add(2, 3);
            v
        });
    }

    #[test]
    fn records_stay_bounded_and_fold_forward() {
        let mut u = Usage::default();
        for s in 0..100 {
            u.add(s, 1);
        }
        assert_eq!(u.slots.len(), MAX_SLOTS);
        assert_eq!(u.total(), 100, "folding keeps every byte counted");
        assert_eq!(u.slots[0].0, 100 - MAX_SLOTS as u64, "onto a later slot");
    }

    #[test]
    fn slots_are_given_back_only_after_the_age() {
        let c = Clock::new(Duration::from_secs(80));
        assert_eq!(c.slot(0), 0);
        assert_eq!(c.slot(9_999), 0);
        assert_eq!(c.slot(10_000), 1);
        // Slot 0 ends at 10 s; its last entries are gone by 90 s (+ slack).
        assert!(!c.expired(0, 90_999));
        assert!(c.expired(0, 91_000));
        let mut u = Usage::default();
        u.add(0, 10);
        u.add(5, 20);
        u.prune(|s| c.expired(s, 91_000));
        assert_eq!(u.total(), 20);
        assert_eq!(c.record_age(), Duration::from_secs(91));
    }

    #[test]
    fn without_an_age_nothing_expires() {
        let c = Clock::new(Duration::ZERO);
        assert_eq!(c.slot(u64::MAX), 0);
        assert!(!c.expired(0, u64::MAX));
        assert_eq!(c.record_age(), Duration::ZERO);
    }
}
