//! `POST /api/disconnect {"user","code"?,"reason"?}` → 200
//! `{"ok":true,"user","closed":N}`: closes every session of the user,
//! cluster-wide, with the given application close code (4000–4999; default
//! 4000 `disconnected`).
//!
//! The answering node closes its own sessions of the user and asks every
//! other member to close theirs (`?scope=local`, with the caller's API
//! key), in parallel; `closed` adds up what each closed, and members that
//! did not answer in time are listed under `unreachable`. Each node answers
//! once its sessions sent their close frames (or after half a second). A
//! session that connects after its node took the call is not closed.

use axum::Json;
use axum::extract::rejection::BytesRejection;
use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use bytes::Bytes;
use std::sync::Arc;
use wsring_cluster::report;
use wsring_http::{parse_body, rejection};
use wsring_protocol::DisconnectBody;
use wsring_protocol::api::Disconnected;

use super::{ask_peers, local_scope, tell_sessions};
use crate::error::ApiError;
use crate::node::Node;
use crate::sessions::Outbound;

pub(super) async fn handle(
    State(node): State<Arc<Node>>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Disconnected>, ApiError> {
    let raw = body.map_err(rejection)?;
    let b: DisconnectBody = parse_body(Ok(raw.clone()))?;
    b.validate()?;
    let closed = close_local(&node, &b).await;
    if local_scope(q.as_deref()) {
        return Ok(Json(report::disconnected(
            &b.user,
            Some(closed),
            Vec::new(),
        )));
    }
    let answers = ask_peers(&node, &headers, "/api/disconnect", "", Some(raw)).await;
    Ok(Json(report::disconnected(&b.user, Some(closed), answers)))
}

/// Tells every local session of the user to close and waits (briefly) for
/// their close frames to go out; how many there were.
async fn close_local(node: &Node, b: &DisconnectBody) -> u64 {
    let reason: Arc<str> = b.close_reason().into();
    let code = b.close_code();
    let n = tell_sessions(node, &b.user, |done| {
        Outbound::Disconnect(code, Arc::clone(&reason), done)
    })
    .await;
    if n > 0 {
        tracing::info!(node = %node.id(), user = %b.user, sessions = n, code, "disconnected a user's sessions");
    }
    n
}
