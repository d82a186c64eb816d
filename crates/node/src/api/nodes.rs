//! `GET /api/nodes`: members, their state, live connection counts and ring
//! shares, from this process's view and the latest heartbeats.

use axum::Json;
use axum::extract::State;
use serde_json::Value;
use std::sync::Arc;
use wsring_cluster::report;

use crate::node::Node;

pub(super) async fn handle(State(node): State<Arc<Node>>) -> Json<Value> {
    let view = node.membership.view();
    Json(report::nodes(
        &view,
        &node.membership.stats(),
        node.cfg.routing,
    ))
}
