//! Keeping one publisher's messages in order across topics, for brokers whose
//! subscriptions arrive on separate queues (separate per-subscription
//! channels in the NATS client, separate shard connections in a Redis
//! Cluster).
//!
//! Every wsring publisher stamps its messages with `(publisher, counter)`
//! ([`stamp`]). Given a batch of messages in which each queue is in arrival
//! order, and in which no message of a publisher is missing that the
//! publisher sent before one that is present, [`merge`] interleaves the
//! queues so that each publisher's messages come out by counter, keeping
//! every queue's own order. Unstamped messages are unconstrained. How a
//! broker makes its batches complete in that sense is its own business (see
//! the NATS and Redis Cluster brokers).

use std::collections::{BTreeMap, HashMap, VecDeque};

/// `(publisher, counter)`: a publisher id and its per-publisher counter.
pub type Stamp = (u64, u64);

/// One collected message: `(subscription id, stamp, item)`.
pub type Collected<T> = (u64, Option<Stamp>, T);

/// One subscription's messages of a batch, in arrival order.
type Queue<T> = VecDeque<(Option<Stamp>, T)>;

/// The textual stamp of a publisher's `counter`-th message.
pub fn stamp(publisher: u64, counter: u64) -> String {
    format!("{publisher:016x}.{counter}")
}

/// Parses a [`stamp`]; `None` for anything malformed (such a
/// message is simply not ordered against others).
pub fn parse_stamp(value: &str) -> Option<Stamp> {
    let (publisher, counter) = value.trim().split_once('.')?;
    Some((
        u64::from_str_radix(publisher, 16).ok()?,
        counter.parse().ok()?,
    ))
}

/// Interleaves a batch: `items` are `(subscription, stamp, item)` in each
/// subscription's arrival order. The result keeps every subscription's order
/// and emits each publisher's stamped items by increasing counter where the
/// subscriptions' orders allow it. Always makes progress, even for stamps
/// that contradict arrival order (concurrent publishers never do that, but
/// the input comes from the network). O(n log n).
pub fn merge<T>(items: Vec<Collected<T>>) -> Vec<T> {
    let n = items.len();
    let mut queues: Vec<Queue<T>> = Vec::new();
    let mut index: HashMap<u64, usize> = HashMap::new();
    for (sub, stamp, item) in items {
        let i = *index.entry(sub).or_insert_with(|| {
            queues.push(VecDeque::new());
            queues.len() - 1
        });
        queues[i].push_back((stamp, item));
    }
    if queues.len() <= 1 {
        return queues
            .into_iter()
            .flat_map(|q| q.into_iter().map(|(_, item)| item))
            .collect();
    }
    let mut m = Merger::new(&queues);
    for (i, q) in queues.iter().enumerate() {
        m.classify(i, q);
    }
    let mut out = Vec::with_capacity(n);
    while let Some(i) = m.next() {
        let Some((stamp, item)) = queues[i].pop_front() else {
            continue;
        };
        out.push(item);
        if let Some(s) = stamp {
            m.emitted(s);
        }
        m.classify(i, &queues[i]);
    }
    out
}

/// Bookkeeping of [`merge`]: which queue heads may go next.
struct Merger {
    /// Counters of every stamped item not yet emitted, per publisher.
    remaining: HashMap<u64, BTreeMap<u64, usize>>,
    /// Stamped heads that must wait for an earlier item of their publisher.
    blocked: BTreeMap<Stamp, Vec<usize>>,
    /// Queues whose head may go now.
    free: VecDeque<usize>,
}

impl Merger {
    fn new<T>(queues: &[Queue<T>]) -> Merger {
        let mut remaining: HashMap<u64, BTreeMap<u64, usize>> = HashMap::new();
        for (p, c) in queues.iter().flatten().filter_map(|(s, _)| *s) {
            *remaining.entry(p).or_default().entry(c).or_default() += 1;
        }
        Merger {
            remaining,
            blocked: BTreeMap::new(),
            free: VecDeque::new(),
        }
    }

    fn earliest(&self, publisher: u64) -> Option<u64> {
        self.remaining
            .get(&publisher)
            .and_then(|r| r.first_key_value())
            .map(|(c, _)| *c)
    }

    /// Files queue `i` by its (new) head.
    fn classify<T>(&mut self, i: usize, q: &Queue<T>) {
        match q.front() {
            None => {}
            Some((None, _)) => self.free.push_back(i),
            Some((Some((p, c)), _)) if self.earliest(*p) == Some(*c) => self.free.push_back(i),
            Some((Some((p, c)), _)) => self.blocked.entry((*p, *c)).or_default().push(i),
        }
    }

    /// The queue whose head goes next. Falls back to a blocked head when
    /// nothing is free, which only contradictory stamps can cause.
    fn next(&mut self) -> Option<usize> {
        if let Some(i) = self.free.pop_front() {
            return Some(i);
        }
        let mut entry = self.blocked.first_entry()?;
        let i = entry.get_mut().pop();
        if entry.get().is_empty() {
            entry.remove();
        }
        i
    }

    /// Records that the item stamped `(p, c)` went out, unblocking the
    /// publisher's next item if it is at a head.
    fn emitted(&mut self, (p, c): Stamp) {
        if let Some(r) = self.remaining.get_mut(&p)
            && let Some(k) = r.get_mut(&c)
        {
            *k -= 1;
            if *k == 0 {
                r.remove(&c);
            }
        }
        if let Some(next) = self.earliest(p)
            && let Some(waiting) = self.blocked.remove(&(p, next))
        {
            self.free.extend(waiting);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps() {
        assert_eq!(stamp(0xab, 7), "00000000000000ab.7");
        assert_eq!(
            parse_stamp(&stamp(u64::MAX, u64::MAX)),
            Some((u64::MAX, u64::MAX))
        );
        assert_eq!(parse_stamp(" 00000000000000ab.7 "), Some((0xab, 7)));
        for bad in ["", "ab", "ab.", ".7", "zz.7", "ab.x", "ab.-1"] {
            assert_eq!(parse_stamp(bad), None, "{bad}");
        }
    }

    #[test]
    fn single_subscription_keeps_arrival_order() {
        let items = vec![
            (1, Some((9, 5)), "b"),
            (1, Some((9, 4)), "a"),
            (1, None, "c"),
        ];
        assert_eq!(merge(items), vec!["b", "a", "c"]);
    }

    #[test]
    fn publisher_order_across_subscriptions() {
        // `end` (node topic, sub 1) was published after `r1` (room, sub 2).
        let items = vec![(1, Some((7, 2)), "end"), (2, Some((7, 1)), "r1")];
        assert_eq!(merge(items), vec!["r1", "end"]);
        // Two publishers, interleaved across three subscriptions.
        let items = vec![
            (1, Some((1, 3)), "p1-3"),
            (2, Some((2, 1)), "p2-1"),
            (2, Some((1, 1)), "p1-1"),
            (3, Some((1, 2)), "p1-2"),
            (3, Some((2, 2)), "p2-2"),
            (1, None, "x"),
        ];
        let out = merge(items);
        let pos = |s: &str| out.iter().position(|o| *o == s).expect("present");
        assert!(
            pos("p1-1") < pos("p1-2") && pos("p1-2") < pos("p1-3"),
            "{out:?}"
        );
        assert!(pos("p2-1") < pos("p2-2"), "{out:?}");
        assert!(pos("p1-3") < pos("x"), "{out:?}");
        assert_eq!(out.len(), 6);
    }

    #[test]
    fn contradictory_stamps_still_drain() {
        // Arrival order per subscription contradicts the counters both ways.
        let items = vec![
            (1, Some((1, 4)), "a4"),
            (1, Some((1, 1)), "a1"),
            (2, Some((1, 3)), "b3"),
            (2, Some((1, 2)), "b2"),
        ];
        let out = merge(items);
        assert_eq!(out.len(), 4);
        // Each subscription's own order is kept.
        let pos = |s: &str| out.iter().position(|o| *o == s).expect("present");
        assert!(pos("a4") < pos("a1") && pos("b3") < pos("b2"), "{out:?}");
    }
}
