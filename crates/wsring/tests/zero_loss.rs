//! Zero loss, measured: 100 users receive a continuous numbered sequence
//! (60 by direct send, 40 through 4 rooms) while the cluster changes under
//! them — a node joins, a node drains, a node process is SIGKILLed, a node's
//! broker connection is killed. Every user must end with every message exactly
//! once and in order. Clients are the `wsring-client` SDK (reconnect + resume
//! + idempotent retries); the cluster runs in durable mode.

mod common;

use common::receiver::receiver;
use common::{Api, dev};
use serde_json::json;
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::time::Instant;
use wsring::dev::DevCluster;
use wsring_client::{ClientConfig, StatsSnapshot};
use wsring_node::Routing;

const DIRECT: usize = 60;
const ROOM_USERS: usize = 40;
const ROOMS: usize = 4;
const SENDERS: usize = 4;
const ROUNDS: u64 = 40;
const ROUND_EVERY: Duration = Duration::from_millis(100);
const FAULT_AT_ROUND: u64 = 10;

fn durable_common(cluster: Option<String>) -> wsring::settings::Common {
    let mut c = common::common(Routing::Hash);
    c.shared.durable = true;
    c.cluster = cluster;
    if c.cluster.is_some() {
        c.namespace = wsring_cluster_testkit::conformance::unique_ns("zl");
    }
    c
}

struct Report {
    sent: u64,
    delivered: u64,
    max_gap: Duration,
    reconnects: u64,
    resent: u64,
}

async fn run<F, Fut>(name: &str, c: &DevCluster, fault: F) -> Report
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let gw = c.gateway_url();
    let mut receivers = Vec::new();
    for i in 0..DIRECT {
        receivers.push(receiver(ClientConfig::new(gw.as_str(), format!("d{i}")), None).await);
    }
    for i in 0..ROOM_USERS {
        let room = format!("room{}", i % ROOMS);
        receivers.push(receiver(ClientConfig::new(gw.as_str(), format!("m{i}")), Some(room)).await);
    }
    let mut senders = Vec::new();
    for k in 0..SENDERS {
        // A Redis Cluster failover can keep a stream's slot unreachable for
        // longer than the SDK's default 30 s request limit when the machine
        // is loaded; what is measured here is loss, not latency, so a
        // request may wait for the backend as long as the receivers do.
        let mut cfg = ClientConfig::new(gw.as_str(), format!("sender{k}"));
        cfg.timeout = Duration::from_secs(90);
        let (client, _events) = wsring_client::connect_with(cfg).await.expect("sender");
        senders.push((client, _events));
    }
    // Stream s (0..DIRECT: user d{s}; DIRECT..: room{s-DIRECT}) is fed by
    // sender s % SENDERS, one message per round, acknowledged before the next.
    let streams = DIRECT + ROOMS;
    let mut tasks = Vec::new();
    let start = Instant::now();
    for (k, (client, _)) in senders.iter().enumerate() {
        let client = client.clone();
        let mine: Vec<usize> = (0..streams).filter(|s| s % SENDERS == k).collect();
        tasks.push(tokio::spawn(async move {
            for n in 0..ROUNDS {
                tokio::time::sleep_until(start + ROUND_EVERY * n as u32).await;
                for &s in &mine {
                    let data = json!({ "n": n });
                    let r = if s < DIRECT {
                        client.send(&format!("d{s}"), data).await
                    } else {
                        client.publish(&format!("room{}", s - DIRECT), data).await
                    };
                    r.unwrap_or_else(|e| panic!("stream {s} message {n}: {e}"));
                }
            }
        }));
    }
    tokio::time::sleep_until(start + ROUND_EVERY * FAULT_AT_ROUND as u32).await;
    let fault_at = Instant::now();
    fault().await;
    for t in tasks {
        t.await.expect("sender task");
    }
    // Wait (bounded) until every receiver has the whole sequence.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let done = receivers
            .iter()
            .all(|r| r.log.lock().expect("log").len() as u64 >= ROUNDS);
        if done {
            break;
        }
        if Instant::now() > deadline {
            let short: Vec<(String, usize)> = receivers
                .iter()
                .map(|r| (r.user.clone(), r.log.lock().expect("log").len()))
                .filter(|(_, n)| (*n as u64) < ROUNDS)
                .collect();
            panic!("{name}: receivers never caught up: {short:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut delivered = 0;
    let mut max_gap = Duration::ZERO;
    let mut totals = StatsSnapshot::default();
    for r in &receivers {
        let log = r.log.lock().expect("log").clone();
        let got: Vec<u64> = log.iter().map(|(n, _)| *n).collect();
        assert_eq!(
            got,
            (0..ROUNDS).collect::<Vec<_>>(),
            "{name}: {} must get every message exactly once, in order",
            r.user
        );
        delivered += got.len() as u64;
        for w in log.windows(2) {
            if w[1].1 > fault_at {
                max_gap = max_gap.max(w[1].1 - w[0].1);
            }
        }
        let s = r.client.stats();
        assert_eq!(
            (s.duplicates, s.gaps),
            (0, 0),
            "{name}: {} stats {s:?}",
            r.user
        );
        totals.reconnects += s.reconnects;
        totals.incomplete += s.incomplete;
    }
    assert_eq!(totals.incomplete, 0, "{name}: no history was lost");
    let resent: u64 = senders.iter().map(|(c, _)| c.stats().resent).sum();
    let sent = ROUNDS * streams as u64;
    let report = Report {
        sent,
        delivered,
        max_gap,
        reconnects: totals.reconnects,
        resent,
    };
    println!(
        "ZERO-LOSS {name}: sent={} delivered={} (expected {}) duplicates=0 out-of-order=0 \
         max_delivery_gap_after_fault={:?} receiver_reconnects={} sender_resends={}",
        report.sent,
        report.delivered,
        ROUNDS * (DIRECT + ROOM_USERS) as u64,
        report.max_gap,
        report.reconnects,
        report.resent
    );
    for r in &receivers {
        r.client.close();
    }
    report
}

/// Removes what a Redis-backed run left on the shared server.
async fn purge(c: &DevCluster) {
    if let Some(url) = &c.common().cluster {
        common::procs::purge(url, url, &c.common().namespace).await;
    }
}

async fn memory() -> DevCluster {
    dev(3, durable_common(None)).await
}

async fn redis_processes() -> Option<DevCluster> {
    let b = common::procs::redis().await?;
    Some(dev(3, durable_common(Some(b.registry))).await)
}

/// The cluster tests take turns: one of them fails a server over, which
/// would disturb another running on the same cluster at the same time.
static CLUSTERS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn redis_cluster_processes() -> Option<DevCluster> {
    let b = common::procs::redis_cluster().await?;
    Some(dev(3, durable_common(Some(b.registry))).await)
}

/// Failover of a Redis Cluster shard takes the node timeout plus an election
/// (about 4 s on the local cluster). The registry's slot may be on the shard
/// that fails, so the heartbeat TTL must outlast that, or every node's
/// heartbeat expires while the registry is unreachable.
const FAILOVER_PROOF_TTL: Duration = Duration::from_secs(8);

async fn redis_cluster_processes_surviving_failover() -> Option<DevCluster> {
    let b = common::procs::redis_cluster().await?;
    let mut c = durable_common(Some(b.registry));
    c.heartbeat_ttl = FAILOVER_PROOF_TTL;
    Some(dev(3, c).await)
}

#[cfg(feature = "nats")]
async fn nats_cluster_processes() -> Option<DevCluster> {
    let b = common::procs::nats_cluster().await?;
    Some(dev(3, durable_common(Some(b.registry))).await)
}

/// Losing a NATS server also moves the leadership of the registry's KV
/// buckets, which takes seconds; the heartbeat TTL must outlast it (see
/// [`FAILOVER_PROOF_TTL`]).
#[cfg(feature = "nats")]
async fn nats_cluster_processes_surviving_failover() -> Option<DevCluster> {
    let b = common::procs::nats_cluster().await?;
    let mut c = durable_common(Some(b.registry));
    c.heartbeat_ttl = FAILOVER_PROOF_TTL;
    Some(dev(3, c).await)
}

/// SIGKILLs the first Redis Cluster primary found on the local cluster's
/// ports (each primary owns a third of the slots, so of this run's channels
/// and streams). Its replica is promoted.
async fn kill_a_redis_primary() {
    let mut victim = None;
    for port in 7100u16..=7105 {
        let Ok(client) = redis::Client::open(format!("redis://127.0.0.1:{port}/")) else {
            continue;
        };
        let Ok(mut c) = client.get_multiplexed_async_connection().await else {
            continue;
        };
        let role: Vec<redis::Value> = redis::cmd("ROLE")
            .query_async(&mut c)
            .await
            .unwrap_or_default();
        if matches!(role.first(), Some(redis::Value::BulkString(r)) if r.as_slice() == b"master") {
            victim = Some(port);
            break;
        }
    }
    let port = victim.expect("a Redis Cluster primary");
    let pid = tokio::task::spawn_blocking(move || {
        wsring_cluster_testkit::local_clusters::kill_server(port)
    })
    .await
    .expect("kill");
    println!("killed redis-server pid {pid} (primary on port {port})");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_add_node() {
    let c = memory().await;
    let api = Api::new(c.http_url());
    let r = run("memory/add-node", &c, || async {
        assert_eq!(api.post("/api/nodes", json!({})).await.0, 201);
    })
    .await;
    assert!(r.delivered > 0);
    c.shutdown().await;
    purge(&c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_drain_node() {
    let c = memory().await;
    let api = Api::new(c.http_url());
    run("memory/drain-node", &c, || async {
        assert_eq!(api.delete("/api/nodes/n2?mode=drain").await.0, 202);
    })
    .await;
    c.shutdown().await;
    purge(&c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_broker_connection_lost() {
    let c = memory().await;
    let broker = c
        .memory()
        .expect("memory")
        .broker("n2")
        .await
        .expect("n2 broker");
    run("memory/broker-cut", &c, || async {
        broker.sever().await;
        tokio::time::sleep(Duration::from_millis(1000)).await;
        broker.restore().await;
    })
    .await;
    c.shutdown().await;
    purge(&c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_add_node() {
    let Some(c) = redis_processes().await else {
        return;
    };
    let api = Api::new(c.http_url());
    run("redis/add-node", &c, || async {
        assert_eq!(api.post("/api/nodes", json!({})).await.0, 201);
    })
    .await;
    c.shutdown().await;
    purge(&c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_drain_node() {
    let Some(c) = redis_processes().await else {
        return;
    };
    let api = Api::new(c.http_url());
    run("redis/drain-node", &c, || async {
        assert_eq!(api.delete("/api/nodes/n2?mode=drain").await.0, 202);
    })
    .await;
    c.shutdown().await;
    purge(&c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_sigkill_node_process() {
    let Some(c) = redis_processes().await else {
        return;
    };
    let api = Api::new(c.http_url());
    run("redis/sigkill-node", &c, || async {
        assert_eq!(api.delete("/api/nodes/n2?mode=crash").await.0, 202);
    })
    .await;
    c.shutdown().await;
    purge(&c).await;
}

/// Kills node `pid`'s Redis subscriber connection from the server side:
/// its client ports come from `ss`, and `CLIENT LIST` tells which of them is
/// the pub/sub connection.
async fn kill_subscriber_of(pid: u32) {
    let out = tokio::process::Command::new("ss")
        .args(["-tnpH", "dst", "127.0.0.1:6379"])
        .output()
        .await
        .expect("ss");
    let text = String::from_utf8_lossy(&out.stdout);
    let ports: Vec<String> = text
        .lines()
        .filter(|l| l.contains(&format!("pid={pid},")))
        .filter_map(|l| l.split_whitespace().nth(3).map(str::to_owned))
        .collect();
    assert!(
        !ports.is_empty(),
        "no redis connections of pid {pid}: {text}"
    );
    let client = redis::Client::open("redis://127.0.0.1:6379/").expect("redis");
    let mut admin = client
        .get_multiplexed_async_connection()
        .await
        .expect("admin");
    let list: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query_async(&mut admin)
        .await
        .expect("client list");
    let mut killed = 0;
    for line in list.lines() {
        let field = |k: &str| {
            line.split_whitespace()
                .find_map(|f| f.strip_prefix(&format!("{k}=")))
                .unwrap_or_default()
                .to_owned()
        };
        if ports.contains(&field("addr")) && field("sub") != "0" {
            let _: redis::Value = redis::cmd("CLIENT")
                .arg("KILL")
                .arg("ID")
                .arg(field("id"))
                .query_async(&mut admin)
                .await
                .expect("client kill");
            killed += 1;
        }
    }
    assert!(killed >= 1, "found no subscriber connection of pid {pid}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_broker_connection_killed() {
    let Some(c) = redis_processes().await else {
        return;
    };
    let pids: BTreeMap<String, u32> = c.processes().expect("processes").pids().await;
    let pid = pids["n2"];
    run("redis/broker-kill", &c, || async move {
        kill_subscriber_of(pid).await;
    })
    .await;
    c.shutdown().await;
    purge(&c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cluster_sigkill_node_process() {
    let _turn = CLUSTERS.lock().await;
    let Some(c) = redis_cluster_processes().await else {
        return;
    };
    let api = Api::new(c.http_url());
    run("redis-cluster/sigkill-node", &c, || async {
        assert_eq!(api.delete("/api/nodes/n2?mode=crash").await.0, 202);
    })
    .await;
    c.shutdown().await;
    purge(&c).await;
}

/// A Redis Cluster primary is SIGKILLed mid-traffic: its replica takes
/// over, and no message is lost. The cluster is restored afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cluster_primary_killed() {
    let _turn = CLUSTERS.lock().await;
    let Some(c) = redis_cluster_processes_surviving_failover().await else {
        return;
    };
    let _restore = wsring_cluster_testkit::local_clusters::RestoreOnDrop;
    run("redis-cluster/primary-killed", &c, kill_a_redis_primary).await;
    c.shutdown().await;
    tokio::task::spawn_blocking(wsring_cluster_testkit::local_clusters::restore)
        .await
        .expect("restore");
    purge(&c).await;
}

#[cfg(feature = "nats")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_cluster_sigkill_node_process() {
    let _turn = CLUSTERS.lock().await;
    let Some(c) = nats_cluster_processes().await else {
        return;
    };
    let api = Api::new(c.http_url());
    run("nats-cluster/sigkill-node", &c, || async {
        assert_eq!(api.delete("/api/nodes/n2?mode=crash").await.0, 202);
    })
    .await;
    c.shutdown().await;
    purge(&c).await;
}

/// One server of the NATS cluster (the first listed, where every node's
/// connections are) is SIGKILLed mid-traffic: the nodes move to the
/// survivors, the R3 stream keeps every acknowledged message, and no message
/// is lost. The server is started again afterwards.
#[cfg(feature = "nats")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_cluster_server_killed() {
    let _turn = CLUSTERS.lock().await;
    let Some(c) = nats_cluster_processes_surviving_failover().await else {
        return;
    };
    let _restore = wsring_cluster_testkit::local_clusters::RestoreOnDrop;
    run("nats-cluster/server-killed", &c, || async {
        let pid = tokio::task::spawn_blocking(|| {
            wsring_cluster_testkit::local_clusters::kill_server(4230)
        })
        .await
        .expect("kill");
        println!("killed nats-server pid {pid} (port 4230)");
    })
    .await;
    c.shutdown().await;
    tokio::task::spawn_blocking(wsring_cluster_testkit::local_clusters::restore)
        .await
        .expect("restore");
    purge(&c).await;
}
