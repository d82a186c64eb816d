//! `POST /api/publish {"room":"lobby","data":…,"id":…}` → 202: a server-side
//! room message, delivered to every member session.

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode};
use bytes::Bytes;
use serde_json::Value;
use std::sync::Arc;
use wsring_http::parse_body;
use wsring_protocol::PublishBody;

use super::send::accepted;
use crate::error::ApiError;
use crate::node::Node;

pub(super) async fn handle(
    State(node): State<Arc<Node>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let b: PublishBody = parse_body(body)?;
    b.validate()?;
    let dedup = b.id.map(|id| super::dedup_key(&node, &headers, &id));
    let owner = super::api_owner(&node, &headers);
    let ok = node
        .publish_room(None, &b.room, &b.data, dedup, owner.as_deref())
        .await?;
    Ok((StatusCode::ACCEPTED, Json(accepted(ok.seq))))
}
