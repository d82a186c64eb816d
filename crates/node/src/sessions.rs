//! The node's table of local sessions, indexed by user, by room and by the
//! rooms sessions watch for `presence` events.
//!
//! One std `Mutex` guards all four indexes: every operation is a few hash
//! map updates, far shorter than any await, and a single lock keeps them
//! consistent (a session is never in a room index without being in the
//! session index). Fan-out clones the recipients' handles under the lock and
//! sends outside it.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tungstenite::Utf8Bytes;
use wsring_cluster::StreamName;

/// A durable message on its way to a session: its stream position decides
/// whether it is delivered, dropped as a duplicate, or triggers a gap fill.
#[derive(Debug)]
pub(crate) struct StreamMsg {
    pub stream: StreamName,
    pub seq: u64,
    pub epoch: Arc<str>,
    pub frame: Utf8Bytes,
}

/// Work for a session task.
#[derive(Debug, Clone)]
pub(crate) enum Outbound {
    /// A ready frame (non-durable messages, broadcasts).
    Frame(Utf8Bytes),
    /// A durable message.
    Stream(Arc<StreamMsg>),
    /// The user moved: send `moved`, close 1012.
    Moved { epoch: u64, retry_after_ms: u64 },
    /// The broker reconnected: re-read streams from the store after the cursors.
    Resync,
    /// Read the user's server-side rooms again (they could not be read at
    /// connect) and join them.
    LoadServerRooms,
    /// Close with this code and reason (server shutdown, a session cap).
    Close(u16, Cow<'static, str>),
    /// `/api/disconnect`: close with this application code and reason.
    Disconnect(u16, Arc<str>, Completion),
    /// The server put the session's user in this room
    /// (`/api/rooms/{room}/join`): join it and say so.
    ServerJoin(Arc<str>, Completion),
    /// The server took the session's user out of this room
    /// (`/api/rooms/{room}/leave`): leave it and say so.
    ServerLeave(Arc<str>, Completion),
}

/// Carried by queued work an API call waits for. Nobody sends on it: the
/// call sees its [`Waiter`] close once every copy was dropped, that is once
/// every session carried out its item (or ended without it).
#[derive(Debug, Clone)]
pub(crate) struct Completion {
    _alive: mpsc::Sender<()>,
}

/// The API call's half of a [`Completion`].
pub(crate) struct Waiter(mpsc::Receiver<()>);

/// A completion for work about to be queued, and its waiter.
pub(crate) fn completion() -> (Completion, Waiter) {
    let (tx, rx) = mpsc::channel(1);
    (Completion { _alive: tx }, Waiter(rx))
}

impl Waiter {
    /// Waits until every copy of the completion was dropped, at most
    /// `bound`; whether they all were. Drop the caller's own copy first.
    pub(crate) async fn wait(mut self, bound: std::time::Duration) -> bool {
        tokio::time::timeout(bound, self.0.recv()).await.is_ok()
    }
}

impl Outbound {
    /// The payload bytes this item holds while queued.
    pub fn bytes(&self) -> usize {
        match self {
            Outbound::Frame(f) => f.len(),
            Outbound::Stream(m) => m.frame.len(),
            Outbound::Moved { .. }
            | Outbound::Resync
            | Outbound::LoadServerRooms
            | Outbound::Close(..)
            | Outbound::Disconnect(..)
            | Outbound::ServerJoin(..)
            | Outbound::ServerLeave(..) => 0,
        }
    }
}

/// The protocol a session speaks: how its deliveries are written, and
/// where it may be placed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum Codec {
    /// wsring's own protocol at `/ws`: placed by user (hash routing) or
    /// anywhere (broadcast routing).
    #[default]
    Native,
    /// The Pusher Channels protocol at `/app/{key}`: its connections have
    /// no user at the upgrade, so they are placed by load whatever the
    /// routing mode.
    Pusher,
}

/// A handle to one live session.
#[derive(Debug, Clone)]
pub(crate) struct SessionHandle {
    pub id: Arc<str>,
    pub user: Arc<str>,
    /// The protocol the session speaks.
    pub codec: Codec,
    pub tx: crate::outbox::Sender,
    /// Cancelled when the session's queue overflows (slow consumer).
    pub kick: CancellationToken,
    /// Set once a rebalance has told this session to move, so overlapping
    /// rebalances (a drain and the view change it causes) move it once.
    pub moving: Arc<std::sync::atomic::AtomicBool>,
    /// Payload bytes queued and not yet taken by the session task.
    pub queued: Arc<AtomicUsize>,
    /// Most bytes that may be queued ([`NodeConfig::session_queue_bytes`](crate::NodeConfig)).
    pub budget: usize,
}

impl SessionHandle {
    /// A handle whose queue is `tx`, holding at most `budget` bytes.
    pub fn new(id: Arc<str>, user: Arc<str>, tx: crate::outbox::Sender, budget: usize) -> Self {
        SessionHandle {
            id,
            user,
            codec: Codec::Native,
            tx,
            kick: CancellationToken::new(),
            moving: Arc::default(),
            queued: Arc::default(),
            budget,
        }
    }

    /// The same handle for a session speaking `codec`.
    pub fn with_codec(mut self, codec: Codec) -> Self {
        self.codec = codec;
        self
    }

    /// Queues work without waiting. A full queue (by frames or by bytes)
    /// means the client cannot keep up; it is closed (1008) rather than
    /// allowed to hold memory or stall fan-out for everyone else. In durable
    /// mode it resumes without loss.
    pub fn offer(&self, item: Outbound) -> bool {
        let n = item.bytes();
        if n > 0 {
            let before = self.queued.fetch_add(n, Ordering::AcqRel);
            if before + n > self.budget {
                self.queued.fetch_sub(n, Ordering::AcqRel);
                self.kick.cancel();
                return false;
            }
        }
        match self.tx.try_send(item) {
            Ok(()) => true,
            Err(crate::outbox::TrySendError::Full) => {
                self.queued.fetch_sub(n, Ordering::AcqRel);
                self.kick.cancel();
                false
            }
            Err(crate::outbox::TrySendError::Closed) => {
                self.queued.fetch_sub(n, Ordering::AcqRel);
                false
            }
        }
    }

    /// The session task took `item` off the queue.
    pub fn taken(&self, item: &Outbound) {
        self.queued.fetch_sub(item.bytes(), Ordering::AcqRel);
    }
}

/// What a [`SessionTable::join`] changed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Joined {
    /// The session was not in the room before.
    pub added: bool,
    /// The room had no local member before: subscribe the node.
    pub first_local: bool,
}

/// What a [`SessionTable::leave`] changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Left {
    /// The member the session was in the room as, if not its user (see
    /// [`SessionTable::join_as`]).
    pub member: Option<Arc<str>>,
    /// The session was in the room.
    pub was_member: bool,
    /// The room has no local member now: unsubscribe the node.
    pub emptied: bool,
    /// The room has no local session watching its presence now.
    pub unwatched: bool,
}

/// What a [`SessionTable::remove`] changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Removed {
    /// Every room the session was in.
    pub rooms: Vec<String>,
    /// Rooms that have no local member now.
    pub emptied: Vec<String>,
    /// Rooms that have no local session watching their presence now.
    pub unwatched: Vec<String>,
    /// Rooms the session was in as another member than its user, and as
    /// whom.
    pub members: Vec<(String, Arc<str>)>,
}

struct Entry {
    handle: SessionHandle,
    /// Boxed, and only while the session is in a room: the table holds an
    /// entry per session, most in none.
    rooms: Option<Box<Memberships>>,
    /// Insertion order, to tell a user's oldest session.
    order: u64,
}

#[derive(Default)]
struct Memberships {
    rooms: HashSet<String>,
    /// Rooms (a subset of `rooms`) whose presence events this session gets.
    watching: HashSet<String>,
    /// Rooms (a subset of `rooms`) the session is in as another member
    /// than its user (a Pusher presence channel's `user_id`).
    members: HashMap<String, Arc<str>>,
}

impl Entry {
    fn is_in(&self, room: &str) -> bool {
        self.rooms.as_ref().is_some_and(|m| m.rooms.contains(room))
    }

    fn room_count(&self) -> usize {
        self.rooms.as_ref().map_or(0, |m| m.rooms.len())
    }

    /// The member the session is in `room` as, if not its user.
    fn member_in(&self, room: &str) -> Option<&Arc<str>> {
        self.rooms.as_ref().and_then(|m| m.members.get(room))
    }

    fn memberships(&mut self) -> &mut Memberships {
        self.rooms.get_or_insert_with(Box::default)
    }

    /// Gives the memberships back once the session is in no room.
    fn tidy(&mut self) {
        if self.rooms.as_ref().is_some_and(|m| m.rooms.is_empty()) {
            self.rooms = None;
        }
    }
}

#[derive(Default)]
struct Tables {
    sessions: HashMap<Arc<str>, Entry>,
    /// A user's session ids (a handful at most: sessions per user are
    /// capped).
    users: HashMap<Arc<str>, Vec<Arc<str>>>,
    rooms: HashMap<String, HashSet<Arc<str>>>,
    watchers: HashMap<String, HashSet<Arc<str>>>,
    /// Per room, the members sessions are in it as (other than their
    /// users), with their number of local sessions.
    aliases: HashMap<String, HashMap<Arc<str>, u32>>,
    next_order: u64,
}

impl Tables {
    /// Takes session `id` off `room`'s watchers; true if it was the last.
    fn unwatch(&mut self, id: &str, room: &str) -> bool {
        let Some(set) = self.watchers.get_mut(room) else {
            return false;
        };
        if !set.remove(id) {
            return false;
        }
        if set.is_empty() {
            self.watchers.remove(room);
            return true;
        }
        false
    }

    /// One session less is in `room` as `member`.
    fn unalias(&mut self, room: &str, member: &Arc<str>) {
        let Some(members) = self.aliases.get_mut(room) else {
            return;
        };
        if let Some(n) = members.get_mut(member) {
            *n -= 1;
            if *n == 0 {
                members.remove(member);
            }
        }
        if members.is_empty() {
            self.aliases.remove(room);
        }
    }
}

/// All local sessions of a node.
#[derive(Default)]
pub(crate) struct SessionTable {
    inner: Mutex<Tables>,
}

impl SessionTable {
    fn lock(&self) -> std::sync::MutexGuard<'_, Tables> {
        wsring_cluster::lock(&self.inner)
    }

    #[cfg(test)]
    pub fn insert(&self, handle: SessionHandle) {
        self.insert_capped(handle, usize::MAX);
    }

    /// Inserts a session; if its user now holds more than `max` sessions
    /// that were not already told to leave, returns the oldest ones over the
    /// cap, marked as leaving, for the caller to close.
    pub fn insert_capped(&self, handle: SessionHandle, max: usize) -> Vec<SessionHandle> {
        let mut t = self.lock();
        let order = t.next_order;
        t.next_order += 1;
        let user = Arc::clone(&handle.user);
        let ids = t.users.entry(Arc::clone(&user)).or_default();
        if !ids.contains(&handle.id) {
            ids.push(Arc::clone(&handle.id));
        }
        t.sessions.insert(
            Arc::clone(&handle.id),
            Entry {
                handle,
                rooms: None,
                order,
            },
        );
        let Some(ids) = t.users.get(&user) else {
            return Vec::new();
        };
        let mut staying: Vec<&Entry> = ids
            .iter()
            .filter_map(|id| t.sessions.get(id))
            .filter(|e| !e.handle.moving.load(Ordering::Acquire))
            .collect();
        if staying.len() <= max {
            return Vec::new();
        }
        staying.sort_by_key(|e| e.order);
        let excess = staying.len() - max;
        staying[..excess]
            .iter()
            .map(|e| {
                e.handle.moving.store(true, Ordering::Release);
                e.handle.clone()
            })
            .collect()
    }

    /// Removes a session; says which rooms it was in and which now have no
    /// local member or watcher.
    pub fn remove(&self, id: &str) -> Removed {
        let mut t = self.lock();
        let Some(entry) = t.sessions.remove(id) else {
            return Removed::default();
        };
        if let Some(ids) = t.users.get_mut(&entry.handle.user) {
            ids.retain(|s| &**s != id);
            if ids.is_empty() {
                t.users.remove(&entry.handle.user);
            }
        }
        let mut out = Removed::default();
        let Memberships {
            rooms,
            watching,
            members,
        } = entry.rooms.map(|m| *m).unwrap_or_default();
        for room in &watching {
            if t.unwatch(id, room) {
                out.unwatched.push(room.clone());
            }
        }
        for (room, member) in members {
            t.unalias(&room, &member);
            out.members.push((room, member));
        }
        for room in rooms {
            if let Some(set) = t.rooms.get_mut(&room) {
                set.remove(id);
                if set.is_empty() {
                    t.rooms.remove(&room);
                    out.emptied.push(room.clone());
                }
            }
            out.rooms.push(room);
        }
        out
    }

    /// Adds a session to a room.
    #[cfg(test)]
    pub fn join(&self, id: &str, room: &str) -> Joined {
        self.join_as(id, room, None)
    }

    /// Adds a session to a room, as `member` rather than as its user when
    /// given: rosters and member counts then count it under that name (a
    /// Pusher presence channel's `user_id`). A session already in the room
    /// keeps the member it joined as.
    pub fn join_as(&self, id: &str, room: &str, member: Option<Arc<str>>) -> Joined {
        let mut t = self.lock();
        let Some(entry) = t.sessions.get_mut(id) else {
            return Joined::default();
        };
        let m = entry.memberships();
        let added = m.rooms.insert(room.to_owned());
        let member = member.filter(|_| added);
        if let Some(member) = &member {
            m.members.insert(room.to_owned(), Arc::clone(member));
        }
        let sid = Arc::clone(&entry.handle.id);
        if let Some(member) = member {
            *t.aliases
                .entry(room.to_owned())
                .or_default()
                .entry(member)
                .or_default() += 1;
        }
        let set = t.rooms.entry(room.to_owned()).or_default();
        let first_local = set.is_empty();
        set.insert(sid);
        Joined { added, first_local }
    }

    /// Whether a session is in a room.
    pub fn is_in(&self, id: &str, room: &str) -> bool {
        self.lock().sessions.get(id).is_some_and(|e| e.is_in(room))
    }

    /// Rooms a session is in.
    pub fn room_count(&self, id: &str) -> usize {
        self.lock().sessions.get(id).map_or(0, Entry::room_count)
    }

    /// Removes a session from a room (and from its watchers).
    pub fn leave(&self, id: &str, room: &str) -> Left {
        let mut t = self.lock();
        let Some(entry) = t.sessions.get_mut(id) else {
            return Left::default();
        };
        let Some(m) = entry.rooms.as_deref_mut() else {
            return Left::default();
        };
        if !m.rooms.remove(room) {
            return Left::default();
        }
        let watched = m.watching.remove(room);
        let member = m.members.remove(room);
        entry.tidy();
        let unwatched = watched && t.unwatch(id, room);
        if let Some(member) = &member {
            t.unalias(room, member);
        }
        let mut emptied = false;
        if let Some(set) = t.rooms.get_mut(room) {
            set.remove(id);
            if set.is_empty() {
                t.rooms.remove(room);
                emptied = true;
            }
        }
        Left {
            member,
            was_member: true,
            emptied,
            unwatched,
        }
    }

    /// Turns a member session's `presence` events for `room` on or off;
    /// returns true when that left the room without any local watcher.
    /// A session that is not in the room cannot watch it.
    pub fn set_presence(&self, id: &str, room: &str, on: bool) -> bool {
        let mut t = self.lock();
        let Some(entry) = t.sessions.get_mut(id) else {
            return false;
        };
        if on {
            if !entry.is_in(room) || !entry.memberships().watching.insert(room.to_owned()) {
                return false;
            }
            let sid = Arc::clone(&entry.handle.id);
            t.watchers.entry(room.to_owned()).or_default().insert(sid);
            false
        } else {
            let watched = entry
                .rooms
                .as_deref_mut()
                .is_some_and(|m| m.watching.remove(room));
            watched && t.unwatch(id, room)
        }
    }

    /// Whether a local session watches `room`'s presence.
    pub fn has_watchers(&self, room: &str) -> bool {
        self.lock().watchers.contains_key(room)
    }

    /// The local sessions watching `room`'s presence.
    pub fn watchers(&self, room: &str) -> Vec<SessionHandle> {
        let t = self.lock();
        t.watchers
            .get(room)
            .map(|ids| Self::handles(&t, ids.iter()))
            .unwrap_or_default()
    }

    /// Whether `user` has a local session in `room` (as itself, or a
    /// session is in it as member `user`).
    pub fn user_in_room(&self, user: &str, room: &str) -> bool {
        let t = self.lock();
        if t.aliases.get(room).is_some_and(|m| m.contains_key(user)) {
            return true;
        }
        t.users.get(user).is_some_and(|ids| {
            ids.iter().any(|id| {
                t.sessions
                    .get(id)
                    .is_some_and(|e| e.is_in(room) && e.member_in(room).is_none())
            })
        })
    }

    /// The rooms with a local member.
    pub fn room_names(&self) -> Vec<String> {
        self.lock().rooms.keys().cloned().collect()
    }

    /// Each local user in `room` with its number of sessions there.
    pub fn room_counts(&self, room: &str) -> BTreeMap<String, u64> {
        let t = self.lock();
        let mut out: BTreeMap<String, u64> = BTreeMap::new();
        for id in t.rooms.get(room).into_iter().flatten() {
            if let Some(e) = t.sessions.get(id) {
                let member = e.member_in(room).unwrap_or(&e.handle.user);
                *out.entry(member.to_string()).or_default() += 1;
            }
        }
        out
    }

    /// Whether the room currently has a local member.
    pub fn has_room(&self, room: &str) -> bool {
        self.lock().rooms.contains_key(room)
    }

    fn handles<'a>(t: &'a Tables, ids: impl Iterator<Item = &'a Arc<str>>) -> Vec<SessionHandle> {
        ids.filter_map(|id| t.sessions.get(id).map(|e| e.handle.clone()))
            .collect()
    }

    pub fn user_sessions(&self, user: &str) -> Vec<SessionHandle> {
        let t = self.lock();
        t.users
            .get(user)
            .map(|ids| Self::handles(&t, ids.iter()))
            .unwrap_or_default()
    }

    pub fn room_sessions(&self, room: &str) -> Vec<SessionHandle> {
        let t = self.lock();
        t.rooms
            .get(room)
            .map(|ids| Self::handles(&t, ids.iter()))
            .unwrap_or_default()
    }

    pub fn all(&self) -> Vec<SessionHandle> {
        self.lock()
            .sessions
            .values()
            .map(|e| e.handle.clone())
            .collect()
    }

    pub fn len(&self) -> usize {
        self.lock().sessions.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handle(id: &str, user: &str) -> (SessionHandle, crate::outbox::Receiver) {
        let (tx, rx) = crate::outbox::channel(4);
        (SessionHandle::new(id.into(), user.into(), tx, 100), rx)
    }

    fn frame(n: usize) -> Outbound {
        Outbound::Frame(Utf8Bytes::from("x".repeat(n)))
    }

    #[test]
    fn the_byte_budget_closes_a_slow_reader() {
        let (h, mut rx) = handle("s1", "alice");
        assert!(h.offer(frame(60)));
        assert!(h.offer(frame(40)), "exactly at the budget fits");
        assert!(!h.kick.is_cancelled());
        assert!(!h.offer(frame(1)), "one byte past the budget is refused");
        assert!(
            h.kick.is_cancelled(),
            "and the session is told to close (1008)"
        );
        assert_eq!(h.queued.load(Ordering::Acquire), 100);
        // What the session takes off the queue frees budget.
        let item = rx.try_recv().expect("queued");
        h.taken(&item);
        assert_eq!(h.queued.load(Ordering::Acquire), 40);
        // Control items cost nothing.
        assert!(h.offer(Outbound::Resync));
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiter_sees_every_copy_go() {
        let (done, waiter) = completion();
        let copies = vec![done.clone(), done.clone()];
        drop(done);
        let waited = tokio::spawn(waiter.wait(std::time::Duration::from_secs(1)));
        tokio::task::yield_now().await;
        assert!(!waited.is_finished(), "two copies are still queued");
        drop(copies);
        assert!(waited.await.expect("task"), "all dropped: done in time");
        let (held, waiter) = completion();
        assert!(
            !waiter.wait(std::time::Duration::from_secs(1)).await,
            "bounded"
        );
        drop(held);
    }

    #[test]
    fn the_frame_cap_still_applies() {
        let (h, _rx) = handle("s1", "alice");
        for _ in 0..4 {
            assert!(h.offer(frame(1)));
        }
        assert!(!h.offer(frame(1)));
        assert!(h.kick.is_cancelled());
        assert_eq!(
            h.queued.load(Ordering::Acquire),
            4,
            "a refused item holds nothing"
        );
    }

    #[test]
    fn indexes_stay_consistent() {
        let t = SessionTable::default();
        let (a, _ra) = handle("s1", "alice");
        let (b, _rb) = handle("s2", "alice");
        t.insert(a);
        t.insert(b);
        assert_eq!(t.user_sessions("alice").len(), 2);
        assert!(t.join("s1", "lobby").first_local);
        assert!(!t.join("s2", "lobby").first_local);
        assert_eq!(
            t.join("s2", "lobby"),
            Joined {
                added: false,
                first_local: false
            }
        );
        assert_eq!(t.room_sessions("lobby").len(), 2);
        assert!(t.leave("s1", "lobby").was_member);
        assert!(!t.leave("s1", "lobby").emptied);
        assert_eq!(
            t.leave("s1", "lobby"),
            Left::default(),
            "leaving twice is a no-op"
        );
        assert_eq!(t.remove("s2").emptied, vec!["lobby".to_string()]);
        assert!(!t.has_room("lobby"));
        assert_eq!(t.user_sessions("alice").len(), 1);
        t.remove("s1");
        assert_eq!(t.len(), 0);
        assert!(t.user_sessions("alice").is_empty());
    }

    #[test]
    fn watchers_are_members_and_go_with_them() {
        let t = SessionTable::default();
        let (a, _ra) = handle("s1", "alice");
        let (b, _rb) = handle("s2", "alice");
        let (c, _rc) = handle("s3", "carol");
        t.insert(a);
        t.insert(b);
        t.insert(c);
        assert!(!t.set_presence("s1", "r", true));
        assert!(!t.has_watchers("r"), "only members watch");
        for (id, room) in [("s1", "r"), ("s2", "r"), ("s3", "r"), ("s3", "q")] {
            t.join(id, room);
        }
        t.set_presence("s1", "r", true);
        t.set_presence("s3", "r", true);
        t.set_presence("s3", "q", true);
        assert_eq!(t.watchers("r").len(), 2);
        assert!(t.user_in_room("alice", "r") && !t.user_in_room("alice", "q"));
        assert_eq!(
            t.room_counts("r"),
            BTreeMap::from([("alice".to_string(), 2), ("carol".to_string(), 1)])
        );
        assert!(!t.set_presence("s1", "r", false), "carol still watches");
        let left = t.leave("s3", "r");
        assert_eq!(
            left,
            Left {
                member: None,
                was_member: true,
                emptied: false,
                unwatched: true
            }
        );
        assert!(!t.has_watchers("r"));
        let gone = t.remove("s3");
        assert_eq!(gone.rooms, vec!["q".to_string()]);
        assert_eq!(gone.unwatched, vec!["q".to_string()]);
        assert_eq!(gone.emptied, vec!["q".to_string()]);
        t.remove("s1");
        assert_eq!(t.room_counts("r")["alice"], 1, "s2 is still in r");
        assert!(!t.has_watchers("q"));
    }

    #[test]
    fn members_count_once_per_member_whatever_the_session_user() {
        let t = SessionTable::default();
        let (a, _ra) = handle("s1", "pusher:1.1");
        let (b, _rb) = handle("s2", "pusher:1.2");
        let (c, _rc) = handle("s3", "pusher:1.3");
        for h in [&a, &b, &c] {
            t.insert(h.clone());
        }
        let ann: Arc<str> = "ann".into();
        assert!(t.join_as("s1", "presence-r", Some(Arc::clone(&ann))).added);
        assert!(t.join_as("s2", "presence-r", Some(Arc::clone(&ann))).added);
        t.join_as("s3", "presence-r", Some("bob".into()));
        assert!(t.user_in_room("ann", "presence-r") && t.user_in_room("bob", "presence-r"));
        assert!(
            !t.user_in_room("pusher:1.1", "presence-r"),
            "a session in a room as a member is not there as its user"
        );
        assert_eq!(
            t.room_counts("presence-r"),
            BTreeMap::from([("ann".to_string(), 2), ("bob".to_string(), 1)])
        );
        let left = t.leave("s1", "presence-r");
        assert_eq!(left.member.as_deref(), Some("ann"));
        assert!(t.user_in_room("ann", "presence-r"), "s2 is still ann");
        let gone = t.remove("s2");
        assert_eq!(gone.members, vec![("presence-r".to_string(), ann)]);
        assert!(!t.user_in_room("ann", "presence-r"));
        assert_eq!(t.room_names(), vec!["presence-r".to_string()]);
    }
}
