//! The membership document stored in the registry, and the [`View`] every
//! process derives from it: the same members and epoch give the same ring.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use wsring_ring::Ring;

/// Lifecycle state of a member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemberState {
    /// On the ring, accepting sessions.
    Up,
    /// Leaving: off the ring (owns nothing), still moving its sessions away.
    Draining,
}

/// One member as recorded in the membership document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// WebSocket URL clients (and the gateway) use, e.g. `ws://10.0.0.5:7001/ws`.
    pub url: String,
    /// Up or draining.
    pub state: MemberState,
    /// The incarnation (fencing token) of the process that added itself;
    /// reaping and leaving remove a member only for the incarnation they saw.
    /// `0` in documents written before incarnations existed.
    #[serde(default)]
    pub incarnation: u64,
}

impl Member {
    /// The node's HTTP API base (`http://host:port`), derived from its ws URL.
    pub fn api_base(&self) -> String {
        api_base_of(&self.url)
    }
}

/// `ws://h:p/ws` → `http://h:p`, `wss://…` → `https://…`.
pub fn api_base_of(ws_url: &str) -> String {
    let (scheme, rest) = match ws_url.split_once("://") {
        Some(("wss", rest)) => ("https", rest),
        Some((_, rest)) => ("http", rest),
        None => ("http", ws_url),
    };
    let authority = rest.split('/').next().unwrap_or(rest);
    format!("{scheme}://{authority}")
}

/// The registry's single source of truth for membership.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MembershipDoc {
    /// Incremented by every membership change, cluster-wide.
    pub epoch: u64,
    /// Members by node id (a `BTreeMap` so serialisation is canonical).
    pub members: BTreeMap<String, Member>,
}

/// How many sessions one node moved away at one epoch (reported in heartbeats
/// so the gateway's event log can show what a change cost).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MovedReport {
    /// The epoch whose ring change moved them.
    pub epoch: u64,
    /// Sessions sent `moved` + close 1012.
    pub count: u64,
}

/// Live statistics a node publishes in its heartbeat record.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStats {
    /// Open WebSocket sessions.
    pub connections: u64,
    /// Client frames received since start.
    pub msgs_in: u64,
    /// Frames delivered to clients since start.
    pub msgs_out: u64,
    /// Whether the node's backends are all reachable (`/readyz`).
    pub ready: bool,
    /// Recent rebalance costs, newest last.
    #[serde(default)]
    pub moved: Vec<MovedReport>,
}

/// A process's current picture of the cluster: the document plus the ring
/// derived from its `up` members.
#[derive(Debug, Clone)]
pub struct View {
    /// The document this view was built from.
    pub doc: MembershipDoc,
    /// Ring over `up` members, tagged with `doc.epoch`.
    pub ring: Arc<Ring>,
}

impl View {
    /// Builds the view (and ring) for a document.
    pub fn new(doc: MembershipDoc, vnodes: u32) -> View {
        let up = doc
            .members
            .iter()
            .filter(|(_, m)| m.state == MemberState::Up)
            .map(|(id, _)| id.clone());
        let ring = Arc::new(Ring::new(doc.epoch, up, vnodes));
        View { doc, ring }
    }

    /// The ring epoch.
    pub fn epoch(&self) -> u64 {
        self.doc.epoch
    }

    /// The owner of `user` on the ring.
    pub fn owner(&self, user: &str) -> Option<&str> {
        self.ring.owner(user)
    }

    /// A member's record.
    pub fn member(&self, id: &str) -> Option<&Member> {
        self.doc.members.get(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_base_from_ws_url() {
        assert_eq!(
            api_base_of("ws://127.0.0.1:7001/ws"),
            "http://127.0.0.1:7001"
        );
        assert_eq!(api_base_of("wss://example.com/ws"), "https://example.com");
    }

    #[test]
    fn draining_members_are_off_the_ring() {
        let mut doc = MembershipDoc {
            epoch: 4,
            ..Default::default()
        };
        for (id, state) in [("a", MemberState::Up), ("b", MemberState::Draining)] {
            doc.members.insert(
                id.into(),
                Member {
                    url: format!("ws://{id}/ws"),
                    state,
                    incarnation: 1,
                },
            );
        }
        let view = View::new(doc, 16);
        assert_eq!(view.ring.nodes(), ["a".to_string()]);
        assert_eq!(view.owner("anyone"), Some("a"));
        assert_eq!(view.ring.epoch(), 4);
    }
}
