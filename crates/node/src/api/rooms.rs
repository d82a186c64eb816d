//! Server-side room membership and room members:
//!
//! * `POST /api/rooms/{room}/join {"user"}` → 200 `{"ok","room","user",
//!   "changed","sessions"}`: stores the membership (at most
//!   `--max-server-rooms` per user; one more is 409 `limit_exceeded`), then
//!   every live session of the user, cluster-wide, joins the room and gets
//!   a `joined` frame. Sessions that connect later join it at connect.
//! * `POST /api/rooms/{room}/leave {"user"}`: removes the stored membership,
//!   then every live session of the user leaves the room (`left` frame).
//! * `GET /api/rooms/{room}` → `{"room","users","sessions","members":
//!   [{"user","sessions"}],"truncated"}` and `GET /api/rooms/{room}/count`
//!   → `{"room","users","sessions"}`: the room's members cluster-wide.
//!
//! A node answers once its sessions carried the change out (or after half
//! a second), so a message published after the answer reaches a session
//! that joined and misses one that left.
//!
//! The store is written *before* the live sessions are told: a session that
//! connects meanwhile is already in its node's table when it reads the
//! store, so it either reads the new state or gets the live change (or
//! both, which is harmless). Every node applies the live change to its own
//! sessions; the answering node asks the others (`?scope=local`, with the
//! caller's API key) and adds up their answers.

use axum::Json;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use bytes::Bytes;
use std::sync::Arc;
use std::time::Duration;
use wsring_cluster::report;
use wsring_cluster::{ClusterError, RoomAdd};
use wsring_http::{parse_body, rejection};
use wsring_protocol::api::{RoomChange, RoomCount, RoomMembers, check_room_path};
use wsring_protocol::{ErrorCode, RoomUserBody};

use super::{ask_peers, local_scope, tell_sessions};
use crate::error::ApiError;
use crate::node::Node;
use crate::sessions::Outbound;

/// Bound on one call to the server-side room store.
const STORE_TIMEOUT: Duration = Duration::from_secs(5);

/// The room named in the path, checked.
fn room_param(path: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    let Path(room) = path.map_err(|e| ApiError::bad_request(e.body_text()))?;
    check_room_path(&room)?;
    Ok(room)
}

/// Runs a store call within [`STORE_TIMEOUT`]; failures are 503.
async fn store<T>(
    call: impl std::future::Future<Output = Result<T, ClusterError>>,
) -> Result<T, ApiError> {
    match tokio::time::timeout(STORE_TIMEOUT, call).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(ApiError::unavailable(format!(
            "server-side room store: {e}"
        ))),
        Err(_) => Err(ApiError::unavailable(format!(
            "server-side room store: no answer within {STORE_TIMEOUT:?}"
        ))),
    }
}

/// The parsed body and its bytes (forwarded unchanged to the peers).
fn user_body(body: Result<Bytes, BytesRejection>) -> Result<(Bytes, RoomUserBody), ApiError> {
    let raw = body.map_err(rejection)?;
    let b: RoomUserBody = parse_body(Ok(raw.clone()))?;
    b.validate()?;
    Ok((raw, b))
}

/// What a room change does to the stored membership and to live sessions.
#[derive(Clone, Copy)]
enum Change {
    Join,
    Leave,
}

pub(super) async fn join(
    state: State<Arc<Node>>,
    path: Result<Path<String>, PathRejection>,
    q: RawQuery,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<RoomChange>, ApiError> {
    change(Change::Join, state, path, q, headers, body).await
}

pub(super) async fn leave(
    state: State<Arc<Node>>,
    path: Result<Path<String>, PathRejection>,
    q: RawQuery,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<RoomChange>, ApiError> {
    change(Change::Leave, state, path, q, headers, body).await
}

/// Stores the change (unless this is a peer's `?scope=local` call), tells
/// the local sessions, then asks the peers to tell theirs.
async fn change(
    what: Change,
    State(node): State<Arc<Node>>,
    path: Result<Path<String>, PathRejection>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<RoomChange>, ApiError> {
    let room = room_param(path)?;
    let (raw, b) = user_body(body)?;
    let local = local_scope(q.as_deref());
    let changed = match (local, what) {
        (true, _) => false,
        (false, Change::Join) => {
            let max = node.cfg.max_server_rooms;
            match store(node.server_rooms.add(&b.user, &room, max)).await? {
                RoomAdd::Added => true,
                RoomAdd::Present => false,
                RoomAdd::Full => {
                    return Err(ApiError::new(
                        StatusCode::CONFLICT,
                        ErrorCode::LimitExceeded,
                        format!("user {:?} already has {max} server-side rooms", b.user),
                    ));
                }
            }
        }
        (false, Change::Leave) => store(node.server_rooms.remove(&b.user, &room)).await?,
    };
    let name: Arc<str> = room.as_str().into();
    let (sessions, action) = match what {
        Change::Join => {
            let item = |done| Outbound::ServerJoin(Arc::clone(&name), done);
            (tell_sessions(&node, &b.user, item).await, "/join")
        }
        Change::Leave => {
            let item = |done| Outbound::ServerLeave(Arc::clone(&name), done);
            (tell_sessions(&node, &b.user, item).await, "/leave")
        }
    };
    let answers = if local {
        Vec::new()
    } else {
        let path = report::room_path(&room, action);
        ask_peers(&node, &headers, &path, "", Some(raw)).await
    };
    Ok(Json(report::room_change(
        &room,
        &b.user,
        changed,
        Some(sessions),
        answers,
    )))
}

/// The room's members: this node's alone with `?scope=local`, else
/// everyone's merged.
async fn gather(node: &Node, room: &str, q: Option<&str>, headers: &HeaderMap) -> RoomMembers {
    let own = report::local_room_members(room, node.table.room_counts(room));
    if local_scope(q) {
        return own;
    }
    let answers = ask_peers(node, headers, &report::room_path(room, ""), "", None).await;
    report::room_members(room, Some(own), answers)
}

pub(super) async fn members(
    State(node): State<Arc<Node>>,
    path: Result<Path<String>, PathRejection>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Result<Json<RoomMembers>, ApiError> {
    let room = room_param(path)?;
    Ok(Json(gather(&node, &room, q.as_deref(), &headers).await))
}

pub(super) async fn count(
    State(node): State<Arc<Node>>,
    path: Result<Path<String>, PathRejection>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Result<Json<RoomCount>, ApiError> {
    let room = room_param(path)?;
    Ok(Json(
        gather(&node, &room, q.as_deref(), &headers).await.into(),
    ))
}
