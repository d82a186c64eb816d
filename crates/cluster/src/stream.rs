//! Durable streams: one bounded, append-only log per user and per room.
//!
//! Every message is appended before it is acknowledged; its position (`seq`,
//! strictly +1 per stream) and the stream's `epoch` (a random string that
//! changes if the stream was lost or reset) travel with it to the client, which
//! resumes from the last position it saw.

use async_trait::async_trait;
use bytes::Bytes;
use rand::Rng;
use std::fmt;
use std::time::Duration;

use crate::error::ClusterError;

/// Which stream.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StreamName {
    /// A user's direct messages.
    User(String),
    /// A room's messages.
    Room(String),
}

impl StreamName {
    /// Storage key suffix: `u:<user>` or `r:<room>`.
    pub fn key(&self) -> String {
        match self {
            StreamName::User(u) => format!("u:{u}"),
            StreamName::Room(r) => format!("r:{r}"),
        }
    }
}

impl fmt::Display for StreamName {
    /// The client-facing name used in `resumed` frames: `user` or `room:<name>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StreamName::User(_) => f.write_str("user"),
            StreamName::Room(r) => write!(f, "room:{r}"),
        }
    }
}

/// Retention limits of every stream, and of the store as a whole.
///
/// The per-stream limits (`max_len`, `max_age`) trim old entries; the store
/// limits (`max_streams`, `max_bytes`) refuse new ones: an append, or a new
/// stream's first position, that would make one stream too many or count
/// more bytes than allowed fails with [`ClusterError::StorageFull`] and
/// nothing is stored. Space comes back as entries age out or are trimmed.
/// The store limits hold for one backend namespace, shared by every node
/// using it (for the in-memory backend: for the process).
///
/// What counts against `max_bytes` is everything the store keeps, not only
/// payloads: each stream is [`STREAM_COST_BYTES`] from the moment it has a
/// position (a `head` creates it, as does a first append or read), and each
/// entry is [`entry_cost`]: its payload, its dedup key (kept beside the
/// entry and dropped with it, so dedup keys are bounded by `max_len` per
/// stream) and its owner, plus [`ENTRY_COST_BYTES`]. A backend adds what
/// its own storage costs on top (Redis: the 4 KiB node a stream's entries
/// start in, and its usage index). `max_user_bytes` is
/// the share one owner (a user id, or an API key's identity) may hold of
/// that; past it only that owner is refused
/// ([`ClusterError::QuotaExceeded`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Entries kept per stream. Default: 1000 (`--history-size`).
    pub max_len: u64,
    /// Age after which entries are dropped; a stream idle this long is reset
    /// (new epoch). Default: 10 minutes (`--history-ttl`).
    pub max_age: Duration,
    /// Streams holding at least one entry, across the store; 0 means no
    /// limit. Default: 100,000 (`--history-max-streams`).
    pub max_streams: u64,
    /// Bytes counted across all streams (see above); 0 means no limit.
    /// Default: 256 MiB (`--history-max-bytes`).
    pub max_bytes: u64,
    /// Bytes counted for one owner's entries and the streams it created;
    /// 0 means no limit. Default: 10% of `max_bytes`
    /// (`--history-max-user-percent`).
    pub max_user_bytes: u64,
}

/// What one stream counts against [`Retention::max_bytes`] by itself: its
/// position and epoch, and the store's bookkeeping for it.
pub const STREAM_COST_BYTES: u64 = 256;

/// What one entry counts against [`Retention::max_bytes`] on top of its
/// payload, dedup key and owner: its id, timestamp and framing.
pub const ENTRY_COST_BYTES: u64 = 128;

/// What an entry counts against [`Retention::max_bytes`]: the payload, the
/// dedup key twice (stored with the entry, and indexed), the owner, and
/// [`ENTRY_COST_BYTES`].
pub fn entry_cost(payload: usize, dedup: Option<&str>, owner: Option<&str>) -> u64 {
    let dedup = dedup.map_or(0, str::len) as u64;
    let owner = owner.map_or(0, str::len) as u64;
    payload as u64 + 2 * dedup + owner + ENTRY_COST_BYTES
}

/// The default per-owner share of the store, in percent.
pub const DEFAULT_USER_PERCENT: u64 = 10;

/// `percent` of `max_bytes`, the per-owner quota (0 when either is 0: no
/// quota).
pub fn user_quota(max_bytes: u64, percent: u64) -> u64 {
    if percent == 0 || max_bytes == 0 {
        return 0;
    }
    u64::try_from(u128::from(max_bytes) * u128::from(percent.min(100)) / 100)
        .unwrap_or(u64::MAX)
        .max(1)
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            max_len: 1000,
            max_age: Duration::from_secs(600),
            max_streams: 100_000,
            max_bytes: 256 * 1024 * 1024,
            max_user_bytes: user_quota(256 * 1024 * 1024, DEFAULT_USER_PERCENT),
        }
    }
}

/// Which store limit refused an append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreLimit {
    /// `max_streams`: the append would have created one stream too many.
    Streams,
    /// `max_bytes`: the append (or new stream) would have counted too many
    /// bytes.
    Bytes,
}

impl fmt::Display for StoreLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StoreLimit::Streams => "streams",
            StoreLimit::Bytes => "bytes",
        })
    }
}

/// A stream's current position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamPos {
    /// Last assigned seq (0 for a new stream).
    pub seq: u64,
    /// The stream epoch.
    pub epoch: String,
}

/// Result of an append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    /// The seq of the message.
    pub seq: u64,
    /// The stream epoch.
    pub epoch: String,
    /// True when the dedup key was seen before: nothing was appended and `seq`
    /// is the original message's position.
    pub duplicate: bool,
}

/// Entries read from a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadBatch {
    /// The stream epoch.
    pub epoch: String,
    /// Oldest retained seq (`last_seq + 1` when nothing is retained).
    pub first_seq: u64,
    /// Newest seq.
    pub last_seq: u64,
    /// `(seq, payload)` with `seq > after`, ascending, at most `limit`.
    pub entries: Vec<(u64, Bytes)>,
}

impl ReadBatch {
    /// Whether the history covers every message after `after`.
    pub fn covers(&self, after: u64) -> bool {
        after <= self.last_seq && after + 1 >= self.first_seq
    }
}

/// Storage for durable streams.
///
/// `owner` (of [`append_as`](Self::append_as) and
/// [`head_as`](Self::head_as)) is who the bytes are counted for under
/// [`Retention::max_user_bytes`]: the sender's user id or API key identity;
/// `None` counts for nobody (the server itself).
#[async_trait]
pub trait StreamStore: Send + Sync + 'static {
    /// Appends a payload, counted for nobody: see
    /// [`append_as`](Self::append_as).
    async fn append(
        &self,
        stream: &StreamName,
        payload: Bytes,
        dedup: Option<&str>,
    ) -> Result<Appended, ClusterError> {
        self.append_as(stream, payload, dedup, None).await
    }

    /// Appends a payload for `owner`. With `dedup`, a key whose entry is
    /// still retained (at most the retention age, at most `max_len`
    /// appends ago) returns the original position instead of appending
    /// again, which makes client retries idempotent.
    async fn append_as(
        &self,
        stream: &StreamName,
        payload: Bytes,
        dedup: Option<&str>,
        owner: Option<&str>,
    ) -> Result<Appended, ClusterError>;

    /// The current position, a new stream counted for nobody: see
    /// [`head_as`](Self::head_as).
    async fn head(&self, stream: &StreamName) -> Result<StreamPos, ClusterError> {
        self.head_as(stream, None).await
    }

    /// The current position, creating the stream (and its epoch) if needed so
    /// that the epoch handed to a client stays valid. A new stream counts
    /// against the store limits, and for `owner`; one asked for an owner is
    /// refused past them, one asked for nobody (a user's own stream at
    /// connect, a room the server put a user in) is counted but not
    /// refused on the memory and Redis backends, so a full store never
    /// keeps users from connecting (JetStream refuses it past
    /// `max_streams`).
    async fn head_as(
        &self,
        stream: &StreamName,
        owner: Option<&str>,
    ) -> Result<StreamPos, ClusterError>;

    /// Entries with `seq > after`, oldest first, at most `limit`.
    async fn read_after(
        &self,
        stream: &StreamName,
        after: u64,
        limit: usize,
    ) -> Result<ReadBatch, ClusterError>;
}

/// A fresh random stream epoch: 12 characters of `[a-z0-9]`.
pub fn new_epoch() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..12)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coverage() {
        let b = ReadBatch {
            epoch: "e".into(),
            first_seq: 5,
            last_seq: 9,
            entries: vec![],
        };
        assert!(b.covers(4));
        assert!(b.covers(9));
        assert!(!b.covers(3));
        assert!(!b.covers(10));
        let empty = ReadBatch {
            epoch: "e".into(),
            first_seq: 10,
            last_seq: 9,
            entries: vec![],
        };
        assert!(empty.covers(9));
        assert!(!empty.covers(8));
    }

    #[test]
    fn names() {
        assert_eq!(StreamName::User("bob".into()).to_string(), "user");
        assert_eq!(StreamName::Room("lobby".into()).to_string(), "room:lobby");
        assert_eq!(StreamName::Room("lobby".into()).key(), "r:lobby");
        assert_eq!(new_epoch().len(), 12);
    }
}
