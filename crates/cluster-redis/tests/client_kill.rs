//! Server-side connection kills (`CLIENT KILL ADDR`): a node's broker and
//! registry recover by themselves and messages flow again, without being
//! recreated. The node's connections go through a fault proxy only so the test
//! can learn exactly which client addresses are this node's on the shared
//! server; the kill itself is issued by Redis.

use bytes::Bytes;
use std::time::Duration;
use tokio::time::timeout;
use wsring_cluster::{BrokerEvent, Inbox, Topic};
use wsring_cluster_testkit::conformance::{skip_or_fail, unique_ns};
use wsring_cluster_testkit::fault::FaultProxy;

const ADDR: &str = "127.0.0.1:6379";

async fn next_event(inbox: &mut Inbox) -> BrokerEvent {
    timeout(Duration::from_secs(15), inbox.recv())
        .await
        .expect("event in time")
        .expect("inbox open")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_survives_client_kill() {
    if let Err(e) = tokio::net::TcpStream::connect(ADDR).await {
        return skip_or_fail(&format!("Redis not reachable at {ADDR}: {e}"));
    }
    let ns = unique_ns("kill");
    let proxy = FaultProxy::start(ADDR.parse().expect("addr"))
        .await
        .expect("proxy");
    let url = format!("redis://{}/", proxy.addr());
    let (victim, mut inbox) = wsring_cluster_redis::connect_broker(&url, &ns, "victim")
        .await
        .expect("broker");
    let (other, _i) =
        wsring_cluster_redis::connect_broker(&format!("redis://{ADDR}/"), &ns, "other")
            .await
            .expect("broker");
    victim
        .subscribe(&Topic::Node("victim".into()))
        .await
        .expect("sub");
    let client = redis::Client::open(format!("redis://{ADDR}/")).expect("client");
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
            .expect("client kill");
    }
    loop {
        if matches!(next_event(&mut inbox).await, BrokerEvent::Disconnected) {
            break;
        }
    }
    loop {
        if matches!(next_event(&mut inbox).await, BrokerEvent::Resubscribed) {
            break;
        }
    }
    // Both directions work again: receiving on the resubscribed channel, and
    // publishing over the (auto-reconnected) command connection.
    other
        .publish(&Topic::Node("victim".into()), Bytes::from_static(b"again"))
        .await
        .expect("publish");
    loop {
        if let BrokerEvent::Message { payload, .. } = next_event(&mut inbox).await {
            assert_eq!(payload.as_ref(), b"again");
            break;
        }
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while victim
        .publish(&Topic::Cluster, Bytes::from_static(b"x"))
        .await
        .is_err()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "publisher never recovered"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    victim.close().await;
    other.close().await;
}
