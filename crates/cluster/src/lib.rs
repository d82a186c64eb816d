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
//!
//! The membership protocol (join, heartbeat, crash reaping, draining, the epoch
//! counter and the ring every process derives) lives once in [`membership`],
//! written against [`Registry`] only. That is why every backend behaves the
//! same and why the in-memory backend ([`memory`]) is tiny.
//!
//! # Layout
//! * [`error`] — [`ClusterError`], the one error type at the trait boundary.
//! * [`registry`], [`broker`], [`stream`] — the three traits and their types.
//! * [`view`] — the membership document and the derived [`View`] (ring + epoch).
//! * [`membership`] — the protocol: [`Membership`].
//! * [`memory`] — the embedded backend used by `wsring dev`.
//! * [`backoff`] — exponential backoff with full jitter, shared by backends.
//! * `conformance` (feature `conformance`): one test suite every backend must pass,
//!   and `fault`, a TCP proxy that cuts connections on demand.

pub mod backoff;
pub mod broker;
#[cfg(feature = "conformance")]
pub mod conformance;
pub mod error;
#[cfg(feature = "conformance")]
pub mod fault;
pub mod membership;
pub mod memory;
pub mod registry;
pub mod stream;
pub mod view;

pub use broker::{Broker, BrokerEvent, Inbox, Topic};
pub use error::{BoxError, ClusterError};
pub use membership::{Membership, MembershipConfig};
pub use registry::{Registry, Versioned};
pub use stream::{Appended, ReadBatch, Retention, StreamName, StreamPos, StreamStore};
pub use view::{Member, MemberState, MembershipDoc, NodeStats, View};
