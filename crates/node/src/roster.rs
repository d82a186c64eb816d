//! Room rosters: which users are in a room on which node, cluster-wide, so
//! that sessions that joined with `"presence":true` get a `presence` frame
//! when a user's first session anywhere enters the room (`join`) and when
//! its last one leaves (`leave`).
//!
//! Two halves, one per node:
//!
//! * **Announcing** (every node, always): the node's *share* of a room is
//!   the set of users with a local session in it. When a session joins or
//!   leaves a room, the pair (room, user) is marked dirty; one task compares
//!   the share it last announced with the session table and publishes a
//!   delta to the room's topic for each difference. The same task answers
//!   queries with the whole announced share (in chunks), so a share and the
//!   deltas after it leave this node in order, and the broker keeps one
//!   publisher's order across topics. Failed publishes stay dirty and are
//!   retried; nothing queues without bound (the dirty set holds each pair
//!   once).
//! * **Watching** (only rooms with a local watcher): the first watcher of a
//!   room makes the node ask every node for its share (on the cluster
//!   topic); each answers on this node's topic. The roster is *ready* when
//!   every member answered (or after [`READY_WAIT`]); until then changes are
//!   recorded silently, afterwards a user whose count of nodes goes 0 → 1
//!   is a `join` and 1 → 0 a `leave`. A node that leaves the view (or
//!   comes back under a higher incarnation) has its share dropped, which is
//!   how a crash turns into `leave` events. After a broker reconnect the
//!   node asks again: the answers replace the shares and the differences
//!   are reported as events, so missed deltas are made up for.
//!
//! Memory: a node holds its own announced shares (its local room
//! memberships, once per user) and, for watched rooms only, every node's
//! share of them.

use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;
use tracing::debug;
use tungstenite::Utf8Bytes;
use wsring_cluster::{Broker, ClusterError, Membership, Topic, View, lock};
use wsring_protocol::{PresenceEvent, ServerFrame, Target};

use crate::rooms::{publish_bookkeeping, share_chunks};
use crate::sessions::{Outbound, SessionTable};
use crate::tally::{self, Claim, Edges, Tally};

/// How long the first watcher of a room waits for every node's share
/// before its join is answered (a node that does not answer by then, e.g.
/// one that just crashed, is not waited for).
pub(crate) const READY_WAIT: Duration = Duration::from_secs(2);

/// Users per share message: with ids of at most 128 bytes a chunk stays
/// far below every broker's message limit (NATS: 1 MiB by default).
const CHUNK: usize = 500;

/// Wait before publishing again after a failed publish.
const RETRY: Duration = Duration::from_millis(500);

/// What nodes tell each other about a room (the frame of an envelope with
/// [`Target::Roster`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "k", rename_all = "snake_case")]
enum RosterMsg {
    /// "Send me your share" (on the cluster topic).
    Query {
        /// The asking node.
        from: String,
    },
    /// Node `node` (under incarnation `inc`) has `user` in the room now, or
    /// no longer.
    Delta {
        node: String,
        inc: u64,
        user: String,
        present: bool,
    },
    /// One chunk of node `node`'s whole share; the chunks of one share are
    /// consecutive, `first` and `last` mark its ends.
    Share {
        node: String,
        inc: u64,
        users: Vec<String>,
        first: bool,
        last: bool,
    },
}

/// A watched room.
struct RoomRoster {
    /// Every node's users in the room.
    tally: Tally,
    /// Nodes whose whole share arrived since the room was first watched.
    answered: HashSet<String>,
    /// Whether changes are reported as events.
    ready: watch::Sender<bool>,
    /// Bumped whenever a message was applied (a session about to watch
    /// waits on it for its own presence).
    applied: watch::Sender<u64>,
    /// Sessions about to watch the room (not in the table's watchers yet):
    /// the roster is kept for them.
    pending: usize,
}

type Events = Vec<(String, PresenceEvent)>;

impl RoomRoster {
    fn new() -> RoomRoster {
        RoomRoster {
            tally: Tally::default(),
            answered: HashSet::new(),
            ready: watch::channel(false).0,
            applied: watch::channel(0).0,
            pending: 0,
        }
    }

    /// Whether `node`'s share has `user`.
    fn has(&self, node: &str, user: &str) -> bool {
        self.tally.has(node, user)
    }

    fn is_ready(&self) -> bool {
        *self.ready.borrow()
    }

    /// A user's node count going between none and some is an event once
    /// the roster is ready; before, changes are only recorded.
    fn report(&self, edges: Edges, events: &mut Events) {
        if self.is_ready() {
            events.extend(edges.into_iter().map(|(user, present)| {
                let ev = if present {
                    PresenceEvent::Join
                } else {
                    PresenceEvent::Leave
                };
                (user, ev)
            }));
        }
    }

    fn delta(&mut self, node: &str, inc: u64, user: String, present: bool, events: &mut Events) {
        let mut edges = Edges::new();
        self.tally
            .delta(Claim::of(node, inc), user, present, &mut edges);
        self.report(edges, events);
    }

    /// Replaces `node`'s share; the differences count like deltas.
    #[cfg(test)]
    fn replace(&mut self, node: &str, inc: u64, users: HashSet<String>, events: &mut Events) {
        let mut edges = Edges::new();
        self.tally.replace(Claim::of(node, inc), users, &mut edges);
        self.report(edges, events);
    }

    /// One chunk of `node`'s whole share.
    fn chunk(
        &mut self,
        node: &str,
        inc: u64,
        users: Vec<String>,
        ends: (bool, bool),
        events: &mut Events,
    ) -> bool {
        let mut edges = Edges::new();
        let whole = self
            .tally
            .chunk(Claim::of(node, inc), users, ends, &mut edges);
        self.report(edges, events);
        whole
    }

    #[cfg(test)]
    fn drop_node(&mut self, node: &str, events: &mut Events) {
        let mut edges = Edges::new();
        self.tally.drop_node(node, &mut edges);
        self.report(edges, events);
    }

    /// Ready once every member of `members` answered.
    fn check_ready(&mut self, members: &HashSet<String>) {
        if !self.is_ready() && members.iter().all(|m| self.answered.contains(m)) {
            self.ready.send_replace(true);
        }
    }
}

/// Changes waiting for the announcing task.
#[derive(Default)]
struct Outbox {
    /// (room, user) pairs whose local presence may have changed.
    dirty: HashSet<(String, String)>,
    /// Shares to send: (room, node that asked), or (room, `None`) to
    /// announce the whole share on the room's topic.
    shares: HashSet<(String, Option<String>)>,
}

/// The watched rooms and the members the last view had.
#[derive(Default)]
struct Watched {
    rooms: HashMap<String, RoomRoster>,
    members: HashSet<String>,
}

/// Keeps a room's roster for a session about to watch it (see
/// [`Roster::watch`]).
pub(crate) struct WatchGuard<'a> {
    roster: &'a Roster,
    room: String,
}

impl Drop for WatchGuard<'_> {
    fn drop(&mut self) {
        {
            let mut w = lock(&self.roster.watched);
            if let Some(r) = w.rooms.get_mut(&self.room) {
                r.pending = r.pending.saturating_sub(1);
            }
        }
        self.roster.release(&self.room);
    }
}

/// One node's rosters: both halves.
pub(crate) struct Roster {
    id: String,
    broker: Arc<dyn Broker>,
    table: Arc<SessionTable>,
    membership: Arc<Membership>,
    outbox: Mutex<Outbox>,
    wake: Notify,
    watched: Mutex<Watched>,
}

impl Roster {
    pub(crate) fn new(
        id: String,
        broker: Arc<dyn Broker>,
        table: Arc<SessionTable>,
        membership: Arc<Membership>,
    ) -> Arc<Roster> {
        let members = membership.view().doc.members.keys().cloned().collect();
        Arc::new(Roster {
            id,
            broker,
            table,
            membership,
            outbox: Mutex::new(Outbox::default()),
            wake: Notify::new(),
            watched: Mutex::new(Watched {
                rooms: HashMap::new(),
                members,
            }),
        })
    }

    /// Starts the announcing task and the view follower; both stop with
    /// `kill`.
    pub(crate) fn start(self: &Arc<Self>, kill: &CancellationToken) {
        tokio::spawn(Arc::clone(self).announce(kill.clone()));
        tokio::spawn(Arc::clone(self).follow_views(kill.clone()));
    }

    fn incarnation(&self) -> u64 {
        self.membership.incarnation().unwrap_or(0)
    }

    /// A session of `user` joined or left `room` (or ended): announce the
    /// change if the user's local presence in the room changed.
    pub(crate) fn touch(&self, room: &str, user: &str) {
        lock(&self.outbox)
            .dirty
            .insert((room.to_owned(), user.to_owned()));
        self.wake.notify_one();
    }

    /// A local session of `user` is about to watch `room` (it is a member
    /// already): makes sure the room's roster exists and returns once it is
    /// ready (every node answered, or [`READY_WAIT`] passed) and has this
    /// node's own announcement of `user`, so the session's own join is not
    /// reported to it. The roster is kept while the returned guard lives;
    /// make the session a watcher in the table before dropping it.
    pub(crate) async fn watch(&self, room: &str, user: &str) -> WatchGuard<'_> {
        let (mut ready, mut applied, created) = {
            let mut w = lock(&self.watched);
            let created = !w.rooms.contains_key(room);
            let r = w
                .rooms
                .entry(room.to_owned())
                .or_insert_with(RoomRoster::new);
            r.pending += 1;
            (r.ready.subscribe(), r.applied.subscribe(), created)
        };
        let guard = WatchGuard {
            roster: self,
            room: room.to_owned(),
        };
        if created && let Err(e) = self.ask(room).await {
            debug!(room, error = %e, "could not ask for the room's roster");
        }
        let settled = async {
            let _ = ready.wait_for(|r| *r).await;
            loop {
                let seen = lock(&self.watched)
                    .rooms
                    .get(room)
                    .is_none_or(|r| r.has(&self.id, user));
                if seen || applied.changed().await.is_err() {
                    return;
                }
            }
        };
        if tokio::time::timeout(READY_WAIT, settled).await.is_err()
            && let Some(r) = lock(&self.watched).rooms.get(room)
        {
            // Someone did not answer (it crashed, or its broker is down):
            // report from what arrived.
            r.ready.send_replace(true);
        }
        guard
    }

    /// Every user (member) in a watched `room` cluster-wide, as far as
    /// this node knows; empty for a room nobody here watches.
    pub(crate) fn members(&self, room: &str) -> Vec<String> {
        lock(&self.watched)
            .rooms
            .get(room)
            .map(|r| r.tally.counts.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Forgets `room`'s roster unless a local session watches it or is
    /// about to.
    pub(crate) fn release(&self, room: &str) {
        let mut w = lock(&self.watched);
        // Decided under the roster lock, after the table changed: a new
        // watcher either shows in the table here, or holds a guard.
        if !self.table.has_watchers(room) && w.rooms.get(room).is_some_and(|r| r.pending == 0) {
            w.rooms.remove(room);
        }
    }

    /// Asks every node for its share of `room`.
    async fn ask(&self, room: &str) -> Result<(), ClusterError> {
        let msg = RosterMsg::Query {
            from: self.id.clone(),
        };
        self.publish(Topic::Cluster, room, &msg).await
    }

    /// After a broker reconnect: deltas may have been missed, so every
    /// watched room is asked for again.
    pub(crate) fn resync(self: &Arc<Self>) {
        let rooms: Vec<String> = lock(&self.watched).rooms.keys().cloned().collect();
        if rooms.is_empty() {
            return;
        }
        let me = Arc::clone(self);
        tokio::spawn(async move {
            for room in rooms {
                if let Err(e) = me.ask(&room).await {
                    debug!(room, error = %e, "could not ask for the room's roster again");
                }
            }
        });
    }

    /// A roster message from the broker.
    pub(crate) fn on_message(&self, room: &str, body: &[u8]) {
        let msg: RosterMsg = match serde_json::from_slice(body) {
            Ok(m) => m,
            Err(e) => {
                debug!(room, error = %e, "ignoring an unreadable roster message");
                return;
            }
        };
        if let RosterMsg::Query { from } = msg {
            lock(&self.outbox)
                .shares
                .insert((room.to_owned(), Some(from)));
            self.wake.notify_one();
            return;
        }
        let mut events = Events::new();
        {
            let mut w = lock(&self.watched);
            let Watched { rooms, members } = &mut *w;
            match msg {
                RosterMsg::Query { .. } => return,
                RosterMsg::Delta {
                    node,
                    inc,
                    user,
                    present,
                } => {
                    let Some(r) = rooms.get_mut(room) else { return };
                    r.delta(&node, inc, user, present, &mut events);
                    r.applied.send_modify(|n| *n += 1);
                }
                RosterMsg::Share {
                    node,
                    inc,
                    users,
                    first,
                    last,
                } => {
                    let Some(r) = rooms.get_mut(room) else { return };
                    if r.chunk(&node, inc, users, (first, last), &mut events) {
                        r.answered.insert(node);
                        r.check_ready(members);
                        r.applied.send_modify(|n| *n += 1);
                    }
                }
            }
        }
        self.deliver(room, events);
    }

    /// Follows the membership view: nodes that left, or came back under a
    /// newer incarnation, lose their shares.
    async fn follow_views(self: Arc<Self>, kill: CancellationToken) {
        let mut views = self.membership.subscribe();
        loop {
            tokio::select! {
                _ = kill.cancelled() => return,
                changed = views.changed() => if changed.is_err() { return },
            }
            let view = views.borrow_and_update().clone();
            self.on_view(&view);
        }
    }

    fn on_view(&self, view: &View) {
        let mut out: Vec<(String, Events)> = Vec::new();
        {
            let mut w = lock(&self.watched);
            let now: HashSet<String> = view.doc.members.keys().cloned().collect();
            let gone: HashSet<String> = w.members.difference(&now).cloned().collect();
            w.members = now;
            let Watched { rooms, members } = &mut *w;
            for (room, r) in rooms.iter_mut() {
                let mut events = Events::new();
                let mut edges = Edges::new();
                r.tally.on_view(view, &gone, &self.id, &mut edges);
                r.report(edges, &mut events);
                r.check_ready(members);
                if !events.is_empty() {
                    out.push((room.clone(), events));
                }
            }
        }
        for (room, events) in out {
            self.deliver(&room, events);
        }
        // Our own claim may have changed: the announcing task checks.
        self.wake.notify_one();
    }

    /// Hands `presence` frames to the room's local watchers.
    fn deliver(&self, room: &str, events: Events) {
        let events = tally::net(events);
        if events.is_empty() {
            return;
        }
        let watchers = self.table.watchers(room);
        for (user, event) in events {
            let frame = ServerFrame::Presence {
                room,
                user: &user,
                event,
            }
            .to_json();
            let item = Outbound::Frame(Utf8Bytes::from(frame));
            for h in &watchers {
                h.offer(item.clone());
            }
        }
    }

    async fn publish(&self, topic: Topic, room: &str, msg: &RosterMsg) -> Result<(), ClusterError> {
        let target = Target::Roster {
            room: room.to_owned(),
        };
        publish_bookkeeping(&*self.broker, &topic, target, msg).await
    }

    /// The announcing task: publishes what the table says changed, and the
    /// shares asked for, in that order, one at a time.
    async fn announce(self: Arc<Self>, kill: CancellationToken) {
        let mut announced: HashMap<String, HashSet<String>> = HashMap::new();
        let mut inc = self.incarnation();
        let mut retry = false;
        loop {
            tokio::select! {
                _ = kill.cancelled() => return,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(RETRY), if retry => {}
            }
            let now = self.incarnation();
            if now != inc {
                // Under a new claim the others drop what we told them under
                // the old one: tell them again.
                inc = now;
                let mut ob = lock(&self.outbox);
                for room in announced.keys() {
                    ob.shares.insert((room.clone(), None));
                }
            }
            retry = match self.flush(&mut announced, inc).await {
                Ok(()) => false,
                Err(e) => {
                    debug!(node = %self.id, error = %e, "roster publish failed; retrying");
                    true
                }
            };
        }
    }

    async fn flush(
        &self,
        announced: &mut HashMap<String, HashSet<String>>,
        inc: u64,
    ) -> Result<(), ClusterError> {
        let (dirty, shares) = {
            let mut ob = lock(&self.outbox);
            (
                std::mem::take(&mut ob.dirty),
                std::mem::take(&mut ob.shares),
            )
        };
        let mut dirty = dirty.into_iter();
        while let Some((room, user)) = dirty.next() {
            let actual = self.table.user_in_room(&user, &room);
            let known = announced.get(&room).is_some_and(|u| u.contains(&user));
            if actual == known {
                continue;
            }
            let msg = RosterMsg::Delta {
                node: self.id.clone(),
                inc,
                user: user.clone(),
                present: actual,
            };
            if let Err(e) = self.publish(Topic::Room(room.clone()), &room, &msg).await {
                let mut ob = lock(&self.outbox);
                ob.dirty.insert((room, user));
                ob.dirty.extend(dirty);
                ob.shares.extend(shares);
                return Err(e);
            }
            if actual {
                announced.entry(room).or_default().insert(user);
            } else if let Some(users) = announced.get_mut(&room) {
                users.remove(&user);
                if users.is_empty() {
                    announced.remove(&room);
                }
            }
        }
        let mut shares = shares.into_iter();
        while let Some((room, to)) = shares.next() {
            let users: Vec<String> = announced
                .get(&room)
                .map(|u| u.iter().cloned().collect())
                .unwrap_or_default();
            if let Err(e) = self.send_share(&room, to.as_deref(), users, inc).await {
                let mut ob = lock(&self.outbox);
                ob.shares.insert((room, to));
                ob.shares.extend(shares);
                return Err(e);
            }
        }
        Ok(())
    }

    /// Sends this node's share of `room` to node `to` (or to the room's
    /// topic), in chunks of [`CHUNK`] users; an empty share is one chunk.
    async fn send_share(
        &self,
        room: &str,
        to: Option<&str>,
        users: Vec<String>,
        inc: u64,
    ) -> Result<(), ClusterError> {
        let topic = match to {
            Some(node) => Topic::Node(node.to_owned()),
            None => Topic::Room(room.to_owned()),
        };
        for (chunk, first, last) in share_chunks(&users, CHUNK) {
            let msg = RosterMsg::Share {
                node: self.id.clone(),
                inc,
                users: chunk.to_vec(),
                first,
                last,
            };
            self.publish(topic.clone(), room, &msg).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tally::net;
    use bytes::Bytes;
    use wsring_protocol::Envelope;

    fn ready_roster() -> RoomRoster {
        let r = RoomRoster::new();
        r.ready.send_replace(true);
        r
    }

    fn users(list: &[&str]) -> HashSet<String> {
        list.iter().map(|u| (*u).to_owned()).collect()
    }

    #[test]
    fn user_level_events_count_nodes_not_sessions() {
        let mut r = ready_roster();
        let mut ev = Events::new();
        r.delta("n1", 1, "alice".into(), true, &mut ev);
        r.delta("n2", 1, "alice".into(), true, &mut ev);
        assert_eq!(ev, vec![("alice".to_string(), PresenceEvent::Join)]);
        ev.clear();
        r.delta("n1", 1, "alice".into(), false, &mut ev);
        assert!(ev.is_empty(), "alice is still on n2");
        r.delta("n1", 1, "alice".into(), false, &mut ev);
        assert!(ev.is_empty(), "a repeated delta changes nothing");
        r.delta("n2", 1, "alice".into(), false, &mut ev);
        assert_eq!(ev, vec![("alice".to_string(), PresenceEvent::Leave)]);
    }

    #[test]
    fn nothing_is_reported_before_ready() {
        let mut r = RoomRoster::new();
        let mut ev = Events::new();
        r.replace("n1", 1, users(&["a", "b"]), &mut ev);
        assert!(ev.is_empty());
        r.answered.insert("n1".into());
        r.check_ready(&users(&["n1", "n2"]));
        assert!(!r.is_ready(), "n2 has not answered");
        r.check_ready(&users(&["n1"]));
        assert!(r.is_ready());
        r.replace("n1", 1, users(&["b", "c"]), &mut ev);
        ev.sort_by(|x, y| x.0.cmp(&y.0));
        assert_eq!(
            ev,
            vec![
                ("a".to_string(), PresenceEvent::Leave),
                ("c".to_string(), PresenceEvent::Join)
            ]
        );
    }

    #[test]
    fn a_newer_incarnation_replaces_and_an_older_is_ignored() {
        let mut r = ready_roster();
        let mut ev = Events::new();
        r.replace("n1", 5, users(&["a", "b"]), &mut ev);
        ev.clear();
        r.delta("n1", 4, "c".into(), true, &mut ev);
        assert!(ev.is_empty(), "a message from an older claim is stale");
        r.delta("n1", 6, "a".into(), true, &mut ev);
        assert_eq!(
            net(std::mem::take(&mut ev)),
            vec![("b".to_string(), PresenceEvent::Leave)],
            "the new claim starts from nothing: b left, a stayed"
        );
        ev.clear();
        r.drop_node("n1", &mut ev);
        assert_eq!(ev, vec![("a".to_string(), PresenceEvent::Leave)]);
        assert!(r.tally.counts.is_empty() && r.tally.shares.is_empty());
    }

    use crate::cmd::Join;
    use crate::node::testing::TestNode;
    use serde_json::{Value, json};

    /// Joins `room` with presence events, as a client would.
    async fn watch_room(t: &TestNode, user: &str, room: &str) -> crate::outbox::Receiver {
        let (mut s, rx) = t.live_state(user);
        let o = Join {
            room: room.into(),
            id: Some(wsring_protocol::MsgId::Int(1)),
            resume: None,
            epoch: None,
            presence: Some(true),
        }
        .apply(&mut s, &t.node)
        .await;
        assert_eq!(o.reply.as_deref(), Some(r#"{"type":"ack","id":1}"#));
        rx
    }

    fn presence(user: &str, event: &str) -> Value {
        json!({"type":"presence","room":"r","user":user,"event":event})
    }

    #[tokio::test]
    async fn watchers_hear_each_user_once_whatever_its_sessions() {
        let t = TestNode::start(TestNode::config()).await;
        let mut w = watch_room(&t, "watcher", "r").await;
        let (a1, _r1) = t.session("alice");
        let (a2, _r2) = t.session("alice");
        t.node.join_room(&a1, "r").await.expect("join");
        assert_eq!(
            TestNode::next_message(&mut w).await,
            presence("alice", "join")
        );
        t.node.join_room(&a2, "r").await.expect("join");
        t.node.leave_room(&a1, "r");
        t.node.remove_session(&a2).await;
        assert_eq!(
            TestNode::next_message(&mut w).await,
            presence("alice", "leave")
        );
        let (b, _rb) = t.session("bob");
        t.node.join_room(&b, "r").await.expect("join");
        assert_eq!(
            TestNode::next_message(&mut w).await,
            presence("bob", "join"),
            "alice's second session was no event"
        );
    }

    #[tokio::test]
    async fn a_watchers_own_join_is_not_news_to_it() {
        let t = TestNode::start(TestNode::config()).await;
        let mut first = watch_room(&t, "first", "r").await;
        // The roster exists and is ready: the second watcher's own join
        // reaches the first one only.
        let mut second = watch_room(&t, "second", "r").await;
        assert_eq!(
            TestNode::next_message(&mut first).await,
            presence("second", "join")
        );
        let (c, _rc) = t.session("carol");
        t.node.join_room(&c, "r").await.expect("join");
        assert_eq!(
            TestNode::next_message(&mut second).await,
            presence("carol", "join")
        );
        assert_eq!(
            TestNode::next_message(&mut first).await,
            presence("carol", "join")
        );
    }

    fn roster_envelope(msg: &RosterMsg) -> Bytes {
        Envelope {
            target: Target::Roster { room: "r".into() },
            seq: None,
            stream_epoch: None,
            frame: Bytes::from(serde_json::to_vec(msg).expect("json")),
        }
        .encode()
    }

    /// The next roster query a peer connection sees.
    async fn next_query(inbox: &mut wsring_cluster::Inbox) -> String {
        loop {
            let ev = tokio::time::timeout(Duration::from_secs(5), inbox.recv())
                .await
                .expect("a query within 5 s")
                .expect("inbox open");
            if let wsring_cluster::BrokerEvent::Message { payload, .. } = ev
                && let Ok(env) = Envelope::decode(payload)
                && let Ok(RosterMsg::Query { from }) = serde_json::from_slice(&env.frame)
            {
                return from;
            }
        }
    }

    #[tokio::test]
    async fn what_a_broker_outage_hid_is_asked_for_again() {
        let t = TestNode::start(TestNode::config()).await;
        // Another node, in so far as the roster sees it.
        let (peer, mut peer_inbox) = t.backend.hub.connect();
        peer.subscribe(&Topic::Cluster).await.expect("subscribe");
        let mut w = watch_room(&t, "watcher", "r").await;
        assert_eq!(next_query(&mut peer_inbox).await, "n1");
        // A delta the node misses: its connection is down.
        t.broker.sever().await;
        let delta = RosterMsg::Delta {
            node: "n9".into(),
            inc: 1,
            user: "zed".into(),
            present: true,
        };
        peer.publish(&Topic::Room("r".into()), roster_envelope(&delta))
            .await
            .expect("publish");
        t.broker.restore().await;
        // Back up, the node asks again; the peer's answer carries zed.
        assert_eq!(next_query(&mut peer_inbox).await, "n1");
        let share = RosterMsg::Share {
            node: "n9".into(),
            inc: 1,
            users: vec!["zed".into()],
            first: true,
            last: true,
        };
        peer.publish(&Topic::Node("n1".into()), roster_envelope(&share))
            .await
            .expect("publish");
        assert_eq!(
            TestNode::next_message(&mut w).await,
            presence("zed", "join")
        );
        // The same share again is no news.
        peer.publish(&Topic::Node("n1".into()), roster_envelope(&share))
            .await
            .expect("publish");
        let (b, _rb) = t.session("bob");
        t.node.join_room(&b, "r").await.expect("join");
        assert_eq!(
            TestNode::next_message(&mut w).await,
            presence("bob", "join")
        );
    }

    #[test]
    fn messages_have_a_stable_wire_form() {
        let m = RosterMsg::Delta {
            node: "n1".into(),
            inc: 3,
            user: "u".into(),
            present: true,
        };
        let text = serde_json::to_string(&m).expect("json");
        assert_eq!(
            text,
            r#"{"k":"delta","node":"n1","inc":3,"user":"u","present":true}"#
        );
        assert_eq!(serde_json::from_str::<RosterMsg>(&text).expect("parse"), m);
    }
}
