//! The in-memory backend: registry, broker, stream store, server-side
//! rooms and durable webhook queues in one process.
//!
//! This is what `wsring dev` runs on. It is deliberately small: the membership
//! protocol, routing and durability logic all live above the traits, so these
//! files only store bytes. All three pieces use `tokio::time`, so tests can
//! pause and advance the clock instead of sleeping.

mod broker;
mod hook_queue;
mod registry;
mod server_rooms;
mod streams;

pub use broker::{MemoryBroker, MemoryHub};
pub use hook_queue::MemoryHookQueue;
pub use registry::MemoryRegistry;
pub use server_rooms::{MAX_MEMBERSHIPS, MemoryServerRooms};
pub use streams::MemoryStreams;

use std::sync::Arc;

use crate::stream::Retention;

/// All memory backends, shared by every node of one process.
#[derive(Clone)]
pub struct MemoryBackend {
    /// Membership storage.
    pub registry: Arc<MemoryRegistry>,
    /// Pub/sub hub; call [`MemoryHub::connect`] once per node.
    pub hub: Arc<MemoryHub>,
    /// Durable streams.
    pub streams: Arc<MemoryStreams>,
    /// Server-side room memberships.
    pub rooms: Arc<MemoryServerRooms>,
    /// Durable webhook queues.
    pub hook_queue: Arc<MemoryHookQueue>,
}

impl MemoryBackend {
    /// A fresh, empty backend.
    pub fn new(retention: Retention) -> Self {
        MemoryBackend {
            registry: Arc::new(MemoryRegistry::default()),
            hub: Arc::new(MemoryHub::default()),
            streams: Arc::new(MemoryStreams::new(retention)),
            rooms: Arc::new(MemoryServerRooms::default()),
            hook_queue: Arc::new(MemoryHookQueue::default()),
        }
    }
}

use crate::lock;
