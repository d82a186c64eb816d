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
//!   bump the epoch. Before removing a member whose heartbeat expired, the
//!   reaper probes it directly ([`crate::probe`]): a member that answers
//!   with its incarnation is alive (its registry is unreachable, not its
//!   process) and is kept; one that refuses connects or does not answer is
//!   removed. A host that vanished is therefore removed after at most `ttl`
//!   plus one reap period plus one probe timeout (2 s + 0.5 s + 0.5 s by
//!   default).
//! * **Suspicion:** a process that sees a member's connections fail (a
//!   gateway's tunnels ended or reset, a connect refused) calls
//!   [`Membership::suspect`]; the member is probed at once, and one whose
//!   address refuses connects is removed at once, by the same
//!   compare-and-set on `(id, incarnation)` as the reaper's. A SIGKILLed
//!   node thus leaves every ring within milliseconds of the first refused
//!   connect, not after its TTL. Where no process sees its connections
//!   (nodes only), the reap pass asks the registry whether a member late
//!   with its heartbeat still holds a connection to it
//!   ([`Registry::disconnected`]); one that does not is suspected the
//!   same way.
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
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Semaphore, watch};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::backoff::Backoff;
use crate::error::ClusterError;
use crate::probe::{
    MAX_PROBES_IN_FLIGHT, Probe, Prober, Suspicion, WEAK_COOLDOWN, proves_alive, tcp_prober,
};
use crate::registry::{Lease, Registry};
use crate::view::{Member, MemberState, MembershipDoc, NodeStats, View};

/// Timing and ring parameters of the membership protocol.
#[derive(Debug, Clone)]
pub struct MembershipConfig {
    /// A node whose heartbeat is older than this, and which does not answer
    /// a direct probe, is dead. Default: 2 s, so a host that vanished leaves
    /// every ring in about 3 s (a SIGKILLed process, whose port refuses
    /// connects, leaves as soon as a suspicion has it probed).
    pub ttl: Duration,
    /// Heartbeat and reap period. Default: `ttl / 4` (500 ms).
    pub heartbeat_every: Duration,
    /// Re-read the document this often even without notifications. Default: 1 s.
    pub poll_every: Duration,
    /// Virtual nodes per member. Default: [`wsring_ring::DEFAULT_VNODES`].
    pub vnodes: u32,
    /// How long a direct probe of a member may take. Default: `ttl / 4`
    /// (500 ms).
    pub probe_timeout: Duration,
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
            probe_timeout: ttl / 4,
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
    /// How members are probed ([`crate::probe`]).
    prober: Mutex<Prober>,
    /// Bounds the probes in flight ([`MAX_PROBES_IN_FLIGHT`]).
    probe_slots: Arc<Semaphore>,
    /// Members under suspicion or lately probed, by id.
    suspects: Mutex<HashMap<String, SuspectState>>,
    cancel: CancellationToken,
}

/// What this process knows of one suspected member.
#[derive(Debug, Default)]
struct SuspectState {
    /// A probe of it is running.
    probing: bool,
    /// When its last probe ended.
    probed: Option<tokio::time::Instant>,
    /// A weak sign came during the cooldown: one probe is due at its end.
    deferred: bool,
}

/// How long after an inconclusive probe of a suspect it is probed once more.
const SECOND_LOOK: Duration = Duration::from_millis(100);

/// A member whose heartbeat is older than one and a half periods has
/// missed a beat: it is late, and the registry is asked whether it still
/// holds a connection ([`Membership::suspect_disconnected`]).
fn late_after(heartbeat_every: Duration) -> Duration {
    heartbeat_every + heartbeat_every / 2
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
            prober: Mutex::new(tcp_prober()),
            probe_slots: Arc::new(Semaphore::new(MAX_PROBES_IN_FLIGHT)),
            suspects: Mutex::new(HashMap::new()),
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

    /// This node's incarnation while it serves as a member: joined, not
    /// fenced, not stopped. What `/healthz` reports, so that a probe proves
    /// a live member and nothing else.
    pub fn live_incarnation(&self) -> Option<u64> {
        if self.cancel.is_cancelled() || self.fenced_tx.borrow().is_some() {
            return None;
        }
        self.incarnation()
    }

    /// Replaces the prober (the default only tells a refused connect).
    /// Processes with an HTTP client install one that asks `/healthz`.
    pub fn set_prober(&self, prober: Prober) {
        *lock(&self.prober) = prober;
    }

    /// Reports a sign that member `id` may be dead (see [`Suspicion`]). The
    /// member is probed in the background, unless [`MAX_PROBES_IN_FLIGHT`]
    /// are running. A sign that comes while a probe of the member runs, or
    /// a weak sign of a member probed less than [`WEAK_COOLDOWN`] ago, has
    /// it probed once more later (after that probe, at the end of the
    /// cooldown), never more than one such probe pending per member. If its address refuses connects it is removed at once by
    /// compare-and-set on the incarnation it is listed with; if it answers
    /// or the probe is inconclusive it stays, and its heartbeat decides.
    pub fn suspect(self: &Arc<Self>, id: &str, why: Suspicion) {
        let Some(listed) = self
            .view()
            .member(id)
            .map(|m| (m.url.clone(), m.incarnation))
        else {
            return;
        };
        if lock(&self.local).as_ref().is_some_and(|l| l.id == id) {
            return;
        }
        let now = tokio::time::Instant::now();
        {
            let mut suspects = lock(&self.suspects);
            let s = suspects.entry(id.to_owned()).or_default();
            let cooling = s
                .probed
                .map(|t| t + WEAK_COOLDOWN)
                .filter(|until| *until > now);
            let later = if s.probing {
                // The probe in flight may have started before this sign:
                // ask again once it is over.
                Some(now + self.cfg.probe_timeout)
            } else if why == Suspicion::Weak {
                cooling
            } else {
                None
            };
            if let Some(until) = later {
                // Not lost, only postponed: one probe at the end of the
                // cooldown covers every sign seen during it.
                if !s.deferred {
                    s.deferred = true;
                    let me = Arc::clone(self);
                    let id = id.to_owned();
                    tokio::spawn(async move {
                        tokio::select! {
                            _ = me.cancel.cancelled() => {}
                            _ = tokio::time::sleep_until(until) => {
                                if let Some(s) = lock(&me.suspects).get_mut(&id) {
                                    s.deferred = false;
                                }
                                me.suspect(&id, why);
                            }
                        }
                    });
                }
                return;
            }
            s.probing = true;
        }
        let Ok(slot) = Arc::clone(&self.probe_slots).try_acquire_owned() else {
            debug!(
                node = id,
                "too many probes in flight; leaving the suspect to its heartbeat"
            );
            if let Some(s) = lock(&self.suspects).get_mut(id) {
                s.probing = false;
            }
            return;
        };
        let (url, inc) = listed;
        let id = id.to_owned();
        let me = Arc::clone(self);
        tokio::spawn(async move {
            let mut probe = me.probe(&url).await;
            if probe == Probe::Unconfirmed {
                debug!(node = %id, ?why, "first probe of a suspect inconclusive; a second look follows");
                // A process being killed closes its connections before its
                // listener, and a pooled connection to it fails without a
                // refusal: one more look, shortly after, tells them apart.
                tokio::time::sleep(SECOND_LOOK).await;
                probe = me.probe(&url).await;
            }
            drop(slot);
            debug!(node = %id, incarnation = inc, ?why, ?probe, "probed a suspect");
            match probe {
                Probe::Refused => {
                    me.probe_done(&id);
                    let plan = ReapPlan {
                        dead: vec![(id.clone(), inc)],
                    };
                    if let Err(e) = me.remove(&plan, "its address refuses connections").await {
                        debug!(node = %id, error = %e, "removing a dead suspect failed; its heartbeat will decide");
                    }
                }
                _ => me.probe_done(&id),
            }
        });
    }

    fn probe_done(&self, id: &str) {
        let mut suspects = lock(&self.suspects);
        if let Some(s) = suspects.get_mut(id) {
            s.probing = false;
            s.probed = Some(tokio::time::Instant::now());
        }
        // Forget members that left the document, so the map stays as small
        // as the membership.
        let view = self.view();
        suspects.retain(|id, s| s.probing || s.deferred || view.member(id).is_some());
    }

    /// One probe of the member at `url`, bounded by the probe timeout.
    async fn probe(&self, url: &str) -> Probe {
        let prober = lock(&self.prober).clone();
        let limit = self.cfg.probe_timeout;
        // The prober bounds itself; this bounds a prober that does not.
        tokio::time::timeout(limit + limit / 2, prober(url.to_owned(), limit))
            .await
            .unwrap_or(Probe::Unconfirmed)
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
            self.suspect_disconnected().await;
        }
    }

    /// Asks the registry which live members are late with their heartbeat
    /// (one beat missed, [`late_after`]) and hold no connection to it any more
    /// ([`Registry::disconnected`]), and suspects them strongly: a process
    /// whose sockets all closed has most likely died, and the probe tells.
    /// This is what lets nodes, which see no tunnel of their peers, remove
    /// a killed peer before its TTL. The read is bounded by the probe
    /// timeout; a failure leaves the members to their heartbeats.
    pub async fn suspect_disconnected(self: &Arc<Self>) {
        let own = lock(&self.local).as_ref().map(|l| l.id.clone());
        let ids: Vec<String> = self
            .view()
            .doc
            .members
            .keys()
            .filter(|id| own.as_deref() != Some(id.as_str()))
            .cloned()
            .collect();
        if ids.is_empty() {
            return;
        }
        let late = late_after(self.cfg.heartbeat_every);
        let asked = tokio::time::timeout(
            self.cfg.probe_timeout,
            self.registry.disconnected(&ids, self.cfg.ttl, late),
        )
        .await;
        match asked {
            Ok(Ok(gone)) => {
                for id in gone {
                    debug!(node = %id, "late heartbeat and no connection to the registry: suspected");
                    self.suspect(&id, Suspicion::Strong);
                }
            }
            Ok(Err(e)) => debug!(error = %e, "asking the registry about connections failed"),
            Err(_) => debug!("asking the registry about connections timed out"),
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
        let dead = self.spare_answering(&doc, dead).await;
        Ok(ReapPlan { dead })
    }

    /// Probes each member whose heartbeat expired (bounded by the probe
    /// slots) and keeps in the list only those that do not prove alive: a
    /// member whose process answers with its incarnation is not dead, its
    /// registry is unreachable.
    async fn spare_answering(
        &self,
        doc: &MembershipDoc,
        dead: Vec<(String, u64)>,
    ) -> Vec<(String, u64)> {
        let me = lock(&self.local).as_ref().map(|l| l.id.clone());
        let checks = dead.into_iter().map(|(id, inc)| {
            let url = doc.members.get(&id).map(|m| m.url.clone());
            let own = me.as_deref() == Some(id.as_str());
            async move {
                // A node never buries itself: it is alive by definition, and
                // its heartbeat loop claims its id again.
                if own {
                    return None;
                }
                let Some(url) = url else {
                    return Some((id, inc));
                };
                let Ok(_slot) = self.probe_slots.acquire().await else {
                    return Some((id, inc));
                };
                let probe = self.probe(&url).await;
                if proves_alive(probe, inc) {
                    debug!(node = %id, incarnation = inc, "heartbeat expired but the node answers its probe; kept");
                    None
                } else {
                    Some((id, inc))
                }
            }
        });
        futures::future::join_all(checks)
            .await
            .into_iter()
            .flatten()
            .collect()
    }

    /// The second half of a reap pass: removes the members of `plan`, each
    /// only if the document still lists the incarnation the plan saw. A
    /// member that rejoined meanwhile carries a new incarnation and stays.
    pub async fn reap_apply(&self, plan: &ReapPlan) -> Result<(), ClusterError> {
        self.remove(plan, "expired heartbeat").await
    }

    /// Removes the members of `plan` by compare-and-set on their
    /// incarnations, logging `why`.
    async fn remove(&self, plan: &ReapPlan, why: &'static str) -> Result<(), ClusterError> {
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
            warn!(nodes = ?removed, epoch = view.epoch(), reason = why, "reaped members found dead");
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

#[cfg(test)]
mod tests {
    //! The timing rules of suspicion and probing, on the in-memory registry
    //! with a scripted prober, in paused time.
    use super::*;
    use crate::memory::MemoryRegistry;
    use std::sync::atomic::AtomicUsize;

    const TTL: Duration = Duration::from_secs(2);

    /// A prober whose answer the test sets, counting the probes it ran and
    /// the most it ran at once.
    struct Script {
        answer: Mutex<Probe>,
        calls: AtomicUsize,
        running: AtomicUsize,
        most: AtomicUsize,
        /// Probes take this long (paused time).
        delay: Mutex<Duration>,
    }

    impl Script {
        fn new(answer: Probe) -> Arc<Script> {
            Arc::new(Script {
                answer: Mutex::new(answer),
                calls: AtomicUsize::new(0),
                running: AtomicUsize::new(0),
                most: AtomicUsize::new(0),
                delay: Mutex::new(Duration::from_millis(1)),
            })
        }

        fn set(&self, answer: Probe) {
            *lock(&self.answer) = answer;
        }

        fn prober(self: &Arc<Self>) -> Prober {
            let me = Arc::clone(self);
            Arc::new(move |_url, _limit| {
                let me = Arc::clone(&me);
                Box::pin(async move {
                    me.calls.fetch_add(1, Ordering::SeqCst);
                    let now = me.running.fetch_add(1, Ordering::SeqCst) + 1;
                    me.most.fetch_max(now, Ordering::SeqCst);
                    // What the member would say when the probe reached it.
                    let answer = *lock(&me.answer);
                    let delay = *lock(&me.delay);
                    tokio::time::sleep(delay).await;
                    me.running.fetch_sub(1, Ordering::SeqCst);
                    answer
                })
            })
        }
    }

    struct Setup {
        observer: Arc<Membership>,
        victim: Arc<Membership>,
        crash: CancellationToken,
        script: Arc<Script>,
        registry: Arc<MemoryRegistry>,
        _stop: tokio_util::sync::DropGuard,
    }

    /// An observer (a gateway) and a joined victim node on one registry.
    async fn setup(answer: Probe) -> Setup {
        let memory = Arc::new(MemoryRegistry::default());
        let registry: Arc<dyn Registry> = Arc::clone(&memory) as Arc<dyn Registry>;
        let stop = CancellationToken::new();
        let cfg = MembershipConfig::with_ttl(TTL);
        let observer = Membership::start(Arc::clone(&registry), cfg.clone(), stop.child_token())
            .await
            .expect("observer");
        let script = Script::new(answer);
        observer.set_prober(script.prober());
        let crash = stop.child_token();
        let victim = Membership::start(registry, cfg, crash.clone())
            .await
            .expect("victim");
        victim
            .join(
                "victim",
                "ws://127.0.0.1:1/ws",
                Arc::new(NodeStats::default),
            )
            .await
            .expect("join");
        observer.reload().await.expect("reload");
        assert!(observer.view().member("victim").is_some());
        Setup {
            observer,
            victim,
            crash,
            script,
            registry: memory,
            _stop: stop.drop_guard(),
        }
    }

    fn listed(m: &Membership) -> bool {
        m.view().member("victim").is_some()
    }

    #[tokio::test(start_paused = true)]
    async fn a_suspect_whose_address_refuses_is_removed_at_once() {
        let s = setup(Probe::Refused).await;
        s.crash.cancel();
        let start = tokio::time::Instant::now();
        s.observer.suspect("victim", Suspicion::Strong);
        let mut rx = s.observer.subscribe();
        rx.wait_for(|v| v.member("victim").is_none())
            .await
            .expect("view");
        assert!(
            start.elapsed() < Duration::from_millis(50),
            "removed after {:?}, not at once",
            start.elapsed()
        );
        assert_eq!(s.script.calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_late_member_without_connections_is_removed_before_its_ttl() {
        let s = setup(Probe::Refused).await;
        // Killed: its heartbeat stops and the kernel closes its sockets.
        s.crash.cancel();
        s.registry.disconnect("victim");
        let start = tokio::time::Instant::now();
        let mut rx = s.observer.subscribe();
        rx.wait_for(|v| v.member("victim").is_none())
            .await
            .expect("view");
        // Late after 1.5 periods, seen by the next reap pass (at most 1.2
        // periods later), probed and removed at once.
        let within = late_after(TTL / 4) + TTL / 4 * 6 / 5;
        assert!(
            start.elapsed() <= within,
            "removed after {:?}, not within {within:?}",
            start.elapsed()
        );
        assert!(
            start.elapsed() > late_after(TTL / 4),
            "not before it was late"
        );
        assert_eq!(s.script.calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_late_member_still_connected_is_left_to_its_ttl() {
        let s = setup(Probe::Refused).await;
        // Its heartbeat stops but its connections stay (a stalled process,
        // or the registry cut from it alone): no suspicion, no probe.
        s.crash.cancel();
        tokio::time::sleep(TTL * 3 / 4).await;
        assert!(listed(&s.observer));
        assert_eq!(s.script.calls.load(Ordering::SeqCst), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_member_on_time_is_not_suspected_whatever_its_connections() {
        let s = setup(Probe::Refused).await;
        // Heartbeats keep coming: the connections are not even looked at.
        s.registry.disconnect("victim");
        tokio::time::sleep(TTL * 5).await;
        assert!(listed(&s.observer));
        assert_eq!(s.script.calls.load(Ordering::SeqCst), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_suspect_that_answers_is_kept_even_with_a_late_heartbeat() {
        let s = setup(Probe::Unconfirmed).await;
        let inc = s.victim.incarnation().expect("joined");
        s.script.set(Probe::Answered(inc));
        // The heartbeat stops (the registry is unreachable from the victim)
        // while the process keeps answering its probes.
        s.crash.cancel();
        s.observer.suspect("victim", Suspicion::Strong);
        tokio::time::sleep(TTL * 5).await;
        assert!(listed(&s.observer), "a node that answers is never removed");
        // Once it stops answering, the heartbeat rule applies at once: its
        // TTL ran out long ago.
        s.script.set(Probe::Unconfirmed);
        tokio::time::sleep(TTL / 4 * 2).await;
        assert!(!listed(&s.observer), "removed once it stopped answering");
    }

    #[tokio::test(start_paused = true)]
    async fn an_answer_from_an_older_incarnation_proves_nothing() {
        let s = setup(Probe::Unconfirmed).await;
        let inc = s.victim.incarnation().expect("joined");
        s.script.set(Probe::Answered(inc - 1));
        s.crash.cancel();
        tokio::time::sleep(TTL * 2).await;
        assert!(!listed(&s.observer));
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_host_is_removed_on_the_ttl_and_not_earlier() {
        let s = setup(Probe::Unconfirmed).await;
        *lock(&s.script.delay) = TTL; // every probe times out
        s.crash.cancel();
        let start = tokio::time::Instant::now();
        s.observer.suspect("victim", Suspicion::Strong);
        let mut rx = s.observer.subscribe();
        rx.wait_for(|v| v.member("victim").is_none())
            .await
            .expect("view");
        let took = start.elapsed();
        let cfg = s.observer.config();
        // The TTL, then at most one reap period (with its jitter) and one
        // bounded probe.
        let most = cfg.ttl + cfg.heartbeat_every.mul_f64(1.2) + cfg.probe_timeout * 2;
        assert!(took >= cfg.ttl, "removed after {took:?}, before the TTL");
        assert!(took <= most, "removed after {took:?}, later than {most:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn weak_suspicions_are_probed_once_per_cooldown() {
        let s = setup(Probe::Unconfirmed).await;
        let inc = s.victim.incarnation().expect("joined");
        s.script.set(Probe::Answered(inc));
        let calls = || s.script.calls.load(Ordering::SeqCst);
        for _ in 0..100 {
            s.observer.suspect("victim", Suspicion::Weak);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(calls(), 1, "500 ms of weak signs");
        s.observer.suspect("victim", Suspicion::Strong);
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert_eq!(calls(), 2, "a strong sign is probed at once");
        // The weak signs of the cooldown were postponed, not lost: one probe
        // at its end covers them all.
        tokio::time::sleep(WEAK_COOLDOWN).await;
        assert_eq!(calls(), 3, "one postponed probe");
        tokio::time::sleep(WEAK_COOLDOWN * 3).await;
        assert_eq!(calls(), 3, "nothing more without a new sign");
        s.observer.suspect("victim", Suspicion::Weak);
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert_eq!(calls(), 4, "after the cooldown, at once");
        assert!(listed(&s.observer));
    }

    #[tokio::test(start_paused = true)]
    async fn a_sign_during_a_probe_is_not_lost() {
        let s = setup(Probe::Unconfirmed).await;
        let inc = s.victim.incarnation().expect("joined");
        s.script.set(Probe::Answered(inc));
        *lock(&s.script.delay) = Duration::from_millis(300);
        s.observer.suspect("victim", Suspicion::Weak);
        tokio::time::sleep(Duration::from_millis(100)).await;
        // It dies while the first probe, which it answered, is under way.
        s.crash.cancel();
        s.script.set(Probe::Refused);
        let start = tokio::time::Instant::now();
        s.observer.suspect("victim", Suspicion::Weak);
        let mut rx = s.observer.subscribe();
        rx.wait_for(|v| v.member("victim").is_none())
            .await
            .expect("view");
        let took = start.elapsed();
        assert!(
            took <= WEAK_COOLDOWN + Duration::from_millis(500),
            "removed after {took:?}: by a later probe, not by the TTL"
        );
        assert_eq!(s.script.calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn probes_in_flight_are_bounded() {
        let registry: Arc<dyn Registry> = Arc::new(MemoryRegistry::default());
        let mut doc = MembershipDoc {
            epoch: 1,
            members: BTreeMap::new(),
        };
        for i in 0..100 {
            doc.members.insert(
                format!("n{i}"),
                Member {
                    url: format!("ws://127.0.0.1:1/n{i}"),
                    state: MemberState::Up,
                    incarnation: 1,
                },
            );
        }
        let bytes = Bytes::from(serde_json::to_vec(&doc).expect("json"));
        registry.store(None, bytes).await.expect("store");
        let stop = CancellationToken::new();
        let m = Membership::start(
            registry,
            MembershipConfig::with_ttl(TTL),
            stop.child_token(),
        )
        .await
        .expect("observer");
        let script = Script::new(Probe::Answered(1));
        *lock(&script.delay) = Duration::from_millis(400);
        m.set_prober(script.prober());
        for i in 0..100 {
            m.suspect(&format!("n{i}"), Suspicion::Strong);
        }
        // 100 members without heartbeats, all suspected: the reap passes
        // probe them too, through the same slots.
        tokio::time::sleep(TTL * 3).await;
        assert_eq!(script.most.load(Ordering::SeqCst), MAX_PROBES_IN_FLIGHT);
        assert_eq!(m.view().doc.members.len(), 100, "all answered, all kept");
        stop.cancel();
    }
}
