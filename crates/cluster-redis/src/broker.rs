//! [`Broker`] on Redis pub/sub.
//!
//! Subscriptions live on one dedicated subscriber connection per node. A
//! reader task forwards messages to the inbox; when the connection ends (a
//! server restart, `CLIENT KILL`, a network cut, or a failed keep-alive ping)
//! it reports [`BrokerEvent::Disconnected`], reconnects with full-jitter
//! backoff, resubscribes every remembered channel, and only then reports
//! [`BrokerEvent::Resubscribed`], so the node knows from when on it is live
//! again and can catch up from durable streams. Publishes use a separate
//! auto-reconnecting multiplexed connection, so a subscriber outage never
//! blocks sending.

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use redis::aio::{ConnectionManager, PubSubSink, PubSubStream};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::{Mutex, Notify, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use wsring_cluster::backoff::Backoff;
use wsring_cluster::broker::INBOX_CAPACITY;
use wsring_cluster::{Broker, BrokerEvent, ClusterError, Inbox, Topic};

use crate::keys::Keys;
use crate::registry::manager_config;
use crate::{at_startup, map_err};

/// Keep-alive ping period on the subscriber connection: a half-open TCP
/// connection would otherwise look healthy forever.
const PING_EVERY: Duration = Duration::from_secs(5);

/// Bound on a SUBSCRIBE/UNSUBSCRIBE round trip. The subscriber sink has no
/// response timeout of its own, and callers hold locks around these calls.
const SUB_TIMEOUT: Duration = Duration::from_secs(5);

async fn bounded<T>(
    fut: impl std::future::Future<Output = redis::RedisResult<T>>,
) -> Result<T, ClusterError> {
    match tokio::time::timeout(SUB_TIMEOUT, fut).await {
        Ok(r) => r.map_err(map_err),
        Err(_) => Err(ClusterError::unavailable(
            "redis subscription command timed out",
        )),
    }
}

struct Subs {
    sink: Option<PubSubSink>,
    topics: BTreeSet<Topic>,
}

struct Shared {
    client: redis::Client,
    keys: Keys,
    subs: Mutex<Subs>,
    up: AtomicBool,
    /// Wakes the reader to drop a connection the pinger found dead.
    kick: Notify,
    closed: CancellationToken,
}

/// One node's broker connection to Redis.
pub struct RedisBroker {
    shared: Arc<Shared>,
    publisher: ConnectionManager,
}

impl RedisBroker {
    /// Connects both connections, failing fast if Redis is unreachable.
    pub async fn connect(
        client: redis::Client,
        keys: Keys,
    ) -> Result<(Arc<RedisBroker>, Inbox), ClusterError> {
        let publisher = at_startup(
            "broker publisher",
            client.get_connection_manager_with_config(manager_config()),
        )
        .await?;
        let (sink, stream) = at_startup("broker subscriber", client.get_async_pubsub())
            .await?
            .split();
        let shared = Arc::new(Shared {
            client,
            keys,
            subs: Mutex::new(Subs {
                sink: Some(sink),
                topics: BTreeSet::new(),
            }),
            up: AtomicBool::new(true),
            kick: Notify::new(),
            closed: CancellationToken::new(),
        });
        let (tx, rx) = mpsc::channel(INBOX_CAPACITY);
        tokio::spawn(reader(Arc::clone(&shared), stream, tx));
        tokio::spawn(pinger(Arc::clone(&shared)));
        Ok((Arc::new(RedisBroker { shared, publisher }), rx))
    }
}

async fn reader(shared: Arc<Shared>, mut stream: PubSubStream, tx: mpsc::Sender<BrokerEvent>) {
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
        shared.up.store(false, Ordering::SeqCst);
        shared.subs.lock().await.sink = None;
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
        shared.up.store(true, Ordering::SeqCst);
        info!("redis subscriber reconnected and resubscribed");
        if tx.send(BrokerEvent::Resubscribed).await.is_err() {
            return;
        }
    }
}

/// Opens a new subscriber connection and restores every subscription. The
/// lock is held throughout, so a concurrent subscribe cannot slip between the
/// snapshot and the swap.
async fn resubscribe(shared: &Shared) -> Result<PubSubStream, ClusterError> {
    let (mut sink, stream) = at_startup("resubscribe", shared.client.get_async_pubsub())
        .await?
        .split();
    let mut subs = shared.subs.lock().await;
    let channels: Vec<String> = subs.topics.iter().map(|t| shared.keys.channel(t)).collect();
    if !channels.is_empty() {
        bounded(sink.subscribe(&channels)).await?;
    }
    subs.sink = Some(sink);
    Ok(stream)
}

async fn pinger(shared: Arc<Shared>) {
    loop {
        tokio::select! {
            _ = shared.closed.cancelled() => return,
            _ = tokio::time::sleep(PING_EVERY) => {}
        }
        let mut subs = shared.subs.lock().await;
        let Some(sink) = subs.sink.as_mut() else {
            continue;
        };
        let ok = matches!(
            tokio::time::timeout(Duration::from_secs(2), sink.ping::<String>()).await,
            Ok(Ok(_))
        );
        if !ok {
            warn!("redis subscriber ping failed");
            subs.sink = None;
            shared.kick.notify_one();
        }
    }
}

#[async_trait]
impl Broker for RedisBroker {
    async fn publish(&self, topic: &Topic, payload: Bytes) -> Result<(), ClusterError> {
        let mut c = self.publisher.clone();
        redis::cmd("PUBLISH")
            .arg(self.shared.keys.channel(topic))
            .arg(payload.as_ref())
            .query_async::<()>(&mut c)
            .await
            .map_err(map_err)
    }

    async fn subscribe(&self, topic: &Topic) -> Result<(), ClusterError> {
        let mut subs = self.shared.subs.lock().await;
        if subs.topics.contains(topic) {
            return Ok(());
        }
        let Some(sink) = subs.sink.as_mut() else {
            return Err(ClusterError::unavailable(
                "redis subscriber is reconnecting",
            ));
        };
        if let Err(e) = bounded(sink.subscribe(self.shared.keys.channel(topic))).await {
            // A stalled subscriber connection: have the reader replace it.
            subs.sink = None;
            self.shared.kick.notify_one();
            return Err(e);
        }
        subs.topics.insert(topic.clone());
        Ok(())
    }

    async fn unsubscribe(&self, topic: &Topic) -> Result<(), ClusterError> {
        let mut subs = self.shared.subs.lock().await;
        if !subs.topics.remove(topic) {
            return Ok(());
        }
        match subs.sink.as_mut() {
            Some(sink) => bounded(sink.unsubscribe(self.shared.keys.channel(topic))).await,
            // Forgotten topics are not restored on reconnect.
            None => Ok(()),
        }
    }

    fn healthy(&self) -> bool {
        self.shared.up.load(Ordering::SeqCst)
    }

    async fn close(&self) {
        self.shared.closed.cancel();
        self.shared.up.store(false, Ordering::SeqCst);
        let mut subs = self.shared.subs.lock().await;
        subs.sink = None;
        subs.topics.clear();
    }
}
