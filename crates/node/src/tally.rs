//! The bookkeeping under both cluster-wide pictures a node keeps: presence
//! rosters (per room, which node has which users) and room occupancy (which
//! node has members in which rooms).
//!
//! Each node's *share* (its set of items: users, or rooms) reaches the
//! others as deltas and as whole answers in chunks, each tagged with the
//! node's incarnation (its claim on its id) and the epoch of a view that
//! listed it. A [`Tally`] keeps every node's share and, per item, how many
//! nodes have it; an item whose count goes 0 → 1 or 1 → 0 is an *edge*,
//! `(item, true)` or `(item, false)`. Pure bookkeeping, no I/O, so the rules
//! are tested here:
//!
//! * a message of an older claim than the one known is ignored; a newer
//!   claim starts the node's share over;
//! * a node that leaves the view (or that said it was a member at an epoch
//!   a newer view no longer lists it in) loses its share, and its claim is
//!   remembered, so a late message of it brings nothing back.

use std::collections::{HashMap, HashSet};
use wsring_cluster::View;

/// A change of an item's cluster-wide presence: `(item, present now)`.
pub(crate) type Edges = Vec<(String, bool)>;

/// Who a message is from: node id, incarnation, and the epoch of a view
/// listing it (0: unknown).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Claim<'a> {
    pub node: &'a str,
    pub inc: u64,
    pub epoch: u64,
}

impl<'a> Claim<'a> {
    /// A claim without an epoch.
    pub fn of(node: &'a str, inc: u64) -> Claim<'a> {
        Claim {
            node,
            inc,
            epoch: 0,
        }
    }
}

/// What a batch of edges changed: an item's edges alternate, so an even
/// number of them (a share replaced by one holding the same item, say)
/// changed nothing and an odd number ends in the change. Works on any
/// per-item event type.
pub(crate) fn net<E: Clone>(edges: Vec<(String, E)>) -> Vec<(String, E)> {
    let mut last: HashMap<String, (usize, E)> = HashMap::new();
    let mut order = Vec::new();
    for (item, e) in edges {
        let entry = last.entry(item.clone()).or_insert_with(|| {
            order.push(item);
            (0, e.clone())
        });
        entry.0 += 1;
        entry.1 = e;
    }
    order
        .into_iter()
        .filter_map(|i| match last.remove(&i) {
            Some((n, e)) if n % 2 == 1 => Some((i, e)),
            _ => None,
        })
        .collect()
}

/// One node's items, as the others know them.
pub(crate) struct Share {
    pub inc: u64,
    /// The newest epoch at which the node said it was a member.
    pub epoch: u64,
    pub items: HashSet<String>,
}

/// Every node's share and the count of nodes per item.
#[derive(Default)]
pub(crate) struct Tally {
    pub shares: HashMap<String, Share>,
    /// Per item, the number of nodes whose share has it.
    pub counts: HashMap<String, u32>,
    /// Shares arriving in chunks, per node: incarnation and items so far.
    gathering: HashMap<String, (u64, HashSet<String>)>,
    /// Per node id, the newest claim dropped because the node left.
    gone: HashMap<String, u64>,
}

impl Tally {
    /// Whether `node`'s share has `item`.
    pub fn has(&self, node: &str, item: &str) -> bool {
        self.shares
            .get(node)
            .is_some_and(|s| s.items.contains(item))
    }

    fn count(&mut self, item: &str, up: bool, edges: &mut Edges) {
        let n = self.counts.entry(item.to_owned()).or_default();
        let before = *n;
        *n = if up {
            before + 1
        } else {
            before.saturating_sub(1)
        };
        let after = *n;
        if after == 0 {
            self.counts.remove(item);
        }
        match (before, after) {
            (0, 1) => edges.push((item.to_owned(), true)),
            (1, 0) => edges.push((item.to_owned(), false)),
            _ => {}
        }
    }

    /// The share of `from`, started over for a newer claim; `None` for an
    /// older (or a dropped) claim.
    fn share_of(&mut self, from: Claim<'_>, edges: &mut Edges) -> Option<&mut Share> {
        if self.gone.get(from.node).is_some_and(|g| from.inc <= *g) {
            return None;
        }
        match self.shares.get(from.node).map(|s| s.inc) {
            Some(k) if from.inc < k => return None,
            Some(k) if from.inc > k => self.drop_node(from.node, edges),
            _ => {}
        }
        let share = self.shares.entry(from.node.to_owned()).or_insert(Share {
            inc: from.inc,
            epoch: from.epoch,
            items: HashSet::new(),
        });
        share.epoch = share.epoch.max(from.epoch);
        Some(share)
    }

    /// `from` has `item` now (`present`), or no longer.
    pub fn delta(&mut self, from: Claim<'_>, item: String, present: bool, edges: &mut Edges) {
        let Some(share) = self.share_of(from, edges) else {
            return;
        };
        let changed = if present {
            share.items.insert(item.clone())
        } else {
            share.items.remove(&item)
        };
        if changed {
            self.count(&item, present, edges);
        }
    }

    /// Replaces `from`'s share; the differences count like deltas.
    pub fn replace(&mut self, from: Claim<'_>, items: HashSet<String>, edges: &mut Edges) {
        let Some(share) = self.share_of(from, edges) else {
            return;
        };
        let old = std::mem::replace(&mut share.items, items.clone());
        for i in old.difference(&items) {
            self.count(i, false, edges);
        }
        for i in items.difference(&old) {
            self.count(i, true, edges);
        }
    }

    /// One chunk of `from`'s whole share; it replaces the old share when
    /// the last chunk arrives, and then this returns true.
    pub fn chunk(
        &mut self,
        from: Claim<'_>,
        items: Vec<String>,
        (first, last): (bool, bool),
        edges: &mut Edges,
    ) -> bool {
        let entry = self.gathering.entry(from.node.to_owned()).or_default();
        if first || entry.0 != from.inc {
            *entry = (from.inc, HashSet::new());
        }
        entry.1.extend(items);
        if !last {
            return false;
        }
        match self.gathering.remove(from.node) {
            Some((inc, items)) => {
                self.replace(Claim { inc, ..from }, items, edges);
                true
            }
            None => false,
        }
    }

    /// Forgets `node`'s share; its items count down.
    pub fn drop_node(&mut self, node: &str, edges: &mut Edges) {
        self.gathering.remove(node);
        if let Some(share) = self.shares.remove(node) {
            for i in share.items {
                self.count(&i, false, edges);
            }
        }
    }

    /// A new view: nodes gone from it (`left`: in the previous view we saw,
    /// and not in this one), or whose share says they were members at this
    /// epoch or before, or that came back under a newer claim, lose their
    /// shares. `me` is left alone: our own share follows our own messages.
    pub fn on_view(&mut self, view: &View, left: &HashSet<String>, me: &str, edges: &mut Edges) {
        let stale: Vec<(String, u64)> = self
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
            .map(|(node, share)| (node.clone(), share.inc))
            .collect();
        for (node, inc) in stale {
            let g = self.gone.entry(node.clone()).or_default();
            *g = (*g).max(inc);
            self.drop_node(&node, edges);
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use wsring_cluster::{Member, MemberState, MembershipDoc};

    /// A view at `epoch` of `members` (id, incarnation).
    pub(crate) fn view(epoch: u64, members: &[(&str, u64)]) -> View {
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

    fn delta(t: &mut Tally, node: &str, inc: u64, epoch: u64, item: &str, present: bool) -> Edges {
        let mut e = Edges::new();
        t.delta(Claim { node, inc, epoch }, item.into(), present, &mut e);
        e
    }

    fn see(t: &mut Tally, v: &View, left: &[&str]) -> Edges {
        let mut e = Edges::new();
        let left = left.iter().map(|s| s.to_string()).collect();
        t.on_view(v, &left, "n1", &mut e);
        e
    }

    fn up(i: &str) -> (String, bool) {
        (i.into(), true)
    }
    fn down(i: &str) -> (String, bool) {
        (i.into(), false)
    }

    #[test]
    fn an_item_goes_only_when_its_last_node_lets_go() {
        let mut t = Tally::default();
        assert_eq!(delta(&mut t, "n1", 1, 0, "r", true), vec![up("r")]);
        assert_eq!(delta(&mut t, "n2", 2, 0, "r", true), vec![]);
        assert_eq!(delta(&mut t, "n1", 1, 0, "r", false), vec![]);
        assert_eq!(delta(&mut t, "n1", 1, 0, "r", false), vec![], "a repeat");
        assert_eq!(delta(&mut t, "n2", 2, 0, "r", false), vec![down("r")]);
        assert!(t.counts.is_empty());
    }

    #[test]
    fn a_node_that_left_loses_its_share_for_good() {
        let mut t = Tally::default();
        delta(&mut t, "n2", 2, 3, "shared", true);
        delta(&mut t, "n1", 1, 3, "shared", true);
        delta(&mut t, "n2", 2, 3, "only2", true);
        assert_eq!(
            see(&mut t, &view(4, &[("n1", 1)]), &["n2"]),
            vec![down("only2")]
        );
        assert_eq!(
            delta(&mut t, "n2", 2, 3, "late", true),
            vec![],
            "a late message"
        );
        assert_eq!(
            delta(&mut t, "n2", 3, 5, "new", true),
            vec![up("new")],
            "a new claim"
        );
    }

    #[test]
    fn a_node_newer_than_the_view_is_kept_and_one_older_is_dropped() {
        let mut t = Tally::default();
        // n4 joined at epoch 7 and spoke before we saw that view.
        delta(&mut t, "n4", 9, 7, "r", true);
        assert_eq!(
            see(&mut t, &view(6, &[("n1", 1)]), &[]),
            vec![],
            "epoch 6 predates n4"
        );
        assert_eq!(see(&mut t, &view(7, &[("n1", 1), ("n4", 9)]), &[]), vec![]);
        // Views skip: one at n4's epoch or later without it means it left.
        let mut u = Tally::default();
        delta(&mut u, "n4", 9, 7, "r", true);
        assert_eq!(see(&mut u, &view(8, &[("n1", 1)]), &[]), vec![down("r")]);
    }

    #[test]
    fn older_claims_are_ignored_and_newer_ones_start_over() {
        let mut t = Tally::default();
        delta(&mut t, "n2", 5, 0, "a", true);
        delta(&mut t, "n2", 5, 0, "b", true);
        assert_eq!(
            delta(&mut t, "n2", 4, 0, "c", true),
            vec![],
            "an older claim"
        );
        let e = delta(&mut t, "n2", 6, 0, "a", true);
        assert_eq!(net(e), vec![down("b")], "a stayed, b went");
        assert_eq!(
            see(&mut t, &view(2, &[("n1", 1), ("n2", 7)]), &[]),
            vec![down("a")]
        );
    }

    #[test]
    fn shares_replace_in_chunks() {
        let mut t = Tally::default();
        delta(&mut t, "n2", 2, 0, "a", true);
        delta(&mut t, "n2", 2, 0, "b", true);
        let mut e = Edges::new();
        let from = Claim::of("n2", 2);
        assert!(!t.chunk(from, vec!["b".into()], (true, false), &mut e));
        assert!(e.is_empty(), "nothing applies before the last chunk");
        assert!(t.chunk(from, vec!["c".into()], (false, true), &mut e));
        let mut got = net(e);
        got.sort();
        assert_eq!(got, vec![down("a"), up("c")]);
    }

    #[test]
    fn net_keeps_odd_runs_only() {
        assert_eq!(net(vec![down("r"), up("r")]), vec![]);
        assert_eq!(net(vec![down("r"), up("r"), down("r")]), vec![down("r")]);
        assert_eq!(net(vec![up("a"), up("b")]), vec![up("a"), up("b")]);
    }
}
