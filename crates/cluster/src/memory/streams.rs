//! In-memory [`StreamStore`]: a bounded `VecDeque` per stream, trimmed by
//! length and age, with a dedup index for idempotent appends. Streams idle
//! longer than the retention age are reset (new epoch), like their Redis and
//! NATS counterparts.
//!
//! The store limits are exact: every stream (from its first position) and
//! every entry is counted as [`crate::stream`] defines, on every change,
//! for the store and for the owner it was counted for. A dedup key lives
//! in its entry and in the stream's index, and both go when the entry is
//! trimmed, so no key outlives what the limits count.

use async_trait::async_trait;
use bytes::Bytes;
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

use super::lock;
use crate::error::ClusterError;
use crate::stream::{
    Appended, ReadBatch, Retention, STREAM_COST_BYTES, StoreLimit, StreamName, StreamPos,
    StreamStore, entry_cost, new_epoch,
};

/// Durable streams of a single process.
pub struct MemoryStreams {
    retention: Retention,
    state: Mutex<State>,
}

/// How often, at most, a full store refuses to sweep for aged-out entries
/// before refusing: the sweep visits every stream.
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Default)]
struct State {
    streams: HashMap<StreamName, Log>,
    totals: Totals,
    ops: u64,
    last_sweep: Option<Instant>,
}

/// What the store counts: bytes in all, and per owner.
#[derive(Default)]
struct Totals {
    bytes: u64,
    owners: HashMap<String, u64>,
}

impl Totals {
    fn charge(&mut self, owner: Option<&str>, cost: u64) {
        self.bytes += cost;
        if let Some(o) = owner {
            *self.owners.entry(o.to_owned()).or_default() += cost;
        }
    }

    fn credit(&mut self, owner: Option<&str>, cost: u64) {
        self.bytes = self.bytes.saturating_sub(cost);
        if let Some(o) = owner
            && let Some(held) = self.owners.get_mut(o)
        {
            *held = held.saturating_sub(cost);
            if *held == 0 {
                self.owners.remove(o);
            }
        }
    }

    fn owner_bytes(&self, owner: Option<&str>) -> u64 {
        owner.and_then(|o| self.owners.get(o)).copied().unwrap_or(0)
    }

    /// Whether `cost` more bytes, for `owner`, stay within the limits.
    fn admits(&self, r: &Retention, owner: Option<&str>, cost: u64) -> Result<(), ClusterError> {
        if r.max_bytes > 0 && self.bytes.saturating_add(cost) > r.max_bytes {
            return Err(ClusterError::StorageFull {
                limit: StoreLimit::Bytes,
                max: r.max_bytes,
            });
        }
        if r.max_user_bytes > 0
            && owner.is_some()
            && self.owner_bytes(owner).saturating_add(cost) > r.max_user_bytes
        {
            return Err(ClusterError::QuotaExceeded {
                max: r.max_user_bytes,
            });
        }
        Ok(())
    }

    /// Gives back everything `log` was counted as.
    fn forget(&mut self, log: &Log) {
        for e in &log.entries {
            self.credit(e.owner.as_deref(), e.cost);
        }
        self.credit(log.creator.as_deref(), STREAM_COST_BYTES);
    }
}

/// One retained message.
struct Entry {
    seq: u64,
    at: Instant,
    payload: Bytes,
    /// What it counts as ([`entry_cost`]).
    cost: u64,
    dedup: Option<String>,
    owner: Option<String>,
}

struct Log {
    epoch: String,
    last_seq: u64,
    entries: VecDeque<Entry>,
    /// Dedup key → seq, for retained entries only.
    dedup: HashMap<String, u64>,
    touched: Instant,
    /// Who the stream itself is counted for.
    creator: Option<String>,
}

impl Log {
    fn new(now: Instant, creator: Option<&str>) -> Log {
        Log {
            epoch: new_epoch(),
            last_seq: 0,
            entries: VecDeque::new(),
            dedup: HashMap::new(),
            touched: now,
            creator: creator.map(str::to_owned),
        }
    }

    fn idle(&self, r: &Retention, now: Instant) -> bool {
        now.duration_since(self.touched) > r.max_age
    }

    /// Drops entries past `max_len` or older than `max_age`, with their
    /// dedup keys, and gives back what they counted as.
    fn trim(&mut self, r: &Retention, now: Instant, totals: &mut Totals) {
        while let Some(e) = self.entries.front() {
            let too_many = self.entries.len() as u64 > r.max_len;
            if !too_many && now.duration_since(e.at) <= r.max_age {
                break;
            }
            let Some(e) = self.entries.pop_front() else {
                break;
            };
            if let Some(key) = &e.dedup {
                self.dedup.remove(key);
            }
            totals.credit(e.owner.as_deref(), e.cost);
        }
    }

    fn first_seq(&self) -> u64 {
        self.entries.front().map_or(self.last_seq + 1, |e| e.seq)
    }
}

impl State {
    /// Trims every log by age and forgets idle ones, at most once per
    /// [`SWEEP_INTERVAL`] unless `force`d.
    fn sweep(&mut self, r: &Retention, now: Instant, force: bool) {
        let recent = self
            .last_sweep
            .is_some_and(|at| now.duration_since(at) < SWEEP_INTERVAL);
        if recent && !force {
            return;
        }
        self.last_sweep = Some(now);
        let totals = &mut self.totals;
        self.streams.retain(|_, log| {
            if log.idle(r, now) {
                totals.forget(log);
                return false;
            }
            log.trim(r, now, totals);
            true
        });
    }

    /// Admits a new stream counted for `owner`, with `then` bytes more
    /// (the entry that creates it), so that a refused append creates no
    /// stream.
    fn admits_stream(
        &self,
        r: &Retention,
        owner: Option<&str>,
        then: u64,
    ) -> Result<(), ClusterError> {
        if r.max_streams > 0 && self.streams.len() as u64 >= r.max_streams {
            return Err(ClusterError::StorageFull {
                limit: StoreLimit::Streams,
                max: r.max_streams,
            });
        }
        self.totals.admits(r, owner, STREAM_COST_BYTES + then)
    }
}

impl MemoryStreams {
    /// An empty store with the given limits.
    pub fn new(retention: Retention) -> Self {
        MemoryStreams {
            retention,
            state: Mutex::new(State::default()),
        }
    }

    /// Runs `f` on the (trimmed) log of `name` with the store totals,
    /// creating the log, counted for `owner`, if it does not exist (or was
    /// idle past the retention age), unless the limits refuse a new stream
    /// with `then` bytes in it (`admit`: they are not asked; see
    /// [`StreamStore::head_as`]).
    fn with_log<T>(
        &self,
        name: &StreamName,
        owner: Option<&str>,
        (admit, then): (bool, u64),
        f: impl FnOnce(&mut Log, &mut Totals, Instant) -> Result<T, ClusterError>,
    ) -> Result<T, ClusterError> {
        let now = Instant::now();
        let r = self.retention;
        let mut st = lock(&self.state);
        st.ops += 1;
        if st.ops.is_multiple_of(4096) {
            st.sweep(&r, now, true);
        }
        if let Some(old) = st.streams.remove(name) {
            if old.idle(&r, now) {
                st.totals.forget(&old);
            } else {
                st.streams.insert(name.clone(), old);
            }
        }
        if !st.streams.contains_key(name) {
            if !admit && st.admits_stream(&r, owner, then).is_err() {
                // Aged-out entries elsewhere may still be counted.
                st.sweep(&r, now, false);
                st.admits_stream(&r, owner, then)?;
            }
            st.totals.charge(owner, STREAM_COST_BYTES);
            st.streams.insert(name.clone(), Log::new(now, owner));
        }
        let State {
            streams, totals, ..
        } = &mut *st;
        let log = streams
            .get_mut(name)
            .ok_or_else(|| ClusterError::backend("stream vanished under its lock"))?;
        log.trim(&r, now, totals);
        f(log, totals, now)
    }

    /// Bytes counted and streams held, as the store limits see them.
    pub fn usage(&self) -> (u64, u64) {
        let st = lock(&self.state);
        (st.totals.bytes, st.streams.len() as u64)
    }

    /// Bytes counted for `owner`.
    pub fn owner_usage(&self, owner: &str) -> u64 {
        lock(&self.state).totals.owner_bytes(Some(owner))
    }

    /// Trims and forgets everything aged out: now if `force`d, else at
    /// most once per [`SWEEP_INTERVAL`].
    fn sweep_now(&self, force: bool) {
        lock(&self.state).sweep(&self.retention, Instant::now(), force);
    }
}

#[async_trait]
impl StreamStore for MemoryStreams {
    async fn append_as(
        &self,
        stream: &StreamName,
        payload: Bytes,
        dedup: Option<&str>,
        owner: Option<&str>,
    ) -> Result<Appended, ClusterError> {
        let r = self.retention;
        let cost = entry_cost(payload.len(), dedup, owner);
        let attempt = |payload: Bytes| {
            self.with_log(stream, owner, (false, cost), |log, totals, now| {
                if let Some(seq) = dedup.and_then(|key| log.dedup.get(key)) {
                    return Ok(Appended {
                        seq: *seq,
                        epoch: log.epoch.clone(),
                        duplicate: true,
                    });
                }
                totals.admits(&r, owner, cost)?;
                log.last_seq += 1;
                log.touched = now;
                log.entries.push_back(Entry {
                    seq: log.last_seq,
                    at: now,
                    payload,
                    cost,
                    dedup: dedup.map(str::to_owned),
                    owner: owner.map(str::to_owned),
                });
                totals.charge(owner, cost);
                if let Some(key) = dedup {
                    log.dedup.insert(key.to_owned(), log.last_seq);
                }
                log.trim(&r, now, totals);
                Ok(Appended {
                    seq: log.last_seq,
                    epoch: log.epoch.clone(),
                    duplicate: false,
                })
            })
        };
        match attempt(payload.clone()) {
            Err(ClusterError::StorageFull { .. } | ClusterError::QuotaExceeded { .. }) => {
                // Aged-out entries may still be counted: sweep (at most
                // once per interval, the sweep visits every stream), retry.
                self.sweep_now(false);
                attempt(payload)
            }
            other => other,
        }
    }

    async fn head_as(
        &self,
        stream: &StreamName,
        owner: Option<&str>,
    ) -> Result<StreamPos, ClusterError> {
        // Handing out a position counts as activity: the epoch a client was
        // just given must stay valid for at least the retention age.
        self.with_log(stream, owner, (owner.is_none(), 0), |log, _, now| {
            log.touched = now;
            Ok(StreamPos {
                seq: log.last_seq,
                epoch: log.epoch.clone(),
            })
        })
    }

    async fn read_after(
        &self,
        stream: &StreamName,
        after: u64,
        limit: usize,
    ) -> Result<ReadBatch, ClusterError> {
        self.with_log(stream, None, (true, 0), |log, _, _| {
            Ok(ReadBatch {
                epoch: log.epoch.clone(),
                first_seq: log.first_seq(),
                last_seq: log.last_seq,
                entries: log
                    .entries
                    .iter()
                    .filter(|e| e.seq > after)
                    .take(limit)
                    .map(|e| (e.seq, e.payload.clone()))
                    .collect(),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::ENTRY_COST_BYTES;

    fn retention(max_bytes: u64, max_user_bytes: u64) -> Retention {
        Retention {
            max_len: 3,
            max_age: Duration::from_secs(60),
            max_streams: 0,
            max_bytes,
            max_user_bytes,
        }
    }

    fn room(n: usize) -> StreamName {
        StreamName::Room(format!("r{n}"))
    }

    #[tokio::test(start_paused = true)]
    async fn unique_dedup_keys_stay_bounded_by_the_stream_length() {
        let s = MemoryStreams::new(retention(0, 0));
        for i in 0..1000 {
            let key = format!("ws/alice/{i}");
            s.append_as(
                &room(0),
                Bytes::from_static(b"x"),
                Some(&key),
                Some("alice"),
            )
            .await
            .expect("append");
        }
        let st = lock(&s.state);
        let log = st.streams.get(&room(0)).expect("log");
        assert_eq!((log.entries.len(), log.dedup.len()), (3, 3));
        let each = entry_cost(1, Some("ws/alice/999"), Some("alice"));
        assert_eq!(st.totals.bytes, STREAM_COST_BYTES + 3 * each);
        assert_eq!(
            st.totals.owner_bytes(Some("alice")),
            STREAM_COST_BYTES + 3 * each,
            "she created the stream, too"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn positions_count_and_idle_streams_give_everything_back() {
        let s = MemoryStreams::new(retention(0, 0));
        for n in 0..100 {
            s.head_as(&room(n), Some("mallory")).await.expect("head");
        }
        assert_eq!(s.usage(), (100 * STREAM_COST_BYTES, 100));
        assert_eq!(s.owner_usage("mallory"), 100 * STREAM_COST_BYTES);
        tokio::time::advance(Duration::from_secs(61)).await;
        s.append(&room(1000), Bytes::from_static(b"p"), None)
            .await
            .expect("append");
        s.sweep_now(true);
        assert_eq!(
            s.usage(),
            (STREAM_COST_BYTES + ENTRY_COST_BYTES + 1, 1),
            "only the new stream is left"
        );
        assert_eq!(s.owner_usage("mallory"), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_quota_refuses_only_its_owner() {
        let big = || Bytes::from(vec![b'x'; 1000]);
        let s = MemoryStreams::new(retention(100_000, 5_000));
        let mut stored = 0;
        let refused = loop {
            match s
                .append_as(&room(stored), big(), None, Some("mallory"))
                .await
            {
                Ok(_) => stored += 1,
                Err(e) => break e,
            }
            assert!(stored < 100, "the quota never refused");
        };
        assert!(
            matches!(refused, ClusterError::QuotaExceeded { max: 5_000 }),
            "{refused}"
        );
        assert!(s.owner_usage("mallory") <= 5_000);
        s.append_as(&room(0), big(), None, Some("alice"))
            .await
            .expect("another owner still stores");
        s.append(&room(0), big(), None)
            .await
            .expect("the server still stores");
        // Trimming mallory's entries gives her share back.
        for _ in 0..3 {
            s.append_as(&room(0), Bytes::from_static(b"a"), None, Some("alice"))
                .await
                .expect("append");
        }
        s.append_as(&room(0), big(), None, Some("mallory"))
            .await
            .expect("room again after a trim");
    }
}
