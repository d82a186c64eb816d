//! The gateway's HTTP API: the same contract as a node's, answered
//! cluster-wide. Reads come from the gateway's own membership view; writes,
//! room members and history are forwarded to a node ([`forward`]), which
//! answers for the whole cluster; node control goes to the dev
//! [`crate::Launcher`] ([`control`]).
//!
//! Writes, presence, room members, history, node control and the full event
//! stream need the API key when the API is protected, and JSON bodies their content type
//! (`wsring_http::guard`); the read-only views the dashboard draws (nodes,
//! route, ring, info), health and metrics stay open and carry no secrets.

mod control;
pub(crate) mod forward;
mod read;

use axum::Router;
use axum::middleware::{from_fn, from_fn_with_state};
use axum::routing::{delete, get, post};
use serde_json::{Value, json};
use std::sync::Arc;
use wsring_auth::Security;

use crate::Gateway;

pub(crate) fn routes(security: Arc<Security>) -> Router<Arc<Gateway>> {
    let writes = Router::new()
        .route("/api/send", post(forward::send))
        .route("/api/publish", post(forward::publish))
        .route("/api/broadcast", post(forward::broadcast))
        .route("/api/disconnect", post(forward::disconnect))
        .route("/api/rooms/{room}/join", post(forward::room_join))
        .route("/api/rooms/{room}/leave", post(forward::room_leave))
        .route_layer(from_fn(wsring_http::require_json));
    let protected = Router::new()
        .merge(writes)
        .route("/api/nodes", post(control::add))
        .route("/api/nodes/{id}", delete(control::remove))
        .route("/api/presence", get(read::presence))
        .route("/api/rooms/{room}", get(forward::room_members))
        .route("/api/rooms/{room}/count", get(forward::room_count))
        .route("/api/history", get(forward::history))
        .route_layer(from_fn_with_state(
            Arc::clone(&security),
            wsring_http::require_key,
        ));
    // The dashboard's EventSource cannot send headers: `?key=` too.
    let feed = Router::new()
        .route("/api/events", get(crate::events::sse))
        .route_layer(from_fn_with_state(
            security,
            wsring_http::require_key_or_query,
        ));
    Router::new()
        .merge(protected)
        .merge(feed)
        .route("/api/nodes", get(read::nodes))
        .route("/api/route", get(read::route))
        .route("/api/ring", get(read::ring))
        .route("/api/info", get(read::info))
        .route("/healthz", get(read::healthz))
        .route("/readyz", get(read::readyz))
        .route("/metrics", get(read::metrics))
}

/// `GET /api/info` body: what this gateway is, for the dashboard.
pub(crate) fn info_body(gw: &Gateway) -> Value {
    json!({
        "mode": gw.cfg.mode,
        "routing": gw.cfg.routing.as_str(),
        "durable": gw.cfg.durable,
        "launcher": gw.launcher.is_some(),
        "auth": gw.security.summary(),
        "version": env!("CARGO_PKG_VERSION"),
    })
}
