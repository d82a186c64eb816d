//! The cluster core of wsring: what a backend must provide, and everything
//! built on top of that so each backend stays small.
//!
//! A backend implements up to three narrow traits:
//! * [`Registry`]: one compare-and-set membership document plus per-node
//!   heartbeat records with a TTL, and a change notification.
//! * [`Broker`]: publish / subscribe / unsubscribe on [`Topic`]s, with
//!   reconnect-and-resubscribe inside the backend.
//! * [`StreamStore`]: append-only, bounded per-user and per-room streams for
//!   durable mode.
//! * [`ServerRooms`]: the rooms the server put each user in, joined again on
//!   every connect.
//! * [`HookQueue`]: durable webhook queues, so a dead node's undelivered
//!   events are delivered by another.
//!
//! The membership protocol (join, heartbeat, crash reaping, draining, the epoch
//! counter and the ring every process derives) lives once in [`membership`],
//! written against [`Registry`] only. That is why every backend behaves the
//! same and why the in-memory backend ([`memory`]) is tiny.
//!
//! # Layout
//! * [`error`] — [`ClusterError`], the one error type at the trait boundary.
//! * [`registry`], [`broker`], [`stream`], [`server_rooms`], [`hook_queue`] —
//!   the traits and their types.
//! * [`view`] — the membership document and the derived [`View`] (ring + epoch).
//! * [`membership`] — the protocol: [`Membership`].
//! * [`probe`] — direct probes of suspected members, before removal.
//! * [`memory`] — the embedded backend used by `wsring dev`.
//! * [`report`] — the JSON reports every process serves from its view
//!   (`/api/nodes`, `/api/route`, `/api/ring`), whom to ask for the
//!   cluster-wide calls (`/api/presence`, `/api/disconnect`,
//!   `/api/rooms/…`) and how their answers merge.
//! * [`backend`] — [`Backend`], one pluggable backend: the URLs it takes and
//!   the parts it builds; the binary keeps a list of them.
//! * [`backoff`] — exponential backoff with full jitter, shared by backends.
//! * [`order`] — restoring each publisher's order across topics.
//! * [`link`] — connection health and the reconnect counter every backend reports.
//! * [`tls`] — the `cacertfile` parameter of `rediss://`, `amqps://` and `tls://` URLs.
//!
//! The conformance suite every backend must pass, the fault-injection proxy
//! and the local-cluster fault helpers live in `wsring-cluster-testkit`, a
//! dev-dependency only.

pub mod backend;
pub mod backoff;
pub mod broker;
pub mod error;
pub mod hook_queue;
pub mod link;
pub mod membership;
pub mod memory;
pub mod order;
pub mod probe;
pub mod registry;
pub mod report;
pub mod server_rooms;
pub mod stream;
pub mod tls;
pub mod view;

pub use backend::{Backend, Part};
pub use broker::{Broker, BrokerEvent, Inbox, InboxSender, Topic};

/// Locks a std mutex, recovering from poisoning. Every mutex in wsring guards
/// plain state (sets, maps, handles) that a panicking holder cannot leave
/// half-written in a harmful way, and no lock is held across an await, so
/// one panicked task must not take the whole process down with it.
pub fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Longest namespace.
pub const MAX_NAMESPACE_LEN: usize = 64;

/// Checks a namespace: 1–64 characters from `[A-Za-z0-9_-]`, the alphabet
/// that is valid in every backend's names (Redis keys, NATS subjects and KV
/// bucket names, AMQP exchange and queue names).
pub fn validate_namespace(ns: &str) -> Result<(), ClusterError> {
    let ok = !ns.is_empty()
        && ns.len() <= MAX_NAMESPACE_LEN
        && ns
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(ClusterError::InvalidNamespace(ns.to_owned()))
    }
}
pub use error::{BoxError, ClusterError};
pub use hook_queue::{HookQueue, Queued};
pub use link::Link;
pub use membership::{Fenced, Membership, MembershipConfig, ReapPlan};
pub use probe::{Probe, Prober, Suspicion};
pub use registry::{Heartbeat, Lease, Registry, Versioned};
pub use server_rooms::{RoomAdd, ServerRooms};
pub use stream::{Appended, ReadBatch, Retention, StoreLimit, StreamName, StreamPos, StreamStore};
pub use view::{Member, MemberState, MembershipDoc, NodeStats, View};
