//! The registry trait: the minimum a backend must store for membership.
//!
//! Two kinds of records:
//! * one **membership document** (members, their state, the epoch), changed
//!   only by compare-and-set, so every change is totally ordered and the epoch
//!   is a real cluster-wide counter rather than something each process guesses;
//! * one **heartbeat record per node** with a TTL. The backend's own expiry is
//!   the failure detector: a node whose record expired is dead, whoever notices.
//!
//! The protocol itself (who writes what, when) is in [`crate::membership`].

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use std::time::Duration;

use crate::error::ClusterError;

/// A value with the version the backend stored it at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned<T> {
    /// Opaque, increasing version used for compare-and-set.
    pub version: u64,
    /// The value.
    pub value: T,
}

/// Membership storage. Implementations must be linearizable per record (a
/// single Redis, a JetStream KV bucket, a mutex).
#[async_trait]
pub trait Registry: Send + Sync + 'static {
    /// Reads the membership document, or `None` if the cluster is new.
    async fn load(&self) -> Result<Option<Versioned<Bytes>>, ClusterError>;

    /// Writes the document if its stored version is still `expected` (`None`:
    /// it must not exist yet). Returns the new version, or `None` when another
    /// writer won the race and the caller must reload and retry.
    async fn store(&self, expected: Option<u64>, doc: Bytes) -> Result<Option<u64>, ClusterError>;

    /// Creates `node`'s heartbeat record only if none is live. Returns `false`
    /// when a live record exists (the id is taken).
    async fn claim(&self, node: &str, value: Bytes, ttl: Duration) -> Result<bool, ClusterError>;

    /// Writes `node`'s heartbeat record with a fresh TTL, creating it if needed.
    async fn refresh(&self, node: &str, value: Bytes, ttl: Duration) -> Result<(), ClusterError>;

    /// Deletes `node`'s heartbeat record at once.
    async fn release(&self, node: &str) -> Result<(), ClusterError>;

    /// The live heartbeat record of each of `nodes`, in order (`None`: expired
    /// or absent, i.e. dead).
    async fn heartbeats(&self, nodes: &[String]) -> Result<Vec<Option<Bytes>>, ClusterError>;

    /// Notifications that the membership document may have changed. Lossy and
    /// coalescing is fine: consumers reload the document on each item, and also
    /// poll, so a missed notification costs latency, never correctness.
    async fn watch(&self) -> Result<BoxStream<'static, ()>, ClusterError>;
}
