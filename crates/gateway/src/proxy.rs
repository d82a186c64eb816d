//! `GET /ws`: pick the node, forward the upgrade, then tunnel raw bytes.
//!
//! The gateway is a layer-4-after-handshake proxy: it validates the connect
//! request (400 before any upgrade), forwards the client's upgrade request to
//! the chosen node over a fresh TCP connection, relays the node's answer, and
//! after a 101 copies bytes both ways without looking at WebSocket frames.
//! Compression, close codes and pings pass through untouched.
//!
//! Node choice: in hash mode the ring owner of `user`; in broadcast mode the
//! up node with the fewest connections (the larger of its heartbeat count and
//! this gateway's own open tunnels, so a burst of connects spreads before the
//! next heartbeat). A node that refuses with 421 (it knows a newer epoch) gets
//! one retry after this gateway catches up to that epoch.

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Request, Response, StatusCode, Uri, header};
use axum::response::IntoResponse;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;
use rand::Rng;
use rand::seq::IndexedRandom;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_rustls::rustls::pki_types::ServerName;
use tracing::{debug, warn};
use wsring_cluster::{MemberState, Suspicion, View};
use wsring_http::{Admission, ApiError};

use wsring_protocol::{EPOCH_HEADER, Routing};

use crate::Gateway;

/// Largest non-101 answer body relayed from a node.
const MAX_RELAYED_BODY: usize = 64 * 1024;

/// Request headers passed to the node (lower case).
const FORWARDED_HEADERS: &[&str] = &[
    "connection",
    "upgrade",
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-protocol",
    "sec-websocket-extensions",
    "origin",
    "user-agent",
    "cookie",
    "authorization",
    // The identity the connect proxy decided (set below; a client's own
    // is verified here first and by the node again).
    wsring_auth::IDENTITY_HEADER,
];

pub(crate) enum Forwarded {
    Upgraded(Response<Body>, hyper::upgrade::OnUpgrade),
    /// 421 from the node: it has seen a newer epoch than we routed by.
    Misrouted(u64, Response<Body>),
    Refused(Response<Body>),
}

pub(crate) async fn ws(State(gw): State<Arc<Gateway>>, mut req: Request<Body>) -> Response<Body> {
    // Who is connecting is checked before anything is routed: the origin,
    // then the token (or the application's connect proxy), whose user is
    // the one routed by. The node verifies again; a decision of the connect
    // proxy reaches it as a signed identity, so the application is asked
    // once.
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let query = req.uri().query().map(str::to_owned);
    let (params, identity) = match admit(&gw, query.as_deref(), req.headers(), peer).await {
        Ok(x) => x,
        Err(e) => {
            wsring_http::log_refused("gateway", peer, &e);
            return e.into_response();
        }
    };
    if !is_upgrade(req.headers()) {
        return ApiError::bad_request("expected a WebSocket upgrade request").into_response();
    }
    let client_upgrade = hyper::upgrade::on(&mut req);
    // Keep only what forwarding needs: the body type is not `Sync`, so a
    // borrowed request cannot be held across awaits.
    let (mut parts, _) = req.into_parts();
    if let Some(token) = identity {
        parts.headers.insert(wsring_auth::IDENTITY_HEADER, token);
    }
    // If the owner is unreachable or refuses (crashed, starting, draining),
    // hold the client's request until the ring changes instead of bouncing
    // it: when a node dies, its clients get one answer the moment membership
    // converges rather than a storm of retries against a dead owner.
    let hold_until = tokio::time::Instant::now() + gw.cfg.reroute_wait;
    for attempt in 0.. {
        let view = gw.membership.view();
        let Some(target) = gw.pick(&view, &params.user) else {
            if gw.wait_for_change(view.epoch(), hold_until).await {
                continue;
            }
            return retry_later(ApiError::unavailable("no node is up"));
        };
        let Some(member) = view.member(&target) else {
            return retry_later(ApiError::unavailable("no node is up"));
        };
        match forward(&gw, &parts, &target, &member.url, None, view.epoch()).await {
            Ok(Forwarded::Upgraded(resp, node_upgrade)) => {
                gw.spawn_tunnel(target, client_upgrade, node_upgrade);
                return resp;
            }
            Ok(Forwarded::Misrouted(epoch, resp)) => {
                if attempt >= 3 {
                    return resp;
                }
                debug!(node = %target, epoch, "node has a newer epoch; catching up and rerouting");
                gw.membership
                    .wait_for_epoch(epoch, gw.cfg.connect_timeout)
                    .await;
            }
            Ok(Forwarded::Refused(resp)) => {
                let transient = resp.status() == StatusCode::SERVICE_UNAVAILABLE;
                if transient && gw.wait_for_change(view.epoch(), hold_until).await {
                    continue;
                }
                return resp;
            }
            Err(e) => {
                debug!(node = %target, error = %e, "owner unreachable; waiting for the ring to change");
                if gw.wait_for_change(view.epoch(), hold_until).await {
                    continue;
                }
                warn!(node = %target, error = %e, "node unreachable");
                return retry_later(
                    ApiError::unavailable(format!("node {target} is unreachable: {e}"))
                        .with("node", target),
                );
            }
        }
    }
    retry_later(ApiError::unavailable("routing did not converge"))
}

/// Who a connect (or a locate) is: decided from its credentials, or by the
/// application's connect proxy, whose decision comes back signed for the
/// node as well.
pub(crate) async fn admit(
    gw: &Gateway,
    query: Option<&str>,
    headers: &HeaderMap,
    peer: Option<SocketAddr>,
) -> Result<(wsring_protocol::ConnectParams, Option<HeaderValue>), ApiError> {
    match wsring_http::admission(&gw.security, query, headers, peer)? {
        Admission::Admitted(p, _) => Ok((p, None)),
        Admission::Ask(ask) => ask_app(gw, query, &ask).await,
    }
}

/// Asks the application's connect proxy who a connection is; on success
/// also returns the signed identity to forward to the node. No answer
/// (timeout, error, breaker open) is 503: the client retries later.
async fn ask_app(
    gw: &Gateway,
    query: Option<&str>,
    ask: &wsring_http::ConnectRequest,
) -> Result<(wsring_protocol::ConnectParams, Option<HeaderValue>), ApiError> {
    let (Some(proxy), Some(settings)) = (&gw.connect_proxy, &gw.security.connect_proxy) else {
        return Err(ApiError::unavailable("no connect proxy"));
    };
    let reply = proxy.call(ask).await;
    let (params, identity) =
        wsring_http::proxy_outcome(query, reply.as_ref().map(|r| (r.status, &r.body)))?;
    let token = settings
        .assertions
        .mint(&identity)
        .ok()
        .and_then(|t| HeaderValue::from_str(&t).ok())
        .ok_or_else(|| ApiError::unavailable("could not sign the connect identity"))?;
    Ok((params, Some(token)))
}

/// An HTTP/1.1 client connection over `io`, driven in the background until
/// the upgraded tunnel (or a refused request) is done.
async fn handshake<I>(
    io: I,
) -> Result<hyper::client::conn::http1::SendRequest<Empty<Bytes>>, String>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = conn.with_upgrades().await;
    });
    Ok(sender)
}

/// A 503 with a jittered `retry_after_ms` hint, so refused clients do not
/// come back in lockstep.
pub(crate) fn retry_later(e: ApiError) -> Response<Body> {
    let ms = rand::rng().random_range(250..=1000u64);
    e.with("retry_after_ms", ms).into_response()
}

impl Gateway {
    /// Waits until the view moves past `epoch` or `until`; true if it moved.
    pub(crate) async fn wait_for_change(&self, epoch: u64, until: tokio::time::Instant) -> bool {
        let left = until.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            return false;
        }
        self.membership
            .wait_for_epoch(epoch + 1, left)
            .await
            .epoch()
            > epoch
    }
}

pub(crate) fn is_upgrade(h: &HeaderMap) -> bool {
    let has = |name: header::HeaderName, token: &str| {
        h.get_all(name).iter().any(|v| {
            v.to_str()
                .map(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
                .unwrap_or(false)
        })
    };
    has(header::CONNECTION, "upgrade") && has(header::UPGRADE, "websocket")
}

impl Gateway {
    /// The node a new session of `user` should go to.
    pub(crate) fn pick(&self, view: &View, user: &str) -> Option<String> {
        match self.cfg.routing {
            Routing::Hash => view.owner(user).map(str::to_owned),
            Routing::Broadcast => self.least_loaded(view),
        }
    }

    /// The up node with the fewest connections (ties broken at random),
    /// as broadcast routing places clients.
    pub(crate) fn least_loaded(&self, view: &View) -> Option<String> {
        let stats = self.membership.stats();
        let tunnels = self.tunnel_counts();
        let located = self.recent_locates();
        let load = |id: &str| {
            let hb = stats.get(id).map_or(0, |s| s.connections);
            hb.max(tunnels.get(id).copied().unwrap_or(0)) + located.get(id).copied().unwrap_or(0)
        };
        let up: Vec<&String> = view
            .doc
            .members
            .iter()
            .filter(|(_, m)| m.state == MemberState::Up)
            .map(|(id, _)| id)
            .collect();
        let least = up.iter().map(|id| load(id)).min()?;
        let best: Vec<&&String> = up.iter().filter(|id| load(id) == least).collect();
        best.choose(&mut rand::rng()).map(|id| id.to_string())
    }
}

/// Forwards the upgrade `req` to the node `node` at `node_url`, at that
/// URL's path or at `path`.
pub(crate) async fn forward(
    gw: &Arc<Gateway>,
    req: &axum::http::request::Parts,
    node: &str,
    node_url: &str,
    path: Option<&str>,
    epoch: u64,
) -> Result<Forwarded, String> {
    let uri: Uri = node_url
        .parse()
        .map_err(|e| format!("bad node URL {node_url:?}: {e}"))?;
    let authority = uri
        .authority()
        .ok_or_else(|| format!("node URL {node_url:?} has no host"))?
        .clone();
    let path = path.unwrap_or(uri.path());
    let path_and_query = match req.uri.query() {
        Some(q) => format!("{path}?{q}"),
        None => path.to_owned(),
    };
    let limit = gw.cfg.connect_timeout;
    let tcp = tokio::time::timeout(limit, TcpStream::connect(authority.as_str()))
        .await
        .map_err(|_| "connect timed out".to_string())?
        .map_err(|e| {
            // Nothing listens where the node said it would: it has most
            // likely died. Have it probed and, if so, removed at once.
            if e.kind() == std::io::ErrorKind::ConnectionRefused {
                gw.membership.suspect(node, Suspicion::Strong);
            }
            e.to_string()
        })?;
    let _ = tcp.set_nodelay(true);
    let mut sender = if uri.scheme_str() == Some("wss") {
        // A TLS node: verified against the system roots and --tls-ca, by
        // the host name (or IP address) it advertises.
        let host = uri.host().unwrap_or_default().trim_matches(['[', ']']);
        let name = ServerName::try_from(host.to_owned())
            .map_err(|e| format!("node URL {node_url:?}: {e}"))?;
        let stream = tokio::time::timeout(limit, gw.tls.connect(name, tcp))
            .await
            .map_err(|_| "TLS handshake timed out".to_string())?
            .map_err(|e| format!("TLS: {e}"))?;
        handshake(TokioIo::new(stream)).await?
    } else {
        handshake(TokioIo::new(tcp)).await?
    };
    let mut out = Request::builder()
        .method(req.method.clone())
        .uri(path_and_query)
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    // Forward only what the handshake and the application need; hop-by-hop
    // and framing headers stay here.
    for (name, value) in &req.headers {
        if FORWARDED_HEADERS.contains(&name.as_str()) {
            out.headers_mut().append(name.clone(), value.clone());
        }
    }
    let headers = out.headers_mut();
    if let Some(ConnectInfo(peer)) = req.extensions.get::<ConnectInfo<SocketAddr>>() {
        let xff = match req
            .headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
        {
            Some(prior) => format!("{prior}, {}", peer.ip()),
            None => peer.ip().to_string(),
        };
        if let Ok(v) = HeaderValue::from_str(&xff) {
            headers.insert("x-forwarded-for", v);
        }
    }
    if let Ok(host) = HeaderValue::from_str(authority.as_str()) {
        headers.insert(header::HOST, host);
    }
    headers.insert(EPOCH_HEADER, HeaderValue::from(epoch));
    let mut resp = tokio::time::timeout(limit, sender.send_request(out))
        .await
        .map_err(|_| "no upgrade answer in time".to_string())?
        .map_err(|e| e.to_string())?;
    let status = resp.status();
    if status == StatusCode::SWITCHING_PROTOCOLS {
        let node_upgrade = hyper::upgrade::on(&mut resp);
        let mut client = Response::new(Body::empty());
        *client.status_mut() = status;
        *client.headers_mut() = resp.headers().clone();
        return Ok(Forwarded::Upgraded(client, node_upgrade));
    }
    let (parts, body) = resp.into_parts();
    let bytes = Limited::new(body, MAX_RELAYED_BODY)
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let relayed = Response::from_parts(parts, Body::from(bytes.clone()));
    if status == StatusCode::MISDIRECTED_REQUEST {
        let epoch = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| v["error"]["epoch"].as_u64())
            .unwrap_or(epoch + 1);
        return Ok(Forwarded::Misrouted(epoch, relayed));
    }
    Ok(Forwarded::Refused(relayed))
}

/// How long an idle-looking tunnel may take to finish its upgrade.
pub(crate) const UPGRADE_TIMEOUT: Duration = Duration::from_secs(10);
