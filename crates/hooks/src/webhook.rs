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
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::backoff;
use crate::redact;
use crate::sign::{SIGNATURE_HEADER, TIMESTAMP_HEADER, sign};

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
    format: Format,
    id_prefix: String,
    next_id: AtomicU64,
    counters: Arc<Counters>,
    workers: Mutex<Vec<JoinHandle<()>>>,
}

struct Sink {
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
    closed: bool,
    /// Drops since the last overflow warning, and when that was.
    unreported: u64,
    warned_at: Option<Instant>,
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
        let counters = Arc::new(Counters::default());
        let sinks: Vec<Arc<Sink>> = cfg
            .urls
            .iter()
            .map(|url| {
                Arc::new(Sink {
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
            info!(?urls, signed = cfg.secret.is_some(), "webhooks on");
        }
        Webhooks {
            inner: Arc::new(Inner {
                format: cfg.format.clone(),
                sinks,
                id_prefix: id_prefix.to_owned(),
                next_id: AtomicU64::new(1),
                counters,
                workers: Mutex::new(workers),
            }),
        }
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
        if q.bytes + event.len() > self.cfg.queue_bytes {
            q.unreported += 1;
            let due = q.warned_at.is_none_or(|at| at.elapsed() >= WARN_EVERY);
            if due {
                warn!(
                    url = %self.shown,
                    queued_bytes = q.bytes,
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

    async fn deliver(&self, batch: Vec<Bytes>) {
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
                    return;
                }
                Sent::Rejected(status) => {
                    warn!(url = %self.shown, status, events, "webhook receiver refused a batch; dropped");
                    self.dropped(events, "rejected");
                    return;
                }
                Sent::Retry(why) => {
                    let closed = lock(&self.queue).closed;
                    let wait = backoff::delay(self.cfg.retry_base, self.cfg.retry_cap, attempt);
                    if closed || started.elapsed() + wait > self.cfg.retry_for {
                        warn!(url = %self.shown, events, attempts = attempt + 1, error = %why, "webhook batch not delivered in time; dropped");
                        self.dropped(events, "expired");
                        return;
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
