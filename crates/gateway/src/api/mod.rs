//! The gateway's HTTP API: the same contract as a node's, answered
//! cluster-wide. Reads come from the gateway's own membership view; writes
//! are forwarded to a node ([`forward`]); node control goes to the dev
//! [`crate::Launcher`] ([`control`]).

mod control;
mod forward;
mod read;

use axum::Router;
use axum::routing::{delete, get, post};
use serde_json::{Value, json};
use std::sync::Arc;

use crate::Gateway;

pub(crate) fn routes() -> Router<Arc<Gateway>> {
    Router::new()
        .route("/api/send", post(forward::send))
        .route("/api/publish", post(forward::publish))
        .route("/api/broadcast", post(forward::broadcast))
        .route("/api/nodes", get(read::nodes).post(control::add))
        .route("/api/nodes/{id}", delete(control::remove))
        .route("/api/route", get(read::route))
        .route("/api/ring", get(read::ring))
        .route("/api/presence", get(read::presence))
        .route("/api/info", get(read::info))
        .route("/api/events", get(crate::events::sse))
        .route("/healthz", get(read::healthz))
        .route("/readyz", get(read::readyz))
        .route("/metrics", get(read::metrics))
}

/// `GET /api/info` body: what this gateway is, for the dashboard.
pub(crate) fn info_body(gw: &Gateway) -> Value {
    json!({
        "mode": gw.cfg.mode,
        "routing": gw.cfg.routing.as_str(),
        "durable": gw.cfg.durable,
        "launcher": gw.launcher.is_some(),
        "version": env!("CARGO_PKG_VERSION"),
    })
}
