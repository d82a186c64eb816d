//! In-memory [`Broker`]: a hub mapping topics to subscriber inboxes.
//!
//! [`MemoryBroker::sever`] simulates losing the broker connection (the
//! subscriptions vanish, publishes fail) and [`MemoryBroker::restore`] the
//! reconnect, so the node's catch-up logic is testable without a real server.

use async_trait::async_trait;
use bytes::Bytes;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::lock;
use crate::broker::{Broker, BrokerEvent, Inbox, Topic};
use crate::error::ClusterError;

type Subscribers = HashMap<u64, crate::broker::InboxSender>;

/// The shared pub/sub hub of one process.
#[derive(Default)]
pub struct MemoryHub {
    topics: Mutex<HashMap<Topic, Subscribers>>,
    next_id: AtomicU64,
}

impl MemoryHub {
    /// Opens a connection: a broker handle and its inbox.
    pub fn connect(self: &Arc<Self>) -> (Arc<MemoryBroker>, Inbox) {
        let (tx, rx) = crate::broker::inbox();
        let broker = MemoryBroker {
            hub: Arc::clone(self),
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            tx,
            topics: Mutex::new(BTreeSet::new()),
            up: AtomicBool::new(true),
            link: crate::Link::new("memory", "broker"),
        };
        (Arc::new(broker), rx)
    }

    fn add(&self, topic: &Topic, id: u64, tx: &crate::broker::InboxSender) {
        lock(&self.topics)
            .entry(topic.clone())
            .or_default()
            .insert(id, tx.clone());
    }

    fn remove(&self, topic: &Topic, id: u64) {
        let mut topics = lock(&self.topics);
        if let Some(subs) = topics.get_mut(topic) {
            subs.remove(&id);
            if subs.is_empty() {
                topics.remove(topic);
            }
        }
    }

    /// Number of connections subscribed to `topic` (for tests).
    pub fn subscribers(&self, topic: &Topic) -> usize {
        lock(&self.topics).get(topic).map_or(0, HashMap::len)
    }
}

/// One node's connection to a [`MemoryHub`].
pub struct MemoryBroker {
    hub: Arc<MemoryHub>,
    id: u64,
    tx: crate::broker::InboxSender,
    topics: Mutex<BTreeSet<Topic>>,
    up: AtomicBool,
    link: crate::Link,
}

impl MemoryBroker {
    /// Simulates a dropped connection: subscriptions vanish from the hub and
    /// publishes fail until [`restore`](Self::restore).
    pub async fn sever(&self) {
        if self.up.swap(false, Ordering::SeqCst) {
            self.link.lost();
            for t in lock(&self.topics).iter() {
                self.hub.remove(t, self.id);
            }
            let _ = self.tx.send(BrokerEvent::Disconnected).await;
        }
    }

    /// Simulates the reconnect: resubscribes everything, then reports it.
    pub async fn restore(&self) {
        if !self.up.swap(true, Ordering::SeqCst) {
            self.link.ok();
            for t in lock(&self.topics).iter() {
                self.hub.add(t, self.id, &self.tx);
            }
            let _ = self.tx.send(BrokerEvent::Resubscribed).await;
        }
    }
}

#[async_trait]
impl Broker for MemoryBroker {
    async fn publish(&self, topic: &Topic, payload: Bytes) -> Result<(), ClusterError> {
        self.publish_counted(topic, payload).await.map(|_| ())
    }

    async fn publish_counted(
        &self,
        topic: &Topic,
        payload: Bytes,
    ) -> Result<Option<usize>, ClusterError> {
        if !self.up.load(Ordering::SeqCst) {
            return Err(ClusterError::unavailable(
                "memory broker connection severed",
            ));
        }
        let targets: Vec<_> = lock(&self.hub.topics)
            .get(topic)
            .map(|subs| subs.values().cloned().collect())
            .unwrap_or_default();
        let mut received = 0;
        for tx in targets {
            // A closed inbox is a crashed node; like a real broker, ignore
            // it (and do not count it as a receiver).
            if tx
                .send(BrokerEvent::Message {
                    topic: topic.clone(),
                    payload: payload.clone(),
                })
                .await
                .is_ok()
            {
                received += 1;
            }
        }
        Ok(Some(received))
    }

    async fn subscribe(&self, topic: &Topic) -> Result<(), ClusterError> {
        if lock(&self.topics).insert(topic.clone()) && self.up.load(Ordering::SeqCst) {
            self.hub.add(topic, self.id, &self.tx);
        }
        Ok(())
    }

    async fn unsubscribe(&self, topic: &Topic) -> Result<(), ClusterError> {
        if lock(&self.topics).remove(topic) {
            self.hub.remove(topic, self.id);
        }
        Ok(())
    }

    fn healthy(&self) -> bool {
        self.up.load(Ordering::SeqCst)
    }

    async fn close(&self) {
        self.up.store(false, Ordering::SeqCst);
        let topics = std::mem::take(&mut *lock(&self.topics));
        for t in &topics {
            self.hub.remove(t, self.id);
        }
    }
}

impl Drop for MemoryBroker {
    fn drop(&mut self) {
        for t in lock(&self.topics).iter() {
            self.hub.remove(t, self.id);
        }
    }
}
