//! wsring's calls to the application's backend.
//!
//! * [`webhook`] — asynchronous, at-least-once event delivery: events are
//!   queued per receiver URL (bounded in bytes; overflow is counted and
//!   logged, never waited for), sent in batches (size and time caps) signed
//!   with HMAC-SHA256 ([`sign`]), and retried with jittered backoff on 5xx,
//!   429, timeouts and connection errors. A session never waits for a
//!   webhook.
//! * [`proxy`] — synchronous questions (may this client connect? may this
//!   message be sent?) with a timeout, a concurrency limit and a circuit
//!   breaker, so a slow or dead application costs a bounded wait and then a
//!   configured answer, not a stall.
//!
//! * [`spool`] — the store behind durable webhooks (the node adapts the
//!   cluster backend's queues to it), so queued events outlive the process.
//!
//! * [`redact`] — how those URLs are shown (logs, metrics, `/api/info`):
//!   never with their userinfo or query values.
//!
//! The crate knows nothing about sessions or the cluster: the node decides
//! what to emit and what to ask; this crate only carries it, bounded.

pub mod backoff;
pub mod proxy;
pub mod redact;
pub mod sign;
pub mod spool;
pub mod webhook;

pub use proxy::{Proxy, ProxyConfig, ProxyError, ProxyReply, WhenDown};
pub use sign::{SIGNATURE_HEADER, TIMESTAMP_HEADER, sign, verify};
pub use spool::{Spool, SpoolError, Spooled};
pub use webhook::{
    Event, Format, PUSHER_KEY_HEADER, PUSHER_SIGNATURE_HEADER, WebhookConfig, WebhookStats,
    Webhooks,
};
