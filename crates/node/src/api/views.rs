//! Read-only cluster views, computed from a membership [`View`] and the
//! heartbeat stats. Pure functions, shared by nodes and gateways, so any
//! process answers `/api/nodes`, `/api/route` and `/api/ring` identically.

use serde_json::{Value, json};
use std::collections::BTreeMap;
use wsring_cluster::{MemberState, NodeStats, View};

use crate::config::Routing;
use crate::error::ApiError;

/// `GET /api/nodes`.
pub fn nodes(view: &View, stats: &BTreeMap<String, NodeStats>, routing: Routing) -> Value {
    let shares: BTreeMap<&str, f64> = view.ring.shares().into_iter().collect();
    let nodes: Vec<Value> = view
        .doc
        .members
        .iter()
        .map(|(id, m)| {
            let s = stats.get(id);
            let state = match (m.state, s) {
                (MemberState::Draining, _) => "draining",
                // Listed but no live heartbeat seen yet, or it says not ready.
                (MemberState::Up, None) => "suspect",
                (MemberState::Up, Some(s)) if !s.ready => "suspect",
                (MemberState::Up, Some(_)) => "up",
            };
            json!({
                "id": id,
                "url": m.url,
                "state": state,
                "connections": s.map_or(0, |s| s.connections),
                "msgs_in": s.map_or(0, |s| s.msgs_in),
                "msgs_out": s.map_or(0, |s| s.msgs_out),
                "share": shares.get(id.as_str()).copied().unwrap_or(0.0),
                "moved": s.map(|s| s.moved.clone()).unwrap_or_default(),
            })
        })
        .collect();
    json!({ "epoch": view.epoch(), "routing": routing.as_str(), "nodes": nodes })
}

/// `GET /api/route?user=…`.
pub fn route(view: &View, user: Option<String>) -> Result<Value, ApiError> {
    let user = user.ok_or_else(|| ApiError::bad_request("missing query parameter `user`"))?;
    wsring_protocol::validate_user(&user).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let node = view
        .owner(&user)
        .ok_or_else(|| ApiError::unavailable("no node is up"))?;
    Ok(json!({ "user": user, "node": node, "epoch": view.epoch() }))
}

/// `GET /api/ring[?arcs=1]`: shares, and optionally the arcs for drawing
/// (as fractions of the circle, adjacent arcs of one owner merged).
pub fn ring(view: &View, with_arcs: bool) -> Value {
    let nodes: Vec<Value> = view
        .ring
        .shares()
        .into_iter()
        .map(|(id, share)| json!({ "id": id, "share": share }))
        .collect();
    let mut body = json!({
        "epoch": view.epoch(),
        "vnodes_per_node": view.ring.vnodes_per_node(),
        "nodes": nodes,
    });
    if with_arcs {
        let scale = 2f64.powi(64);
        let arcs: Vec<Value> = view
            .ring
            .arcs()
            .into_iter()
            .map(|a| {
                let r = |x: u64| (x as f64 / scale * 1e6).round() / 1e6;
                json!({ "node": a.node, "start": r(a.start), "end": r(a.end) })
            })
            .collect();
        body["arcs"] = Value::Array(arcs);
    }
    body
}
