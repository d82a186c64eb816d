//! The in-memory backend: registry, broker and stream store in one process.
//!
//! This is what `wsring dev` runs on. It is deliberately small: the membership
//! protocol, routing and durability logic all live above the traits, so these
//! files only store bytes. All three pieces use `tokio::time`, so tests can
//! pause and advance the clock instead of sleeping.

mod broker;
mod registry;
mod streams;

pub use broker::{MemoryBroker, MemoryHub};
pub use registry::MemoryRegistry;
pub use streams::MemoryStreams;

use std::sync::Arc;

use crate::stream::Retention;

/// All three memory backends, shared by every node of one process.
#[derive(Clone)]
pub struct MemoryBackend {
    /// Membership storage.
    pub registry: Arc<MemoryRegistry>,
    /// Pub/sub hub; call [`MemoryHub::connect`] once per node.
    pub hub: Arc<MemoryHub>,
    /// Durable streams.
    pub streams: Arc<MemoryStreams>,
}

impl MemoryBackend {
    /// A fresh, empty backend.
    pub fn new(retention: Retention) -> Self {
        MemoryBackend {
            registry: Arc::new(MemoryRegistry::default()),
            hub: Arc::new(MemoryHub::default()),
            streams: Arc::new(MemoryStreams::new(retention)),
        }
    }
}

use crate::lock;
