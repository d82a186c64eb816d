//! Read-only JSON reports of the cluster, computed from a membership [`View`]
//! and the heartbeat stats: the bodies of `GET /api/nodes`, `/api/route` and
//! `/api/ring`, and the merging half of `GET /api/presence`.
//!
//! They are pure functions, here beside the [`View`] they read, so nodes and
//! gateways (which never import each other) answer identically. Sending the
//! presence queries is HTTP work and stays with the HTTP layer: this crate
//! says *whom* to ask ([`presence_peers`]) and *how to combine* the answers
//! ([`presence`]), and carries no HTTP client.

use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::Duration;
use thiserror::Error;
use wsring_protocol::{IdError, Routing};

use crate::view::{MemberState, NodeStats, View};

/// `GET /api/nodes`: members, their state, live counters and ring shares.
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

/// Why a `user` query (`/api/route`, `/api/presence`) cannot be answered:
/// the caller's mistake (400) or, for [`QueryError::NoNodeUp`], the
/// cluster's state (503).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum QueryError {
    /// No `user` parameter.
    #[error("missing query parameter `user`")]
    MissingUser,
    /// The `user` parameter is not a valid user id.
    #[error(transparent)]
    InvalidUser(#[from] IdError),
    /// The ring is empty: nobody owns anyone.
    #[error("no node is up")]
    NoNodeUp,
}

/// Checks the `user` query parameter: present and a valid user id.
pub fn user_param(user: Option<String>) -> Result<String, QueryError> {
    let user = user.ok_or(QueryError::MissingUser)?;
    wsring_protocol::validate_user(&user)?;
    Ok(user)
}

/// `GET /api/route?user=…` → `{"user","node","epoch"}`: the ring owner.
pub fn route(view: &View, user: Option<String>) -> Result<Value, QueryError> {
    let user = user_param(user)?;
    let node = view.owner(&user).ok_or(QueryError::NoNodeUp)?;
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

/// How long a presence query waits for one member; a member slower than
/// this is listed as unreachable rather than failing the whole answer.
pub const PRESENCE_PEER_TIMEOUT: Duration = Duration::from_secs(1);

/// The members to ask for `user`'s local sessions, as `(node id, URL)`,
/// in member order, skipping `local` (the asking process answers for itself
/// without a round trip).
pub fn presence_peers(view: &View, user: &str, local: Option<&str>) -> Vec<(String, String)> {
    let encoded: String = form_urlencoded::byte_serialize(user.as_bytes()).collect();
    view.doc
        .members
        .iter()
        .filter(|(id, _)| Some(id.as_str()) != local)
        .map(|(id, m)| {
            let url = format!("{}/api/presence?user={encoded}&scope=local", m.api_base());
            (id.clone(), url)
        })
        .collect()
}

/// `GET /api/presence` → `{"user","sessions":[{"node","session"}]}`: the
/// asking process's own sessions (`local`: its id and session ids) first,
/// then each member's answer in order. Members whose answer is missing or
/// has no `sessions` list are named under `unreachable`.
pub fn presence(
    user: &str,
    local: Option<(&str, &[String])>,
    answers: Vec<(String, Option<Value>)>,
) -> Value {
    let mut sessions: Vec<Value> = Vec::new();
    if let Some((id, ids)) = local {
        sessions.extend(ids.iter().map(|s| json!({ "node": id, "session": s })));
    }
    let mut unreachable = Vec::new();
    for (id, body) in answers {
        match body.and_then(|b| b.get("sessions").and_then(Value::as_array).cloned()) {
            Some(list) => sessions.extend(list),
            None => unreachable.push(id),
        }
    }
    let mut out = json!({ "user": user, "sessions": sessions });
    if !unreachable.is_empty() {
        out["unreachable"] = json!(unreachable);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::view::{Member, MembershipDoc};

    fn view() -> View {
        let mut doc = MembershipDoc {
            epoch: 7,
            ..Default::default()
        };
        for (id, state) in [("a", MemberState::Up), ("b", MemberState::Draining)] {
            doc.members.insert(
                id.into(),
                Member {
                    url: format!("ws://{id}:1/ws"),
                    state,
                    incarnation: 1,
                },
            );
        }
        View::new(doc, 16)
    }

    #[test]
    fn nodes_reports_state_from_membership_and_heartbeats() {
        let mut stats = BTreeMap::new();
        stats.insert(
            "a".to_string(),
            NodeStats {
                connections: 3,
                ready: true,
                ..Default::default()
            },
        );
        let body = nodes(&view(), &stats, Routing::Broadcast);
        assert_eq!(body["epoch"], 7);
        assert_eq!(body["routing"], "broadcast");
        assert_eq!(body["nodes"][0]["id"], "a");
        assert_eq!(body["nodes"][0]["state"], "up");
        assert_eq!(body["nodes"][0]["connections"], 3);
        assert_eq!(body["nodes"][0]["share"], 1.0);
        assert_eq!(body["nodes"][1]["state"], "draining");
        assert_eq!(body["nodes"][1]["share"], 0.0);
        // Up but no heartbeat yet: suspect.
        let body = nodes(&view(), &BTreeMap::new(), Routing::Hash);
        assert_eq!(body["nodes"][0]["state"], "suspect");
    }

    #[test]
    fn route_answers_the_owner_or_says_why_not() {
        let body = route(&view(), Some("bob".into())).expect("owner");
        assert_eq!(body, json!({ "user": "bob", "node": "a", "epoch": 7 }));
        let missing = route(&view(), None).expect_err("no user");
        assert_eq!(missing, QueryError::MissingUser);
        assert_eq!(missing.to_string(), "missing query parameter `user`");
        let invalid = route(&view(), Some("a b".into())).expect_err("bad user");
        assert!(matches!(invalid, QueryError::InvalidUser(_)), "{invalid:?}");
        let empty = View::new(MembershipDoc::default(), 16);
        let none = route(&empty, Some("bob".into())).expect_err("empty ring");
        assert_eq!(none, QueryError::NoNodeUp);
        assert_eq!(none.to_string(), "no node is up");
    }

    #[test]
    fn ring_arcs_only_on_request() {
        let body = ring(&view(), false);
        assert_eq!(body["vnodes_per_node"], 16);
        assert!(body.get("arcs").is_none());
        let body = ring(&view(), true);
        assert!(!body["arcs"].as_array().expect("arcs").is_empty());
    }

    #[test]
    fn presence_asks_everyone_else_and_merges_in_order() {
        let peers = presence_peers(&view(), "bob@x y", Some("a"));
        assert_eq!(
            peers,
            vec![(
                "b".to_string(),
                "http://b:1/api/presence?user=bob%40x+y&scope=local".to_string()
            )]
        );
        assert_eq!(presence_peers(&view(), "bob", None).len(), 2);
        let local = ["s1".to_string()];
        let answers = vec![
            (
                "b".to_string(),
                Some(json!({ "sessions": [{ "node": "b", "session": "s2" }] })),
            ),
            ("c".to_string(), None),
            ("d".to_string(), Some(json!({ "oops": 1 }))),
        ];
        let body = presence("bob", Some(("a", &local)), answers);
        assert_eq!(
            body,
            json!({
                "user": "bob",
                "sessions": [
                    { "node": "a", "session": "s1" },
                    { "node": "b", "session": "s2" },
                ],
                "unreachable": ["c", "d"],
            })
        );
        // Nothing unreachable: no `unreachable` key at all.
        assert_eq!(
            presence("bob", None, Vec::new()),
            json!({ "user": "bob", "sessions": [] })
        );
    }
}
