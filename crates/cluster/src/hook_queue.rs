//! Durable webhook queues: in durable mode a node keeps the webhook events
//! it has not delivered yet in the backend rather than in its memory, so a
//! node that dies does not take them along. Another node (the one that
//! emits the cluster's occupancy events) delivers what the dead node had
//! not.
//!
//! One queue per node incarnation and receiver. Only the owner appends to
//! its queue, so the owner alone knows (and bounds) how many bytes it holds;
//! the backend only stores. A queue's events carry ascending sequence
//! numbers; delivery reads in order and removes what was acknowledged.
//! An append interrupted by a failure may store some of its events, and the
//! retry stores them again: receivers deduplicate by the event's own id.

use async_trait::async_trait;
use bytes::Bytes;

use crate::error::ClusterError;

/// Longest queue name a backend must accept (ASCII `[A-Za-z0-9_-]`).
pub const MAX_QUEUE_NAME: usize = 160;

/// One stored event: its sequence number in its queue and its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queued {
    /// Ascending within a queue, never reused while the queue exists.
    pub seq: u64,
    /// The event as the owner appended it.
    pub body: Bytes,
}

/// Storage of durable webhook queues. Queue names are 1–[`MAX_QUEUE_NAME`]
/// characters of `[A-Za-z0-9_-]`.
#[async_trait]
pub trait HookQueue: Send + Sync + 'static {
    /// Appends `events` to `queue`, in order.
    async fn append(&self, queue: &str, events: &[Bytes]) -> Result<(), ClusterError>;

    /// Up to `max` events of `queue` with a sequence number above `after`,
    /// oldest first.
    async fn read(&self, queue: &str, after: u64, max: usize) -> Result<Vec<Queued>, ClusterError>;

    /// Removes the events of `queue` numbered `upto` or less.
    async fn remove(&self, queue: &str, upto: u64) -> Result<(), ClusterError>;

    /// Deletes `queue` altogether (a dead owner's queue once delivered).
    async fn forget(&self, queue: &str) -> Result<(), ClusterError>;

    /// The queues that exist (they may be empty), sorted.
    async fn queues(&self) -> Result<Vec<String>, ClusterError>;
}

/// Whether `name` is a valid queue name.
pub fn valid_queue_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_QUEUE_NAME
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}
