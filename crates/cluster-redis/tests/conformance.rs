//! The backend conformance suite against the Redis on 127.0.0.1:6379.

use async_trait::async_trait;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use wsring_cluster::conformance::{Harness, skip_or_fail};
use wsring_cluster::{Broker, Inbox, Registry, Retention, StreamStore};

const ADDR: &str = "127.0.0.1:6379";

struct Redis;

fn url(addr: &str) -> String {
    format!("redis://{addr}/")
}

#[async_trait]
impl Harness for Redis {
    async fn registry(&self, ns: &str, ttl: Duration) -> Option<Arc<dyn Registry>> {
        Some(
            wsring_cluster_redis::connect_registry(&url(ADDR), ns, ttl)
                .await
                .expect("registry"),
        )
    }
    async fn broker(&self, ns: &str, node: &str) -> Option<(Arc<dyn Broker>, Inbox)> {
        Some(
            wsring_cluster_redis::connect_broker(&url(ADDR), ns, node)
                .await
                .expect("broker"),
        )
    }
    async fn streams(&self, ns: &str, retention: Retention) -> Option<Arc<dyn StreamStore>> {
        Some(
            wsring_cluster_redis::connect_streams(&url(ADDR), ns, retention)
                .await
                .expect("streams"),
        )
    }
    fn server_addr(&self) -> Option<SocketAddr> {
        ADDR.parse().ok()
    }
    async fn broker_at(
        &self,
        addr: SocketAddr,
        ns: &str,
        node: &str,
    ) -> Option<(Arc<dyn Broker>, Inbox)> {
        Some(
            wsring_cluster_redis::connect_broker(&url(&addr.to_string()), ns, node)
                .await
                .expect("broker"),
        )
    }
}

async fn redis() -> Option<Redis> {
    match tokio::net::TcpStream::connect(ADDR).await {
        Ok(_) => Some(Redis),
        Err(e) => {
            skip_or_fail(&format!("Redis not reachable at {ADDR}: {e}"));
            None
        }
    }
}

wsring_cluster::conformance_suite!(redis());
