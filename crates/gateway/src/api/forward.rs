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
use axum::http::{Response, StatusCode, header};
use axum::response::IntoResponse;
use bytes::Bytes;
use rand::seq::SliceRandom;
use std::sync::Arc;
use tracing::debug;
use wsring_cluster::MemberState;
use wsring_node::ApiError;
use wsring_node::api::body::{self, BroadcastBody, PublishBody, SendBody};

use crate::Gateway;

pub(super) async fn send(
    State(gw): State<Arc<Gateway>>,
    raw: Result<Bytes, BytesRejection>,
) -> Response<Body> {
    let bytes = match raw {
        Ok(b) => b,
        Err(r) => {
            return body::parse::<SendBody>(Err(r))
                .map(|_| ())
                .unwrap_err_response();
        }
    };
    let parsed: SendBody = match body::parse(Ok(bytes.clone())) {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    if let Err(e) = wsring_protocol::validate_user(&parsed.to) {
        return ApiError::bad_request(format!("`to`: {e}")).into_response();
    }
    let owner = gw.membership.view().owner(&parsed.to).map(str::to_owned);
    relay(&gw, "/api/send", bytes, owner).await
}

pub(super) async fn publish(
    State(gw): State<Arc<Gateway>>,
    raw: Result<Bytes, BytesRejection>,
) -> Response<Body> {
    let bytes = match raw {
        Ok(b) => b,
        Err(r) => {
            return body::parse::<PublishBody>(Err(r))
                .map(|_| ())
                .unwrap_err_response();
        }
    };
    match body::parse::<PublishBody>(Ok(bytes.clone())) {
        Ok(b) => {
            if let Err(e) = wsring_protocol::validate_room(&b.room) {
                return ApiError::bad_request(format!("`room`: {e}")).into_response();
            }
        }
        Err(e) => return e.into_response(),
    }
    relay(&gw, "/api/publish", bytes, None).await
}

pub(super) async fn broadcast(
    State(gw): State<Arc<Gateway>>,
    raw: Result<Bytes, BytesRejection>,
) -> Response<Body> {
    let bytes = match raw {
        Ok(b) => b,
        Err(r) => {
            return body::parse::<BroadcastBody>(Err(r))
                .map(|_| ())
                .unwrap_err_response();
        }
    };
    if let Err(e) = body::parse::<BroadcastBody>(Ok(bytes.clone())) {
        return e.into_response();
    }
    relay(&gw, "/api/broadcast", bytes, None).await
}

/// Turns a parse result that can only be an error into its response.
trait ErrResponse {
    fn unwrap_err_response(self) -> Response<Body>;
}

impl ErrResponse for Result<(), ApiError> {
    fn unwrap_err_response(self) -> Response<Body> {
        match self {
            Ok(()) => ApiError::bad_request("unreadable body").into_response(),
            Err(e) => e.into_response(),
        }
    }
}

async fn relay(gw: &Gateway, path: &str, bytes: Bytes, prefer: Option<String>) -> Response<Body> {
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
        let sent = gw
            .http
            .post(format!("{base}{path}"))
            .header(header::CONTENT_TYPE, "application/json")
            .body(bytes.clone())
            .send()
            .await;
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
