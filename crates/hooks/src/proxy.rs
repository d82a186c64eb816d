//! Proxies: synchronous questions to the application, answered within a
//! bounded time.
//!
//! [`Proxy::call`] POSTs a JSON request and returns the application's answer
//! (any status below 500, with its JSON body), or a [`ProxyError`] saying
//! why there is none. Three guards keep a slow or dead application from
//! stalling sessions:
//!
//! * a **timeout** per request;
//! * a **concurrency limit**: past `max_in_flight` requests waiting on the
//!   application, a new call fails at once ([`ProxyError::Busy`]) instead of
//!   queueing behind them;
//! * a **circuit breaker**: after `failure_threshold` failures in a row
//!   (timeouts, connection errors, 5xx) calls fail at once
//!   ([`ProxyError::Open`]) for `open_for`; then one call is let through as
//!   a probe, and its success closes the breaker again.
//!
//! What a failure means to the client (refuse, or carry on as if no proxy
//! were configured) is the caller's choice: [`ProxyConfig::when_down`].

use serde::Serialize;
use serde_json::Value;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use thiserror::Error;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::redact;
use crate::sign::{SIGNATURE_HEADER, TIMESTAMP_HEADER, sign};

/// What to do when the application cannot answer (timeout, error, breaker
/// open, too many calls in flight).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WhenDown {
    /// Refuse: the connection is refused with 503, the message is answered
    /// with an `unavailable` error. The default: an application that checks
    /// every message does not want unchecked ones to slip through.
    #[default]
    Reject,
    /// Carry on as if no proxy were configured.
    Allow,
}

/// One proxy's settings. The defaults are the documented defaults of the
/// matching command-line flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyConfig {
    /// Where to POST.
    pub url: String,
    /// Signs requests like webhooks (`X-Wsring-Signature`) when set.
    pub secret: Option<String>,
    /// Time allowed for one answer. Default: 2 s.
    pub timeout: Duration,
    /// Requests waiting on the application at once, at most. Default: 256.
    pub max_in_flight: usize,
    /// Failures in a row that open the breaker. Default: 5.
    pub failure_threshold: u32,
    /// How long an open breaker fails calls at once. Default: 5 s.
    pub open_for: Duration,
    /// What a failure means. Default: reject.
    pub when_down: WhenDown,
}

impl ProxyConfig {
    /// A connect proxy's settings: every default, signed, with its own
    /// timeout. A connect the application cannot answer is refused (there is
    /// nobody to let in without it).
    pub fn connect(url: &str, secret: &str, timeout: Duration) -> ProxyConfig {
        ProxyConfig {
            secret: Some(secret.to_owned()),
            timeout,
            ..ProxyConfig::new(url)
        }
    }

    /// Settings for `url` with every default.
    pub fn new(url: impl Into<String>) -> ProxyConfig {
        ProxyConfig {
            url: url.into(),
            secret: None,
            timeout: Duration::from_secs(2),
            max_in_flight: 256,
            failure_threshold: 5,
            open_for: Duration::from_secs(5),
            when_down: WhenDown::Reject,
        }
    }
}

/// The application's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct ProxyReply {
    /// The HTTP status (below 500).
    pub status: u16,
    /// The JSON body (`null` when empty).
    pub body: Value,
}

/// Why there is no answer.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ProxyError {
    /// Too many calls are already waiting on the application.
    #[error("{0} proxy: too many requests in flight")]
    Busy(&'static str),
    /// The breaker is open after repeated failures.
    #[error("{0} proxy: the application failed repeatedly; not asking for a while")]
    Open(&'static str),
    /// No answer within the timeout.
    #[error("{0} proxy: no answer within {1:?}")]
    Timeout(&'static str, Duration),
    /// The request failed (connection refused, reset, …).
    #[error("{0} proxy: {1}")]
    Unreachable(&'static str, String),
    /// The application answered 5xx.
    #[error("{0} proxy: the application answered {1}")]
    Status(&'static str, u16),
    /// The answer is not JSON.
    #[error("{0} proxy: the answer is not JSON: {1}")]
    BadBody(&'static str, String),
}

/// Answers bodies larger than this are refused (a misbehaving application
/// must not make the node buffer without bound).
const MAX_ANSWER_BYTES: usize = 64 * 1024;

#[derive(Default)]
struct Breaker {
    failures: u32,
    open_until: Option<Instant>,
    probing: bool,
}

/// A proxy to one application URL. Cheap to clone.
#[derive(Clone)]
pub struct Proxy {
    name: &'static str,
    cfg: Arc<ProxyConfig>,
    client: reqwest::Client,
    slots: Arc<Semaphore>,
    breaker: Arc<Mutex<Breaker>>,
}

fn lock(m: &Mutex<Breaker>) -> MutexGuard<'_, Breaker> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Proxy {
    /// A proxy named `name` (`connect`, `publish`: the metrics label).
    pub fn new(name: &'static str, cfg: ProxyConfig, client: reqwest::Client) -> Proxy {
        info!(proxy = name, url = %redact::redact(&cfg.url), timeout = ?cfg.timeout, when_down = ?cfg.when_down, "proxy on");
        Proxy {
            name,
            slots: Arc::new(Semaphore::new(cfg.max_in_flight.max(1))),
            cfg: Arc::new(cfg),
            client,
            breaker: Arc::new(Mutex::new(Breaker::default())),
        }
    }

    /// What a failed call means.
    pub fn when_down(&self) -> WhenDown {
        self.cfg.when_down
    }

    /// Asks the application.
    pub async fn call(&self, request: &impl Serialize) -> Result<ProxyReply, ProxyError> {
        let started = Instant::now();
        let r = self.call_inner(request).await;
        let outcome = match &r {
            Ok(_) => "answered",
            Err(ProxyError::Busy(_)) => "busy",
            Err(ProxyError::Open(_)) => "open",
            Err(ProxyError::Timeout(..)) => "timeout",
            Err(_) => "error",
        };
        metrics::counter!("wsring_proxy_requests_total", "proxy" => self.name, "outcome" => outcome)
            .increment(1);
        metrics::histogram!("wsring_proxy_request_seconds", "proxy" => self.name)
            .record(started.elapsed().as_secs_f64());
        r
    }

    async fn call_inner(&self, request: &impl Serialize) -> Result<ProxyReply, ProxyError> {
        let Ok(_slot) = self.slots.clone().try_acquire_owned() else {
            return Err(ProxyError::Busy(self.name));
        };
        let probe = self.admit()?;
        let r = self.ask(request).await;
        self.record(r.is_ok(), probe);
        r
    }

    /// Whether the breaker lets this call through; `Ok(true)` for the probe
    /// of a half-open breaker.
    fn admit(&self) -> Result<bool, ProxyError> {
        let mut b = lock(&self.breaker);
        match b.open_until {
            None => Ok(false),
            Some(until) if Instant::now() < until => Err(ProxyError::Open(self.name)),
            Some(_) if b.probing => Err(ProxyError::Open(self.name)),
            Some(_) => {
                b.probing = true;
                Ok(true)
            }
        }
    }

    fn record(&self, ok: bool, probe: bool) {
        let mut b = lock(&self.breaker);
        if probe {
            b.probing = false;
        }
        if ok {
            if b.open_until.is_some() {
                info!(
                    proxy = self.name,
                    "application answers again; breaker closed"
                );
            }
            *b = Breaker::default();
            return;
        }
        b.failures = b.failures.saturating_add(1);
        if probe || b.failures >= self.cfg.failure_threshold.max(1) {
            if b.open_until.is_none() {
                warn!(proxy = self.name, failures = b.failures, open_for = ?self.cfg.open_for, "application failing; breaker open");
            }
            b.open_until = Some(Instant::now() + self.cfg.open_for);
        }
        metrics::gauge!("wsring_proxy_breaker_open", "proxy" => self.name)
            .set(if b.open_until.is_some() { 1.0 } else { 0.0 });
    }

    async fn ask(&self, request: &impl Serialize) -> Result<ProxyReply, ProxyError> {
        let body = serde_json::to_vec(request)
            .map_err(|e| ProxyError::Unreachable(self.name, e.to_string()))?;
        let mut req = self
            .client
            .post(&self.cfg.url)
            .timeout(self.cfg.timeout)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(
                TIMESTAMP_HEADER,
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis())
                    .to_string(),
            );
        if let Some(secret) = &self.cfg.secret {
            req = req.header(SIGNATURE_HEADER, sign(secret.as_bytes(), &body));
        }
        let fail = |e: reqwest::Error| {
            if e.is_timeout() {
                ProxyError::Timeout(self.name, self.cfg.timeout)
            } else {
                // The error would show the URL as configured.
                ProxyError::Unreachable(self.name, e.without_url().to_string())
            }
        };
        let mut resp = req.body(body).send().await.map_err(fail)?;
        let status = resp.status().as_u16();
        if status >= 500 {
            return Err(ProxyError::Status(self.name, status));
        }
        let mut raw = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(fail)? {
            if raw.len() + chunk.len() > MAX_ANSWER_BYTES {
                return Err(ProxyError::BadBody(
                    self.name,
                    format!("answer larger than {MAX_ANSWER_BYTES} bytes"),
                ));
            }
            raw.extend_from_slice(&chunk);
        }
        let body = if raw.iter().all(u8::is_ascii_whitespace) {
            Value::Null
        } else {
            serde_json::from_slice(&raw)
                .map_err(|e| ProxyError::BadBody(self.name, e.to_string()))?
        };
        Ok(ProxyReply { status, body })
    }
}
