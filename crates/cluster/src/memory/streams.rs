//! In-memory [`StreamStore`]: a bounded `VecDeque` per stream, trimmed by
//! length and age, with a dedup table for idempotent appends. Streams idle
//! longer than the retention age are reset (new epoch), like their Redis and
//! NATS counterparts. The store limits are exact: payload bytes and streams
//! holding entries are counted on every change.

use async_trait::async_trait;
use bytes::Bytes;
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

use super::lock;
use crate::error::ClusterError;
use crate::stream::{
    Appended, ReadBatch, Retention, StoreLimit, StreamName, StreamPos, StreamStore, new_epoch,
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
    ops: u64,
    /// Payload bytes of every retained entry.
    bytes: u64,
    /// Streams with at least one retained entry.
    holding: u64,
    last_sweep: Option<Instant>,
}

/// What a log held before an operation, to update the store totals after.
#[derive(Clone, Copy)]
struct Usage {
    bytes: u64,
    holding: bool,
}

impl Usage {
    const NONE: Usage = Usage {
        bytes: 0,
        holding: false,
    };
}

impl State {
    /// Replaces `before` with `log`'s current usage in the totals.
    fn account(&mut self, before: Usage, after: Usage) {
        self.bytes = self.bytes.saturating_sub(before.bytes) + after.bytes;
        self.holding =
            self.holding.saturating_sub(u64::from(before.holding)) + u64::from(after.holding);
    }

    /// Trims every log by age and forgets idle ones, at most once per
    /// [`SWEEP_INTERVAL`]; `outside` is the usage of a log taken out of the
    /// map meanwhile, which still counts.
    fn sweep(&mut self, r: &Retention, now: Instant, outside: Usage) {
        if self
            .last_sweep
            .is_some_and(|at| now.duration_since(at) < SWEEP_INTERVAL)
        {
            return;
        }
        self.last_sweep = Some(now);
        let (mut bytes, mut holding) = (outside.bytes, u64::from(outside.holding));
        self.streams.retain(|_, log| {
            if now.duration_since(log.touched) > r.max_age {
                return false;
            }
            log.trim(r, now);
            bytes += log.bytes;
            holding += u64::from(!log.entries.is_empty());
            true
        });
        (self.bytes, self.holding) = (bytes, holding);
    }

    /// Whether appending `len` bytes to a log holding `usage` stays within
    /// the store limits.
    fn admits(&self, r: &Retention, usage: Usage, len: u64) -> Result<(), ClusterError> {
        if r.max_streams > 0 && !usage.holding && self.holding >= r.max_streams {
            return Err(ClusterError::StorageFull {
                limit: StoreLimit::Streams,
                max: r.max_streams,
            });
        }
        if r.max_bytes > 0 && self.bytes.saturating_add(len) > r.max_bytes {
            return Err(ClusterError::StorageFull {
                limit: StoreLimit::Bytes,
                max: r.max_bytes,
            });
        }
        Ok(())
    }
}

struct Log {
    epoch: String,
    last_seq: u64,
    entries: VecDeque<(u64, Instant, Bytes)>,
    /// Payload bytes of `entries`.
    bytes: u64,
    dedup: HashMap<String, (u64, Instant)>,
    touched: Instant,
}

impl Log {
    fn new(now: Instant) -> Log {
        Log {
            epoch: new_epoch(),
            last_seq: 0,
            entries: VecDeque::new(),
            bytes: 0,
            dedup: HashMap::new(),
            touched: now,
        }
    }

    fn usage(&self) -> Usage {
        Usage {
            bytes: self.bytes,
            holding: !self.entries.is_empty(),
        }
    }

    fn trim(&mut self, r: &Retention, now: Instant) {
        while let Some((_, at, payload)) = self.entries.front() {
            let too_many = self.entries.len() as u64 > r.max_len;
            if too_many || now.duration_since(*at) > r.max_age {
                self.bytes -= payload.len() as u64;
                self.entries.pop_front();
            } else {
                break;
            }
        }
        if self.dedup.len() as u64 > r.max_len * 2 {
            self.dedup
                .retain(|_, (_, at)| now.duration_since(*at) <= r.max_age);
        }
    }

    fn first_seq(&self) -> u64 {
        self.entries.front().map_or(self.last_seq + 1, |e| e.0)
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

    /// Runs `f` on the (trimmed) log of `name` with the store totals, and
    /// brings the totals up to date with whatever `f` changed.
    fn with_log<T>(
        &self,
        name: &StreamName,
        f: impl FnOnce(&mut Log, &mut State, Instant) -> T,
    ) -> T {
        let now = Instant::now();
        let r = self.retention;
        let mut st = lock(&self.state);
        st.ops += 1;
        if st.ops.is_multiple_of(4096) {
            st.last_sweep = None;
            st.sweep(&r, now, Usage::NONE);
        }
        // Taken out while `f` runs so that it can see (and sweep) the totals.
        let mut log = st.streams.remove(name).unwrap_or_else(|| Log::new(now));
        let before = log.usage();
        if now.duration_since(log.touched) > r.max_age {
            log = Log::new(now);
        }
        log.trim(&r, now);
        st.account(before, log.usage());
        let before = log.usage();
        let out = f(&mut log, &mut st, now);
        st.account(before, log.usage());
        st.streams.insert(name.clone(), log);
        out
    }

    /// Payload bytes and streams holding entries, as counted for the store
    /// limits.
    pub fn usage(&self) -> (u64, u64) {
        let st = lock(&self.state);
        (st.bytes, st.holding)
    }
}

#[async_trait]
impl StreamStore for MemoryStreams {
    async fn append(
        &self,
        stream: &StreamName,
        payload: Bytes,
        dedup: Option<&str>,
    ) -> Result<Appended, ClusterError> {
        let r = self.retention;
        self.with_log(stream, |log, st, now| {
            if let Some((seq, _)) = dedup.and_then(|key| log.dedup.get(key)) {
                return Ok(Appended {
                    seq: *seq,
                    epoch: log.epoch.clone(),
                    duplicate: true,
                });
            }
            let len = payload.len() as u64;
            if st.admits(&r, log.usage(), len).is_err() {
                // Aged-out entries elsewhere may still be counted.
                st.sweep(&r, now, log.usage());
                st.admits(&r, log.usage(), len)?;
            }
            log.last_seq += 1;
            log.touched = now;
            log.entries.push_back((log.last_seq, now, payload));
            log.bytes += len;
            if let Some(key) = dedup {
                log.dedup.insert(key.to_owned(), (log.last_seq, now));
            }
            log.trim(&r, now);
            Ok(Appended {
                seq: log.last_seq,
                epoch: log.epoch.clone(),
                duplicate: false,
            })
        })
    }

    async fn head(&self, stream: &StreamName) -> Result<StreamPos, ClusterError> {
        // Handing out a position counts as activity: the epoch a client was
        // just given must stay valid for at least the retention age.
        Ok(self.with_log(stream, |log, _, now| {
            log.touched = now;
            StreamPos {
                seq: log.last_seq,
                epoch: log.epoch.clone(),
            }
        }))
    }

    async fn read_after(
        &self,
        stream: &StreamName,
        after: u64,
        limit: usize,
    ) -> Result<ReadBatch, ClusterError> {
        Ok(self.with_log(stream, |log, _, _| ReadBatch {
            epoch: log.epoch.clone(),
            first_seq: log.first_seq(),
            last_seq: log.last_seq,
            entries: log
                .entries
                .iter()
                .filter(|(seq, _, _)| *seq > after)
                .take(limit)
                .map(|(seq, _, p)| (*seq, p.clone()))
                .collect(),
        }))
    }
}
