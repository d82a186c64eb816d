//! Where durable webhooks keep their queues: a store outside the process
//! (the cluster backend, adapted by the node), so that events a node had
//! not delivered when it died are delivered by another.
//!
//! One queue per owner and receiver. The owner appends, delivers from the
//! head and removes what the receiver acknowledged; a queue whose owner
//! died is adopted by another process, delivered and forgotten.

use async_trait::async_trait;
use bytes::Bytes;

/// A failed store call (transient or not: the caller retries with backoff).
pub type SpoolError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// One stored event: its number in its queue and its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spooled {
    /// Ascending within a queue.
    pub seq: u64,
    /// The serialized event.
    pub body: Bytes,
}

/// The store behind durable webhooks. Queue names are `[A-Za-z0-9_-]`.
#[async_trait]
pub trait Spool: Send + Sync + 'static {
    /// Appends `events` to `queue`, in order.
    async fn append(&self, queue: &str, events: &[Bytes]) -> Result<(), SpoolError>;
    /// Up to `max` of the oldest events of `queue`.
    async fn head(&self, queue: &str, max: usize) -> Result<Vec<Spooled>, SpoolError>;
    /// Removes the events of `queue` numbered `upto` or less.
    async fn remove(&self, queue: &str, upto: u64) -> Result<(), SpoolError>;
    /// Deletes `queue` (an adopted queue, once delivered).
    async fn forget(&self, queue: &str) -> Result<(), SpoolError>;
}
