//! The backend conformance suite against the NATS server at 127.0.0.1:4222
//! (JetStream enabled), and again over TLS (`tls://` with a throwaway CA
//! named by `cacertfile`) against a private nats-server the test starts.
//! Then once more against the local 3-server cluster of
//! `scripts/test-clusters` (`WSRING_TEST_NATS_CLUSTER`), where buckets and
//! streams are replicated three times.
//! Skipped when a server is not reachable, unless `WSRING_REQUIRE_BROKERS=1`.

mod common;

use async_trait::async_trait;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use wsring_cluster::{Broker, HookQueue, Inbox, Registry, Retention, ServerRooms, StreamStore};
use wsring_cluster_nats::{
    connect_broker, connect_hook_queue, connect_registry, connect_server_rooms, connect_streams,
};
use wsring_cluster_testkit::conformance::Harness;

use common::Server;

#[async_trait]
impl Harness for Server {
    async fn registry(&self, ns: &str, ttl: Duration) -> Option<Arc<dyn Registry>> {
        self.track(ns);
        Some(
            connect_registry(&self.url(), ns, ttl)
                .await
                .expect("connect registry"),
        )
    }

    async fn broker(&self, ns: &str, node: &str) -> Option<(Arc<dyn Broker>, Inbox)> {
        Some(
            connect_broker(&self.url(), ns, node)
                .await
                .expect("connect broker"),
        )
    }

    async fn streams(&self, ns: &str, retention: Retention) -> Option<Arc<dyn StreamStore>> {
        self.track(ns);
        Some(
            connect_streams(&self.url(), ns, retention)
                .await
                .expect("connect streams"),
        )
    }

    async fn server_rooms(&self, ns: &str) -> Option<Arc<dyn ServerRooms>> {
        self.track(ns);
        Some(
            connect_server_rooms(&self.url(), ns)
                .await
                .expect("connect server rooms"),
        )
    }

    async fn hook_queue(&self, ns: &str) -> Option<Arc<dyn HookQueue>> {
        self.track(ns);
        Some(
            connect_hook_queue(&self.url(), ns)
                .await
                .expect("connect webhook queue"),
        )
    }

    fn server_addr(&self) -> Option<SocketAddr> {
        // Behind a proxy, a cluster client would still learn the other
        // servers' direct addresses and bypass it; the single-server runs
        // cover the proxy cases.
        self.cluster.is_none().then_some(self.addr)
    }

    async fn broker_at(
        &self,
        addr: SocketAddr,
        ns: &str,
        node: &str,
    ) -> Option<(Arc<dyn Broker>, Inbox)> {
        Some(
            connect_broker(&self.url_at(addr), ns, node)
                .await
                .expect("connect broker through proxy"),
        )
    }
}

wsring_cluster_testkit::conformance_suite!(common::server());

/// The same suite over TLS.
mod tls {
    use super::*;

    wsring_cluster_testkit::conformance_suite!(common::tls_server());

    /// Without the CA, the TLS server is refused at start-up.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn tls_verifies_the_server() {
        let Some(s) = common::tls_server().await else {
            return;
        };
        let ns = wsring_cluster_testkit::conformance::unique_ns("tls");
        let (b, _inbox) = connect_broker(&s.url(), &ns, "a").await.expect("broker");
        assert!(b.healthy());
        let err = connect_broker(&format!("tls://{}", s.addr), &ns, "b")
            .await
            .err()
            .expect("an untrusted server must be refused");
        eprintln!("untrusted CA: {err}");
        b.close().await;
    }
}

/// The same suite on the 3-server cluster (R3 buckets and stream).
mod cluster {
    use super::*;

    wsring_cluster_testkit::conformance_suite!(common::cluster());

    /// On the cluster, the buckets and the stream really have three replicas.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn cluster_state_is_replicated_three_times() {
        let Some(s) = common::cluster().await else {
            return;
        };
        let ns = wsring_cluster_testkit::conformance::unique_ns("r3");
        let _registry = s.registry(&ns, Duration::from_secs(5)).await;
        let _streams = s.streams(&ns, Retention::default()).await;
        let _rooms = s.server_rooms(&ns).await;
        let servers: Vec<String> = s.url().split(',').map(str::to_owned).collect();
        let client = async_nats::connect(servers).await.expect("connect");
        let js = async_nats::jetstream::new(client);
        for name in [
            format!("KV_{ns}_members"),
            format!("KV_{ns}_heartbeats"),
            format!("{ns}_rooms"),
            format!("{ns}_streams"),
        ] {
            let mut stream = js.get_stream(&name).await.expect("stream");
            let info = stream.info().await.expect("info");
            assert_eq!(info.config.num_replicas, 3, "{name}");
            let cluster = info.cluster.as_ref().expect("clustered");
            assert_eq!(cluster.replicas.len(), 2, "{name}: two followers");
        }
    }
}
