//! The broker trait: publish/subscribe on a handful of topic kinds.
//!
//! Backends map [`Topic`]s to their own primitives (Redis channels, NATS
//! subjects, RabbitMQ exchanges and routing keys; see docs/ARCHITECTURE.md).
//! Each backend owns its reconnect loop: it remembers the subscribed topics,
//! resubscribes after a reconnect, and then reports [`BrokerEvent::Resubscribed`]
//! so the node can catch up on anything it missed while disconnected.

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::mpsc;

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

/// The receiving half of a broker connection.
pub type Inbox = mpsc::Receiver<BrokerEvent>;

/// Capacity of a broker inbox. Generous: a full inbox applies backpressure to
/// the backend's reader task, which for Redis and NATS means the server starts
/// buffering (and eventually drops a slow subscriber); RabbitMQ deliveries
/// (auto-ack) then buffer in the node's own memory instead. Keep the node fast.
pub const INBOX_CAPACITY: usize = 65_536;

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
