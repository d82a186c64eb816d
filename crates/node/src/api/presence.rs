//! `GET /api/presence?user=bob` → `{"user","sessions":[{"node","session"}]}`,
//! cluster-wide: the answering process asks every member for its local
//! sessions of the user (`scope=local`) in parallel. Members that do not
//! answer within a second are listed under `unreachable` rather than failing
//! the whole request.
//!
//! Whom to ask and how answers combine is `wsring_cluster::report` (shared
//! with the gateway); the asking is `wsring_http::peers`.

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use serde_json::Value;
use std::sync::Arc;
use wsring_cluster::report;
use wsring_http::query_param;

use super::query_error;
use crate::error::ApiError;
use crate::node::Node;

pub(super) async fn handle(
    State(node): State<Arc<Node>>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let user = report::user_param(query_param(q.as_deref(), "user")).map_err(query_error)?;
    let local: Vec<String> = node
        .table
        .user_sessions(&user)
        .iter()
        .map(|h| h.id.to_string())
        .collect();
    let local = Some((node.id(), local.as_slice()));
    if super::local_scope(q.as_deref()) {
        return Ok(Json(report::presence(&user, local, Vec::new())));
    }
    let query = report::user_query(&user);
    let answers = super::ask_peers(&node, &headers, "/api/presence", &query, None).await;
    Ok(Json(report::presence(&user, local, answers)))
}
