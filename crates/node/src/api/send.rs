//! `POST /api/send {"to":"bob","data":…,"id":…}` → 202 `{"ok":true}`: a
//! server-side direct message (`from` is null).

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode};
use bytes::Bytes;
use serde_json::{Value, json};
use std::sync::Arc;
use wsring_http::parse_body;
use wsring_protocol::SendBody;

use crate::error::ApiError;
use crate::node::Node;

pub(super) async fn handle(
    State(node): State<Arc<Node>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let b: SendBody = parse_body(body)?;
    b.validate()?;
    let dedup = b.id.map(|id| super::dedup_key(&node, &headers, &id));
    let owner = super::api_owner(&node, &headers);
    let ok = node
        .send_direct(None, &b.to, &b.data, dedup, owner.as_deref())
        .await?;
    let mut body = accepted(ok.seq);
    if ok.delivered == Some(false) {
        // As on the `ack` frame: the backend says no live node received it.
        body["delivered"] = Value::Bool(false);
    }
    Ok((StatusCode::ACCEPTED, Json(body)))
}

/// The 202 body: `{"ok":true}`, plus `seq` in durable mode.
pub(super) fn accepted(seq: Option<u64>) -> Value {
    match seq {
        Some(seq) => json!({ "ok": true, "seq": seq }),
        None => json!({ "ok": true }),
    }
}
