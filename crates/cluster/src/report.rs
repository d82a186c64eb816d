//! Read-only JSON reports of the cluster, computed from a membership [`View`]
//! and the heartbeat stats: the bodies of `GET /api/nodes`, `/api/route` and
//! `/api/ring`, and the merging half of the cluster-wide calls
//! (`GET /api/presence`, `POST /api/disconnect`, `POST
//! /api/rooms/{room}/join|leave`, `GET /api/rooms/{room}`).
//!
//! They are pure functions, here beside the [`View`] they read, so nodes and
//! gateways (which never import each other) answer identically. Sending the
//! queries is HTTP work and stays with the HTTP layer: this crate says
//! *whom* to ask ([`peers`]) and *how to combine* the answers ([`presence`],
//! [`disconnected`], [`room_change`], [`room_members`]), and carries no HTTP
//! client.

use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::Duration;
use thiserror::Error;
use wsring_protocol::api::{Disconnected, ROOM_MEMBERS_MAX, RoomChange, RoomMember, RoomMembers};
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
                // Listed, but joined after the last heartbeat read: a node
                // that just joined is up (its join is its first heartbeat;
                // one whose heartbeat expired is removed by that read).
                (MemberState::Up, None) => "up",
                // Its heartbeat says a backend is unreachable.
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

/// The query parameter that asks a node for its own share of a
/// cluster-wide call (`?scope=local`): it answers for its local sessions
/// only and asks nobody else.
pub const LOCAL_SCOPE: &str = "scope=local";

/// The members to ask for their local share of a cluster-wide call, as
/// `(node id, URL)`, in member order, skipping `local` (the asking process
/// answers for itself without a round trip). `path` is the call's path;
/// `query` its other parameters (already encoded), to which
/// [`LOCAL_SCOPE`] is added.
pub fn peers(view: &View, local: Option<&str>, path: &str, query: &str) -> Vec<(String, String)> {
    let sep = if query.is_empty() { "" } else { "&" };
    view.doc
        .members
        .iter()
        .filter(|(id, _)| Some(id.as_str()) != local)
        .map(|(id, m)| {
            let url = format!("{}{path}?{query}{sep}{LOCAL_SCOPE}", m.api_base());
            (id.clone(), url)
        })
        .collect()
}

/// The query `user=<user>`, encoded.
pub fn user_query(user: &str) -> String {
    let encoded: String = form_urlencoded::byte_serialize(user.as_bytes()).collect();
    format!("user={encoded}")
}

/// The members to ask for `user`'s local sessions ([`peers`] of
/// `/api/presence`).
pub fn presence_peers(view: &View, user: &str, local: Option<&str>) -> Vec<(String, String)> {
    peers(view, local, "/api/presence", &user_query(user))
}

/// The `/api/rooms/{room}…` path of `room` (room names need no escaping:
/// their alphabet is URL-safe).
pub fn room_path(room: &str, rest: &str) -> String {
    format!("/api/rooms/{room}{rest}")
}

/// Parses each member's answer as `T`; a missing or malformed one makes the
/// member unreachable.
fn parsed<T: serde::de::DeserializeOwned>(
    answers: Vec<(String, Option<Value>)>,
) -> (Vec<T>, Vec<String>) {
    let mut ok = Vec::new();
    let mut unreachable = Vec::new();
    for (id, body) in answers {
        match body.and_then(|b| serde_json::from_value::<T>(b).ok()) {
            Some(t) => ok.push(t),
            None => unreachable.push(id),
        }
    }
    (ok, unreachable)
}

/// `POST /api/disconnect`: the sessions each node closed, summed (`local`:
/// the asking node's own count).
pub fn disconnected(
    user: &str,
    local: Option<u64>,
    answers: Vec<(String, Option<Value>)>,
) -> Disconnected {
    let (ok, unreachable) = parsed::<Disconnected>(answers);
    Disconnected {
        ok: true,
        user: user.to_owned(),
        closed: local.unwrap_or(0) + ok.iter().map(|d| d.closed).sum::<u64>(),
        unreachable,
    }
}

/// `POST /api/rooms/{room}/join|leave`: the live sessions each node
/// changed, summed; `changed` is what the stored membership did.
pub fn room_change(
    room: &str,
    user: &str,
    changed: bool,
    local: Option<u64>,
    answers: Vec<(String, Option<Value>)>,
) -> RoomChange {
    let (ok, unreachable) = parsed::<RoomChange>(answers);
    RoomChange {
        ok: true,
        room: room.to_owned(),
        user: user.to_owned(),
        changed,
        sessions: local.unwrap_or(0) + ok.iter().map(|c| c.sessions).sum::<u64>(),
        unreachable,
    }
}

/// A members answer from user → sessions counts: the first
/// [`ROOM_MEMBERS_MAX`] users (sorted by id) listed, `cut` or a longer
/// list marking it truncated, `extra_users` (users known only by count)
/// added to the count.
fn members_answer(
    room: &str,
    counts: BTreeMap<String, u64>,
    sessions: u64,
    extra_users: u64,
    cut: bool,
    unreachable: Vec<String>,
) -> RoomMembers {
    let users = counts.len() as u64 + extra_users;
    let truncated = cut || counts.len() > ROOM_MEMBERS_MAX;
    let members = counts
        .into_iter()
        .take(ROOM_MEMBERS_MAX)
        .map(|(user, sessions)| RoomMember { user, sessions })
        .collect();
    RoomMembers {
        room: room.to_owned(),
        users,
        sessions,
        members,
        truncated,
        unreachable,
    }
}

/// A node's own members of a room: `counts` maps each local user to its
/// local sessions in the room. The list is cut at [`ROOM_MEMBERS_MAX`]
/// (sorted by user id).
pub fn local_room_members(room: &str, counts: BTreeMap<String, u64>) -> RoomMembers {
    let sessions = counts.values().sum();
    members_answer(room, counts, sessions, 0, false, Vec::new())
}

/// `GET /api/rooms/{room}`: every node's members merged. Sessions add up;
/// a user on several nodes (broadcast routing) is listed once with its
/// sessions summed. The list is cut at [`ROOM_MEMBERS_MAX`] users (sorted by
/// id); the counts of listed users are exact even then, because every node
/// lists its first users in the same order. `users` is exact when no node
/// cut its list; otherwise the users a node left out are added as its count
/// says, which is exact when each user is on one node (hash routing) and an
/// upper bound otherwise.
pub fn room_members(
    room: &str,
    local: Option<RoomMembers>,
    answers: Vec<(String, Option<Value>)>,
) -> RoomMembers {
    let (mut all, unreachable) = parsed::<RoomMembers>(answers);
    all.extend(local);
    let mut union: BTreeMap<String, u64> = BTreeMap::new();
    let mut sessions = 0u64;
    let mut hidden = 0u64;
    let mut cut = false;
    for node in &all {
        sessions += node.sessions;
        if node.truncated {
            cut = true;
            hidden += node.users.saturating_sub(node.members.len() as u64);
        }
        for m in &node.members {
            *union.entry(m.user.clone()).or_default() += m.sessions;
        }
    }
    members_answer(room, union, sessions, hidden, cut, unreachable)
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
        // Up and no heartbeat read yet: it just joined, it is up.
        let body = nodes(&view(), &BTreeMap::new(), Routing::Hash);
        assert_eq!(body["nodes"][0]["state"], "up");
        // A heartbeat that says its backends are unreachable: suspect.
        stats.insert(
            "a".to_string(),
            NodeStats {
                ready: false,
                ..Default::default()
            },
        );
        let body = nodes(&view(), &stats, Routing::Hash);
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
    fn write_answers_add_up_and_name_the_silent() {
        let answers = vec![
            (
                "b".to_string(),
                Some(json!({"ok":true,"user":"u","closed":2})),
            ),
            ("c".to_string(), None),
            ("d".to_string(), Some(json!({"nonsense":1}))),
        ];
        let d = disconnected("u", Some(1), answers);
        assert_eq!(
            (d.closed, d.unreachable.clone()),
            (3, vec!["c".to_string(), "d".into()])
        );
        let answers = vec![(
            "b".to_string(),
            Some(json!({"ok":true,"room":"r","user":"u","changed":false,"sessions":4})),
        )];
        let c = room_change("r", "u", true, None, answers);
        assert_eq!((c.changed, c.sessions, c.unreachable.len()), (true, 4, 0));
        let url = &peers(&view(), Some("a"), &room_path("r", "/join"), "")[0].1;
        assert_eq!(url, "http://b:1/api/rooms/r/join?scope=local");
    }

    fn members(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
        pairs.iter().map(|(u, n)| ((*u).to_owned(), *n)).collect()
    }

    #[test]
    fn room_members_merge_users_across_nodes() {
        let a = local_room_members("r", members(&[("x", 1), ("y", 2)]));
        let b = local_room_members("r", members(&[("y", 1), ("z", 1)]));
        let m = room_members(
            "r",
            Some(a),
            vec![("b".into(), Some(serde_json::to_value(b).expect("json")))],
        );
        assert_eq!((m.users, m.sessions, m.truncated), (3, 5, false));
        let listed: Vec<(&str, u64)> = m
            .members
            .iter()
            .map(|m| (m.user.as_str(), m.sessions))
            .collect();
        assert_eq!(listed, vec![("x", 1), ("y", 3), ("z", 1)]);
    }

    #[test]
    fn room_members_stay_bounded_and_say_so() {
        let many = |prefix: &str, n: usize| {
            (0..n)
                .map(|i| (format!("{prefix}{i:05}"), 1))
                .collect::<BTreeMap<String, u64>>()
        };
        let a = local_room_members("r", many("a", ROOM_MEMBERS_MAX + 10));
        assert!(a.truncated);
        assert_eq!(a.members.len(), ROOM_MEMBERS_MAX);
        assert_eq!(a.users, (ROOM_MEMBERS_MAX + 10) as u64);
        let b = local_room_members("r", many("b", 5));
        let m = room_members(
            "r",
            Some(a),
            vec![("b".into(), Some(serde_json::to_value(b).expect("json")))],
        );
        assert!(m.truncated);
        assert_eq!(m.members.len(), ROOM_MEMBERS_MAX);
        assert_eq!(
            m.users,
            (ROOM_MEMBERS_MAX + 15) as u64,
            "disjoint users add up"
        );
        assert_eq!(m.sessions, (ROOM_MEMBERS_MAX + 15) as u64);
        assert!(m.members.iter().all(|x| x.user.starts_with('a')));
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
