//! Typed node configuration as a plain value: [`NodeConfig::new`] declares
//! every default once, and the `wsring` binary fills the fields from its
//! flags, `WSRING_*` environment variables and TOML file (whose help texts
//! and defaults it takes from here).

use std::path::PathBuf;
use std::time::Duration;

pub use wsring_protocol::Routing;

/// Everything a node needs to know about itself. [`NodeConfig::new`] gives
/// the defaults; the binary's settings (`crates/wsring/src/settings/`) name
/// each field's flag, variable and TOML key.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Node id, unique among live nodes: 1–64 of `[A-Za-z0-9_-]`. No default:
    /// `wsring node` declares its own `--id`, `wsring dev` numbers its nodes.
    pub id: String,
    /// URL other processes and clients use to reach `/ws`. Default: derived
    /// from the bound listener, `ws://<listen addr>/ws` (`wsring node`
    /// declares its own `--advertise`).
    pub advertise: Option<String>,
    /// Routing mode: `hash` (each user lives on the node that owns its id on
    /// the consistent-hash ring) or `broadcast` (any node; direct messages fan
    /// out to every node).
    ///
    /// All nodes and gateways of one cluster must agree.
    pub routing: Routing,
    /// Largest client message in bytes; a larger one closes the session with
    /// 1009 (at least 256).
    pub max_message_bytes: usize,
    /// Spread the closes of a rebalance or drain over this window instead of
    /// closing every moved session at once.
    ///
    /// The i-th of n moved sessions is closed at `i/n * drain_window`.
    pub drain_window: Duration,
    /// Moved sessions per second this node asks to reconnect, when the
    /// closes are not spread by `drain_window` (at least 1).
    ///
    /// Each moved session gets `retry_after_ms` random in [0, n / rate]
    /// (between 50 ms and 5 s) for n sessions moved at once, so the new
    /// owners see about `rate` reconnects a second from each old node.
    pub reconnect_rate: u32,
    /// Outbound frames buffered per session before it is closed as a slow
    /// consumer with 1008 (at least 1).
    pub session_queue: usize,
    /// Outbound bytes (message payloads) buffered per session before it is
    /// closed as a slow consumer with 1008 (at least max_message_bytes).
    ///
    /// Together with the socket's write buffer (`WRITE_BUFFER_MAX` at most)
    /// this bounds what one slow reader can hold.
    pub session_queue_bytes: usize,
    /// Server ping period; a session silent for 2.5 periods is dropped (at
    /// least 100ms).
    pub ping_interval: Duration,
    /// How long a connect may wait for this node to catch up with the epoch
    /// the gateway routed it by. Default: 2 s; not a command-line setting.
    pub epoch_wait: Duration,
    /// Durable mode: append every direct and room message to a bounded stream
    /// before acknowledging it, so clients resume after a reconnect with no
    /// gap.
    pub durable: bool,
    /// Rooms one session may be in at once; one more gets an `error` frame
    /// with code `limit_exceeded` (at least 1).
    ///
    /// Every room costs a broker subscription and, in durable mode, a cursor
    /// read on every catch-up.
    pub max_rooms_per_session: usize,
    /// Server-side rooms one user may hold (POST /api/rooms/{room}/join);
    /// one more is answered 409 `limit_exceeded` (at least 1).
    ///
    /// They are stored in the cluster backend, at most this many room names
    /// of up to 128 bytes per user, and every session of the user joins them
    /// at connect. They do not count against max_rooms_per_session.
    pub max_server_rooms: usize,
    /// Client messages (text or binary frames) one connection may send per
    /// second; past it (and its burst) each one is answered with an `error`
    /// frame `rate_limited` and dropped. 0: unlimited.
    pub client_messages_per_sec: f64,
    /// Client messages one connection may send at once above the rate.
    pub client_message_burst: f64,
    /// Client message bytes one connection may send per second (the burst is
    /// four times this, and at least twice max_message_bytes). 0: unlimited.
    pub client_bytes_per_sec: u64,
    /// Consecutive rate-limited messages after which the connection is
    /// closed with 1008: a client that ignores `rate_limited` is cut off.
    pub client_rate_strikes: u32,
    /// Client messages one user may send per second across all of its
    /// sessions on this node, reconnects included (burst: five times
    /// this); past it each one is answered `rate_limited` and dropped, as
    /// past the per-connection limit. 0: unlimited.
    pub user_messages_per_sec: f64,
    /// Client message bytes one user may send per second across all of its
    /// sessions on this node (burst: four times this, and at least twice
    /// max_message_bytes). 0: unlimited.
    pub user_bytes_per_sec: u64,
    /// Sessions one user may hold on one node (in hash mode all of a user's
    /// sessions are on one node, so this is cluster-wide); one more closes
    /// the user's oldest session with 1008 `too many sessions`.
    pub max_sessions_per_user: usize,
    /// Open connections one process accepts (WebSockets, gateway tunnels and
    /// HTTP calls alike); one more is answered 503 `unavailable` before any
    /// upgrade. Keep it below the process's file descriptor limit.
    pub max_connections: usize,
    /// Time a client gets to send its complete HTTP request head (the
    /// WebSocket upgrade included); slower or silent connections are
    /// dropped.
    pub header_read_timeout: Duration,
    /// Time an HTTP request body (an API call's JSON) gets to arrive whole
    /// after its request head; a slower one is answered 408.
    pub body_read_timeout: Duration,
    /// PEM certificate chain for this process's listener (with tls_key):
    /// clients then connect with wss:// and https://. Unset: plain ws://.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of tls_cert.
    pub tls_key: Option<PathBuf>,
    /// PEM CA certificates trusted, besides the system's, for wss:// and
    /// https:// connections to other nodes (a private CA).
    pub tls_ca: Option<PathBuf>,
    /// Application URL receiving webhook events (session.connected,
    /// session.disconnected, room.member_added, room.member_removed,
    /// message.to_server) as signed JSON batches. Repeatable: every URL gets
    /// every event. Unset: no webhooks.
    pub webhook_url: Vec<String>,
    /// Shared secret signing webhook and proxy requests
    /// (`X-Wsring-Signature: sha256=<hex HMAC-SHA256 of the body>`).
    pub webhook_secret: Option<String>,
    /// Webhook event bytes queued per URL before new events are dropped
    /// (counted in wsring_webhook_dropped_total and logged).
    pub webhook_queue_bytes: usize,
    /// Application URL asked before a client's send or publish is routed:
    /// it may accept (optionally replacing data) or reject the message; the
    /// client's ack waits for the answer. Unset: no publish proxy.
    pub publish_proxy: Option<String>,
    /// Time the publish proxy has to answer; after it (or an error, or
    /// with its breaker open) proxy_when_down decides.
    pub proxy_timeout: Duration,
    /// What an unanswered proxy call means: `reject` (the client gets an
    /// `unavailable` error) or `allow` (the message goes on as if no proxy
    /// were configured).
    pub proxy_when_down: String,
    /// Accept permessage-deflate (RFC 7692) when a client offers it (every
    /// browser does): messages from deflate_threshold bytes up are sent
    /// compressed, compressed client messages are inflated.
    ///
    /// The server never keeps a compression context between messages, so
    /// an idle connection holds no compressor, and a message fanned out to
    /// many sessions is compressed once. `--deflate false` declines every
    /// offer.
    pub deflate: bool,
    /// Outbound messages shorter than this many bytes are sent uncompressed
    /// even with deflate negotiated: below it compression saves little and
    /// costs CPU on both sides.
    pub deflate_threshold: usize,
    /// Let a client keep its compression context from message to message
    /// (better ratio for its messages), at the cost of an inflater of about
    /// 40 KiB kept for each such connection. Off: the node answers
    /// `client_no_context_takeover`, and inflates with state that exists only
    /// while a compressed message is read.
    pub deflate_client_context_takeover: bool,
    /// Keep the node's compression context from message to message on each
    /// connection whose client allows it (the response then omits
    /// `server_no_context_takeover`): a chat stream compresses to about half
    /// the bytes it takes with each message alone, but every such
    /// connection holds its own compressor (measured: about 320 KiB with a
    /// 15-bit window, 200 KiB with 10) once it has sent a compressed
    /// message, and a message fanned out to many sessions is compressed
    /// once per session instead of once.
    pub deflate_server_context_takeover: bool,
    /// The largest window, in bits (9–15), of a connection's own compressor
    /// with server context takeover; below 15 the node states it in its
    /// response (`server_max_window_bits`). A smaller window saves memory
    /// and refers less far back.
    pub deflate_server_max_window_bits: u8,
    /// Echo mode, a test mode for WebSocket conformance suites (`wsring
    /// node --autobahn-echo`, see [`crate::echo`]): every path upgrades, every
    /// text and binary message comes back as it came, nothing else is sent.
    /// Default: off; not a session setting (only `wsring node` has the flag).
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

    /// Defaults for node `id`: the one declaration of every default, which
    /// the binary's flags show as theirs.
    pub fn new(id: impl Into<String>) -> Self {
        NodeConfig {
            id: id.into(),
            advertise: None,
            routing: Routing::default(),
            max_message_bytes: wsring_protocol::DEFAULT_MAX_MESSAGE_BYTES,
            drain_window: Duration::ZERO,
            reconnect_rate: 2000,
            session_queue: 1024,
            session_queue_bytes: 1024 * 1024,
            ping_interval: Duration::from_secs(20),
            epoch_wait: Duration::from_secs(2),
            durable: false,
            max_rooms_per_session: 256,
            max_server_rooms: 256,
            client_messages_per_sec: 200.0,
            client_message_burst: 1000.0,
            client_bytes_per_sec: 1024 * 1024,
            client_rate_strikes: 100,
            user_messages_per_sec: 200.0,
            user_bytes_per_sec: 1024 * 1024,
            max_sessions_per_user: 32,
            max_connections: wsring_http::serve::DEFAULT_MAX_CONNECTIONS,
            header_read_timeout: wsring_http::serve::DEFAULT_HEADER_READ_TIMEOUT,
            body_read_timeout: wsring_http::serve::DEFAULT_BODY_READ_TIMEOUT,
            tls_cert: None,
            tls_key: None,
            tls_ca: None,
            webhook_url: Vec::new(),
            webhook_secret: None,
            webhook_queue_bytes: wsring_hooks::WebhookConfig::default().queue_bytes,
            publish_proxy: None,
            proxy_timeout: wsring_hooks::ProxyConfig::new("").timeout,
            proxy_when_down: "reject".into(),
            deflate: true,
            deflate_threshold: 256,
            deflate_client_context_takeover: false,
            deflate_server_context_takeover: false,
            deflate_server_max_window_bits: crate::deflate::MAX_WINDOW_BITS,
            echo: false,
        }
    }
}

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
}
