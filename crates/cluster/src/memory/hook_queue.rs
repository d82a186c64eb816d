//! In-memory [`HookQueue`]: one deque per queue behind a mutex. Every
//! owner bounds its own queue in bytes, so the whole stays bounded by the
//! number of queues times that bound.

use async_trait::async_trait;
use bytes::Bytes;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

use super::lock;
use crate::error::ClusterError;
use crate::hook_queue::{HookQueue, Queued};

/// Durable webhook queues for a single process.
#[derive(Default)]
pub struct MemoryHookQueue {
    queues: Mutex<BTreeMap<String, Queue>>,
}

#[derive(Default)]
struct Queue {
    last: u64,
    events: VecDeque<Queued>,
}

#[async_trait]
impl HookQueue for MemoryHookQueue {
    async fn append(&self, queue: &str, events: &[Bytes]) -> Result<(), ClusterError> {
        let mut all = lock(&self.queues);
        let q = all.entry(queue.to_owned()).or_default();
        for body in events {
            q.last += 1;
            q.events.push_back(Queued {
                seq: q.last,
                body: body.clone(),
            });
        }
        Ok(())
    }

    async fn read(&self, queue: &str, after: u64, max: usize) -> Result<Vec<Queued>, ClusterError> {
        let all = lock(&self.queues);
        Ok(all.get(queue).map_or_else(Vec::new, |q| {
            q.events
                .iter()
                .filter(|e| e.seq > after)
                .take(max)
                .cloned()
                .collect()
        }))
    }

    async fn remove(&self, queue: &str, upto: u64) -> Result<(), ClusterError> {
        if let Some(q) = lock(&self.queues).get_mut(queue) {
            while q.events.front().is_some_and(|e| e.seq <= upto) {
                q.events.pop_front();
            }
        }
        Ok(())
    }

    async fn forget(&self, queue: &str) -> Result<(), ClusterError> {
        lock(&self.queues).remove(queue);
        Ok(())
    }

    async fn queues(&self) -> Result<Vec<String>, ClusterError> {
        Ok(lock(&self.queues).keys().cloned().collect())
    }
}
