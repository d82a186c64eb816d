//! Cluster-wide room occupancy, for the `room.occupied` and `room.vacated`
//! webhooks: a room is occupied while a session anywhere in the cluster is a
//! member of it, and vacated when the last member anywhere leaves (or its
//! node dies), not when one node's last member leaves.
//!
//! Every node with webhooks on keeps the whole picture, so that the node
//! that emits can be replaced by one that saw the same history:
//!
//! * A node's *share* is the set of rooms it has at least one member session
//!   in. When the share changes (a room's first local member joins, its last
//!   one leaves) the node publishes a delta on the cluster topic: only these
//!   node-level edges travel, not every join. One task publishes them, in
//!   order, one at a time; a failed publish stays pending and is retried.
//! * Every node applies every node's messages (its own included, as they come
//!   back from the broker, so everyone applies one publisher's messages in
//!   the same order) to a count of nodes per room. 0 → 1 is `room.occupied`,
//!   1 → 0 is `room.vacated`.
//! * Only the *emitter* queues the webhook: the member with the lowest
//!   incarnation, i.e. the oldest claim. A node that joins later never takes
//!   over while the nodes that saw the whole history live; when the emitter
//!   dies the next oldest, which applied the same messages, takes over.
//! * A node that starts, or whose broker connection came back (deltas may
//!   have been missed), asks every node for its whole share; the answers
//!   replace what it had, and the differences count as edges. A node that
//!   leaves the view, or comes back under a newer incarnation, has its share
//!   dropped: a crash vacates the rooms only it had members in.
//!
//! Memory: every node holds, per occupied room in the cluster, the room name
//! once and one entry per node with members there.

use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::debug;
use wsring_cluster::{Broker, ClusterError, Membership, Topic, View, lock};
use wsring_hooks::{Event, Webhooks};
use wsring_protocol::Target;

use crate::rooms::{publish_bookkeeping, share_chunks};
use crate::sessions::SessionTable;

/// How long a starting node waits for every node's share before it reports
/// edges (a node that does not answer by then, e.g. one that just crashed,
/// is not waited for).
const READY_WAIT: Duration = Duration::from_secs(2);

/// Rooms per share message: with names of at most 128 bytes a chunk stays
/// far below every broker's message limit.
const CHUNK: usize = 500;

/// Wait before publishing again after a failed publish.
const RETRY: Duration = Duration::from_millis(500);

/// What nodes tell each other (the frame of an envelope with
/// [`Target::Occupancy`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "k", rename_all = "snake_case")]
enum OccMsg {
    /// "Send me your share" (on the cluster topic).
    Query { from: String },
    /// Node `node` (under incarnation `inc`) has members in `room` now, or
    /// no longer.
    Delta {
        node: String,
        inc: u64,
        /// The epoch of a view that listed the sender (0: none yet).
        #[serde(default)]
        epoch: u64,
        room: String,
        present: bool,
    },
    /// One chunk of node `node`'s whole share; the chunks of one share are
    /// consecutive, `first` and `last` mark its ends.
    Share {
        node: String,
        inc: u64,
        #[serde(default)]
        epoch: u64,
        rooms: Vec<String>,
        first: bool,
        last: bool,
    },
}

/// Who a message is from: node id, incarnation, and the epoch of a view
/// listing it.
#[derive(Debug, Clone, Copy)]
struct Claim<'a> {
    node: &'a str,
    inc: u64,
    epoch: u64,
}

/// A change of a room's cluster-wide occupancy.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Edge {
    Occupied(String),
    Vacated(String),
}

impl Edge {
    fn room(&self) -> &str {
        match self {
            Edge::Occupied(r) | Edge::Vacated(r) => r,
        }
    }
}

/// What a batch of edges changed: a room's edges alternate, so an even
/// number of them (a share replaced by one holding the same room, say)
/// changed nothing and an odd number ends in the change.
fn net(edges: Vec<Edge>) -> Vec<Edge> {
    let mut last: HashMap<String, (usize, Edge)> = HashMap::new();
    let mut order = Vec::new();
    for e in edges {
        let entry = last.entry(e.room().to_owned()).or_insert_with(|| {
            order.push(e.room().to_owned());
            (0, e.clone())
        });
        entry.0 += 1;
        entry.1 = e;
    }
    order
        .into_iter()
        .filter_map(|r| match last.remove(&r) {
            Some((n, e)) if n % 2 == 1 => Some(e),
            _ => None,
        })
        .collect()
}

/// One node's rooms, as the others know them.
struct Share {
    inc: u64,
    /// The newest epoch at which the node said it was a member: a view at
    /// that epoch or later without the node means it left.
    epoch: u64,
    rooms: HashSet<String>,
}

/// The cluster-wide picture one node keeps. Pure bookkeeping (no I/O), so
/// its rules are tested on their own.
#[derive(Default)]
struct Picture {
    shares: HashMap<String, Share>,
    /// Per room, the number of nodes whose share has it.
    nodes: HashMap<String, u32>,
    /// Shares arriving in chunks, per node: incarnation and rooms so far.
    gathering: HashMap<String, (u64, HashSet<String>)>,
    /// Nodes whose whole share arrived since this node asked.
    answered: HashSet<String>,
    /// The members of the last view.
    members: HashSet<String>,
    /// Per node id, the newest incarnation whose share was dropped because
    /// it left the view: a late message of that claim (or an older one) is
    /// ignored rather than bringing its rooms back. One entry per node id
    /// ever seen, so small.
    gone: HashMap<String, u64>,
    /// Whether edges are reported (every member answered, or the wait
    /// passed).
    ready: bool,
}

impl Picture {
    fn count(&mut self, room: &str, up: bool, edges: &mut Vec<Edge>) {
        let n = self.nodes.entry(room.to_owned()).or_default();
        let before = *n;
        *n = if up {
            before + 1
        } else {
            before.saturating_sub(1)
        };
        let after = *n;
        if after == 0 {
            self.nodes.remove(room);
        }
        match (before, after) {
            (0, 1) => edges.push(Edge::Occupied(room.to_owned())),
            (1, 0) => edges.push(Edge::Vacated(room.to_owned())),
            _ => {}
        }
    }

    /// The share of `node` under `inc`, starting it over when `inc` is newer
    /// than what we had; `None` for a message from an older claim.
    fn share_of(
        &mut self,
        node: &str,
        inc: u64,
        epoch: u64,
        edges: &mut Vec<Edge>,
    ) -> Option<&mut Share> {
        if self.gone.get(node).is_some_and(|g| inc <= *g) {
            return None;
        }
        match self.shares.get(node).map(|s| s.inc) {
            Some(k) if inc < k => return None,
            Some(k) if inc > k => self.drop_node(node, edges),
            _ => {}
        }
        let share = self.shares.entry(node.to_owned()).or_insert(Share {
            inc,
            epoch,
            rooms: HashSet::new(),
        });
        share.epoch = share.epoch.max(epoch);
        Some(share)
    }

    fn delta(&mut self, from: Claim<'_>, room: String, present: bool, edges: &mut Vec<Edge>) {
        let Some(share) = self.share_of(from.node, from.inc, from.epoch, edges) else {
            return;
        };
        let changed = if present {
            share.rooms.insert(room.clone())
        } else {
            share.rooms.remove(&room)
        };
        if changed {
            self.count(&room, present, edges);
        }
    }

    /// Replaces `node`'s share; the differences count like deltas.
    fn replace(&mut self, from: Claim<'_>, rooms: HashSet<String>, edges: &mut Vec<Edge>) {
        let Some(share) = self.share_of(from.node, from.inc, from.epoch, edges) else {
            return;
        };
        let old = std::mem::replace(&mut share.rooms, rooms.clone());
        for r in old.difference(&rooms) {
            self.count(r, false, edges);
        }
        for r in rooms.difference(&old) {
            self.count(r, true, edges);
        }
    }

    /// One chunk of a share; the whole share replaces the old one when its
    /// last chunk arrives.
    fn chunk(
        &mut self,
        from: Claim<'_>,
        rooms: Vec<String>,
        ends: (bool, bool),
        edges: &mut Vec<Edge>,
    ) {
        let (first, last) = ends;
        let entry = self.gathering.entry(from.node.to_owned()).or_default();
        if first || entry.0 != from.inc {
            *entry = (from.inc, HashSet::new());
        }
        entry.1.extend(rooms);
        if last && let Some((inc, rooms)) = self.gathering.remove(from.node) {
            self.replace(Claim { inc, ..from }, rooms, edges);
            self.answered.insert(from.node.to_owned());
            self.check_ready();
        }
    }

    fn drop_node(&mut self, node: &str, edges: &mut Vec<Edge>) {
        self.gathering.remove(node);
        if let Some(share) = self.shares.remove(node) {
            for r in share.rooms {
                self.count(&r, false, edges);
            }
        }
    }

    fn check_ready(&mut self) {
        if !self.ready && self.members.iter().all(|m| self.answered.contains(m)) {
            self.ready = true;
        }
    }

    /// A new view: members that left, or came back under a newer
    /// incarnation, lose their shares. `me` is left alone: our own share
    /// follows our own messages.
    fn on_view(&mut self, view: &View, me: &str, edges: &mut Vec<Edge>) {
        let now: HashSet<String> = view.doc.members.keys().cloned().collect();
        let left: HashSet<String> = self.members.difference(&now).cloned().collect();
        self.members = now;
        // A node missing from the view is gone if it was in an earlier view
        // we saw, or said it was a member at this epoch or before; a node
        // that joined after this view was built is not.
        let stale: Vec<String> = self
            .shares
            .iter()
            .filter(|(node, share)| {
                node.as_str() != me
                    && match view.member(node) {
                        Some(m) => m.incarnation > share.inc,
                        None => {
                            left.contains(node.as_str())
                                || (share.epoch > 0 && share.epoch <= view.epoch())
                        }
                    }
            })
            .map(|(node, _)| node.clone())
            .collect();
        for node in stale {
            if let Some(share) = self.shares.get(&node) {
                let g = self.gone.entry(node.clone()).or_default();
                *g = (*g).max(share.inc);
            }
            self.drop_node(&node, edges);
        }
        self.check_ready();
    }
}

/// The member that queues occupancy webhooks: the lowest incarnation, then
/// the lowest id (incarnations of `0` come from old documents).
fn emitter(view: &View) -> Option<&str> {
    view.doc
        .members
        .iter()
        .min_by_key(|(id, m)| (m.incarnation, id.as_str()))
        .map(|(id, _)| id.as_str())
}

/// Changes waiting for the announcing task.
#[derive(Default)]
struct Outbox {
    /// Rooms whose local occupancy may have changed.
    dirty: HashSet<String>,
    /// Shares to send: to a node that asked, or (`None`) to everyone.
    shares: HashSet<Option<String>>,
}

/// One node's occupancy tracking (only built when webhooks are on).
pub(crate) struct Occupancy {
    id: String,
    broker: Arc<dyn Broker>,
    table: Arc<SessionTable>,
    membership: Arc<Membership>,
    hooks: Webhooks,
    outbox: Mutex<Outbox>,
    wake: Notify,
    picture: Mutex<Picture>,
}

impl Occupancy {
    pub(crate) fn new(
        id: String,
        broker: Arc<dyn Broker>,
        table: Arc<SessionTable>,
        membership: Arc<Membership>,
        hooks: Webhooks,
    ) -> Arc<Occupancy> {
        Arc::new(Occupancy {
            id,
            broker,
            table,
            membership,
            hooks,
            outbox: Mutex::new(Outbox::default()),
            wake: Notify::new(),
            picture: Mutex::new(Picture::default()),
        })
    }

    /// Once the node is a member: starts the announcing task and the view
    /// follower, and asks every node for its share. Everything stops with
    /// `kill`.
    pub(crate) fn start(self: &Arc<Self>, kill: &CancellationToken) {
        tokio::spawn(Arc::clone(self).announce(kill.clone()));
        tokio::spawn(Arc::clone(self).follow_views(kill.clone()));
        self.resync(kill);
    }

    /// Asks every node for its whole share (at start, and after a broker
    /// reconnect) and reports edges again once all answered, or after
    /// [`READY_WAIT`].
    pub(crate) fn resync(self: &Arc<Self>, kill: &CancellationToken) {
        {
            let mut p = lock(&self.picture);
            p.answered.clear();
            // The node's own view of the past stays; only a node that never
            // had the picture (just started) holds its edges back.
        }
        let me = Arc::clone(self);
        let kill = kill.clone();
        tokio::spawn(async move {
            let query = OccMsg::Query {
                from: me.id.clone(),
            };
            // Retried until it goes out: without it the picture would miss
            // the other nodes' rooms.
            while let Err(e) = me.publish(Topic::Cluster, &query).await {
                debug!(node = %me.id, error = %e, "occupancy query failed; retrying");
                tokio::select! {
                    _ = kill.cancelled() => return,
                    _ = tokio::time::sleep(RETRY) => {}
                }
            }
            tokio::select! {
                _ = kill.cancelled() => {}
                _ = tokio::time::sleep(READY_WAIT) => {
                    lock(&me.picture).ready = true;
                }
            }
        });
    }

    /// A session joined or left `room` (or ended): announce the change if
    /// the node's own occupancy of the room changed.
    pub(crate) fn touch(&self, room: &str) {
        lock(&self.outbox).dirty.insert(room.to_owned());
        self.wake.notify_one();
    }

    /// An occupancy message from the broker.
    pub(crate) fn on_message(&self, body: &[u8]) {
        let msg: OccMsg = match serde_json::from_slice(body) {
            Ok(m) => m,
            Err(e) => {
                debug!(error = %e, "ignoring an unreadable occupancy message");
                return;
            }
        };
        let mut edges = Vec::new();
        let ready = {
            let mut p = lock(&self.picture);
            match msg {
                OccMsg::Query { from } => {
                    drop(p);
                    lock(&self.outbox).shares.insert(Some(from));
                    self.wake.notify_one();
                    return;
                }
                OccMsg::Delta {
                    node,
                    inc,
                    epoch,
                    room,
                    present,
                } => {
                    let from = Claim {
                        node: &node,
                        inc,
                        epoch,
                    };
                    p.delta(from, room, present, &mut edges);
                }
                OccMsg::Share {
                    node,
                    inc,
                    epoch,
                    rooms,
                    first,
                    last,
                } => {
                    let from = Claim {
                        node: &node,
                        inc,
                        epoch,
                    };
                    p.chunk(from, rooms, (first, last), &mut edges);
                }
            }
            p.ready
        };
        if ready {
            self.emit(edges);
        }
    }

    /// Queues the webhooks for `edges` if this node is the emitter.
    fn emit(&self, edges: Vec<Edge>) {
        let edges = net(edges);
        if edges.is_empty() || emitter(&self.membership.view()) != Some(self.id.as_str()) {
            return;
        }
        for e in edges {
            let (kind, room) = match e {
                Edge::Occupied(r) => ("room.occupied", r),
                Edge::Vacated(r) => ("room.vacated", r),
            };
            self.hooks.emit(Event::new(kind).with("room", room));
        }
    }

    /// Follows the membership view: nodes that left, or came back under a
    /// newer incarnation, lose their shares.
    async fn follow_views(self: Arc<Self>, kill: CancellationToken) {
        let mut views = self.membership.subscribe();
        loop {
            let view = views.borrow_and_update().clone();
            let mut edges = Vec::new();
            let ready = {
                let mut p = lock(&self.picture);
                p.on_view(&view, &self.id, &mut edges);
                p.ready
            };
            if ready {
                self.emit(edges);
            }
            // Our own claim may have changed: the announcing task checks.
            self.wake.notify_one();
            tokio::select! {
                _ = kill.cancelled() => return,
                changed = views.changed() => if changed.is_err() { return },
            }
        }
    }

    /// The epoch of our current view if it lists us (0 otherwise).
    fn listed_epoch(&self) -> u64 {
        let view = self.membership.view();
        if view.member(&self.id).is_some() {
            view.epoch()
        } else {
            0
        }
    }

    async fn publish(&self, topic: Topic, msg: &OccMsg) -> Result<(), ClusterError> {
        publish_bookkeeping(&*self.broker, &topic, Target::Occupancy, msg).await
    }

    /// The announcing task: publishes what the table says changed, and the
    /// shares asked for, in that order, one at a time.
    async fn announce(self: Arc<Self>, kill: CancellationToken) {
        let mut announced: HashSet<String> = HashSet::new();
        let mut inc = self.membership.incarnation().unwrap_or(0);
        loop {
            let now = self.membership.incarnation().unwrap_or(0);
            if now != inc {
                // Under a new claim the others drop what we told them under
                // the old one: tell everyone again.
                inc = now;
                lock(&self.outbox).shares.insert(None);
            }
            let retry = match self.flush(&mut announced, inc).await {
                Ok(()) => false,
                Err(e) => {
                    debug!(node = %self.id, error = %e, "occupancy publish failed; retrying");
                    true
                }
            };
            tokio::select! {
                _ = kill.cancelled() => return,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(RETRY), if retry => {}
            }
        }
    }

    async fn flush(&self, announced: &mut HashSet<String>, inc: u64) -> Result<(), ClusterError> {
        let (dirty, shares) = {
            let mut ob = lock(&self.outbox);
            (
                std::mem::take(&mut ob.dirty),
                std::mem::take(&mut ob.shares),
            )
        };
        let mut dirty = dirty.into_iter();
        while let Some(room) = dirty.next() {
            let actual = self.table.has_room(&room);
            if actual == announced.contains(&room) {
                continue;
            }
            let msg = OccMsg::Delta {
                node: self.id.clone(),
                inc,
                epoch: self.listed_epoch(),
                room: room.clone(),
                present: actual,
            };
            if let Err(e) = self.publish(Topic::Cluster, &msg).await {
                let mut ob = lock(&self.outbox);
                ob.dirty.insert(room);
                ob.dirty.extend(dirty);
                ob.shares.extend(shares);
                return Err(e);
            }
            if actual {
                announced.insert(room);
            } else {
                announced.remove(&room);
            }
        }
        let mut shares = shares.into_iter();
        while let Some(to) = shares.next() {
            let rooms: Vec<String> = announced.iter().cloned().collect();
            if let Err(e) = self.send_share(to.as_deref(), rooms, inc).await {
                let mut ob = lock(&self.outbox);
                ob.shares.insert(to);
                ob.shares.extend(shares);
                return Err(e);
            }
        }
        Ok(())
    }

    /// Sends this node's share to node `to` (or to everyone), in chunks of
    /// [`CHUNK`] rooms; an empty share is one chunk.
    async fn send_share(
        &self,
        to: Option<&str>,
        rooms: Vec<String>,
        inc: u64,
    ) -> Result<(), ClusterError> {
        let topic = match to {
            Some(node) => Topic::Node(node.to_owned()),
            None => Topic::Cluster,
        };
        for (chunk, first, last) in share_chunks(&rooms, CHUNK) {
            let msg = OccMsg::Share {
                node: self.id.clone(),
                inc,
                epoch: self.listed_epoch(),
                rooms: chunk.to_vec(),
                first,
                last,
            };
            self.publish(topic.clone(), &msg).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use wsring_cluster::{Member, MemberState, MembershipDoc};

    fn view(epoch: u64, members: &[(&str, u64)]) -> View {
        let doc = MembershipDoc {
            epoch,
            members: members
                .iter()
                .map(|(id, inc)| {
                    (
                        id.to_string(),
                        Member {
                            url: format!("ws://{id}/ws"),
                            state: MemberState::Up,
                            incarnation: *inc,
                        },
                    )
                })
                .collect::<BTreeMap<_, _>>(),
        };
        View::new(doc, 8)
    }

    fn occ(r: &str) -> Edge {
        Edge::Occupied(r.into())
    }
    fn vac(r: &str) -> Edge {
        Edge::Vacated(r.into())
    }

    /// A delta from `node` under `inc`, listed at epoch `epoch`.
    fn delta(
        p: &mut Picture,
        node: &str,
        inc: u64,
        epoch: u64,
        room: &str,
        present: bool,
    ) -> Vec<Edge> {
        let mut e = Vec::new();
        let from = Claim { node, inc, epoch };
        p.delta(from, room.into(), present, &mut e);
        e
    }

    fn share(
        p: &mut Picture,
        node: &str,
        inc: u64,
        rooms: &[&str],
        ends: (bool, bool),
    ) -> Vec<Edge> {
        let mut e = Vec::new();
        let from = Claim {
            node,
            inc,
            epoch: 0,
        };
        let rooms = rooms.iter().map(|r| r.to_string()).collect();
        p.chunk(from, rooms, ends, &mut e);
        e
    }

    fn see(p: &mut Picture, v: &View) -> Vec<Edge> {
        let mut e = Vec::new();
        p.on_view(v, "n1", &mut e);
        e
    }

    #[test]
    fn a_room_is_vacated_only_when_its_last_node_leaves() {
        let mut p = Picture::default();
        assert_eq!(delta(&mut p, "n1", 1, 0, "r", true), vec![occ("r")]);
        assert_eq!(delta(&mut p, "n2", 2, 0, "r", true), vec![]);
        assert_eq!(
            delta(&mut p, "n1", 1, 0, "r", false),
            vec![],
            "n2 still has members"
        );
        assert_eq!(
            delta(&mut p, "n1", 1, 0, "r", false),
            vec![],
            "a repeat changes nothing"
        );
        assert_eq!(delta(&mut p, "n2", 2, 0, "r", false), vec![vac("r")]);
        assert!(p.nodes.is_empty());
    }

    #[test]
    fn a_dead_node_vacates_the_rooms_only_it_had() {
        let mut p = Picture::default();
        see(&mut p, &view(3, &[("n1", 1), ("n2", 2)]));
        delta(&mut p, "n1", 1, 3, "shared", true);
        delta(&mut p, "n2", 2, 3, "shared", true);
        delta(&mut p, "n2", 2, 3, "only2", true);
        assert_eq!(see(&mut p, &view(4, &[("n1", 1)])), vec![vac("only2")]);
        // A late delta of the dead claim brings nothing back...
        assert_eq!(delta(&mut p, "n2", 2, 3, "late", true), vec![]);
        // ...while a newer claim of the same id counts.
        assert_eq!(delta(&mut p, "n2", 3, 5, "other", true), vec![occ("other")]);
    }

    #[test]
    fn a_node_newer_than_the_view_is_kept_and_one_older_is_dropped() {
        let mut p = Picture::default();
        see(&mut p, &view(5, &[("n1", 1)]));
        // n4 joined at epoch 7 and spoke before we saw that view.
        delta(&mut p, "n4", 9, 7, "r", true);
        assert_eq!(
            see(&mut p, &view(6, &[("n1", 1)])),
            vec![],
            "epoch 6 predates n4"
        );
        assert_eq!(see(&mut p, &view(7, &[("n1", 1), ("n4", 9)])), vec![]);
        // n4 died, and we never saw the view listing it go (views skip):
        // a view at its epoch or later without it means it left.
        let mut q = Picture::default();
        see(&mut q, &view(5, &[("n1", 1)]));
        delta(&mut q, "n4", 9, 7, "r", true);
        assert_eq!(see(&mut q, &view(8, &[("n1", 1)])), vec![vac("r")]);
    }

    #[test]
    fn an_older_claim_is_ignored_and_a_restart_drops_its_share() {
        let mut p = Picture::default();
        delta(&mut p, "n2", 5, 0, "r", true);
        assert_eq!(
            delta(&mut p, "n2", 4, 0, "r", false),
            vec![],
            "an older incarnation"
        );
        assert_eq!(
            see(&mut p, &view(2, &[("n1", 1), ("n2", 6)])),
            vec![vac("r")]
        );
    }

    #[test]
    fn shares_replace_in_chunks_and_count_differences() {
        let mut p = Picture::default();
        see(&mut p, &view(1, &[("n1", 1), ("n2", 2)]));
        delta(&mut p, "n2", 2, 0, "a", true);
        delta(&mut p, "n2", 2, 0, "b", true);
        // The answer says: b and c (a missed delta removed a, added c).
        assert_eq!(
            share(&mut p, "n2", 2, &["b"], (true, false)),
            vec![],
            "before the last chunk"
        );
        let mut got = net(share(&mut p, "n2", 2, &["c"], (false, true)));
        got.sort_by(|x, y| x.room().cmp(y.room()));
        assert_eq!(got, vec![vac("a"), occ("c")]);
        assert!(!p.ready, "n1 has not answered");
        share(&mut p, "n1", 1, &[], (true, true));
        assert!(p.ready);
    }

    #[test]
    fn net_keeps_odd_runs_only() {
        assert_eq!(net(vec![vac("r"), occ("r")]), vec![]);
        assert_eq!(net(vec![vac("r"), occ("r"), vac("r")]), vec![vac("r")]);
        assert_eq!(net(vec![occ("a"), occ("b")]), vec![occ("a"), occ("b")]);
    }

    #[test]
    fn the_oldest_claim_emits() {
        assert_eq!(
            emitter(&view(1, &[("b", 3), ("a", 7), ("c", 5)])),
            Some("b")
        );
        assert_eq!(emitter(&view(1, &[("b", 0), ("a", 0)])), Some("a"));
        assert_eq!(emitter(&view(1, &[])), None);
    }
}
