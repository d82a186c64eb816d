//! The backend conformance suite against the Redis on 127.0.0.1:6379, once
//! in plaintext (`redis://`) and once over TLS (`rediss://` through a
//! TLS-terminating proxy with a throwaway CA named by `cacertfile`).

use async_trait::async_trait;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use wsring_cluster::{Broker, HookQueue, Inbox, Registry, Retention, ServerRooms, StreamStore};
use wsring_cluster_testkit::conformance::{Harness, skip_or_fail, unique_ns};
use wsring_cluster_testkit::fault::{TestPki, TlsProxy};

const ADDR: &str = "127.0.0.1:6379";

struct Redis {
    /// Set for the TLS run: the CA and the proxy in front of the server.
    tls: Option<(TestPki, TlsProxy)>,
}

impl Redis {
    fn url(&self, addr: &str) -> String {
        match &self.tls {
            None => format!("redis://{addr}/"),
            Some((pki, _)) => format!("rediss://{addr}/?cacertfile={}", pki.ca_file.display()),
        }
    }

    fn addr(&self) -> String {
        match &self.tls {
            None => ADDR.to_owned(),
            Some((_, proxy)) => proxy.addr().to_string(),
        }
    }
}

#[async_trait]
impl Harness for Redis {
    async fn registry(&self, ns: &str, _ttl: Duration) -> Option<Arc<dyn Registry>> {
        Some(
            wsring_cluster_redis::connect_registry(&self.url(&self.addr()), ns)
                .await
                .expect("registry"),
        )
    }
    async fn broker(&self, ns: &str, node: &str) -> Option<(Arc<dyn Broker>, Inbox)> {
        Some(
            wsring_cluster_redis::connect_broker(&self.url(&self.addr()), ns, node)
                .await
                .expect("broker"),
        )
    }
    async fn streams(&self, ns: &str, retention: Retention) -> Option<Arc<dyn StreamStore>> {
        Some(
            wsring_cluster_redis::connect_streams(&self.url(&self.addr()), ns, retention)
                .await
                .expect("streams"),
        )
    }
    async fn server_rooms(&self, ns: &str) -> Option<Arc<dyn ServerRooms>> {
        Some(
            wsring_cluster_redis::connect_server_rooms(&self.url(&self.addr()), ns)
                .await
                .expect("server rooms"),
        )
    }
    async fn hook_queue(&self, ns: &str) -> Option<Arc<dyn HookQueue>> {
        Some(
            wsring_cluster_redis::connect_hook_queue(&self.url(&self.addr()), ns)
                .await
                .expect("webhook queue"),
        )
    }
    fn server_addr(&self) -> Option<SocketAddr> {
        self.addr().parse().ok()
    }
    async fn broker_at(
        &self,
        addr: SocketAddr,
        ns: &str,
        node: &str,
    ) -> Option<(Arc<dyn Broker>, Inbox)> {
        Some(
            wsring_cluster_redis::connect_broker(&self.url(&addr.to_string()), ns, node)
                .await
                .expect("broker"),
        )
    }
}

async fn reachable() -> bool {
    match tokio::net::TcpStream::connect(ADDR).await {
        Ok(_) => true,
        Err(e) => {
            skip_or_fail(&format!("Redis not reachable at {ADDR}: {e}"));
            false
        }
    }
}

async fn redis() -> Option<Redis> {
    reachable().await.then_some(Redis { tls: None })
}

async fn redis_tls() -> Option<Redis> {
    if !reachable().await {
        return None;
    }
    let pki = TestPki::generate();
    let proxy = TlsProxy::start(ADDR.parse().expect("addr"), &pki)
        .await
        .expect("tls proxy");
    Some(Redis {
        tls: Some((pki, proxy)),
    })
}

wsring_cluster_testkit::conformance_suite!(redis());

/// The same suite over TLS.
mod tls {
    use super::*;

    wsring_cluster_testkit::conformance_suite!(redis_tls());

    /// The TLS run really is TLS, and a server whose CA is not trusted is
    /// refused at start-up.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn rediss_verifies_the_server() {
        let Some(h) = redis_tls().await else { return };
        let ns = unique_ns("tls");
        let (b, _inbox) = h.broker(&ns, "a").await.expect("broker");
        assert!(b.healthy());
        let proxy = &h.tls.as_ref().expect("tls").1;
        assert!(proxy.handshakes() > 0, "no TLS handshake happened");
        let untrusted = format!("rediss://{}/", proxy.addr());
        let err = wsring_cluster_redis::connect_broker(&untrusted, &ns, "b")
            .await
            .err()
            .expect("an untrusted server must be refused");
        eprintln!("untrusted CA: {err}");
        let missing = format!("rediss://{}/?cacertfile=/nonexistent/ca.pem", proxy.addr());
        assert!(matches!(
            wsring_cluster_redis::connect_broker(&missing, &ns, "c").await,
            Err(wsring_cluster::ClusterError::InvalidUrl { .. })
        ));
        b.close().await;
    }
}

/// The same suite on the local Redis Cluster of `scripts/test-clusters`
/// (`WSRING_TEST_REDIS_CLUSTER`): sharded pub/sub, registry in one slot,
/// streams spread over the shards.
mod cluster {
    use super::*;

    /// Where the tests expect the Redis Cluster.
    pub const CLUSTER: &str = "redis-cluster://127.0.0.1:7100,127.0.0.1:7101,127.0.0.1:7102,127.0.0.1:7103,127.0.0.1:7104,127.0.0.1:7105";

    /// The cluster's URL.
    pub fn url() -> String {
        std::env::var("WSRING_TEST_REDIS_CLUSTER").unwrap_or_else(|_| CLUSTER.to_owned())
    }

    pub struct RedisCluster {
        url: String,
    }

    #[async_trait]
    impl Harness for RedisCluster {
        async fn registry(&self, ns: &str, _ttl: Duration) -> Option<Arc<dyn Registry>> {
            Some(
                wsring_cluster_redis::connect_registry(&self.url, ns)
                    .await
                    .expect("registry"),
            )
        }
        async fn broker(&self, ns: &str, node: &str) -> Option<(Arc<dyn Broker>, Inbox)> {
            Some(
                wsring_cluster_redis::connect_broker(&self.url, ns, node)
                    .await
                    .expect("broker"),
            )
        }
        async fn streams(&self, ns: &str, retention: Retention) -> Option<Arc<dyn StreamStore>> {
            Some(
                wsring_cluster_redis::connect_streams(&self.url, ns, retention)
                    .await
                    .expect("streams"),
            )
        }
        async fn server_rooms(&self, ns: &str) -> Option<Arc<dyn ServerRooms>> {
            Some(
                wsring_cluster_redis::connect_server_rooms(&self.url, ns)
                    .await
                    .expect("server rooms"),
            )
        }
        async fn hook_queue(&self, ns: &str) -> Option<Arc<dyn HookQueue>> {
            Some(
                wsring_cluster_redis::connect_hook_queue(&self.url, ns)
                    .await
                    .expect("webhook queue"),
            )
        }
    }

    /// The cluster, or `None` after `skip_or_fail` when no seed answers
    /// with `cluster_state:ok`.
    pub async fn redis_cluster() -> Option<RedisCluster> {
        let url = url();
        let hint = "start it with scripts/test-clusters start";
        let seeds = url.trim_start_matches("redis-cluster://");
        for seed in seeds.split(',') {
            let Ok(client) = redis::Client::open(format!("redis://{seed}/")) else {
                continue;
            };
            let Ok(Ok(mut c)) = tokio::time::timeout(
                Duration::from_secs(2),
                client.get_multiplexed_async_connection(),
            )
            .await
            else {
                continue;
            };
            let info: Result<String, _> =
                redis::cmd("CLUSTER").arg("INFO").query_async(&mut c).await;
            match info {
                Ok(i) if i.contains("cluster_state:ok") => return Some(RedisCluster { url }),
                Ok(_) => {
                    skip_or_fail(&format!("Redis Cluster at {seed} is not ok ({hint})"));
                    return None;
                }
                Err(e) => {
                    skip_or_fail(&format!(
                        "Redis at {seed} is not a cluster node: {e} ({hint})"
                    ));
                    return None;
                }
            }
        }
        skip_or_fail(&format!("Redis Cluster not reachable at {url} ({hint})"));
        None
    }

    wsring_cluster_testkit::conformance_suite!(redis_cluster());

    /// `purge_namespace` finds a namespace's keys on every primary (they are
    /// spread over the shards) and removes them all.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn purge_removes_the_namespace_from_every_shard() {
        let Some(h) = redis_cluster().await else {
            return;
        };
        let ns = unique_ns("purge");
        let registry = h
            .registry(&ns, Duration::from_secs(5))
            .await
            .expect("registry");
        registry
            .store(None, bytes::Bytes::from_static(b"{}"))
            .await
            .expect("store");
        let streams = h.streams(&ns, Retention::default()).await.expect("streams");
        for i in 0..20 {
            streams
                .append(
                    &wsring_cluster::StreamName::User(format!("u{i}")),
                    bytes::Bytes::from_static(b"x"),
                    None,
                )
                .await
                .expect("append");
        }
        let other = unique_ns("kept");
        let kept = h
            .streams(&other, Retention::default())
            .await
            .expect("streams");
        kept.append(
            &wsring_cluster::StreamName::User("u".into()),
            bytes::Bytes::from_static(b"x"),
            None,
        )
        .await
        .expect("append");
        // 1 document + 20 streams × (meta + entries) + the 3 store usage
        // keys.
        let deleted = wsring_cluster_redis::purge_namespace(&h.url, &ns)
            .await
            .expect("purge");
        assert_eq!(deleted, 44);
        assert_eq!(
            wsring_cluster_redis::purge_namespace(&h.url, &ns)
                .await
                .expect("purge again"),
            0
        );
        assert_eq!(
            wsring_cluster_redis::purge_namespace(&h.url, &other)
                .await
                .expect("purge other"),
            5,
            "another namespace is left alone"
        );
    }
}

/// A node's registry connection carries its name: a late member is not
/// reported while that connection is open, and is once it closed (its
/// process died), long before its heartbeat expires.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnected_reports_a_late_member_once_its_connection_closed() {
    let Some(h) = redis().await else { return };
    let ns = unique_ns("gone");
    let ttl = Duration::from_secs(10);
    let late = Duration::from_millis(200);
    let member = h.registry(&ns, ttl).await.expect("registry");
    let observer = h.registry(&ns, ttl).await.expect("registry");
    let ids = vec!["a".to_owned()];
    member
        .claim("a", bytes::Bytes::from_static(b"{}"), ttl)
        .await
        .expect("claim")
        .expect("the id is free");
    // Lateness is time passing: nothing else to wait for.
    tokio::time::sleep(late * 2).await;
    let ask = |late| observer.disconnected(&ids, ttl, late);
    assert!(
        ask(late).await.expect("ask").is_empty(),
        "late, but its named connection is open"
    );
    drop(member);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let gone = ask(late).await.expect("ask");
        if gone == ids {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "a member whose connection closed is reported: {gone:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        ask(ttl).await.expect("ask").is_empty(),
        "a member on time is not reported, connection or not"
    );
    let _ = wsring_cluster_redis::purge_namespace(&h.url(&h.addr()), &ns).await;
}
