//! Typed gateway configuration with documented defaults. The gateway has no
//! settings of its own on the command line: the `wsring` binary derives
//! every field from the shared settings (routing, durable mode, largest
//! message, heartbeat TTL), and the defaults here follow the same
//! declarations.

use std::time::Duration;
use wsring_cluster::MembershipConfig;
use wsring_protocol::Routing;

/// Gateway settings.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// Must match the nodes' routing mode. Default: the nodes' default (hash).
    pub routing: Routing,
    /// Reported by `/api/info` so the dashboard knows resume is available.
    /// Default: the nodes' default (false).
    pub durable: bool,
    /// Time allowed to open a TCP connection to a node and get its upgrade
    /// answer; past it the client gets 503. Default: 2 s.
    pub connect_timeout: Duration,
    /// How long a connect whose owner is unreachable (or refusing) is held
    /// while waiting for the ring to change, before answering 503. Default:
    /// [`GatewayConfig::reroute_wait_for`] the default heartbeat TTL (3.5 s
    /// for 2 s).
    pub reroute_wait: Duration,
    /// Largest accepted API body. Default: the nodes' largest client message
    /// (65536).
    pub max_body_bytes: usize,
    /// `"dev"` when embedded in the dev launcher, `"gateway"` otherwise.
    pub mode: &'static str,
    /// The accept loop's connection cap and header-read timeout. Default:
    /// the nodes' defaults ([`wsring_http::ServeLimits::default`]).
    pub limits: wsring_http::ServeLimits,
    /// TLS for the listener and for tunnels and calls to `wss://` nodes.
    /// Default: none (plain `ws://`; `wss://` nodes verified against the
    /// system roots).
    pub tls: wsring_http::tls::TlsFiles,
}

impl GatewayConfig {
    /// The reroute wait for a cluster whose heartbeat TTL is `ttl`: long
    /// enough for a dead owner's heartbeat to expire and be reaped.
    pub fn reroute_wait_for(ttl: Duration) -> Duration {
        ttl + ttl / 2 + Duration::from_millis(500)
    }
}

impl Default for GatewayConfig {
    fn default() -> Self {
        // The nodes' defaults, from the declarations they come from (the
        // gateway never imports the node).
        GatewayConfig {
            routing: Routing::default(),
            durable: false,
            connect_timeout: Duration::from_secs(2),
            reroute_wait: Self::reroute_wait_for(MembershipConfig::default().ttl),
            max_body_bytes: wsring_protocol::DEFAULT_MAX_MESSAGE_BYTES,
            mode: "gateway",
            limits: wsring_http::ServeLimits::default(),
            tls: wsring_http::tls::TlsFiles::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_the_shared_settings() {
        let c = GatewayConfig::default();
        assert_eq!(c.routing, Routing::Hash);
        assert!(!c.durable);
        assert_eq!(c.reroute_wait, Duration::from_millis(3500));
        assert_eq!(c.max_body_bytes, 65536);
        assert_eq!(c.mode, "gateway");
    }
}
