//! The backend conformance suite against the in-memory backend.

use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use wsring_cluster::memory::MemoryBackend;
use wsring_cluster::{Broker, HookQueue, Inbox, Registry, Retention, ServerRooms, StreamStore};
use wsring_cluster_testkit::conformance::Harness;

/// Namespaces map to separate in-memory backends, mirroring key prefixes.
#[derive(Default)]
struct Memory {
    spaces: Mutex<HashMap<String, MemoryBackend>>,
}

impl Memory {
    fn space(&self, ns: &str, retention: Retention) -> MemoryBackend {
        self.spaces
            .lock()
            .expect("lock")
            .entry(ns.to_owned())
            .or_insert_with(|| MemoryBackend::new(retention))
            .clone()
    }
}

#[async_trait]
impl Harness for Memory {
    async fn registry(&self, ns: &str, _ttl: Duration) -> Option<Arc<dyn Registry>> {
        Some(self.space(ns, Retention::default()).registry)
    }
    async fn broker(&self, ns: &str, _node: &str) -> Option<(Arc<dyn Broker>, Inbox)> {
        let (b, inbox) = self.space(ns, Retention::default()).hub.connect();
        Some((b, inbox))
    }
    async fn streams(&self, ns: &str, retention: Retention) -> Option<Arc<dyn StreamStore>> {
        Some(self.space(ns, retention).streams)
    }
    async fn server_rooms(&self, ns: &str) -> Option<Arc<dyn ServerRooms>> {
        Some(self.space(ns, Retention::default()).rooms)
    }
    async fn hook_queue(&self, ns: &str) -> Option<Arc<dyn HookQueue>> {
        Some(self.space(ns, Retention::default()).hook_queue)
    }
}

async fn memory() -> Option<Memory> {
    Some(Memory::default())
}

wsring_cluster_testkit::conformance_suite!(memory());
