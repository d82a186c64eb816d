//! Write routes (`/api/send`, `/api/publish`, `/api/broadcast`): validated
//! here, so bad input gets its 400 from the gateway, then forwarded to a node.
//!
//! A send goes to the recipient's owner first (saving a broker hop in hash
//! mode); anything else to a random up node. If a node cannot be connected
//! to (nothing was sent), the next one is tried, so a crashed node that is
//! still on the ring for up to one TTL does not fail API writes.

use axum::body::Body;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, Response, StatusCode, header};
use axum::response::IntoResponse;
use bytes::Bytes;
use rand::seq::SliceRandom;
use std::sync::Arc;
use tracing::debug;
use wsring_cluster::MemberState;
use wsring_http::{ApiError, parse_body, rejection};
use wsring_protocol::{BroadcastBody, InvalidBody, PublishBody, SendBody};

use crate::Gateway;

/// Parses and validates a body here (so bad input gets its 400 from the
/// gateway), keeping the raw bytes to forward unchanged.
fn accept<T: serde::de::DeserializeOwned>(
    raw: Result<Bytes, BytesRejection>,
    check: impl FnOnce(&T) -> Result<(), InvalidBody>,
) -> Result<(Bytes, T), Box<ApiError>> {
    let bytes = raw.map_err(rejection)?;
    let parsed: T = parse_body(Ok(bytes.clone()))?;
    check(&parsed).map_err(ApiError::from)?;
    Ok((bytes, parsed))
}

pub(super) async fn send(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    raw: Result<Bytes, BytesRejection>,
) -> Response<Body> {
    // The recipient is checked here; the node checks the rest.
    let (bytes, b) = match accept::<SendBody>(raw, SendBody::check_recipient) {
        Ok(x) => x,
        Err(e) => return e.into_response(),
    };
    let owner = gw.membership.view().owner(&b.to).map(str::to_owned);
    relay(&gw, &headers, "/api/send", bytes, owner).await
}

pub(super) async fn publish(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    raw: Result<Bytes, BytesRejection>,
) -> Response<Body> {
    match accept::<PublishBody>(raw, PublishBody::check_room) {
        Ok((bytes, _)) => relay(&gw, &headers, "/api/publish", bytes, None).await,
        Err(e) => e.into_response(),
    }
}

pub(super) async fn broadcast(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    raw: Result<Bytes, BytesRejection>,
) -> Response<Body> {
    match accept::<BroadcastBody>(raw, |_| Ok(())) {
        Ok((bytes, _)) => relay(&gw, &headers, "/api/broadcast", bytes, None).await,
        Err(e) => e.into_response(),
    }
}

/// Forwards a write to a node with the caller's `Authorization` header, so
/// the node checks the same API key the gateway did.
async fn relay(
    gw: &Gateway,
    headers: &HeaderMap,
    path: &str,
    bytes: Bytes,
    prefer: Option<String>,
) -> Response<Body> {
    let auth = wsring_http::header_str(headers, header::AUTHORIZATION);
    let view = gw.membership.view();
    let mut targets: Vec<(String, String)> = view
        .doc
        .members
        .iter()
        .filter(|(_, m)| m.state == MemberState::Up)
        .map(|(id, m)| (id.clone(), m.api_base()))
        .collect();
    targets.shuffle(&mut rand::rng());
    if let Some(i) = prefer.and_then(|p| targets.iter().position(|(id, _)| *id == p)) {
        let t = targets.remove(i);
        targets.insert(0, t);
    }
    for (id, base) in targets {
        let mut req = gw
            .http
            .post(format!("{base}{path}"))
            .header(header::CONTENT_TYPE, "application/json")
            .body(bytes.clone());
        if let Some(a) = auth {
            req = req.header(header::AUTHORIZATION, a);
        }
        let sent = req.send().await;
        match sent {
            Ok(resp) => {
                let status = resp.status();
                let body = resp.bytes().await.unwrap_or_default();
                let mut out = Response::new(Body::from(body));
                *out.status_mut() =
                    StatusCode::from_u16(status.as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
                out.headers_mut().insert(
                    header::CONTENT_TYPE,
                    header::HeaderValue::from_static("application/json"),
                );
                return out;
            }
            // Nothing reached the node: safe to try another.
            Err(e) if e.is_connect() => {
                debug!(node = %id, error = %e, "node unreachable; trying another");
            }
            Err(e) => {
                return ApiError::unavailable(format!("node {id} did not answer: {e}"))
                    .into_response();
            }
        }
    }
    ApiError::unavailable("no node is reachable").into_response()
}
