//! Separate `wsring node` and `wsring gateway` processes on each real backend:
//! 3 nodes and 2 gateways, crash (SIGKILL) and graceful (SIGTERM) exits, a
//! broker connection cut, and fail-fast start-up errors.

mod common;

use common::procs::{Backend, Proc};
use common::{Api, Client, Ended, users_where, wait_until};
use nix::sys::signal::Signal;
use serde_json::json;
use std::time::Duration;
use wsring_cluster_testkit::conformance::unique_ns;
use wsring_cluster_testkit::fault::FaultProxy;

/// Waits until the gateway lists exactly `ids`, all up.
async fn await_nodes(api: &Api, ids: &[&str]) {
    wait_until(&format!("{} sees {ids:?}", api.base), || async {
        let (_, v) = api.get("/api/nodes").await;
        let Some(nodes) = v["nodes"].as_array() else {
            return false;
        };
        let got: Vec<&str> = nodes.iter().filter_map(|n| n["id"].as_str()).collect();
        got == ids && nodes.iter().all(|n| n["state"] == "up")
    })
    .await;
}

fn ws_url(http: &str) -> String {
    format!("{}/ws", http.replacen("http://", "ws://", 1))
}

async fn cluster_scenario(b: Backend) {
    let ns = unique_ns(&format!("mp-{}", b.name));
    let mut nodes = Vec::new();
    for id in ["n1", "n2", "n3"] {
        nodes.push(b.node(&ns, id, &[]).await);
    }
    let (_ga, base_a) = b.gateway(&ns, &[]).await;
    let (_gb, base_b) = b.gateway(&ns, &[]).await;
    let (a, bb) = (Api::new(&base_a), Api::new(&base_b));
    await_nodes(&a, &["n1", "n2", "n3"]).await;
    await_nodes(&bb, &["n1", "n2", "n3"]).await;
    assert_eq!(a.epoch().await, bb.epoch().await, "one epoch everywhere");

    // Both gateways route every user to the same owner.
    for i in 0..12 {
        let user = format!("{}-u{i}", b.name);
        let via_a = Client::connect(&ws_url(&base_a), &user).await;
        let via_b = Client::connect(&ws_url(&base_b), &user).await;
        assert_eq!(via_a.node(), via_b.node(), "{user}");
        assert_eq!(via_a.node(), a.route(&user).await);
        assert_eq!(via_a.node(), bb.route(&user).await);
    }

    // Cross-node direct messages arrive exactly once on every session.
    let bob = users_where(&a, "bob", 1, |n| n == "n2").await.remove(0);
    let alice = users_where(&a, "alice", 1, |n| n == "n1").await.remove(0);
    let mut s_alice = Client::connect(&ws_url(&base_a), &alice).await;
    let mut bob1 = Client::connect(&ws_url(&base_a), &bob).await;
    let mut bob2 = Client::connect(&ws_url(&base_b), &bob).await;
    for i in 0..30 {
        s_alice
            .send(json!({"type":"send","to":bob,"data":i,"id":i}))
            .await;
        assert_eq!(s_alice.next().await, json!({"type":"ack","id":i}));
    }
    // The marker takes the same path, so per-sender order makes it last.
    s_alice
        .send(json!({"type":"send","to":bob,"data":"end"}))
        .await;
    for s in [&mut bob1, &mut bob2] {
        for i in 0..30 {
            assert_eq!(s.next().await["data"], json!(i));
        }
        assert_eq!(s.next().await["data"], "end");
    }

    // SIGKILL n3: its users are cut off, the ring converges within the TTL.
    let victims = users_where(&a, "victim", 3, |n| n == "n3").await;
    let mut cut = Vec::new();
    for u in &victims {
        cut.push(Client::connect(&ws_url(&base_a), u).await);
    }
    let epoch_before = a.epoch().await;
    let killed_at = tokio::time::Instant::now();
    nodes[2].signal(Signal::SIGKILL);
    for c in &mut cut {
        assert_eq!(c.until_end().await.1, Ended::Abrupt);
    }
    let mut converged = Duration::ZERO;
    for api in [&a, &bb] {
        wait_until("n3 leaves the ring", || async {
            !api.node_ids().await.iter().any(|n| n == "n3")
        })
        .await;
        converged = converged.max(killed_at.elapsed());
    }
    println!(
        "{}: SIGKILLed node left both gateways' rings after {converged:?}",
        b.name
    );
    // Default TTL 2 s; detection is bounded by TTL + one reap period (0.6 s).
    // The extra second is slack for this shared, noisy machine.
    assert!(converged < Duration::from_secs(4), "took {converged:?}");
    assert!(a.epoch().await > epoch_before);
    for u in &victims {
        let c = Client::connect(&ws_url(&base_b), u).await;
        assert_ne!(c.node(), "n3");
        assert_eq!(c.node(), a.route(u).await);
    }

    // SIGTERM n2: its sessions are moved before the process exits 0.
    let (s, _) = a.get("/readyz").await;
    assert_eq!(s, 200);
    nodes[1].signal(Signal::SIGTERM);
    for s in [&mut bob1, &mut bob2] {
        let (frames, end) = s.until_end().await;
        assert_eq!(
            frames.last().map(|f| f["type"].clone()),
            Some(json!("moved"))
        );
        assert_eq!(end, Ended::Close(1012, "moved".into()));
    }
    let status = nodes[1].wait(Duration::from_secs(15)).await;
    assert!(status.success(), "SIGTERM exit: {status:?}");
    await_nodes(&a, &["n1"]).await;
    let again = Client::connect(&ws_url(&base_a), &bob).await;
    assert_eq!(again.node(), "n1");
    drop(nodes);
    b.purge(&ns).await;
}

async fn broker_cut_scenario(b: Backend) {
    let ns = unique_ns(&format!("cut-{}", b.name));
    let proxy = FaultProxy::start(b.broker_addr.parse().expect("addr"))
        .await
        .expect("proxy");
    let _n1 = b.node(&ns, "n1", &[]).await;
    let mut n2 = b
        .node_with_broker(&ns, "n2", &b.broker_via(&proxy.addr().to_string()), &[])
        .await;
    let (_g, base) = b.gateway(&ns, &[]).await;
    let api = Api::new(&base);
    await_nodes(&api, &["n1", "n2"]).await;
    let bob = users_where(&api, "bob", 1, |n| n == "n2").await.remove(0);
    let alice = users_where(&api, "alice", 1, |n| n == "n1").await.remove(0);
    let mut s_bob = Client::connect(&ws_url(&base), &bob).await;
    let mut s_alice = Client::connect(&ws_url(&base), &alice).await;
    s_alice
        .send(json!({"type":"send","to":bob,"data":"before"}))
        .await;
    assert_eq!(s_bob.next().await["data"], "before");

    let connections_before = proxy.accepted();
    // Keep the node from reconnecting for a while, to see it report the outage.
    proxy.refuse(true);
    if b.name == "redis" {
        // The literal server-side kill of this node's broker connections.
        let client = redis::Client::open(b.registry.as_str()).expect("redis");
        let mut admin = client
            .get_multiplexed_async_connection()
            .await
            .expect("admin");
        for addr in proxy.upstream_addrs() {
            let _: redis::Value = redis::cmd("CLIENT")
                .arg("KILL")
                .arg("ADDR")
                .arg(addr.to_string())
                .query_async(&mut admin)
                .await
                .expect("CLIENT KILL");
        }
    } else {
        proxy.cut();
    }
    let node_api = Api::new(format!("http://{}", n2_addr(&mut n2)));
    wait_until("readyz reports the broker outage", || async {
        node_api.get("/readyz").await.0 == 503
    })
    .await;
    let (_, why) = node_api.get("/readyz").await;
    assert!(
        why["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("broker")),
        "{why}"
    );
    // The node keeps serving its local sessions meanwhile.
    s_bob.roundtrip("still-served").await;
    proxy.refuse(false);
    let node_pid = n2.pid();
    // Messages flow again without restarting the node: keep sending until
    // one arrives (those sent during the outage may be lost; this cluster is
    // not durable).
    let mut i = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "messages never flowed again"
        );
        i += 1;
        s_alice.send(json!({"type":"send","to":bob,"data":i})).await;
        match tokio::time::timeout(Duration::from_millis(250), s_bob.next()).await {
            Ok(v) if v["data"] == json!(i) => break,
            _ => continue,
        }
    }
    assert!(
        proxy.accepted() > connections_before,
        "the node reconnected through the proxy"
    );
    assert_eq!(n2.pid(), node_pid);
    assert!(
        n2.child.try_wait().expect("status").is_none(),
        "node still running"
    );
    wait_until("node ready again", || async {
        node_api.get("/readyz").await.0 == 200
    })
    .await;
}

fn n2_addr(p: &mut Proc) -> String {
    p.announced()
        .trim_start_matches("ws://")
        .trim_end_matches("/ws")
        .to_owned()
}

async fn fail_fast(b: Backend) {
    let ns = unique_ns("ff");
    let dead = b.registry.replace(b.broker_addr, "127.0.0.1:1");
    let _first = b.node(&ns, "dup", &[]).await;
    let node = |id: &'static str, registry: String, broker: String, ns: String| async move {
        let args = [
            "node",
            "--id",
            id,
            "--listen",
            "127.0.0.1:0",
            "--registry",
            &registry,
            "--broker",
            &broker,
            "--namespace",
            &ns,
        ];
        Proc::run(&args, Duration::from_secs(15)).await
    };
    let cases = [
        (
            node("x1", "bogus://x".into(), "bogus://x".into(), ns.clone()).await,
            "invalid backend URL",
        ),
        (
            node("x1", dead.clone(), dead.clone(), ns.clone()).await,
            "unavailable",
        ),
        (
            node("dup", b.registry.clone(), b.broker.clone(), ns.clone()).await,
            "already held by a live node",
        ),
    ];
    for ((status, err), want) in cases {
        assert!(!status.success(), "{want}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
        assert!(err.contains(want), "{want}: {err}");
    }
    b.purge(&ns).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_three_nodes_two_gateways() {
    if let Some(b) = common::procs::redis().await {
        cluster_scenario(b).await;
    }
}

/// The same on the local Redis Cluster (sharded pub/sub).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cluster_three_nodes_two_gateways() {
    if let Some(b) = common::procs::redis_cluster().await {
        cluster_scenario(b).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_broker_connection_killed() {
    if let Some(b) = common::procs::redis().await {
        broker_cut_scenario(b).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_fail_fast() {
    if let Some(b) = common::procs::redis().await {
        fail_fast(b).await;
    }
}

#[cfg(feature = "nats")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_three_nodes_two_gateways() {
    if let Some(b) = common::procs::nats().await {
        cluster_scenario(b).await;
    }
}

/// The same on the local 3-server NATS cluster (R3 registry buckets).
#[cfg(feature = "nats")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_cluster_three_nodes_two_gateways() {
    if let Some(b) = common::procs::nats_cluster().await {
        cluster_scenario(b).await;
    }
}

#[cfg(feature = "nats")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_broker_connection_cut() {
    if let Some(b) = common::procs::nats().await {
        broker_cut_scenario(b).await;
    }
}

#[cfg(feature = "nats")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_fail_fast() {
    if let Some(b) = common::procs::nats().await {
        fail_fast(b).await;
    }
}

#[cfg(feature = "amqp")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqp_three_nodes_two_gateways() {
    if let Some(b) = common::procs::amqp().await {
        cluster_scenario(b).await;
    }
}

#[cfg(feature = "amqp")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqp_broker_connection_cut() {
    if let Some(b) = common::procs::amqp().await {
        broker_cut_scenario(b).await;
    }
}
