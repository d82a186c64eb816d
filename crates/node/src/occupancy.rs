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
//! With webhooks in Pusher's format on, the same bookkeeping also gives
//! `channel_occupied`/`channel_vacated` (rooms whose names are Pusher
//! channel names) and `member_added`/`member_removed` per user id: for a
//! presence channel, a node's share also holds one *member item*
//! `"{channel}\n{user_id}"` per user id with a local connection there (a
//! channel name has no newline), so a user id's first connection anywhere
//! is an edge 0 → 1 and its last one 1 → 0, whatever the number of
//! connections and nodes, with the same emitter and the same recovery.
//!
//! Memory: every node holds, per occupied room in the cluster, the room name
//! once and one entry per node with members there (and, with Pusher
//! webhooks, the same per presence channel member).

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
use crate::tally::{Claim, Edges, Tally, net};

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

/// The cluster-wide picture one node keeps: every node's rooms, and
/// whether edges are reported yet.
#[derive(Default)]
struct Picture {
    tally: Tally,
    /// Nodes whose whole share arrived since this node asked.
    answered: HashSet<String>,
    /// The members of the last view.
    members: HashSet<String>,
    /// Whether edges are reported (every member answered, or the wait
    /// passed).
    ready: bool,
}

impl Picture {
    fn check_ready(&mut self) {
        if !self.ready && self.members.iter().all(|m| self.answered.contains(m)) {
            self.ready = true;
        }
    }

    fn chunk(
        &mut self,
        from: Claim<'_>,
        rooms: Vec<String>,
        ends: (bool, bool),
        edges: &mut Edges,
    ) {
        if self.tally.chunk(from, rooms, ends, edges) {
            self.answered.insert(from.node.to_owned());
            self.check_ready();
        }
    }

    fn on_view(&mut self, view: &View, me: &str, edges: &mut Edges) {
        let now: HashSet<String> = view.doc.members.keys().cloned().collect();
        let left: HashSet<String> = self.members.difference(&now).cloned().collect();
        self.members = now;
        self.tally.on_view(view, &left, me, edges);
        self.check_ready();
    }
}

/// The member that queues occupancy webhooks: the lowest incarnation, then
/// the lowest id (incarnations of `0` come from old documents).
pub(crate) fn emitter(view: &View) -> Option<&str> {
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

/// What this node last told the others it has.
#[derive(Default)]
struct Announced {
    /// Rooms and member items.
    items: HashSet<String>,
    /// Per presence channel, the user ids of its member items.
    members: HashMap<String, HashSet<String>>,
}

/// The member item of `user_id` in presence channel `channel`.
pub(crate) fn member_item(channel: &str, user_id: &str) -> String {
    format!("{channel}\n{user_id}")
}

/// What a protocol layer adds to room occupancy. The core knows no
/// protocol: the Pusher layer's is `pusher::PusherOccupancy`, plugged in
/// by the router (`lib.rs`).
pub(crate) trait ProtocolOccupancy: Send + Sync {
    /// Whether `room`'s members are counted too, one entry per user id.
    fn tracks_members(&self, room: &str) -> bool;
    /// The user id a session's key in such a room stands for.
    fn member_user(&self, key: &str) -> Option<String>;
    /// Whether `room` is one of the protocol's channels (its occupancy
    /// webhooks are sent for those only).
    fn is_channel(&self, room: &str) -> bool;
}

/// No protocol layer: no room is a channel and no member is tracked (for
/// tests of the core alone).
#[cfg(test)]
pub(crate) struct NoProtocol;

#[cfg(test)]
impl ProtocolOccupancy for NoProtocol {
    fn tracks_members(&self, _: &str) -> bool {
        false
    }

    fn member_user(&self, _: &str) -> Option<String> {
        None
    }

    fn is_channel(&self, _: &str) -> bool {
        false
    }
}

/// One node's occupancy tracking (only built when webhooks are on).
pub(crate) struct Occupancy {
    id: String,
    broker: Arc<dyn Broker>,
    table: Arc<SessionTable>,
    membership: Arc<Membership>,
    /// Native webhooks (`room.occupied`, `room.vacated`), maybe off.
    hooks: Webhooks,
    /// Webhooks in Pusher's format, maybe off; when on, presence channel
    /// members are tracked too.
    pusher: Webhooks,
    /// The Pusher layer's rules for its channels.
    layer: Arc<dyn ProtocolOccupancy>,
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
        pusher: Webhooks,
        layer: Arc<dyn ProtocolOccupancy>,
    ) -> Arc<Occupancy> {
        Arc::new(Occupancy {
            id,
            broker,
            table,
            membership,
            hooks,
            pusher,
            layer,
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
        let mut edges = Edges::new();
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
                    p.tally.delta(from, room, present, &mut edges);
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
    fn emit(&self, edges: Edges) {
        let edges = net(edges);
        if edges.is_empty() || emitter(&self.membership.view()) != Some(self.id.as_str()) {
            return;
        }
        for (item, present) in edges {
            if let Some((channel, user_id)) = item.split_once('\n') {
                crate::events::pusher_member(&self.pusher, channel, user_id, present);
                continue;
            }
            if self.hooks.enabled() {
                let kind = if present {
                    "room.occupied"
                } else {
                    "room.vacated"
                };
                self.hooks
                    .emit(Event::new(kind).with("room", item.as_str()));
            }
            if self.pusher.enabled() && self.layer.is_channel(&item) {
                crate::events::pusher_channel(&self.pusher, &item, present);
            }
        }
    }

    /// Whether `room`'s members are tracked: a presence channel, with
    /// Pusher webhooks on.
    fn tracks_members(&self, room: &str) -> bool {
        self.pusher.enabled() && self.layer.tracks_members(room)
    }

    /// Follows the membership view: nodes that left, or came back under a
    /// newer incarnation, lose their shares.
    async fn follow_views(self: Arc<Self>, kill: CancellationToken) {
        let mut views = self.membership.subscribe();
        loop {
            let view = views.borrow_and_update().clone();
            let mut edges = Edges::new();
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
        let mut announced = Announced::default();
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

    async fn flush(&self, announced: &mut Announced, inc: u64) -> Result<(), ClusterError> {
        let (dirty, shares) = {
            let mut ob = lock(&self.outbox);
            (
                std::mem::take(&mut ob.dirty),
                std::mem::take(&mut ob.shares),
            )
        };
        let mut dirty = dirty.into_iter();
        while let Some(room) = dirty.next() {
            if let Err(e) = self.announce_room(&room, announced, inc).await {
                let mut ob = lock(&self.outbox);
                ob.dirty.insert(room);
                ob.dirty.extend(dirty);
                ob.shares.extend(shares);
                return Err(e);
            }
        }
        let mut shares = shares.into_iter();
        while let Some(to) = shares.next() {
            let items: Vec<String> = announced.items.iter().cloned().collect();
            if let Err(e) = self.send_share(to.as_deref(), items, inc).await {
                let mut ob = lock(&self.outbox);
                ob.shares.insert(to);
                ob.shares.extend(shares);
                return Err(e);
            }
        }
        Ok(())
    }

    /// Tells the others what changed about `room` here: the room, and its
    /// member items. A room's arrival goes before its members', its
    /// departure after, so receivers hear of a channel before its members
    /// and of its members' leaving before it is vacated. Repeatable: a
    /// failure leaves the rest to the next attempt.
    async fn announce_room(
        &self,
        room: &str,
        announced: &mut Announced,
        inc: u64,
    ) -> Result<(), ClusterError> {
        let present = self.table.has_room(room);
        if present {
            self.announce_item(room.to_owned(), true, announced, inc)
                .await?;
        }
        let users: HashSet<String> = if self.tracks_members(room) {
            self.table
                .room_counts(room)
                .keys()
                .filter_map(|k| self.layer.member_user(k))
                .collect()
        } else {
            HashSet::new()
        };
        let had = announced.members.get(room).cloned().unwrap_or_default();
        for user in users.difference(&had) {
            self.announce_item(member_item(room, user), true, announced, inc)
                .await?;
            announced
                .members
                .entry(room.to_owned())
                .or_default()
                .insert(user.clone());
        }
        for user in had.difference(&users) {
            self.announce_item(member_item(room, user), false, announced, inc)
                .await?;
            if let Some(set) = announced.members.get_mut(room) {
                set.remove(user);
                if set.is_empty() {
                    announced.members.remove(room);
                }
            }
        }
        if !present {
            self.announce_item(room.to_owned(), false, announced, inc)
                .await?;
        }
        Ok(())
    }

    /// Publishes a delta for `item` unless the others know already.
    async fn announce_item(
        &self,
        item: String,
        present: bool,
        announced: &mut Announced,
        inc: u64,
    ) -> Result<(), ClusterError> {
        if announced.items.contains(&item) == present {
            return Ok(());
        }
        let msg = OccMsg::Delta {
            node: self.id.clone(),
            inc,
            epoch: self.listed_epoch(),
            room: item.clone(),
            present,
        };
        self.publish(Topic::Cluster, &msg).await?;
        if present {
            announced.items.insert(item);
        } else {
            announced.items.remove(&item);
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
    use crate::tally::tests::view;

    #[test]
    fn edges_wait_until_every_member_answered() {
        let mut p = Picture::default();
        let mut e = Edges::new();
        p.on_view(&view(1, &[("n1", 1), ("n2", 2)]), "n1", &mut e);
        p.chunk(Claim::of("n2", 2), vec!["r".into()], (true, true), &mut e);
        assert_eq!(e, vec![("r".to_string(), true)], "counted all along");
        assert!(!p.ready, "n1 has not answered");
        p.chunk(Claim::of("n1", 1), vec![], (true, true), &mut e);
        assert!(p.ready);
    }

    #[test]
    fn a_member_that_left_the_view_vacates_its_rooms() {
        let mut p = Picture::default();
        let mut e = Edges::new();
        p.on_view(&view(1, &[("n1", 1), ("n2", 2)]), "n1", &mut e);
        p.tally.delta(Claim::of("n2", 2), "r".into(), true, &mut e);
        e.clear();
        p.on_view(&view(2, &[("n1", 1)]), "n1", &mut e);
        assert_eq!(e, vec![("r".to_string(), false)]);
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
