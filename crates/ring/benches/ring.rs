//! Criterion benches for the ring: lookup at 10 and 100 nodes, and a full rebuild.
//! Run with `cargo bench -p wsring-ring`.

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use wsring_ring::{DEFAULT_VNODES, Ring};

fn members(n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("n{i}")).collect()
}

fn lookup(c: &mut Criterion) {
    let keys: Vec<String> = (0..1024).map(|i| format!("user-{i}")).collect();
    let mut group = c.benchmark_group("lookup");
    for n in [10usize, 100] {
        let ring = Ring::new(1, members(n), DEFAULT_VNODES);
        group.bench_with_input(BenchmarkId::from_parameter(n), &ring, |b, ring| {
            let mut i = 0usize;
            b.iter(|| {
                i = (i + 1) & 1023;
                black_box(ring.owner(black_box(&keys[i])))
            })
        });
    }
    group.finish();
}

fn rebuild(c: &mut Criterion) {
    let mut group = c.benchmark_group("rebuild");
    for n in [10usize, 100] {
        let m = members(n);
        group.bench_with_input(BenchmarkId::from_parameter(n), &m, |b, m| {
            b.iter(|| black_box(Ring::new(1, m.iter().cloned(), DEFAULT_VNODES)))
        });
    }
    group.finish();
}

criterion_group!(benches, lookup, rebuild);
criterion_main!(benches);
