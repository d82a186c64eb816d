//! [`Broker`] on Redis pub/sub.
//!
//! Subscriptions live on one dedicated subscriber connection per node. A
//! reader task forwards messages to the inbox; when the connection ends (a
//! server restart, `CLIENT KILL`, a network cut, or a keep-alive ping that got
//! no answer) it reports [`BrokerEvent::Disconnected`], reconnects with
//! full-jitter backoff, resubscribes every remembered channel, and only then
//! reports [`BrokerEvent::Resubscribed`], so the node knows from when on it is
//! live again and can catch up from durable streams. Publishes use a separate
//! auto-reconnecting multiplexed connection, so a subscriber outage never
//! blocks sending.
//!
//! The keep-alive must never tear down a healthy connection: on a subscribed
//! RESP2 connection Redis answers `PING` with the array `["pong", ""]`, not
//! `+PONG`, so any reply at all proves the connection alive; only silence
//! (a timeout) or an I/O error counts as dead. No lock is held across a
//! network call: the subscriber sink is a cheap clone of a channel to the
//! connection task, taken out of its mutex before each command.

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use redis::aio::{PubSubSink, PubSubStream};
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};
use wsring_cluster::backoff::Backoff;
use wsring_cluster::{Broker, BrokerEvent, ClusterError, Inbox, Link, Topic};

use crate::keys::Keys;
use crate::{Conn, at_startup, map_err};
use wsring_cluster::lock;

/// Keep-alive ping period on the subscriber connection: a half-open TCP
/// connection would otherwise look healthy forever.
pub const PING_EVERY: Duration = Duration::from_secs(5);

/// How long a keep-alive ping may go unanswered before the connection is
/// declared dead.
const PING_TIMEOUT: Duration = Duration::from_secs(3);

/// Bound on a SUBSCRIBE/UNSUBSCRIBE round trip. The subscriber sink has no
/// response timeout of its own.
const SUB_TIMEOUT: Duration = Duration::from_secs(5);

async fn bounded<T>(
    what: &'static str,
    limit: Duration,
    fut: impl std::future::Future<Output = redis::RedisResult<T>>,
) -> Result<T, ClusterError> {
    match tokio::time::timeout(limit, fut).await {
        Ok(r) => r.map_err(map_err),
        Err(_) => Err(ClusterError::unavailable(format!(
            "redis {what} got no answer within {limit:?}"
        ))),
    }
}

struct Shared {
    client: redis::Client,
    keys: Keys,
    /// The live subscriber sink, `None` while reconnecting. Cloned out of the
    /// mutex for every command, never used under it.
    sink: Mutex<Option<PubSubSink>>,
    /// Every subscribed topic, restored after a reconnect.
    topics: Mutex<BTreeSet<Topic>>,
    /// Wakes the reader to drop a connection found dead.
    kick: Notify,
    closed: CancellationToken,
    subscriber: Link,
}

impl Shared {
    fn sink(&self) -> Option<PubSubSink> {
        lock(&self.sink).clone()
    }

    /// Declares the subscriber connection dead and has the reader replace it.
    fn drop_connection(&self) {
        *lock(&self.sink) = None;
        self.kick.notify_one();
    }
}

/// One node's broker connection to Redis.
pub struct RedisBroker {
    shared: Arc<Shared>,
    publisher: Conn,
}

impl RedisBroker {
    /// Connects both connections, failing fast if Redis is unreachable.
    pub async fn connect(
        client: redis::Client,
        keys: Keys,
    ) -> Result<(Arc<RedisBroker>, Inbox), ClusterError> {
        let publisher = Conn::connect(&client, "publisher").await?;
        let (sink, stream) = at_startup("broker subscriber", client.get_async_pubsub())
            .await?
            .split();
        let shared = Arc::new(Shared {
            client,
            keys,
            sink: Mutex::new(Some(sink)),
            topics: Mutex::new(BTreeSet::new()),
            kick: Notify::new(),
            closed: CancellationToken::new(),
            subscriber: Link::new("redis", "broker"),
        });
        let (tx, rx) = wsring_cluster::broker::inbox();
        tokio::spawn(reader(Arc::clone(&shared), stream, tx));
        tokio::spawn(pinger(Arc::clone(&shared)));
        Ok((Arc::new(RedisBroker { shared, publisher }), rx))
    }
}

async fn reader(shared: Arc<Shared>, mut stream: PubSubStream, tx: wsring_cluster::InboxSender) {
    loop {
        loop {
            let msg = tokio::select! {
                _ = shared.closed.cancelled() => return,
                _ = shared.kick.notified() => break,
                m = stream.next() => m,
            };
            let Some(msg) = msg else { break };
            let Some(topic) = shared.keys.topic(msg.get_channel_name()) else {
                continue;
            };
            let payload = Bytes::copy_from_slice(msg.get_payload_bytes());
            if tx
                .send(BrokerEvent::Message { topic, payload })
                .await
                .is_err()
            {
                return;
            }
        }
        if shared.closed.is_cancelled() {
            return;
        }
        *lock(&shared.sink) = None;
        shared.subscriber.lost();
        warn!("redis subscriber connection lost; reconnecting");
        if tx.send(BrokerEvent::Disconnected).await.is_err() {
            return;
        }
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        stream = loop {
            tokio::select! {
                _ = shared.closed.cancelled() => return,
                _ = tokio::time::sleep(backoff.next_delay()) => {}
            }
            match resubscribe(&shared).await {
                Ok(s) => break s,
                Err(e) => {
                    warn!(error = %e, attempt = backoff.attempt(), "redis resubscribe failed")
                }
            }
        };
        shared.subscriber.ok();
        info!("redis subscriber reconnected and resubscribed");
        if tx.send(BrokerEvent::Resubscribed).await.is_err() {
            return;
        }
    }
}

/// Opens a new subscriber connection and restores every subscription. A
/// topic added while this runs is either in the snapshot or subscribed by its
/// caller on the new sink once it is installed; a caller that found no sink
/// gets an error and retries.
async fn resubscribe(shared: &Shared) -> Result<PubSubStream, ClusterError> {
    let (mut sink, stream) = at_startup("resubscribe", shared.client.get_async_pubsub())
        .await?
        .split();
    loop {
        let snapshot: BTreeSet<Topic> = lock(&shared.topics).clone();
        let channels: Vec<String> = snapshot.iter().map(|t| shared.keys.channel(t)).collect();
        if !channels.is_empty() {
            bounded("SUBSCRIBE", SUB_TIMEOUT, sink.subscribe(&channels)).await?;
        }
        // Install the sink only if no topic was added meanwhile; otherwise
        // subscribe the newcomers too before going live.
        let topics = lock(&shared.topics);
        if topics.iter().all(|t| snapshot.contains(t)) {
            *lock(&shared.sink) = Some(sink);
            return Ok(stream);
        }
    }
}

async fn pinger(shared: Arc<Shared>) {
    loop {
        tokio::select! {
            _ = shared.closed.cancelled() => return,
            _ = tokio::time::sleep(PING_EVERY) => {}
        }
        let Some(mut sink) = shared.sink() else {
            continue;
        };
        // Any reply proves the connection alive: on a subscribed RESP2
        // connection it is `["pong", ""]`, elsewhere `PONG`.
        match tokio::time::timeout(PING_TIMEOUT, sink.ping::<redis::Value>()).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) if !(e.is_io_error() || e.is_connection_dropped() || e.is_timeout()) => {
                debug!(error = %e, "redis subscriber keep-alive answered with an error; connection is alive");
            }
            Ok(Err(e)) => {
                warn!(error = %e, "redis subscriber keep-alive failed");
                shared.drop_connection();
            }
            Err(_) => {
                warn!(timeout = ?PING_TIMEOUT, "redis subscriber keep-alive got no answer");
                shared.drop_connection();
            }
        }
    }
}

#[async_trait]
impl Broker for RedisBroker {
    async fn publish(&self, topic: &Topic, payload: Bytes) -> Result<(), ClusterError> {
        self.publish_counted(topic, payload).await.map(|_| ())
    }

    /// `PUBLISH` answers with the number of subscribers that received it.
    async fn publish_counted(
        &self,
        topic: &Topic,
        payload: Bytes,
    ) -> Result<Option<usize>, ClusterError> {
        let channel = self.shared.keys.channel(topic);
        let received: usize = self
            .publisher
            .call("PUBLISH", |mut c| async move {
                redis::cmd("PUBLISH")
                    .arg(channel)
                    .arg(payload.as_ref())
                    .query_async::<usize>(&mut c)
                    .await
            })
            .await?;
        Ok(Some(received))
    }

    async fn subscribe(&self, topic: &Topic) -> Result<(), ClusterError> {
        if !lock(&self.shared.topics).insert(topic.clone()) {
            return Ok(());
        }
        let Some(mut sink) = self.shared.sink() else {
            lock(&self.shared.topics).remove(topic);
            return Err(ClusterError::unavailable(
                "redis subscriber is reconnecting",
            ));
        };
        if let Err(e) = bounded(
            "SUBSCRIBE",
            SUB_TIMEOUT,
            sink.subscribe(self.shared.keys.channel(topic)),
        )
        .await
        {
            lock(&self.shared.topics).remove(topic);
            // A stalled subscriber connection: have the reader replace it.
            self.shared.drop_connection();
            return Err(e);
        }
        Ok(())
    }

    async fn unsubscribe(&self, topic: &Topic) -> Result<(), ClusterError> {
        if !lock(&self.shared.topics).remove(topic) {
            return Ok(());
        }
        match self.shared.sink() {
            Some(mut sink) => {
                bounded(
                    "UNSUBSCRIBE",
                    SUB_TIMEOUT,
                    sink.unsubscribe(self.shared.keys.channel(topic)),
                )
                .await
            }
            // Forgotten topics are not restored on reconnect.
            None => Ok(()),
        }
    }

    fn healthy(&self) -> bool {
        self.shared.subscriber.is_up() && !self.shared.closed.is_cancelled()
    }

    async fn close(&self) {
        self.shared.closed.cancel();
        *lock(&self.shared.sink) = None;
        lock(&self.shared.topics).clear();
    }
}
