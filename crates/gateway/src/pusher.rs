//! The Pusher Channels endpoints at the gateway, when a Pusher app is
//! configured:
//!
//! * `GET /app/{key}`: a Pusher client has no user at the upgrade, so it
//!   is placed by load (the least-loaded up node, as broadcast routing
//!   places clients, counting each pick at once so a burst spreads)
//!   whatever the routing mode, then tunnelled like any other connection. The node checks the key and the protocol version.
//! * `/apps/{app_id}/…`: the signed HTTP API, relayed unchanged (path,
//!   query and body, so the signature still holds) to an up node, which
//!   checks the signature and answers for the whole cluster.

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, Method, Request, Response, Uri};
use axum::response::IntoResponse;
use axum::routing::{any, get};
use std::sync::Arc;
use tracing::debug;
use wsring_http::ApiError;

use crate::Gateway;
use crate::api::forward::relay;
use crate::proxy::{Forwarded, forward, is_upgrade, retry_later};

/// The routes, or none without a Pusher app.
pub(crate) fn routes(enabled: bool) -> Router<Arc<Gateway>> {
    if !enabled {
        return Router::new();
    }
    Router::new()
        .route("/app/{key}", get(ws))
        .route("/apps/{*rest}", any(api))
        .layer(axum::extract::DefaultBodyLimit::max(
            wsring_auth::pusher::MAX_API_BODY_BYTES,
        ))
}

async fn ws(State(gw): State<Arc<Gateway>>, mut req: Request<Body>) -> Response<Body> {
    if !is_upgrade(req.headers()) {
        return ApiError::bad_request("expected a WebSocket upgrade request").into_response();
    }
    let client_upgrade = hyper::upgrade::on(&mut req);
    let (parts, _) = req.into_parts();
    let path = parts.uri.path().to_owned();
    let hold_until = tokio::time::Instant::now() + gw.cfg.reroute_wait;
    loop {
        let view = gw.membership.view();
        let Some(target) = gw.least_loaded(&view) else {
            if gw.wait_for_change(view.epoch(), hold_until).await {
                continue;
            }
            return retry_later(ApiError::unavailable("no node is up"));
        };
        let Some(member) = view.member(&target) else {
            return retry_later(ApiError::unavailable("no node is up"));
        };
        // Counted at once, like a located client: a burst of connects all
        // pick before any of their tunnels is open, and would otherwise
        // all land on the same node.
        gw.note_located(&target);
        match forward(&gw, &parts, &target, &member.url, Some(&path), view.epoch()).await {
            Ok(Forwarded::Upgraded(resp, node_upgrade)) => {
                gw.spawn_tunnel(target, client_upgrade, node_upgrade);
                return resp;
            }
            Ok(Forwarded::Misrouted(_, resp) | Forwarded::Refused(resp)) => {
                let transient = resp.status() == axum::http::StatusCode::SERVICE_UNAVAILABLE;
                if transient && gw.wait_for_change(view.epoch(), hold_until).await {
                    continue;
                }
                return resp;
            }
            Err(e) => {
                debug!(node = %target, error = %e, "node unreachable; waiting for the ring to change");
                if gw.wait_for_change(view.epoch(), hold_until).await {
                    continue;
                }
                return retry_later(ApiError::unavailable(format!(
                    "node {target} is unreachable: {e}"
                )));
            }
        }
    }
}

async fn api(
    State(gw): State<Arc<Gateway>>,
    method: Method,
    uri: Uri,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response<Body> {
    let path = match q {
        Some(q) => format!("{}?{q}", uri.path()),
        None => uri.path().to_owned(),
    };
    let body = (method == Method::POST).then_some(body);
    relay(&gw, &headers, method, &path, body, None).await
}
