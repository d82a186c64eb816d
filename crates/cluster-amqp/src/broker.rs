//! The RabbitMQ [`Broker`]: one AMQP connection with one exclusive queue and
//! one consumer, plus a supervisor task that pumps deliveries into the inbox
//! and owns the reconnect-and-rebind loop.
//!
//! No lock is held across a network call: `publish` clones the current
//! `Session` out of a std mutex; `subscribe` records the topic in the wanted
//! set first and then binds on the session it found. A reconnect binds a
//! snapshot of the wanted set and, before going live, binds whatever was
//! added meanwhile, so a reconnect and a concurrent subscribe always agree:
//! either the subscribe binds on the new session, or the reconnect binds the
//! topic the subscribe remembered, never neither. Callers serialise
//! subscribe/unsubscribe of one topic (the node's room reconciler does).

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};
use lapin::message::Delivery;
use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions,
    QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{FieldTable, ShortString};
use lapin::uri::AMQPUri;
use lapin::{
    BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, Consumer, Event,
    ExchangeKind,
};
use std::collections::BTreeSet;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tokio::time::timeout;
use tracing::{debug, info, warn};
use wsring_cluster::backoff::Backoff;
use wsring_cluster::broker::INBOX_CAPACITY;
use wsring_cluster::{Broker, BrokerEvent, ClusterError, Inbox, Topic};

use crate::CONNECT_TIMEOUT;
use crate::names::{ExchangeType, Names, unique_suffix};

/// First reconnect delay ceiling (full jitter: the real delay is 0..=this).
pub const RECONNECT_BASE: Duration = Duration::from_millis(100);
/// Largest reconnect delay ceiling.
pub const RECONNECT_CAP: Duration = Duration::from_secs(5);
/// Longest wait for a publisher confirm. A broker under a resource alarm
/// stops confirming; callers get `Unavailable` instead of hanging.
pub const PUBLISH_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for a bind or unbind; past it the connection counts as dead.
pub const OP_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for a clean `connection.close` handshake.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// What a broker connection needs to (re)connect; built (and validated) by
/// [`connect_broker`](crate::connect_broker).
#[derive(Debug, Clone)]
pub(crate) struct Config {
    /// Server URI, with heartbeat and timeout filled in.
    pub(crate) uri: AMQPUri,
    /// PEM of a private CA for `amqps://` (`cacertfile`).
    pub(crate) ca: Option<String>,
    /// The namespace's exchange and queue names.
    pub(crate) names: Names,
    /// This node's id (queue name, consumer tag, connection name).
    pub(crate) node: String,
    /// `host:port/vhost` for logs.
    pub(crate) endpoint: String,
}

/// A RabbitMQ broker connection for one node. Created by
/// [`connect_broker`](crate::connect_broker).
pub struct AmqpBroker {
    shared: Arc<Shared>,
}

/// State shared by the handle and the supervisor task.
struct Shared {
    cfg: Config,
    /// Topics the node wants, restored after a reconnect.
    wanted: Mutex<BTreeSet<Topic>>,
    /// Reconnect counter and health of this connection.
    link: wsring_cluster::Link,
    /// The session in use, `None` while disconnected.
    live: Mutex<Option<Arc<Session>>>,
    healthy: AtomicBool,
    /// Set once by `close` or drop; every task watches it.
    closed: watch::Sender<bool>,
    supervisor: Mutex<Option<JoinHandle<()>>>,
    generations: AtomicU64,
}

/// One AMQP connection and what was declared on it.
struct Session {
    generation: u64,
    conn: Connection,
    /// Confirm-mode channel for publishes.
    publish: Channel,
    /// Declarations, bindings and the consumer.
    control: Channel,
    queue: ShortString,
    /// Signalled by any task that saw an operation on this session fail.
    failed: Notify,
}

impl AmqpBroker {
    /// Connects, declares the namespace's exchanges and this connection's
    /// queue, starts the consumer and the supervisor. Fails within
    /// [`CONNECT_TIMEOUT`] if RabbitMQ is unreachable.
    pub(crate) async fn connect(cfg: Config) -> Result<(AmqpBroker, Inbox), ClusterError> {
        let opened = timeout(CONNECT_TIMEOUT, Session::open(&cfg, 0)).await;
        let (session, consumer, events) = match opened {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err(e.into_startup_error()),
            Err(_) => {
                return Err(ClusterError::unavailable(format!(
                    "RabbitMQ at {} not reachable within {CONNECT_TIMEOUT:?}",
                    cfg.endpoint
                )));
            }
        };
        let session = Arc::new(session);
        info!(
            namespace = cfg.names.namespace(),
            node = %cfg.node,
            endpoint = %cfg.endpoint,
            generation = 0,
            queue = %session.queue,
            "rabbitmq connected"
        );
        let (tx, inbox) = wsring_cluster::broker::inbox();
        let shared = Arc::new(Shared {
            cfg,
            wanted: Mutex::new(BTreeSet::new()),
            link: wsring_cluster::Link::new("amqp", "broker"),
            live: Mutex::new(Some(Arc::clone(&session))),
            healthy: AtomicBool::new(true),
            closed: watch::channel(false).0,
            supervisor: Mutex::new(None),
            generations: AtomicU64::new(1),
        });
        let task = tokio::spawn(supervise(
            Arc::clone(&shared),
            session,
            consumer,
            events,
            tx,
        ));
        *lock(&shared.supervisor) = Some(task);
        Ok((AmqpBroker { shared }, inbox))
    }
}

#[async_trait]
impl Broker for AmqpBroker {
    async fn publish(&self, topic: &Topic, payload: Bytes) -> Result<(), ClusterError> {
        let (exchange, key) = amqp_route(&self.shared.cfg.names, topic)?;
        let session = self.shared.current()?;
        if session.conn.status().blocked() {
            // A resource alarm: publishes would only queue up unconfirmed.
            return Err(ClusterError::unavailable(
                "RabbitMQ has blocked publishing (resource alarm)",
            ));
        }
        let confirmed = timeout(PUBLISH_TIMEOUT, async {
            session
                .publish
                .basic_publish(
                    exchange,
                    key,
                    BasicPublishOptions::default(),
                    &payload,
                    BasicProperties::default(),
                )
                .await?
                .await
        })
        .await;
        match confirmed {
            Ok(Ok(Confirmation::Ack(_))) => Ok(()),
            Ok(Ok(Confirmation::Nack(_))) => Err(ClusterError::unavailable(
                "RabbitMQ rejected the message (publisher nack)",
            )),
            Ok(Ok(Confirmation::NotRequested)) => Err(ClusterError::backend(
                "publisher confirms are not enabled on the publish channel",
            )),
            Ok(Err(e)) => {
                session.fail("publish failed", &e);
                Err(ClusterError::unavailable(e))
            }
            Err(_) => Err(ClusterError::unavailable(format!(
                "publish not confirmed within {PUBLISH_TIMEOUT:?}"
            ))),
        }
    }

    async fn subscribe(&self, topic: &Topic) -> Result<(), ClusterError> {
        let (exchange, key) = amqp_route(&self.shared.cfg.names, topic)?;
        if *self.shared.closed.borrow() {
            return Err(ClusterError::Closed);
        }
        if !lock(&self.shared.wanted).insert(topic.clone()) {
            return Ok(());
        }
        let Some(session) = self.shared.live() else {
            // Like the in-memory backend while severed: remembered; the
            // reconnect binds it before reporting `Resubscribed`.
            debug!(?topic, "not connected; topic will be bound on reconnect");
            return Ok(());
        };
        if let Err(e) = session
            .with_timeout("queue.bind", session.bind(exchange, key))
            .await
        {
            lock(&self.shared.wanted).remove(topic);
            return Err(e);
        }
        debug!(?topic, queue = %session.queue, "subscribed");
        Ok(())
    }

    async fn unsubscribe(&self, topic: &Topic) -> Result<(), ClusterError> {
        let (exchange, key) = amqp_route(&self.shared.cfg.names, topic)?;
        if !lock(&self.shared.wanted).remove(topic) {
            return Ok(());
        }
        // Removed first: if the unbind fails, the connection is torn down and
        // the fresh queue of the reconnect simply never gets this binding.
        let Some(session) = self.shared.live() else {
            return Ok(());
        };
        session
            .with_timeout("queue.unbind", session.unbind(exchange, key))
            .await?;
        debug!(?topic, queue = %session.queue, "unsubscribed");
        Ok(())
    }

    fn healthy(&self) -> bool {
        self.shared.healthy.load(Ordering::SeqCst)
    }

    async fn close(&self) {
        let already = self.shared.closed.send_replace(true);
        self.shared.healthy.store(false, Ordering::SeqCst);
        // The supervisor closes the connection and drops the inbox sender on
        // its way out; wait for it so the inbox has ended when we return.
        let task = lock(&self.shared.supervisor).take();
        if let Some(task) = task {
            let _ = timeout(CLOSE_TIMEOUT * 2, task).await;
        }
        let leftover = lock(&self.shared.live).take();
        if let Some(session) = leftover {
            session.shutdown().await;
        }
        if !already {
            info!(
                namespace = self.shared.cfg.names.namespace(),
                node = %self.shared.cfg.node,
                "rabbitmq broker closed"
            );
        }
    }
}

impl Drop for AmqpBroker {
    fn drop(&mut self) {
        // Stops the supervisor, which closes the connection; without this a
        // dropped handle would keep reconnecting forever.
        self.shared.closed.send_replace(true);
    }
}

impl Shared {
    fn live(&self) -> Option<Arc<Session>> {
        lock(&self.live).clone()
    }

    fn current(&self) -> Result<Arc<Session>, ClusterError> {
        if *self.closed.borrow() {
            return Err(ClusterError::Closed);
        }
        self.live().ok_or_else(|| {
            ClusterError::unavailable(format!(
                "not connected to RabbitMQ at {}; reconnecting",
                self.cfg.endpoint
            ))
        })
    }

    fn is_closed(&self) -> bool {
        *self.closed.borrow()
    }
}

/// Why a session could not be opened.
#[derive(Debug)]
enum OpenError {
    Lapin(lapin::Error),
    Other(ClusterError),
}

impl OpenError {
    /// At start-up a refusal by RabbitMQ (credentials, vhost, an exchange of
    /// the same name but another type) is a misconfiguration, not an outage.
    fn into_startup_error(self) -> ClusterError {
        match self {
            OpenError::Lapin(e) if is_refusal(&e) => ClusterError::backend(e),
            OpenError::Lapin(e) => ClusterError::unavailable(e),
            OpenError::Other(e) => e,
        }
    }
}

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpenError::Lapin(e) => e.fmt(f),
            OpenError::Other(e) => e.fmt(f),
        }
    }
}

impl From<lapin::Error> for OpenError {
    fn from(e: lapin::Error) -> Self {
        OpenError::Lapin(e)
    }
}

impl From<ClusterError> for OpenError {
    fn from(e: ClusterError) -> Self {
        OpenError::Other(e)
    }
}

/// AMQP reply codes that mean "you are not allowed / this clashes", which no
/// amount of retrying fixes: 402 invalid path, 403 access refused, 404 not
/// found, 406 precondition failed, 530 not allowed (e.g. unknown vhost).
fn is_refusal(e: &lapin::Error) -> bool {
    match e.kind() {
        lapin::ErrorKind::ProtocolError(amqp) => {
            matches!(amqp.get_id(), 402 | 403 | 404 | 406 | 530)
        }
        lapin::ErrorKind::AuthProviderError(_) => true,
        _ => false,
    }
}

type Events = BoxStream<'static, Event>;

impl Session {
    /// Connects and declares everything except the topic bindings: the
    /// namespace's exchanges, this connection's queue and its consumer.
    async fn open(cfg: &Config, generation: u64) -> Result<(Session, Consumer, Events), OpenError> {
        let ns = cfg.names.namespace();
        let props = ConnectionProperties::default()
            .with_connection_name(format!("wsring:{ns}:{}:broker", cfg.node).into());
        let conn = crate::open_connection(cfg.uri.clone(), cfg.ca.as_deref(), props).await?;
        // Listen before anything else can go wrong, so no event is missed.
        let events = conn.events_listener().boxed();
        let publish = conn.create_channel().await?;
        publish
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        let control = conn.create_channel().await?;
        for (name, kind) in cfg.names.exchanges() {
            let kind = match kind {
                ExchangeType::Direct => ExchangeKind::Direct,
                ExchangeType::Fanout => ExchangeKind::Fanout,
            };
            control
                .exchange_declare(
                    short(name)?,
                    kind,
                    ExchangeDeclareOptions {
                        durable: false,
                        auto_delete: false,
                        ..ExchangeDeclareOptions::default()
                    },
                    FieldTable::default(),
                )
                .await?;
        }
        let queue = short(cfg.names.queue(&cfg.node, &unique_suffix())?)?;
        control
            .queue_declare(
                queue.clone(),
                QueueDeclareOptions {
                    durable: false,
                    exclusive: true,
                    auto_delete: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await?;
        let consumer = control
            .basic_consume(
                queue.clone(),
                short(format!("wsring.{}", cfg.node))?,
                BasicConsumeOptions {
                    no_ack: true,
                    ..BasicConsumeOptions::default()
                },
                FieldTable::default(),
            )
            .await?;
        let session = Session {
            generation,
            conn,
            publish,
            control,
            queue,
            failed: Notify::new(),
        };
        Ok((session, consumer, events))
    }

    async fn bind(&self, exchange: ShortString, key: ShortString) -> Result<(), lapin::Error> {
        self.control
            .queue_bind(
                self.queue.clone(),
                exchange,
                key,
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
    }

    async fn unbind(&self, exchange: ShortString, key: ShortString) -> Result<(), lapin::Error> {
        self.control
            .queue_unbind(self.queue.clone(), exchange, key, FieldTable::default())
            .await
    }

    /// Binds every wanted topic (after a reconnect).
    async fn bind_all(&self, names: &Names, wanted: &BTreeSet<Topic>) -> Result<(), ClusterError> {
        for topic in wanted {
            let (exchange, key) = amqp_route(names, topic)?;
            self.with_timeout("queue.bind", self.bind(exchange, key))
                .await?;
        }
        Ok(())
    }

    /// Runs a control operation with [`OP_TIMEOUT`]; a failure or timeout
    /// marks the session failed, so the supervisor rebuilds the connection.
    async fn with_timeout(
        &self,
        what: &'static str,
        op: impl Future<Output = Result<(), lapin::Error>>,
    ) -> Result<(), ClusterError> {
        match timeout(OP_TIMEOUT, op).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                self.fail(what, &e);
                Err(ClusterError::unavailable(e))
            }
            Err(_) => {
                let msg = format!("{what} not answered within {OP_TIMEOUT:?}");
                self.fail(what, &msg);
                Err(ClusterError::unavailable(msg))
            }
        }
    }

    /// Asks the supervisor to rebuild the connection. Any failed operation
    /// does: a closed channel never reopens by itself, and one recovery path
    /// (the tested one) beats patching channels individually.
    fn fail(&self, what: &str, error: &dyn std::fmt::Display) {
        debug!(generation = self.generation, what, %error, "rabbitmq operation failed");
        self.failed.notify_one();
    }

    /// Best-effort clean close (which also deletes the exclusive queue).
    async fn shutdown(&self) {
        if self.conn.status().connected() {
            let closing = self.conn.close(200, "wsring broker closing".into());
            if let Err(e) = timeout(CLOSE_TIMEOUT, closing)
                .await
                .unwrap_or_else(|_| Err(std::io::Error::from(std::io::ErrorKind::TimedOut).into()))
            {
                debug!(generation = self.generation, error = %e, "rabbitmq close was not clean");
            }
        }
    }
}

/// The supervisor: pumps deliveries; on loss reports `Disconnected`,
/// reconnects with backoff, rebinds, reports `Resubscribed`; repeats until
/// closed. Owns the inbox sender, so the inbox ends when it returns.
async fn supervise(
    shared: Arc<Shared>,
    mut session: Arc<Session>,
    mut consumer: Consumer,
    mut events: Events,
    tx: wsring_cluster::InboxSender,
) {
    let mut closed = shared.closed.subscribe();
    let mut backoff = Backoff::new(RECONNECT_BASE, RECONNECT_CAP);
    let ns = shared.cfg.names.namespace().to_owned();
    let node = shared.cfg.node.clone();
    loop {
        let Some(reason) = pump(
            &shared,
            &session,
            &mut consumer,
            &mut events,
            &tx,
            &mut closed,
        )
        .await
        else {
            break;
        };
        {
            let mut live = lock(&shared.live);
            if live.as_ref().is_some_and(|s| Arc::ptr_eq(s, &session)) {
                *live = None;
            }
        }
        shared.healthy.store(false, Ordering::SeqCst);
        shared.link.lost();
        warn!(
            namespace = %ns,
            node = %node,
            generation = session.generation,
            %reason,
            "rabbitmq connection lost; reconnecting"
        );
        let lost_at = Instant::now();
        let reported = send(&tx, BrokerEvent::Disconnected, &mut closed).await;
        // The queue may still exist if only a channel died: close the
        // connection so RabbitMQ deletes it and stops routing to it.
        session.shutdown().await;
        if !reported {
            break;
        }
        let Some((next, next_consumer, next_events)) =
            reconnect(&shared, &mut backoff, &mut closed).await
        else {
            break;
        };
        (session, consumer, events) = (next, next_consumer, next_events);
        info!(
            namespace = %ns,
            node = %node,
            generation = session.generation,
            queue = %session.queue,
            outage_ms = u64::try_from(lost_at.elapsed().as_millis()).unwrap_or(u64::MAX),
            "rabbitmq reconnected and resubscribed"
        );
        if !send(&tx, BrokerEvent::Resubscribed, &mut closed).await {
            break;
        }
    }
    shared.healthy.store(false, Ordering::SeqCst);
    let leftover = lock(&shared.live).take();
    if let Some(s) = leftover {
        s.shutdown().await;
    }
    debug!(namespace = %ns, node = %node, "rabbitmq supervisor stopped");
}

/// Forwards deliveries until the session fails (returns why) or the broker is
/// closed (returns `None`).
async fn pump(
    shared: &Shared,
    session: &Session,
    consumer: &mut Consumer,
    events: &mut Events,
    tx: &wsring_cluster::InboxSender,
    closed: &mut watch::Receiver<bool>,
) -> Option<String> {
    /// What woke the pump up.
    #[expect(
        clippy::large_enum_variant,
        reason = "lives briefly on the stack; boxing would allocate per message"
    )]
    enum Step {
        Deliver(Delivery),
        Failed(String),
        Other,
    }
    loop {
        // Failure signals come before deliveries so a steady stream of
        // messages cannot starve them; `drain` then rescues what was
        // already received.
        let step = tokio::select! {
            biased;
            _ = closed.wait_for(|c| *c) => return None,
            () = session.failed.notified() => Step::Failed("a channel operation failed".to_owned()),
            event = events.next() => match event {
                Some(Event::Error(e)) => Step::Failed(format!("connection error: {e}")),
                Some(Event::ConnectionBlocked(why)) => {
                    warn!(
                        generation = session.generation,
                        reason = %why,
                        "rabbitmq blocked publishing (resource alarm)"
                    );
                    Step::Other
                }
                Some(Event::ConnectionUnblocked) => {
                    info!(generation = session.generation, "rabbitmq unblocked publishing");
                    Step::Other
                }
                Some(_) => Step::Other,
                None => Step::Failed("connection event stream ended".to_owned()),
            },
            delivery = consumer.next() => match delivery {
                Some(Ok(d)) => Step::Deliver(d),
                // The consumer's own end: nothing left in it to drain.
                Some(Err(e)) => return Some(format!("consumer error: {e}")),
                None => return Some("consumer cancelled".to_owned()),
            },
        };
        match step {
            Step::Deliver(d) => {
                if !forward(shared, d, tx, closed).await {
                    return None;
                }
            }
            Step::Failed(reason) => return drain(shared, consumer, tx, closed, reason).await,
            Step::Other => {}
        }
    }
}

/// Forwards the deliveries the consumer had already received when the
/// session failed: RabbitMQ considers them delivered (auto-ack), so dropping
/// them would lose messages that did reach us. Bounded, in case the session
/// is still streaming. Returns `reason`, or `None` if closed meanwhile.
async fn drain(
    shared: &Shared,
    consumer: &mut Consumer,
    tx: &wsring_cluster::InboxSender,
    closed: &mut watch::Receiver<bool>,
    reason: String,
) -> Option<String> {
    for _ in 0..INBOX_CAPACITY {
        let Some(Some(Ok(delivery))) = consumer.next().now_or_never() else {
            break;
        };
        if !forward(shared, delivery, tx, closed).await {
            return None;
        }
    }
    Some(reason)
}

/// Turns a delivery into an inbox message; `false` if closed meanwhile.
async fn forward(
    shared: &Shared,
    delivery: Delivery,
    tx: &wsring_cluster::InboxSender,
    closed: &mut watch::Receiver<bool>,
) -> bool {
    let Some(topic) = shared
        .cfg
        .names
        .topic_of(delivery.exchange.as_str(), delivery.routing_key.as_str())
    else {
        warn!(
            exchange = %delivery.exchange,
            routing_key = %delivery.routing_key,
            "dropping delivery from a foreign exchange"
        );
        return true;
    };
    let event = BrokerEvent::Message {
        topic,
        payload: Bytes::from(delivery.data),
    };
    send(tx, event, closed).await
}

/// Opens sessions with backoff until one is fully rebound; `None` if closed.
async fn reconnect(
    shared: &Shared,
    backoff: &mut Backoff,
    closed: &mut watch::Receiver<bool>,
) -> Option<(Arc<Session>, Consumer, Events)> {
    loop {
        let delay = backoff.next_delay();
        let attempt = backoff.attempt();
        tokio::select! {
            biased;
            _ = closed.wait_for(|c| *c) => return None,
            () = tokio::time::sleep(delay) => {}
        }
        let generation = shared.generations.fetch_add(1, Ordering::Relaxed);
        debug!(generation, attempt, ?delay, "rabbitmq reconnect attempt");
        let opened = tokio::select! {
            biased;
            _ = closed.wait_for(|c| *c) => return None,
            r = timeout(CONNECT_TIMEOUT, Session::open(&shared.cfg, generation)) => r,
        };
        let (session, consumer, events) = match opened {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                warn!(generation, attempt, error = %e, "rabbitmq reconnect failed");
                continue;
            }
            Err(_) => {
                warn!(generation, attempt, "rabbitmq reconnect timed out");
                continue;
            }
        };
        let session = Arc::new(session);
        let mut bound = BTreeSet::new();
        let rebound = loop {
            if shared.is_closed() {
                session.shutdown().await;
                return None;
            }
            // Bind what is wanted and not bound yet; go live only once a
            // fresh look finds nothing new (a subscribe that saw no live
            // session relies on this).
            let missing: BTreeSet<Topic> = lock(&shared.wanted)
                .iter()
                .filter(|t| !bound.contains(*t))
                .cloned()
                .collect();
            if missing.is_empty() {
                let topics = lock(&shared.wanted).len();
                *lock(&shared.live) = Some(Arc::clone(&session));
                break Ok(topics);
            }
            if let Err(e) = session.bind_all(&shared.cfg.names, &missing).await {
                break Err(e);
            }
            bound.extend(missing);
        };
        match rebound {
            Ok(topics) => {
                shared.healthy.store(true, Ordering::SeqCst);
                shared.link.ok();
                backoff.reset();
                debug!(generation, topics, "rabbitmq topics rebound");
                return Some((session, consumer, events));
            }
            Err(e) => {
                warn!(generation, attempt, error = %e, "rabbitmq rebinding failed");
                session.shutdown().await;
                continue;
            }
        }
    }
}

/// Sends to the inbox, waiting while it is full (backpressure); returns
/// `false` if the broker was closed meanwhile. A dropped inbox is ignored,
/// like RabbitMQ ignores a consumer that stopped reading.
async fn send(
    tx: &wsring_cluster::InboxSender,
    event: BrokerEvent,
    closed: &mut watch::Receiver<bool>,
) -> bool {
    tokio::select! {
        biased;
        _ = closed.wait_for(|c| *c) => false,
        _ = tx.send(event) => true,
    }
}

/// A topic's exchange and routing key as AMQP short strings.
fn amqp_route(names: &Names, topic: &Topic) -> Result<(ShortString, ShortString), ClusterError> {
    let (exchange, key) = names.route(topic)?;
    Ok((short(exchange)?, short(key)?))
}

/// A checked AMQP short string (lapin's `From` impls panic past 255 bytes).
fn short(s: impl Into<String>) -> Result<ShortString, ClusterError> {
    ShortString::try_new(s).map_err(ClusterError::backend)
}

use wsring_cluster::lock;
