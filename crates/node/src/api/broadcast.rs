//! `POST /api/broadcast {"data":…}` → 202: every session in the cluster
//! receives `{"type":"message","from":null,"data":…}`. Not durable: a
//! broadcast has no stream to resume.

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use bytes::Bytes;
use serde_json::{Value, json};
use std::sync::Arc;
use wsring_http::parse_body;
use wsring_protocol::BroadcastBody;

use crate::error::ApiError;
use crate::node::Node;

pub(super) async fn handle(
    State(node): State<Arc<Node>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let b: BroadcastBody = parse_body(body)?;
    node.broadcast(&b.data).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({ "ok": true }))))
}
