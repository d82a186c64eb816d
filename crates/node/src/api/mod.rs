//! The HTTP API, one file per route (or route group). The read-only bodies
//! come from `wsring_cluster::report` and request parsing from
//! `wsring-http`, the same code the gateway answers with, so both give
//! identical answers.
//!
//! Writes (`send`, `publish`, `broadcast`, `disconnect`, room `join` and
//! `leave`) and the reads that name users (`presence`, room members,
//! `history`) need the API key when the API is protected, and JSON bodies
//! need their content type (`wsring_http::guard`); the cluster views,
//! health and metrics stay open and carry no secrets.
//!
//! The cluster-wide calls (`presence`, `disconnect`, room `join`/`leave`,
//! room members) are answered by asking every other member for its local
//! share (`?scope=local`) with the caller's `Authorization` header, so a
//! member refuses exactly what the answering node would refuse.

mod broadcast;
mod disconnect;
mod health;
mod history;
mod metrics;
mod nodes;
mod presence;
mod publish;
mod ring;
mod rooms;
mod route;
mod send;

use axum::Router;
use axum::http::{HeaderMap, header};
use axum::middleware::{from_fn, from_fn_with_state};
use axum::routing::{get, post};
use bytes::Bytes;
use serde_json::Value;
use std::sync::Arc;
use wsring_auth::Security;

use wsring_cluster::report::{self, PRESENCE_PEER_TIMEOUT, QueryError};
use wsring_http::{peers, query_param};

use crate::error::ApiError;
use crate::node::Node;

pub use wsring_http::prometheus_handle;

/// The node's API routes.
pub(crate) fn routes(security: Arc<Security>) -> Router<Arc<Node>> {
    let writes = Router::new()
        .route("/api/send", post(send::handle))
        .route("/api/publish", post(publish::handle))
        .route("/api/broadcast", post(broadcast::handle))
        .route("/api/disconnect", post(disconnect::handle))
        .route("/api/rooms/{room}/join", post(rooms::join))
        .route("/api/rooms/{room}/leave", post(rooms::leave))
        .route_layer(from_fn(wsring_http::require_json));
    let protected = Router::new()
        .merge(writes)
        .route("/api/presence", get(presence::handle))
        .route("/api/rooms/{room}", get(rooms::members))
        .route("/api/rooms/{room}/count", get(rooms::count))
        .route("/api/history", get(history::handle))
        .route_layer(from_fn_with_state(security, wsring_http::require_key));
    Router::new()
        .merge(protected)
        .route("/api/nodes", get(nodes::handle))
        .route("/api/route", get(route::handle))
        .route("/api/ring", get(ring::handle))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(metrics::handle))
}

/// How long a call that changes sessions (disconnect, a server-side join
/// or leave) waits for this node's sessions to carry it out before
/// answering: under the 1 s a peer waits for the answer.
const SESSION_WAIT: std::time::Duration = std::time::Duration::from_millis(500);

/// Queues `item(done)` for every local session of `user` and waits (at most
/// [`SESSION_WAIT`]) until they carried it out; how many there were.
async fn tell_sessions(
    node: &Node,
    user: &str,
    item: impl Fn(crate::sessions::Completion) -> crate::sessions::Outbound,
) -> u64 {
    let sessions = node.table.user_sessions(user);
    let (done, waiter) = crate::sessions::completion();
    for h in &sessions {
        h.offer(item(done.clone()));
    }
    drop(done);
    if !waiter.wait(SESSION_WAIT).await {
        tracing::debug!(node = %node.id(), user, "sessions still busy with an API call");
    }
    sessions.len() as u64
}

/// Whether the call asks for this node's own share only (`?scope=local`,
/// what a member asks its peers).
fn local_scope(q: Option<&str>) -> bool {
    query_param(q, "scope").as_deref() == Some("local")
}

/// Asks every other member for its local share of a call (`path`, with
/// `query` and, for a POST, `body`), passing the caller's API key on.
/// Answers come back in member order; a member that does not answer within
/// [`PRESENCE_PEER_TIMEOUT`] answers `None`.
async fn ask_peers(
    node: &Node,
    headers: &HeaderMap,
    path: &str,
    query: &str,
    body: Option<Bytes>,
) -> Vec<(String, Option<Value>)> {
    let targets = report::peers(&node.membership.view(), Some(node.id()), path, query);
    let auth = wsring_http::header_str(headers, header::AUTHORIZATION);
    match body {
        Some(b) => peers::post_json_all(&node.http, targets, b, PRESENCE_PEER_TIMEOUT, auth).await,
        None => peers::get_json_all(&node.http, targets, PRESENCE_PEER_TIMEOUT, auth).await,
    }
}

/// The identity of the API key that made the call; `None` when the API is
/// open.
fn api_key_id(node: &Node, headers: &axum::http::HeaderMap) -> Option<String> {
    let auth = wsring_http::header_str(headers, axum::http::header::AUTHORIZATION);
    match node.security.api_call(auth) {
        Ok(Some(key)) => Some(key.0),
        // The guard already refused a call without a valid key when one is
        // needed: what is left is the open API.
        _ => None,
    }
}

/// The idempotency key of an API write: the id, scoped by the API key that
/// made the call (`-` when the API is open), so one caller cannot claim, and
/// poison, another's ids.
fn dedup_key(node: &Node, headers: &axum::http::HeaderMap, id: &str) -> String {
    let scope = api_key_id(node, headers).unwrap_or_else(|| "-".to_owned());
    format!("api/{scope}/{id}")
}

/// Who an API write's stored message counts for in the per-sender share of
/// the durable store: `api/<key identity>` (`/` cannot occur in a user id,
/// so a key never shares a user's share); nobody when the API is open.
fn api_owner(node: &Node, headers: &axum::http::HeaderMap) -> Option<String> {
    api_key_id(node, headers).map(|id| format!("api/{id}"))
}

/// The answer for a `user` query that cannot be served: 400 for the
/// caller's mistakes, 503 when no node is up.
fn query_error(e: QueryError) -> ApiError {
    match e {
        QueryError::NoNodeUp => ApiError::unavailable(e.to_string()),
        QueryError::MissingUser | QueryError::InvalidUser(_) => {
            ApiError::bad_request(e.to_string())
        }
    }
}
