//! The registry trait: the minimum a backend must store for membership.
//!
//! Two kinds of records:
//! * one **membership document** (members, their state, the epoch), changed
//!   only by compare-and-set, so every change is totally ordered and the epoch
//!   is a real cluster-wide counter rather than something each process guesses;
//! * one **heartbeat record per node** with a TTL. The backend's own expiry is
//!   the failure detector: a node whose record expired is dead, whoever notices.
//!
//! Every claim of a node id is stamped with an **incarnation**, a fencing
//! token the registry hands out from a counter that only grows. Refresh and
//! release are compare-and-set on `(id, incarnation)`, so a process that
//! stalled past its TTL (a GC-like pause, SIGSTOP, a frozen VM) while a new
//! process claimed its id can never overwrite or delete the successor's
//! record when it wakes: it learns that it lost the id and stops serving.
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

/// A live heartbeat record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heartbeat {
    /// The incarnation (fencing token) of the claim that holds the id.
    pub incarnation: u64,
    /// The node's stats payload.
    pub value: Bytes,
}

/// What a [`Registry::refresh`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lease {
    /// The caller's incarnation holds the id; its TTL was extended.
    Held,
    /// The caller's record had expired and nobody claimed the id since it
    /// did; nothing was written. The caller may claim the id again (a new
    /// incarnation) like any newcomer.
    Expired,
    /// Another incarnation holds the id: the caller is stale and must stop
    /// acting as this node.
    Taken(u64),
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

    /// Creates `node`'s heartbeat record only if none is live, under a new
    /// incarnation greater than every one handed out before in this
    /// namespace. Returns it, or `None` when a live record exists (the id is
    /// taken).
    async fn claim(
        &self,
        node: &str,
        value: Bytes,
        ttl: Duration,
    ) -> Result<Option<u64>, ClusterError>;

    /// Writes `node`'s heartbeat record with a fresh TTL, but only while
    /// `incarnation` holds it (compare-and-set). Never creates a record.
    async fn refresh(
        &self,
        node: &str,
        incarnation: u64,
        value: Bytes,
        ttl: Duration,
    ) -> Result<Lease, ClusterError>;

    /// Deletes `node`'s heartbeat record at once, if `incarnation` holds it.
    async fn release(&self, node: &str, incarnation: u64) -> Result<(), ClusterError>;

    /// The live heartbeat record of each of `nodes`, in order (`None`: expired
    /// or absent, i.e. dead).
    async fn heartbeats(&self, nodes: &[String]) -> Result<Vec<Option<Heartbeat>>, ClusterError>;

    /// Notifications that the membership document may have changed. Lossy and
    /// coalescing is fine: consumers reload the document on each item, and also
    /// poll, so a missed notification costs latency, never correctness.
    async fn watch(&self) -> Result<BoxStream<'static, ()>, ClusterError>;

    /// Of `nodes`, those whose heartbeat record, written with `ttl`, is
    /// older than `late` (at least one beat missed) while still live, and
    /// which hold no connection to the backend any more: a sign that the
    /// process died (its kernel closed its sockets) before its record
    /// expired. Only backends that list their clients' connections can
    /// tell; the default tells nothing (an empty list), and the heartbeat
    /// TTL decides as always. Implementations ask about connections only
    /// when some member is late, so a healthy cluster pays one cheap read.
    async fn disconnected(
        &self,
        nodes: &[String],
        ttl: Duration,
        late: Duration,
    ) -> Result<Vec<String>, ClusterError> {
        let _ = (nodes, ttl, late);
        Ok(Vec::new())
    }
}

/// Whether a heartbeat record written with `ttl` and expiring in
/// `remaining` is older than `late`.
pub fn is_late(remaining: Duration, ttl: Duration, late: Duration) -> bool {
    ttl.saturating_sub(remaining) > late
}
