//! The membership protocol, written once against [`Registry`].
//!
//! * **Join:** claim the heartbeat record (fails if a live node holds the id),
//!   which hands out a new **incarnation** (fencing token), then add the
//!   member with that incarnation to the document by compare-and-set, bumping
//!   the epoch.
//! * **Heartbeat:** refresh the record every `heartbeat_every`, carrying the
//!   node's live [`NodeStats`], as a compare-and-set on `(id, incarnation)`.
//!   If the node finds itself missing from the document (it was reaped during
//!   a pause, or the registry lost its data), it rejoins. If its record
//!   expired and nobody took the id, it claims it again. If **another
//!   incarnation** holds the id, this process is stale: it is *fenced* and
//!   must stop serving ([`Membership::fenced`]).
//! * **Stalls:** a node that notices it was stalled for longer than the TTL
//!   (its own clock jumped past a whole TTL between two ticks, as after
//!   SIGSTOP or a frozen VM) may have been replaced meanwhile, so it holds
//!   its deliveries ([`Membership::may_act`]) until a heartbeat sent after
//!   the stall confirms its claim, or fences it. A registry outage is not a
//!   stall: the process keeps serving its sessions while it retries.
//! * **Reap:** every process (nodes and gateways) periodically checks that each
//!   member still has a live heartbeat, and removes those that do not by
//!   compare-and-set on `(id, incarnation)`: a member that rejoined between
//!   the check and the removal carries a new incarnation and is kept. Many
//!   processes may notice the same death; the CAS makes exactly one of them
//!   bump the epoch. Detection time is at most `ttl` plus one reap period
//!   (2 s + 0.5 s by default).
//! * **Drain / leave:** mark the member `draining` (off the ring at once, still
//!   listed), then remove it and delete its heartbeat (both only for its own
//!   incarnation).
//! * **Watch:** reload the document on every registry notification and on a
//!   poll timer; apply it only if its epoch is newer, so views never go back.
//!
//! Every process therefore holds the same `(epoch, members)` and builds the same
//! [`wsring_ring::Ring`] from it.

use bytes::Bytes;
use futures::StreamExt;
use rand::Rng;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::backoff::Backoff;
use crate::error::ClusterError;
use crate::registry::{Lease, Registry};
use crate::view::{Member, MemberState, MembershipDoc, NodeStats, View};

/// Timing and ring parameters of the membership protocol.
#[derive(Debug, Clone)]
pub struct MembershipConfig {
    /// A node whose heartbeat is older than this is dead. Default: 2 s, so a
    /// SIGKILLed node leaves every ring in about 2.5 s.
    pub ttl: Duration,
    /// Heartbeat and reap period. Default: `ttl / 4` (500 ms).
    pub heartbeat_every: Duration,
    /// Re-read the document this often even without notifications. Default: 1 s.
    pub poll_every: Duration,
    /// Virtual nodes per member. Default: [`wsring_ring::DEFAULT_VNODES`].
    pub vnodes: u32,
}

impl Default for MembershipConfig {
    fn default() -> Self {
        MembershipConfig::with_ttl(Duration::from_secs(2))
    }
}

impl MembershipConfig {
    /// Defaults derived from a TTL.
    pub fn with_ttl(ttl: Duration) -> Self {
        MembershipConfig {
            ttl,
            heartbeat_every: ttl / 4,
            poll_every: Duration::from_secs(1),
            vnodes: wsring_ring::DEFAULT_VNODES,
        }
    }
}

/// Produces the stats a node publishes in each heartbeat.
pub type StatsFn = Arc<dyn Fn() -> NodeStats + Send + Sync>;

struct LocalNode {
    id: String,
    url: String,
    stats: StatsFn,
    /// The fencing token of this process's claim.
    incarnation: u64,
    /// Set once the node starts leaving, so the heartbeat loop stops rejoining.
    leaving: bool,
}

/// Why a node process must stop: another process holds its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fenced {
    /// The node id.
    pub node: String,
    /// This process's incarnation.
    pub ours: u64,
    /// The incarnation that holds the id now, if known.
    pub holder: Option<u64>,
}

impl std::fmt::Display for Fenced {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "node id {:?} was claimed by another process (incarnation {}) while this one (incarnation {}) was stalled; stopping",
            self.node,
            self.holder
                .map_or_else(|| "?".to_owned(), |h| h.to_string()),
            self.ours
        )
    }
}

/// A reap pass's finding: members without a live heartbeat, each with the
/// incarnation the document listed when the pass looked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReapPlan {
    /// `(node id, incarnation)` of each member found dead.
    pub dead: Vec<(String, u64)>,
}

/// A process's membership handle: its current [`View`], the stats of every
/// node, and (for nodes) its own registration.
pub struct Membership {
    registry: Arc<dyn Registry>,
    cfg: MembershipConfig,
    view_tx: watch::Sender<Arc<View>>,
    stats_tx: watch::Sender<Arc<BTreeMap<String, NodeStats>>>,
    healthy: AtomicBool,
    local: Mutex<Option<LocalNode>>,
    /// When this node's lease ends: the send time of the last confirmed
    /// heartbeat plus the TTL. `None` before joining.
    lease_tx: watch::Sender<Option<tokio::time::Instant>>,
    /// Set once, when another incarnation took this node's id.
    fenced_tx: watch::Sender<Option<Fenced>>,
    /// Last tick of the stall detector; `None` until joined.
    last_tick: Mutex<Option<tokio::time::Instant>>,
    /// Set when a stall longer than the TTL was seen; cleared by a heartbeat
    /// confirmed after it.
    suspect_tx: watch::Sender<Option<tokio::time::Instant>>,
    cancel: CancellationToken,
}

/// Upper bound on compare-and-set retries before giving up.
const MAX_CAS_ATTEMPTS: u32 = 64;

impl Membership {
    /// Loads the current document and starts the watch and reap loops. Fails
    /// if the registry cannot be reached (start-up should fail fast).
    /// Background tasks stop when `cancel` fires.
    pub async fn start(
        registry: Arc<dyn Registry>,
        cfg: MembershipConfig,
        cancel: CancellationToken,
    ) -> Result<Arc<Membership>, ClusterError> {
        let doc = match registry.load().await? {
            Some(v) => decode_doc(&v.value)?,
            None => MembershipDoc::default(),
        };
        let (view_tx, _) = watch::channel(Arc::new(View::new(doc, cfg.vnodes)));
        let (stats_tx, _) = watch::channel(Arc::new(BTreeMap::new()));
        let m = Arc::new(Membership {
            registry,
            cfg,
            view_tx,
            stats_tx,
            healthy: AtomicBool::new(true),
            local: Mutex::new(None),
            lease_tx: watch::channel(None).0,
            fenced_tx: watch::channel(None).0,
            last_tick: Mutex::new(None),
            suspect_tx: watch::channel(None).0,
            cancel,
        });
        tokio::spawn(Arc::clone(&m).watch_loop());
        tokio::spawn(Arc::clone(&m).reap_loop());
        Ok(m)
    }

    /// The configuration in use.
    pub fn config(&self) -> &MembershipConfig {
        &self.cfg
    }

    /// The current view.
    pub fn view(&self) -> Arc<View> {
        self.view_tx.borrow().clone()
    }

    /// A receiver that sees every new view.
    pub fn subscribe(&self) -> watch::Receiver<Arc<View>> {
        self.view_tx.subscribe()
    }

    /// Latest heartbeat stats of every live member.
    pub fn stats(&self) -> Arc<BTreeMap<String, NodeStats>> {
        self.stats_tx.borrow().clone()
    }

    /// A receiver that sees every stats refresh.
    pub fn subscribe_stats(&self) -> watch::Receiver<Arc<BTreeMap<String, NodeStats>>> {
        self.stats_tx.subscribe()
    }

    /// Whether the last registry operation succeeded.
    pub fn healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// Whether this node may act as itself now: its last confirmed heartbeat
    /// is younger than the TTL and it has not been fenced. Always `false`
    /// before joining.
    pub fn lease_valid(&self) -> bool {
        self.fenced_tx.borrow().is_none()
            && self
                .lease_tx
                .borrow()
                .is_some_and(|until| tokio::time::Instant::now() < until)
    }

    /// Whether this node may deliver as itself now: it is not fenced, and it
    /// has not been stalled past the TTL without a heartbeat confirming its
    /// claim since. Cheap (a clock read); call it before acting on a broker
    /// message. Always `true` for processes that never joined.
    pub fn may_act(&self) -> bool {
        if self.fenced_tx.borrow().is_some() {
            return false;
        }
        self.check_stall();
        self.suspect_tx.borrow().is_none()
    }

    /// Waits until [`may_act`](Self::may_act) holds; `false` if this node was
    /// fenced (or stopped) meanwhile.
    pub async fn wait_may_act(&self) -> bool {
        let mut suspect = self.suspect_tx.subscribe();
        let mut fenced = self.fenced_tx.subscribe();
        loop {
            if fenced.borrow_and_update().is_some() {
                return false;
            }
            if self.may_act() {
                return true;
            }
            tokio::select! {
                r = suspect.changed() => if r.is_err() { return false },
                r = fenced.changed() => if r.is_err() { return false },
                _ = self.cancel.cancelled() => return false,
            }
        }
    }

    /// Compares the clock with the stall detector's last tick: a gap of more
    /// than the TTL means this process did not run for that long.
    fn check_stall(&self) {
        let now = tokio::time::Instant::now();
        let gap = {
            let mut last = lock(&self.last_tick);
            let Some(prev) = *last else { return };
            *last = Some(now);
            now.saturating_duration_since(prev)
        };
        if gap > self.cfg.ttl {
            let fresh = self.suspect_tx.send_if_modified(|s| {
                if s.is_none() {
                    *s = Some(now);
                    true
                } else {
                    false
                }
            });
            if fresh {
                warn!(stalled = ?gap, ttl = ?self.cfg.ttl, "this process was stalled past the heartbeat TTL; holding deliveries until the registry confirms this node");
            }
        }
    }

    async fn stall_loop(self: Arc<Self>) {
        let period = self.cfg.heartbeat_every / 2;
        loop {
            tokio::select! {
                _ = self.cancel.cancelled() => return,
                _ = tokio::time::sleep(period) => {}
            }
            if lock(&self.local).is_none() {
                return;
            }
            self.check_stall();
        }
    }

    /// Resolves once another process took this node's id (see the module
    /// docs); the process must then close its sessions and exit.
    pub async fn fenced(&self) -> Fenced {
        let mut rx = self.fenced_tx.subscribe();
        let found = rx
            .wait_for(Option::is_some)
            .await
            .map(|f| f.clone().unwrap_or_else(|| self.fence_unknown()));
        match found {
            Ok(f) => f,
            // The sender lives as long as `self`: unreachable in practice.
            Err(_) => std::future::pending().await,
        }
    }

    fn fence_unknown(&self) -> Fenced {
        Fenced {
            node: String::new(),
            ours: 0,
            holder: None,
        }
    }

    /// This node's incarnation, once joined.
    pub fn incarnation(&self) -> Option<u64> {
        lock(&self.local).as_ref().map(|l| l.incarnation)
    }

    fn fence(&self, node: &str, ours: u64, holder: Option<u64>) {
        let f = Fenced {
            node: node.to_owned(),
            ours,
            holder,
        };
        if self.fenced_tx.borrow().is_none() {
            warn!(
                node,
                ours,
                ?holder,
                "another process holds this node id: fenced"
            );
            self.fenced_tx.send_replace(Some(f));
        }
        // Stop heartbeating and never write for this id again.
        *lock(&self.local) = None;
    }

    fn extend_lease(&self, sent: tokio::time::Instant) {
        // A claim confirmed by a heartbeat sent after a stall clears it.
        self.suspect_tx.send_if_modified(|s| match s {
            Some(since) if sent >= *since => {
                *s = None;
                true
            }
            _ => false,
        });
        let until = sent + self.cfg.ttl;
        self.lease_tx.send_if_modified(|l| match l {
            Some(cur) if *cur >= until => false,
            _ => {
                *l = Some(until);
                true
            }
        });
    }

    /// Waits until the view's epoch is at least `epoch`, up to `timeout`.
    /// Returns the view either way.
    pub async fn wait_for_epoch(&self, epoch: u64, timeout: Duration) -> Arc<View> {
        let mut rx = self.subscribe();
        let _ = tokio::time::timeout(timeout, rx.wait_for(|v| v.epoch() >= epoch)).await;
        self.view()
    }

    /// Registers this process as node `id`, reachable at `url`, and starts its
    /// heartbeat. Waits up to 1.5 TTL for a previous incarnation's heartbeat to
    /// expire; if the id is still held after that, a live node has it.
    pub async fn join(
        self: &Arc<Self>,
        id: &str,
        url: &str,
        stats: StatsFn,
    ) -> Result<(), ClusterError> {
        let deadline = tokio::time::Instant::now() + self.cfg.ttl + self.cfg.ttl / 2;
        let incarnation = loop {
            let value = encode_stats(&stats());
            let sent = tokio::time::Instant::now();
            if let Some(inc) = self.registry.claim(id, value, self.cfg.ttl).await? {
                self.extend_lease(sent);
                break inc;
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ClusterError::NodeIdTaken(id.to_owned()));
            }
            tokio::time::sleep(self.cfg.heartbeat_every).await;
        };
        *lock(&self.local) = Some(LocalNode {
            id: id.to_owned(),
            url: url.to_owned(),
            stats,
            incarnation,
            leaving: false,
        });
        self.add_self().await?;
        info!(node = %id, incarnation, epoch = self.view().epoch(), "joined cluster");
        *lock(&self.last_tick) = Some(tokio::time::Instant::now());
        tokio::spawn(Arc::clone(self).stall_loop());
        tokio::spawn(Arc::clone(self).heartbeat_loop());
        Ok(())
    }

    /// Marks this node `draining`: it leaves the ring at once (a new epoch) but
    /// stays listed until [`leave`](Self::leave).
    pub async fn set_draining(&self) -> Result<(), ClusterError> {
        let Some((id, inc)) = self.local_id(true) else {
            return Ok(());
        };
        self.update(|doc| match doc.members.get_mut(&id) {
            Some(m) if m.incarnation == inc && m.state != MemberState::Draining => {
                m.state = MemberState::Draining;
                true
            }
            _ => false,
        })
        .await
        .map(drop)
    }

    /// Removes this node from the document and deletes its heartbeat.
    pub async fn leave(&self) -> Result<(), ClusterError> {
        let Some((id, inc)) = self.local_id(true) else {
            return Ok(());
        };
        self.update(|doc| {
            let ours = doc.members.get(&id).is_some_and(|m| m.incarnation == inc);
            ours && doc.members.remove(&id).is_some()
        })
        .await?;
        // Stop the heartbeat loop before deleting the record, so it does not
        // recreate it.
        *lock(&self.local) = None;
        self.registry.release(&id, inc).await?;
        info!(node = %id, incarnation = inc, "left cluster");
        Ok(())
    }

    fn local_id(&self, leaving: bool) -> Option<(String, u64)> {
        let mut local = lock(&self.local);
        let l = local.as_mut()?;
        l.leaving |= leaving;
        Some((l.id.clone(), l.incarnation))
    }

    async fn add_self(&self) -> Result<(), ClusterError> {
        let Some((id, url, inc)) = lock(&self.local)
            .as_ref()
            .filter(|l| !l.leaving)
            .map(|l| (l.id.clone(), l.url.clone(), l.incarnation))
        else {
            return Ok(());
        };
        let member = Member {
            url,
            state: MemberState::Up,
            incarnation: inc,
        };
        let mut newer = None;
        self.update(|doc| {
            newer = None;
            match doc.members.get(&id) {
                Some(m) if m == &member => false,
                // A later incarnation added itself: we are the stale one.
                Some(m) if m.incarnation > inc => {
                    newer = Some(m.incarnation);
                    false
                }
                _ => {
                    doc.members.insert(id.clone(), member.clone());
                    true
                }
            }
        })
        .await?;
        if let Some(holder) = newer {
            self.fence(&id, inc, Some(holder));
        }
        Ok(())
    }

    /// Applies `change` to the document by compare-and-set, bumping the epoch
    /// when it reports a change. Retries on lost races.
    async fn update(
        &self,
        mut change: impl FnMut(&mut MembershipDoc) -> bool,
    ) -> Result<Arc<View>, ClusterError> {
        for attempt in 0..MAX_CAS_ATTEMPTS {
            let current = self.track(self.registry.load().await)?;
            let (version, doc) = match current {
                Some(v) => (Some(v.version), decode_doc(&v.value)?),
                None => (None, MembershipDoc::default()),
            };
            let mut next = doc.clone();
            if !change(&mut next) {
                self.apply(doc);
                return Ok(self.view());
            }
            // max() keeps epochs monotonic even if the registry lost its data
            // and the document starts over.
            next.epoch = doc.epoch.max(self.view().epoch()) + 1;
            let bytes = Bytes::from(serde_json::to_vec(&next).unwrap_or_default());
            if self
                .track(self.registry.store(version, bytes).await)?
                .is_some()
            {
                debug!(epoch = next.epoch, "membership document updated");
                self.apply(next);
                return Ok(self.view());
            }
            let pause = rand::rng().random_range(1..=(5 + u64::from(attempt) * 5));
            tokio::time::sleep(Duration::from_millis(pause)).await;
        }
        Err(ClusterError::Contention(MAX_CAS_ATTEMPTS))
    }

    /// Installs `doc` as the view if it is newer than the current one.
    fn apply(&self, doc: MembershipDoc) {
        let vnodes = self.cfg.vnodes;
        self.view_tx.send_if_modified(|view| {
            let newer = doc.epoch > view.epoch()
                || (doc.epoch == view.epoch() && doc.members != view.doc.members);
            if newer {
                info!(
                    epoch = doc.epoch,
                    members = doc.members.len(),
                    "membership changed"
                );
                *view = Arc::new(View::new(doc, vnodes));
            }
            newer
        });
    }

    fn track<T>(&self, r: Result<T, ClusterError>) -> Result<T, ClusterError> {
        let ok = !matches!(r, Err(ClusterError::Unavailable(_)));
        if self.healthy.swap(ok, Ordering::Relaxed) != ok {
            if ok {
                info!("registry reachable again");
            } else {
                warn!("registry unreachable");
            }
        }
        r
    }

    async fn reload(&self) -> Result<(), ClusterError> {
        match self.track(self.registry.load().await)? {
            Some(v) => self.apply(decode_doc(&v.value)?),
            None => self.document_lost(),
        }
        Ok(())
    }

    /// The registry has no document although we knew members: it lost its
    /// data (a Redis restart without persistence, a purged bucket). Adopt
    /// the empty membership at the current epoch, so live nodes notice they
    /// are missing and re-add themselves (epochs continue upward), and dead
    /// ones stay gone.
    fn document_lost(&self) {
        let view = self.view();
        if view.doc.members.is_empty() {
            return;
        }
        warn!(
            epoch = view.epoch(),
            "membership document missing from the registry; rebuilding"
        );
        self.apply(MembershipDoc {
            epoch: view.epoch(),
            members: Default::default(),
        });
    }

    async fn watch_loop(self: Arc<Self>) {
        let mut backoff = Backoff::default();
        let mut poll = tokio::time::interval(self.cfg.poll_every);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let mut changes = match self.registry.watch().await {
                Ok(s) => {
                    backoff.reset();
                    s
                }
                Err(e) => {
                    self.track::<()>(Err(e)).ok();
                    tokio::select! {
                        _ = self.cancel.cancelled() => return,
                        _ = tokio::time::sleep(backoff.next_delay()) => continue,
                    }
                }
            };
            // Reload after (re)subscribing: changes made while we were not
            // watching would otherwise wait for the poll timer.
            let _ = self.reload().await;
            loop {
                tokio::select! {
                    _ = self.cancel.cancelled() => return,
                    item = changes.next() => match item {
                        Some(()) => { let _ = self.reload().await; }
                        None => break, // watch ended (backend reconnect): resubscribe
                    },
                    _ = poll.tick() => { let _ = self.reload().await; }
                }
            }
        }
    }

    async fn reap_loop(self: Arc<Self>) {
        loop {
            let jitter = rand::rng().random_range(0.8..1.2);
            let pause = self.cfg.heartbeat_every.mul_f64(jitter);
            tokio::select! {
                _ = self.cancel.cancelled() => return,
                _ = tokio::time::sleep(pause) => {}
            }
            if let Err(e) = self.reap_once().await {
                debug!(error = %e, "reap pass failed");
            }
        }
    }

    /// One reap pass: refresh stats, and remove members without a live
    /// heartbeat. Public so tests can drive it deterministically.
    pub async fn reap_once(&self) -> Result<(), ClusterError> {
        let plan = self.reap_plan().await?;
        self.reap_apply(&plan).await
    }

    /// The first half of a reap pass: read the document and the heartbeats,
    /// publish the stats, and list the members found dead with the
    /// incarnation the document gave them.
    pub async fn reap_plan(&self) -> Result<ReapPlan, ClusterError> {
        let Some(current) = self.track(self.registry.load().await)? else {
            self.document_lost();
            return Ok(ReapPlan::default());
        };
        let doc = decode_doc(&current.value)?;
        self.apply(doc.clone());
        let ids: Vec<String> = doc.members.keys().cloned().collect();
        let beats = self.track(self.registry.heartbeats(&ids).await)?;
        let mut stats = BTreeMap::new();
        let mut dead = Vec::new();
        for (id, beat) in ids.into_iter().zip(beats) {
            match beat {
                Some(b) => {
                    stats.insert(id, serde_json::from_slice(&b.value).unwrap_or_default());
                }
                None => {
                    let inc = doc.members.get(&id).map_or(0, |m| m.incarnation);
                    dead.push((id, inc));
                }
            }
        }
        self.stats_tx.send_replace(Arc::new(stats));
        Ok(ReapPlan { dead })
    }

    /// The second half of a reap pass: removes the members of `plan`, each
    /// only if the document still lists the incarnation the plan saw. A
    /// member that rejoined meanwhile carries a new incarnation and stays.
    pub async fn reap_apply(&self, plan: &ReapPlan) -> Result<(), ClusterError> {
        if plan.dead.is_empty() {
            return Ok(());
        }
        let mut removed = Vec::new();
        let view = self
            .update(|doc| {
                removed.clear();
                for (id, inc) in &plan.dead {
                    if doc.members.get(id).is_some_and(|m| m.incarnation == *inc) {
                        doc.members.remove(id);
                        removed.push(id.clone());
                    }
                }
                !removed.is_empty()
            })
            .await?;
        if !removed.is_empty() {
            warn!(nodes = ?removed, epoch = view.epoch(), "reaped members with expired heartbeats");
        }
        Ok(())
    }

    async fn heartbeat_loop(self: Arc<Self>) {
        let mut tick = tokio::time::interval(self.cfg.heartbeat_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = self.cancel.cancelled() => return,
                _ = tick.tick() => {}
            }
            let Some((id, stats, leaving, inc)) = lock(&self.local)
                .as_ref()
                .map(|l| (l.id.clone(), Arc::clone(&l.stats), l.leaving, l.incarnation))
            else {
                return;
            };
            let value = encode_stats(&stats());
            let sent = tokio::time::Instant::now();
            match self.track(
                self.registry
                    .refresh(&id, inc, value.clone(), self.cfg.ttl)
                    .await,
            ) {
                Ok(Lease::Held) => self.extend_lease(sent),
                Ok(Lease::Taken(holder)) => {
                    self.fence(&id, inc, Some(holder));
                    return;
                }
                Ok(Lease::Expired) => {
                    // Stalled past the TTL, but nobody took the id: claim it
                    // again like a newcomer (a new incarnation).
                    match self.track(self.registry.claim(&id, value, self.cfg.ttl).await) {
                        Ok(Some(next)) => {
                            warn!(node = %id, old = inc, new = next, "heartbeat had expired; claimed the id again");
                            if let Some(l) = lock(&self.local).as_mut() {
                                l.incarnation = next;
                            }
                            self.extend_lease(sent);
                        }
                        Ok(None) => {
                            self.fence(&id, inc, None);
                            return;
                        }
                        Err(e) => {
                            warn!(node = %id, error = %e, "heartbeat failed");
                            continue;
                        }
                    }
                }
                Err(e) => {
                    warn!(node = %id, error = %e, "heartbeat failed");
                    continue;
                }
            }
            if leaving {
                // Draining nodes keep their heartbeat (they are still listed)
                // but must not re-add themselves.
                continue;
            }
            let listed = self
                .incarnation()
                .and_then(|inc| self.view().member(&id).map(|m| m.incarnation == inc));
            if listed != Some(true) {
                // Reaped while alive (a long pause, a partition, or the
                // registry lost its data), or listed under the incarnation
                // we had before a re-claim: come back.
                warn!(node = %id, "not in the membership document; rejoining");
                if let Err(e) = self.add_self().await {
                    warn!(node = %id, error = %e, "rejoin failed");
                }
            }
        }
    }
}

fn decode_doc(bytes: &[u8]) -> Result<MembershipDoc, ClusterError> {
    serde_json::from_slice(bytes).map_err(|source| ClusterError::Corrupt {
        what: "membership document",
        source,
    })
}

fn encode_stats(stats: &NodeStats) -> Bytes {
    Bytes::from(serde_json::to_vec(stats).unwrap_or_default())
}

use crate::lock;
