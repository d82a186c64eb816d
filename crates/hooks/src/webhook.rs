//! Webhooks: events from the node to the application, asynchronously.
//!
//! Every receiver URL has its own queue and worker, so a slow receiver
//! delays only itself. [`Webhooks::emit`] serialises the event once and
//! appends it to every queue without waiting: a queue over
//! [`WebhookConfig::queue_bytes`] drops the event instead, counted in
//! `wsring_webhook_dropped_total{reason="overflow"}` and logged (at most every
//! few seconds). The worker sends batches of up to `batch_max_events` events
//! or `batch_max_bytes` bytes, waiting at most `batch_delay` for a batch to
//! fill, one batch in flight at a time so a receiver sees events in order.
//!
//! Delivery is at least once: a batch answered with 5xx or 429, or not
//! answered within `timeout`, or not delivered for a connection error, is
//! sent again (same body, same event ids) after a jittered backoff, for up to
//! `retry_for`; then it is dropped (`reason="expired"`). Any other 4xx is the
//! receiver refusing the batch for good (`reason="rejected"`). Receivers
//! deduplicate by event `id`.
//!
//! Durable mode ([`Webhooks::start_durable`], then [`Webhooks::attach`]):
//! the in-memory queue only buffers events on their way to a [`Spool`] in
//! the cluster backend, one queue per receiver and owner (the node's id and
//! incarnation); the worker delivers from the spool's head and removes what
//! the receiver acknowledged. Events therefore outlive the process: when a
//! node dies, another one [adopts](Webhooks::adopt) its queues, delivers
//! them with their original ids and forgets them. The bound of
//! `queue_bytes` covers both the buffer and what this owner holds in the
//! spool; only events still in the buffer (appended within a round trip)
//! die with the process.
//!
//! The wire format: `POST <url>` with `Content-Type: application/json`,
//! body `{"events":[{"id":…,"type":…,"at_ms":…,…}]}`, headers
//! `X-Wsring-Signature: sha256=<hex HMAC-SHA256 of the body>` (when a secret
//! is configured) and `X-Wsring-Timestamp: <unix ms>`.
//!
//! [`Format::Pusher`] writes the same queue's batches the way Pusher
//! Channels sends its webhooks, so Pusher server libraries verify them
//! unchanged: body `{"time_ms":…,"events":[{"name":…,…}]}`, headers
//! `X-Pusher-Key: <app key>` and `X-Pusher-Signature: <hex HMAC-SHA256 of
//! the body under the app secret>`. Such events carry no `id`: Pusher's
//! receivers do not deduplicate, so a retried batch can repeat events.

use bytes::{BufMut, Bytes, BytesMut};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::backoff;
use crate::redact;
use crate::sign::{SIGNATURE_HEADER, TIMESTAMP_HEADER, sign};
use crate::spool::Spool;

/// How batches are written on the wire.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Format {
    /// wsring's own: `{"events":[{"id","type","at_ms",…}]}`, signed in
    /// `X-Wsring-Signature`.
    #[default]
    Wsring,
    /// Pusher Channels': `{"time_ms","events":[{"name",…}]}`, signed (with
    /// [`WebhookConfig::secret`], the app secret) in `X-Pusher-Signature`
    /// and naming the app `key` in `X-Pusher-Key`.
    Pusher {
        /// The Pusher app key.
        key: String,
    },
}

/// The Pusher key header.
pub const PUSHER_KEY_HEADER: &str = "x-pusher-key";
/// The Pusher signature header (bare lower-case hex, no `sha256=`).
pub const PUSHER_SIGNATURE_HEADER: &str = "x-pusher-signature";

/// Webhook delivery settings. The defaults are the documented defaults of
/// the matching command-line flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookConfig {
    /// Receivers; every event goes to each of them. Empty: no webhooks.
    pub urls: Vec<String>,
    /// HMAC-SHA256 key for `X-Wsring-Signature`; without it requests are
    /// unsigned.
    pub secret: Option<String>,
    /// Events per request at most. Default: 100.
    pub batch_max_events: usize,
    /// Body bytes per request at most (a single larger event is sent
    /// alone). Default: 256 KiB.
    pub batch_max_bytes: usize,
    /// How long the first queued event waits for others to share its
    /// request. Default: 50 ms.
    pub batch_delay: Duration,
    /// Serialized event bytes queued per receiver before new events are
    /// dropped. Default: 16 MiB.
    pub queue_bytes: usize,
    /// Time allowed for one request. Default: 5 s.
    pub timeout: Duration,
    /// How long a batch is retried before it is dropped. Default: 5 min.
    pub retry_for: Duration,
    /// First retry delay (then doubling, jittered). Default: 200 ms.
    pub retry_base: Duration,
    /// Longest retry delay. Default: 30 s.
    pub retry_cap: Duration,
    /// The wire format. Default: wsring's own.
    pub format: Format,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            urls: Vec::new(),
            secret: None,
            batch_max_events: 100,
            batch_max_bytes: 256 * 1024,
            batch_delay: Duration::from_millis(50),
            queue_bytes: 16 * 1024 * 1024,
            timeout: Duration::from_secs(5),
            retry_for: Duration::from_secs(300),
            retry_base: Duration::from_millis(200),
            retry_cap: Duration::from_secs(30),
            format: Format::Wsring,
        }
    }
}

/// One event: its `type` and its fields (`id` and `at_ms` are added when it
/// is emitted).
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// The event type, e.g. `session.connected`.
    pub kind: &'static str,
    /// The event's own fields.
    pub fields: Map<String, Value>,
}

impl Event {
    /// An event of type `kind` with no fields yet.
    pub fn new(kind: &'static str) -> Event {
        Event {
            kind,
            fields: Map::new(),
        }
    }

    /// Adds a field.
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Event {
        self.fields.insert(key.to_owned(), value.into());
        self
    }
}

/// Counters of one [`Webhooks`], for tests and `/api/info`-style reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WebhookStats {
    /// Events emitted (each counted once, whatever the number of URLs).
    pub emitted: u64,
    /// Event deliveries acknowledged with 2xx (per URL).
    pub delivered: u64,
    /// Event deliveries given up (per URL): overflow, expired or rejected.
    pub dropped: u64,
    /// Requests sent again after a failure.
    pub retries: u64,
}

#[derive(Default)]
struct Counters {
    emitted: AtomicU64,
    delivered: AtomicU64,
    dropped: AtomicU64,
    retries: AtomicU64,
}

/// Sends events to the configured receivers. Cheap to clone.
#[derive(Clone)]
pub struct Webhooks {
    inner: Arc<Inner>,
}

struct Inner {
    sinks: Vec<Arc<Sink>>,
    /// The spool, once attached (durable mode only).
    slot: Arc<OnceLock<Attached>>,
    /// Adopted queues being delivered now.
    adopting: Arc<Mutex<HashSet<String>>>,
    format: Format,
    id_prefix: String,
    next_id: AtomicU64,
    counters: Arc<Counters>,
    workers: Mutex<Vec<JoinHandle<()>>>,
}

/// The spool of a durable [`Webhooks`] and the owner name of its queues.
#[derive(Clone)]
struct Attached {
    spool: Arc<dyn Spool>,
    owner: String,
}

struct Sink {
    /// Whether events go through a spool (which may not be attached yet).
    durable: bool,
    /// The first 8 bytes of the URL's SHA-256, in hex: names this
    /// receiver's spool queues without revealing the URL.
    hash: String,
    slot: Arc<OnceLock<Attached>>,
    /// Wakes the spool deliverer (events spooled, or shutdown).
    spooled_wake: Notify,
    /// Where to POST: the URL as configured, credentials included. Never
    /// logged or exported; `shown` and `label` are.
    url: String,
    /// The URL for logs ([`redact::redact`]).
    shown: String,
    /// The URL for metrics labels ([`redact::label`]).
    label: String,
    cfg: WebhookConfig,
    queue: Mutex<Queue>,
    wake: Notify,
    client: reqwest::Client,
    counters: Arc<Counters>,
}

#[derive(Default)]
struct Queue {
    events: VecDeque<Bytes>,
    bytes: usize,
    /// Bytes this owner holds in the spool (durable mode), appends under
    /// way included.
    spooled: usize,
    closed: bool,
    /// Drops since the last overflow warning, and when that was.
    unreported: u64,
    warned_at: Option<Instant>,
}

/// How often an idle durable worker looks at its spool queue anyway.
const SPOOL_POLL: Duration = Duration::from_secs(1);

/// The name of a receiver's spool queues: the first 8 bytes of the SHA-256
/// of the URL and the wire format, in hex (the same in every process with
/// the same configuration). The format is part of it so that a URL that
/// receives both wsring's and Pusher's webhooks has two queues, each
/// delivered in its own format by whichever process adopts it.
fn url_hash(format: &Format, url: &str) -> String {
    let mut h = Sha256::new();
    if let Format::Pusher { .. } = format {
        h.update(b"pusher ");
    }
    h.update(url.as_bytes());
    h.finalize()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Overflow warnings are repeated at most this often.
const WARN_EVERY: Duration = Duration::from_secs(10);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding a queue lock cannot leave it inconsistent in a
    // way that matters more than losing webhooks altogether.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Webhooks {
    /// Starts one worker per URL. Event ids are `<id_prefix>-<n>`; give a
    /// prefix unique to this process (node id plus a boot nonce), so ids stay
    /// unique across restarts. Must run inside a Tokio runtime.
    pub fn start(cfg: WebhookConfig, client: reqwest::Client, id_prefix: &str) -> Webhooks {
        Self::start_with(cfg, client, id_prefix, false)
    }

    /// Like [`start`](Self::start), in durable mode: events are buffered in
    /// memory (within `queue_bytes`) until [`attach`](Self::attach) gives
    /// the spool, and delivered from there.
    pub fn start_durable(cfg: WebhookConfig, client: reqwest::Client, id_prefix: &str) -> Webhooks {
        Self::start_with(cfg, client, id_prefix, true)
    }

    fn start_with(
        cfg: WebhookConfig,
        client: reqwest::Client,
        id_prefix: &str,
        durable: bool,
    ) -> Webhooks {
        let counters = Arc::new(Counters::default());
        let slot = Arc::new(OnceLock::new());
        let sinks: Vec<Arc<Sink>> = cfg
            .urls
            .iter()
            .map(|url| {
                Arc::new(Sink {
                    durable,
                    hash: url_hash(&cfg.format, url),
                    slot: Arc::clone(&slot),
                    spooled_wake: Notify::new(),
                    url: url.clone(),
                    shown: redact::redact(url),
                    label: redact::label(url),
                    cfg: cfg.clone(),
                    queue: Mutex::new(Queue::default()),
                    wake: Notify::new(),
                    client: client.clone(),
                    counters: counters.clone(),
                })
            })
            .collect();
        let workers = sinks
            .iter()
            .map(|s| tokio::spawn(s.clone().run()))
            .collect();
        if !sinks.is_empty() {
            let urls: Vec<&str> = sinks.iter().map(|s| s.shown.as_str()).collect();
            info!(?urls, signed = cfg.secret.is_some(), durable, "webhooks on");
        }
        Webhooks {
            inner: Arc::new(Inner {
                format: cfg.format.clone(),
                sinks,
                slot,
                adopting: Arc::new(Mutex::new(HashSet::new())),
                id_prefix: id_prefix.to_owned(),
                next_id: AtomicU64::new(1),
                counters,
                workers: Mutex::new(workers),
            }),
        }
    }

    /// Durable mode: the spool, and this process's owner name for its
    /// queues (unique to the process: the node's id and incarnation, in
    /// `[A-Za-z0-9_-]`). Buffered events start moving to the spool. Only
    /// the first call counts.
    pub fn attach(&self, spool: Arc<dyn Spool>, owner: &str) {
        let _ = self.inner.slot.set(Attached {
            spool,
            owner: owner.to_owned(),
        });
        for sink in &self.inner.sinks {
            sink.wake.notify_one();
        }
    }

    /// The owner part of spool queue `queue` when it is the queue of one of
    /// this process's receivers (another process's, or its own).
    pub fn queue_owner<'q>(&self, queue: &'q str) -> Option<&'q str> {
        let (hash, owner) = queue.split_once('-')?;
        self.inner
            .sinks
            .iter()
            .any(|s| s.hash == hash)
            .then_some(owner)
    }

    /// Delivers spool queue `queue` of an owner that died, then forgets it.
    /// False (nothing done) when the spool is not attached, the queue is not
    /// one of this process's receivers', or it is being delivered already.
    pub fn adopt(&self, queue: &str) -> bool {
        let Some(attached) = self.inner.slot.get() else {
            return false;
        };
        let Some(sink) = queue
            .split_once('-')
            .and_then(|(hash, _)| self.inner.sinks.iter().find(|s| s.hash == hash))
        else {
            return false;
        };
        if !lock(&self.inner.adopting).insert(queue.to_owned()) {
            return false;
        }
        info!(url = %sink.shown, queue, "delivering the webhook queue of a node that left");
        let sink = Arc::clone(sink);
        let spool = Arc::clone(&attached.spool);
        let adopting = Arc::clone(&self.inner.adopting);
        let name = queue.to_owned();
        let task = tokio::spawn(async move {
            sink.drain(&spool, &name, false).await;
            lock(&adopting).remove(&name);
        });
        let mut workers = lock(&self.inner.workers);
        workers.retain(|w| !w.is_finished());
        workers.push(task);
        true
    }

    /// Whether any receiver is configured (emitting is pointless otherwise).
    pub fn enabled(&self) -> bool {
        !self.inner.sinks.is_empty()
    }

    /// Queues `event` for every receiver and returns its id (`None` when no
    /// receiver is configured). Never waits; a full queue drops the event
    /// for its receiver (counted).
    pub fn emit(&self, event: Event) -> Option<String> {
        self.queue(event).map(|(id, _)| id)
    }

    /// Like [`emit`](Self::emit), but `Some(id)` only when every receiver's
    /// queue took the event: for events a client waits on.
    pub fn emit_all(&self, event: Event) -> Option<String> {
        match self.queue(event) {
            Some((id, true)) => Some(id),
            _ => None,
        }
    }

    /// The event's id and whether every queue took it.
    fn queue(&self, event: Event) -> Option<(String, bool)> {
        if !self.enabled() {
            return None;
        }
        let n = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let id = format!("{}-{n}", self.inner.id_prefix);
        let mut obj = Map::with_capacity(event.fields.len() + 3);
        match self.inner.format {
            Format::Wsring => {
                obj.insert("id".into(), Value::String(id.clone()));
                obj.insert("type".into(), Value::String(event.kind.into()));
                obj.insert("at_ms".into(), Value::from(now_ms()));
            }
            Format::Pusher { .. } => {
                obj.insert("name".into(), Value::String(event.kind.into()));
            }
        }
        for (k, v) in event.fields {
            obj.entry(k).or_insert(v);
        }
        let bytes = match serde_json::to_vec(&Value::Object(obj)) {
            Ok(b) => Bytes::from(b),
            Err(e) => {
                warn!(kind = event.kind, error = %e, "webhook event not serialisable; dropped");
                return None;
            }
        };
        self.inner.counters.emitted.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("wsring_webhook_events_total", "type" => event.kind).increment(1);
        let mut all = true;
        for sink in &self.inner.sinks {
            all &= sink.push(bytes.clone(), event.kind);
        }
        Some((id, all))
    }

    /// The counters so far.
    pub fn stats(&self) -> WebhookStats {
        let c = &self.inner.counters;
        WebhookStats {
            emitted: c.emitted.load(Ordering::Relaxed),
            delivered: c.delivered.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
            retries: c.retries.load(Ordering::Relaxed),
        }
    }

    /// Stops taking events and gives the workers up to `grace` to deliver
    /// what is queued; whatever is left after that is dropped (counted).
    pub async fn shutdown(&self, grace: Duration) {
        for sink in &self.inner.sinks {
            lock(&sink.queue).closed = true;
            sink.wake.notify_one();
            sink.spooled_wake.notify_one();
        }
        let workers = std::mem::take(&mut *lock(&self.inner.workers));
        let deadline = Instant::now() + grace;
        for mut w in workers {
            if tokio::time::timeout_at(deadline, &mut w).await.is_err() {
                w.abort();
            }
        }
        for sink in &self.inner.sinks {
            let left = {
                let mut q = lock(&sink.queue);
                q.bytes = 0;
                std::mem::take(&mut q.events).len()
            };
            if left > 0 {
                sink.dropped(left as u64, "shutdown");
                warn!(url = %sink.shown, events = left, "webhook events still queued at shutdown were dropped");
            }
        }
    }
}

/// A request's outcome.
enum Sent {
    Delivered,
    /// Worth retrying (5xx, 429, timeout, connection error).
    Retry(String),
    /// Refused for good (other 4xx).
    Rejected(u16),
}

impl Sink {
    /// Queues an event; false when it was dropped instead.
    fn push(&self, event: Bytes, kind: &'static str) -> bool {
        let mut q = lock(&self.queue);
        if q.closed {
            return false;
        }
        if q.bytes + q.spooled + event.len() > self.cfg.queue_bytes {
            q.unreported += 1;
            let due = q.warned_at.is_none_or(|at| at.elapsed() >= WARN_EVERY);
            if due {
                warn!(
                    url = %self.shown,
                    queued_bytes = q.bytes + q.spooled,
                    limit = self.cfg.queue_bytes,
                    dropped = q.unreported,
                    kind,
                    "webhook queue full: events dropped (receiver slower than the event rate?)"
                );
                q.unreported = 0;
                q.warned_at = Some(Instant::now());
            }
            drop(q);
            self.dropped(1, "overflow");
            return false;
        }
        q.bytes += event.len();
        q.events.push_back(event);
        metrics::gauge!("wsring_webhook_queue_bytes", "url" => self.label.clone())
            .set(q.bytes as f64);
        drop(q);
        self.wake.notify_one();
        true
    }

    fn dropped(&self, n: u64, reason: &'static str) {
        self.counters.dropped.fetch_add(n, Ordering::Relaxed);
        metrics::counter!("wsring_webhook_dropped_total", "url" => self.label.clone(), "reason" => reason)
            .increment(n);
    }

    fn len_and_closed(&self) -> (usize, usize, bool) {
        let q = lock(&self.queue);
        (q.events.len(), q.bytes, q.closed)
    }

    /// Takes the next batch: at least one event, then up to the caps.
    fn take_batch(&self) -> Vec<Bytes> {
        let mut q = lock(&self.queue);
        let mut batch = Vec::new();
        let mut size = 2;
        while let Some(next) = q.events.front() {
            let full = batch.len() >= self.cfg.batch_max_events
                || (!batch.is_empty() && size + next.len() + 1 > self.cfg.batch_max_bytes);
            if full {
                break;
            }
            size += next.len() + 1;
            let Some(e) = q.events.pop_front() else { break };
            q.bytes -= e.len();
            batch.push(e);
        }
        metrics::gauge!("wsring_webhook_queue_bytes", "url" => self.label.clone())
            .set(q.bytes as f64);
        batch
    }

    fn batch_full(&self, events: usize, bytes: usize) -> bool {
        events >= self.cfg.batch_max_events || bytes >= self.cfg.batch_max_bytes
    }

    async fn run(self: Arc<Self>) {
        if self.durable {
            return self.run_durable().await;
        }
        loop {
            // Wait for a first event.
            loop {
                let (n, _, closed) = self.len_and_closed();
                if n > 0 {
                    break;
                }
                if closed {
                    return;
                }
                self.wake.notified().await;
            }
            // Give it `batch_delay` to gather company, unless full already.
            let deadline = Instant::now() + self.cfg.batch_delay;
            loop {
                let (n, bytes, closed) = self.len_and_closed();
                if closed || self.batch_full(n, bytes) {
                    break;
                }
                tokio::select! {
                    () = self.wake.notified() => {}
                    () = tokio::time::sleep_until(deadline) => break,
                }
            }
            let batch = self.take_batch();
            self.deliver(batch).await;
        }
    }

    /// Durable mode: once the spool is attached, moves buffered events
    /// into it and delivers this owner's queue from it, both until
    /// shutdown (whose grace ends them).
    async fn run_durable(self: Arc<Self>) {
        let attached = loop {
            if let Some(a) = self.slot.get() {
                break a.clone();
            }
            // Stopped before the node ever joined: shutdown drops the
            // buffer (counted).
            if lock(&self.queue).closed {
                return;
            }
            self.wake.notified().await;
        };
        let queue = format!("{}-{}", self.hash, attached.owner);
        tokio::join!(
            self.persist(&attached.spool, &queue),
            self.drain(&attached.spool, &queue, true)
        );
    }

    /// Takes buffered events (up to the batch caps) for the spool, counting
    /// them as spooled from now on.
    fn take_for_spool(&self) -> Vec<Bytes> {
        let batch = self.take_batch();
        let bytes: usize = batch.iter().map(Bytes::len).sum();
        lock(&self.queue).spooled += bytes;
        batch
    }

    /// Moves buffered events into the spool, in order, retrying a failed
    /// append with backoff (the buffer keeps bounding what waits).
    async fn persist(&self, spool: &Arc<dyn Spool>, queue: &str) {
        loop {
            let (n, _, closed) = self.len_and_closed();
            if n == 0 {
                if closed {
                    return;
                }
                self.wake.notified().await;
                continue;
            }
            let batch = self.take_for_spool();
            let mut attempt = 0u32;
            loop {
                let why = match tokio::time::timeout(self.cfg.timeout, spool.append(queue, &batch))
                    .await
                {
                    Ok(Ok(())) => break,
                    Ok(Err(e)) => e.to_string(),
                    Err(_) => format!("no answer within {:?}", self.cfg.timeout),
                };
                if attempt == 2 {
                    warn!(url = %self.shown, events = batch.len(), error = %why, "webhook events cannot be stored in the backend; retrying");
                } else {
                    debug!(url = %self.shown, events = batch.len(), attempt, error = %why, "webhook spool append failed");
                }
                tokio::time::sleep(backoff::delay(
                    self.cfg.retry_base,
                    self.cfg.retry_cap,
                    attempt,
                ))
                .await;
                attempt = attempt.saturating_add(1);
            }
            self.spooled_wake.notify_one();
        }
    }

    /// Delivers `queue` from the spool's head, removing what the receiver
    /// acknowledged. The owner's own queue (`own`) is followed until
    /// shutdown; an adopted one until it is empty, then forgotten.
    async fn drain(&self, spool: &Arc<dyn Spool>, queue: &str, own: bool) {
        let mut attempt = 0u32;
        loop {
            let closed = lock(&self.queue).closed;
            let head = tokio::time::timeout(
                self.cfg.timeout,
                spool.head(queue, self.cfg.batch_max_events),
            )
            .await;
            let events = match head {
                Ok(Ok(events)) => events,
                failure => {
                    if closed {
                        return;
                    }
                    let why = match failure {
                        Ok(Err(e)) => e.to_string(),
                        _ => format!("no answer within {:?}", self.cfg.timeout),
                    };
                    debug!(url = %self.shown, queue, attempt, error = %why, "webhook spool read failed");
                    tokio::time::sleep(backoff::delay(
                        self.cfg.retry_base,
                        self.cfg.retry_cap,
                        attempt,
                    ))
                    .await;
                    attempt = attempt.saturating_add(1);
                    continue;
                }
            };
            attempt = 0;
            if events.is_empty() {
                if closed {
                    return;
                }
                if !own {
                    if let Err(e) = self.spool_call(queue, || spool.forget(queue)).await {
                        debug!(url = %self.shown, queue, error = %e, "adopted webhook queue not forgotten");
                    }
                    info!(url = %self.shown, queue, "webhook queue of a node that left delivered");
                    return;
                }
                // Woken by the next append; the poll only guards against a
                // lost wake-up.
                tokio::select! {
                    () = self.spooled_wake.notified() => {}
                    () = tokio::time::sleep(SPOOL_POLL) => {}
                }
                continue;
            }
            // A batch within the byte cap (a single larger event alone).
            let mut size = 2;
            let mut take = 0;
            for e in &events {
                if take > 0 && size + e.body.len() + 1 > self.cfg.batch_max_bytes {
                    break;
                }
                size += e.body.len() + 1;
                take += 1;
            }
            let upto = events[take - 1].seq;
            let bodies: Vec<Bytes> = events.into_iter().take(take).map(|e| e.body).collect();
            let bytes: usize = bodies.iter().map(Bytes::len).sum();
            if !self.deliver(bodies).await {
                return;
            }
            if let Err(e) = self.spool_call(queue, || spool.remove(queue, upto)).await {
                // Sent again later: receivers deduplicate by id.
                debug!(url = %self.shown, queue, error = %e, "delivered webhook events not removed from the spool");
                continue;
            }
            if own {
                let mut q = lock(&self.queue);
                q.spooled = q.spooled.saturating_sub(bytes);
            }
        }
    }

    /// One spool call with the request timeout, tried up to three times.
    async fn spool_call<F, Fut>(&self, queue: &str, call: F) -> Result<(), String>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<(), crate::spool::SpoolError>>,
    {
        let mut why = String::new();
        for attempt in 0..3u32 {
            match tokio::time::timeout(self.cfg.timeout, call()).await {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(e)) => why = e.to_string(),
                Err(_) => why = format!("no answer within {:?}", self.cfg.timeout),
            }
            debug!(url = %self.shown, queue, attempt, error = %why, "webhook spool call failed");
            tokio::time::sleep(backoff::delay(
                self.cfg.retry_base,
                self.cfg.retry_cap,
                attempt,
            ))
            .await;
        }
        Err(why)
    }

    fn body(&self, batch: &[Bytes]) -> Bytes {
        let len = batch.iter().map(|e| e.len() + 1).sum::<usize>() + 40;
        let mut b = BytesMut::with_capacity(len);
        if let Format::Pusher { .. } = self.cfg.format {
            b.put_slice(format!("{{\"time_ms\":{},", now_ms()).as_bytes());
        } else {
            b.put_u8(b'{');
        }
        b.put_slice(b"\"events\":[");
        for (i, e) in batch.iter().enumerate() {
            if i > 0 {
                b.put_u8(b',');
            }
            b.put_slice(e);
        }
        b.put_slice(b"]}");
        b.freeze()
    }

    /// Sends `batch` until it is delivered or given up (true), or, in
    /// durable mode, until the process stops while the receiver fails
    /// (false: the batch stays in the spool).
    async fn deliver(&self, batch: Vec<Bytes>) -> bool {
        let events = batch.len() as u64;
        let body = self.body(&batch);
        let signature = self.cfg.secret.as_ref().map(|s| {
            let sig = sign(s.as_bytes(), &body);
            match self.cfg.format {
                Format::Wsring => sig,
                // Pusher's header is the bare hex digest.
                Format::Pusher { .. } => sig.trim_start_matches("sha256=").to_owned(),
            }
        });
        let started = Instant::now();
        let mut attempt = 0u32;
        loop {
            match self.send(&body, signature.as_deref()).await {
                Sent::Delivered => {
                    self.counters.delivered.fetch_add(events, Ordering::Relaxed);
                    metrics::counter!("wsring_webhook_delivered_total", "url" => self.label.clone())
                        .increment(events);
                    if attempt > 0 {
                        info!(url = %self.shown, events, attempts = attempt + 1, "webhook batch delivered after retries");
                    }
                    return true;
                }
                Sent::Rejected(status) => {
                    warn!(url = %self.shown, status, events, "webhook receiver refused a batch; dropped");
                    self.dropped(events, "rejected");
                    return true;
                }
                Sent::Retry(why) => {
                    let closed = lock(&self.queue).closed;
                    let wait = backoff::delay(self.cfg.retry_base, self.cfg.retry_cap, attempt);
                    if closed && self.durable {
                        debug!(url = %self.shown, events, "stopping: the batch stays in the spool");
                        return false;
                    }
                    if closed || started.elapsed() + wait > self.cfg.retry_for {
                        warn!(url = %self.shown, events, attempts = attempt + 1, error = %why, "webhook batch not delivered in time; dropped");
                        self.dropped(events, "expired");
                        return true;
                    }
                    // The first failure is routine (a receiver restarting);
                    // a receiver failing for longer is worth a warning.
                    if attempt == 2 {
                        warn!(url = %self.shown, events, error = %why, "webhook receiver failing; retrying");
                    } else {
                        debug!(url = %self.shown, events, attempt, error = %why, ?wait, "webhook batch will be retried");
                    }
                    self.counters.retries.fetch_add(1, Ordering::Relaxed);
                    metrics::counter!("wsring_webhook_retries_total", "url" => self.label.clone())
                        .increment(1);
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
            }
        }
    }

    async fn send(&self, body: &Bytes, signature: Option<&str>) -> Sent {
        let mut req = self
            .client
            .post(&self.url)
            .timeout(self.cfg.timeout)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.clone());
        match &self.cfg.format {
            Format::Wsring => {
                req = req.header(TIMESTAMP_HEADER, now_ms().to_string());
                if let Some(sig) = signature {
                    req = req.header(SIGNATURE_HEADER, sig);
                }
            }
            Format::Pusher { key } => {
                req = req.header(PUSHER_KEY_HEADER, key.as_str());
                if let Some(sig) = signature {
                    req = req.header(PUSHER_SIGNATURE_HEADER, sig);
                }
            }
        }
        let started = Instant::now();
        let outcome = match req.send().await {
            Ok(resp) => {
                let status = resp.status();
                // Drain (bounded by the request timeout) so the connection
                // can be reused.
                let _ = resp.bytes().await;
                if status.is_success() {
                    Sent::Delivered
                } else if status.is_server_error()
                    || status == reqwest::StatusCode::TOO_MANY_REQUESTS
                    || status == reqwest::StatusCode::REQUEST_TIMEOUT
                {
                    Sent::Retry(format!("HTTP {status}"))
                } else {
                    Sent::Rejected(status.as_u16())
                }
            }
            Err(e) if e.is_timeout() => {
                Sent::Retry(format!("no answer within {:?}", self.cfg.timeout))
            }
            // The error would show the URL as configured.
            Err(e) => Sent::Retry(e.without_url().to_string()),
        };
        let label = match &outcome {
            Sent::Delivered => "delivered",
            Sent::Retry(_) => "failed",
            Sent::Rejected(_) => "rejected",
        };
        metrics::histogram!("wsring_webhook_request_seconds", "url" => self.label.clone(), "outcome" => label)
            .record(started.elapsed().as_secs_f64());
        outcome
    }
}
