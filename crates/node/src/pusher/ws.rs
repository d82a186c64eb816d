//! `GET /app/{key}?protocol=7&client=…&version=…`: the Pusher WebSocket
//! endpoint. The origin check, readiness and the handshake are the native
//! endpoint's; the app key and the protocol version are answered the way
//! Pusher clients expect, after the upgrade, with `pusher:error` and the
//! matching close code (4001 unknown key, 4007 protocol below 7), so a
//! client reports them rather than retrying blindly.

use axum::Extension;
use axum::extract::{ConnectInfo, Path, RawQuery, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use futures::SinkExt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tungstenite::Message;
use tungstenite::protocol::CloseFrame;

use super::{PusherConn, code, frames};
use crate::error::ApiError;
use crate::node::Node;
use crate::upgrade::{NotUpgrade, Upgrade};

/// The oldest protocol version served.
const MIN_PROTOCOL: u32 = 7;

pub(crate) async fn upgrade(
    State(node): State<Arc<Node>>,
    Path(key): Path<String>,
    RawQuery(query): RawQuery,
    _peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    ws: Result<Upgrade, NotUpgrade>,
) -> Response {
    let Some(app) = node.security.pusher.clone() else {
        return wsring_http::not_found().await.into_response();
    };
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    if !node.security.origins.permits(origin) {
        return ApiError::new(
            axum::http::StatusCode::FORBIDDEN,
            wsring_protocol::ErrorCode::Forbidden,
            "this page's Origin is not in the server's allowed origins",
        )
        .into_response();
    }
    let ws = match ws {
        Ok(ws) => ws,
        Err(not_upgrade) => return not_upgrade.into_response(),
    };
    if node.leaving.load(Ordering::Relaxed) || !node.joined.load(Ordering::Relaxed) {
        return ApiError::unavailable("node is not accepting sessions (starting or draining)")
            .into_response();
    }
    let protocol = wsring_http::query_param(query.as_deref(), "protocol")
        .and_then(|p| p.parse::<u32>().ok())
        .unwrap_or(0);
    let max = node.cfg.max_message_bytes;
    let refusal = if key != app.key {
        Some((code::UNKNOWN_APP, "App key not in this cluster"))
    } else if protocol < MIN_PROTOCOL {
        Some((
            code::UNSUPPORTED_PROTOCOL,
            "Unsupported protocol version: use protocol 7",
        ))
    } else {
        None
    };
    if let Some((code, message)) = refusal {
        return ws.on_upgrade(max, move |mut socket| async move {
            let _ = socket
                .send(Message::text(frames::error(Some(code), message)))
                .await;
            let _ = socket
                .send(Message::Close(Some(CloseFrame {
                    code: code.into(),
                    reason: message.into(),
                })))
                .await;
        });
    }
    let socket_id = node.new_socket_id();
    let conn = PusherConn::new(socket_id, app);
    // The same permessage-deflate negotiation as the native endpoint.
    ws.deflate(&node.cfg.deflate_settings())
        .on_upgrade(max, move |socket| {
            crate::session::run_pusher(node, socket, conn)
        })
}
