//! Locates answered recently, per node, for broadcast routing's load
//! estimate.
//!
//! In broadcast mode the gateway sends a new client to the least loaded
//! node. A tunnelled client counts at once (the gateway holds its tunnel),
//! but a located client connects to its node directly, so its node's load
//! only shows once that node's next heartbeat has been read, up to about a
//! second later. Without this count a burst of located clients would all be
//! sent to the same node. Each locate counts for one to two
//! [`WINDOW`]s, longer than a heartbeat takes to reflect it; counting it a
//! little too long only biases the next picks towards the other nodes,
//! which got the same treatment.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// How long a locate counts at least (at most twice this).
pub(crate) const WINDOW: Duration = Duration::from_secs(2);

/// Per-node counts of recent locates, in two fixed windows.
#[derive(Debug, Default)]
pub(crate) struct RecentLocates {
    nodes: HashMap<String, Counts>,
}

#[derive(Debug)]
struct Counts {
    /// When the current window started.
    since: Instant,
    current: u64,
    previous: u64,
}

impl Counts {
    /// Moves the windows forward to `now`.
    fn roll(&mut self, now: Instant) {
        let age = now.saturating_duration_since(self.since);
        if age >= WINDOW {
            self.previous = if age < 2 * WINDOW { self.current } else { 0 };
            self.current = 0;
            self.since = now;
        }
    }

    fn total(&self) -> u64 {
        self.current + self.previous
    }
}

impl RecentLocates {
    /// Counts one locate answered with `node`.
    pub(crate) fn note(&mut self, node: &str, now: Instant) {
        let c = self.nodes.entry(node.to_owned()).or_insert(Counts {
            since: now,
            current: 0,
            previous: 0,
        });
        c.roll(now);
        c.current += 1;
    }

    /// The recent locates of every node that has any; nodes whose counts
    /// ran out are forgotten, so the map holds only nodes located lately.
    pub(crate) fn counts(&mut self, now: Instant) -> HashMap<String, u64> {
        self.nodes.retain(|_, c| {
            c.roll(now);
            c.total() > 0
        });
        self.nodes
            .iter()
            .map(|(id, c)| (id.clone(), c.total()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_locate_counts_for_one_to_two_windows() {
        let t0 = Instant::now();
        let mut r = RecentLocates::default();
        r.note("n1", t0);
        r.note("n1", t0 + Duration::from_millis(100));
        r.note("n2", t0 + Duration::from_millis(200));
        let c = r.counts(t0 + Duration::from_millis(300));
        assert_eq!((c["n1"], c["n2"]), (2, 1));
        // Into the next window: still counted, as the previous one.
        r.note("n1", t0 + WINDOW + Duration::from_millis(1));
        let c = r.counts(t0 + WINDOW + Duration::from_millis(2));
        assert_eq!((c["n1"], c["n2"]), (3, 1));
        // A window later n1's first two have gone, its third still counts.
        let c = r.counts(t0 + 2 * WINDOW + Duration::from_millis(2));
        assert_eq!((c["n1"], c["n2"]), (1, 1));
        // Past two windows nothing is left, and the nodes are forgotten.
        let c = r.counts(t0 + 3 * WINDOW + Duration::from_millis(2));
        assert!(c.is_empty(), "{c:?}");
        assert!(r.nodes.is_empty());
        // After a long quiet spell a node starts over.
        r.note("n1", t0 + 10 * WINDOW);
        assert_eq!(r.counts(t0 + 10 * WINDOW)["n1"], 1);
    }
}
