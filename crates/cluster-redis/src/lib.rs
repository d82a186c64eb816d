//! Redis backend for wsring: all three cluster traits on one Redis.
//!
//! * [`registry`]: the membership document in a hash changed by a Lua
//!   compare-and-set that also publishes a change notification; heartbeats
//!   are plain keys with a millisecond expiry (`SET … PX`), so Redis's own
//!   expiry is the failure detector.
//! * [`broker`]: pub/sub channels per node, per room and for the cluster, on a
//!   dedicated subscriber connection with its own reconnect-and-resubscribe
//!   loop; publishes go over an auto-reconnecting multiplexed connection.
//! * [`streams`]: Redis Streams with wsring's own per-stream seq as the entry
//!   id, trimmed by length and age inside Lua scripts.
//!
//! Key layout is in [`keys`]; every key and channel starts with the
//! namespace, and keys carry a `{…}` hash tag so that each script touches a
//! single cluster slot.
//!
//! Every connection announces itself with `CLIENT SETINFO LIB-NAME
//! wsring:<namespace>:<node>:<role>`, so `CLIENT LIST` shows which node owns
//! which connection (and tests can `CLIENT KILL` exactly one).

pub mod broker;
pub mod keys;
pub mod registry;
pub mod streams;

use std::sync::Arc;
use std::time::Duration;
use wsring_cluster::{Broker, ClusterError, Inbox, Link, Registry, Retention, StreamStore};

pub use keys::Keys;

/// Start-up connection timeout: fail fast rather than hang.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Connects a registry in `namespace`. `ttl` is unused here (each heartbeat
/// carries its own expiry) but kept for symmetry with other backends.
pub async fn connect_registry(
    url: &str,
    namespace: &str,
    _ttl: Duration,
) -> Result<Arc<dyn Registry>, ClusterError> {
    let keys = Keys::new(namespace)?;
    let client = open(url, namespace, "registry", "registry")?;
    let at = shown_url(&client);
    Ok(Arc::new(
        registry::RedisRegistry::connect(client, keys)
            .await
            .map_err(|e| at_url(&at, e))?,
    ))
}

/// Connects node `node`'s broker in `namespace`.
pub async fn connect_broker(
    url: &str,
    namespace: &str,
    node: &str,
) -> Result<(Arc<dyn Broker>, Inbox), ClusterError> {
    let keys = Keys::new(namespace)?;
    let client = open(url, namespace, node, "broker")?;
    let at = shown_url(&client);
    let (b, inbox) = broker::RedisBroker::connect(client, keys)
        .await
        .map_err(|e| at_url(&at, e))?;
    Ok((b, inbox))
}

/// Connects the durable stream store in `namespace`.
pub async fn connect_streams(
    url: &str,
    namespace: &str,
    retention: Retention,
) -> Result<Arc<dyn StreamStore>, ClusterError> {
    let keys = Keys::new(namespace)?;
    let client = open(url, namespace, "streams", "streams")?;
    let at = shown_url(&client);
    Ok(Arc::new(
        streams::RedisStreams::connect(client, keys, retention)
            .await
            .map_err(|e| at_url(&at, e))?,
    ))
}

/// Opens a client whose connections identify themselves in `CLIENT LIST`.
/// `rediss://` uses TLS, verified against the system roots or the CA named
/// by `cacertfile` ([`wsring_cluster::tls`]).
fn open(url: &str, namespace: &str, who: &str, role: &str) -> Result<redis::Client, ClusterError> {
    let invalid = |reason: String| ClusterError::InvalidUrl {
        url: url.to_owned(),
        reason,
    };
    if !(url.starts_with("redis://")
        || url.starts_with("rediss://")
        || url.starts_with("redis+unix://")
        || url.starts_with("unix://"))
    {
        return Err(invalid(
            "expected redis://host:port[/db] or rediss://host:port[/db] (TLS)".into(),
        ));
    }
    let parsed = wsring_cluster::tls::BackendUrl::parse(url);
    let ca = parsed.ca_pem(url)?;
    let client = redis::Client::open(parsed.url.as_str()).map_err(|e| invalid(e.to_string()))?;
    let info = client.get_connection_info().clone();
    let settings = info.redis_settings().clone().set_lib_name(
        format!("wsring:{namespace}:{who}:{role}"),
        env!("CARGO_PKG_VERSION"),
    );
    let info = info.set_redis_settings(settings);
    match ca {
        Some(root_cert) => redis::Client::build_with_tls(
            info,
            redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(root_cert),
            },
        ),
        None => redis::Client::open(info),
    }
    .map_err(|e| invalid(e.to_string()))
}

/// The server a client talks to, as `redis://host:port/db`, without the
/// credentials a URL may carry (this ends up in error messages and logs).
fn shown_url(client: &redis::Client) -> String {
    let info = client.get_connection_info();
    match info.addr() {
        redis::ConnectionAddr::Unix(path) => format!("redis+unix://{}", path.display()),
        addr => {
            let scheme = match addr {
                redis::ConnectionAddr::TcpTls { .. } => "rediss",
                _ => "redis",
            };
            match info.redis_settings().db() {
                0 => format!("{scheme}://{addr}/"),
                db => format!("{scheme}://{addr}/{db}"),
            }
        }
    }
}

/// Rewrites a start-up failure so that it names the server, in one line,
/// and says plainly when the other end does not speak Redis at all (the
/// client library reports that as a multi-line parse error).
fn at_url(url: &str, e: ClusterError) -> ClusterError {
    let one_line = |e: &dyn std::fmt::Display| {
        e.to_string()
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join(" ")
    };
    match e {
        ClusterError::Unavailable(cause) | ClusterError::Backend(cause)
            if cause
                .downcast_ref::<redis::RedisError>()
                .is_some_and(|r| r.kind() == redis::ErrorKind::Parse) =>
        {
            ClusterError::backend(format!(
                "not a Redis server at {url} (it answered something that is not the Redis protocol)"
            ))
        }
        ClusterError::Unavailable(cause) => ClusterError::unavailable(format!(
            "cannot connect to Redis at {url}: {}",
            one_line(&cause)
        )),
        ClusterError::Backend(cause) => {
            ClusterError::backend(format!("Redis at {url}: {}", one_line(&cause)))
        }
        other => other,
    }
}

/// Classifies a Redis error: connection-level problems are transient.
pub(crate) fn map_err(e: redis::RedisError) -> ClusterError {
    if e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() || e.is_timeout() {
        ClusterError::unavailable(e)
    } else {
        ClusterError::backend(e)
    }
}

/// Bound on one command round trip on a multiplexed connection, including
/// the connection manager's own reconnect attempt.
pub const OP_TIMEOUT: Duration = Duration::from_secs(5);

/// A multiplexed, auto-reconnecting connection of one role, with its
/// [`Link`]: every command through it is bounded by [`OP_TIMEOUT`] and its
/// connection-level failures count as reconnects.
#[derive(Clone)]
pub(crate) struct Conn {
    manager: redis::aio::ConnectionManager,
    link: Arc<Link>,
}

impl Conn {
    /// Connects, failing fast if Redis is unreachable. `kind` labels the
    /// reconnect counter (`registry`, `streams`, `publisher`).
    pub(crate) async fn connect(
        client: &redis::Client,
        kind: &'static str,
    ) -> Result<Conn, ClusterError> {
        let manager = at_startup(
            kind,
            client.get_connection_manager_with_config(registry::manager_config()),
        )
        .await?;
        Ok(Conn {
            manager,
            link: Arc::new(Link::new("redis", kind)),
        })
    }

    /// Runs one command (`op` gets its own handle on the connection).
    pub(crate) async fn call<T, F>(
        &self,
        what: &str,
        op: impl FnOnce(redis::aio::ConnectionManager) -> F,
    ) -> Result<T, ClusterError>
    where
        F: std::future::Future<Output = redis::RedisResult<T>>,
    {
        let r = match tokio::time::timeout(OP_TIMEOUT, op(self.manager.clone())).await {
            Ok(r) => r.map_err(map_err),
            Err(_) => Err(ClusterError::unavailable(format!(
                "redis {what}: no answer within {OP_TIMEOUT:?}"
            ))),
        };
        self.link.track(r)
    }
}

/// Runs `fut` with the start-up timeout.
pub(crate) async fn at_startup<T>(
    what: &str,
    fut: impl std::future::Future<Output = redis::RedisResult<T>>,
) -> Result<T, ClusterError> {
    match tokio::time::timeout(CONNECT_TIMEOUT, fut).await {
        Ok(r) => r.map_err(map_err),
        Err(_) => Err(ClusterError::unavailable(format!(
            "{what}: no answer from Redis within {CONNECT_TIMEOUT:?}"
        ))),
    }
}

/// Deletes every key of `namespace` (decommissioning a cluster, or cleaning
/// up after tests). Channels need no cleanup. Returns the number of keys
/// deleted.
pub async fn purge_namespace(url: &str, namespace: &str) -> Result<u64, ClusterError> {
    Keys::new(namespace)?;
    let client = open(url, namespace, "admin", "purge")?;
    let mut conn = at_startup("purge", client.get_multiplexed_async_connection()).await?;
    let mut deleted = 0u64;
    // Registry keys are tagged `{ns}`, stream keys `{ns:…}`.
    for pattern in [format!("{{{namespace}}}:*"), format!("{{{namespace}:*")] {
        let mut cursor: u64 = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(500)
                .query_async(&mut conn)
                .await
                .map_err(map_err)?;
            if !keys.is_empty() {
                deleted += redis::cmd("UNLINK")
                    .arg(&keys)
                    .query_async::<u64>(&mut conn)
                    .await
                    .map_err(map_err)?;
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
    }
    Ok(deleted)
}
