//! Typed node configuration, declared once for the library and for the
//! command line: the `wsring` binary fills [`NodeConfig`] from flags,
//! `WSRING_*` environment variables and its TOML file through the clap
//! attributes on the fields, which also hold the defaults.

use serde::Serialize;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

pub use wsring_protocol::Routing;

/// Everything a node needs to know about itself.
///
/// The session settings are declared here once: each field's doc comment is
/// its `--help` text, its `#[arg]` attribute names the flag, the `WSRING_*`
/// environment variable and the default, and the `wsring` binary reuses the
/// same declaration for its TOML file (key = field name), for the arguments
/// `wsring dev` passes to node processes (through `Serialize`) and for
/// docs/CONFIGURATION.md. [`NodeConfig::new`] takes its defaults from the
/// same attributes.
#[derive(Debug, Clone, clap::Args, Serialize)]
pub struct NodeConfig {
    /// Node id, unique among live nodes: 1–64 of `[A-Za-z0-9_-]`. No default:
    /// `wsring node` declares its own `--id`, `wsring dev` numbers its nodes.
    #[arg(skip)]
    #[serde(skip)]
    pub id: String,
    /// URL other processes and clients use to reach `/ws`. Default: derived
    /// from the bound listener, `ws://<listen addr>/ws` (`wsring node`
    /// declares its own `--advertise`).
    #[arg(skip)]
    #[serde(skip)]
    pub advertise: Option<String>,
    /// Routing mode: `hash` (each user lives on the node that owns its id on
    /// the consistent-hash ring) or `broadcast` (any node; direct messages fan
    /// out to every node).
    ///
    /// All nodes and gateways of one cluster must agree.
    #[arg(long, env = "WSRING_ROUTING", default_value = Routing::default().as_str())]
    pub routing: Routing,
    /// Largest client message in bytes; a larger one closes the session with
    /// 1009 (at least 256).
    #[arg(long, env = "WSRING_MAX_MESSAGE_BYTES", default_value_t = wsring_protocol::DEFAULT_MAX_MESSAGE_BYTES)]
    pub max_message_bytes: usize,
    /// Spread the closes of a rebalance or drain over this window instead of
    /// closing every moved session at once.
    ///
    /// The i-th of n moved sessions is closed at `i/n * drain_window`.
    #[arg(long, env = "WSRING_DRAIN_WINDOW", value_name = "DURATION", default_value = "0s", value_parser = wsring_auth::parse_duration)]
    #[serde(serialize_with = "human")]
    pub drain_window: Duration,
    /// Moved sessions per second this node asks to reconnect, when the
    /// closes are not spread by `drain_window` (at least 1).
    ///
    /// Each moved session gets `retry_after_ms` random in [0, n / rate]
    /// (between 50 ms and 5 s) for n sessions moved at once, so the new
    /// owners see about `rate` reconnects a second from each old node.
    #[arg(long, env = "WSRING_RECONNECT_RATE", default_value_t = 2000)]
    pub reconnect_rate: u32,
    /// Outbound frames buffered per session before it is closed as a slow
    /// consumer with 1008 (at least 1).
    #[arg(long, env = "WSRING_SESSION_QUEUE", default_value_t = 1024)]
    pub session_queue: usize,
    /// Outbound bytes (message payloads) buffered per session before it is
    /// closed as a slow consumer with 1008 (at least max_message_bytes).
    ///
    /// Together with the socket's write buffer (`WRITE_BUFFER_MAX` at most)
    /// this bounds what one slow reader can hold.
    #[arg(long, env = "WSRING_SESSION_QUEUE_BYTES", default_value_t = 1024 * 1024)]
    pub session_queue_bytes: usize,
    /// Server ping period; a session silent for 2.5 periods is dropped (at
    /// least 100ms).
    #[arg(long, env = "WSRING_PING_INTERVAL", value_name = "DURATION", default_value = "20s", value_parser = wsring_auth::parse_duration)]
    #[serde(serialize_with = "human")]
    pub ping_interval: Duration,
    /// How long a connect may wait for this node to catch up with the epoch
    /// the gateway routed it by. Default: 2 s; not a command-line setting.
    #[arg(skip = Duration::from_secs(2))]
    #[serde(skip)]
    pub epoch_wait: Duration,
    /// Durable mode: append every direct and room message to a bounded stream
    /// before acknowledging it, so clients resume after a reconnect with no
    /// gap.
    // `--durable` alone means true; `--durable false` is accepted too, so a
    // generated command line can spell out either value.
    #[arg(long, env = "WSRING_DURABLE", default_value_t = false, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub durable: bool,
    /// Rooms one session may be in at once; one more gets an `error` frame
    /// with code `limit_exceeded` (at least 1).
    ///
    /// Every room costs a broker subscription and, in durable mode, a cursor
    /// read on every catch-up.
    #[arg(long, env = "WSRING_MAX_ROOMS_PER_SESSION", default_value_t = 256)]
    pub max_rooms_per_session: usize,
    /// Server-side rooms one user may hold (POST /api/rooms/{room}/join);
    /// one more is answered 409 `limit_exceeded` (at least 1).
    ///
    /// They are stored in the cluster backend, at most this many room names
    /// of up to 128 bytes per user, and every session of the user joins them
    /// at connect. They do not count against max_rooms_per_session.
    #[arg(long, env = "WSRING_MAX_SERVER_ROOMS", default_value_t = 256)]
    pub max_server_rooms: usize,
    /// Client messages (text or binary frames) one connection may send per
    /// second; past it (and its burst) each one is answered with an `error`
    /// frame `rate_limited` and dropped. 0: unlimited.
    #[arg(long, env = "WSRING_CLIENT_MESSAGES_PER_SEC", default_value_t = 200.0)]
    pub client_messages_per_sec: f64,
    /// Client messages one connection may send at once above the rate.
    #[arg(long, env = "WSRING_CLIENT_MESSAGE_BURST", default_value_t = 1000.0)]
    pub client_message_burst: f64,
    /// Client message bytes one connection may send per second (the burst is
    /// four times this, and at least twice max_message_bytes). 0: unlimited.
    #[arg(long, env = "WSRING_CLIENT_BYTES_PER_SEC", default_value_t = 1024 * 1024)]
    pub client_bytes_per_sec: u64,
    /// Consecutive rate-limited messages after which the connection is
    /// closed with 1008: a client that ignores `rate_limited` is cut off.
    #[arg(long, env = "WSRING_CLIENT_RATE_STRIKES", default_value_t = 100)]
    pub client_rate_strikes: u32,
    /// Client messages one user may send per second across all of its
    /// sessions on this node, reconnects included (burst: five times
    /// this); past it each one is answered `rate_limited` and dropped, as
    /// past the per-connection limit. 0: unlimited.
    #[arg(long, env = "WSRING_USER_MESSAGES_PER_SEC", default_value_t = 200.0)]
    pub user_messages_per_sec: f64,
    /// Client message bytes one user may send per second across all of its
    /// sessions on this node (burst: four times this, and at least twice
    /// max_message_bytes). 0: unlimited.
    #[arg(long, env = "WSRING_USER_BYTES_PER_SEC", default_value_t = 1024 * 1024)]
    pub user_bytes_per_sec: u64,
    /// Sessions one user may hold on one node (in hash mode all of a user's
    /// sessions are on one node, so this is cluster-wide); one more closes
    /// the user's oldest session with 1008 `too many sessions`.
    #[arg(long, env = "WSRING_MAX_SESSIONS_PER_USER", default_value_t = 32)]
    pub max_sessions_per_user: usize,
    /// Open connections one process accepts (WebSockets, gateway tunnels and
    /// HTTP calls alike); one more is answered 503 `unavailable` before any
    /// upgrade. Keep it below the process's file descriptor limit.
    #[arg(long, env = "WSRING_MAX_CONNECTIONS", default_value_t = wsring_http::serve::DEFAULT_MAX_CONNECTIONS)]
    pub max_connections: usize,
    /// Time a client gets to send its complete HTTP request head (the
    /// WebSocket upgrade included); slower or silent connections are
    /// dropped.
    #[arg(long, env = "WSRING_HEADER_READ_TIMEOUT", value_name = "DURATION", default_value = humantime::format_duration(wsring_http::serve::DEFAULT_HEADER_READ_TIMEOUT).to_string(), value_parser = wsring_auth::parse_duration)]
    #[serde(serialize_with = "human")]
    pub header_read_timeout: Duration,
    /// Time an HTTP request body (an API call's JSON) gets to arrive whole
    /// after its request head; a slower one is answered 408.
    #[arg(long, env = "WSRING_BODY_READ_TIMEOUT", value_name = "DURATION", default_value = humantime::format_duration(wsring_http::serve::DEFAULT_BODY_READ_TIMEOUT).to_string(), value_parser = humantime::parse_duration)]
    #[serde(serialize_with = "human")]
    pub body_read_timeout: Duration,
    /// PEM certificate chain for this process's listener (with tls_key):
    /// clients then connect with wss:// and https://. Unset: plain ws://.
    #[arg(long, env = "WSRING_TLS_CERT", value_name = "FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of tls_cert.
    #[arg(long, env = "WSRING_TLS_KEY", value_name = "FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
    /// PEM CA certificates trusted, besides the system's, for wss:// and
    /// https:// connections to other nodes (a private CA).
    #[arg(long, env = "WSRING_TLS_CA", value_name = "FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_ca: Option<PathBuf>,
    /// Application URL receiving webhook events (session.connected,
    /// session.disconnected, room.member_added, room.member_removed,
    /// message.to_server) as signed JSON batches. Repeatable: every URL gets
    /// every event. Unset: no webhooks.
    #[arg(
        long = "webhook-url",
        env = "WSRING_WEBHOOK_URL",
        value_name = "URL",
        value_delimiter = ','
    )]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub webhook_url: Vec<String>,
    /// Shared secret signing webhook and proxy requests
    /// (`X-Wsring-Signature: sha256=<hex HMAC-SHA256 of the body>`).
    #[arg(long, env = "WSRING_WEBHOOK_SECRET", value_name = "SECRET")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook_secret: Option<String>,
    /// Webhook event bytes queued per URL before new events are dropped
    /// (counted in wsring_webhook_dropped_total and logged).
    #[arg(long, env = "WSRING_WEBHOOK_QUEUE_BYTES", default_value_t = wsring_hooks::WebhookConfig::default().queue_bytes)]
    pub webhook_queue_bytes: usize,
    /// Application URL asked before a client's send or publish is routed:
    /// it may accept (optionally replacing data) or reject the message; the
    /// client's ack waits for the answer. Unset: no publish proxy.
    #[arg(long, env = "WSRING_PUBLISH_PROXY", value_name = "URL")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub publish_proxy: Option<String>,
    /// Time the publish proxy has to answer; after it (or an error, or
    /// with its breaker open) proxy_when_down decides.
    #[arg(long, env = "WSRING_PROXY_TIMEOUT", value_name = "DURATION", default_value = humantime::format_duration(wsring_hooks::ProxyConfig::new("").timeout).to_string(), value_parser = wsring_auth::parse_duration)]
    #[serde(serialize_with = "human")]
    pub proxy_timeout: Duration,
    /// What an unanswered proxy call means: `reject` (the client gets an
    /// `unavailable` error) or `allow` (the message goes on as if no proxy
    /// were configured).
    #[arg(long, env = "WSRING_PROXY_WHEN_DOWN", value_name = "POLICY", default_value = "reject", value_parser = ["reject", "allow"])]
    pub proxy_when_down: String,
    /// Accept permessage-deflate (RFC 7692) when a client offers it (every
    /// browser does): messages from deflate_threshold bytes up are sent
    /// compressed, compressed client messages are inflated.
    ///
    /// The server never keeps a compression context between messages, so
    /// an idle connection holds no compressor, and a message fanned out to
    /// many sessions is compressed once. `--deflate false` declines every
    /// offer.
    #[arg(long, env = "WSRING_DEFLATE", default_value_t = true, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub deflate: bool,
    /// Outbound messages shorter than this many bytes are sent uncompressed
    /// even with deflate negotiated: below it compression saves little and
    /// costs CPU on both sides.
    #[arg(long, env = "WSRING_DEFLATE_THRESHOLD", default_value_t = 256)]
    pub deflate_threshold: usize,
    /// Let a client keep its compression context from message to message
    /// (better ratio for its messages), at the cost of an inflater of about
    /// 40 KiB kept for each such connection. Off: the node answers
    /// `client_no_context_takeover`, and inflates with state that exists only
    /// while a compressed message is read.
    #[arg(long, env = "WSRING_DEFLATE_CLIENT_CONTEXT_TAKEOVER", default_value_t = false, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub deflate_client_context_takeover: bool,
    /// Keep the node's compression context from message to message on each
    /// connection whose client allows it (the response then omits
    /// `server_no_context_takeover`): a chat stream compresses to about half
    /// the bytes it takes with each message alone, but every such
    /// connection holds its own compressor (measured: about 320 KiB with a
    /// 15-bit window, 200 KiB with 10) once it has sent a compressed
    /// message, and a message fanned out to many sessions is compressed
    /// once per session instead of once.
    #[arg(long, env = "WSRING_DEFLATE_SERVER_CONTEXT_TAKEOVER", default_value_t = false, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub deflate_server_context_takeover: bool,
    /// The largest window, in bits (9–15), of a connection's own compressor
    /// with server context takeover; below 15 the node states it in its
    /// response (`server_max_window_bits`). A smaller window saves memory
    /// and refers less far back.
    #[arg(long, env = "WSRING_DEFLATE_SERVER_MAX_WINDOW_BITS", default_value_t = crate::deflate::MAX_WINDOW_BITS, value_parser = clap::value_parser!(u8).range(9..=15))]
    pub deflate_server_max_window_bits: u8,
    /// Echo mode, a test mode for WebSocket conformance suites (`wsring
    /// node --autobahn-echo`, see [`crate::echo`]): every path upgrades, every
    /// text and binary message comes back as it came, nothing else is sent.
    /// Default: off; not a session setting (only `wsring node` has the flag).
    #[arg(skip)]
    #[serde(skip)]
    pub echo: bool,
}

/// Users whose rate budgets a node tracks at once: those that sent within
/// the last few seconds (an entry is dropped once its budget has refilled).
/// About 150 bytes each, so at most ~10 MB; a user past the bound is held
/// to its per-connection limits only.
pub const MAX_RATED_USERS: usize = 65_536;

/// Bytes tungstenite may hold in a session's write buffer beyond the frame
/// being written: writes past it fail, and the session ends, rather than
/// buffering without bound behind a reader that does not read.
pub const WRITE_BUFFER_MAX: usize = 256 * 1024;

/// The write buffer is flushed to the socket once it holds this much.
pub const WRITE_BUFFER: usize = 8 * 1024;

impl NodeConfig {
    /// The permessage-deflate settings.
    pub fn deflate_settings(&self) -> crate::deflate::DeflateSettings {
        crate::deflate::DeflateSettings {
            enabled: self.deflate,
            threshold: self.deflate_threshold,
            client_context_takeover: self.deflate_client_context_takeover,
            server_context_takeover: self.deflate_server_context_takeover,
            server_max_window_bits: self.deflate_server_max_window_bits,
        }
    }

    /// One connection's message and byte budgets.
    pub fn rate_limits(&self) -> wsring_auth::RateLimits {
        let bytes = self.client_bytes_per_sec as f64;
        wsring_auth::RateLimits {
            messages_per_sec: self.client_messages_per_sec,
            message_burst: self.client_message_burst,
            bytes_per_sec: bytes,
            byte_burst: (bytes * 4.0).max(self.max_message_bytes as f64 * 2.0),
            max_strikes: self.client_rate_strikes,
        }
    }

    /// The per-user budgets (see [`MAX_RATED_USERS`]).
    pub fn user_rate_limits(&self) -> wsring_auth::KeyedLimits {
        let messages = self.user_messages_per_sec.max(0.0);
        let bytes = self.user_bytes_per_sec as f64;
        wsring_auth::KeyedLimits {
            messages_per_sec: messages,
            message_burst: messages * 5.0,
            bytes_per_sec: bytes,
            byte_burst: (bytes * 4.0).max(self.max_message_bytes as f64 * 2.0),
            max_keys: MAX_RATED_USERS,
        }
    }

    /// The TLS files.
    pub fn tls_files(&self) -> wsring_http::tls::TlsFiles {
        wsring_http::tls::TlsFiles {
            cert: self.tls_cert.clone(),
            key: self.tls_key.clone(),
            ca: self.tls_ca.clone(),
        }
    }

    /// The webhook settings.
    pub fn webhooks(&self) -> wsring_hooks::WebhookConfig {
        wsring_hooks::WebhookConfig {
            urls: self.webhook_url.clone(),
            secret: self.webhook_secret.clone(),
            queue_bytes: self.webhook_queue_bytes,
            ..wsring_hooks::WebhookConfig::default()
        }
    }

    /// The settings of the webhooks in Pusher's format: `app`'s receivers,
    /// signed with its secret, through a queue sized like the native one.
    /// No receivers without an app.
    pub fn pusher_webhooks(
        &self,
        app: Option<&wsring_auth::pusher::PusherApp>,
    ) -> wsring_hooks::WebhookConfig {
        match app {
            Some(app) => wsring_hooks::WebhookConfig {
                urls: app.webhook_urls.clone(),
                secret: Some(app.webhook_secret().to_owned()),
                queue_bytes: self.webhook_queue_bytes,
                format: wsring_hooks::Format::Pusher {
                    key: app.key.clone(),
                },
                ..wsring_hooks::WebhookConfig::default()
            },
            None => wsring_hooks::WebhookConfig::default(),
        }
    }

    /// The publish proxy's settings, if one is configured.
    pub fn publish_proxy(&self) -> Option<wsring_hooks::ProxyConfig> {
        let url = self.publish_proxy.as_ref()?;
        Some(wsring_hooks::ProxyConfig {
            secret: self.webhook_secret.clone(),
            timeout: self.proxy_timeout,
            when_down: if self.proxy_when_down == "allow" {
                wsring_hooks::WhenDown::Allow
            } else {
                wsring_hooks::WhenDown::Reject
            },
            ..wsring_hooks::ProxyConfig::new(url.clone())
        })
    }

    /// The accept loop's limits.
    pub fn serve_limits(&self) -> wsring_http::ServeLimits {
        wsring_http::ServeLimits {
            max_connections: self.max_connections,
            header_read_timeout: self.header_read_timeout,
            body_read_timeout: self.body_read_timeout,
        }
    }

    /// Defaults for node `id`: the defaults declared on the fields.
    pub fn new(id: impl Into<String>) -> Self {
        static DEFAULTS: OnceLock<NodeConfig> = OnceLock::new();
        let defaults = DEFAULTS.get_or_init(|| {
            declared_defaults().expect("NodeConfig's declared defaults parse (a unit test checks)")
        });
        NodeConfig {
            id: id.into(),
            ..defaults.clone()
        }
    }
}

// Shared with the other settings structs (declared in the lowest crate
// that has settings).
pub use wsring_auth::{declared_defaults, human};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declared_defaults_are_the_documented_ones() {
        let c = NodeConfig::new("n1");
        assert_eq!(c.id, "n1");
        assert_eq!(c.advertise, None);
        assert_eq!(c.routing, Routing::Hash);
        assert_eq!(c.max_message_bytes, 65536);
        assert_eq!(c.drain_window, Duration::ZERO);
        assert_eq!(c.reconnect_rate, 2000);
        assert_eq!(c.session_queue, 1024);
        assert_eq!(c.session_queue_bytes, 1024 * 1024);
        assert_eq!(c.ping_interval, Duration::from_secs(20));
        assert_eq!(c.epoch_wait, Duration::from_secs(2));
        assert!(!c.durable);
        assert_eq!(c.max_rooms_per_session, 256);
        assert_eq!(c.max_server_rooms, 256);
    }

    #[test]
    fn serializes_durations_in_flag_syntax() {
        let mut c = NodeConfig::new("n1");
        c.ping_interval = Duration::from_millis(1200);
        let json = serde_json::to_value(&c).expect("serialize");
        assert_eq!(json["ping_interval"], "1s 200ms");
        assert_eq!(json["routing"], "hash");
        assert!(json.get("id").is_none() && json.get("epoch_wait").is_none());
    }
}
