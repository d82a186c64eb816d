//! `GET /ws?token=…` (or `?user=…` without authentication): validates the
//! connect request *before* the upgrade (a page from a foreign origin gets
//! 403, a missing or bad token 401, bad input 400, a misrouted user 421, all
//! with a JSON body), then hands the socket to a session task. The node
//! verifies the token itself even behind a gateway: nodes can be reached
//! directly.
//!
//! In hash mode a node accepts only users it owns. The gateway sends the
//! epoch it routed by in `x-wsring-epoch` (a client that located its node
//! through a gateway, `GET /ws/locate`, sends it as `ring_epoch`); if this
//! node has not seen that epoch yet it waits briefly for it, so a gateway
//! that learned of a change first does not bounce clients.
//!
//! In echo mode ([`crate::echo`]) every path is [`echo_upgrade`] instead:
//! no checks beyond the handshake. Both answer the handshake through
//! [`crate::upgrade`].

use axum::Extension;
use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use wsring_http::Admission;
use wsring_protocol::{EPOCH_HEADER, ErrorCode, RING_EPOCH_PARAM};

use crate::config::Routing;
use crate::error::ApiError;
use crate::node::Node;
use crate::session::{self, Resume};
use crate::upgrade::{NotUpgrade, Upgrade};

pub(crate) async fn upgrade(
    State(node): State<Arc<Node>>,
    RawQuery(query): RawQuery,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    ws: Result<Upgrade, NotUpgrade>,
) -> Response {
    let peer = peer.map(|Extension(ConnectInfo(p))| p);
    // A client that located its node (`ring_epoch` in the query) and needs
    // nothing signed to connect is told the new owner's URL when it moves,
    // sparing it a locate. One the connect proxy admitted (directly or
    // through a signed identity) locates again, so the application decides.
    let mut follows = node.cfg.routing == Routing::Hash
        && wsring_http::query_param(query.as_deref(), RING_EPOCH_PARAM).is_some()
        && wsring_http::query_param(query.as_deref(), wsring_auth::IDENTITY_PARAM).is_none()
        && !headers.contains_key(wsring_auth::IDENTITY_HEADER);
    let admitted = match wsring_http::admission(&node.security, query.as_deref(), &headers, peer) {
        Ok(Admission::Admitted(p, i)) => Ok((p, i)),
        Ok(Admission::Ask(ask)) => {
            follows = false;
            match &node.connect_proxy {
                Some(proxy) => ask_app(proxy, query.as_deref(), &ask).await,
                None => Err(ApiError::unavailable("no connect proxy")),
            }
        }
        Err(e) => Err(e),
    };
    let (params, identity) = match admitted {
        Ok(x) => x,
        Err(e) => {
            wsring_http::log_refused("node", peer, &e);
            return e.into_response();
        }
    };
    let ws = match ws {
        Ok(ws) => ws,
        Err(not_upgrade) => return not_upgrade.into_response(),
    };
    if node.leaving.load(Ordering::Relaxed) || !node.joined.load(Ordering::Relaxed) {
        return ApiError::unavailable("node is not accepting sessions (starting or draining)")
            .into_response();
    }
    if node.cfg.routing == Routing::Hash {
        let wanted = headers
            .get(EPOCH_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .or_else(|| wsring_http::query_param(query.as_deref(), RING_EPOCH_PARAM))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        let mut view = node.membership.view();
        if wanted > view.epoch() {
            view = node
                .membership
                .wait_for_epoch(wanted, node.cfg.epoch_wait)
                .await;
        }
        match view.owner(&params.user) {
            Some(owner) if owner == node.id() => {}
            Some(owner) => {
                let url = view
                    .member(owner)
                    .map(|m| m.url.clone())
                    .unwrap_or_default();
                return ApiError::new(
                    StatusCode::MISDIRECTED_REQUEST,
                    ErrorCode::WrongNode,
                    format!(
                        "user {:?} is owned by node {owner} at epoch {}; connect through the gateway",
                        params.user,
                        view.epoch()
                    ),
                )
                .with("node", owner)
                .with("url", url)
                .with("epoch", view.epoch())
                .into_response();
            }
            None => return ApiError::unavailable("no node is up").into_response(),
        }
    }
    let resume = params.resume.map(|(seq, epoch)| Resume { seq, epoch });
    let max = node.cfg.max_message_bytes;
    ws.deflate(&node.cfg.deflate_settings())
        .on_upgrade(max, move |socket| {
            session::run(node, socket, identity, resume, follows)
        })
}

/// Asks the application's connect proxy who a connection is. No answer
/// (timeout, error, breaker open) is 503: the client retries later.
pub(crate) async fn ask_app(
    proxy: &wsring_hooks::Proxy,
    query: Option<&str>,
    ask: &wsring_http::ConnectRequest,
) -> Result<(wsring_protocol::ConnectParams, wsring_auth::Identity), ApiError> {
    let reply = proxy.call(ask).await;
    wsring_http::proxy_outcome(query, reply.as_ref().map(|r| (r.status, &r.body)))
}

/// Echo mode's upgrade, at any path (see [`crate::echo`]): no credentials,
/// each connection a user of its own, then the same upgrade and session
/// loop as [`upgrade`].
pub(crate) async fn echo_upgrade(
    State(node): State<Arc<Node>>,
    ws: Result<Upgrade, NotUpgrade>,
) -> Response {
    let ws = match ws {
        Ok(ws) => ws,
        Err(not_upgrade) => return not_upgrade.into_response(),
    };
    let identity = wsring_auth::Identity::unrestricted(node.new_session_id().to_string());
    let max = node.cfg.max_message_bytes;
    ws.deflate(&node.cfg.deflate_settings())
        .on_upgrade(max, move |socket| {
            session::run(node, socket, identity, None, false)
        })
}
