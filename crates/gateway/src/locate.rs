//! `GET /ws/locate`: where a client should connect, so that it can skip the
//! tunnel.
//!
//! Tunnelling every frame through the gateway doubles the socket work of
//! each message (client → gateway → node and back). A client that can reach
//! the nodes asks here instead, with exactly the credentials and query it
//! would send to `/ws`, and then connects to the node it is given. The
//! request is admitted exactly like an upgrade (origin, token or the
//! application's connect proxy), so the answer names the node the gateway
//! would have tunnelled to, and nothing is learned that a connect would not
//! reveal.
//!
//! The answer's `url` is ready to connect to: the node's WebSocket URL with
//! `ring_epoch` (the epoch routed by; the node waits for it, as for the
//! gateway's `x-wsring-epoch` header) and, when the connect proxy decided,
//! `identity` (the signed decision, so the node does not ask the
//! application again). The client appends its own connect query.
//!
//! Like `/ws`, the request waits up to the reroute wait while no node is
//! up, then answers 503 with `retry_after_ms`.

use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::json;
use std::net::SocketAddr;
use std::sync::Arc;
use wsring_http::ApiError;
use wsring_protocol::{Routing, located_url};

use crate::Gateway;
use crate::proxy::{admit, retry_later};

pub(crate) async fn locate(
    State(gw): State<Arc<Gateway>>,
    RawQuery(query): RawQuery,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
) -> Response {
    let peer = peer.map(|Extension(ConnectInfo(p))| p);
    let (params, identity) = match admit(&gw, query.as_deref(), &headers, peer).await {
        Ok(x) => x,
        Err(e) => {
            wsring_http::log_refused("gateway", peer, &e);
            return e.into_response();
        }
    };
    let hold_until = tokio::time::Instant::now() + gw.cfg.reroute_wait;
    loop {
        let view = gw.membership.view();
        let picked = gw
            .pick(&view, &params.user)
            .and_then(|id| view.member(&id).map(|m| (id, m.url.clone())));
        let Some((node, node_url)) = picked else {
            if gw.wait_for_change(view.epoch(), hold_until).await {
                continue;
            }
            return retry_later(ApiError::unavailable("no node is up"));
        };
        if gw.cfg.routing == Routing::Broadcast {
            // Its node's load shows this client only after a heartbeat.
            gw.note_located(&node);
        }
        let url = connect_url(&node_url, view.epoch(), identity.as_ref());
        let body = json!({
            "user": params.user,
            "node": node,
            "epoch": view.epoch(),
            "url": url,
        });
        let mut resp = Json(body).into_response();
        let h = resp.headers_mut();
        // The answer is for this client at this epoch only.
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        // A page on an allowed origin (the CORS layer adds the origin) may
        // locate with its cookies, as its WebSocket connect would send them.
        h.insert(
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
        return resp;
    }
}

/// `node_url` with the epoch routed by and, if the connect proxy decided,
/// the signed identity.
fn connect_url(node_url: &str, epoch: u64, identity: Option<&HeaderValue>) -> String {
    match identity.and_then(|t| t.to_str().ok()) {
        Some(token) => located_url(node_url, epoch, &[(wsring_auth::IDENTITY_PARAM, token)]),
        None => located_url(node_url, epoch, &[]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_connect_url_carries_the_epoch_and_the_identity() {
        assert_eq!(
            connect_url("ws://10.0.0.5:7001/ws", 7, None),
            "ws://10.0.0.5:7001/ws?ring_epoch=7"
        );
        let id = HeaderValue::from_static("a.b.c");
        assert_eq!(
            connect_url("ws://h:1/ws?x=1", 3, Some(&id)),
            "ws://h:1/ws?x=1&ring_epoch=3&identity=a.b.c"
        );
    }
}
