//! The HTTP API, one file per route. Nodes serve all of it; the gateway
//! reuses the read-only views ([`views`]), body parsing ([`body`]) and
//! presence gathering ([`presence`]) so both answer identically.

pub mod body;
mod broadcast;
mod health;
mod metrics;
mod nodes;
pub mod presence;
mod publish;
mod ring;
mod route;
mod send;
pub mod views;

use axum::Router;
use axum::routing::{get, post};
use std::sync::Arc;

use crate::node::Node;

pub use metrics::prometheus_handle;

/// The node's API routes.
pub(crate) fn routes() -> Router<Arc<Node>> {
    Router::new()
        .route("/api/send", post(send::handle))
        .route("/api/publish", post(publish::handle))
        .route("/api/broadcast", post(broadcast::handle))
        .route("/api/nodes", get(nodes::handle))
        .route("/api/route", get(route::handle))
        .route("/api/ring", get(ring::handle))
        .route("/api/presence", get(presence::handle))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(metrics::handle))
}

/// A named query parameter from a raw query string.
pub fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}
