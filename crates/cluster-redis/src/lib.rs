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
//! * [`rooms`]: server-side room memberships, one set per user.
//! * [`hooks`]: durable webhook queues, one Redis Stream per queue.
//!
//! Key layout is in [`keys`]; every key and channel starts with the
//! namespace, and keys carry a `{…}` hash tag so that each script touches a
//! single cluster slot.
//!
//! A `redis-cluster://host:port,host:port,…` URL selects Redis Cluster mode
//! for all three (see [`cluster`] for where each key and channel lives, and
//! [`cluster_broker`] for the broker on sharded pub/sub).
//!
//! Every single-server connection announces itself with `CLIENT SETINFO LIB-NAME
//! wsring:<namespace>:<node>:<role>`, so `CLIENT LIST` shows which node owns
//! which connection (and tests can `CLIENT KILL` exactly one).

pub mod broker;
pub mod cluster;
pub mod cluster_broker;
pub mod hooks;
pub mod keys;
pub mod registry;
pub mod rooms;
pub mod streams;

use std::sync::Arc;
use std::time::{Duration, Instant};
use wsring_cluster::{
    Backend, Broker, ClusterError, HookQueue, Inbox, Link, Registry, Retention, ServerRooms,
    StreamStore, lock,
};

pub use keys::Keys;

/// Start-up connection timeout: fail fast rather than hang.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The Redis backend, as the binary picks it: `redis://`, `rediss://` (TLS)
/// and `redis-cluster://` (a Redis Cluster by its seed nodes) URLs, serving
/// every part.
pub struct RedisBackend;

#[async_trait::async_trait]
impl Backend for RedisBackend {
    fn name(&self) -> &'static str {
        "redis"
    }

    fn accepts(&self, url: &str) -> bool {
        ["redis://", "rediss://", "redis-cluster://"]
            .iter()
            .any(|scheme| url.starts_with(scheme))
    }

    /// Each heartbeat carries its own expiry, so the registry needs no TTL.
    async fn registry(
        &self,
        url: &str,
        namespace: &str,
        _ttl: Duration,
    ) -> Result<Arc<dyn Registry>, ClusterError> {
        connect_registry(url, namespace).await
    }

    async fn broker(
        &self,
        url: &str,
        namespace: &str,
        node: &str,
    ) -> Result<(Arc<dyn Broker>, Inbox), ClusterError> {
        connect_broker(url, namespace, node).await
    }

    async fn streams(
        &self,
        url: &str,
        namespace: &str,
        retention: Retention,
    ) -> Result<Arc<dyn StreamStore>, ClusterError> {
        connect_streams(url, namespace, retention).await
    }

    async fn server_rooms(
        &self,
        url: &str,
        namespace: &str,
    ) -> Result<Arc<dyn ServerRooms>, ClusterError> {
        connect_server_rooms(url, namespace).await
    }

    async fn hook_queue(
        &self,
        url: &str,
        namespace: &str,
    ) -> Result<Arc<dyn HookQueue>, ClusterError> {
        connect_hook_queue(url, namespace).await
    }
}

/// Connects a registry in `namespace`. It takes no heartbeat TTL: each
/// heartbeat carries its own expiry (`SET … PX`).
pub async fn connect_registry(
    url: &str,
    namespace: &str,
) -> Result<Arc<dyn Registry>, ClusterError> {
    let keys = Keys::new(namespace)?;
    if cluster::is_cluster_url(url) {
        let seeds = cluster::parse(url)?;
        let at = seeds.display();
        let conn = Conn::connect_cluster(&seeds, "registry")
            .await
            .map_err(|e| at_url(&at, e))?;
        let watch = registry::WatchSource::Cluster(seeds);
        return Ok(Arc::new(registry::RedisRegistry::with_conn(
            conn, watch, keys,
        )));
    }
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
    if cluster::is_cluster_url(url) {
        let seeds = cluster::parse(url)?;
        let at = seeds.display();
        return cluster_broker::ClusterBroker::connect(&seeds, keys)
            .await
            .map_err(|e| at_url(&at, e));
    }
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
    if cluster::is_cluster_url(url) {
        let seeds = cluster::parse(url)?;
        let at = seeds.display();
        let conn = Conn::connect_cluster(&seeds, "streams")
            .await
            .map_err(|e| at_url(&at, e))?;
        return Ok(Arc::new(streams::RedisStreams::with_conn(
            conn, keys, retention,
        )));
    }
    let client = open(url, namespace, "streams", "streams")?;
    let at = shown_url(&client);
    Ok(Arc::new(
        streams::RedisStreams::connect(client, keys, retention)
            .await
            .map_err(|e| at_url(&at, e))?,
    ))
}

/// Connects the durable webhook queue store in `namespace`.
pub async fn connect_hook_queue(
    url: &str,
    namespace: &str,
) -> Result<Arc<dyn HookQueue>, ClusterError> {
    let keys = Keys::new(namespace)?;
    if cluster::is_cluster_url(url) {
        let seeds = cluster::parse(url)?;
        let at = seeds.display();
        let conn = Conn::connect_cluster(&seeds, "hooks")
            .await
            .map_err(|e| at_url(&at, e))?;
        return Ok(Arc::new(hooks::RedisHookQueue::with_conn(conn, keys)));
    }
    let client = open(url, namespace, "hooks", "hooks")?;
    let at = shown_url(&client);
    Ok(Arc::new(
        hooks::RedisHookQueue::connect(client, keys)
            .await
            .map_err(|e| at_url(&at, e))?,
    ))
}

/// Connects the server-side room store in `namespace`.
pub async fn connect_server_rooms(
    url: &str,
    namespace: &str,
) -> Result<Arc<dyn ServerRooms>, ClusterError> {
    let keys = Keys::new(namespace)?;
    if cluster::is_cluster_url(url) {
        let seeds = cluster::parse(url)?;
        let at = seeds.display();
        let conn = Conn::connect_cluster(&seeds, "rooms")
            .await
            .map_err(|e| at_url(&at, e))?;
        return Ok(Arc::new(rooms::RedisServerRooms::with_conn(conn, keys)));
    }
    let client = open(url, namespace, "rooms", "rooms")?;
    let at = shown_url(&client);
    Ok(Arc::new(
        rooms::RedisServerRooms::connect(client, keys)
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
            "expected redis://host:port[/db], rediss://host:port[/db] (TLS) or redis-cluster://host:port,host:port,... (Redis Cluster)".into(),
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

/// Classifies a Redis error: connection-level problems are transient, and so
/// are a Redis Cluster's own (a slot without a primary during a failover, a
/// redirection the client could not follow in time, no connection to the
/// slot's owner yet).
pub(crate) fn map_err(e: redis::RedisError) -> ClusterError {
    let cluster_transient = e.is_cluster_error()
        || matches!(
            e.kind(),
            redis::ErrorKind::ClusterConnectionNotFound
                | redis::ErrorKind::Server(redis::ServerErrorKind::MasterDown)
        );
    if e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        || cluster_transient
    {
        ClusterError::unavailable(e)
    } else {
        ClusterError::backend(e)
    }
}

/// How long after finding a primary without replica every append asks
/// before waiting (`INFO replication` first).
const DEGRADED_FOR: Duration = Duration::from_secs(10);

/// How long a durable append on a Redis Cluster waits for a replica to
/// acknowledge it before reporting failure (the caller retries, and its
/// dedup key makes the retry idempotent).
pub const REPLICATION_WAIT: Duration = Duration::from_secs(1);

/// Bound on one command round trip on a multiplexed connection, including
/// the connection manager's own reconnect attempt.
pub const OP_TIMEOUT: Duration = Duration::from_secs(5);

/// A connection to one Redis server or to a Redis Cluster: both reconnect by
/// themselves, and the cluster one routes each command to the owner of its
/// key's slot, following redirections and failovers.
#[derive(Clone)]
pub(crate) enum AnyConn {
    /// One server.
    Single(redis::aio::ConnectionManager),
    /// A Redis Cluster.
    Cluster(redis::cluster_async::ClusterConnection),
}

impl redis::aio::ConnectionLike for AnyConn {
    fn req_packed_command<'a>(
        &'a mut self,
        cmd: &'a redis::Cmd,
    ) -> redis::RedisFuture<'a, redis::Value> {
        match self {
            AnyConn::Single(c) => c.req_packed_command(cmd),
            AnyConn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        match self {
            AnyConn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            AnyConn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            AnyConn::Single(c) => c.get_db(),
            AnyConn::Cluster(c) => c.get_db(),
        }
    }
}

/// A multiplexed, auto-reconnecting connection of one role, with its
/// [`Link`]: every command through it is bounded by [`OP_TIMEOUT`] and its
/// connection-level failures count as reconnects.
#[derive(Clone)]
pub(crate) struct Conn {
    manager: AnyConn,
    link: Arc<Link>,
    /// Cluster slots whose primary was last seen without a replica (at most
    /// one entry per slot, so bounded).
    unreplicated: Arc<std::sync::Mutex<std::collections::HashSet<redis::cluster_routing::Slot>>>,
    /// Until when every append asks about replicas before waiting, after a
    /// primary without replica was found.
    degraded_until: Arc<std::sync::Mutex<Option<Instant>>>,
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
            manager: AnyConn::Single(manager),
            link: Arc::new(Link::new("redis", kind)),
            unreplicated: Arc::default(),
            degraded_until: Arc::default(),
        })
    }

    /// Connects to a Redis Cluster through `seeds`, failing fast if none
    /// answers.
    pub(crate) async fn connect_cluster(
        seeds: &cluster::Seeds,
        kind: &'static str,
    ) -> Result<Conn, ClusterError> {
        let client = cluster::client(seeds, cluster::NO_PUSH)?;
        let conn = at_startup(kind, client.get_async_connection()).await?;
        Ok(Conn {
            manager: AnyConn::Cluster(conn),
            link: Arc::new(Link::new("redis", kind)),
            unreplicated: Arc::default(),
            degraded_until: Arc::default(),
        })
    }

    /// On a Redis Cluster, waits until the write just made to `key`'s slot
    /// reached a replica (`WAIT 1`, on the same node connection as the
    /// write), so a failover cannot lose it once acknowledged. A shard
    /// without any connected replica (after its replica was promoted, until
    /// a new one joins) has nothing to wait for: such slots are remembered,
    /// and for them a cheap `INFO replication` comes first instead of a
    /// `WAIT` that could only time out. On one server this is a no-op.
    pub(crate) async fn wait_replicated(&self, key: &str) -> Result<(), ClusterError> {
        use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, Slot, SlotAddr};
        let AnyConn::Cluster(conn) = &self.manager else {
            return Ok(());
        };
        let slot = Slot::for_key(key);
        let route = move || {
            RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(Route::with_slot(
                slot,
                SlotAddr::Master,
            )))
        };
        let replicas = || async {
            let mut c = conn.clone();
            let info = self
                .call("INFO replication", |_| async move {
                    let mut info = redis::cmd("INFO");
                    info.arg("replication");
                    let v = c.route_command(info, route()).await?;
                    redis::from_redis_value::<String>(v).map_err(redis::RedisError::from)
                })
                .await?;
            Ok::<_, ClusterError>(
                info.lines()
                    .find_map(|l| l.trim().strip_prefix("connected_slaves:"))
                    .and_then(|n| n.parse::<u32>().ok())
                    .unwrap_or(0),
            )
        };
        let degraded = lock(&self.degraded_until).is_some_and(|t| Instant::now() < t);
        let known_alone = degraded || lock(&self.unreplicated).contains(&slot);
        if known_alone {
            if replicas().await? == 0 {
                return Ok(());
            }
            lock(&self.unreplicated).remove(&slot);
        }
        let mut wait = redis::cmd("WAIT");
        wait.arg(1)
            .arg(u64::try_from(REPLICATION_WAIT.as_millis()).unwrap_or(1000));
        let mut c = conn.clone();
        let acked = self
            .call("WAIT", |_| async move {
                let v = c.route_command(wait, route()).await?;
                redis::from_redis_value::<i64>(v).map_err(redis::RedisError::from)
            })
            .await?;
        if acked >= 1 {
            return Ok(());
        }
        if replicas().await? == 0 {
            lock(&self.unreplicated).insert(slot);
            // Other slots of that primary are alone too: for a while, ask
            // before waiting everywhere, so each does not stall the node
            // connection for a whole `WAIT` in turn.
            *lock(&self.degraded_until) = Some(Instant::now() + DEGRADED_FOR);
            return Ok(());
        }
        Err(ClusterError::unavailable(format!(
            "write to {key} not acknowledged by a replica within {REPLICATION_WAIT:?}"
        )))
    }

    /// Runs one command (`op` gets its own handle on the connection).
    /// Whether this is a connection to one server (not a Redis Cluster).
    pub(crate) fn is_single(&self) -> bool {
        matches!(self.manager, AnyConn::Single(_))
    }

    pub(crate) async fn call<T, F>(
        &self,
        what: &str,
        op: impl FnOnce(AnyConn) -> F,
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
    if cluster::is_cluster_url(url) {
        return purge_cluster_namespace(&cluster::parse(url)?, namespace).await;
    }
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

/// [`purge_namespace`] on a Redis Cluster: `SCAN` runs on each primary in
/// turn (a cursor belongs to one node), and keys are unlinked one by one,
/// since they live in different slots.
async fn purge_cluster_namespace(
    seeds: &cluster::Seeds,
    namespace: &str,
) -> Result<u64, ClusterError> {
    use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
    let client = cluster::client(seeds, cluster::NO_PUSH)?;
    let mut conn = at_startup("purge", client.get_async_connection()).await?;
    let nodes: String = at_startup(
        "purge",
        redis::cmd("CLUSTER").arg("NODES").query_async(&mut conn),
    )
    .await?;
    let primaries: Vec<(String, u16)> = nodes
        .lines()
        .filter_map(|line| {
            let mut f = line.split_whitespace();
            let addr = f.nth(1)?;
            let flags = f.next()?;
            if !flags.split(',').any(|x| x == "master") || flags.contains("fail") {
                return None;
            }
            let (host, port) = addr.split('@').next()?.rsplit_once(':')?;
            Some((host.to_owned(), port.parse().ok()?))
        })
        .collect();
    let mut deleted = 0u64;
    for (host, port) in primaries {
        for pattern in [format!("{{{namespace}}}:*"), format!("{{{namespace}:*")] {
            let mut cursor: u64 = 0;
            loop {
                let mut scan = redis::cmd("SCAN");
                scan.arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(500);
                let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
                    host: host.clone(),
                    port,
                });
                let reply = at_startup("purge SCAN", conn.route_command(scan, routing)).await?;
                let (next, keys): (u64, Vec<String>) =
                    redis::from_redis_value(reply).map_err(ClusterError::backend)?;
                for key in keys {
                    deleted += at_startup(
                        "purge UNLINK",
                        redis::cmd("UNLINK").arg(&key).query_async::<u64>(&mut conn),
                    )
                    .await?;
                }
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
    }
    Ok(deleted)
}
