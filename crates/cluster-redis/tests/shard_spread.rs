//! How evenly broker traffic spreads over the shards of the local Redis
//! Cluster of `scripts/test-clusters` (3 primaries): 12 nodes publish
//! uniform direct traffic (to each other's node channels), then uniform room
//! traffic (100 rooms), then the same volume on the one broadcast channel.
//! Each phase resets the servers' statistics and reads `cmdstat_spublish`
//! from `INFO commandstats` on every primary.
//!
//! The namespace is fixed (`spread`), unlike elsewhere, so that the channel
//! names, hence their slots, hence the figures are the same on every run;
//! pub/sub channels leave nothing behind to clean up. Prints one line per
//! phase (the figures in BENCHMARKS.md), and asserts that the busiest shard
//! carries at most 1.25 times the mean for direct and room traffic.

use bytes::Bytes;
use std::sync::Arc;
use std::time::{Duration, Instant};
use wsring_cluster::{Broker, Topic};
use wsring_cluster_testkit::conformance::skip_or_fail;

const CLUSTER: &str = "redis-cluster://127.0.0.1:7100,127.0.0.1:7101,127.0.0.1:7102,127.0.0.1:7103,127.0.0.1:7104,127.0.0.1:7105";
const NODES: usize = 12;
const ROOMS: usize = 100;
const PER_NODE: usize = 500;

/// Plain connections to every reachable server of the cluster.
async fn servers(url: &str) -> Vec<redis::aio::MultiplexedConnection> {
    let mut out = Vec::new();
    for seed in url.trim_start_matches("redis-cluster://").split(',') {
        let Ok(client) = redis::Client::open(format!("redis://{seed}/")) else {
            continue;
        };
        if let Ok(Ok(c)) = tokio::time::timeout(
            Duration::from_secs(2),
            client.get_multiplexed_async_connection(),
        )
        .await
        {
            out.push(c);
        }
    }
    out
}

async fn reset(servers: &mut [redis::aio::MultiplexedConnection]) {
    for c in servers {
        let _: () = redis::cmd("CONFIG")
            .arg("RESETSTAT")
            .query_async(c)
            .await
            .expect("resetstat");
    }
}

/// `SPUBLISH` calls per primary, in a stable order.
async fn spublish_per_primary(servers: &mut [redis::aio::MultiplexedConnection]) -> Vec<u64> {
    let mut out = Vec::new();
    for c in servers {
        let repl: String = redis::cmd("INFO")
            .arg("replication")
            .query_async(c)
            .await
            .expect("info");
        if !repl.lines().any(|l| l.trim() == "role:master") {
            continue;
        }
        let stats: String = redis::cmd("INFO")
            .arg("commandstats")
            .query_async(c)
            .await
            .expect("info");
        let calls = stats
            .lines()
            .find_map(|l| l.strip_prefix("cmdstat_spublish:calls="))
            .and_then(|rest| rest.split(',').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        out.push(calls);
    }
    out
}

/// Publishes `PER_NODE` messages from every node, to `topic(node, i)`.
async fn phase(
    brokers: &[Arc<dyn Broker>],
    topic: impl Fn(usize, usize) -> Topic + Send + Sync + Copy + 'static,
) -> Duration {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for (n, b) in brokers.iter().enumerate() {
        let b = Arc::clone(b);
        tasks.push(tokio::spawn(async move {
            for i in 0..PER_NODE {
                b.publish(&topic(n, i), Bytes::from_static(b"{}"))
                    .await
                    .expect("publish");
            }
        }));
    }
    for t in tasks {
        t.await.expect("publisher");
    }
    start.elapsed()
}

fn report(name: &str, per_shard: &[u64], took: Duration) -> f64 {
    let total: u64 = per_shard.iter().sum();
    let mean = total as f64 / per_shard.len().max(1) as f64;
    let max = per_shard.iter().copied().max().unwrap_or(0) as f64;
    let ratio = if mean > 0.0 { max / mean } else { 0.0 };
    println!(
        "SHARD-SPREAD {name}: spublish per shard {per_shard:?}, total {total}, busiest/mean {ratio:.2}, {:.0} publishes/s",
        total as f64 / took.as_secs_f64()
    );
    ratio
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffic_spreads_over_the_shards() {
    let url = std::env::var("WSRING_TEST_REDIS_CLUSTER").unwrap_or_else(|_| CLUSTER.to_owned());
    let mut servers = servers(&url).await;
    if servers.is_empty() {
        return skip_or_fail(&format!(
            "Redis Cluster not reachable at {url} (start it with scripts/test-clusters start)"
        ));
    }
    let mut brokers: Vec<Arc<dyn Broker>> = Vec::new();
    let mut drains = Vec::new();
    for n in 0..NODES {
        let id = format!("n{}", n + 1);
        let (b, mut inbox) = wsring_cluster_redis::connect_broker(&url, "spread", &id)
            .await
            .expect("broker");
        b.subscribe(&Topic::Node(id)).await.expect("subscribe");
        b.subscribe(&Topic::Cluster).await.expect("subscribe");
        // Three subscribers per room.
        for r in
            (0..ROOMS).filter(|r| r % NODES == n || (r + 4) % NODES == n || (r + 8) % NODES == n)
        {
            b.subscribe(&Topic::Room(format!("room{r}")))
                .await
                .expect("subscribe");
        }
        drains.push(tokio::spawn(async move {
            while inbox.recv().await.is_some() {}
        }));
        brokers.push(b);
    }

    reset(&mut servers).await;
    let took = phase(&brokers, |n, i| {
        Topic::Node(format!("n{}", (n + i) % NODES + 1))
    })
    .await;
    let direct = report("direct", &spublish_per_primary(&mut servers).await, took);

    reset(&mut servers).await;
    let took = phase(&brokers, |n, i| {
        Topic::Room(format!("room{}", (n * PER_NODE + i) % ROOMS))
    })
    .await;
    let rooms = report("rooms", &spublish_per_primary(&mut servers).await, took);

    reset(&mut servers).await;
    let took = phase(&brokers, |_, _| Topic::Cluster).await;
    let one = report(
        "one-channel",
        &spublish_per_primary(&mut servers).await,
        took,
    );

    for b in &brokers {
        b.close().await;
    }
    for d in drains {
        d.abort();
    }
    assert!(
        direct <= 1.25,
        "direct traffic: busiest shard {direct:.2}x the mean"
    );
    assert!(
        rooms <= 1.25,
        "room traffic: busiest shard {rooms:.2}x the mean"
    );
    assert!(
        one > 2.9,
        "one channel should load one shard only: {one:.2}"
    );
}
