//! In-memory [`StreamStore`]: a bounded `VecDeque` per stream, trimmed by
//! length and age, with a dedup table for idempotent appends. Streams idle
//! longer than the retention age are reset (new epoch), like their Redis and
//! NATS counterparts.

use async_trait::async_trait;
use bytes::Bytes;
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use tokio::time::Instant;

use super::lock;
use crate::error::ClusterError;
use crate::stream::{
    Appended, ReadBatch, Retention, StreamName, StreamPos, StreamStore, new_epoch,
};

/// Durable streams of a single process.
pub struct MemoryStreams {
    retention: Retention,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    streams: HashMap<StreamName, Log>,
    ops: u64,
}

struct Log {
    epoch: String,
    last_seq: u64,
    entries: VecDeque<(u64, Instant, Bytes)>,
    dedup: HashMap<String, (u64, Instant)>,
    touched: Instant,
}

impl Log {
    fn new(now: Instant) -> Log {
        Log {
            epoch: new_epoch(),
            last_seq: 0,
            entries: VecDeque::new(),
            dedup: HashMap::new(),
            touched: now,
        }
    }

    fn trim(&mut self, r: &Retention, now: Instant) {
        while let Some((_, at, _)) = self.entries.front() {
            let too_many = self.entries.len() as u64 > r.max_len;
            if too_many || now.duration_since(*at) > r.max_age {
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

    fn with_log<T>(&self, name: &StreamName, f: impl FnOnce(&mut Log, Instant) -> T) -> T {
        let now = Instant::now();
        let r = self.retention;
        let mut st = lock(&self.state);
        st.ops += 1;
        if st.ops.is_multiple_of(4096) {
            st.streams
                .retain(|_, log| now.duration_since(log.touched) <= r.max_age);
        }
        let log = st
            .streams
            .entry(name.clone())
            .or_insert_with(|| Log::new(now));
        if now.duration_since(log.touched) > r.max_age {
            *log = Log::new(now);
        }
        log.trim(&r, now);
        f(log, now)
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
        Ok(self.with_log(stream, |log, now| {
            if let Some((seq, _)) = dedup.and_then(|key| log.dedup.get(key)) {
                return Appended {
                    seq: *seq,
                    epoch: log.epoch.clone(),
                    duplicate: true,
                };
            }
            log.last_seq += 1;
            log.touched = now;
            log.entries.push_back((log.last_seq, now, payload));
            if let Some(key) = dedup {
                log.dedup.insert(key.to_owned(), (log.last_seq, now));
            }
            log.trim(&r, now);
            Appended {
                seq: log.last_seq,
                epoch: log.epoch.clone(),
                duplicate: false,
            }
        }))
    }

    async fn head(&self, stream: &StreamName) -> Result<StreamPos, ClusterError> {
        // Handing out a position counts as activity: the epoch a client was
        // just given must stay valid for at least the retention age.
        Ok(self.with_log(stream, |log, now| {
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
        Ok(self.with_log(stream, |log, _| ReadBatch {
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
