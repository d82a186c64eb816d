//! Backend selection by URL scheme: `redis://` and `nats://` registries;
//! `redis://`, `nats://` and `amqp://` brokers; `redis-cluster://h:p,h:p,…`
//! (a Redis Cluster, by its seed nodes) and `nats://h:p,nats://h:p,…` (the
//! servers of a NATS cluster) for either (each also over TLS:
//! `rediss://`, `tls://`, `amqps://`, with an optional `cacertfile=` query
//! parameter naming a private CA); durable streams and server-side rooms
//! from the registry's engine (RabbitMQ stores nothing, so with an
//! `amqp://` broker both live in the Redis or NATS used as registry). Each
//! backend is a cargo feature (all on by default); a URL whose feature is not
//! compiled in is a clear error, not a panic.

use std::sync::Arc;
use std::time::Duration;
use wsring_cluster::{
    Broker, ClusterError, HookQueue, Inbox, Registry, Retention, ServerRooms, StreamStore,
};

/// A start-up failure of the backend behind `flags` (e.g. `--registry or
/// --cluster`), as one line that ends with what to do about it.
pub fn startup_error(what: &str, flags: &str, e: &ClusterError) -> String {
    let hint = match e {
        ClusterError::Unavailable(_) => {
            format!("check that the server is running and reachable, or correct {flags}")
        }
        ClusterError::Backend(_) => format!("check that {flags} points at the right server"),
        ClusterError::InvalidUrl { .. } => format!("correct {flags}"),
        ClusterError::NodeIdTaken(_) => "choose another --id, or stop the node that has it".into(),
        ClusterError::InvalidNamespace(_) => "correct --namespace".into(),
        _ => String::new(),
    };
    if hint.is_empty() {
        format!("{what}: {e}")
    } else {
        format!("{what}: {e}; {hint}")
    }
}

/// `redis://`, `rediss://` (TLS) or `redis-cluster://` (Redis Cluster).
fn is_redis(url: &str) -> bool {
    url.starts_with("redis://")
        || url.starts_with("rediss://")
        || url.starts_with("redis-cluster://")
}

fn unsupported(url: &str, what: &str) -> ClusterError {
    ClusterError::InvalidUrl {
        url: url.to_owned(),
        reason: format!("unsupported {what} URL scheme (use {})", schemes(what)),
    }
}

fn schemes(what: &str) -> &'static str {
    if what == "broker" {
        "redis://, rediss://, redis-cluster:// (Redis Cluster), nats://, tls:// (NATS over TLS), amqp:// or amqps://"
    } else {
        "redis://, rediss://, redis-cluster:// (Redis Cluster), nats:// or tls:// (NATS over TLS)"
    }
}

#[cfg_attr(
    all(feature = "redis", feature = "nats", feature = "amqp"),
    allow(dead_code)
)]
fn not_built(url: &str, feature: &str) -> ClusterError {
    ClusterError::InvalidUrl {
        url: url.to_owned(),
        reason: format!("this wsring was built without the `{feature}` feature"),
    }
}

/// Connects the membership registry.
#[allow(unused_variables)]
pub async fn registry(
    url: &str,
    namespace: &str,
    ttl: Duration,
) -> Result<Arc<dyn Registry>, ClusterError> {
    if is_redis(url) {
        #[cfg(feature = "redis")]
        return wsring_cluster_redis::connect_registry(url, namespace, ttl).await;
        #[cfg(not(feature = "redis"))]
        return Err(not_built(url, "redis"));
    }
    if url.starts_with("nats://") || url.starts_with("tls://") {
        #[cfg(feature = "nats")]
        return wsring_cluster_nats::connect_registry(url, namespace, ttl).await;
        #[cfg(not(feature = "nats"))]
        return Err(not_built(url, "nats"));
    }
    Err(unsupported(url, "registry"))
}

/// Connects node `node`'s broker.
#[allow(unused_variables)]
pub async fn broker(
    url: &str,
    namespace: &str,
    node: &str,
) -> Result<(Arc<dyn Broker>, Inbox), ClusterError> {
    if is_redis(url) {
        #[cfg(feature = "redis")]
        return wsring_cluster_redis::connect_broker(url, namespace, node).await;
        #[cfg(not(feature = "redis"))]
        return Err(not_built(url, "redis"));
    }
    if url.starts_with("nats://") || url.starts_with("tls://") {
        #[cfg(feature = "nats")]
        return wsring_cluster_nats::connect_broker(url, namespace, node).await;
        #[cfg(not(feature = "nats"))]
        return Err(not_built(url, "nats"));
    }
    if url.starts_with("amqp://") || url.starts_with("amqps://") {
        #[cfg(feature = "amqp")]
        return wsring_cluster_amqp::connect_broker(url, namespace, node).await;
        #[cfg(not(feature = "amqp"))]
        return Err(not_built(url, "amqp"));
    }
    Err(unsupported(url, "broker"))
}

/// Connects the durable stream store (on the registry's engine).
#[allow(unused_variables)]
pub async fn streams(
    registry_url: &str,
    namespace: &str,
    retention: Retention,
) -> Result<Arc<dyn StreamStore>, ClusterError> {
    if is_redis(registry_url) {
        #[cfg(feature = "redis")]
        return wsring_cluster_redis::connect_streams(registry_url, namespace, retention).await;
        #[cfg(not(feature = "redis"))]
        return Err(not_built(registry_url, "redis"));
    }
    if registry_url.starts_with("nats://") || registry_url.starts_with("tls://") {
        #[cfg(feature = "nats")]
        return wsring_cluster_nats::connect_streams(registry_url, namespace, retention).await;
        #[cfg(not(feature = "nats"))]
        return Err(not_built(registry_url, "nats"));
    }
    Err(unsupported(registry_url, "registry"))
}

/// Connects the durable webhook queue store (on the registry's engine).
#[allow(unused_variables)]
pub async fn hook_queue(
    registry_url: &str,
    namespace: &str,
) -> Result<Arc<dyn HookQueue>, ClusterError> {
    if is_redis(registry_url) {
        #[cfg(feature = "redis")]
        return wsring_cluster_redis::connect_hook_queue(registry_url, namespace).await;
        #[cfg(not(feature = "redis"))]
        return Err(not_built(registry_url, "redis"));
    }
    if registry_url.starts_with("nats://") || registry_url.starts_with("tls://") {
        #[cfg(feature = "nats")]
        return wsring_cluster_nats::connect_hook_queue(registry_url, namespace).await;
        #[cfg(not(feature = "nats"))]
        return Err(not_built(registry_url, "nats"));
    }
    Err(unsupported(registry_url, "registry"))
}

/// Connects the server-side room store (on the registry's engine).
#[allow(unused_variables)]
pub async fn server_rooms(
    registry_url: &str,
    namespace: &str,
) -> Result<Arc<dyn ServerRooms>, ClusterError> {
    if is_redis(registry_url) {
        #[cfg(feature = "redis")]
        return wsring_cluster_redis::connect_server_rooms(registry_url, namespace).await;
        #[cfg(not(feature = "redis"))]
        return Err(not_built(registry_url, "redis"));
    }
    if registry_url.starts_with("nats://") || registry_url.starts_with("tls://") {
        #[cfg(feature = "nats")]
        return wsring_cluster_nats::connect_server_rooms(registry_url, namespace).await;
        #[cfg(not(feature = "nats"))]
        return Err(not_built(registry_url, "nats"));
    }
    Err(unsupported(registry_url, "registry"))
}
