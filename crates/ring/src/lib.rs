//! Consistent-hash ring with virtual nodes: the pure function from "who is in
//! the cluster" to "which node owns user X".
//!
//! Every gateway and node in a wsring cluster builds its own [`Ring`] from the
//! member list it reads from the registry. Because the ring depends only on the
//! *set* of node ids (never on the order they were seen, on IP addresses or on
//! process state), two processes that see the same members compute the same
//! owner for every key — that is what lets several gateways agree without
//! talking to each other.
//!
//! Design choices, each measured or argued in `docs/ARCHITECTURE.md` and
//! `BENCHMARKS.md`:
//! * The hash is XXH3-64 ([`hash_key`]). Its output is frozen by the XXH3
//!   specification, so it is identical across processes, crate versions, CPU
//!   architectures and languages. The std
//!   `DefaultHasher` is explicitly not stable across releases, so it is unusable
//!   here.
//! * Virtual-node points are `xxh3_64(node_id ++ 0xFF ++ i as u32 LE)`: a node's points
//!   depend on its own id only, so adding or removing a node never moves the
//!   points of any other node. That is the property that makes a membership
//!   change move only the keys it must.
//! * [`DEFAULT_VNODES`] was chosen by measurement (`cargo run -p wsring-ring
//!   --release --example vnodes`).

use xxhash_rust::xxh3::xxh3_64;

/// Virtual nodes per member unless configured otherwise.
///
/// Chosen with `cargo run -p wsring-ring --release --example vnodes` (table in
/// BENCHMARKS.md): it is the smallest power of two for which the busiest of 10
/// nodes stays clearly under 1.10x the mean share of 1M random keys for every
/// id shape tried (512 only just reaches 1.100 for IP-shaped ids). A lookup is
/// still a ~14-step binary search at 10 nodes.
pub const DEFAULT_VNODES: u32 = 1024;

/// The stable 64-bit hash used for user ids (and anything else placed on the ring).
pub fn hash_key(key: &str) -> u64 {
    xxh3_64(key.as_bytes())
}

/// The position of virtual node `index` of `node` on the ring.
pub fn vnode_point(node: &str, index: u32) -> u64 {
    let mut buf = Vec::with_capacity(node.len() + 5);
    vnode_point_with(&mut buf, node, index)
}

/// [`vnode_point`] reusing `buf`, so a rebuild allocates once per node rather
/// than once per virtual node.
fn vnode_point_with(buf: &mut Vec<u8>, node: &str, index: u32) -> u64 {
    // `id || 0xFF || index (LE)`: 0xFF never occurs in UTF-8, so distinct
    // (id, index) pairs can never produce the same input bytes.
    buf.clear();
    buf.extend_from_slice(node.as_bytes());
    buf.push(0xFF);
    buf.extend_from_slice(&index.to_le_bytes());
    xxh3_64(buf)
}

/// A consistent-hash ring over a set of node ids.
///
/// Cheap to query (binary search over a sorted `Vec`), rebuilt from scratch on
/// every membership change: a rebuild for 100 nodes takes well under a
/// millisecond (see the `ring` criterion bench), which is far cheaper than the
/// bookkeeping an incremental ring would need.
#[derive(Debug, Clone)]
pub struct Ring {
    epoch: u64,
    vnodes: u32,
    /// Sorted, de-duplicated member ids; `points` refer to them by index.
    nodes: Vec<String>,
    /// `(point, index into nodes)`, sorted. Ties on the point (a 64-bit
    /// collision) are broken by node index, which is itself derived from the
    /// sorted ids, so the ring stays a pure function of the member set.
    points: Vec<(u64, u32)>,
}

/// One contiguous arc of hash space and its owner, for drawing the ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arc<'a> {
    /// Exclusive start of the arc (the previous point).
    pub start: u64,
    /// Inclusive end of the arc (this point).
    pub end: u64,
    /// The node that owns keys hashing into `(start, end]`.
    pub node: &'a str,
}

impl Ring {
    /// Builds the ring for `members` (duplicates are ignored, order does not
    /// matter) with `vnodes` points per member, tagged with `epoch`.
    ///
    /// A `vnodes` of 0 is treated as 1 so that a non-empty member set always
    /// yields an owner.
    pub fn new<I, S>(epoch: u64, members: I, vnodes: u32) -> Ring
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let vnodes = vnodes.max(1);
        let mut nodes: Vec<String> = members.into_iter().map(Into::into).collect();
        nodes.sort_unstable();
        nodes.dedup();
        let mut points = Vec::with_capacity(nodes.len() * vnodes as usize);
        let mut buf = Vec::new();
        for (idx, node) in nodes.iter().enumerate() {
            // Node counts are bounded far below u32::MAX by the registry.
            let idx = u32::try_from(idx).unwrap_or(u32::MAX);
            points.extend((0..vnodes).map(|i| (vnode_point_with(&mut buf, node, i), idx)));
        }
        points.sort_unstable();
        Ring {
            epoch,
            vnodes,
            nodes,
            points,
        }
    }

    /// An empty ring (no members): every lookup returns `None`.
    pub fn empty(epoch: u64) -> Ring {
        Ring::new(epoch, std::iter::empty::<String>(), DEFAULT_VNODES)
    }

    /// The membership epoch this ring was built for.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Virtual nodes per member.
    pub fn vnodes_per_node(&self) -> u32 {
        self.vnodes
    }

    /// Member ids, sorted.
    pub fn nodes(&self) -> &[String] {
        &self.nodes
    }

    /// Whether `node` is a member of this ring.
    pub fn contains(&self, node: &str) -> bool {
        self.nodes
            .binary_search_by(|n| n.as_str().cmp(node))
            .is_ok()
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// True when the ring has no members.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The node owning `key`, or `None` for an empty ring.
    pub fn owner(&self, key: &str) -> Option<&str> {
        self.owner_of_hash(hash_key(key))
    }

    /// The node owning a pre-computed [`hash_key`] value.
    pub fn owner_of_hash(&self, hash: u64) -> Option<&str> {
        if self.points.is_empty() {
            return None;
        }
        let i = self.points.partition_point(|&(p, _)| p < hash);
        // Past the last point the ring wraps to the first one.
        let (_, idx) = self.points[if i == self.points.len() { 0 } else { i }];
        self.nodes.get(idx as usize).map(String::as_str)
    }

    /// Each member's share of the 64-bit hash space, summing to 1.0.
    pub fn shares(&self) -> Vec<(&str, f64)> {
        let mut owned = vec![0u128; self.nodes.len()];
        for arc in self.arcs() {
            let len = arc_len(arc.start, arc.end);
            if let Ok(i) = self.nodes.binary_search_by(|n| n.as_str().cmp(arc.node)) {
                owned[i] += len;
            }
        }
        let total = 2f64.powi(64);
        self.nodes
            .iter()
            .zip(owned)
            .map(|(n, o)| (n.as_str(), o as f64 / total))
            .collect()
    }

    /// The arcs of the ring in clockwise order, adjacent arcs of the same owner
    /// merged. With a single point the one arc covers the whole space.
    pub fn arcs(&self) -> Vec<Arc<'_>> {
        let mut out: Vec<Arc<'_>> = Vec::new();
        let Some(&(last, _)) = self.points.last() else {
            return out;
        };
        let mut prev = last;
        for &(p, idx) in &self.points {
            let node = self.nodes[idx as usize].as_str();
            match out.last_mut() {
                Some(a) if a.node == node => a.end = p,
                _ => out.push(Arc {
                    start: prev,
                    end: p,
                    node,
                }),
            }
            prev = p;
        }
        out
    }
}

/// Length of the arc `(start, end]`, where `start == end` means the full circle.
fn arc_len(start: u64, end: u64) -> u128 {
    if start == end {
        1u128 << 64
    } else {
        u128::from(end.wrapping_sub(start))
    }
}

#[cfg(test)]
mod tests;
