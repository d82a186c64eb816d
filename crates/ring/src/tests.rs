//! Unit and property tests for the ring: balance, minimal movement and
//! determinism, the properties every gateway and node relies on to agree.

use super::*;
use proptest::prelude::*;
use rand::{Rng, SeedableRng, rngs::StdRng};

fn ids(n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("n{i}")).collect()
}

fn random_keys(count: usize, seed: u64) -> Vec<String> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..count)
        .map(|_| format!("user-{:016x}", rng.random::<u64>()))
        .collect()
}

fn max_over_mean(ring: &Ring, keys: &[String]) -> f64 {
    let mut counts = std::collections::HashMap::new();
    for k in keys {
        *counts
            .entry(ring.owner(k).expect("non-empty"))
            .or_insert(0usize) += 1;
    }
    let mean = keys.len() as f64 / ring.len() as f64;
    counts.values().copied().max().unwrap_or(0) as f64 / mean
}

#[test]
fn hash_is_stable_across_versions() {
    // Pinned values: if these change, every deployed cluster and the JS
    // dashboard would disagree about owners. Never update them casually.
    assert_eq!(hash_key(""), 0x2d06_8005_38d3_94c2);
    assert_eq!(hash_key("alice"), 0x4da1_0dd6_1a01_16b0);
    assert_eq!(vnode_point("n1", 0), 0x32ef_bee6_833e_4488);
}

#[test]
fn empty_ring_has_no_owner() {
    let ring = Ring::empty(0);
    assert!(ring.owner("alice").is_none());
    assert!(ring.shares().is_empty());
    assert!(ring.arcs().is_empty());
}

#[test]
fn single_node_owns_everything() {
    let ring = Ring::new(1, ["solo"], 1);
    assert_eq!(ring.owner("anyone"), Some("solo"));
    let shares = ring.shares();
    assert_eq!(shares.len(), 1);
    assert!((shares[0].1 - 1.0).abs() < 1e-12);
}

#[test]
fn shares_sum_to_one_and_track_key_counts() {
    let ring = Ring::new(3, ids(5), DEFAULT_VNODES);
    let total: f64 = ring.shares().iter().map(|(_, s)| s).sum();
    assert!((total - 1.0).abs() < 1e-9, "total {total}");
    let keys = random_keys(100_000, 7);
    for (node, share) in ring.shares() {
        let got =
            keys.iter().filter(|k| ring.owner(k) == Some(node)).count() as f64 / keys.len() as f64;
        assert!(
            (got - share).abs() < 0.01,
            "{node}: keys {got} share {share}"
        );
    }
}

#[test]
fn ten_nodes_busiest_at_most_110_percent_of_mean() {
    let keys = random_keys(1_000_000, 42);
    let ring = Ring::new(1, ids(10), DEFAULT_VNODES);
    let ratio = max_over_mean(&ring, &keys);
    assert!(ratio <= 1.10, "busiest node has {ratio:.3}x the mean");
}

#[test]
fn balance_holds_for_other_id_shapes() {
    let keys = random_keys(200_000, 9);
    let shapes: [Vec<String>; 3] = [
        (0..10).map(|i| format!("node-{i}")).collect(),
        (0..10).map(|i| format!("wsring-7f9c4d-{i:05}")).collect(),
        (0..10).map(|i| format!("10.0.0.{}", i + 10)).collect(),
    ];
    for members in shapes {
        let ring = Ring::new(1, members.clone(), DEFAULT_VNODES);
        let ratio = max_over_mean(&ring, &keys);
        assert!(ratio <= 1.12, "{members:?}: busiest {ratio:.3}x mean");
    }
}

#[test]
fn order_and_duplicates_do_not_matter() {
    let a = Ring::new(1, ["n3", "n1", "n2"], 64);
    let b = Ring::new(1, ["n1", "n2", "n3", "n2"], 64);
    assert_eq!(a.nodes(), b.nodes());
    for k in random_keys(1000, 1) {
        assert_eq!(a.owner(&k), b.owner(&k));
    }
}

#[test]
fn arcs_cover_the_circle() {
    let ring = Ring::new(1, ids(4), 32);
    let total: u128 = ring.arcs().iter().map(|a| arc_len(a.start, a.end)).sum();
    assert_eq!(total, 1u128 << 64);
}

fn member_set() -> impl Strategy<Value = Vec<String>> {
    proptest::collection::btree_set("[a-z0-9-]{1,12}", 1..16).prop_map(|s| s.into_iter().collect())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn adding_a_node_moves_about_one_over_n_plus_one(
        members in member_set(),
        newcomer in "[A-Z]{1,8}",
        seed in any::<u64>(),
    ) {
        let keys = random_keys(20_000, seed);
        let before = Ring::new(1, members.clone(), DEFAULT_VNODES);
        let mut grown = members.clone();
        grown.push(newcomer.clone());
        let after = Ring::new(2, grown, DEFAULT_VNODES);
        let mut moved = 0usize;
        for k in &keys {
            let (b, a) = (before.owner(k), after.owner(k));
            if b != a {
                moved += 1;
                // Every moved key moves to the new node, never between old ones.
                prop_assert_eq!(a, Some(newcomer.as_str()));
            }
        }
        let expected = keys.len() as f64 / (members.len() + 1) as f64;
        let ratio = moved as f64 / expected;
        prop_assert!((0.5..=1.5).contains(&ratio), "moved {} of expected {:.0}", moved, expected);
    }

    #[test]
    fn removing_a_node_moves_only_its_keys(
        members in member_set().prop_filter("need two", |m| m.len() >= 2),
        pick in any::<prop::sample::Index>(),
        seed in any::<u64>(),
    ) {
        let gone = members[pick.index(members.len())].clone();
        let before = Ring::new(1, members.clone(), DEFAULT_VNODES);
        let after = Ring::new(2, members.iter().filter(|m| **m != gone).cloned(), DEFAULT_VNODES);
        for k in random_keys(5_000, seed) {
            let b = before.owner(&k);
            if b != Some(gone.as_str()) {
                prop_assert_eq!(b, after.owner(&k));
            }
        }
    }

    #[test]
    fn remove_then_add_restores_identical_assignment(
        members in member_set().prop_filter("need two", |m| m.len() >= 2),
        pick in any::<prop::sample::Index>(),
        seed in any::<u64>(),
    ) {
        let gone = members[pick.index(members.len())].clone();
        let original = Ring::new(1, members.clone(), DEFAULT_VNODES);
        let restored = Ring::new(
            3,
            members.iter().filter(|m| **m != gone).cloned().chain([gone.clone()]),
            DEFAULT_VNODES,
        );
        prop_assert_eq!(original.nodes(), restored.nodes());
        prop_assert_eq!(&original.points, &restored.points);
        for k in random_keys(2_000, seed) {
            prop_assert_eq!(original.owner(&k), restored.owner(&k));
        }
    }
}
