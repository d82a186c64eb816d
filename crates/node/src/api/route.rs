//! `GET /api/route?user=bob` → `{"user","node","epoch"}`: the ring owner.

use axum::Json;
use axum::extract::{RawQuery, State};
use serde_json::Value;
use std::sync::Arc;
use wsring_cluster::report;
use wsring_http::query_param;

use crate::error::ApiError;
use crate::node::Node;

pub(super) async fn handle(
    State(node): State<Arc<Node>>,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let view = node.membership.view();
    report::route(&view, query_param(q.as_deref(), "user"))
        .map(Json)
        .map_err(super::query_error)
}
