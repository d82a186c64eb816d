//! Steady-state soak, one per backend: a healthy cluster under steady
//! cross-node traffic must lose nothing, duplicate nothing, never reconnect
//! to its backend and log nothing at WARN or above, for longer than three
//! periods of its slowest periodic timer.
//!
//! The timers it outlasts (defaults unless named): membership heartbeat and
//! reap every 500 ms, document poll every 1 s, the Redis subscriber
//! keep-alive every 5 s, the NATS client ping every 10 s, the AMQP heartbeat
//! every 10 s, and the session ping, set to 4 s here (idle drop at 10 s) so
//! that it fires several times. The longest is 10 s, so traffic runs for
//! [`SOAK`] = 32 s.
//!
//! Topology: three `wsring node` processes and one `wsring gateway` process
//! on Redis, NATS, and RabbitMQ (with Redis as registry), secured as in
//! production (connect tokens and an API key); one `wsring dev` process
//! (three nodes and a gateway on the in-memory backend) for memory.
//! 200 users connect through the gateway, each in one of 8 rooms; every
//! 50 ms ten random users send a direct message and one publishes to its room.

mod common;

use common::procs::{self, Backend, Proc};
use common::traffic::Fleet;
use common::{Api, TEST_API_KEY, TEST_JWT_SECRET, wait_until};
use std::time::Duration;
use wsring_cluster_testkit::conformance::unique_ns;

const USERS: usize = 200;
const ROOMS: usize = 8;
const SOAK: Duration = Duration::from_secs(32);
const TICK: Duration = Duration::from_millis(50);
const DIRECT_PER_TICK: usize = 10;
const ROOM_PER_TICK: usize = 1;
const TIMERS: &[&str] = &["--ping-interval", "4s"];

/// A running cluster: its processes, the gateway's ws URL and every
/// process's `/metrics` URL.
struct Cluster {
    procs: Vec<Proc>,
    ws: String,
    /// The token secret clients sign with, when authentication is on.
    secret: Option<&'static str>,
    metrics: Vec<String>,
    api: Api,
}

async fn processes(b: &Backend, ns: &str) -> Cluster {
    let mut procs = Vec::new();
    let mut metrics = Vec::new();
    let auth = ["--jwt-secret", TEST_JWT_SECRET, "--api-key", TEST_API_KEY];
    // The session timers are node settings; the gateway rejects them.
    let mut args = TIMERS.to_vec();
    args.extend(auth);
    for id in ["n1", "n2", "n3"] {
        let p = b.node(ns, id, &args).await;
        let http = p.announced().replace("ws://", "http://");
        metrics.push(format!("{}/metrics", http.trim_end_matches("/ws")));
        procs.push(p);
    }
    let (gw, base) = b.gateway(ns, &auth).await;
    procs.push(gw);
    metrics.push(format!("{base}/metrics"));
    let api = Api::new(base.clone());
    wait_until("3 nodes on the gateway's ring", || async {
        api.node_ids().await.len() == 3
    })
    .await;
    Cluster {
        procs,
        ws: format!("{}/ws", base.replace("http://", "ws://")),
        secret: Some(TEST_JWT_SECRET),
        metrics,
        api,
    }
}

async fn dev_process() -> Cluster {
    let mut args = vec!["--nodes", "3"];
    args.extend_from_slice(TIMERS);
    let (p, ws, base) = common::procs::dev_process(&args).await;
    let api = Api::new(base.clone());
    wait_until("3 nodes", || async { api.node_ids().await.len() == 3 }).await;
    Cluster {
        procs: vec![p],
        ws,
        secret: None,
        metrics: vec![format!("{base}/metrics")],
        api,
    }
}

/// One soak at a time: four clusters at once on two cores would test the
/// machine, not wsring.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn soak(name: &str, cluster: Cluster, expect_backend: &str) {
    let prefix = format!("{name}-u");
    let mut fleet = Fleet::connect_with(&cluster.ws, &prefix, USERS, ROOMS, cluster.secret).await;
    let nodes: std::collections::BTreeSet<&str> =
        fleet.clients.iter().map(|c| c.node.as_str()).collect();
    assert_eq!(
        nodes.len(),
        3,
        "users spread over all three nodes: {nodes:?}"
    );
    let started = tokio::time::Instant::now();
    let mut rng = rand::rng();
    let mut tick = tokio::time::interval(TICK);
    while started.elapsed() < SOAK {
        tick.tick().await;
        for _ in 0..DIRECT_PER_TICK {
            fleet.send_direct(&mut rng);
        }
        for _ in 0..ROOM_PER_TICK {
            fleet.send_room(&mut rng);
        }
    }
    let t = fleet.settle(Duration::from_secs(20)).await;
    println!(
        "soak {name}: {:?} of traffic; sent {} (acked {}), deliveries {}/{} expected, missing {}, duplicates {}, unexpected {}, errors {}",
        SOAK,
        t.sent,
        t.acked,
        t.delivered,
        t.expected_deliveries,
        t.missing,
        t.duplicates,
        t.unexpected,
        t.errors
    );
    assert!(
        t.ended.is_empty(),
        "connections ended during a healthy run: {:?}",
        t.ended
    );
    assert_eq!(t.acked, t.sent, "every message acknowledged");
    assert_eq!(t.errors, 0, "no error frames");
    assert_eq!(t.missing, 0, "nothing lost: {:?}", t.examples);
    assert_eq!(t.duplicates, 0, "nothing duplicated: {:?}", t.examples);
    assert_eq!(t.unexpected, 0, "nothing delivered to the wrong user");
    assert_eq!(t.delivered, t.expected_deliveries);

    // Zero reconnects, as an explicit 0 on every process.
    for url in &cluster.metrics {
        let series = common::metric_series(url, wsring_cluster::link::RECONNECTS_METRIC).await;
        assert!(!series.is_empty(), "{url} exports the reconnect counter");
        if url != cluster.metrics.last().unwrap_or(url) || cluster.metrics.len() == 1 {
            // Nodes (and the all-in-one dev process) carry the broker's series.
            assert!(
                series
                    .iter()
                    .any(|(s, _)| s.contains(&format!("backend=\"{expect_backend}\""))),
                "{url} exports the reconnect counter for {expect_backend}: {series:?}"
            );
        }
        for (s, v) in &series {
            assert_eq!(*v, 0.0, "{url}: {s} = {v} in a healthy run");
        }
    }
    // A clean log.
    for p in &cluster.procs {
        let w = p.warnings();
        assert!(w.is_empty(), "WARN/ERROR lines in a healthy run: {w:#?}");
    }
    let (_, nodes) = cluster.api.get("/api/nodes").await;
    println!("soak {name}: final membership {nodes}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_memory() {
    let _one = ONE_AT_A_TIME.lock().await;
    let cluster = dev_process().await;
    soak("memory", cluster, "memory").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_redis() {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some(b) = procs::redis().await else {
        return;
    };
    let ns = unique_ns("soak");
    let cluster = processes(&b, &ns).await;
    soak("redis", cluster, "redis").await;
    b.purge(&ns).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_nats() {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some(b) = procs::nats().await else { return };
    let ns = unique_ns("soak");
    let cluster = processes(&b, &ns).await;
    soak("nats", cluster, "nats").await;
    b.purge(&ns).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_amqp() {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some(b) = procs::amqp().await else { return };
    let ns = unique_ns("soak");
    let cluster = processes(&b, &ns).await;
    soak("amqp", cluster, "amqp").await;
    b.purge(&ns).await;
}
