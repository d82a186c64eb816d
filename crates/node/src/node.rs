//! The shared state of one node and the routing rules: where a message goes
//! in each mode, when it is acknowledged, and how it reaches local sessions.
//!
//! Ack point: a message is acknowledged once the cluster has taken it — in
//! durable mode after it was appended to its stream *and* handed to the broker
//! (or delivered locally); otherwise after the hand-off alone. A failure
//! anywhere returns an error and no ack, so a client retry (with the same id,
//! deduplicated in durable mode) is always safe.

use bytes::Bytes;
use serde_json::value::RawValue;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};
use tungstenite::Utf8Bytes;
use wsring_cluster::view::MovedReport;
use wsring_cluster::{
    Appended, Broker, MemberState, Membership, NodeStats, ServerRooms, StreamName, StreamStore,
    Topic, View,
};
use wsring_protocol::{Envelope, MessageFrame, Target};

use crate::config::{NodeConfig, Routing};
use crate::durable;
use crate::error::RouteError;
use crate::occupancy::Occupancy;
use crate::rooms::RoomSubs;
use crate::roster::Roster;
use crate::sessions::{Left, Outbound, SessionHandle, SessionTable, StreamMsg};

/// A deduplicated append must be a retry of the same message: the stored
/// entry at the original position is compared with this one, byte for byte.
/// A different message under a used id is a [`RouteError::Conflict`] (and is
/// neither stored nor sent). An original already trimmed away cannot be
/// compared and counts as a retry.
async fn same_message(
    store: &dyn StreamStore,
    stream: &StreamName,
    appended: &Appended,
    stored: &Bytes,
) -> Result<(), RouteError> {
    if !appended.duplicate {
        return Ok(());
    }
    let batch = store
        .read_after(stream, appended.seq.saturating_sub(1), 1)
        .await?;
    match batch.entries.first() {
        Some((seq, original)) if *seq == appended.seq && original != stored => {
            Err(RouteError::Conflict)
        }
        _ => Ok(()),
    }
}

/// Counters published in heartbeats and `/metrics`.
#[derive(Default)]
pub(crate) struct Counters {
    pub msgs_in: AtomicU64,
    pub msgs_out: AtomicU64,
    pub moved: Mutex<VecDeque<MovedReport>>,
}

/// Everything a node's tasks share.
pub struct Node {
    pub(crate) cfg: NodeConfig,
    /// The advertised `/ws` URL.
    pub(crate) url: String,
    pub(crate) membership: Arc<Membership>,
    pub(crate) broker: Arc<dyn Broker>,
    pub(crate) streams: Option<Arc<dyn StreamStore>>,
    /// The rooms the server put each user in.
    pub(crate) server_rooms: Arc<dyn ServerRooms>,
    pub(crate) table: Arc<SessionTable>,
    /// Room topic subscriptions, reconciled with the table in the background
    /// (no lock is held across a broker call).
    pub(crate) rooms: Arc<RoomSubs>,
    /// Who is in which room where, for `presence` events.
    pub(crate) roster: Arc<Roster>,
    /// Cluster-wide room occupancy, for the occupied and vacated webhooks
    /// (only with webhooks on).
    pub(crate) occupancy: Option<Arc<Occupancy>>,
    pub(crate) counters: Counters,
    /// Cancelled on crash and at the very end of a drain: every task stops.
    pub(crate) kill: CancellationToken,
    /// Set when the node starts leaving (drain or shutdown).
    pub(crate) leaving: AtomicBool,
    /// Set once the node is on the ring; rebalancing waits for it.
    pub(crate) joined: AtomicBool,
    /// Set while a view lacks this node although it is alive (reaped during
    /// a backend stall); its sessions catch up once it is back.
    pub(crate) missing: AtomicBool,
    pub(crate) http: reqwest::Client,
    /// Who may connect and call the API.
    pub(crate) security: Arc<wsring_auth::Security>,
    /// Events to the application (a no-op without `--webhook-url`).
    pub(crate) hooks: wsring_hooks::Webhooks,
    /// Events to the application in Pusher's format (a no-op without
    /// `--pusher-webhook-url`).
    pub(crate) pusher_hooks: wsring_hooks::Webhooks,
    /// Asked before a client's send or publish, with `--publish-proxy`.
    pub(crate) publish_proxy: Option<wsring_hooks::Proxy>,
    /// The application's connect check (`--connect-proxy`), for connects
    /// that reach this node without a token or a gateway's identity.
    pub(crate) connect_proxy: Option<wsring_hooks::Proxy>,
    next_session: AtomicU64,
    /// The first half of this process's Pusher `socket_id`s.
    socket_prefix: u32,
    /// Message and byte budgets per user, shared by all of the user's
    /// sessions on this node and by its reconnects.
    pub(crate) user_rates: wsring_auth::KeyedLimiter<Arc<str>>,
}

/// What the cluster accepted.
#[derive(Debug, Clone, Default)]
pub struct Accepted {
    /// Durable mode: the message's stream position.
    pub seq: Option<u64>,
    /// `Some(false)`: a non-durable direct message the backend says no live
    /// node received (its owner died and the ring does not know yet), so
    /// it is lost. `None`: not known (other backends, other messages).
    pub delivered: Option<bool>,
}

impl Node {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        cfg: NodeConfig,
        url: String,
        membership: Arc<Membership>,
        broker: Arc<dyn Broker>,
        streams: Option<Arc<dyn StreamStore>>,
        server_rooms: Arc<dyn ServerRooms>,
        durable_hooks: bool,
        occupancy_layer: Arc<dyn crate::occupancy::ProtocolOccupancy>,
        security: Arc<wsring_auth::Security>,
        kill: CancellationToken,
    ) -> Result<Node, wsring_http::tls::TlsError> {
        // Peer calls (presence fan-out) must never hang a request: build the
        // client with its timeout or fail start-up. It reaches `https://`
        // peers through the configured CA.
        let http = cfg
            .tls_files()
            .client()?
            .http_client(std::time::Duration::from_secs(3))?;
        membership.set_prober(healthz_prober(http.clone()));
        let table = Arc::new(SessionTable::default());
        let rooms = RoomSubs::new(Arc::clone(&broker), Arc::clone(&table));
        // Event ids must stay unique across restarts of the same node id.
        let boot: u32 = rand::random();
        let prefix = format!("{}-{boot:08x}", cfg.id);
        // Durable: events wait in the backend once the node joined (see
        // `hook_spool`); the Pusher-format receivers' queues as well.
        let start = if durable_hooks {
            wsring_hooks::Webhooks::start_durable
        } else {
            wsring_hooks::Webhooks::start
        };
        let hooks = start(cfg.webhooks(), http.clone(), &prefix);
        let pusher_hooks = start(
            cfg.pusher_webhooks(security.pusher.as_deref()),
            http.clone(),
            &format!("{prefix}-pusher"),
        );
        let connect_proxy = security.connect_proxy.as_ref().map(|c| {
            let cfg = wsring_hooks::ProxyConfig::connect(&c.url, &c.secret, c.timeout);
            wsring_hooks::Proxy::new("connect", cfg, http.clone())
        });
        let publish_proxy = cfg
            .publish_proxy()
            .map(|p| wsring_hooks::Proxy::new("publish", p, http.clone()));
        let roster = Roster::new(
            cfg.id.clone(),
            Arc::clone(&broker),
            Arc::clone(&table),
            Arc::clone(&membership),
        );
        roster.start(&kill);
        let occupancy = (hooks.enabled() || pusher_hooks.enabled()).then(|| {
            Occupancy::new(
                cfg.id.clone(),
                Arc::clone(&broker),
                Arc::clone(&table),
                Arc::clone(&membership),
                hooks.clone(),
                pusher_hooks.clone(),
                occupancy_layer,
            )
        });
        let user_rates = wsring_auth::KeyedLimiter::new(cfg.user_rate_limits());
        Ok(Node {
            cfg,
            url,
            membership,
            broker,
            streams,
            server_rooms,
            table,
            rooms,
            roster,
            occupancy,
            counters: Counters::default(),
            kill,
            leaving: AtomicBool::new(false),
            joined: AtomicBool::new(false),
            missing: AtomicBool::new(false),
            http,
            security,
            hooks,
            pusher_hooks,
            publish_proxy,
            connect_proxy,
            next_session: AtomicU64::new(0),
            socket_prefix: rand::random::<u32>() >> 1,
            user_rates,
        })
    }

    /// This node's id.
    pub fn id(&self) -> &str {
        &self.cfg.id
    }

    /// A cluster-unique, opaque session id.
    pub(crate) fn new_session_id(&self) -> Arc<str> {
        let n = self.next_session.fetch_add(1, Ordering::Relaxed);
        let salt: u32 = rand::random();
        format!("{}-{n:x}-{salt:08x}", self.cfg.id).into()
    }

    /// A Pusher `socket_id` (`123.456`), unique cluster-wide: a random
    /// per-process prefix and this process's session counter.
    pub(crate) fn new_socket_id(&self) -> Arc<str> {
        let n = self.next_session.fetch_add(1, Ordering::Relaxed);
        format!("{}.{n}", self.socket_prefix).into()
    }

    /// Whether this node should hold session `h` under `view`: its user's
    /// owner (hash routing) or any node that is up; a Pusher session is
    /// placed by load, so any node that is up.
    pub(crate) fn holds(&self, view: &View, h: &SessionHandle) -> bool {
        match h.codec {
            crate::sessions::Codec::Native => self.owns(view, &h.user),
            crate::sessions::Codec::Pusher => {
                !self.leaving.load(Ordering::Relaxed)
                    && view
                        .member(self.id())
                        .is_some_and(|m| m.state == MemberState::Up)
            }
        }
    }

    /// Whether this node should hold sessions of `user` under `view`.
    pub(crate) fn owns(&self, view: &View, user: &str) -> bool {
        if self.leaving.load(Ordering::Relaxed) {
            return false;
        }
        match self.cfg.routing {
            Routing::Hash => view.owner(user) == Some(self.id()),
            Routing::Broadcast => view
                .member(self.id())
                .is_some_and(|m| m.state == MemberState::Up),
        }
    }

    /// Live stats for heartbeats.
    pub(crate) fn stats(&self) -> NodeStats {
        NodeStats {
            connections: self.table.len() as u64,
            msgs_in: self.counters.msgs_in.load(Ordering::Relaxed),
            msgs_out: self.counters.msgs_out.load(Ordering::Relaxed),
            ready: self.ready().is_ok(),
            moved: self
                .counters
                .moved
                .lock()
                .map(|m| m.iter().copied().collect())
                .unwrap_or_default(),
        }
    }

    /// Readiness: every backend reachable, on the ring, not leaving.
    pub(crate) fn ready(&self) -> Result<(), String> {
        let mut why = Vec::new();
        if !self.membership.healthy() {
            why.push("registry unreachable");
        }
        if !self.broker.healthy() {
            why.push("broker unreachable");
        }
        let on_ring = self.joined.load(Ordering::Relaxed)
            && self
                .membership
                .view()
                .member(self.id())
                .is_some_and(|m| m.state == MemberState::Up);
        if !on_ring {
            why.push("not on the ring");
        }
        if self.leaving.load(Ordering::Relaxed) {
            why.push("draining");
        }
        if why.is_empty() {
            Ok(())
        } else {
            Err(why.join(", "))
        }
    }

    pub(crate) fn record_moved(&self, epoch: u64, count: u64) {
        if let Ok(mut m) = self.counters.moved.lock() {
            m.push_back(MovedReport { epoch, count });
            while m.len() > 16 {
                m.pop_front();
            }
        }
        metrics::counter!("wsring_sessions_moved_total", "node" => self.cfg.id.clone())
            .increment(count);
    }

    /// Sends a direct message to every session of `to`. In durable mode the
    /// stored message counts for `owner`'s share of the store (the sending
    /// user, or the API key's identity).
    pub async fn send_direct(
        &self,
        from: Option<&str>,
        to: &str,
        data: &RawValue,
        dedup: Option<String>,
        owner: Option<&str>,
    ) -> Result<Accepted, RouteError> {
        let (frame, pos) = match &self.streams {
            Some(store) => {
                let stored = durable::encode(from, Some(to), None, data);
                let name = StreamName::User(to.to_owned());
                let a = store
                    .append_as(&name, stored.clone(), dedup.as_deref(), owner)
                    .await?;
                same_message(store.as_ref(), &name, &a, &stored).await?;
                let frame = MessageFrame::direct(from, to, data)
                    .with_seq(a.seq, &a.epoch)
                    .render();
                (frame, Some(a))
            }
            None => (MessageFrame::direct(from, to, data).render(), None),
        };
        let env = envelope(
            Target::User {
                user: to.to_owned(),
            },
            frame,
            pos.as_ref(),
        );
        match self.cfg.routing {
            Routing::Hash => {
                let view = self.membership.view();
                match view.owner(to) {
                    Some(owner) if owner == self.id() => self.deliver_local(env),
                    Some(owner) => {
                        let received = self
                            .broker
                            .publish_counted(&Topic::Node(owner.to_owned()), env.encode())
                            .await?;
                        // Stored messages reach the user on its next connect.
                        if received == Some(0) && pos.is_none() {
                            return Ok(Accepted {
                                seq: None,
                                delivered: Some(false),
                            });
                        }
                    }
                    // Durable: it is stored; the user gets it on connect.
                    None if pos.is_some() => {}
                    None => return Err(RouteError::NoOwner(to.to_owned())),
                }
            }
            Routing::Broadcast => self.broker.publish(&Topic::Cluster, env.encode()).await?,
        }
        Ok(Accepted {
            delivered: None,
            seq: pos.map(|a| a.seq),
        })
    }

    /// Publishes to a room: only nodes with members receive it. In durable
    /// mode the stored message counts for `owner`, as with
    /// [`send_direct`](Self::send_direct).
    pub async fn publish_room(
        &self,
        from: Option<&str>,
        room: &str,
        data: &RawValue,
        dedup: Option<String>,
        owner: Option<&str>,
    ) -> Result<Accepted, RouteError> {
        let (frame, pos) = match &self.streams {
            Some(store) => {
                let stored = durable::encode(from, None, Some(room), data);
                let name = StreamName::Room(room.to_owned());
                let a = store
                    .append_as(&name, stored.clone(), dedup.as_deref(), owner)
                    .await?;
                same_message(store.as_ref(), &name, &a, &stored).await?;
                let frame = MessageFrame::room(from, room, data)
                    .with_seq(a.seq, &a.epoch)
                    .render();
                (frame, Some(a))
            }
            None => (MessageFrame::room(from, room, data).render(), None),
        };
        let env = envelope(
            Target::Room {
                room: room.to_owned(),
            },
            frame,
            pos.as_ref(),
        );
        self.broker
            .publish(&Topic::Room(room.to_owned()), env.encode())
            .await?;
        Ok(Accepted {
            delivered: None,
            seq: pos.map(|a| a.seq),
        })
    }

    /// Sends to every session in the cluster (not durable).
    pub async fn broadcast(&self, data: &RawValue) -> Result<Accepted, RouteError> {
        let frame = MessageFrame::broadcast(data).render();
        let env = envelope(Target::All, frame, None);
        self.broker.publish(&Topic::Cluster, env.encode()).await?;
        Ok(Accepted::default())
    }

    /// Hands an envelope to the local sessions it targets (a roster
    /// message to the rosters).
    pub(crate) fn deliver_local(&self, env: Envelope) {
        match &env.target {
            Target::Roster { room } => return self.roster.on_message(room, &env.frame),
            Target::Occupancy => {
                if let Some(o) = &self.occupancy {
                    o.on_message(&env.frame);
                }
                return;
            }
            _ => {}
        }
        let Ok(frame) = Utf8Bytes::try_from(env.frame) else {
            warn!("dropping envelope with a non-UTF-8 frame");
            return;
        };
        // Broadcasts belong to no stream (they are not durable).
        let (targets, stream) = match env.target {
            Target::User { user } => (
                self.table.user_sessions(&user),
                Some(StreamName::User(user)),
            ),
            Target::Room { room } => (
                self.table.room_sessions(&room),
                Some(StreamName::Room(room)),
            ),
            Target::All => (self.table.all(), None),
            Target::Roster { .. } | Target::Occupancy => return,
        };
        if targets.is_empty() {
            debug!(?stream, "no local recipients");
            return;
        }
        let item = match (stream, env.seq, env.stream_epoch) {
            (Some(stream), Some(seq), Some(epoch)) => Outbound::Stream(Arc::new(StreamMsg {
                stream,
                seq,
                epoch: epoch.into(),
                frame,
            })),
            _ => Outbound::Frame(frame),
        };
        for h in targets {
            h.offer(item.clone());
        }
    }

    /// Adds a session to a room, subscribing the node to the room's topic if
    /// it is the first local member. Returns once messages will arrive.
    /// Returns whether the session was newly added (false: already a member).
    pub(crate) async fn join_room(
        &self,
        h: &SessionHandle,
        room: &str,
    ) -> Result<bool, RouteError> {
        self.join_room_as(h, room, None).await
    }

    /// [`join_room`](Self::join_room) as `member` rather than as the
    /// session's user (see [`SessionTable::join_as`]).
    pub(crate) async fn join_room_as(
        &self,
        h: &SessionHandle,
        room: &str,
        member: Option<Arc<str>>,
    ) -> Result<bool, RouteError> {
        let who = member.clone().unwrap_or_else(|| Arc::clone(&h.user));
        let joined = self.table.join_as(&h.id, room, member);
        if let Err(e) = self.rooms.ensure(room).await {
            if joined.added {
                self.leave_room(h, room);
            }
            return Err(e.into());
        }
        if joined.added {
            self.roster.touch(room, &who);
            self.touch_occupancy(room);
        }
        Ok(joined.added)
    }

    /// Removes a session from a room; the room's topic is unsubscribed in
    /// the background if it was the last local member.
    pub(crate) fn leave_room(&self, h: &SessionHandle, room: &str) -> Left {
        let left = self.table.leave(&h.id, room);
        if left.emptied {
            self.rooms.nudge(room);
        }
        if left.unwatched {
            self.roster.release(room);
        }
        if left.was_member {
            self.roster
                .touch(room, left.member.as_deref().unwrap_or(&h.user));
            self.touch_occupancy(room);
            crate::events::member_removed(self, h, room);
        }
        left
    }

    /// Turns a member session's `presence` events for `room` on (waiting
    /// until the room's roster is ready) or off.
    pub(crate) async fn set_presence(&self, h: &SessionHandle, room: &str, on: bool) {
        self.set_presence_as(h, room, on, &h.user).await;
    }

    /// [`set_presence`](Self::set_presence) for a session in the room as
    /// `member`.
    pub(crate) async fn set_presence_as(
        &self,
        h: &SessionHandle,
        room: &str,
        on: bool,
        member: &str,
    ) {
        if on {
            // The roster first (its own announcement of this user
            // included), the table's watcher after: the session's own join
            // is not news to it.
            let _keep = self.roster.watch(room, member).await;
            self.table.set_presence(&h.id, room, true);
        } else if self.table.set_presence(&h.id, room, false) {
            self.roster.release(room);
        }
    }

    /// Forgets a finished session; returns the rooms it was in.
    pub(crate) async fn remove_session(&self, handle: &SessionHandle) -> Vec<String> {
        let removed = self.table.remove(&handle.id);
        for room in &removed.emptied {
            self.rooms.nudge(room);
        }
        for room in &removed.unwatched {
            self.roster.release(room);
        }
        for room in &removed.rooms {
            let member = removed
                .members
                .iter()
                .find(|(r, _)| r == room)
                .map_or(&handle.user, |(_, m)| m);
            self.roster.touch(room, member);
            self.touch_occupancy(room);
        }
        removed.rooms
    }

    /// The node's own occupancy of `room` may have changed.
    fn touch_occupancy(&self, room: &str) {
        if let Some(o) = &self.occupancy {
            o.touch(room);
        }
    }
}

fn envelope(target: Target, frame: String, pos: Option<&Appended>) -> Envelope {
    Envelope {
        target,
        seq: pos.map(|a| a.seq),
        stream_epoch: pos.map(|a| a.epoch.clone()),
        frame: Bytes::from(frame),
    }
}

/// Probes members with `GET /healthz`, whose answer carries the incarnation
/// the process serves (see `wsring_cluster::probe`).
fn healthz_prober(http: reqwest::Client) -> wsring_cluster::Prober {
    std::sync::Arc::new(move |url: String, limit: std::time::Duration| {
        let http = http.clone();
        Box::pin(async move {
            let base = wsring_cluster::view::api_base_of(&url);
            match wsring_http::peers::health_probe(&http, &base, limit).await {
                wsring_http::peers::Health::Refused => wsring_cluster::Probe::Refused,
                wsring_http::peers::Health::Answered(Some(i)) => wsring_cluster::Probe::Answered(i),
                _ => wsring_cluster::Probe::Unconfirmed,
            }
        })
    })
}

/// A node on the in-memory backend for unit tests: on the ring alone (so it
/// owns every user), subscribed to its topics, with its broker inbox served,
/// but without a listener or rebalancer (tests call those pieces directly).
#[cfg(test)]
pub(crate) mod testing {
    use super::*;
    use async_trait::async_trait;
    use std::time::Duration;
    use wsring_cluster::memory::{MemoryBackend, MemoryBroker};
    use wsring_cluster::{
        ClusterError, MembershipConfig, NodeStats, ReadBatch, Retention, RoomAdd, StreamPos,
    };

    use crate::session::state::SessionState;

    /// A stream store that can be switched off, for the store-failure paths.
    struct Switchable {
        inner: Arc<dyn StreamStore>,
        down: Arc<AtomicBool>,
        /// Reads that fail before reads work again.
        failing_reads: Arc<AtomicU64>,
    }

    impl Switchable {
        fn check(&self) -> Result<(), ClusterError> {
            if self.down.load(Ordering::Relaxed) {
                Err(ClusterError::unavailable("stream store switched off"))
            } else {
                Ok(())
            }
        }
    }

    #[async_trait]
    impl StreamStore for Switchable {
        async fn append_as(
            &self,
            stream: &StreamName,
            payload: Bytes,
            dedup: Option<&str>,
            owner: Option<&str>,
        ) -> Result<Appended, ClusterError> {
            self.check()?;
            self.inner.append_as(stream, payload, dedup, owner).await
        }
        async fn head_as(
            &self,
            stream: &StreamName,
            owner: Option<&str>,
        ) -> Result<StreamPos, ClusterError> {
            self.check()?;
            self.inner.head_as(stream, owner).await
        }
        async fn read_after(
            &self,
            stream: &StreamName,
            after: u64,
            limit: usize,
        ) -> Result<ReadBatch, ClusterError> {
            self.check()?;
            let failing =
                self.failing_reads
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
            if failing.is_ok() {
                return Err(ClusterError::unavailable("stream read failed (test)"));
            }
            self.inner.read_after(stream, after, limit).await
        }
    }

    /// Server-side rooms whose next reads can be made to fail.
    struct FlakyRooms {
        inner: Arc<dyn ServerRooms>,
        failing_reads: Arc<AtomicU64>,
    }

    #[async_trait]
    impl ServerRooms for FlakyRooms {
        async fn add(&self, user: &str, room: &str, max: usize) -> Result<RoomAdd, ClusterError> {
            self.inner.add(user, room, max).await
        }
        async fn remove(&self, user: &str, room: &str) -> Result<bool, ClusterError> {
            self.inner.remove(user, room).await
        }
        async fn list(&self, user: &str) -> Result<Vec<String>, ClusterError> {
            let failing =
                self.failing_reads
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
            if failing.is_ok() {
                return Err(ClusterError::unavailable("server rooms read failed (test)"));
            }
            self.inner.list(user).await
        }
    }

    /// A test node and the backend under it.
    pub(crate) struct TestNode {
        pub node: Arc<Node>,
        pub backend: MemoryBackend,
        /// The node's broker connection, to sever and restore.
        pub broker: Arc<MemoryBroker>,
        down: Arc<AtomicBool>,
        failing_reads: Arc<AtomicU64>,
        failing_room_reads: Arc<AtomicU64>,
    }

    impl TestNode {
        /// Defaults for node `n1`.
        pub fn config() -> NodeConfig {
            NodeConfig::new("n1")
        }

        /// Defaults for node `n1` in durable mode.
        pub fn durable_config() -> NodeConfig {
            NodeConfig {
                durable: true,
                ..Self::config()
            }
        }

        /// Starts a node with `cfg` on a fresh in-memory backend.
        pub async fn start(cfg: NodeConfig) -> TestNode {
            let backend = MemoryBackend::new(Retention::default());
            let kill = CancellationToken::new();
            let membership = Membership::start(
                Arc::clone(&backend.registry) as _,
                MembershipConfig::default(),
                kill.clone(),
            )
            .await
            .expect("membership");
            let (broker, inbox) = backend.hub.connect();
            let down = Arc::new(AtomicBool::new(false));
            let failing_reads = Arc::new(AtomicU64::new(0));
            let streams = cfg.durable.then(|| {
                Arc::new(Switchable {
                    inner: Arc::clone(&backend.streams) as _,
                    down: Arc::clone(&down),
                    failing_reads: Arc::clone(&failing_reads),
                }) as Arc<dyn StreamStore>
            });
            let failing_room_reads = Arc::new(AtomicU64::new(0));
            let rooms = Arc::new(FlakyRooms {
                inner: Arc::clone(&backend.rooms) as _,
                failing_reads: Arc::clone(&failing_room_reads),
            });
            let url = "ws://test.invalid/ws".to_owned();
            let node = Arc::new(
                Node::new(
                    cfg,
                    url.clone(),
                    membership,
                    Arc::clone(&broker) as _,
                    streams,
                    rooms,
                    false,
                    Arc::new(crate::occupancy::NoProtocol),
                    Arc::new(wsring_auth::Security::open()),
                    kill,
                )
                .expect("http client"),
            );
            let id = node.id().to_owned();
            node.broker
                .subscribe(&Topic::Node(id.clone()))
                .await
                .expect("subscribe");
            node.broker
                .subscribe(&Topic::Cluster)
                .await
                .expect("subscribe");
            tokio::spawn(crate::inbound::run(Arc::clone(&node), inbox));
            let stats = Arc::new(NodeStats::default);
            node.membership.join(&id, &url, stats).await.expect("join");
            node.joined.store(true, Ordering::Relaxed);
            TestNode {
                node,
                backend,
                broker,
                down,
                failing_reads,
                failing_room_reads,
            }
        }

        /// A session of `user` in the node's table, and its queue.
        pub fn session(&self, user: &str) -> (SessionHandle, crate::outbox::Receiver) {
            let (tx, rx) = crate::outbox::channel(self.node.cfg.session_queue);
            let handle = SessionHandle::new(
                self.node.new_session_id(),
                user.into(),
                tx,
                self.node.cfg.session_queue_bytes,
            );
            self.node.table.insert(handle.clone());
            (handle, rx)
        }

        /// The state of a session of `user` that is in the node's table.
        pub fn live_state(&self, user: &str) -> (SessionState, crate::outbox::Receiver) {
            let (handle, rx) = self.session(user);
            (SessionState::new(handle), rx)
        }

        /// The state of a session of `user` that receives nothing.
        pub fn state(&self, user: &str) -> SessionState {
            let (tx, _rx) = crate::outbox::channel(1);
            SessionState::new(SessionHandle::new(
                self.node.new_session_id(),
                user.into(),
                tx,
                self.node.cfg.session_queue_bytes,
            ))
        }

        /// The next message frame queued for a session, parsed.
        pub async fn next_message(rx: &mut crate::outbox::Receiver) -> serde_json::Value {
            let item = tokio::time::timeout(Duration::from_secs(5), rx.recv())
                .await
                .expect("a delivery within 5 s")
                .expect("queue open");
            let frame = match item {
                Outbound::Frame(f) => f,
                Outbound::Stream(m) => m.frame.clone(),
                other => panic!("expected a message, got {other:?}"),
            };
            serde_json::from_str(frame.as_str()).expect("frame is JSON")
        }

        /// Makes every stream store call fail from now on.
        pub fn streams_down(&self) {
            self.down.store(true, Ordering::Relaxed);
        }

        /// Makes the next `n` stream reads fail.
        pub fn fail_reads(&self, n: u64) {
            self.failing_reads.store(n, Ordering::Relaxed);
        }

        /// Makes the next `n` reads of server-side rooms fail.
        pub fn fail_room_reads(&self, n: u64) {
            self.failing_room_reads.store(n, Ordering::Relaxed);
        }

        /// Appends `n` messages (`data` 1..=n, from `sender`) to `stream`;
        /// returns the stream's epoch.
        pub async fn append(&self, stream: &StreamName, n: u64) -> String {
            let store = &self.backend.streams;
            let mut epoch = store.head(stream).await.expect("head").epoch;
            for i in 1..=n {
                let data = RawValue::from_string(i.to_string()).expect("json");
                let stored = match stream {
                    StreamName::User(u) => durable::encode(Some("sender"), Some(u), None, &data),
                    StreamName::Room(r) => durable::encode(Some("sender"), None, Some(r), &data),
                };
                epoch = store
                    .append(stream, stored, None)
                    .await
                    .expect("append")
                    .epoch;
            }
            epoch
        }

        /// The last seq of `stream`.
        pub async fn head(&self, stream: &StreamName) -> u64 {
            self.backend.streams.head(stream).await.expect("head").seq
        }
    }

    impl Drop for TestNode {
        fn drop(&mut self) {
            self.node.kill.cancel();
        }
    }
}
