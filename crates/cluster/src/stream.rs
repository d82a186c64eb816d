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
/// limits (`max_streams`, `max_bytes`) refuse new ones: an append that would
/// create one stream too many, or retain more payload bytes than allowed,
/// fails with [`ClusterError::StorageFull`] and nothing is stored. Space comes
/// back as entries age out or are trimmed. The store limits hold for one
/// backend namespace, shared by every node using it (for the in-memory
/// backend: for the process).
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
    /// Payload bytes retained across all streams; 0 means no limit.
    /// Default: 256 MiB (`--history-max-bytes`).
    pub max_bytes: u64,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            max_len: 1000,
            max_age: Duration::from_secs(600),
            max_streams: 100_000,
            max_bytes: 256 * 1024 * 1024,
        }
    }
}

/// Which store limit refused an append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreLimit {
    /// `max_streams`: the append would have created one stream too many.
    Streams,
    /// `max_bytes`: the append would have retained too many payload bytes.
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
#[async_trait]
pub trait StreamStore: Send + Sync + 'static {
    /// Appends a payload. With `dedup`, a key seen within the retention age
    /// returns the original position instead of appending again, which makes
    /// client retries idempotent.
    async fn append(
        &self,
        stream: &StreamName,
        payload: Bytes,
        dedup: Option<&str>,
    ) -> Result<Appended, ClusterError>;

    /// The current position, creating the stream (and its epoch) if needed so
    /// that the epoch handed to a client stays valid.
    async fn head(&self, stream: &StreamName) -> Result<StreamPos, ClusterError>;

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
