//! `GET /api/ring[?arcs=1]`: epoch, virtual nodes per node, each node's share
//! of the hash space, and optionally the arcs.

use axum::Json;
use axum::extract::{RawQuery, State};
use serde_json::Value;
use std::sync::Arc;

use super::{query_param, views};
use crate::node::Node;

pub(super) async fn handle(State(node): State<Arc<Node>>, RawQuery(q): RawQuery) -> Json<Value> {
    let arcs = query_param(q.as_deref(), "arcs").is_some_and(|v| v == "1" || v == "true");
    Json(views::ring(&node.membership.view(), arcs))
}
