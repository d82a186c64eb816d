//! `GET /api/presence?user=bob` → `{"user","sessions":[{"node","session"}]}`,
//! cluster-wide: the answering process asks every member for its local
//! sessions of the user (`scope=local`) in parallel. Members that do not
//! answer within a second are listed under `unreachable` rather than failing
//! the whole request.

use axum::Json;
use axum::extract::{RawQuery, State};
use futures::future::join_all;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use wsring_cluster::View;

use super::query_param;
use crate::error::ApiError;
use crate::node::Node;

/// Per-peer timeout for presence queries.
const PEER_TIMEOUT: Duration = Duration::from_secs(1);

pub(super) async fn handle(
    State(node): State<Arc<Node>>,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let user = query_param(q.as_deref(), "user")
        .ok_or_else(|| ApiError::bad_request("missing query parameter `user`"))?;
    wsring_protocol::validate_user(&user).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let local: Vec<String> = node
        .table
        .user_sessions(&user)
        .iter()
        .map(|h| h.id.to_string())
        .collect();
    if query_param(q.as_deref(), "scope").as_deref() == Some("local") {
        let sessions: Vec<Value> = local
            .iter()
            .map(|s| json!({ "node": node.id(), "session": s }))
            .collect();
        return Ok(Json(json!({ "user": user, "sessions": sessions })));
    }
    let view = node.membership.view();
    Ok(Json(
        gather(&node.http, &view, &user, Some((node.id(), local))).await,
    ))
}

/// Collects `user`'s sessions from every member (and `local`, this process's
/// own, without an HTTP round trip).
pub async fn gather(
    http: &reqwest::Client,
    view: &View,
    user: &str,
    local: Option<(&str, Vec<String>)>,
) -> Value {
    let mut sessions: Vec<Value> = Vec::new();
    let local_id = local.as_ref().map(|(id, _)| id.to_string());
    if let Some((id, ids)) = &local {
        sessions.extend(ids.iter().map(|s| json!({ "node": id, "session": s })));
    }
    let encoded: String = form_urlencoded::byte_serialize(user.as_bytes()).collect();
    let peers = view
        .doc
        .members
        .iter()
        .filter(|(id, _)| Some(id.as_str()) != local_id.as_deref())
        .map(|(id, m)| {
            let url = format!("{}/api/presence?user={encoded}&scope=local", m.api_base());
            async move {
                let resp = http.get(url).timeout(PEER_TIMEOUT).send().await;
                let body = match resp {
                    Ok(r) if r.status().is_success() => r.json::<Value>().await.ok(),
                    _ => None,
                };
                (id.clone(), body)
            }
        });
    let mut unreachable = Vec::new();
    for (id, body) in join_all(peers).await {
        match body.and_then(|b| b.get("sessions").and_then(Value::as_array).cloned()) {
            Some(list) => sessions.extend(list),
            None => unreachable.push(id),
        }
    }
    let mut out = json!({ "user": user, "sessions": sessions });
    if !unreachable.is_empty() {
        out["unreachable"] = json!(unreachable);
    }
    out
}
