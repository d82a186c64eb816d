//! The [`Broker`] on core NATS pub/sub.
//!
//! Topics map to subjects `{ns}.node.{id}`, `{ns}.cluster` and
//! `{ns}.room.{room}` (names escaped by [`topic_subject`]). Each subscribed
//! topic owns one NATS subscription. A single reader task owns them all and
//! forwards their messages into the node's bounded inbox as
//! [`BrokerEvent::Message`], restoring each publisher's order across topics
//! (see [`crate::order`]); every publish is stamped for that. Since the reader
//! knows which topic each subscription is for, the original [`Topic`] is
//! reported without parsing subjects back.
//!
//! Reconnects are async-nats' job: it re-sends every SUB on the new
//! connection. A monitor task watches the client's connection events and
//! reports [`BrokerEvent::Disconnected`] on loss and
//! [`BrokerEvent::Resubscribed`] once reconnected. "Active" is proved by a
//! round trip rather than assumed: the server handles one connection's
//! protocol operations in order, so when a request sent after the SUBs comes
//! back (as a "no responders" status from a subject nobody listens on), every
//! earlier SUB is registered. `subscribe` uses the same barrier, so a publish
//! from any connection after it returns is received.
//!
//! `publish` refuses while disconnected ([`ClusterError::Unavailable`]) instead
//! of letting the client buffer silently: the node then knows the message was
//! not taken, and its durable streams cover the gap.

use async_nats::connection::State;
use async_nats::{Client, Event, HeaderMap, Message, Request, RequestErrorKind, Subscriber};
use async_trait::async_trait;
use bytes::Bytes;
use futures::Stream;
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};
use wsring_cluster::backoff::Backoff;
use wsring_cluster::broker::INBOX_CAPACITY;
use wsring_cluster::{Broker, BrokerEvent, ClusterError, Inbox, Topic, lock};

use crate::connect::fail;
use crate::names::topic_subject;
use crate::order::{Collected, HDR_ORDER, Ready, SubWaker, merge, parse_stamp, stamp};

/// How long a subscription or resubscription barrier may take.
const BARRIER_TIMEOUT: Duration = Duration::from_secs(5);

/// Largest batch the reader collects before forwarding. Order across
/// topics is exact for batches that end naturally (nothing more ready); only
/// a backlog beyond this, far past normal operation, can reorder.
const MAX_BATCH: usize = INBOX_CAPACITY;

/// Requests from the broker handle to its reader task.
enum Control {
    /// Start forwarding a new subscription.
    Add {
        id: u64,
        topic: Topic,
        sub: Subscriber,
    },
    /// Stop forwarding and unsubscribe; acknowledged once nothing more of it
    /// can reach the inbox.
    Remove { id: u64, done: oneshot::Sender<()> },
}

/// A subscription owned by the reader.
struct Sub {
    topic: Topic,
    sub: Subscriber,
    waker: Waker,
}

/// A node's connection to the NATS broker.
pub struct NatsBroker {
    client: Client,
    namespace: String,
    node: String,
    /// This handle's id in `Wsring-Order` stamps.
    publisher: u64,
    /// Next stamp counter. Sequential publishes (one returned before the
    /// next began) get increasing stamps and are enqueued in that order, which
    /// is the only order the broker contract promises; concurrent publishes
    /// have no order to keep, so no lock is held across the enqueue.
    counter: AtomicU64,
    /// Topic to subscription id. Callers serialise subscribe/unsubscribe of
    /// one topic (the node's room reconciler does), so the map is only
    /// touched between network calls, never held across one.
    subs: Mutex<HashMap<Topic, u64>>,
    next_sub: AtomicU64,
    /// Requests to the reader; `None` once closed.
    control: Mutex<Option<mpsc::UnboundedSender<Control>>>,
    reader: Mutex<Option<JoinHandle<()>>>,
    monitor: Mutex<Option<JoinHandle<()>>>,
    closed: AtomicBool,
}

/// Proves that the server has processed everything this connection sent
/// before: a request to a fresh inbox subject nobody subscribes to comes back
/// as "no responders" only after the server handled the earlier operations.
async fn barrier(client: &Client) -> Result<(), ClusterError> {
    let subject = client.new_inbox();
    let request = Request::new().timeout(Some(BARRIER_TIMEOUT));
    match client.send_request(subject, request).await {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == RequestErrorKind::NoResponders => Ok(()),
        Err(e) => Err(fail(
            client,
            "waiting for the server to register subscriptions",
            e.kind() == RequestErrorKind::TimedOut,
            e,
        )),
    }
}

/// Reports connection loss and recovery into the inbox.
async fn monitor(
    client: Client,
    node: String,
    mut events: mpsc::UnboundedReceiver<Event>,
    inbox: wsring_cluster::InboxSender,
) {
    // The first `Connected` is the initial connection: nothing to report.
    let mut lost = false;
    while let Some(event) = events.recv().await {
        match event {
            Event::Disconnected if !lost => {
                lost = true;
                if inbox.send(BrokerEvent::Disconnected).await.is_err() {
                    return;
                }
            }
            Event::Connected if lost => {
                // Confirm the re-sent SUBs before reporting; keep trying while
                // the connection holds (a slow server is no reason to leave
                // the node without its catch-up signal).
                let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
                while client.connection_state() == State::Connected {
                    match barrier(&client).await {
                        Ok(()) => {
                            lost = false;
                            info!(node = %node, "NATS subscriptions restored");
                            if inbox.send(BrokerEvent::Resubscribed).await.is_err() {
                                return;
                            }
                            break;
                        }
                        Err(e) => {
                            warn!(node = %node, attempt = backoff.attempt(), error = %e, "resubscription not confirmed yet");
                            tokio::time::sleep(backoff.next_delay()).await;
                        }
                    }
                }
                // Lost again before confirming: the next `Connected` retries.
            }
            Event::SlowConsumer(_) if !lost => {
                // The client dropped messages for a full subscription
                // buffer. Report it as a brief outage so the node catches up
                // from its durable streams.
                warn!(node = %node, "NATS slow consumer: messages were dropped; catching up");
                if inbox.send(BrokerEvent::Disconnected).await.is_err()
                    || inbox.send(BrokerEvent::Resubscribed).await.is_err()
                {
                    return;
                }
            }
            Event::Closed => return,
            _ => {}
        }
    }
}

/// Collects every message that is ready on any subscription (see
/// [`crate::order`] for why this respects arrival order). `Pending` with all
/// wakers registered when nothing is ready.
fn poll_batch(
    cx: &mut Context<'_>,
    ready: &Ready,
    subs: &mut HashMap<u64, Sub>,
) -> Poll<Vec<Collected<BrokerEvent>>> {
    let mut batch = Vec::new();
    let mut ended = Vec::new();
    'collect: loop {
        let ids = ready.register_and_take(cx.waker());
        if ids.is_empty() {
            break;
        }
        for (k, &id) in ids.iter().enumerate() {
            let Some(s) = subs.get_mut(&id) else {
                continue; // removed meanwhile
            };
            let waker = s.waker.clone();
            let mut scx = Context::from_waker(&waker);
            loop {
                match Pin::new(&mut s.sub).poll_next(&mut scx) {
                    Poll::Ready(Some(msg)) => {
                        batch.push(event(id, &s.topic, msg));
                        if batch.len() >= MAX_BATCH {
                            // Come back for the rest right after forwarding:
                            // this subscription and the ones not polled yet
                            // (their wakers already fired) stay ready.
                            for &rest in &ids[k..] {
                                ready.push(rest);
                            }
                            break 'collect;
                        }
                    }
                    Poll::Ready(None) => {
                        ended.push(id);
                        break;
                    }
                    Poll::Pending => break,
                }
            }
        }
    }
    for id in ended {
        // The client closed the subscription (connection closed for good).
        subs.remove(&id);
    }
    if batch.is_empty() {
        Poll::Pending
    } else {
        Poll::Ready(batch)
    }
}

fn event(id: u64, topic: &Topic, msg: Message) -> Collected<BrokerEvent> {
    let stamp = msg
        .headers
        .as_ref()
        .and_then(|h| h.get(HDR_ORDER))
        .and_then(|v| parse_stamp(v.as_str()));
    let ev = BrokerEvent::Message {
        topic: topic.clone(),
        payload: msg.payload,
    };
    (id, stamp, ev)
}

/// Owns every subscription and forwards their messages, in publish order,
/// into the inbox. Runs until the control channel closes or the inbox is
/// dropped. Must run `unconstrained`: it polls channels with its own wakers
/// and relies on an empty poll meaning an empty channel, which tokio's
/// cooperative budget would otherwise break.
async fn reader(mut control: mpsc::UnboundedReceiver<Control>, inbox: wsring_cluster::InboxSender) {
    let ready = Arc::new(Ready::default());
    let mut subs: HashMap<u64, Sub> = HashMap::new();
    loop {
        enum Step {
            Control(Option<Control>),
            Batch(Vec<Collected<BrokerEvent>>),
        }
        let step = tokio::select! {
            biased;
            cmd = control.recv() => Step::Control(cmd),
            batch = std::future::poll_fn(|cx| poll_batch(cx, &ready, &mut subs)) => Step::Batch(batch),
        };
        match step {
            Step::Control(None) => break,
            Step::Control(Some(Control::Add { id, topic, sub })) => {
                let waker = SubWaker::waker(id, &ready);
                subs.insert(id, Sub { topic, sub, waker });
                // Poll it once: registers its waker, picks up early messages.
                ready.push(id);
            }
            Step::Control(Some(Control::Remove { id, done })) => {
                if let Some(mut s) = subs.remove(&id)
                    && let Err(e) = s.sub.unsubscribe().await
                {
                    debug!(topic = ?s.topic, error = %e, "unsubscribe not sent (connection closed)");
                }
                let _ = done.send(());
            }
            Step::Batch(batch) => {
                for ev in merge(batch) {
                    if inbox.send(ev).await.is_err() {
                        return; // the node dropped its inbox
                    }
                }
            }
        }
    }
    for (_, mut s) in subs {
        let _ = s.sub.unsubscribe().await;
    }
}

impl NatsBroker {
    /// Wraps a connected client. `events` must be fed by the client's event
    /// callback.
    pub(crate) fn new(
        client: Client,
        namespace: &str,
        node: &str,
        events: mpsc::UnboundedReceiver<Event>,
    ) -> (NatsBroker, Inbox) {
        let (tx, rx) = wsring_cluster::broker::inbox();
        let (control, control_rx) = mpsc::unbounded_channel();
        let reader = tokio::spawn(tokio::task::unconstrained(reader(control_rx, tx.clone())));
        let monitor = tokio::spawn(monitor(client.clone(), node.to_owned(), events, tx));
        let broker = NatsBroker {
            client,
            namespace: namespace.to_owned(),
            node: node.to_owned(),
            publisher: rand::random(),
            counter: AtomicU64::new(0),
            subs: Mutex::new(HashMap::new()),
            next_sub: AtomicU64::new(0),
            control: Mutex::new(Some(control)),
            reader: Mutex::new(Some(reader)),
            monitor: Mutex::new(Some(monitor)),
            closed: AtomicBool::new(false),
        };
        (broker, rx)
    }

    fn connected(&self) -> bool {
        self.client.connection_state() == State::Connected
    }

    fn not_connected(&self, what: &str) -> ClusterError {
        ClusterError::unavailable(format!(
            "{what}: not connected to NATS (node {}, reconnecting)",
            self.node
        ))
    }

    fn send(&self, cmd: Control) -> Result<(), ClusterError> {
        let control = lock(&self.control);
        match control.as_ref() {
            Some(c) if c.send(cmd).is_ok() => Ok(()),
            _ => Err(ClusterError::Closed),
        }
    }

    /// Stops forwarding subscription `id` and unsubscribes it; returns once
    /// nothing more from it can reach the inbox.
    async fn remove(&self, id: u64) {
        let (done, acked) = oneshot::channel();
        if self.send(Control::Remove { id, done }).is_ok() {
            // An error means the reader is gone, which also stops forwarding.
            // Bounded: a reader stuck on a stalled connection must not hold
            // the caller (its subscription ends with that connection anyway).
            let _ = tokio::time::timeout(SUBSCRIBE_TIMEOUT, acked).await;
        }
    }
}

fn take<T>(slot: &Mutex<Option<T>>) -> Option<T> {
    lock(slot).take()
}

/// Bound on handing a publish to the client's connection task (its command
/// channel is bounded, so a stalled connection could otherwise block the
/// caller forever).
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(5);

/// Bound on sending a SUB (the round trip is bounded by the barrier).
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(5);

#[async_trait]
impl Broker for NatsBroker {
    async fn publish(&self, topic: &Topic, payload: Bytes) -> Result<(), ClusterError> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(ClusterError::Closed);
        }
        if !self.connected() {
            return Err(self.not_connected("publish"));
        }
        let subject = topic_subject(&self.namespace, topic);
        let counter = self.counter.fetch_add(1, Ordering::SeqCst) + 1;
        let mut headers = HeaderMap::new();
        headers.insert(HDR_ORDER, stamp(self.publisher, counter));
        match tokio::time::timeout(
            PUBLISH_TIMEOUT,
            self.client.publish_with_headers(subject, headers, payload),
        )
        .await
        {
            Ok(r) => {
                r.map_err(|e| fail(&self.client, format!("publishing to {topic:?}"), false, e))
            }
            Err(_) => Err(ClusterError::unavailable(format!(
                "publishing to {topic:?}: the NATS client took no command within {PUBLISH_TIMEOUT:?}"
            ))),
        }
    }

    async fn subscribe(&self, topic: &Topic) -> Result<(), ClusterError> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(ClusterError::Closed);
        }
        if lock(&self.subs).contains_key(topic) {
            return Ok(());
        }
        if !self.connected() {
            return Err(self.not_connected("subscribe"));
        }
        let subject = topic_subject(&self.namespace, topic);
        let sub =
            match tokio::time::timeout(SUBSCRIBE_TIMEOUT, self.client.subscribe(subject.clone()))
                .await
            {
                Ok(r) => r.map_err(|e| {
                    fail(&self.client, format!("subscribing to {subject}"), false, e)
                })?,
                Err(_) => {
                    return Err(ClusterError::unavailable(format!(
                        "subscribing to {subject}: no answer within {SUBSCRIBE_TIMEOUT:?}"
                    )));
                }
            };
        let id = self.next_sub.fetch_add(1, Ordering::Relaxed);
        self.send(Control::Add {
            id,
            topic: topic.clone(),
            sub,
        })?;
        if let Err(e) = barrier(&self.client).await {
            // Leave nothing behind: the caller treats an error as "not
            // subscribed" and may retry.
            self.remove(id).await;
            return Err(e);
        }
        debug!(node = %self.node, %subject, "subscribed");
        let earlier = lock(&self.subs).insert(topic.clone(), id);
        if let Some(earlier) = earlier {
            // A concurrent subscribe of the same topic (outside the caller
            // contract): keep one subscription, so nothing is delivered twice.
            self.remove(earlier).await;
        }
        Ok(())
    }

    async fn unsubscribe(&self, topic: &Topic) -> Result<(), ClusterError> {
        let id = lock(&self.subs).remove(topic);
        if let Some(id) = id {
            self.remove(id).await;
            debug!(node = %self.node, ?topic, "unsubscribed");
        }
        Ok(())
    }

    fn healthy(&self) -> bool {
        !self.closed.load(Ordering::SeqCst) && self.connected()
    }

    async fn close(&self) {
        if self.closed.swap(true, Ordering::SeqCst) {
            return;
        }
        lock(&self.subs).clear();
        // Dropping the control channel ends the reader, which unsubscribes
        // everything; if the inbox is full and nobody drains it, stop it
        // anyway (the subscriptions end with the connection below).
        drop(take(&self.control));
        if let Some(mut reader) = take(&self.reader)
            && tokio::time::timeout(Duration::from_secs(1), &mut reader)
                .await
                .is_err()
        {
            reader.abort();
            let _ = reader.await;
        }
        if let Some(monitor) = take(&self.monitor) {
            monitor.abort();
            let _ = monitor.await;
        }
        // The reader and monitor held the last inbox senders: the inbox ends.
        // Flush what was published, then close the connection.
        if let Err(e) = self.client.drain().await {
            debug!(node = %self.node, error = %e, "drain failed (connection already closed)");
        }
        info!(node = %self.node, namespace = %self.namespace, "NATS broker closed");
    }
}

impl Drop for NatsBroker {
    /// Without `close`, still stop the background tasks: they hold clients,
    /// which would keep the connection open forever.
    fn drop(&mut self) {
        for task in [take(&self.reader), take(&self.monitor)]
            .into_iter()
            .flatten()
        {
            task.abort();
        }
    }
}
