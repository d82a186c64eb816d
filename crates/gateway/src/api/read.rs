//! Read-only routes, answered from the gateway's own view with the same
//! report functions nodes use (`wsring_cluster::report`): `/api/nodes`,
//! `/api/route`, `/api/ring`, `/api/presence` (gathered from every node),
//! `/api/info`, health, metrics.

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, header};
use serde_json::{Value, json};
use std::sync::Arc;
use wsring_cluster::report::{self, PRESENCE_PEER_TIMEOUT, QueryError};
use wsring_http::{ApiError, peers, query_param};

use crate::Gateway;

pub(super) async fn nodes(State(gw): State<Arc<Gateway>>) -> Json<Value> {
    let view = gw.membership.view();
    Json(report::nodes(&view, &gw.membership.stats(), gw.cfg.routing))
}

pub(super) async fn route(
    State(gw): State<Arc<Gateway>>,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>, ApiError> {
    report::route(&gw.membership.view(), query_param(q.as_deref(), "user"))
        .map(Json)
        .map_err(query_error)
}

pub(super) async fn ring(State(gw): State<Arc<Gateway>>, RawQuery(q): RawQuery) -> Json<Value> {
    let arcs = query_param(q.as_deref(), "arcs").is_some_and(|v| v == "1" || v == "true");
    Json(report::ring(&gw.membership.view(), arcs))
}

pub(super) async fn presence(
    State(gw): State<Arc<Gateway>>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let user = report::user_param(query_param(q.as_deref(), "user")).map_err(query_error)?;
    // The gateway holds no sessions: every node is asked.
    let targets = report::presence_peers(&gw.membership.view(), &user, None);
    let auth = wsring_http::header_str(&headers, header::AUTHORIZATION);
    let answers = peers::get_json_all(&gw.http, targets, PRESENCE_PEER_TIMEOUT, auth).await;
    Ok(Json(report::presence(&user, None, answers)))
}

/// The answer for a `user` query that cannot be served: 400 for the
/// caller's mistakes, 503 when no node is up.
fn query_error(e: QueryError) -> ApiError {
    match e {
        QueryError::NoNodeUp => ApiError::unavailable(e.to_string()),
        QueryError::MissingUser | QueryError::InvalidUser(_) => {
            ApiError::bad_request(e.to_string())
        }
    }
}

pub(super) async fn info(State(gw): State<Arc<Gateway>>) -> Json<Value> {
    Json(super::info_body(&gw))
}

pub(super) async fn healthz() -> Json<Value> {
    Json(json!({ "ok": true }))
}

pub(super) async fn readyz(State(gw): State<Arc<Gateway>>) -> Result<Json<Value>, ApiError> {
    if !gw.membership.healthy() {
        return Err(ApiError::unavailable("not ready: registry unreachable"));
    }
    if gw.membership.view().ring.is_empty() {
        return Err(ApiError::unavailable("not ready: no node is up"));
    }
    Ok(Json(json!({ "ok": true })))
}

/// Gateway series: `wsring_gateway_tunnels{node}`, `wsring_cluster_epoch`,
/// `wsring_cluster_nodes{state}` and `wsring_cluster_connections{node}` (from
/// the nodes' heartbeats), plus whatever nodes in this process export.
pub(super) async fn metrics(State(gw): State<Arc<Gateway>>) -> String {
    let Some(h) = wsring_http::prometheus_handle() else {
        return String::new();
    };
    let view = gw.membership.view();
    let tunnels = gw.tunnel_counts();
    // Every member gets a value (0 included), so a drained count never
    // lingers at its last non-zero value.
    for node in view.doc.members.keys() {
        let n = tunnels.get(node).copied().unwrap_or(0);
        metrics::gauge!("wsring_gateway_tunnels", "node" => node.clone()).set(n as f64);
    }
    metrics::gauge!("wsring_cluster_epoch").set(view.epoch() as f64);
    let up = view.ring.len();
    metrics::gauge!("wsring_cluster_nodes", "state" => "up").set(up as f64);
    metrics::gauge!("wsring_cluster_nodes", "state" => "draining")
        .set((view.doc.members.len() - up) as f64);
    for (node, s) in gw.membership.stats().iter() {
        metrics::gauge!("wsring_cluster_connections", "node" => node.clone())
            .set(s.connections as f64);
    }
    h.render()
}
