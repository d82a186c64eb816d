//! The wsring gateway: the one address clients connect to.
//!
//! It holds no sessions. It watches membership like every node does (so all
//! gateways route identically), forwards each WebSocket upgrade to the right
//! node and then only tunnels bytes ([`proxy`]). It also answers the HTTP API
//! cluster-wide ([`api`]): reads from its own view, writes forwarded to a node,
//! presence gathered from all nodes, plus the live dashboard feed ([`events`])
//! and, under `wsring dev`, node controls through a [`Launcher`].
//!
//! # Layout
//! * [`config`] — [`GatewayConfig`].
//! * `proxy`: upgrade forwarding.
//! * `locate`: where a client may connect instead of through the tunnel.
//! * `tunnel`: the byte tunnel after the upgrade.
//! * `pusher`: the Pusher Channels endpoints, placed by load and relayed.
//! * `api/`: one file per route group.
//! * [`events`] — membership event log and the SSE feed.
//! * `dashboard`: the embedded browser dashboard.
//! * [`launcher`] — the dev-mode node control trait.
//!
//! The gateway is a sibling of the node, not a kind of node: it never
//! imports `wsring-node`. What both serve identically comes from the crates
//! below them: wire types and API bodies from `wsring-protocol`, the JSON
//! reports from `wsring_cluster::report`, HTTP plumbing from `wsring-http`.

mod api;
pub mod config;
mod dashboard;
pub mod events;
pub mod launcher;
mod locate;
mod proxy;
mod pusher;
mod recent;
mod tunnel;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::info;
use wsring_cluster::{Membership, Suspicion};

pub use config::GatewayConfig;
pub use launcher::{LaunchError, Launched, Launcher, RemoveMode};

/// Shared gateway state.
pub struct Gateway {
    pub(crate) cfg: GatewayConfig,
    pub(crate) membership: Arc<Membership>,
    pub(crate) launcher: Option<Arc<dyn Launcher>>,
    pub(crate) http: reqwest::Client,
    /// Open tunnels per node, for least-connections routing.
    tunnels: Mutex<HashMap<String, u64>>,
    /// Broadcast routing: clients located lately, per node, until the
    /// nodes' heartbeats show them.
    located: Mutex<recent::RecentLocates>,
    pub(crate) events: events::Events,
    pub(crate) stop: CancellationToken,
    /// Who may connect and call the API.
    pub(crate) security: Arc<wsring_auth::Security>,
    /// TLS for tunnels to `wss://` nodes.
    pub(crate) tls: tokio_rustls::TlsConnector,
    /// The application's connect check (`--connect-proxy`).
    pub(crate) connect_proxy: Option<wsring_hooks::Proxy>,
}

/// A running gateway.
pub struct GatewayHandle {
    gateway: Arc<Gateway>,
    addr: SocketAddr,
}

impl GatewayHandle {
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Total open tunnels.
    pub fn tunnels(&self) -> u64 {
        self.gateway.tunnel_counts().values().sum()
    }
}

/// Starts serving on `listener` until `stop` fires. `security` decides who
/// may connect (verified here before routing, and again by the node) and
/// call the API.
pub async fn start(
    cfg: GatewayConfig,
    listener: TcpListener,
    membership: Arc<Membership>,
    launcher: Option<Arc<dyn Launcher>>,
    security: Arc<wsring_auth::Security>,
    stop: CancellationToken,
) -> std::io::Result<GatewayHandle> {
    let addr = listener.local_addr()?;
    let _ = wsring_http::prometheus_handle();
    // Forwarded API calls must never hang: build the client with its timeout
    // or refuse to start (a default client would have none).
    let client_tls = cfg.tls.client().map_err(std::io::Error::other)?;
    let http = client_tls
        .http_client(std::time::Duration::from_secs(5))
        .map_err(std::io::Error::other)?;
    membership.set_prober(healthz_prober(http.clone()));
    let acceptor = cfg.tls.acceptor().map_err(std::io::Error::other)?;
    let connect_proxy = security.connect_proxy.as_ref().map(|c| {
        let cfg = wsring_hooks::ProxyConfig::connect(&c.url, &c.secret, c.timeout);
        wsring_hooks::Proxy::new("connect", cfg, http.clone())
    });
    let gateway = Arc::new(Gateway {
        connect_proxy,
        cfg,
        membership,
        launcher,
        http,
        tunnels: Mutex::new(HashMap::new()),
        located: Mutex::new(recent::RecentLocates::default()),
        events: events::Events::default(),
        stop: stop.clone(),
        security,
        tls: client_tls.connector(),
    });
    tokio::spawn(events::run(Arc::clone(&gateway)));
    let app = router(Arc::clone(&gateway));
    let limits = gateway.cfg.limits;
    tokio::spawn(wsring_http::serve_with(
        listener, app, stop, limits, acceptor,
    ));
    info!(%addr, routing = gateway.cfg.routing.as_str(), "gateway serving");
    Ok(GatewayHandle { gateway, addr })
}

fn router(gw: Arc<Gateway>) -> Router {
    let limit = gw.cfg.max_body_bytes;
    let security = Arc::clone(&gw.security);
    Router::new()
        .route("/ws", get(proxy::ws))
        .route("/ws/locate", get(locate::locate))
        .merge(pusher::routes(gw.security.pusher.is_some()))
        .merge(api::routes(Arc::clone(&security)))
        .merge(dashboard::routes())
        .fallback(wsring_http::not_found)
        .method_not_allowed_fallback(wsring_http::method_not_allowed)
        .layer(DefaultBodyLimit::max(limit))
        .layer(axum::middleware::from_fn_with_state(
            security,
            wsring_http::cors,
        ))
        .with_state(gw)
}

impl Gateway {
    fn lock_tunnels(&self) -> std::sync::MutexGuard<'_, HashMap<String, u64>> {
        wsring_cluster::lock(&self.tunnels)
    }

    pub(crate) fn tunnel_counts(&self) -> HashMap<String, u64> {
        self.lock_tunnels().clone()
    }

    /// Counts a client located to `node`, which connects there directly.
    pub(crate) fn note_located(&self, node: &str) {
        wsring_cluster::lock(&self.located).note(node, std::time::Instant::now());
    }

    /// Clients located lately per node (see [`recent`]).
    pub(crate) fn recent_locates(&self) -> HashMap<String, u64> {
        wsring_cluster::lock(&self.located).counts(std::time::Instant::now())
    }

    /// Joins the client and node sides of an upgraded connection.
    pub(crate) fn spawn_tunnel(
        self: &Arc<Self>,
        node: String,
        client: hyper::upgrade::OnUpgrade,
        upstream: hyper::upgrade::OnUpgrade,
    ) {
        *self.lock_tunnels().entry(node.clone()).or_default() += 1;
        let open = OpenTunnel {
            gw: Arc::clone(self),
            node,
        };
        tokio::spawn(async move {
            let joined = tokio::time::timeout(proxy::UPGRADE_TIMEOUT, async {
                tokio::try_join!(client, upstream)
            })
            .await;
            if let Ok(Ok((c, u))) = joined {
                // The node ending a tunnel, or a tunnel failing (either
                // side may have reset it), is a sign the node may have died:
                // have it probed (at most once a second per node, see
                // `wsring_cluster::probe`), so a dead node leaves the ring
                // before its clients come back.
                let (membership, node) = (Arc::clone(&open.gw.membership), open.node.clone());
                let suspect = move || membership.suspect(&node, Suspicion::Weak);
                let mut tunnel = tunnel::run(c, u, suspect);
                // A task of its own, sized for the tunnel alone and not for
                // the upgrade wait too: it lasts as long as the connection.
                tokio::spawn(async move {
                    tokio::select! {
                        r = &mut tunnel => if r.is_err() {
                            open.gw.membership.suspect(&open.node, Suspicion::Weak);
                        },
                        _ = open.gw.stop.cancelled() => {}
                    }
                    drop(open);
                });
            }
        });
    }
}

/// Counts a tunnel as open (for least-connections routing) until dropped.
struct OpenTunnel {
    gw: Arc<Gateway>,
    node: String,
}

impl Drop for OpenTunnel {
    fn drop(&mut self) {
        let mut t = self.gw.lock_tunnels();
        if let Some(n) = t.get_mut(&self.node) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                t.remove(&self.node);
            }
        }
    }
}

/// Probes members with `GET /healthz`, whose answer carries the incarnation
/// the process serves (see `wsring_cluster::probe`).
fn healthz_prober(http: reqwest::Client) -> wsring_cluster::Prober {
    std::sync::Arc::new(move |url: String, limit: std::time::Duration| {
        let http = http.clone();
        Box::pin(async move {
            let base = wsring_cluster::view::api_base_of(&url);
            match wsring_http::peers::health_probe(&http, &base, limit).await {
                wsring_http::peers::Health::Refused => wsring_cluster::Probe::Refused,
                wsring_http::peers::Health::Answered(Some(i)) => wsring_cluster::Probe::Answered(i),
                _ => wsring_cluster::Probe::Unconfirmed,
            }
        })
    })
}
