//! The session settings group of the command line, read by `dev` and `node`
//! only (a gateway rejects these flags): what a node does with its sessions
//! (queues, rates, room limits, webhooks and the publish proxy,
//! permessage-deflate), declared here once as flags, `WSRING_*`
//! variables and TOML keys and turned into `wsring-node`'s plain
//! [`NodeConfig`], whose [`NodeConfig::new`] holds the defaults the flags
//! show.

use clap::{ArgAction, Args};
use serde::Serialize;
use std::sync::OnceLock;
use std::time::Duration;
use wsring_auth::parse_duration;
use wsring_node::NodeConfig;

use super::{Shared, human, human_default};

/// The node's defaults, the one place they are declared.
pub(super) fn defaults() -> &'static NodeConfig {
    static DEFAULTS: OnceLock<NodeConfig> = OnceLock::new();
    DEFAULTS.get_or_init(|| NodeConfig::new(""))
}

/// The session settings; `wsring dev` passes them on to its node processes
/// through `Serialize`.
#[derive(Debug, Clone, Args, Serialize)]
pub struct SessionArgs {
    /// Spread the closes of a rebalance or drain over this window instead of
    /// closing every moved session at once.
    ///
    /// The i-th of n moved sessions is closed at `i/n * drain_window`.
    #[arg(long, env = "WSRING_DRAIN_WINDOW", value_name = "DURATION", default_value = human_default(defaults().drain_window), value_parser = parse_duration)]
    #[serde(serialize_with = "human")]
    pub drain_window: Duration,
    /// Moved sessions per second this node asks to reconnect, when the
    /// closes are not spread by `drain_window` (at least 1).
    ///
    /// Each moved session gets `retry_after_ms` random in [0, n / rate]
    /// (between 50 ms and 5 s) for n sessions moved at once, so the new
    /// owners see about `rate` reconnects a second from each old node.
    #[arg(long, env = "WSRING_RECONNECT_RATE", default_value_t = defaults().reconnect_rate)]
    pub reconnect_rate: u32,
    /// Outbound frames buffered per session before it is closed as a slow
    /// consumer with 1008 (at least 1).
    #[arg(long, env = "WSRING_SESSION_QUEUE", default_value_t = defaults().session_queue)]
    pub session_queue: usize,
    /// Outbound bytes (message payloads) buffered per session before it is
    /// closed as a slow consumer with 1008 (at least max_message_bytes).
    ///
    /// Together with the socket's write buffer (`WRITE_BUFFER_MAX` at most)
    /// this bounds what one slow reader can hold.
    #[arg(long, env = "WSRING_SESSION_QUEUE_BYTES", default_value_t = defaults().session_queue_bytes)]
    pub session_queue_bytes: usize,
    /// Server ping period; a session silent for 2.5 periods is dropped (at
    /// least 100ms).
    #[arg(long, env = "WSRING_PING_INTERVAL", value_name = "DURATION", default_value = human_default(defaults().ping_interval), value_parser = parse_duration)]
    #[serde(serialize_with = "human")]
    pub ping_interval: Duration,
    /// Rooms one session may be in at once; one more gets an `error` frame
    /// with code `limit_exceeded` (at least 1).
    ///
    /// Every room costs a broker subscription and, in durable mode, a cursor
    /// read on every catch-up.
    #[arg(long, env = "WSRING_MAX_ROOMS_PER_SESSION", default_value_t = defaults().max_rooms_per_session)]
    pub max_rooms_per_session: usize,
    /// Server-side rooms one user may hold (POST /api/rooms/{room}/join);
    /// one more is answered 409 `limit_exceeded` (at least 1).
    ///
    /// They are stored in the cluster backend, at most this many room names
    /// of up to 128 bytes per user, and every session of the user joins them
    /// at connect. They do not count against max_rooms_per_session.
    #[arg(long, env = "WSRING_MAX_SERVER_ROOMS", default_value_t = defaults().max_server_rooms)]
    pub max_server_rooms: usize,
    /// Client messages (text or binary frames) one connection may send per
    /// second; past it (and its burst) each one is answered with an `error`
    /// frame `rate_limited` and dropped. 0: unlimited.
    #[arg(long, env = "WSRING_CLIENT_MESSAGES_PER_SEC", default_value_t = defaults().client_messages_per_sec)]
    pub client_messages_per_sec: f64,
    /// Client messages one connection may send at once above the rate.
    #[arg(long, env = "WSRING_CLIENT_MESSAGE_BURST", default_value_t = defaults().client_message_burst)]
    pub client_message_burst: f64,
    /// Client message bytes one connection may send per second (the burst is
    /// four times this, and at least twice max_message_bytes). 0: unlimited.
    #[arg(long, env = "WSRING_CLIENT_BYTES_PER_SEC", default_value_t = defaults().client_bytes_per_sec)]
    pub client_bytes_per_sec: u64,
    /// Consecutive rate-limited messages after which the connection is
    /// closed with 1008: a client that ignores `rate_limited` is cut off.
    #[arg(long, env = "WSRING_CLIENT_RATE_STRIKES", default_value_t = defaults().client_rate_strikes)]
    pub client_rate_strikes: u32,
    /// Client messages one user may send per second across all of its
    /// sessions on this node, reconnects included (burst: five times
    /// this); past it each one is answered `rate_limited` and dropped, as
    /// past the per-connection limit. 0: unlimited.
    #[arg(long, env = "WSRING_USER_MESSAGES_PER_SEC", default_value_t = defaults().user_messages_per_sec)]
    pub user_messages_per_sec: f64,
    /// Client message bytes one user may send per second across all of its
    /// sessions on this node (burst: four times this, and at least twice
    /// max_message_bytes). 0: unlimited.
    #[arg(long, env = "WSRING_USER_BYTES_PER_SEC", default_value_t = defaults().user_bytes_per_sec)]
    pub user_bytes_per_sec: u64,
    /// Sessions one user may hold on one node (in hash mode all of a user's
    /// sessions are on one node, so this is cluster-wide); one more closes
    /// the user's oldest session with 1008 `too many sessions`.
    #[arg(long, env = "WSRING_MAX_SESSIONS_PER_USER", default_value_t = defaults().max_sessions_per_user)]
    pub max_sessions_per_user: usize,
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
    #[arg(long, env = "WSRING_WEBHOOK_QUEUE_BYTES", default_value_t = defaults().webhook_queue_bytes)]
    pub webhook_queue_bytes: usize,
    /// Application URL asked before a client's send or publish is routed:
    /// it may accept (optionally replacing data) or reject the message; the
    /// client's ack waits for the answer. Unset: no publish proxy.
    #[arg(long, env = "WSRING_PUBLISH_PROXY", value_name = "URL")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub publish_proxy: Option<String>,
    /// Time the publish proxy has to answer; after it (or an error, or
    /// with its breaker open) proxy_when_down decides.
    #[arg(long, env = "WSRING_PROXY_TIMEOUT", value_name = "DURATION", default_value = human_default(defaults().proxy_timeout), value_parser = parse_duration)]
    #[serde(serialize_with = "human")]
    pub proxy_timeout: Duration,
    /// What an unanswered proxy call means: `reject` (the client gets an
    /// `unavailable` error) or `allow` (the message goes on as if no proxy
    /// were configured).
    #[arg(long, env = "WSRING_PROXY_WHEN_DOWN", value_name = "POLICY", default_value = defaults().proxy_when_down.as_str(), value_parser = ["reject", "allow"])]
    pub proxy_when_down: String,
    /// Accept permessage-deflate (RFC 7692) when a client offers it (every
    /// browser does): messages from deflate_threshold bytes up are sent
    /// compressed, compressed client messages are inflated.
    ///
    /// The server never keeps a compression context between messages, so
    /// an idle connection holds no compressor, and a message fanned out to
    /// many sessions is compressed once. `--deflate false` declines every
    /// offer.
    #[arg(long, env = "WSRING_DEFLATE", default_value_t = defaults().deflate, num_args = 0..=1, default_missing_value = "true", action = ArgAction::Set)]
    pub deflate: bool,
    /// Outbound messages shorter than this many bytes are sent uncompressed
    /// even with deflate negotiated: below it compression saves little and
    /// costs CPU on both sides.
    #[arg(long, env = "WSRING_DEFLATE_THRESHOLD", default_value_t = defaults().deflate_threshold)]
    pub deflate_threshold: usize,
    /// Let a client keep its compression context from message to message
    /// (better ratio for its messages), at the cost of an inflater of about
    /// 40 KiB kept for each such connection. Off: the node answers
    /// `client_no_context_takeover`, and inflates with state that exists only
    /// while a compressed message is read.
    #[arg(long, env = "WSRING_DEFLATE_CLIENT_CONTEXT_TAKEOVER", default_value_t = defaults().deflate_client_context_takeover, num_args = 0..=1, default_missing_value = "true", action = ArgAction::Set)]
    pub deflate_client_context_takeover: bool,
    /// Keep the node's compression context from message to message on each
    /// connection whose client allows it (the response then omits
    /// `server_no_context_takeover`): a chat stream compresses to about half
    /// the bytes it takes with each message alone, but every such
    /// connection holds its own compressor (measured: about 320 KiB with a
    /// 15-bit window, 200 KiB with 10) once it has sent a compressed
    /// message, and a message fanned out to many sessions is compressed
    /// once per session instead of once.
    #[arg(long, env = "WSRING_DEFLATE_SERVER_CONTEXT_TAKEOVER", default_value_t = defaults().deflate_server_context_takeover, num_args = 0..=1, default_missing_value = "true", action = ArgAction::Set)]
    pub deflate_server_context_takeover: bool,
    /// The largest window, in bits (9–15), of a connection's own compressor
    /// with server context takeover; below 15 the node states it in its
    /// response (`server_max_window_bits`). A smaller window saves memory
    /// and refers less far back.
    #[arg(long, env = "WSRING_DEFLATE_SERVER_MAX_WINDOW_BITS", default_value_t = defaults().deflate_server_max_window_bits, value_parser = clap::value_parser!(u8).range(9..=15))]
    pub deflate_server_max_window_bits: u8,
}

impl SessionArgs {
    /// The configuration of node `id` with these settings and the ones
    /// every role shares.
    pub fn node_config(&self, shared: &Shared, id: &str) -> NodeConfig {
        let s = self;
        NodeConfig {
            routing: shared.routing,
            max_message_bytes: shared.max_message_bytes,
            drain_window: s.drain_window,
            reconnect_rate: s.reconnect_rate,
            session_queue: s.session_queue,
            session_queue_bytes: s.session_queue_bytes,
            ping_interval: s.ping_interval,
            durable: shared.durable,
            max_rooms_per_session: s.max_rooms_per_session,
            max_server_rooms: s.max_server_rooms,
            client_messages_per_sec: s.client_messages_per_sec,
            client_message_burst: s.client_message_burst,
            client_bytes_per_sec: s.client_bytes_per_sec,
            client_rate_strikes: s.client_rate_strikes,
            user_messages_per_sec: s.user_messages_per_sec,
            user_bytes_per_sec: s.user_bytes_per_sec,
            max_sessions_per_user: s.max_sessions_per_user,
            max_connections: shared.max_connections,
            header_read_timeout: shared.header_read_timeout,
            body_read_timeout: shared.body_read_timeout,
            tls_cert: shared.tls_cert.clone(),
            tls_key: shared.tls_key.clone(),
            tls_ca: shared.tls_ca.clone(),
            webhook_url: s.webhook_url.clone(),
            webhook_secret: s.webhook_secret.clone(),
            webhook_queue_bytes: s.webhook_queue_bytes,
            publish_proxy: s.publish_proxy.clone(),
            proxy_timeout: s.proxy_timeout,
            proxy_when_down: s.proxy_when_down.clone(),
            deflate: s.deflate,
            deflate_threshold: s.deflate_threshold,
            deflate_client_context_takeover: s.deflate_client_context_takeover,
            deflate_server_context_takeover: s.deflate_server_context_takeover,
            deflate_server_max_window_bits: s.deflate_server_max_window_bits,
            ..NodeConfig::new(id)
        }
    }
}
