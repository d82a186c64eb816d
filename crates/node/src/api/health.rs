//! `GET /healthz` (the process serves HTTP) and `GET /readyz` (every backend
//! reachable, on the ring, not draining; 503 with the reasons otherwise).

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};
use std::sync::Arc;

use crate::error::ApiError;
use crate::node::Node;

pub(super) async fn healthz() -> Json<Value> {
    Json(json!({ "ok": true }))
}

pub(super) async fn readyz(State(node): State<Arc<Node>>) -> Result<Json<Value>, ApiError> {
    node.ready()
        .map(|()| Json(json!({ "ok": true })))
        .map_err(|why| ApiError::unavailable(format!("not ready: {why}")))
}
