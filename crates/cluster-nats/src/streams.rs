//! The durable [`StreamStore`] on JetStream.
//!
//! One JetStream stream per namespace, `{ns}_streams`, captures `{ns}.s.>`;
//! each wsring stream is one subject in it (`{ns}.s.u.{user}`,
//! `{ns}.s.r.{room}`). JetStream enforces the retention per subject:
//! `max_msgs_per_subject = max_len + 1` and `max_age`. The store limits are
//! JetStream's too: `max_bytes` with the discard-new policy (JetStream
//! counts each message's stored size: payload, subject and headers), and
//! `max_streams` against the stream's subject count, read at most once a
//! second when a new stream is created.
//!
//! JetStream's sequence is stream-wide, so wsring's per-stream seq (+1 per
//! append, no gaps) and the stream epoch travel in headers (`Wsring-Seq`,
//! `Wsring-Epoch`). An append reads the subject's last message (a direct get)
//! and publishes `seq + 1` with `Nats-Expected-Last-Subject-Sequence` set to
//! that message's stream sequence, so of two racing appenders exactly one
//! wins and the other re-reads and retries: seqs stay dense without locks.
//!
//! A subject without messages (a new stream, or one idle past `max_age`
//! whose messages all aged out) is (re)created by publishing an **epoch
//! marker**: empty payload, `Wsring-Seq: 0`, a fresh epoch, expected last
//! subject sequence 0, so concurrent creators race safely and everyone adopts
//! the winner's epoch. The marker is why the per-subject limit is
//! `max_len + 1`; reads skip seq 0. The marker ages out like any message:
//! a stream idle longer than the retention age starts over with a new epoch,
//! as in the memory and Redis backends. `head` creates the marker too, so the
//! epoch it hands to a client is the one later appends use.
//!
//! Dedup keys become `Nats-Msg-Id`s (see [`dedup_id`]); JetStream drops a
//! repeat inside the stream's duplicate window (`min(max_age, 2 min)`: the
//! server requires it to be at most `max_age`, and a longer window only costs
//! server memory) and acks with the original's stream sequence, whose headers
//! give the original wsring seq.
//!
//! What the store holds is bounded as follows: messages and epoch markers
//! (a stream's position, which `head` and reads create too) are JetStream
//! messages, counted by `max_bytes` at their stored size and by
//! `max_streams` as subjects; message ids are kept by JetStream for the
//! duplicate window only, outside the stream. `max_user_bytes` (the
//! per-owner share) is kept in a KV bucket beside the stream (see the
//! `quota` module): an owner's append is charged before it is published and
//! given back when it stored nothing; aged-out bytes come back by time
//! slot, so an owner is never let past its share (it may be refused a
//! little early after its entries were trimmed by length). A retry of a
//! still-deduplicated append is answered as a duplicate even past the
//! quota: the refused append probes JetStream's duplicate window with a
//! publish that cannot be stored (it expects a last message id no message
//! has), which JetStream answers with the original's position if the id is
//! known.
//!
//! Reads: a snapshot is the subject's last message (its stream sequence `L`,
//! seq and epoch) plus its first retained message. Retention only ever drops
//! the oldest messages, so the retained seqs are a contiguous range and the
//! wanted entries are a contiguous run. The first wanted message is located
//! by bisection over stream sequences with "next message of this subject at
//! or after" direct gets, then the run is walked message by message, never
//! past `L`, so entries, `last_seq` and `epoch` all describe the same
//! snapshot. Anything inconsistent (the snapshot trimmed away mid-read) makes
//! the read start over, a bounded number of times.
//!
//! On a replicated stream (a NATS cluster) every read goes to the stream
//! leader (`STREAM.MSG.GET`) instead of a direct get: direct gets are served
//! by any replica, and a follower that has not applied the latest append yet
//! would hide an acknowledged message from a reader. On one server both are
//! the same, and the direct get is cheaper.

use async_nats::Client;
use async_nats::jetstream::ErrorCode;
use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::message::{PublishMessage, StreamMessage};
use async_nats::jetstream::publish::PublishAck;
use async_nats::jetstream::stream::{
    self, DirectGetErrorKind, DiscardPolicy, LastRawMessageErrorKind, RetentionPolicy, StorageType,
    Stream,
};
use async_nats::jetstream::{self};
use async_trait::async_trait;
use bytes::Bytes;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tracing::debug;
use wsring_cluster::backoff::Backoff;
use wsring_cluster::stream::{STREAM_COST_BYTES, entry_cost, new_epoch};
use wsring_cluster::{
    Appended, ClusterError, ReadBatch, Retention, StoreLimit, StreamName, StreamPos, StreamStore,
};

use crate::connect::{backend_msg, fail};
use crate::names::{
    HDR_EPOCH, HDR_SEQ, dedup_id, parse_meta, stream_subject, streams_filter, streams_stream,
};
use crate::quota::OwnerUsage;
use crate::setup::{context, ensure_stream};

/// Longest duplicate window: JetStream keeps every message id of the window
/// in memory.
const MAX_DUPLICATE_WINDOW: Duration = Duration::from_secs(120);
/// Appends that lose the race this often in a row report the store as busy.
const APPEND_ATTEMPTS: u32 = 64;
/// Reads restarted this often in a row (the stream changing faster than a
/// read) report the store as busy.
const READ_ATTEMPTS: u32 = 8;
/// Search probes: stream sequences are u64 and every other probe bisects,
/// so 128 always suffice.
const MAX_PROBES: u32 = 128;

/// One stored message, decoded.
#[derive(Debug, Clone)]
struct Stored {
    /// JetStream's stream-wide sequence.
    stream_seq: u64,
    /// wsring's per-stream seq (0: the epoch marker).
    seq: u64,
    epoch: String,
    payload: Bytes,
}

/// Durable streams of one namespace in one JetStream stream.
pub struct NatsStreams {
    client: Client,
    js: jetstream::Context,
    stream: Stream,
    namespace: String,
    max_len: u64,
    /// `Retention::max_streams` (0: no limit).
    max_streams: u64,
    /// `Retention::max_bytes`, for the error when JetStream refuses.
    max_bytes: u64,
    /// The subject count last read from the server, and when: new streams
    /// are checked against `max_streams` with a count at most
    /// [`SUBJECT_COUNT_AGE`] old, so a burst of creations costs one
    /// `STREAM.INFO`, not one each.
    subjects: Mutex<Option<(Instant, u64)>>,
    /// Direct gets (one server) or leader reads (a replicated stream).
    direct: bool,
    /// Each owner's usage, when a per-owner quota is set.
    usage: Option<OwnerUsage>,
}

/// How old the subject count used for `max_streams` may be.
const SUBJECT_COUNT_AGE: Duration = Duration::from_secs(1);

/// The JetStream stream configuration for `retention`.
fn stream_config(namespace: &str, retention: Retention, replicas: usize) -> stream::Config {
    let duplicate_window = if retention.max_age.is_zero() {
        MAX_DUPLICATE_WINDOW
    } else {
        retention.max_age.min(MAX_DUPLICATE_WINDOW)
    };
    stream::Config {
        name: streams_stream(namespace),
        description: Some(format!("wsring durable streams ({namespace})")),
        subjects: vec![streams_filter(namespace)],
        retention: RetentionPolicy::Limits,
        // +1: the epoch marker.
        max_messages_per_subject: i64::try_from(retention.max_len.saturating_add(1))
            .unwrap_or(i64::MAX),
        max_age: retention.max_age,
        // The store-wide byte limit refuses new messages rather than evicting
        // other streams' history (per-subject trimming still drops a
        // subject's own oldest message).
        max_bytes: match i64::try_from(retention.max_bytes) {
            Ok(0) => -1,
            Ok(n) => n,
            Err(_) => -1,
        },
        duplicate_window,
        discard: DiscardPolicy::New,
        storage: StorageType::File,
        num_replicas: replicas,
        allow_direct: true,
        ..Default::default()
    }
}

impl NatsStreams {
    /// Opens (creating or reconciling) the namespace's stream on `client`,
    /// with `replicas` copies.
    pub(crate) async fn open(
        client: Client,
        namespace: &str,
        retention: Retention,
        replicas: usize,
    ) -> Result<NatsStreams, ClusterError> {
        let js = context(&client);
        let cfg = stream_config(namespace, retention, replicas);
        let stream = ensure_stream(&js, &client, cfg).await?;
        let usage = OwnerUsage::open(&client, namespace, retention, replicas).await?;
        Ok(NatsStreams {
            usage,
            client,
            js,
            stream,
            namespace: namespace.to_owned(),
            max_len: retention.max_len,
            max_streams: retention.max_streams,
            max_bytes: retention.max_bytes,
            subjects: Mutex::new(None),
            direct: replicas <= 1,
        })
    }

    /// Refuses a new stream when the store holds `max_streams` subjects
    /// already (as of at most [`SUBJECT_COUNT_AGE`] ago; the count is an
    /// estimate between reads, so racing nodes may overshoot by a few).
    async fn admit_new_stream(&self) -> Result<(), ClusterError> {
        if self.max_streams == 0 {
            return Ok(());
        }
        let cached = *self.subjects.lock().unwrap_or_else(|p| p.into_inner());
        let count = match cached {
            Some((at, n)) if at.elapsed() < SUBJECT_COUNT_AGE => n,
            _ => {
                let info = self.stream.get_info().await.map_err(|e| {
                    fail(&self.client, "reading the streams' subject count", false, e)
                })?;
                let n = info.state.subjects_count;
                *self.subjects.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some((Instant::now(), n));
                n
            }
        };
        if count >= self.max_streams {
            return Err(ClusterError::StorageFull {
                limit: StoreLimit::Streams,
                max: self.max_streams,
            });
        }
        Ok(())
    }

    fn decode(&self, msg: StreamMessage) -> Result<Stored, ClusterError> {
        let header = |name: &str| msg.headers.get(name).map(|v| v.as_str().to_owned());
        let (seq, epoch) = parse_meta(header(HDR_SEQ).as_deref(), header(HDR_EPOCH).as_deref())
            .map_err(|e| {
                backend_msg(format!(
                    "message {} on {} is not a wsring stream entry: {e}",
                    msg.sequence, msg.subject
                ))
            })?;
        Ok(Stored {
            stream_seq: msg.sequence,
            seq,
            epoch,
            payload: msg.payload,
        })
    }

    /// Maps a direct get result: not found is `None`.
    fn found(
        &self,
        what: &str,
        r: Result<StreamMessage, stream::DirectGetError>,
    ) -> Result<Option<Stored>, ClusterError> {
        match r {
            Ok(msg) => self.decode(msg).map(Some),
            Err(e) if e.kind() == DirectGetErrorKind::NotFound => Ok(None),
            Err(e) => {
                let timed_out = e.kind() == DirectGetErrorKind::TimedOut;
                Err(fail(&self.client, what, timed_out, e))
            }
        }
    }

    /// Maps a leader read result: not found is `None`.
    fn found_raw(
        &self,
        what: &str,
        r: Result<StreamMessage, stream::LastRawMessageError>,
    ) -> Result<Option<Stored>, ClusterError> {
        match r {
            Ok(msg) => self.decode(msg).map(Some),
            Err(e) => match e.kind() {
                LastRawMessageErrorKind::NoMessageFound => Ok(None),
                LastRawMessageErrorKind::JetStream(je)
                    if je.error_code() == ErrorCode::NO_MESSAGE_FOUND =>
                {
                    Ok(None)
                }
                // `Other` is a failed request: a timeout or no responder,
                // as while a replicated stream elects a new leader.
                LastRawMessageErrorKind::Other => Err(fail(&self.client, what, true, e)),
                _ => Err(fail(&self.client, what, false, e)),
            },
        }
    }

    /// The subject's last message.
    async fn last(&self, subject: &str) -> Result<Option<Stored>, ClusterError> {
        let what = format!("reading the head of {subject}");
        if !self.direct {
            let r = self.stream.get_last_raw_message_by_subject(subject).await;
            return self.found_raw(&what, r);
        }
        let r = self.stream.direct_get_last_for_subject(subject).await;
        self.found(&what, r)
    }

    /// The subject's first message with stream sequence `from` or later
    /// (`None`: from the beginning).
    async fn next_from(
        &self,
        subject: &str,
        from: Option<u64>,
    ) -> Result<Option<Stored>, ClusterError> {
        let what = format!("reading {subject}");
        if !self.direct {
            let r = self
                .stream
                .get_first_raw_message_by_subject(subject, from.unwrap_or(1))
                .await;
            return self.found_raw(&what, r);
        }
        let r = self.stream.direct_get_next_for_subject(subject, from).await;
        self.found(&what, r)
    }

    /// The message at stream sequence `seq`.
    async fn at(&self, seq: u64) -> Result<Option<Stored>, ClusterError> {
        let what = format!("reading stream message {seq}");
        if !self.direct {
            let r = self.stream.get_raw_message(seq).await;
            return self.found_raw(&what, r);
        }
        let r = self.stream.direct_get(seq).await;
        self.found(&what, r)
    }

    /// Publishes with an expected last subject sequence. `Ok(None)`: another
    /// writer got there first.
    async fn publish(
        &self,
        subject: &str,
        msg: PublishMessage,
        expected: u64,
    ) -> Result<Option<PublishAck>, ClusterError> {
        let msg = msg.expected_last_subject_sequence(expected);
        let what = || format!("appending to {subject}");
        let ack = match self.js.send_publish(subject.to_owned(), msg).await {
            Ok(ack) => ack.await,
            Err(e) => Err(e),
        };
        match ack {
            Ok(ack) => Ok(Some(ack)),
            Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => Ok(None),
            Err(e) if e.kind() == PublishErrorKind::Other && store_full(&e) => {
                Err(ClusterError::StorageFull {
                    limit: StoreLimit::Bytes,
                    max: self.max_bytes,
                })
            }
            Err(e) => {
                let timed_out = matches!(
                    e.kind(),
                    PublishErrorKind::TimedOut | PublishErrorKind::BrokenPipe
                );
                Err(fail(&self.client, what(), timed_out, e))
            }
        }
    }

    /// The subject's last message, creating the epoch marker if there is none.
    async fn ensure(&self, subject: &str) -> Result<Stored, ClusterError> {
        self.ensure_as(subject, None).await
    }

    /// [`ensure`](Self::ensure), a new stream counted for `owner`
    /// ([`STREAM_COST_BYTES`], charged before the marker is published and
    /// given back if another creator won).
    async fn ensure_as(&self, subject: &str, owner: Option<&str>) -> Result<Stored, ClusterError> {
        for _ in 0..APPEND_ATTEMPTS {
            if let Some(last) = self.last(subject).await? {
                return Ok(last);
            }
            self.admit_new_stream().await?;
            let epoch = new_epoch();
            let marker = PublishMessage::build()
                .payload(Bytes::new())
                .header(HDR_SEQ, "0")
                .header(HDR_EPOCH, epoch.as_str());
            let charge = match (&self.usage, owner) {
                (Some(usage), Some(owner)) => Some(usage.charge(owner, STREAM_COST_BYTES).await?),
                _ => None,
            };
            // Expected 0: only succeeds while the subject is still empty.
            let published = self.publish(subject, marker, 0).await;
            if !matches!(published, Ok(Some(_)))
                && let (Some(usage), Some(charge)) = (&self.usage, charge)
            {
                usage.refund(charge).await;
            }
            if let Some(ack) = published? {
                debug!(%subject, %epoch, "stream (re)started with a new epoch");
                // This node's own creations count at once; other nodes'
                // show up at the next read of the subject count.
                if let Some((_, n)) = self
                    .subjects
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .as_mut()
                {
                    *n += 1;
                }
                return Ok(Stored {
                    stream_seq: ack.sequence,
                    seq: 0,
                    epoch,
                    payload: Bytes::new(),
                });
            }
        }
        Err(busy(subject))
    }

    /// Reads a consistent batch, or `None` when the stream changed under the
    /// read and it must start over.
    async fn try_read(
        &self,
        subject: &str,
        after: u64,
        limit: usize,
    ) -> Result<Option<ReadBatch>, ClusterError> {
        let last = self.ensure(subject).await?;
        let first = match self.next_from(subject, None).await? {
            Some(f) if f.stream_seq <= last.stream_seq && f.epoch == last.epoch => f,
            // The snapshot's messages were trimmed (or reset) meanwhile.
            _ => return Ok(None),
        };
        // The marker (seq 0) is not an entry; while it is retained, so is 1.
        // Once the marker is evicted JetStream keeps max_len + 1 entries, one
        // more than wsring promises: the oldest is not reported.
        let first_real = first
            .seq
            .max(1)
            .max(last.seq.saturating_sub(self.max_len).saturating_add(1));
        let limit = u64::try_from(limit).unwrap_or(u64::MAX);
        let start = after.saturating_add(1).max(first_real);
        let end = after.saturating_add(limit).min(last.seq);
        let mut batch = ReadBatch {
            epoch: last.epoch.clone(),
            first_seq: first_real,
            last_seq: last.seq,
            entries: Vec::new(),
        };
        if start > end {
            return Ok(Some(batch));
        }
        let found = if start == first.seq {
            Some(first)
        } else if start == last.seq {
            Some(last.clone())
        } else if start == first.seq + 1 {
            self.next_from(subject, Some(first.stream_seq + 1)).await?
        } else {
            self.seek(subject, start, &first, &last).await?
        };
        let Some(mut cur) = found else {
            return Ok(None);
        };
        if cur.stream_seq > last.stream_seq || cur.seq < start || cur.seq > last.seq {
            return Ok(None);
        }
        if cur.seq > start {
            // `start` was trimmed after the snapshot: history now begins here.
            batch.first_seq = cur.seq;
        }
        loop {
            if cur.epoch != last.epoch {
                return Ok(None);
            }
            let (seq, stream_seq) = (cur.seq, cur.stream_seq);
            batch.entries.push((seq, cur.payload));
            if seq >= end || stream_seq >= last.stream_seq {
                break;
            }
            cur = match self.next_from(subject, Some(stream_seq + 1)).await? {
                Some(next) if next.stream_seq <= last.stream_seq && next.seq == seq + 1 => next,
                _ => return Ok(None),
            };
        }
        Ok(Some(batch))
    }

    /// The first message of `subject` whose seq is at least `target`, given
    /// `lo` (seq below `target`) and `hi` (seq at least `target`). Searches
    /// stream sequences, alternating interpolation (seqs are dense, so with
    /// evenly interleaved subjects the guess is usually right at once) with
    /// bisection (which bounds the worst case to twice log2 of the range).
    /// `None` if the stream changed.
    async fn seek(
        &self,
        subject: &str,
        target: u64,
        lo: &Stored,
        hi: &Stored,
    ) -> Result<Option<Stored>, ClusterError> {
        // Invariant: the subject's first message at or after stream sequence
        // `lo` has seq `lo_seq` < `target`; the one at or after `hi` is
        // `found`, with a seq of at least `target`.
        let (mut lo, mut lo_seq) = (lo.stream_seq, lo.seq);
        let (mut hi, mut found) = (hi.stream_seq, hi.clone());
        for probe in 0..MAX_PROBES {
            // Seqs are unique in an epoch: a hit ends the search at once.
            if hi - lo <= 1 || found.seq == target {
                return Ok(Some(found));
            }
            let at = if probe % 2 == 0 {
                interpolate(lo, lo_seq, hi, found.seq, target)
            } else {
                lo + (hi - lo) / 2
            };
            let Some(m) = self.next_from(subject, Some(at)).await? else {
                return Ok(None);
            };
            if m.seq >= target {
                (hi, found) = (at, m);
            } else if m.stream_seq < hi {
                // Nothing of this subject between `at` and `m`: skip it all.
                (lo, lo_seq) = (m.stream_seq, m.seq);
            } else {
                return Ok(None);
            }
        }
        Ok(None)
    }
}

impl NatsStreams {
    /// Publishes the next entry of `subject` (or finds the original of a
    /// duplicate).
    async fn publish_entry(
        &self,
        subject: &str,
        payload: Bytes,
        msg_id: Option<String>,
        owner: Option<&str>,
    ) -> Result<Appended, ClusterError> {
        let mut backoff = Backoff::new(Duration::from_millis(1), Duration::from_millis(50));
        for _ in 0..APPEND_ATTEMPTS {
            let last = self.ensure_as(subject, owner).await?;
            let seq = last.seq + 1;
            let mut msg = PublishMessage::build()
                .payload(payload.clone())
                .header(HDR_SEQ, seq.to_string())
                .header(HDR_EPOCH, last.epoch.as_str());
            if let Some(id) = &msg_id {
                msg = msg.message_id(id);
            }
            let Some(ack) = self.publish(subject, msg, last.stream_seq).await? else {
                // Lost a race with another appender: re-read, try again.
                tokio::time::sleep(backoff.next_delay()).await;
                continue;
            };
            if !ack.duplicate {
                return Ok(Appended {
                    seq,
                    epoch: last.epoch,
                    duplicate: false,
                });
            }
            return self.original(ack.sequence, last).await;
        }
        Err(busy(subject))
    }

    /// Where the original of a duplicate at stream sequence `at` went.
    async fn original(&self, at: u64, last: Stored) -> Result<Appended, ClusterError> {
        Ok(match self.at(at).await? {
            Some(orig) => Appended {
                seq: orig.seq,
                epoch: orig.epoch,
                duplicate: true,
            },
            // The original was already trimmed (more than max_len appends
            // since): its exact seq is gone; it is at or before the head.
            None => Appended {
                seq: last.seq,
                epoch: last.epoch,
                duplicate: true,
            },
        })
    }

    /// Whether message id `id` is in JetStream's duplicate window: publishes
    /// an empty message under it that expects a last message id no message
    /// ever has, so it is never stored. JetStream checks the id first (a
    /// replicated stream before proposing the message, one server before
    /// the other checks) and answers a known one with the original's
    /// position; an unknown one fails the expectation.
    async fn probe_duplicate(
        &self,
        subject: &str,
        id: &str,
    ) -> Result<Option<Appended>, ClusterError> {
        let last = self.ensure(subject).await?;
        let probe = PublishMessage::build()
            .payload(Bytes::new())
            .header(HDR_SEQ, "0")
            .header(HDR_EPOCH, last.epoch.as_str())
            .message_id(id)
            .expected_last_message_id(format!("{id}|probe"));
        let what = || format!("checking a duplicate on {subject}");
        let ack = match self.js.send_publish(subject.to_owned(), probe).await {
            Ok(ack) => ack.await,
            Err(e) => Err(e),
        };
        match ack {
            Ok(ack) if ack.duplicate => Ok(Some(self.original(ack.sequence, last).await?)),
            Ok(ack) => Err(backend_msg(format!(
                "a duplicate probe on {subject} was stored at {}",
                ack.sequence
            ))),
            Err(e) if e.kind() == PublishErrorKind::WrongLastMessageId => Ok(None),
            Err(e) => {
                let timed_out = matches!(
                    e.kind(),
                    PublishErrorKind::TimedOut | PublishErrorKind::BrokenPipe
                );
                Err(fail(&self.client, what(), timed_out, e))
            }
        }
    }
}

/// Where between stream sequences `lo` and `hi` (holding seqs `lo_seq` and
/// `hi_seq`) seq `target` probably is, assuming evenly spread messages;
/// always strictly between the two so every probe narrows the range.
fn interpolate(lo: u64, lo_seq: u64, hi: u64, hi_seq: u64, target: u64) -> u64 {
    let span = u128::from(hi - lo);
    let num = u128::from(target.saturating_sub(lo_seq)) * span;
    let den = u128::from(hi_seq.saturating_sub(lo_seq)).max(1);
    let guess = lo.saturating_add(u64::try_from(num / den).unwrap_or(u64::MAX));
    guess.clamp(lo + 1, hi - 1)
}

/// Whether JetStream refused a publish because the stream is at its
/// `max_bytes` (with the discard-new policy it answers "maximum bytes
/// exceeded" instead of evicting).
fn store_full(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if err.to_string().contains("maximum bytes exceeded") {
            return true;
        }
        cur = err.source();
    }
    false
}

fn busy(subject: &str) -> ClusterError {
    ClusterError::unavailable(format!(
        "{subject} is changing faster than it can be written or read; try again"
    ))
}

#[async_trait]
impl StreamStore for NatsStreams {
    /// `owner` is charged [`entry_cost`] against `max_user_bytes` before the
    /// publish (see the module documentation).
    async fn append_as(
        &self,
        stream: &StreamName,
        payload: Bytes,
        dedup: Option<&str>,
        owner: Option<&str>,
    ) -> Result<Appended, ClusterError> {
        let subject = stream_subject(&self.namespace, stream);
        let msg_id = dedup.map(|key| dedup_id(&subject, key));
        let (Some(usage), Some(owner)) = (&self.usage, owner) else {
            return self.publish_entry(&subject, payload, msg_id, owner).await;
        };
        let cost = entry_cost(payload.len(), dedup, Some(owner));
        let charge = match usage.charge(owner, cost).await {
            Ok(c) => c,
            Err(e @ ClusterError::QuotaExceeded { .. }) => {
                // A retry of an append that was stored is answered, not
                // refused.
                if let Some(id) = &msg_id
                    && let Some(dup) = self.probe_duplicate(&subject, id).await?
                {
                    return Ok(dup);
                }
                return Err(e);
            }
            Err(e) => return Err(e),
        };
        let r = self
            .publish_entry(&subject, payload, msg_id, Some(owner))
            .await;
        if !matches!(
            r,
            Ok(Appended {
                duplicate: false,
                ..
            })
        ) {
            usage.refund(charge).await;
        }
        r
    }

    /// A new stream is counted for `owner` ([`STREAM_COST_BYTES`]) and
    /// refused past its quota.
    async fn head_as(
        &self,
        stream: &StreamName,
        owner: Option<&str>,
    ) -> Result<StreamPos, ClusterError> {
        let last = self
            .ensure_as(&stream_subject(&self.namespace, stream), owner)
            .await?;
        Ok(StreamPos {
            seq: last.seq,
            epoch: last.epoch,
        })
    }

    async fn read_after(
        &self,
        stream: &StreamName,
        after: u64,
        limit: usize,
    ) -> Result<ReadBatch, ClusterError> {
        let subject = stream_subject(&self.namespace, stream);
        for _ in 0..READ_ATTEMPTS {
            if let Some(batch) = self.try_read(&subject, after, limit).await? {
                return Ok(batch);
            }
            debug!(%subject, "stream changed during a read; reading again");
        }
        Err(busy(&subject))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interpolation_stays_inside() {
        // Evenly spread: exact.
        assert_eq!(interpolate(100, 10, 200, 20, 15), 150);
        // Always strictly between the bounds.
        assert_eq!(interpolate(100, 10, 200, 20, 10), 101);
        assert_eq!(interpolate(100, 10, 200, 20, 20), 199);
        assert_eq!(interpolate(100, 10, 102, 11, 11), 101);
        assert_eq!(
            interpolate(0, 0, u64::MAX, u64::MAX, u64::MAX - 1),
            u64::MAX - 1
        );
    }

    #[test]
    fn config_follows_retention() {
        let c = stream_config(
            "ns",
            Retention {
                max_len: 1000,
                max_age: Duration::from_secs(600),
                ..Retention::default()
            },
            1,
        );
        assert_eq!(c.name, "ns_streams");
        assert_eq!(c.subjects, vec!["ns.s.>".to_owned()]);
        assert_eq!(c.max_messages_per_subject, 1001);
        assert_eq!(c.duplicate_window, MAX_DUPLICATE_WINDOW);
        assert!(c.allow_direct);
        assert_eq!(c.num_replicas, 1);
        let short = stream_config(
            "ns",
            Retention {
                max_len: 5,
                max_age: Duration::from_secs(1),
                ..Retention::default()
            },
            1,
        );
        assert_eq!(short.duplicate_window, Duration::from_secs(1));
        let forever = stream_config(
            "ns",
            Retention {
                max_len: u64::MAX,
                max_age: Duration::ZERO,
                ..Retention::default()
            },
            1,
        );
        assert_eq!(forever.duplicate_window, MAX_DUPLICATE_WINDOW);
        assert_eq!(forever.max_messages_per_subject, i64::MAX);
    }
}
