//! A wsring node: the process (or, in `wsring dev`, the task group) that holds
//! WebSocket sessions.
//!
//! A node serves `/ws` and the HTTP API on one port, joins the cluster through
//! [`wsring_cluster::Membership`], subscribes to its own broker topic and the
//! cluster topic, and from then on:
//! * delivers messages to its local sessions ([`node`]),
//! * moves sessions whose user the ring gave to another node ([`rebalance`]),
//! * catches up from durable streams after a broker outage ([`inbound`]).
//!
//! # Layout
//! * [`config`] — [`NodeConfig`] and [`Routing`].
//! * `node`: shared state and the routing rules (where a message goes, when it
//!   is acknowledged).
//! * `ws`: the `/ws` upgrade and its pre-upgrade checks; `upgrade`: the
//!   WebSocket handshake and socket; `text_guard`: fail-fast UTF-8 checks
//!   below tungstenite.
//! * [`echo`] — echo mode, the test mode for WebSocket conformance suites.
//! * `session`: one task per connection; `session/cursor` for durable delivery.
//! * `sessions`: the node's table of local sessions; `outbox`: each
//!   session's queue of outbound work.
//! * `cmd/`: one file per client frame kind.
//! * [`api`] — one file per HTTP route.
//! * `rebalance`, `inbound`: reactions to membership and broker events.
//! * `rooms`: room topic subscriptions, reconciled with the session table.
//! * `roster`: who is in which room where, cluster-wide, for `presence`
//!   events.
//! * `occupancy`: which rooms have members anywhere in the cluster, for the
//!   `room.occupied` and `room.vacated` webhooks.
//! * `tally`: the per-node shares and counts under both rosters and
//!   occupancy.
//! * [`error`] — [`NodeError`], [`RouteError`].
//!
//! The HTTP plumbing (JSON errors, the accept loop, fallbacks) comes from
//! `wsring-http`, shared with the gateway; the wire types from
//! `wsring-protocol`. A node never imports the gateway, nor the gateway a node.

pub mod api;
mod cmd;
pub mod config;
pub mod deflate;
mod durable;
pub mod echo;
pub mod error;
mod events;
mod hook_spool;
mod inbound;
mod node;
mod occupancy;
mod outbox;
mod pusher;
mod rebalance;
mod rooms;
mod roster;
mod session;
mod sessions;
mod tally;
mod text_guard;
mod upgrade;
mod ws;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use wsring_cluster::{Broker, HookQueue, Inbox, Membership, ServerRooms, StreamStore, Topic};

pub use config::{NodeConfig, Routing};
pub use echo::start_echo;
pub use error::{NodeError, RouteError};
pub use node::{Accepted, Node};

/// The backends a node runs on.
pub struct NodeDeps {
    /// Started (not yet joined) membership handle; its tasks must stop with `kill`.
    pub membership: Arc<Membership>,
    /// The node's broker connection.
    pub broker: Arc<dyn Broker>,
    /// The broker connection's inbox.
    pub inbox: Inbox,
    /// Stream store; required when `NodeConfig::durable` is set.
    pub streams: Option<Arc<dyn StreamStore>>,
    /// Where the rooms the server put each user in are kept.
    pub server_rooms: Arc<dyn ServerRooms>,
    /// Where webhook events wait for delivery in durable mode (`None`:
    /// in memory, as without durable mode).
    pub hook_queue: Option<Arc<dyn HookQueue>>,
    /// Who may connect and call the API ([`wsring_auth::Security::open`]
    /// for none).
    pub security: Arc<wsring_auth::Security>,
    /// Stops every task of this node (crash, or the end of a drain).
    pub kill: CancellationToken,
}

/// A running node.
#[derive(Clone)]
pub struct NodeHandle {
    node: Arc<Node>,
    addr: SocketAddr,
}

/// Starts a node on `listener`: subscribes to its topics, starts serving, then
/// joins the ring (so it is reachable before anyone routes to it).
pub async fn start(
    cfg: NodeConfig,
    listener: TcpListener,
    deps: NodeDeps,
) -> Result<NodeHandle, NodeError> {
    wsring_protocol::validate_node_id(&cfg.id)?;
    // Install the metrics recorder before anything records.
    let _ = wsring_http::prometheus_handle();
    let addr = listener.local_addr()?;
    let tls = cfg.tls_files().acceptor()?;
    let scheme = if tls.is_some() { "wss" } else { "ws" };
    let url = cfg
        .advertise
        .clone()
        .unwrap_or_else(|| format!("{scheme}://{addr}/ws"));
    let streams = if cfg.durable { deps.streams } else { None };
    let hook_queue = if cfg.durable { deps.hook_queue } else { None };
    let kill = deps.kill;
    let node = Arc::new(Node::new(
        cfg,
        url.clone(),
        deps.membership,
        deps.broker,
        streams,
        deps.server_rooms,
        hook_queue.is_some(),
        Arc::new(pusher::channel::PusherOccupancy),
        deps.security,
        kill.clone(),
    )?);
    let result = async {
        // Subscribe before joining: once we are on the ring, directed
        // messages for our users must reach us.
        node.broker
            .subscribe(&Topic::Node(node.id().to_owned()))
            .await?;
        node.broker.subscribe(&Topic::Cluster).await?;
        tokio::spawn(inbound::run(Arc::clone(&node), deps.inbox));
        tokio::spawn(wsring_http::serve_with(
            listener,
            router(Arc::clone(&node)),
            kill.clone(),
            node.cfg.serve_limits(),
            tls,
        ));
        tokio::spawn(rebalance::run(Arc::clone(&node)));
        tokio::spawn(stop_when_fenced(Arc::clone(&node)));
        let weak = Arc::downgrade(&node);
        let stats = Arc::new(move || weak.upgrade().map(|n| n.stats()).unwrap_or_default());
        node.membership.join(node.id(), &url, stats).await
    }
    .await;
    if let Err(e) = result {
        kill.cancel();
        node.broker.close().await;
        return Err(e.into());
    }
    node.joined.store(true, Ordering::Relaxed);
    if let Some(o) = &node.occupancy {
        o.start(&kill);
    }
    if let Some(q) = hook_queue.filter(|_| node.hooks.enabled() || node.pusher_hooks.enabled()) {
        tokio::spawn(hook_spool::run(Arc::clone(&node), q, kill.clone()));
    }
    info!(node = %node.id(), %url, routing = node.cfg.routing.as_str(), durable = node.streams.is_some(), "node serving");
    Ok(NodeHandle { node, addr })
}

/// Stops the node for good once another process holds its id: sessions are
/// closed with 1012 (their clients reconnect through the gateway to the
/// current owner), and nothing is written to the registry, which belongs to
/// the successor now.
async fn stop_when_fenced(node: Arc<Node>) {
    let fenced = tokio::select! {
        _ = node.kill.cancelled() => return,
        f = node.membership.fenced() => f,
    };
    tracing::error!(node = %node.id(), reason = %fenced, "fenced: closing sessions and stopping");
    node.leaving.store(true, Ordering::SeqCst);
    for h in node.table.all() {
        h.offer(sessions::Outbound::Close(
            wsring_protocol::close::SERVICE_RESTART,
            "node replaced".into(),
        ));
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
    while node.table.len() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    node.kill.cancel();
    node.broker.close().await;
}

/// How long a stopping node keeps delivering queued webhook events.
const HOOKS_GRACE: Duration = Duration::from_secs(2);

/// The node's HTTP app: `/ws` plus the API, with JSON 404/405 answers and
/// CORS for the configured origins only.
fn router(node: Arc<Node>) -> Router {
    if node.cfg.echo {
        // Echo mode: a conformance client may connect at any path.
        return Router::new().fallback(ws::echo_upgrade).with_state(node);
    }
    let limit = node.cfg.max_message_bytes;
    let security = Arc::clone(&node.security);
    let pusher = match &security.pusher {
        Some(_) => pusher::api::routes(),
        None => Router::new(),
    };
    Router::new()
        .route("/ws", get(ws::upgrade))
        .merge(pusher)
        .merge(api::routes(Arc::clone(&security)))
        .fallback(wsring_http::not_found)
        .method_not_allowed_fallback(wsring_http::method_not_allowed)
        .layer(DefaultBodyLimit::max(limit))
        .layer(axum::middleware::from_fn_with_state(
            security,
            wsring_http::cors,
        ))
        .with_state(node)
}

impl NodeHandle {
    /// The node id.
    pub fn id(&self) -> &str {
        self.node.id()
    }

    /// The advertised `/ws` URL.
    pub fn url(&self) -> &str {
        &self.node.url
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Number of open sessions.
    pub fn connections(&self) -> usize {
        self.node.table.len()
    }

    /// The shared node state (for embedding and tests).
    pub fn node(&self) -> &Arc<Node> {
        &self.node
    }

    /// Resolves once another process took this node's id; the node then
    /// stops by itself (sessions closed with 1012), and a node process should
    /// exit non-zero with this reason.
    pub async fn fenced(&self) -> wsring_cluster::Fenced {
        self.node.membership.fenced().await
    }

    /// Resolves once every task of the node was told to stop.
    pub async fn stopped(&self) {
        self.node.kill.cancelled().await
    }

    /// Whether the node has stopped (crashed or drained).
    pub fn is_stopped(&self) -> bool {
        self.node.kill.is_cancelled()
    }

    /// Stops abruptly, as a crash would: no deregistration, no close frames,
    /// sockets dropped. The rest of the cluster notices through the heartbeat
    /// TTL.
    pub async fn crash(&self) {
        warn!(node = %self.id(), "crashing (simulated)");
        self.node.kill.cancel();
        self.node.broker.close().await;
    }

    /// Stops for good as part of a whole-cluster shutdown: sessions get close
    /// 1001 (going away; there is nowhere to move them), then the node
    /// deregisters and stops.
    pub async fn stop(&self) {
        let node = &self.node;
        if node.leaving.swap(true, Ordering::SeqCst) {
            return;
        }
        for h in node.table.all() {
            h.offer(sessions::Outbound::Close(
                wsring_protocol::close::GOING_AWAY,
                "server shutting down".into(),
            ));
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        while node.table.len() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if let Err(e) = node.membership.leave().await {
            warn!(error = %e, "deregistration failed; the heartbeat TTL will remove us");
        }
        node.kill.cancel();
        node.broker.close().await;
        tokio::join!(
            node.hooks.shutdown(HOOKS_GRACE),
            node.pusher_hooks.shutdown(HOOKS_GRACE)
        );
    }

    /// Leaves gracefully: off the ring at once (`draining`), sessions moved with
    /// `moved` + 1012 (spread over the drain window), then deregistered and
    /// stopped.
    pub async fn drain(&self) {
        let node = &self.node;
        if node.leaving.swap(true, Ordering::SeqCst) {
            return;
        }
        info!(node = %node.id(), "draining");
        if let Err(e) = node.membership.set_draining().await {
            // Without the registry the ring cannot change; sessions move
            // anyway and the TTL removes us.
            warn!(error = %e, "could not mark draining; moving sessions regardless");
        }
        // `leaving` makes this node own nothing, so this moves everyone even
        // if the registry could not record the drain; sessions already
        // moved by the view change are skipped.
        rebalance::rebalance(node, &node.membership.view());
        let deadline = tokio::time::Instant::now() + node.cfg.drain_window + rebalance::DRAIN_GRACE;
        while node.table.len() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if let Err(e) = node.membership.leave().await {
            warn!(error = %e, "deregistration failed; the heartbeat TTL will remove us");
        }
        node.kill.cancel();
        node.broker.close().await;
        tokio::join!(
            node.hooks.shutdown(HOOKS_GRACE),
            node.pusher_hooks.shutdown(HOOKS_GRACE)
        );
        info!(node = %node.id(), "drained");
    }
}
