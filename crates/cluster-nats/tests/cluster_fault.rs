//! Losing one server of the 3-server NATS cluster of `scripts/test-clusters`
//! mid-traffic: in durable mode no acknowledged append is lost (the stream is
//! R3), and the broker reconnects to a survivor and resubscribes. The killed
//! server is started again at the end, so the cluster is whole for the next
//! test. Skipped without the cluster, unless `WSRING_REQUIRE_BROKERS=1`.

mod common;

use std::time::Duration;
use wsring_cluster::{Retention, StreamName, Topic};
use wsring_cluster_nats::{connect_broker, connect_streams, purge_namespace};
use wsring_cluster_testkit::conformance::unique_ns;
use wsring_cluster_testkit::local_clusters::{
    RestoreOnDrop, appends_survive, broker_recovers, kill_server, restore,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_loss_keeps_every_acknowledged_append() {
    let Some(cluster) = common::cluster().await else {
        return;
    };
    let _restore = RestoreOnDrop;
    let url = cluster.url();
    let ns = unique_ns("nfault");
    let retention = Retention {
        max_len: 10_000,
        max_age: Duration::from_secs(600),
        ..Retention::default()
    };
    let store = connect_streams(&url, &ns, retention)
        .await
        .expect("streams");
    let (broker, mut inbox) = connect_broker(&url, &ns, "n1").await.expect("broker");
    let me = Topic::Node("n1".into());
    broker.subscribe(&me).await.expect("subscribe");

    // Clients take the servers in the order listed: the first is the one to
    // kill, since every connection of this test is on it.
    let first = url.split(',').next().expect("a server");
    let port: u16 = first
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port");
    let stats = appends_survive(
        store,
        StreamName::User("alice".into()),
        300,
        100,
        move || {
            let pid = kill_server(port);
            eprintln!("killed nats-server pid {pid} (port {port})");
        },
        Duration::from_secs(30),
    )
    .await;
    eprintln!("NATS server loss: {stats:?}");

    // The broker noticed, reconnected to a survivor and resubscribed.
    broker_recovers(&mut inbox, broker.as_ref(), &me).await;
    broker.close().await;

    tokio::task::spawn_blocking(restore).await.expect("restore");
    let _ = purge_namespace(&url, &ns).await;
}
