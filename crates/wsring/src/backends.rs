//! Backend selection by URL: each compiled-in backend crate exports one
//! [`Backend`] that says which URLs it takes and builds its parts; this
//! module only holds the feature-gated list of them. The URLs: `redis://` and `nats://` registries;
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
use wsring_cluster::backend::{Backend, Part};
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

/// The backends compiled into this binary, one per cargo feature; the first
/// that accepts a URL and serves the part asked for is used.
const BACKENDS: &[&dyn Backend] = &[
    #[cfg(feature = "redis")]
    &wsring_cluster_redis::RedisBackend,
    #[cfg(feature = "nats")]
    &wsring_cluster_nats::NatsBackend,
    #[cfg(feature = "amqp")]
    &wsring_cluster_amqp::AmqpBackend,
];

/// Every backend wsring has, compiled in or not: its cargo feature, the URL
/// prefixes it takes and whether it stores anything (serves more than the
/// broker). Only for the error naming the feature a URL needs, since a
/// backend left out of the build cannot say which URLs it would take.
const KNOWN: &[(&str, &[&str], bool)] = &[
    (
        "redis",
        &["redis://", "rediss://", "redis-cluster://"],
        true,
    ),
    ("nats", &["nats://", "tls://"], true),
    ("amqp", &["amqp://", "amqps://"], false),
];

/// The compiled-in backend for `part` at `url`, or the error saying why
/// there is none: an unknown scheme, or a backend left out of the build.
fn backend(url: &str, part: Part) -> Result<&'static dyn Backend, ClusterError> {
    if let Some(b) = wsring_cluster::backend::find(BACKENDS, url, part) {
        return Ok(b);
    }
    let what = if part == Part::Broker {
        "broker"
    } else {
        "registry"
    };
    let missing = KNOWN.iter().find(|(_, prefixes, stores)| {
        (*stores || part == Part::Broker) && prefixes.iter().any(|p| url.starts_with(p))
    });
    Err(match missing {
        Some((feature, _, _)) => ClusterError::InvalidUrl {
            url: url.to_owned(),
            reason: format!("this wsring was built without the `{feature}` feature"),
        },
        None => ClusterError::InvalidUrl {
            url: url.to_owned(),
            reason: format!("unsupported {what} URL scheme (use {})", schemes(what)),
        },
    })
}

fn schemes(what: &str) -> &'static str {
    if what == "broker" {
        "redis://, rediss://, redis-cluster:// (Redis Cluster), nats://, tls:// (NATS over TLS), amqp:// or amqps://"
    } else {
        "redis://, rediss://, redis-cluster:// (Redis Cluster), nats:// or tls:// (NATS over TLS)"
    }
}

/// Connects the membership registry.
pub async fn registry(
    url: &str,
    namespace: &str,
    ttl: Duration,
) -> Result<Arc<dyn Registry>, ClusterError> {
    backend(url, Part::Registry)?
        .registry(url, namespace, ttl)
        .await
}

/// Connects node `node`'s broker.
pub async fn broker(
    url: &str,
    namespace: &str,
    node: &str,
) -> Result<(Arc<dyn Broker>, Inbox), ClusterError> {
    backend(url, Part::Broker)?
        .broker(url, namespace, node)
        .await
}

/// Connects the durable stream store (on the registry's engine).
pub async fn streams(
    registry_url: &str,
    namespace: &str,
    retention: Retention,
) -> Result<Arc<dyn StreamStore>, ClusterError> {
    backend(registry_url, Part::Streams)?
        .streams(registry_url, namespace, retention)
        .await
}

/// Connects the durable webhook queue store (on the registry's engine).
pub async fn hook_queue(
    registry_url: &str,
    namespace: &str,
) -> Result<Arc<dyn HookQueue>, ClusterError> {
    backend(registry_url, Part::HookQueue)?
        .hook_queue(registry_url, namespace)
        .await
}

/// Connects the server-side room store (on the registry's engine).
pub async fn server_rooms(
    registry_url: &str,
    namespace: &str,
) -> Result<Arc<dyn ServerRooms>, ClusterError> {
    backend(registry_url, Part::ServerRooms)?
        .server_rooms(registry_url, namespace)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_scheme_lists_the_schemes_that_work() {
        let Err(e) = backend("http://x", Part::Registry) else {
            panic!("http:// found a registry backend");
        };
        assert!(
            e.to_string().contains("unsupported registry URL scheme"),
            "{e}"
        );
        let Err(e) = backend("http://x", Part::Broker) else {
            panic!("http:// found a broker backend");
        };
        assert!(e.to_string().contains("amqps://"), "{e}");
    }

    #[test]
    fn rabbitmq_is_a_broker_only() {
        let Err(e) = backend("amqp://h", Part::Registry) else {
            panic!("amqp:// found a registry backend");
        };
        assert!(
            e.to_string().contains("unsupported registry URL scheme"),
            "{e}"
        );
        #[cfg(feature = "amqp")]
        assert_eq!(
            backend("amqp://h", Part::Broker).map(|b| b.name()).ok(),
            Some("amqp")
        );
    }

    #[test]
    fn each_url_finds_its_backend() {
        let cases = [
            ("redis://h:1", Part::Streams, "redis"),
            ("rediss://h:1", Part::Registry, "redis"),
            ("redis-cluster://h:1,h:2", Part::Broker, "redis"),
            ("nats://h:1", Part::ServerRooms, "nats"),
            ("tls://h:1", Part::Registry, "nats"),
            ("amqps://h", Part::Broker, "amqp"),
        ];
        for (url, part, feature) in cases {
            match backend(url, part) {
                Ok(b) => assert_eq!(b.name(), feature, "{url}"),
                Err(e) => assert!(
                    e.to_string()
                        .contains(&format!("without the `{feature}` feature")),
                    "{url}: {e}"
                ),
            }
        }
    }
}
