//! `GET /api/ring[?arcs=1]`: epoch, virtual nodes per node, each node's share
//! of the hash space, and optionally the arcs.

use axum::Json;
use axum::extract::{RawQuery, State};
use serde_json::Value;
use std::sync::Arc;
use wsring_cluster::report;
use wsring_http::query_param;

use crate::node::Node;

pub(super) async fn handle(State(node): State<Arc<Node>>, RawQuery(q): RawQuery) -> Json<Value> {
    let arcs = query_param(q.as_deref(), "arcs").is_some_and(|v| v == "1" || v == "true");
    Json(report::ring(&node.membership.view(), arcs))
}
