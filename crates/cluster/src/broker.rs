//! The broker trait: publish/subscribe on a handful of topic kinds.
//!
//! Backends map [`Topic`]s to their own primitives (Redis channels, NATS
//! subjects, RabbitMQ exchanges and routing keys; see docs/ARCHITECTURE.md).
//! Each backend owns its reconnect loop: it remembers the subscribed topics,
//! resubscribes after a reconnect, and then reports [`BrokerEvent::Resubscribed`]
//! so the node can catch up on anything it missed while disconnected.

use async_trait::async_trait;
use bytes::Bytes;
use std::sync::Arc;
use tokio::sync::{Semaphore, mpsc};

use crate::error::ClusterError;

/// Where a message is published.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Topic {
    /// Directed delivery to one node (hash mode).
    Node(String),
    /// Every node (broadcast mode, and `/api/broadcast`).
    Cluster,
    /// Nodes that have at least one local member of the room.
    Room(String),
}

/// What a broker connection reports to its node.
#[derive(Debug, Clone)]
pub enum BrokerEvent {
    /// A message on a subscribed topic.
    Message {
        /// The topic it arrived on.
        topic: Topic,
        /// The raw payload (an [`wsring_protocol::Envelope`]).
        payload: Bytes,
    },
    /// The connection dropped; messages published now may be missed.
    Disconnected,
    /// Reconnected and resubscribed to every topic: catch up from durable
    /// streams if needed.
    Resubscribed,
}

/// Capacity of a broker inbox in messages. Generous: a full inbox applies
/// backpressure to the backend's reader task, which for Redis and NATS means
/// the server starts buffering (and eventually drops a slow subscriber);
/// RabbitMQ deliveries (auto-ack) then wait in the client. Keep the node fast.
pub const INBOX_CAPACITY: usize = 65_536;

/// Capacity of a broker inbox in payload bytes (64 MiB): the inbox is full
/// when either bound is reached, so a burst of large messages cannot grow a
/// node's memory past this, whatever their count.
pub const INBOX_BYTES: usize = 64 * 1024 * 1024;

/// A new inbox: the sending half for the backend, the receiving half for the
/// node. Bounded by [`INBOX_CAPACITY`] messages and [`INBOX_BYTES`] bytes.
pub fn inbox() -> (InboxSender, Inbox) {
    let (tx, rx) = mpsc::channel(INBOX_CAPACITY);
    let bytes = Arc::new(Semaphore::new(INBOX_BYTES));
    (
        InboxSender {
            tx,
            bytes: Arc::clone(&bytes),
        },
        Inbox { rx, bytes },
    )
}

/// The bytes an event holds against the inbox budget.
fn weight(ev: &BrokerEvent) -> u32 {
    match ev {
        // A single message larger than the whole budget still fits alone.
        BrokerEvent::Message { payload, .. } => {
            u32::try_from(payload.len().min(INBOX_BYTES)).unwrap_or(u32::MAX)
        }
        _ => 0,
    }
}

/// The inbox is gone (the node dropped it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InboxClosed;

/// The backend's half of an inbox.
#[derive(Clone, Debug)]
pub struct InboxSender {
    tx: mpsc::Sender<BrokerEvent>,
    bytes: Arc<Semaphore>,
}

impl InboxSender {
    /// Queues `ev`, waiting while the inbox is full (by count or by bytes).
    pub async fn send(&self, ev: BrokerEvent) -> Result<(), InboxClosed> {
        let w = weight(&ev);
        if w > 0 {
            self.bytes
                .acquire_many(w)
                .await
                .map_err(|_| InboxClosed)?
                .forget();
        }
        if self.tx.send(ev).await.is_err() {
            self.bytes.add_permits(w as usize);
            return Err(InboxClosed);
        }
        Ok(())
    }

    /// Whether the node dropped its inbox.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

/// The receiving half of a broker connection.
#[derive(Debug)]
pub struct Inbox {
    rx: mpsc::Receiver<BrokerEvent>,
    bytes: Arc<Semaphore>,
}

impl Inbox {
    /// The next event; `None` once the broker connection is closed for good.
    pub async fn recv(&mut self) -> Option<BrokerEvent> {
        let ev = self.rx.recv().await?;
        self.bytes.add_permits(weight(&ev) as usize);
        Some(ev)
    }

    /// Events queued and not yet received.
    pub fn len(&self) -> usize {
        self.rx.len()
    }

    /// Whether no event is queued.
    pub fn is_empty(&self) -> bool {
        self.rx.is_empty()
    }

    /// The next event if one is queued.
    pub fn try_recv(&mut self) -> Option<BrokerEvent> {
        let ev = self.rx.try_recv().ok()?;
        self.bytes.add_permits(weight(&ev) as usize);
        Some(ev)
    }
}

/// A live broker connection for one node.
///
/// Ordering: messages from one publisher connection arrive in publish order,
/// also across different topics (a node relies on it, e.g. a room message
/// followed by a direct one; the conformance suite checks it with marker
/// messages). Nothing is promised across publishers.
#[async_trait]
pub trait Broker: Send + Sync + 'static {
    /// Publishes `payload` to `topic`. Succeeds once the broker has taken the
    /// message (not when subscribers have received it).
    async fn publish(&self, topic: &Topic, payload: Bytes) -> Result<(), ClusterError>;

    /// [`Broker::publish`], also saying how many subscribers the backend
    /// handed the message to, where it can tell: `Some(0)` means no node is
    /// subscribed to `topic` (e.g. a node that died before the ring dropped
    /// it), so the message reached nobody. `None`: the backend cannot tell
    /// (the default; NATS core and RabbitMQ do not report it, and Redis
    /// Cluster's count covers one shard node only).
    async fn publish_counted(
        &self,
        topic: &Topic,
        payload: Bytes,
    ) -> Result<Option<usize>, ClusterError> {
        self.publish(topic, payload).await.map(|()| None)
    }

    /// Starts receiving `topic` (idempotent). Returns once the subscription is
    /// active, so a publish after it returns is received.
    async fn subscribe(&self, topic: &Topic) -> Result<(), ClusterError>;

    /// Stops receiving `topic` (idempotent).
    async fn unsubscribe(&self, topic: &Topic) -> Result<(), ClusterError>;

    /// Whether the connection is currently up.
    fn healthy(&self) -> bool;

    /// Closes the connection and ends the inbox.
    async fn close(&self);
}
