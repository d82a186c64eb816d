//! Losing a Redis Cluster primary mid-traffic (the local cluster of
//! `scripts/test-clusters`, where every primary has a replica): the shard
//! that holds a durable stream and a node's channel is killed with SIGKILL
//! while appends go on. Its replica is promoted; no acknowledged append is
//! lost (appends wait for a replica), and the broker reports the loss,
//! resubscribes on the new primary and receives again. The killed server is
//! started again at the end and rejoins as a replica, so the cluster is whole
//! for the next test. A second test moves a shard's primary role with a
//! graceful `CLUSTER FAILOVER` and checks that delivery on that shard's
//! channels carries on. Skipped without the cluster, unless
//! `WSRING_REQUIRE_BROKERS=1`.

use bytes::Bytes;
use std::time::Duration;
use tokio::time::timeout;
use wsring_cluster::{BrokerEvent, Retention, StreamName, Topic};
use wsring_cluster_redis::Keys;
use wsring_cluster_testkit::conformance::{skip_or_fail, unique_ns};
use wsring_cluster_testkit::local_clusters::{
    RestoreOnDrop, appends_survive, broker_recovers, kill_server, restore, wait_event,
};

/// The tests of this file fail servers over, so they take turns: a server
/// restarted by one test's clean-up while another test's failover is still
/// pending would come back as an empty primary (the local cluster keeps no
/// data on disk) and wipe its shard.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const CLUSTER: &str = "redis-cluster://127.0.0.1:7100,127.0.0.1:7101,127.0.0.1:7102,127.0.0.1:7103,127.0.0.1:7104,127.0.0.1:7105";

/// A plain connection to the first seed that answers with `cluster_state:ok`.
async fn seed_conn(url: &str) -> Option<redis::aio::MultiplexedConnection> {
    for seed in url.trim_start_matches("redis-cluster://").split(',') {
        let Ok(client) = redis::Client::open(format!("redis://{seed}/")) else {
            continue;
        };
        let Ok(Ok(mut c)) = timeout(
            Duration::from_secs(2),
            client.get_multiplexed_async_connection(),
        )
        .await
        else {
            continue;
        };
        let info: Result<String, _> = redis::cmd("CLUSTER").arg("INFO").query_async(&mut c).await;
        if info.is_ok_and(|i| i.contains("cluster_state:ok")) {
            return Some(c);
        }
    }
    None
}

/// The port of the primary that owns `key`'s slot.
async fn owner(c: &mut redis::aio::MultiplexedConnection, key: &str) -> u16 {
    let slot: u16 = redis::cmd("CLUSTER")
        .arg("KEYSLOT")
        .arg(key)
        .query_async(c)
        .await
        .expect("keyslot");
    let nodes: String = redis::cmd("CLUSTER")
        .arg("NODES")
        .query_async(c)
        .await
        .expect("nodes");
    for line in nodes.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 9 || !f[2].contains("master") || f[2].contains("fail") {
            continue;
        }
        for range in &f[8..] {
            let (lo, hi) = range.split_once('-').unwrap_or((range, range));
            if let (Ok(lo), Ok(hi)) = (lo.parse::<u16>(), hi.parse::<u16>())
                && (lo..=hi).contains(&slot)
            {
                let addr = f[1].split('@').next().expect("addr");
                return addr
                    .rsplit(':')
                    .next()
                    .and_then(|p| p.parse().ok())
                    .expect("port");
            }
        }
    }
    panic!("no primary owns slot {slot}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn primary_loss_keeps_every_acknowledged_append() {
    let url = std::env::var("WSRING_TEST_REDIS_CLUSTER").unwrap_or_else(|_| CLUSTER.to_owned());
    let Some(mut admin) = seed_conn(&url).await else {
        return skip_or_fail(&format!(
            "Redis Cluster not reachable at {url} (start it with scripts/test-clusters start)"
        ));
    };
    let _serial = SERIAL.lock().await;
    let _restore = RestoreOnDrop;
    let ns = unique_ns("rfault");
    let keys = Keys::new(&ns).expect("ns");
    let stream = StreamName::User("alice".into());
    let victim = owner(&mut admin, &keys.stream_meta(&stream)).await;
    // A node whose channel lives on the same shard as the stream.
    let mut node = None;
    for i in 0..1000 {
        let id = format!("n{i}");
        if owner(&mut admin, &keys.channel(&Topic::Node(id.clone()))).await == victim {
            node = Some(id);
            break;
        }
    }
    let node = node.expect("a channel on the victim's shard");
    let topic = Topic::Node(node.clone());

    let store = wsring_cluster_redis::connect_streams(
        &url,
        &ns,
        Retention {
            max_len: 10_000,
            max_age: Duration::from_secs(600),
            ..Retention::default()
        },
    )
    .await
    .expect("streams");
    let (sub, mut inbox) = wsring_cluster_redis::connect_broker(&url, &ns, &node)
        .await
        .expect("broker");
    let (publisher, _pi) = wsring_cluster_redis::connect_broker(&url, &ns, "publisher")
        .await
        .expect("broker");
    sub.subscribe(&topic).await.expect("subscribe");

    let stats = appends_survive(
        store,
        stream,
        300,
        100,
        move || {
            let pid = kill_server(victim);
            eprintln!("killed redis-server pid {pid} (primary on port {victim})");
        },
        Duration::from_secs(60),
    )
    .await;
    eprintln!("Redis primary loss: {stats:?}");

    // The channel's slot now belongs to the promoted replica.
    broker_recovers(&mut inbox, publisher.as_ref(), &topic).await;
    sub.close().await;
    publisher.close().await;

    tokio::task::spawn_blocking(restore).await.expect("restore");
    let _ = wsring_cluster_redis::purge_namespace(&url, &ns).await;
}

/// The node id and port of each server, and the primary id of each replica.
async fn topology(c: &mut redis::aio::MultiplexedConnection) -> Vec<(String, u16, Option<String>)> {
    let nodes: String = redis::cmd("CLUSTER")
        .arg("NODES")
        .query_async(c)
        .await
        .expect("nodes");
    nodes
        .lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let port = f
                .get(1)?
                .split('@')
                .next()?
                .rsplit(':')
                .next()?
                .parse()
                .ok()?;
            let primary = (f.get(2)?.contains("slave"))
                .then(|| f.get(3).map(|s| (*s).to_owned()))
                .flatten();
            Some((f.first()?.to_string(), port, primary))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_failover_keeps_delivering() {
    let url = std::env::var("WSRING_TEST_REDIS_CLUSTER").unwrap_or_else(|_| CLUSTER.to_owned());
    let Some(mut admin) = seed_conn(&url).await else {
        return skip_or_fail(&format!(
            "Redis Cluster not reachable at {url} (start it with scripts/test-clusters start)"
        ));
    };
    let _serial = SERIAL.lock().await;
    let _restore = RestoreOnDrop;
    let ns = unique_ns("rmove");
    let keys = Keys::new(&ns).expect("ns");
    let topic = Topic::Node("n1".into());
    let primary = owner(&mut admin, &keys.channel(&topic)).await;
    let nodes = topology(&mut admin).await;
    let primary_id = nodes
        .iter()
        .find(|(_, port, _)| *port == primary)
        .map(|(id, _, _)| id.clone())
        .expect("primary id");
    let replica = nodes
        .iter()
        .find(|(_, _, of)| of.as_deref() == Some(primary_id.as_str()))
        .map(|(_, port, _)| *port)
        .expect("the primary has a replica");

    let (sub, mut inbox) = wsring_cluster_redis::connect_broker(&url, &ns, "n1")
        .await
        .expect("broker");
    let (publisher, _pi) = wsring_cluster_redis::connect_broker(&url, &ns, "p")
        .await
        .expect("broker");
    sub.subscribe(&topic).await.expect("subscribe");
    publisher
        .publish(&topic, Bytes::from_static(b"before"))
        .await
        .expect("publish");
    wait_event(
        &mut inbox,
        |e| matches!(e, BrokerEvent::Message { payload, .. } if payload.as_ref() == b"before"),
        "message before the failover",
    )
    .await;

    // Promote the replica (graceful: the primary hands over its slots).
    let replica_client = redis::Client::open(format!("redis://127.0.0.1:{replica}/")).expect("url");
    let mut r = replica_client
        .get_multiplexed_async_connection()
        .await
        .expect("replica");
    let _: () = redis::cmd("CLUSTER")
        .arg("FAILOVER")
        .query_async(&mut r)
        .await
        .expect("CLUSTER FAILOVER");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let role: Vec<redis::Value> = redis::cmd("ROLE").query_async(&mut r).await.expect("role");
        if matches!(role.first(), Some(redis::Value::BulkString(b)) if b.as_slice() == b"master") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "replica on {replica} not promoted"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!("port {replica} took over from {primary}");

    // Delivery on the moved shard resumes: publish until a message arrives.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut n = 0u32;
    let mut events = Vec::new();
    'outer: loop {
        assert!(
            std::time::Instant::now() < deadline,
            "no delivery after the failover; events: {events:?}"
        );
        n += 1;
        let _ = publisher
            .publish(&topic, Bytes::from(format!("after-{n}")))
            .await;
        let until = tokio::time::Instant::now() + Duration::from_millis(200);
        while let Ok(Some(e)) = tokio::time::timeout_at(until, inbox.recv()).await {
            match e {
                BrokerEvent::Message { payload, .. } if payload.starts_with(b"after-") => {
                    break 'outer;
                }
                other => events.push(format!("{other:?}")),
            }
        }
    }
    eprintln!("delivering again after {n} attempts; events meanwhile: {events:?}");
    sub.close().await;
    publisher.close().await;
}
