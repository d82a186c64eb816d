//! [`Broker`] on a Redis Cluster's sharded pub/sub (`SPUBLISH` /
//! `SSUBSCRIBE`, Redis 7).
//!
//! Each channel lives in the slot its name hashes to (channel names carry no
//! hash tag), so per-node and per-room traffic spreads over the shards, and
//! a message is handled only by the shard that owns its channel. The cluster
//! broadcast channel (`<ns>:cluster`) is one channel, hence one slot: every
//! broadcast is carried by that one shard, which sends a copy to every node.
//! Broadcasts are rare next to directed and room traffic (membership and
//! cluster-wide notices), so this is accepted rather than spread over several
//! channels that every node would then have to subscribe to.
//!
//! One RESP3 cluster connection carries both publishes and subscriptions;
//! messages arrive as push messages. A message published while a shard had
//! no reachable primary is gone, so the node must be told: a lost node
//! connection (a `Disconnection` push), a shard channel the server dropped
//! (an unrequested `sunsubscribe` push: its slot moved to another node) or an
//! unanswered keep-alive is reported as [`BrokerEvent::Disconnected`]. The
//! repair task then waits until the cluster state is ok and every primary
//! answers, replaces the connection with a fresh one (while a primary is
//! down the client library may accept a subscription that will never
//! deliver), subscribes every topic on it, and reports
//! [`BrokerEvent::Resubscribed`] only once all of them succeeded. From then
//! on the node is live again and catches up from durable streams.
//!
//! # Order across topics
//!
//! Redis delivers one channel's messages in order, but channels on different
//! shards arrive over different connections, so a publisher's room message
//! (shard A) could overtake its later direct message (shard B). The broker
//! contract promises each publisher's order across topics, so:
//!
//! * every publish is stamped `~{publisher:016x}.{counter}\n` in front of
//!   the payload (a random publisher id per broker, a counter per publish);
//! * the reader takes whatever messages have arrived (the *settled* ones),
//!   then sends `PING` to every primary over the same connections and waits
//!   for the answers. A publisher publishes its next message only after the
//!   previous one was acknowledged, by which time that shard had already
//!   queued it to every subscriber; so once the pings are answered, every
//!   message published before a settled one has arrived too;
//! * the settled messages are released together with those predecessors
//!   (messages that arrived meanwhile with a lower counter of the same
//!   publisher), interleaved by stamp with
//!   [`wsring_cluster::order::merge`], keeping each channel's own order.
//!   Everything else that arrived meanwhile waits for the next barrier, since
//!   its own predecessors may still be on the way.
//!
//! This costs one round trip to the primaries per batch, not per message:
//! under load, batches grow while a barrier is in flight.
//!
//! No lock is held across a network call: the topic set is copied out of
//! its mutex before the resubscription commands are sent.

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use redis::cluster_async::ClusterConnection;
use redis::{PushInfo, PushKind, Value};
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};
use wsring_cluster::backoff::Backoff;
use wsring_cluster::{Broker, BrokerEvent, ClusterError, Inbox, InboxSender, Link, Topic, lock};

use crate::cluster::{Seeds, client};
use crate::keys::Keys;
use crate::{OP_TIMEOUT, at_startup, map_err};

/// Keep-alive period: a PING to every primary, so a half-open connection to
/// a shard is noticed even when no command goes to it.
const PING_EVERY: Duration = Duration::from_secs(5);

/// Resubscriptions sent at once while repairing.
const REPAIR_CONCURRENCY: usize = 32;

/// Bound on the order barrier: during a failover, delivery must not wait
/// for the dead primary's timeouts.
const BARRIER_TIMEOUT: Duration = Duration::from_secs(1);

/// Largest batch ordered at once; a backlog beyond it is ordered in parts.
const MAX_BATCH: usize = 4096;

/// Longest stamp prefix: `~`, 16 hex digits, `.`, 20 digits, `\n`.
const MAX_STAMP: usize = 40;

/// `payload` with its order stamp in front.
fn stamped(publisher: u64, counter: u64, payload: &[u8]) -> Vec<u8> {
    let stamp = wsring_cluster::order::stamp(publisher, counter);
    let mut out = Vec::with_capacity(stamp.len() + 2 + payload.len());
    out.push(b'~');
    out.extend_from_slice(stamp.as_bytes());
    out.push(b'\n');
    out.extend_from_slice(payload);
    out
}

/// Splits a received payload into its stamp and the payload proper. A
/// payload without a valid stamp (not from a wsring cluster broker) is
/// passed on whole and unordered.
fn unstamp(raw: &[u8]) -> (Option<wsring_cluster::order::Stamp>, &[u8]) {
    if raw.first() == Some(&b'~')
        && let Some(nl) = raw.iter().take(MAX_STAMP).position(|&b| b == b'\n')
        && let Some(stamp) = std::str::from_utf8(&raw[1..nl])
            .ok()
            .and_then(wsring_cluster::order::parse_stamp)
    {
        return (Some(stamp), &raw[nl + 1..]);
    }
    (None, raw)
}

async fn bounded<T>(
    what: &str,
    fut: impl std::future::Future<Output = redis::RedisResult<T>>,
) -> Result<T, ClusterError> {
    match tokio::time::timeout(OP_TIMEOUT, fut).await {
        Ok(r) => r.map_err(map_err),
        Err(_) => Err(ClusterError::unavailable(format!(
            "redis cluster {what}: no answer within {OP_TIMEOUT:?}"
        ))),
    }
}

/// Pushes of one connection generation: the reader ignores those of a
/// connection already replaced (its final `Disconnection` above all).
struct TaggedPushes {
    generation: u64,
    tx: mpsc::UnboundedSender<(u64, PushInfo)>,
}

impl redis::aio::AsyncPushSender for TaggedPushes {
    fn send(&self, info: PushInfo) -> Result<(), redis::aio::SendError> {
        self.tx
            .send((self.generation, info))
            .map_err(|_| redis::aio::SendError)
    }
}

struct Shared {
    seeds: Seeds,
    /// The live connection and its generation. Cloned out for every command,
    /// never used under the lock.
    conn: Mutex<(u64, ClusterConnection)>,
    pushes: mpsc::UnboundedSender<(u64, PushInfo)>,
    keys: Keys,
    /// Every subscribed topic, restored after a loss.
    topics: Mutex<BTreeSet<Topic>>,
    /// Wakes the repair task.
    broken: Notify,
    closed: CancellationToken,
    link: Link,
}

impl Shared {
    fn conn(&self) -> ClusterConnection {
        lock(&self.conn).1.clone()
    }

    fn generation(&self) -> u64 {
        lock(&self.conn).0
    }
}

/// Opens a connection of `generation` whose pushes go to `pushes`.
async fn open(
    seeds: &Seeds,
    generation: u64,
    pushes: &mpsc::UnboundedSender<(u64, PushInfo)>,
) -> Result<ClusterConnection, ClusterError> {
    let tagged = TaggedPushes {
        generation,
        tx: pushes.clone(),
    };
    let client = client(seeds, Some(tagged))?;
    at_startup("broker", client.get_async_connection()).await
}

/// One node's broker connection to a Redis Cluster.
pub struct ClusterBroker {
    shared: Arc<Shared>,
    /// This broker's id in order stamps.
    publisher: u64,
    /// Counter of the last stamped publish.
    counter: AtomicU64,
}

impl ClusterBroker {
    /// Connects to the cluster through `seeds`, failing fast if no seed
    /// answers.
    pub(crate) async fn connect(
        seeds: &Seeds,
        keys: Keys,
    ) -> Result<(Arc<dyn Broker>, Inbox), ClusterError> {
        let (push_tx, push_rx) = mpsc::unbounded_channel();
        let conn = open(seeds, 0, &push_tx).await?;
        let shared = Arc::new(Shared {
            seeds: seeds.clone(),
            conn: Mutex::new((0, conn)),
            pushes: push_tx,
            keys,
            topics: Mutex::new(BTreeSet::new()),
            broken: Notify::new(),
            closed: CancellationToken::new(),
            link: Link::new("redis", "broker"),
        });
        let (tx, rx) = wsring_cluster::broker::inbox();
        tokio::spawn(reader(Arc::clone(&shared), push_rx, tx.clone()));
        tokio::spawn(repairer(Arc::clone(&shared), tx));
        tokio::spawn(pinger(Arc::clone(&shared)));
        let broker = ClusterBroker {
            shared,
            publisher: rand::random(),
            counter: AtomicU64::new(0),
        };
        Ok((Arc::new(broker), rx))
    }
}

/// The channel name and payload of a push message.
fn channel_and_payload(data: &[Value]) -> Option<(&[u8], &[u8])> {
    match data {
        [Value::BulkString(c), Value::BulkString(p), ..] => Some((c, p)),
        _ => None,
    }
}

/// The channel names a subscribe-like push confirms.
fn channel_name(data: &[Value]) -> Option<&[u8]> {
    match data.first() {
        Some(Value::BulkString(c)) => Some(c),
        _ => None,
    }
}

/// Forwards messages into the inbox, in each publisher's order, and turns
/// losses into repairs.
async fn reader(
    shared: Arc<Shared>,
    mut pushes: mpsc::UnboundedReceiver<(u64, PushInfo)>,
    tx: InboxSender,
) {
    // Messages received after a barrier was sent, not yet released.
    let mut carry: Vec<Collected> = Vec::new();
    loop {
        if carry.is_empty() {
            let (generation, first) = tokio::select! {
                _ = shared.closed.cancelled() => return,
                p = pushes.recv() => match p {
                    Some(p) => p,
                    None => return,
                },
            };
            if generation == shared.generation() {
                collect(&shared, first, &mut carry);
            }
            if carry.is_empty() {
                continue;
            }
        }
        // Settled: everything received before the barrier is sent. Once it
        // is answered, every message published before any settled one has
        // been received too.
        drain(&shared, &mut pushes, &mut carry);
        let settled = std::mem::take(&mut carry);
        barrier(&shared).await;
        let mut later = Vec::new();
        drain(&shared, &mut pushes, &mut later);
        let (release, rest) = release(settled, later);
        carry = rest;
        for (topic, payload) in wsring_cluster::order::merge(release) {
            if tx
                .send(BrokerEvent::Message { topic, payload })
                .await
                .is_err()
            {
                return;
            }
        }
    }
}

/// One received message: its channel (as a queue id), stamp, topic and
/// payload.
type Collected = wsring_cluster::order::Collected<(Topic, Bytes)>;

/// Splits one barrier round: the `settled` messages (received before the
/// barrier was sent) go out together with the messages of `later` that
/// precede one of them (same publisher, lower counter); the rest of `later`
/// may still miss predecessors of its own and is carried to the next round.
/// Returns `(release, carry)`, each in arrival order.
fn release<T>(
    settled: Vec<wsring_cluster::order::Collected<T>>,
    later: Vec<wsring_cluster::order::Collected<T>>,
) -> (
    Vec<wsring_cluster::order::Collected<T>>,
    Vec<wsring_cluster::order::Collected<T>>,
) {
    let mut newest: HashMap<u64, u64> = HashMap::new();
    for (p, c) in settled.iter().filter_map(|(_, stamp, _)| *stamp) {
        let n = newest.entry(p).or_insert(c);
        *n = (*n).max(c);
    }
    let mut out = settled;
    let mut carry = Vec::new();
    for item in later {
        match item.1 {
            Some((p, c)) if newest.get(&p).is_some_and(|&n| c < n) => out.push(item),
            _ => carry.push(item),
        }
    }
    (out, carry)
}

/// Takes what has arrived (up to [`MAX_BATCH`] in `into`) without waiting.
fn drain(
    shared: &Shared,
    pushes: &mut mpsc::UnboundedReceiver<(u64, PushInfo)>,
    into: &mut Vec<Collected>,
) {
    while into.len() < MAX_BATCH {
        match pushes.try_recv() {
            Ok((g, p)) if g == shared.generation() => collect(shared, p, into),
            Ok(_) => {}
            Err(_) => break,
        }
    }
}

/// A stable queue id for a channel (its hash): `merge` keeps each queue's
/// arrival order. Two channels sharing a hash only add an order constraint.
fn queue_id(channel: &[u8]) -> u64 {
    use std::hash::{BuildHasher, BuildHasherDefault};
    BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default().hash_one(channel)
}

/// Files one push: a message into `batch` (queued by channel), a loss as a
/// repair request.
fn collect(shared: &Shared, push: PushInfo, batch: &mut Vec<Collected>) {
    match push.kind {
        PushKind::SMessage | PushKind::Message => {
            let Some((channel, raw)) = channel_and_payload(&push.data) else {
                return;
            };
            let Some(topic) = std::str::from_utf8(channel)
                .ok()
                .and_then(|c| shared.keys.topic(c))
            else {
                return;
            };
            let (stamp, payload) = unstamp(raw);
            let payload = Bytes::copy_from_slice(payload);
            batch.push((queue_id(channel), stamp, (topic, payload)));
        }
        PushKind::Disconnection => {
            debug!("redis cluster node connection lost");
            shared.broken.notify_one();
        }
        PushKind::SUnsubscribe => {
            // Ours are removed from `topics` before they are sent; one still
            // wanted was dropped by the server (its slot moved).
            let Some(topic) = channel_name(&push.data)
                .and_then(|c| std::str::from_utf8(c).ok())
                .and_then(|c| shared.keys.topic(c))
            else {
                return;
            };
            if lock(&shared.topics).contains(&topic) {
                debug!(?topic, "redis cluster dropped a shard channel subscription");
                shared.broken.notify_one();
            }
        }
        _ => {}
    }
}

/// A `PING` to every primary over the subscription connections: once
/// answered, every message those shards queued for us before is received.
/// A failure only weakens ordering for this batch (the keep-alive and the
/// repair task deal with the connection), so it is not an error.
async fn barrier(shared: &Shared) {
    let mut conn = shared.conn();
    let ping = redis::cmd("PING");
    match tokio::time::timeout(BARRIER_TIMEOUT, ping.query_async::<Value>(&mut conn)).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => debug!(error = %e, "redis cluster order barrier failed"),
        Err(_) => debug!("redis cluster order barrier timed out"),
    }
}

/// On every loss: reports [`BrokerEvent::Disconnected`], re-subscribes every
/// topic on its slot's current owner, then reports
/// [`BrokerEvent::Resubscribed`].
async fn repairer(shared: Arc<Shared>, tx: InboxSender) {
    loop {
        tokio::select! {
            _ = shared.closed.cancelled() => return,
            _ = shared.broken.notified() => {}
        }
        shared.link.lost();
        warn!("redis cluster subscription lost; resubscribing");
        if tx.send(BrokerEvent::Disconnected).await.is_err() {
            return;
        }
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        loop {
            match resubscribe_all(&shared).await {
                Ok(n) => {
                    info!(topics = n, "redis cluster subscriptions restored");
                    break;
                }
                Err(e) => {
                    warn!(error = %e, attempt = backoff.attempt(), "redis cluster resubscribe failed");
                }
            }
            tokio::select! {
                _ = shared.closed.cancelled() => return,
                _ = tokio::time::sleep(backoff.next_delay()) => {}
            }
        }
        shared.link.ok();
        if tx.send(BrokerEvent::Resubscribed).await.is_err() {
            return;
        }
    }
}

/// Replaces the connection once every shard has a reachable primary again,
/// and subscribes every topic on it.
///
/// A fresh connection rather than the old one: while a primary is down the
/// client library may place a subscription on a node that will not deliver
/// to it, and report success; a new connection starts from the topology as
/// it is now. Health is a `PING` answered by every primary of that topology
/// and `cluster_state:ok`; until then the repair retries with backoff.
async fn resubscribe_all(shared: &Shared) -> Result<usize, ClusterError> {
    let generation = shared.generation() + 1;
    let mut conn = open(&shared.seeds, generation, &shared.pushes).await?;
    let info: String = bounded(
        "CLUSTER INFO",
        redis::cmd("CLUSTER").arg("INFO").query_async(&mut conn),
    )
    .await?;
    if !info.lines().any(|l| l.trim() == "cluster_state:ok") {
        return Err(ClusterError::unavailable("redis cluster state is not ok"));
    }
    bounded("PING", redis::cmd("PING").query_async::<Value>(&mut conn)).await?;
    *lock(&shared.conn) = (generation, conn);
    let topics: Vec<Topic> = lock(&shared.topics).iter().cloned().collect();
    let n = topics.len();
    let results: Vec<Result<(), ClusterError>> = futures::stream::iter(topics)
        .map(|t| {
            let mut conn = shared.conn();
            let channel = shared.keys.channel(&t);
            async move { bounded("SSUBSCRIBE", conn.ssubscribe(channel)).await }
        })
        .buffer_unordered(REPAIR_CONCURRENCY)
        .collect()
        .await;
    results.into_iter().collect::<Result<(), _>>()?;
    Ok(n)
}

async fn pinger(shared: Arc<Shared>) {
    loop {
        tokio::select! {
            _ = shared.closed.cancelled() => return,
            _ = tokio::time::sleep(PING_EVERY) => {}
        }
        let mut conn = shared.conn();
        if let Err(e) = bounded("PING", redis::cmd("PING").query_async::<Value>(&mut conn)).await
            && shared.link.is_up()
        {
            warn!(error = %e, "redis cluster keep-alive failed");
            shared.broken.notify_one();
        }
    }
}

#[async_trait]
impl Broker for ClusterBroker {
    async fn publish(&self, topic: &Topic, payload: Bytes) -> Result<(), ClusterError> {
        let channel = self.shared.keys.channel(topic);
        let counter = self.counter.fetch_add(1, Ordering::SeqCst) + 1;
        let body = stamped(self.publisher, counter, &payload);
        let mut conn = self.shared.conn();
        bounded(
            "SPUBLISH",
            redis::cmd("SPUBLISH")
                .arg(channel)
                .arg(body)
                .query_async::<()>(&mut conn),
        )
        .await
    }

    async fn subscribe(&self, topic: &Topic) -> Result<(), ClusterError> {
        if self.shared.closed.is_cancelled() {
            return Err(ClusterError::Closed);
        }
        if !lock(&self.shared.topics).insert(topic.clone()) {
            return Ok(());
        }
        let mut conn = self.shared.conn();
        let channel = self.shared.keys.channel(topic);
        if let Err(e) = bounded("SSUBSCRIBE", conn.ssubscribe(channel)).await {
            lock(&self.shared.topics).remove(topic);
            return Err(e);
        }
        Ok(())
    }

    async fn unsubscribe(&self, topic: &Topic) -> Result<(), ClusterError> {
        if !lock(&self.shared.topics).remove(topic) {
            return Ok(());
        }
        let mut conn = self.shared.conn();
        let channel = self.shared.keys.channel(topic);
        bounded("SUNSUBSCRIBE", conn.sunsubscribe(channel)).await
    }

    fn healthy(&self) -> bool {
        self.shared.link.is_up() && !self.shared.closed.is_cancelled()
    }

    async fn close(&self) {
        self.shared.closed.cancel();
        let topics: Vec<Topic> = std::mem::take(&mut *lock(&self.shared.topics))
            .into_iter()
            .collect();
        // Best effort: the server forgets them anyway when the connection
        // goes, which happens once the last handle is dropped.
        let mut conn = self.shared.conn();
        for t in topics {
            let _ = tokio::time::timeout(
                Duration::from_secs(1),
                conn.sunsubscribe(self.shared.keys.channel(&t)),
            )
            .await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_round_releases_settled_messages_with_their_predecessors() {
        // Settled: publisher 1's #5 (shard B). Meanwhile: its #4 (shard A,
        // a predecessor), its #6 and publisher 2's #1 (may have
        // predecessors still on the way), and an unstamped message.
        let settled = vec![(1, Some((1, 5)), "p1-5")];
        let later = vec![
            (2, Some((1, 6)), "p1-6"),
            (3, Some((1, 4)), "p1-4"),
            (3, Some((2, 1)), "p2-1"),
            (4, None, "plain"),
        ];
        let (out, carry) = release(settled, later);
        let names = |v: &[wsring_cluster::order::Collected<&'static str>]| {
            v.iter().map(|x| x.2).collect::<Vec<_>>()
        };
        assert_eq!(names(&out), ["p1-5", "p1-4"]);
        assert_eq!(names(&carry), ["p1-6", "p2-1", "plain"]);
        assert_eq!(
            wsring_cluster::order::merge(out),
            ["p1-4", "p1-5"],
            "the predecessor goes first"
        );
        let (out, carry) = release(Vec::<wsring_cluster::order::Collected<()>>::new(), vec![]);
        assert!(out.is_empty() && carry.is_empty());
    }

    #[test]
    fn stamps_round_trip() {
        let raw = stamped(0xab, 7, b"{\"x\":1}");
        assert_eq!(unstamp(&raw), (Some((0xab, 7)), &b"{\"x\":1}"[..]));
        let raw = stamped(u64::MAX, u64::MAX, b"");
        assert_eq!(unstamp(&raw), (Some((u64::MAX, u64::MAX)), &b""[..]));
        for plain in [&b"{}"[..], b"~nonsense\nx", b"~", b""] {
            assert_eq!(unstamp(plain), (None, plain));
        }
    }
}
