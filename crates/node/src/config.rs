//! Typed node configuration. Every field documents its default; the `wsring`
//! binary fills it from flags, `WSRING_*` environment variables and the TOML
//! file.

use std::time::Duration;

pub use wsring_protocol::Routing;

/// Everything a node needs to know about itself.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Node id, unique among live nodes: 1–64 of `[A-Za-z0-9_-]`. No default.
    pub id: String,
    /// URL other processes and clients use to reach `/ws`. Default: derived
    /// from the bound listener, `ws://<listen addr>/ws`.
    pub advertise: Option<String>,
    /// Routing mode. Default: [`Routing::Hash`].
    pub routing: Routing,
    /// Largest accepted client message; larger ones close the session with
    /// 1009. Default: 65536.
    pub max_message_bytes: usize,
    /// Spread of rebalance closes: the i-th of n moved sessions is closed at
    /// `i/n * drain_window`. Default: 0 (all at once).
    pub drain_window: Duration,
    /// Outbound frames buffered per session before it is closed as a slow
    /// consumer (1008). Default: 1024.
    pub session_queue: usize,
    /// Outbound bytes (frame payloads) buffered per session before it is
    /// closed as a slow consumer (1008). With the socket's write buffer
    /// ([`WRITE_BUFFER_MAX`](crate::config::WRITE_BUFFER_MAX) at most) this
    /// bounds what one slow reader can hold. Default: 1 MiB.
    pub session_queue_bytes: usize,
    /// Server ping period; a session silent for 2.5 periods is closed.
    /// Default: 20 s.
    pub ping_interval: Duration,
    /// How long a connect may wait for this node to catch up with the epoch
    /// the gateway routed it by. Default: 2 s.
    pub epoch_wait: Duration,
    /// Durable mode: append every direct and room message to its stream before
    /// acknowledging it. Default: off.
    pub durable: bool,
    /// Rooms one session may be in at once; every room costs a broker
    /// subscription and (durable) a cursor read on every catch-up. Default: 256.
    pub max_rooms_per_session: usize,
}

/// Bytes tungstenite may hold in a session's write buffer beyond the frame
/// being written: writes past it fail, and the session ends, rather than
/// buffering without bound behind a reader that does not read.
pub const WRITE_BUFFER_MAX: usize = 256 * 1024;

/// The write buffer is flushed to the socket once it holds this much.
pub const WRITE_BUFFER: usize = 8 * 1024;

impl NodeConfig {
    /// Defaults for node `id`.
    pub fn new(id: impl Into<String>) -> Self {
        NodeConfig {
            id: id.into(),
            advertise: None,
            routing: Routing::Hash,
            max_message_bytes: wsring_protocol::DEFAULT_MAX_MESSAGE_BYTES,
            drain_window: Duration::ZERO,
            session_queue: 1024,
            session_queue_bytes: 1024 * 1024,
            ping_interval: Duration::from_secs(20),
            epoch_wait: Duration::from_secs(2),
            durable: false,
            max_rooms_per_session: 256,
        }
    }
}
