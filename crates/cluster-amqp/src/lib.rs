//! RabbitMQ (AMQP 0-9-1) broker backend for wsring, built on `lapin`.
//!
//! RabbitMQ is a broker only: wsring's registry and durable streams live in
//! another backend, so this crate implements just [`wsring_cluster::Broker`].
//!
//! # Layout on the server
//! Three exchanges per namespace and one queue per broker connection (see
//! [`names`] for the exact names):
//!
//! | topic | exchange | binding key |
//! |---|---|---|
//! | `Topic::Node(id)` | `<ns>.direct` (direct) | `id` |
//! | `Topic::Cluster` | `<ns>.fanout` (fanout) | — |
//! | `Topic::Room(r)` | `<ns>.rooms` (direct) | `r`, bound only while the node has members |
//!
//! Each connection declares a uniquely named, exclusive, auto-delete queue
//! `<ns>.node.<id>.<unique>` and binds it for every subscribed topic; one
//! consumer reads it. A single queue keeps one publisher's messages in order
//! across topics, which the node relies on. The unique suffix means a restarted
//! node never collides with the exclusive queue of its dead predecessor.
//!
//! # Choices
//! * **Exchanges are transient (`durable = false`) and not auto-delete.**
//!   Nothing durable is ever bound to them (queues die with their connection),
//!   so surviving a RabbitMQ restart buys nothing; every node redeclares all
//!   three on every (re)connect, which is idempotent. Auto-delete is unsafe:
//!   RabbitMQ deletes such an exchange when its last binding goes (the last
//!   room member leaving), and a publish to a missing exchange is a channel
//!   error (404) that would close the publishers' channels cluster-wide. The
//!   cost is three idle exchanges per namespace left on the server.
//! * **Publisher confirms.** `publish` returns `Ok` only once RabbitMQ has
//!   acked the message; a nack, a closed channel or no connection is
//!   [`ClusterError::Unavailable`]. Unroutable messages (no queue bound) are
//!   acked and dropped, like pub/sub.
//! * **Auto-ack consumer (`no_ack`).** wsring never wants broker redelivery:
//!   durability and catch-up come from its own streams and the
//!   [`BrokerEvent::Resubscribed`](wsring_cluster::BrokerEvent::Resubscribed)
//!   signal. Auto-ack is the fastest mode and keeps a slow node's backlog in
//!   that node's own memory (lapin buffers deliveries while the bounded inbox
//!   is full) instead of in a queue on the shared RabbitMQ, whose memory alarm
//!   would block publishers of every node.
//! * **One connection, two channels.** A confirm-mode channel for publishes and
//!   a control channel for declarations, bindings and the consumer. Any failed
//!   channel operation, a cancelled consumer or a connection error tears the
//!   whole connection down and takes the one tested recovery path: report
//!   `Disconnected`, reconnect with [`Backoff`](wsring_cluster::backoff::Backoff)
//!   (full jitter), redeclare exchanges and a fresh queue, rebind every
//!   remembered topic, restart the consumer, report `Resubscribed`.
//! * **AMQP heartbeat** of [`DEFAULT_HEARTBEAT_SECS`] unless the URL sets
//!   `?heartbeat=`, so a silently dead TCP connection is noticed.
//!
//! Every connection is named `wsring:<namespace>:<node>:broker`, visible in
//! `rabbitmqctl list_connections client_properties` and the management UI.

pub mod broker;
pub mod names;

use std::sync::Arc;
use std::time::Duration;
use tracing::info;
use wsring_cluster::{Backend, Broker, ClusterError, Inbox, Part};

use lapin::uri::{AMQPScheme, AMQPUri};

pub use broker::AmqpBroker;
pub use names::Names;

/// Start-up connection timeout: an unreachable server fails fast rather than
/// hanging the node's start.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// AMQP heartbeat requested unless the URL says otherwise (seconds).
pub const DEFAULT_HEARTBEAT_SECS: u16 = 10;

/// The RabbitMQ backend, as the binary picks it: `amqp://` and `amqps://`
/// URLs, serving the broker only (RabbitMQ stores nothing, so a cluster
/// with it keeps its registry, streams and server-side rooms in Redis or
/// NATS).
pub struct AmqpBackend;

#[async_trait::async_trait]
impl Backend for AmqpBackend {
    fn name(&self) -> &'static str {
        "amqp"
    }

    fn accepts(&self, url: &str) -> bool {
        url.starts_with("amqp://") || url.starts_with("amqps://")
    }

    fn serves(&self, part: Part) -> bool {
        part == Part::Broker
    }

    async fn broker(
        &self,
        url: &str,
        namespace: &str,
        node: &str,
    ) -> Result<(Arc<dyn Broker>, Inbox), ClusterError> {
        connect_broker(url, namespace, node).await
    }
}

/// Connects node `node`'s broker in `namespace`.
///
/// `url` is `amqp://user:pass@host:port/vhost` (vhost `/` is `%2f`); query
/// parameters `heartbeat`, `connection_timeout` (ms), `frame_max` and
/// `channel_max` are honoured. Fails with [`ClusterError::InvalidUrl`] for a
/// bad URL, namespace or node id, and with [`ClusterError::Unavailable`] if
/// RabbitMQ cannot be reached within [`CONNECT_TIMEOUT`]. Once connected, the
/// broker reconnects by itself forever.
pub async fn connect_broker(
    url: &str,
    namespace: &str,
    node: &str,
) -> Result<(Arc<dyn Broker>, Inbox), ClusterError> {
    let names = Names::new(namespace)?;
    names::validate_node(node)?;
    let (uri, ca) = parse_target(url)?;
    let endpoint = endpoint(&uri);
    let (broker, inbox) = AmqpBroker::connect(broker::Config {
        uri,
        ca,
        names,
        node: node.to_owned(),
        endpoint: endpoint.clone(),
    })
    .await?;
    info!(namespace, node, endpoint, "rabbitmq broker ready");
    Ok((Arc::new(broker), inbox))
}

/// Parses and checks an `amqp://` or `amqps://` URL, filling in wsring's
/// defaults for the heartbeat and the connection timeout.
pub fn parse_url(url: &str) -> Result<AMQPUri, ClusterError> {
    parse_target(url).map(|(uri, _)| uri)
}

/// Like [`parse_url`], also returning the PEM of the CA named by a
/// `cacertfile` query parameter (`amqps://` only; without it the system
/// roots are trusted).
pub fn parse_target(url: &str) -> Result<(AMQPUri, Option<String>), ClusterError> {
    let split = wsring_cluster::tls::BackendUrl::parse(url);
    let ca = split
        .ca_pem(&redact(url))?
        .map(|pem| String::from_utf8_lossy(&pem).into_owned());
    let uri = parse_plain(&split.url)?;
    if ca.is_some() && uri.scheme != AMQPScheme::AMQPS {
        return Err(ClusterError::InvalidUrl {
            url: redact(url),
            reason: "cacertfile needs an amqps:// URL".to_owned(),
        });
    }
    Ok((uri, ca))
}

/// Opens one connection, over TLS with the custom CA when one is given.
pub(crate) async fn open_connection(
    uri: AMQPUri,
    ca: Option<&str>,
    props: lapin::ConnectionProperties,
) -> lapin::Result<lapin::Connection> {
    match ca {
        None => lapin::Connection::connect_uri(uri, props).await,
        Some(pem) => {
            let tls = lapin::tcp::OwnedTLSConfig {
                identity: None,
                cert_chain: Some(pem.to_owned()),
            };
            let runtime = lapin::runtime::default_runtime()?;
            lapin::Connection::connect_uri_with_config(uri, props, tls, runtime).await
        }
    }
}

fn parse_plain(url: &str) -> Result<AMQPUri, ClusterError> {
    let invalid = |reason: String| ClusterError::InvalidUrl {
        // Never echo a password back into logs or error messages.
        url: redact(url),
        reason,
    };
    if !url.starts_with("amqp://") && !url.starts_with("amqps://") {
        return Err(invalid(
            "expected amqp://user:pass@host:port/vhost".to_owned(),
        ));
    }
    let mut uri: AMQPUri = url.parse().map_err(invalid)?;
    if uri.authority.host.is_empty() {
        return Err(invalid("missing host".to_owned()));
    }
    uri.query.heartbeat.get_or_insert(DEFAULT_HEARTBEAT_SECS);
    let connect_ms = u64::try_from(CONNECT_TIMEOUT.as_millis()).unwrap_or(u64::MAX);
    uri.query.connection_timeout.get_or_insert(connect_ms);
    Ok(uri)
}

/// `host:port/vhost`, for logs (no credentials).
fn endpoint(uri: &AMQPUri) -> String {
    format!(
        "{}:{}/{}",
        uri.authority.host, uri.authority.port, uri.vhost
    )
}

/// The URL with any password replaced by `***`.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}{path}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

/// Deletes the three exchanges of `namespace` (decommissioning a cluster, or
/// cleaning up after tests; queues die with their connections anyway).
pub async fn purge_namespace(url: &str, namespace: &str) -> Result<(), ClusterError> {
    use lapin::options::ExchangeDeleteOptions;
    let names = names::Names::new(namespace)?;
    let (uri, ca) = parse_target(url)?;
    let conn = open_connection(uri, ca.as_deref(), lapin::ConnectionProperties::default())
        .await
        .map_err(ClusterError::unavailable)?;
    let ch = conn
        .create_channel()
        .await
        .map_err(ClusterError::unavailable)?;
    for (exchange, _) in names.exchanges() {
        ch.exchange_delete(exchange.into(), ExchangeDeleteOptions::default())
            .await
            .map_err(ClusterError::backend)?;
    }
    let _ = conn.close(200, "purged".into()).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_form_with_defaults() {
        let uri = parse_url("amqp://guest:guest@127.0.0.1:5672/%2f").expect("valid");
        assert_eq!(uri.authority.host, "127.0.0.1");
        assert_eq!(uri.authority.port, 5672);
        assert_eq!(uri.vhost, "/");
        assert_eq!(uri.query.heartbeat, Some(DEFAULT_HEARTBEAT_SECS));
        assert_eq!(uri.query.connection_timeout, Some(5000));
        assert_eq!(endpoint(&uri), "127.0.0.1:5672//");
    }

    #[test]
    fn url_parameters_win_over_defaults() {
        let uri =
            parse_url("amqp://u:p@h:1234/v?heartbeat=3&connection_timeout=700").expect("valid");
        assert_eq!(uri.query.heartbeat, Some(3));
        assert_eq!(uri.query.connection_timeout, Some(700));
        assert_eq!(uri.vhost, "v");
    }

    #[test]
    fn rejects_bad_urls_without_leaking_the_password() {
        for bad in [
            "redis://127.0.0.1",
            "amqp://u:secret@h/%2f?cacertfile=/nonexistent/ca.pem",
            "amqp://u:secret@h:notaport/%2f",
            "",
            "127.0.0.1:5672",
        ] {
            match parse_url(bad) {
                Err(ClusterError::InvalidUrl { url, .. }) => {
                    assert!(!url.contains("secret"), "{url}");
                }
                other => panic!("{bad:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn amqps_is_accepted() {
        let (uri, ca) = parse_target("amqps://u:p@h/%2f").expect("valid");
        assert_eq!(
            (uri.scheme, uri.authority.port, ca),
            (AMQPScheme::AMQPS, 5671, None)
        );
    }

    #[test]
    fn redacts_passwords() {
        assert_eq!(redact("amqp://u:pw@h:1/%2f"), "amqp://u:***@h:1/%2f");
        assert_eq!(redact("amqp://h:1/%2f"), "amqp://h:1/%2f");
        assert_eq!(redact("amqp://u@h"), "amqp://u@h");
        assert_eq!(redact("amqp://u:p@ss@h/v"), "amqp://u:***@h/v");
    }

    #[tokio::test]
    async fn invalid_arguments_fail_before_connecting() {
        let url = "amqp://guest:guest@127.0.0.1:1/%2f";
        assert!(matches!(
            connect_broker(url, "bad ns", "n").await,
            Err(ClusterError::InvalidNamespace(_))
        ));
        assert!(matches!(
            connect_broker(url, "ns", "").await,
            Err(ClusterError::InvalidUrl { .. })
        ));
        assert!(matches!(
            connect_broker("http://x", "ns", "n").await,
            Err(ClusterError::InvalidUrl { .. })
        ));
    }

    #[tokio::test]
    async fn unreachable_server_fails_fast_as_unavailable() {
        // Port 1 on loopback refuses connections immediately.
        let started = std::time::Instant::now();
        let res = connect_broker("amqp://guest:guest@127.0.0.1:1/%2f", "ns", "n").await;
        assert!(
            matches!(res, Err(ClusterError::Unavailable(_))),
            "{:?}",
            res.err()
        );
        assert!(started.elapsed() < CONNECT_TIMEOUT + Duration::from_secs(1));
    }
}
