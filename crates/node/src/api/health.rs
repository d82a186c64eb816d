//! `GET /healthz` (the process serves HTTP, and which incarnation of its
//! node it is) and `GET /readyz` (every backend
//! reachable, on the ring, not draining; 503 with the reasons otherwise).

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};
use std::sync::Arc;

use crate::error::ApiError;
use crate::node::Node;

/// `{"ok": true}`, plus `node` and `incarnation` once this process serves
/// as a member: a probe that gets them back knows the member it asked
/// about is alive, whatever its heartbeat says.
pub(super) async fn healthz(State(node): State<Arc<Node>>) -> Json<Value> {
    match node.membership.live_incarnation() {
        Some(inc) => Json(json!({ "ok": true, "node": node.id(), "incarnation": inc })),
        None => Json(json!({ "ok": true })),
    }
}

pub(super) async fn readyz(State(node): State<Arc<Node>>) -> Result<Json<Value>, ApiError> {
    node.ready()
        .map(|()| Json(json!({ "ok": true })))
        .map_err(|why| ApiError::unavailable(format!("not ready: {why}")))
}
