//! Reacting to membership changes: when the ring moves users away from this
//! node, their sessions get `moved` + close 1012 so they reconnect (through
//! the gateway) to the new owner. Sessions of users still owned here are never
//! touched.
//!
//! The closes can be spread over `drain_window` (the i-th of n at
//! `i/n * window`), and each `moved` frame carries a jittered
//! `retry_after_ms`, so a deploy does not turn into a reconnect storm. Each
//! spread close re-checks ownership against the latest view first, in case the
//! ring moved the user back meanwhile.

use rand::Rng;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tracing::{info, warn};
use wsring_cluster::View;

use crate::node::Node;
use crate::sessions::{Outbound, SessionHandle};

/// Largest suggested reconnect delay when closes are not spread by a window.
const MAX_RETRY_SPREAD_MS: u64 = 5_000;

/// Follows the membership view until the node stops.
pub(crate) async fn run(node: Arc<Node>) {
    let mut rx = node.membership.subscribe();
    loop {
        tokio::select! {
            _ = node.kill.cancelled() => return,
            changed = rx.changed() => if changed.is_err() { return },
        }
        let view = rx.borrow_and_update().clone();
        rebalance(&node, &view);
    }
}

/// How long after a ring change a peer may still route by its older view:
/// registry notifications arrive within milliseconds, and the 1 s document
/// poll is the fallback if one is missed. A session that starts on a node
/// catches up once after this long, for messages such a peer published to
/// the user's previous owner.
pub(crate) const SETTLE: Duration = Duration::from_millis(1500);

/// Moves every local session this node no longer should hold under `view`.
pub(crate) fn rebalance(node: &Arc<Node>, view: &Arc<View>) {
    if !node.joined.load(Ordering::Relaxed) {
        return;
    }
    if view.member(node.id()).is_none() && !node.leaving.load(Ordering::Relaxed) {
        // We were dropped while alive (reaped during a pause, or the registry
        // lost its data). The heartbeat loop is re-adding us; moving everyone
        // now would cause exactly the reconnect storm we want to avoid.
        warn!(
            epoch = view.epoch(),
            "this node is missing from the view; waiting to rejoin"
        );
        node.missing.store(true, Ordering::SeqCst);
        return;
    }
    if node.missing.swap(false, Ordering::SeqCst) {
        catch_up_after_rejoin(node);
    }
    let moving: Vec<SessionHandle> = node
        .table
        .all()
        .into_iter()
        .filter(|h| !node.holds(view, h))
        // Each session is moved once, however many rebalances overlap.
        .filter(|h| !h.moving.swap(true, Ordering::SeqCst))
        .collect();
    if moving.is_empty() {
        return;
    }
    let n = moving.len() as u64;
    let epoch = view.epoch();
    info!(epoch, sessions = n, "moving sessions to their new owners");
    node.record_moved(epoch, n);
    let window = node.cfg.drain_window;
    if window.is_zero() {
        // Everything closes now; spread the reconnects instead, at about
        // `reconnect_rate` a second, between 50 ms and 5 s.
        let spread = retry_spread_ms(n, node.cfg.reconnect_rate);
        let mut rng = rand::rng();
        for h in moving {
            h.offer(Outbound::Moved {
                epoch,
                retry_after_ms: rng.random_range(0..=spread),
            });
        }
        return;
    }
    let node = Arc::clone(node);
    tokio::spawn(async move {
        let start = tokio::time::Instant::now();
        for (i, h) in moving.into_iter().enumerate() {
            let at = start + window.mul_f64(i as f64 / n as f64);
            tokio::select! {
                _ = node.kill.cancelled() => return,
                _ = tokio::time::sleep_until(at) => {}
            }
            let latest = node.membership.view();
            if node.holds(&latest, &h) {
                h.moving.store(false, Ordering::SeqCst);
                continue;
            }
            let retry_after_ms = rand::rng().random_range(0..=100);
            h.offer(Outbound::Moved {
                epoch: latest.epoch(),
                retry_after_ms,
            });
        }
    });
}

/// While this node was missing from the view, peers routed its users to
/// other nodes, which had no session for them: in durable mode those
/// messages are stored but were never delivered here. Every local session
/// catches up from its streams now, and once more after [`SETTLE`], for
/// what peers still routing by the older view sent meanwhile.
fn catch_up_after_rejoin(node: &Arc<Node>) {
    if node.streams.is_none() {
        return;
    }
    info!(
        epoch = node.membership.view().epoch(),
        "back in the view; local sessions catch up"
    );
    let resync_all = |node: &Node| {
        for h in node.table.all() {
            h.offer(Outbound::Resync);
        }
    };
    resync_all(node);
    let node = Arc::clone(node);
    tokio::spawn(async move {
        tokio::select! {
            _ = node.kill.cancelled() => {}
            _ = tokio::time::sleep(SETTLE) => resync_all(&node),
        }
    });
}

/// The largest `retry_after_ms` for `n` sessions moved at once: long
/// enough for about `rate` reconnects a second, between 50 ms and 5 s.
fn retry_spread_ms(n: u64, rate: u32) -> u64 {
    (n.saturating_mul(1000) / u64::from(rate.max(1))).clamp(50, MAX_RETRY_SPREAD_MS)
}

/// How long a drain waits for its sessions to go after the window.
pub(crate) const DRAIN_GRACE: Duration = Duration::from_secs(5);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::testing::TestNode;
    use tokio::time::Instant;

    /// Sessions of four users, all owned by the test node until it leaves.
    fn sessions(t: &TestNode) -> Vec<(SessionHandle, crate::outbox::Receiver)> {
        ["a", "b", "c", "d"].iter().map(|u| t.session(u)).collect()
    }

    /// A node with four sessions that starts draining over `window`.
    async fn drain(
        window: Duration,
    ) -> (
        TestNode,
        Vec<(SessionHandle, crate::outbox::Receiver)>,
        Instant,
    ) {
        let mut cfg = TestNode::config();
        cfg.drain_window = window;
        let t = TestNode::start(cfg).await;
        let rxs = sessions(&t);
        t.node.leaving.store(true, Ordering::SeqCst);
        let start = Instant::now();
        rebalance(&t.node, &t.node.membership.view());
        (t, rxs, start)
    }

    /// How many sessions have been told to move so far; checks each order.
    fn moved(rxs: &mut [(SessionHandle, crate::outbox::Receiver)], max_retry_ms: u64) -> usize {
        let mut n = 0;
        for (h, rx) in rxs.iter_mut() {
            match rx.try_recv() {
                Ok(Outbound::Moved { retry_after_ms, .. }) => {
                    assert!(retry_after_ms <= max_retry_ms, "{retry_after_ms}");
                    assert!(h.moving.load(Ordering::SeqCst));
                    n += 1;
                }
                Ok(other) => panic!("unexpected {other:?}"),
                Err(_) => {}
            }
        }
        n
    }

    #[tokio::test(start_paused = true)]
    async fn the_drain_window_spreads_the_closes_evenly() {
        let (t, mut rxs, start) = drain(Duration::from_secs(4)).await;
        // The i-th of 4 closes at i/4 of the window: check between the slots.
        let mut seen = 0;
        for slot in 0..4u32 {
            tokio::time::sleep_until(start + Duration::from_millis(500 + 1000 * u64::from(slot)))
                .await;
            seen += moved(&mut rxs, 100);
            assert_eq!(seen, slot as usize + 1, "at {:?}", start.elapsed());
        }
        // A second rebalance (the view change the drain causes) moves no
        // one twice.
        rebalance(&t.node, &t.node.membership.view());
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(moved(&mut rxs, 100), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_session_whose_user_came_back_is_not_moved() {
        let (t, mut rxs, start) = drain(Duration::from_secs(4)).await;
        tokio::time::sleep_until(start + Duration::from_millis(1500)).await;
        assert_eq!(moved(&mut rxs, 100), 2);
        // The node owns its users again before the remaining closes are due.
        t.node.leaving.store(false, Ordering::SeqCst);
        tokio::time::sleep_until(start + Duration::from_secs(5)).await;
        assert_eq!(moved(&mut rxs, 100), 0);
        let kept = rxs
            .iter()
            .filter(|(h, _)| !h.moving.load(Ordering::SeqCst))
            .count();
        assert_eq!(
            kept, 2,
            "their moving flag is cleared for a later rebalance"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_window_everyone_moves_at_once_with_spread_retries() {
        let (t, mut rxs, _) = drain(Duration::ZERO).await;
        // 4 sessions at the default 2,000 a second: the 50 ms floor.
        assert_eq!(moved(&mut rxs, 50), 4);
        let epochs = t.node.counters.moved.lock().map(|m| m.len()).unwrap_or(0);
        assert_eq!(epochs, 1, "one moved report for the epoch");
    }

    #[test]
    fn the_retry_spread_follows_the_reconnect_rate() {
        assert_eq!(retry_spread_ms(1_000, 500), 2_000);
        assert_eq!(retry_spread_ms(3_400, 2_000), 1_700);
        assert_eq!(retry_spread_ms(3_400, 5_000), 680);
        assert_eq!(retry_spread_ms(10, 500), 50, "floor");
        assert_eq!(retry_spread_ms(100_000, 500), 5_000, "cap");
        assert_eq!(
            retry_spread_ms(u64::MAX, 0),
            5_000,
            "no overflow, rate 0 as 1"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_node_back_in_the_view_has_its_durable_sessions_catch_up() {
        let t = TestNode::start(TestNode::durable_config()).await;
        let mut rxs = sessions(&t);
        let resyncs = |rxs: &mut [(SessionHandle, crate::outbox::Receiver)]| {
            rxs.iter_mut()
                .map(|(_, rx)| matches!(rx.try_recv(), Ok(Outbound::Resync)))
                .filter(|&resync| resync)
                .count()
        };
        let present = t.node.membership.view();
        // Missing while alive: nobody moves, nothing to catch up yet.
        rebalance(&t.node, &Arc::new(View::new(Default::default(), 16)));
        assert_eq!(resyncs(&mut rxs), 0);
        // Back: every session catches up now, and again after SETTLE.
        rebalance(&t.node, &present);
        assert_eq!(resyncs(&mut rxs), 4);
        tokio::time::sleep(SETTLE + Duration::from_millis(10)).await;
        assert_eq!(resyncs(&mut rxs), 4);
        // A later view change with the node present all along: no catch-up.
        rebalance(&t.node, &present);
        tokio::time::sleep(SETTLE * 2).await;
        assert_eq!(resyncs(&mut rxs), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn owned_sessions_and_a_node_missing_from_the_view_move_no_one() {
        let t = TestNode::start(TestNode::config()).await;
        let mut rxs = sessions(&t);
        rebalance(&t.node, &t.node.membership.view());
        assert_eq!(moved(&mut rxs, 0), 0, "the node owns every user");
        // A view without this node (it was reaped while alive): wait to
        // rejoin rather than move everyone.
        let empty = Arc::new(View::new(Default::default(), 16));
        rebalance(&t.node, &empty);
        assert_eq!(moved(&mut rxs, 0), 0);
    }
}
