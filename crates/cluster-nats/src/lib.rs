//! NATS backend for wsring: the membership [`Registry`] on JetStream KV, the
//! [`Broker`] on core NATS pub/sub, and the durable [`StreamStore`] on a
//! JetStream stream. It implements the three traits of [`wsring_cluster`]
//! and passes its shared conformance suite against nats-server 2.9 or later
//! (no per-message TTL, KV per-key TTL or delete markers are needed).
//!
//! The binary calls [`connect_registry`], [`connect_broker`] and
//! [`connect_streams`]; each opens its own NATS connection, so a slow durable
//! append never delays broker traffic.
//!
//! # Layout on the server
//!
//! Every name starts with the namespace (`[A-Za-z0-9_-]{1,64}`), so several
//! clusters or test runs share one server. User-supplied names (node ids,
//! rooms, users) are escaped into single subject tokens / KV keys (see
//! `names.rs`): `.` becomes `~2E` in subjects and `=2E` in KV keys.
//!
//! Every `url` is one server or a comma-separated list of the servers of a
//! NATS cluster (`nats://h1:4222,nats://h2:4222,nats://h3:4222`); the client
//! connects to any of them and fails over to the others. On a cluster the
//! buckets and the stream get `min(3, servers)` replicas, the server count
//! being the larger of the URL list and the servers the cluster advertises.
//!
//! | what | NATS object | details |
//! | --- | --- | --- |
//! | membership document | KV bucket `{ns}_members` (stream `KV_{ns}_members`), key `doc` | history 1, no TTL; KV revision = CAS version |
//! | heartbeats | KV bucket `{ns}_heartbeats` (stream `KV_{ns}_heartbeats`), key = escaped node id | history 1, `max_age` = membership TTL (the failure detector) |
//! | directed delivery | subject `{ns}.node.{node}` | core NATS |
//! | broadcast | subject `{ns}.cluster` | core NATS |
//! | room fan-out | subject `{ns}.room.{room}` | core NATS |
//! | server-side rooms | stream `{ns}_rooms`, subject `{ns}.sr.{user}.{room}` per membership | one message per subject (payload: the room), deleted on leave; no age limit |
//! | durable streams | stream `{ns}_streams`, subjects `{ns}.s.>` | `max_msgs_per_subject = max_len + 1`, `max_age`, duplicate window `min(max_age, 2 min)`, direct get on |
//! | durable webhook queues | stream `{ns}_hooks`, subject `{ns}.hq.{queue}` per queue | no limits (each owner bounds its queue in bytes); purged as delivered |
//! | per-owner usage | KV bucket `{ns}_usage` (stream `KV_{ns}_usage`), key = escaped owner | history 1, `max_age` = retention age + one slot; value: bytes per time slot (`quota.rs`) |
//! | user stream | subject `{ns}.s.u.{user}` | one subject per wsring stream |
//! | room stream | subject `{ns}.s.r.{room}` | |
//! | broker message header | `Wsring-Order: {publisher}.{counter}` | restores each publisher's order across topics |
//! | stream message headers | `Wsring-Seq`, `Wsring-Epoch` | seq 0 with an empty payload is the epoch marker |
//! | dedup | `Nats-Msg-Id: {subject}\|{escaped key}` | |
//!
//! # Modules
//! * `connect`: URL parsing, client options (fail fast at start-up, reconnect
//!   forever after), connection-state logging, error mapping.
//! * `names`: the naming scheme above and header parsing.
//! * `order`: keeping each publisher's broker messages in order across topics.
//! * `setup`: creating or reconciling buckets and streams.
//! * `quota`: each owner's share of the durable store (`max_user_bytes`).
//! * `registry`, `broker`, `streams`, `rooms`: the trait implementations
//!   ([`NatsRegistry`], [`NatsBroker`], [`NatsStreams`],
//!   [`NatsServerRooms`]).

mod broker;
mod connect;
mod hooks;
mod names;
mod order;
mod quota;
mod registry;
mod rooms;
mod setup;
mod streams;

use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use wsring_cluster::{
    Backend, Broker, ClusterError, HookQueue, Inbox, Registry, Retention, ServerRooms, StreamStore,
};

pub use broker::NatsBroker;
pub use hooks::NatsHookQueue;
pub use registry::NatsRegistry;
pub use rooms::NatsServerRooms;
pub use streams::NatsStreams;

use connect::Role;

/// The NATS backend, as the binary picks it: `nats://` and `tls://` (NATS
/// over TLS) URLs, one server or a comma-separated cluster, serving every
/// part.
pub struct NatsBackend;

#[async_trait::async_trait]
impl Backend for NatsBackend {
    fn name(&self) -> &'static str {
        "nats"
    }

    fn accepts(&self, url: &str) -> bool {
        url.starts_with("nats://") || url.starts_with("tls://")
    }

    async fn registry(
        &self,
        url: &str,
        namespace: &str,
        ttl: Duration,
    ) -> Result<Arc<dyn Registry>, ClusterError> {
        connect_registry(url, namespace, ttl).await
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

/// Connects the membership registry of `namespace` at `url`
/// (`nats://[user:pass@]host:port`, or a comma-separated list of the servers
/// of a NATS cluster), with heartbeat TTL `ttl`.
///
/// On a cluster of three or more servers the buckets are created with three
/// replicas (R3), so they survive the loss of a server; see
/// [`connect`](crate::connect) for how the cluster size is found.
///
/// Creates the two KV buckets if needed; an existing heartbeats bucket with
/// another TTL is updated to `ttl`. Fails fast (within about 5 s) when the
/// server is unreachable; afterwards the connection reconnects by itself.
pub async fn connect_registry(
    url: &str,
    namespace: &str,
    ttl: Duration,
) -> Result<Arc<dyn Registry>, ClusterError> {
    let (client, servers) = connect::connect(url, role("registry", namespace, None), None).await?;
    let replicas = connect::replicas(&client, servers);
    Ok(Arc::new(
        NatsRegistry::open(client, namespace, ttl, replicas).await?,
    ))
}

/// Connects node `node`'s broker connection in `namespace` at `url`, and
/// returns it with its inbox.
///
/// The inbox receives messages of subscribed topics and
/// [`BrokerEvent::Disconnected`](wsring_cluster::BrokerEvent::Disconnected) /
/// [`BrokerEvent::Resubscribed`](wsring_cluster::BrokerEvent::Resubscribed)
/// around reconnects; it ends after [`Broker::close`].
pub async fn connect_broker(
    url: &str,
    namespace: &str,
    node: &str,
) -> Result<(Arc<dyn Broker>, Inbox), ClusterError> {
    let (tx, rx) = mpsc::unbounded_channel();
    let (client, _) =
        connect::connect(url, role("broker", namespace, Some(node)), Some(tx)).await?;
    let (broker, inbox) = NatsBroker::new(client, namespace, node, rx);
    Ok((Arc::new(broker), inbox))
}

/// Connects the durable stream store of `namespace` at `url`, with
/// `retention` applied to every stream.
///
/// Creates the namespace's JetStream stream if needed (three replicas on a
/// cluster of three or more servers); an existing one with other limits is
/// updated to `retention`.
pub async fn connect_streams(
    url: &str,
    namespace: &str,
    retention: Retention,
) -> Result<Arc<dyn StreamStore>, ClusterError> {
    let (client, servers) = connect::connect(url, role("streams", namespace, None), None).await?;
    let replicas = connect::replicas(&client, servers);
    Ok(Arc::new(
        NatsStreams::open(client, namespace, retention, replicas).await?,
    ))
}

/// Connects the server-side room store of `namespace` at `url`, creating
/// its JetStream stream if needed (three replicas on a cluster of three or
/// more servers).
pub async fn connect_server_rooms(
    url: &str,
    namespace: &str,
) -> Result<Arc<dyn ServerRooms>, ClusterError> {
    let (client, servers) = connect::connect(url, role("rooms", namespace, None), None).await?;
    let replicas = connect::replicas(&client, servers);
    Ok(Arc::new(
        NatsServerRooms::open(client, namespace, replicas).await?,
    ))
}

/// Connects the durable webhook queue store of `namespace` at `url`,
/// creating its JetStream stream if needed (three replicas on a cluster of
/// three or more servers).
pub async fn connect_hook_queue(
    url: &str,
    namespace: &str,
) -> Result<Arc<dyn HookQueue>, ClusterError> {
    let (client, servers) = connect::connect(url, role("hooks", namespace, None), None).await?;
    let replicas = connect::replicas(&client, servers);
    Ok(Arc::new(
        NatsHookQueue::open(client, namespace, replicas).await?,
    ))
}

fn role(kind: &'static str, namespace: &str, node: Option<&str>) -> Role {
    Role {
        kind,
        namespace: namespace.to_owned(),
        node: node.map(str::to_owned),
    }
}

/// Deletes the JetStream buckets and stream of `namespace` (decommissioning a
/// cluster, or cleaning up after tests). Missing ones are not an error.
pub async fn purge_namespace(url: &str, namespace: &str) -> Result<(), ClusterError> {
    let (client, _) = connect::connect(url, role("admin", namespace, None), None).await?;
    let js = async_nats::jetstream::new(client);
    for stream in [
        format!("KV_{namespace}_members"),
        format!("KV_{namespace}_heartbeats"),
        format!("{namespace}_rooms"),
        format!("{namespace}_streams"),
        format!("{namespace}_hooks"),
        format!("KV_{namespace}_usage"),
    ] {
        let _ = js.delete_stream(&stream).await;
    }
    Ok(())
}
