//! Typed gateway configuration with documented defaults.

use std::time::Duration;
use wsring_protocol::Routing;

/// Gateway settings.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// Must match the nodes' routing mode. Default: hash.
    pub routing: Routing,
    /// Reported by `/api/info` so the dashboard knows resume is available.
    /// Default: false.
    pub durable: bool,
    /// Time allowed to open a TCP connection to a node and get its upgrade
    /// answer; past it the client gets 503. Default: 2 s.
    pub connect_timeout: Duration,
    /// How long a connect whose owner is unreachable (or refusing) is held
    /// while waiting for the ring to change, before answering 503. Default:
    /// 3.5 s (enough for a 2 s heartbeat TTL to expire and be noticed).
    pub reroute_wait: Duration,
    /// Largest accepted API body. Default: 65536.
    pub max_body_bytes: usize,
    /// `"dev"` when embedded in the dev launcher, `"gateway"` otherwise.
    pub mode: &'static str,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            routing: Routing::Hash,
            durable: false,
            connect_timeout: Duration::from_secs(2),
            reroute_wait: Duration::from_millis(3500),
            max_body_bytes: wsring_protocol::DEFAULT_MAX_MESSAGE_BYTES,
            mode: "gateway",
        }
    }
}
