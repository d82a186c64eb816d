//! The membership event log and the live feed behind the dashboard.
//!
//! A background task diffs every new membership view against the previous one
//! and records what happened (a node joined, started draining, left after a
//! drain, or vanished — a crash found by the heartbeat TTL) together with how
//! many sessions the change moved. Moved counts come from the nodes'
//! heartbeats (each reports `moved` per epoch); for a crash it is the dead
//! node's last connection count. `GET /api/events` streams all of it as
//! Server-Sent Events, plus a node table with message rates every second, so
//! the dashboard never polls.

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::stream::{self, StreamExt};
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashSet, VecDeque};
use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::broadcast;
use wsring_cluster::report;
use wsring_cluster::{MemberState, NodeStats, View};
use wsring_http::ApiError;

use crate::Gateway;

/// Events kept for late subscribers.
const LOG_LEN: usize = 200;

/// Live feeds served at once. Each costs a task, a socket buffer and ~100
/// KB on connect; past this `/api/events` answers 503, so feed clients that
/// never read cannot pile up.
pub const MAX_FEED_CLIENTS: usize = 64;

/// One membership change.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct MembershipEvent {
    /// The epoch the change produced.
    pub epoch: u64,
    /// Wall-clock time seen by this gateway, Unix milliseconds.
    pub at_ms: u64,
    /// `join`, `drain` (left the ring, moving sessions), `leave` (gone after a
    /// drain) or `crash` (heartbeat expired).
    pub kind: &'static str,
    /// The node concerned.
    pub node: String,
    /// Sessions moved (or, for a crash, disconnected) by this change.
    pub moved: u64,
}

/// A message on the live feed: an SSE event name and its JSON data.
#[derive(Debug, Clone)]
pub struct FeedItem {
    /// SSE event name.
    pub name: &'static str,
    /// JSON payload.
    pub data: String,
}

/// Event log plus the feed's broadcast channel.
pub struct Events {
    log: Mutex<VecDeque<MembershipEvent>>,
    feed: broadcast::Sender<FeedItem>,
    last_nodes: Mutex<Value>,
    /// Live feeds being served.
    clients: Arc<AtomicUsize>,
}

/// One served feed; the count drops when the stream does.
struct FeedSlot(Arc<AtomicUsize>);

impl Drop for FeedSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Default for Events {
    fn default() -> Self {
        Events {
            log: Mutex::new(VecDeque::new()),
            feed: broadcast::channel(1024).0,
            last_nodes: Mutex::new(Value::Null),
            clients: Arc::new(AtomicUsize::new(0)),
        }
    }
}

use wsring_cluster::lock;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Events {
    /// Recent events, oldest first.
    pub fn recent(&self) -> Vec<MembershipEvent> {
        lock(&self.log).iter().cloned().collect()
    }

    fn publish(&self, name: &'static str, data: &impl Serialize) {
        if let Ok(data) = serde_json::to_string(data) {
            let _ = self.feed.send(FeedItem { name, data });
        }
    }

    fn record(&self, ev: MembershipEvent) {
        self.publish("event", &ev);
        let mut log = lock(&self.log);
        log.push_back(ev);
        while log.len() > LOG_LEN {
            log.pop_front();
        }
    }

    /// Adds moved sessions to the first event of `epoch`.
    fn add_moved(&self, epoch: u64, count: u64) {
        let updated = {
            let mut log = lock(&self.log);
            log.iter_mut().find(|e| e.epoch == epoch).map(|e| {
                e.moved += count;
                e.clone()
            })
        };
        if let Some(ev) = updated {
            self.publish("event", &ev);
        }
    }
}

/// Diffs two views into events.
pub fn diff(
    prev: &View,
    next: &View,
    last_stats: &BTreeMap<String, NodeStats>,
) -> Vec<MembershipEvent> {
    let at_ms = now_ms();
    let mut out = Vec::new();
    let ev = |kind, node: &str, moved| MembershipEvent {
        epoch: next.epoch(),
        at_ms,
        kind,
        node: node.to_owned(),
        moved,
    };
    for (id, m) in &next.doc.members {
        match (prev.member(id).map(|p| p.state), m.state) {
            (None, MemberState::Up) => out.push(ev("join", id, 0)),
            (None | Some(MemberState::Up), MemberState::Draining) => {
                // A drain moves every session the node holds; its own report
                // often comes too late (it deregisters right after moving).
                let moving = last_stats.get(id).map_or(0, |s| s.connections);
                out.push(ev("drain", id, moving));
            }
            _ => {}
        }
    }
    for (id, m) in &prev.doc.members {
        if next.member(id).is_none() {
            if m.state == MemberState::Draining {
                out.push(ev("leave", id, 0));
            } else {
                let lost = last_stats.get(id).map_or(0, |s| s.connections);
                out.push(ev("crash", id, lost));
            }
        }
    }
    out
}

/// Follows membership and stats, feeding the log and the live feed.
pub(crate) async fn run(gw: Arc<Gateway>) {
    let mut views = gw.membership.subscribe();
    let mut stats_rx = gw.membership.subscribe_stats();
    let mut prev = gw.membership.view();
    // The last stats seen per node, kept until the membership diff has used
    // them: the reaper drops a dead node's heartbeat before the view change
    // that removes it arrives.
    let mut last_stats: BTreeMap<String, NodeStats> = (*gw.membership.stats()).clone();
    let mut counted: HashSet<(String, u64)> = HashSet::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut prev_totals: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    let mut prev_tick = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = gw.stop.cancelled() => return,
            r = views.changed() => {
                if r.is_err() { return; }
                let next = views.borrow_and_update().clone();
                for e in diff(&prev, &next, &last_stats) {
                    if matches!(e.kind, "drain" | "crash") {
                        // Counted from the last stats; ignore the node's own report.
                        counted.insert((e.node.clone(), e.epoch));
                    }
                    gw.events.record(e);
                }
                last_stats.retain(|id, _| next.member(id).is_some());
                gw.events.publish("ring", &report::ring(&next, true));
                prev = next;
            }
            r = stats_rx.changed() => {
                if r.is_err() { return; }
                let stats = stats_rx.borrow_and_update().clone();
                for (node, s) in stats.iter() {
                    last_stats.insert(node.clone(), s.clone());
                    for m in &s.moved {
                        if counted.insert((node.clone(), m.epoch)) {
                            gw.events.add_moved(m.epoch, m.count);
                        }
                    }
                }
                // Nodes report their last 16 moves; older entries can go.
                if let Some(oldest) = gw.events.recent().first().map(|e| e.epoch) {
                    counted.retain(|(_, epoch)| *epoch >= oldest);
                }
            }
            _ = tick.tick() => {
                let dt = prev_tick.elapsed().as_secs_f64().max(0.001);
                prev_tick = tokio::time::Instant::now();
                let body = nodes_with_rates(&gw, &mut prev_totals, dt);
                *lock(&gw.events.last_nodes) = body.clone();
                gw.events.publish("nodes", &body);
            }
        }
    }
}

fn nodes_with_rates(gw: &Gateway, prev: &mut BTreeMap<String, (u64, u64)>, dt: f64) -> Value {
    let view = gw.membership.view();
    let stats = gw.membership.stats();
    let mut body = report::nodes(&view, &stats, gw.cfg.routing);
    if let Some(nodes) = body["nodes"].as_array_mut() {
        for n in nodes {
            let id = n["id"].as_str().unwrap_or_default().to_owned();
            let cur = (
                n["msgs_in"].as_u64().unwrap_or(0),
                n["msgs_out"].as_u64().unwrap_or(0),
            );
            let (rin, rout) = match prev.get(&id) {
                Some(p) => (
                    cur.0.saturating_sub(p.0) as f64 / dt,
                    cur.1.saturating_sub(p.1) as f64 / dt,
                ),
                None => (0.0, 0.0),
            };
            n["in_rate"] = json!((rin * 10.0).round() / 10.0);
            n["out_rate"] = json!((rout * 10.0).round() / 10.0);
            prev.insert(id, cur);
        }
    }
    body
}

/// `GET /api/events`: the dashboard's live feed (Server-Sent Events).
///
/// On connect it sends `info`, `ring` (with arcs), `nodes` and `events` (the
/// recent log); afterwards `nodes` every second, `ring` on every epoch, and
/// `event` for each new or updated membership event.
pub(crate) async fn sse(State(gw): State<Arc<Gateway>>) -> Response {
    let clients = Arc::clone(&gw.events.clients);
    if clients.fetch_add(1, Ordering::AcqRel) >= MAX_FEED_CLIENTS {
        clients.fetch_sub(1, Ordering::AcqRel);
        return ApiError::unavailable(format!(
            "at most {MAX_FEED_CLIENTS} live feeds are served at once"
        ))
        .into_response();
    }
    let slot = FeedSlot(clients);
    let rx = gw.events.feed.subscribe();
    let view = gw.membership.view();
    let mut nodes = lock(&gw.events.last_nodes).clone();
    if nodes.is_null() {
        nodes = report::nodes(&view, &gw.membership.stats(), gw.cfg.routing);
    }
    let initial = vec![
        ("info", crate::api::info_body(&gw).to_string()),
        ("ring", report::ring(&view, true).to_string()),
        ("nodes", nodes.to_string()),
        (
            "events",
            serde_json::to_string(&gw.events.recent()).unwrap_or_default(),
        ),
    ];
    let first = stream::iter(
        initial
            .into_iter()
            .map(|(name, data)| Ok::<_, Infallible>(Event::default().event(name).data(data))),
    );
    let live = stream::unfold((rx, slot), |(mut rx, slot)| async move {
        loop {
            match rx.recv().await {
                Ok(item) => {
                    let ev = Event::default().event(item.name).data(item.data);
                    return Some((Ok(ev), (rx, slot)));
                }
                // A slow dashboard skips intermediate updates; the next
                // `nodes` tick resynchronises it.
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    let stop = gw.stop.clone();
    let live = live.take_until(async move { stop.cancelled().await });
    Sse::new(first.chain(live))
        .keep_alive(KeepAlive::default())
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use wsring_cluster::{Member, MembershipDoc};

    fn view(epoch: u64, members: &[(&str, MemberState)]) -> View {
        let mut doc = MembershipDoc {
            epoch,
            ..Default::default()
        };
        for (id, state) in members {
            doc.members.insert(
                id.to_string(),
                Member {
                    url: String::new(),
                    state: *state,
                    incarnation: 1,
                },
            );
        }
        View::new(doc, 8)
    }

    #[test]
    fn classifies_changes() {
        use MemberState::*;
        let a = view(1, &[("n1", Up), ("n2", Up)]);
        let b = view(2, &[("n1", Up), ("n2", Up), ("n3", Up)]);
        let c = view(3, &[("n1", Up), ("n2", Draining), ("n3", Up)]);
        let d = view(4, &[("n1", Up), ("n3", Up)]);
        let e = view(5, &[("n3", Up)]);
        let mut stats = BTreeMap::new();
        stats.insert(
            "n1".to_string(),
            NodeStats {
                connections: 7,
                ..Default::default()
            },
        );
        let kinds = |p: &View, n: &View| -> Vec<(&'static str, String, u64)> {
            diff(p, n, &stats)
                .into_iter()
                .map(|e| (e.kind, e.node, e.moved))
                .collect()
        };
        assert_eq!(kinds(&a, &b), vec![("join", "n3".to_string(), 0)]);
        assert_eq!(kinds(&b, &c), vec![("drain", "n2".to_string(), 0)]);
        // A drain counts the sessions the node held when it started.
        let busy = view(3, &[("n1", Draining), ("n2", Up), ("n3", Up)]);
        assert_eq!(kinds(&b, &busy), vec![("drain", "n1".to_string(), 7)]);
        assert_eq!(kinds(&c, &d), vec![("leave", "n2".to_string(), 0)]);
        assert_eq!(kinds(&d, &e), vec![("crash", "n1".to_string(), 7)]);
    }
}
