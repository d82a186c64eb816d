//! Measures ring balance against the virtual-node count, to choose `DEFAULT_VNODES`.
//! Run with: cargo run -p wsring-ring --release --example vnodes
//!
//! For each vnode count it builds 10-node rings for several id shapes, assigns
//! 1M random keys, and prints the busiest node's load relative to the mean
//! (worst over id shapes) together with the ring size a lookup searches.

use wsring_ring::Ring;

fn main() {
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let keys: Vec<String> = (0..1_000_000)
        .map(|_| {
            // splitmix64: a dependency-free, reproducible key stream.
            seed = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = seed;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            format!("user-{:016x}", z ^ (z >> 31))
        })
        .collect();
    let shapes: Vec<(&str, Vec<String>)> = vec![
        ("n1..n10", (1..=10).map(|i| format!("n{i}")).collect()),
        ("node-0..9", (0..10).map(|i| format!("node-{i}")).collect()),
        (
            "pod names",
            (0..10).map(|i| format!("wsring-7f9c4d-{i:05}")).collect(),
        ),
        (
            "IPs",
            (0..10).map(|i| format!("10.0.0.{}", i + 10)).collect(),
        ),
    ];
    println!("| vnodes/node | worst busiest/mean (10 nodes, 1M keys) | per id shape |");
    println!("|---:|---:|---|");
    for vnodes in [10u32, 32, 64, 128, 256, 512, 1024] {
        let mut worst = 0f64;
        let mut per = Vec::new();
        for (name, members) in &shapes {
            let ring = Ring::new(1, members.iter().cloned(), vnodes);
            let mut counts = std::collections::HashMap::<&str, usize>::new();
            for k in &keys {
                if let Some(o) = ring.owner(k) {
                    *counts.entry(o).or_default() += 1;
                }
            }
            let mean = keys.len() as f64 / members.len() as f64;
            let r = counts.values().copied().max().unwrap_or(0) as f64 / mean;
            worst = worst.max(r);
            per.push(format!("{name}: {r:.3}"));
        }
        println!("| {vnodes} | {worst:.3} | {} |", per.join(", "));
    }
}
