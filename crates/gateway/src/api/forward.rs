//! Routes a node answers for the cluster: the writes (`/api/send`,
//! `/api/publish`, `/api/broadcast`, `/api/disconnect`,
//! `/api/rooms/{room}/join|leave`) and the reads that need a node's
//! backends or its peers (`/api/rooms/{room}`, `/api/rooms/{room}/count`,
//! `/api/history`). Each request is validated here, so bad input gets its
//! 400 from the gateway, then forwarded to a node, which answers for the
//! whole cluster.
//!
//! A send, or a room change for a user, goes to the user's owner first
//! (saving a hop in hash mode); anything else to a random up node. If a
//! node cannot be connected to (nothing was sent), the next one is tried,
//! so a crashed node that is still on the ring for up to one TTL does not
//! fail API calls.

use axum::body::Body;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, Method, Response, StatusCode, header};
use axum::response::IntoResponse;
use bytes::Bytes;
use rand::seq::SliceRandom;
use std::sync::Arc;
use tracing::debug;
use wsring_cluster::MemberState;
use wsring_http::{ApiError, parse_body, rejection};
use wsring_protocol::api::check_room_path;
use wsring_protocol::{
    BroadcastBody, DisconnectBody, InvalidBody, PublishBody, RoomUserBody, SendBody,
};

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
    relay(&gw, &headers, Method::POST, "/api/send", Some(bytes), owner).await
}

pub(super) async fn publish(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    raw: Result<Bytes, BytesRejection>,
) -> Response<Body> {
    match accept::<PublishBody>(raw, PublishBody::check_room) {
        Ok((bytes, _)) => {
            relay(
                &gw,
                &headers,
                Method::POST,
                "/api/publish",
                Some(bytes),
                None,
            )
            .await
        }
        Err(e) => e.into_response(),
    }
}

pub(super) async fn broadcast(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    raw: Result<Bytes, BytesRejection>,
) -> Response<Body> {
    match accept::<BroadcastBody>(raw, |_| Ok(())) {
        Ok((bytes, _)) => {
            relay(
                &gw,
                &headers,
                Method::POST,
                "/api/broadcast",
                Some(bytes),
                None,
            )
            .await
        }
        Err(e) => e.into_response(),
    }
}

pub(super) async fn disconnect(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    raw: Result<Bytes, BytesRejection>,
) -> Response<Body> {
    match accept::<DisconnectBody>(raw, DisconnectBody::validate) {
        Ok((bytes, b)) => {
            let owner = gw.membership.view().owner(&b.user).map(str::to_owned);
            relay(
                &gw,
                &headers,
                Method::POST,
                "/api/disconnect",
                Some(bytes),
                owner,
            )
            .await
        }
        Err(e) => e.into_response(),
    }
}

/// The room named in the path, checked.
fn room_param(path: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    let Path(room) = path.map_err(|e| ApiError::bad_request(e.body_text()))?;
    check_room_path(&room)?;
    Ok(room)
}

async fn room_change(
    gw: &Gateway,
    headers: &HeaderMap,
    path: Result<Path<String>, PathRejection>,
    raw: Result<Bytes, BytesRejection>,
    action: &str,
) -> Response<Body> {
    let room = match room_param(path) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    match accept::<RoomUserBody>(raw, RoomUserBody::validate) {
        Ok((bytes, b)) => {
            let owner = gw.membership.view().owner(&b.user).map(str::to_owned);
            let path = format!("/api/rooms/{room}/{action}");
            relay(gw, headers, Method::POST, &path, Some(bytes), owner).await
        }
        Err(e) => e.into_response(),
    }
}

pub(super) async fn room_join(
    State(gw): State<Arc<Gateway>>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    raw: Result<Bytes, BytesRejection>,
) -> Response<Body> {
    room_change(&gw, &headers, path, raw, "join").await
}

pub(super) async fn room_leave(
    State(gw): State<Arc<Gateway>>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    raw: Result<Bytes, BytesRejection>,
) -> Response<Body> {
    room_change(&gw, &headers, path, raw, "leave").await
}

async fn room_read(
    gw: &Gateway,
    headers: &HeaderMap,
    path: Result<Path<String>, PathRejection>,
    rest: &str,
) -> Response<Body> {
    match room_param(path) {
        Ok(room) => {
            let path = format!("/api/rooms/{room}{rest}");
            relay(gw, headers, Method::GET, &path, None, None).await
        }
        Err(e) => e.into_response(),
    }
}

pub(super) async fn room_members(
    State(gw): State<Arc<Gateway>>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Response<Body> {
    room_read(&gw, &headers, path, "").await
}

pub(super) async fn room_count(
    State(gw): State<Arc<Gateway>>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Response<Body> {
    room_read(&gw, &headers, path, "/count").await
}

pub(super) async fn history(
    State(gw): State<Arc<Gateway>>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Response<Body> {
    let query = q.as_deref();
    match wsring_http::history_query(query) {
        Ok(_) => {
            let path = format!("/api/history?{}", query.unwrap_or_default());
            relay(&gw, &headers, Method::GET, &path, None, None).await
        }
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// Forwards a call to a node with the caller's `Authorization` header, so
/// the node checks the same API key the gateway did. `path` carries the
/// query, if any; `body` is sent as JSON.
pub(crate) async fn relay(
    gw: &Gateway,
    headers: &HeaderMap,
    method: Method,
    path: &str,
    body: Option<Bytes>,
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
        let mut req = gw.http.request(method.clone(), format!("{base}{path}"));
        if let Some(b) = &body {
            req = req
                .header(header::CONTENT_TYPE, "application/json")
                .body(b.clone());
        }
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
