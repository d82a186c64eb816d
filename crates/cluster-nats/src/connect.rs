//! Connecting to NATS: URL and namespace validation, the client options every
//! wsring connection uses, connection-state logging, and the mapping of
//! async-nats errors onto [`ClusterError`].
//!
//! Start-up fails fast: one connection attempt, bounded by
//! [`STARTUP_TIMEOUT`], so a misconfigured node exits instead of hanging.
//! Once connected, async-nats reconnects by itself forever (exponential
//! backoff with full jitter, [`RECONNECT_BASE`] to [`RECONNECT_CAP`]) and
//! re-sends every core subscription; the broker turns the resulting
//! connection events into [`wsring_cluster::BrokerEvent`]s.
//!
//! A cluster URL lists several servers. They are tried **in the order
//! given** (not shuffled), so every node of a wsring cluster normally sits on
//! the same NATS server: a subscription registered there is in force for
//! every publisher at once, whereas a server learns of a subscription on
//! another server asynchronously over the route between them, and a message
//! published within that propagation delay would miss it. When that server
//! fails the nodes move to the next one; until then only JetStream (R3
//! buckets and stream) uses the other servers. Nodes left spread over servers
//! after a failover are correct but for that propagation window after a
//! subscribe, which durable streams cover.

use async_nats::connection::State;
use async_nats::{Client, ConnectErrorKind, ConnectOptions, Event, ServerAddr};
use rand::Rng;
use std::str::FromStr;
use std::time::Duration;
use tokio::sync::mpsc;
use tracing::{info, warn};
use wsring_cluster::{BoxError, ClusterError};

/// Upper bound on the initial connection (TCP, TLS, INFO/CONNECT handshake).
pub(crate) const STARTUP_TIMEOUT: Duration = Duration::from_secs(5);
/// First reconnect delay ceiling; doubles per failed attempt.
pub(crate) const RECONNECT_BASE: Duration = Duration::from_millis(100);
/// Largest reconnect delay ceiling. Short, because a node that cannot reach
/// the broker cannot route: it should be back within seconds of the server.
pub(crate) const RECONNECT_CAP: Duration = Duration::from_secs(2);
/// Client-to-server PING period; a half-open connection is declared dead
/// after two unanswered PINGs, so this bounds detection of silent losses.
const PING_INTERVAL: Duration = Duration::from_secs(10);
/// Per-attempt handshake timeout, a little under [`STARTUP_TIMEOUT`] so the
/// client's own error (which says what failed) wins over ours.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(4);
/// Timeout of JetStream API requests and publish acks.
pub(crate) const JS_TIMEOUT: Duration = Duration::from_secs(5);

/// A backend error with the operation that produced it, so logs say what
/// was being attempted and not only what the client library reported.
#[derive(Debug, thiserror::Error)]
#[error("{op}: {cause}")]
pub(crate) struct OpError {
    op: String,
    cause: BoxError,
}

/// Maps a failed operation onto [`ClusterError`]: a timeout, or any failure
/// while the client is not connected, is transient
/// ([`ClusterError::Unavailable`]); anything else means the server answered
/// something unexpected ([`ClusterError::Backend`]).
pub(crate) fn fail(
    client: &Client,
    op: impl Into<String>,
    timed_out: bool,
    e: impl Into<BoxError>,
) -> ClusterError {
    let err = OpError {
        op: op.into(),
        cause: e.into(),
    };
    if timed_out || client.connection_state() != State::Connected {
        ClusterError::unavailable(err)
    } else {
        ClusterError::backend(err)
    }
}

/// A backend error that is not a client library error.
pub(crate) fn backend_msg(msg: impl Into<String>) -> ClusterError {
    ClusterError::backend(msg.into())
}

/// A validated server URL, split into the address (credentials removed, so
/// they never reach a log line) and the credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    addr: ServerAddr,
    user: Option<String>,
    pass: Option<String>,
    /// A private CA to verify the server with (`cacertfile`); implies TLS.
    ca: Option<std::path::PathBuf>,
}

#[cfg(test)]
impl Target {
    /// `scheme://host:port`, safe to log.
    pub(crate) fn display(&self) -> String {
        format!(
            "{}://{}:{}",
            self.addr.scheme(),
            self.addr.host(),
            self.addr.port()
        )
    }
}

/// The servers of one `--cluster` value: one URL, or a comma-separated list
/// of the servers of a NATS cluster. They share one set of credentials and
/// one CA, since they are one cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Targets {
    addrs: Vec<ServerAddr>,
    user: Option<String>,
    pass: Option<String>,
    ca: Option<std::path::PathBuf>,
}

impl Targets {
    /// The servers as `scheme://host:port,…`, safe to log.
    pub(crate) fn display(&self) -> String {
        self.addrs
            .iter()
            .map(|a| format!("{}://{}:{}", a.scheme(), a.host(), a.port()))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// How many distinct servers the URL names.
    pub(crate) fn len(&self) -> usize {
        self.addrs.len()
    }
}

/// Parses a comma-separated list of server URLs (each as in [`parse_url`]).
/// Credentials and `cacertfile` may be given on any of them but must not
/// contradict each other; duplicates are dropped.
pub(crate) fn parse_urls(url: &str) -> Result<Targets, ClusterError> {
    let mut out = Targets {
        addrs: Vec::new(),
        user: None,
        pass: None,
        ca: None,
    };
    for part in url.split(',').map(str::trim) {
        if part.is_empty() {
            return Err(invalid(url, "empty server in the comma-separated list"));
        }
        let t = parse_url(part)?;
        for (have, got, what) in [
            (&mut out.user, t.user, "user"),
            (&mut out.pass, t.pass, "password"),
        ] {
            match (&*have, got) {
                (Some(a), Some(b)) if *a != b => {
                    return Err(invalid(url, format!("the servers disagree on the {what}")));
                }
                (None, Some(b)) => *have = Some(b),
                _ => {}
            }
        }
        match (&out.ca, t.ca) {
            (Some(a), Some(b)) if *a != b => {
                return Err(invalid(url, "the servers name different cacertfile"));
            }
            (None, Some(b)) => out.ca = Some(b),
            _ => {}
        }
        if !out.addrs.contains(&t.addr) {
            out.addrs.push(t.addr);
        }
    }
    // A CA implies TLS for every server, like for a single URL.
    let schemes: std::collections::BTreeSet<&str> =
        out.addrs.iter().map(ServerAddr::scheme).collect();
    if schemes.len() > 1 {
        return Err(invalid(url, "mixes nats:// and tls:// servers"));
    }
    Ok(out)
}

/// The replication factor for this namespace's KV buckets and stream: 3 on a
/// cluster of 3 or more servers (survives the loss of one), otherwise one
/// per server. The cluster size is the larger of the servers the URL lists
/// and the client URLs the server advertises (`connect_urls`, all servers of
/// its cluster that it knows of); a server that reports no cluster name is
/// standalone, where JetStream accepts only one replica.
pub(crate) fn replicas(client: &Client, targets: usize) -> usize {
    let info = client.server_info();
    if info.cluster.as_deref().is_none_or(str::is_empty) {
        return 1;
    }
    let advertised: std::collections::BTreeSet<&str> =
        info.connect_urls.iter().map(String::as_str).collect();
    targets.max(advertised.len()).clamp(1, 3)
}

fn invalid(url: &str, reason: impl Into<String>) -> ClusterError {
    ClusterError::InvalidUrl {
        url: redact(url),
        reason: reason.into(),
    }
}

/// `url` (one URL or a comma-separated list) with any password or token
/// replaced by `***`: errors end up in logs.
fn redact(url: &str) -> String {
    url.split(',').map(redact_one).collect::<Vec<_>>().join(",")
}

fn redact_one(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_owned();
    };
    let authority_end = url[scheme_end..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |i| scheme_end + i);
    let Some(at) = url[scheme_end..authority_end]
        .rfind('@')
        .map(|i| scheme_end + i)
    else {
        return url.to_owned();
    };
    let userinfo = &url[scheme_end..at];
    let shown = match userinfo.split_once(':') {
        Some((user, _)) => format!("{user}:***"),
        None => "***".to_owned(),
    };
    format!("{}{shown}{}", &url[..scheme_end], &url[at..])
}

/// Decodes `%XX` escapes of URL userinfo (`url` keeps them encoded).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| char::from(c).to_digit(16);
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2]))
        {
            // Two hex digits always fit in a byte.
            out.push(u8::try_from(h * 16 + l).unwrap_or(b'?'));
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses `nats://[user:pass@]host[:port]` (also `tls://`, and a
/// `?cacertfile=PATH` naming a private CA, which implies TLS). A user without
/// a password is sent as a token, like the other NATS clients do.
pub(crate) fn parse_url(url: &str) -> Result<Target, ClusterError> {
    let split = wsring_cluster::tls::BackendUrl::parse(url);
    if let Some(ca) = &split.ca
        && !ca.is_file()
    {
        return Err(invalid(
            url,
            format!("cacertfile {}: no such file", ca.display()),
        ));
    }
    let ca = split.ca;
    let url = split.url.as_str();
    let addr = ServerAddr::from_str(url).map_err(|e| invalid(url, e.to_string()))?;
    if addr.is_websocket() {
        return Err(invalid(
            url,
            "websocket URLs are not supported; use nats:// or tls://",
        ));
    }
    if addr.host().is_empty() {
        return Err(invalid(url, "missing host"));
    }
    let user = addr.username().map(percent_decode);
    let pass = addr.password().map(percent_decode);
    let mut bare = addr.into_inner();
    // Cannot fail for nats:// and tls:// URLs, which have a host.
    let _ = bare.set_password(None);
    let _ = bare.set_username("");
    let addr = ServerAddr::from_url(bare).map_err(|e| invalid(url, e.to_string()))?;
    Ok(Target {
        addr,
        user,
        pass,
        ca,
    })
}

/// Reconnect delay before attempt `attempts` (1-based): full jitter under an
/// exponentially growing ceiling, so a fleet of nodes that lost the same
/// server does not reconnect in lock-step.
fn reconnect_delay(attempts: usize) -> Duration {
    let exp = u32::try_from(attempts.saturating_sub(1))
        .unwrap_or(u32::MAX)
        .min(16);
    let ceiling = RECONNECT_BASE.saturating_mul(1 << exp).min(RECONNECT_CAP);
    let max_ms = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
    Duration::from_millis(rand::rng().random_range(0..=max_ms))
}

/// Who a connection belongs to, for logs and the client name the server shows.
#[derive(Debug, Clone)]
pub(crate) struct Role {
    /// `registry`, `broker`, `streams` or `rooms`.
    pub kind: &'static str,
    /// The wsring namespace.
    pub namespace: String,
    /// The node id, for broker connections.
    pub node: Option<String>,
}

/// Connects one client to any server of `url` (one URL, or a comma-separated
/// list naming the servers of a cluster; async-nats tries them in random
/// order, reconnects to any of them, and adds the servers the cluster
/// advertises). Every connection-state change is logged; with `events`, the
/// raw events are also forwarded (the broker needs them). Returns the client
/// and the number of servers the URL names.
pub(crate) async fn connect(
    url: &str,
    role: Role,
    events: Option<mpsc::UnboundedSender<Event>>,
) -> Result<(Client, usize), ClusterError> {
    let target = parse_urls(url)?;
    wsring_cluster::validate_namespace(&role.namespace)?;
    let server = target.display();
    let name = match &role.node {
        Some(n) => format!("wsring-{}-{}-{n}", role.kind, role.namespace),
        None => format!("wsring-{}-{}", role.kind, role.namespace),
    };
    let link = std::sync::Arc::new(wsring_cluster::Link::new("nats", role.kind));
    let mut opts = ConnectOptions::new()
        .name(name)
        .connection_timeout(ATTEMPT_TIMEOUT)
        .ping_interval(PING_INTERVAL)
        .max_reconnects(None)
        .reconnect_delay_callback(reconnect_delay)
        .event_callback({
            let (role, server) = (role.clone(), server.clone());
            move |event| {
                match event {
                    Event::Disconnected => {
                        link.lost();
                    }
                    Event::Connected => {
                        link.ok();
                    }
                    _ => {}
                }
                log_event(&role, &server, &event);
                if let Some(tx) = &events {
                    // The receiver is gone only once its owner shut down.
                    let _ = tx.send(event);
                }
                std::future::ready(())
            }
        });
    if target.len() > 1 {
        opts = opts.retain_servers_order();
    }
    if let Some(ca) = &target.ca {
        opts = opts.add_root_certificates(ca.clone()).require_tls(true);
    }
    opts = match (target.user.clone(), target.pass.clone()) {
        (Some(user), Some(pass)) => opts.user_and_password(user, pass),
        (Some(token), None) => opts.token(token),
        _ => opts,
    };
    // `retry_on_initial_connect` stays off: start-up makes one attempt and
    // reports failure; reconnects after that are unlimited.
    let connected = tokio::time::timeout(STARTUP_TIMEOUT, opts.connect(target.addrs.clone())).await;
    let client = match connected {
        Ok(Ok(client)) => client,
        Ok(Err(e)) => {
            let kind = e.kind();
            warn!(role = role.kind, namespace = %role.namespace, %server, error = %e, "NATS connection failed");
            return Err(match kind {
                ConnectErrorKind::ServerParse => invalid(url, e.to_string()),
                ConnectErrorKind::Authentication
                | ConnectErrorKind::AuthorizationViolation
                | ConnectErrorKind::Tls => ClusterError::backend(OpError {
                    op: format!("connecting to {server}"),
                    cause: e.into(),
                }),
                _ => ClusterError::unavailable(OpError {
                    op: format!("connecting to {server}"),
                    cause: e.into(),
                }),
            });
        }
        Err(_) => {
            warn!(role = role.kind, namespace = %role.namespace, %server, "NATS connection timed out");
            return Err(ClusterError::unavailable(format!(
                "connecting to {server}: no answer within {STARTUP_TIMEOUT:?}"
            )));
        }
    };
    Ok((client, target.len()))
}

fn log_event(role: &Role, server: &str, event: &Event) {
    let (kind, ns) = (role.kind, role.namespace.as_str());
    let node = role.node.as_deref().unwrap_or("");
    match event {
        Event::Connected => info!(role = kind, namespace = ns, node, server, "NATS connected"),
        Event::Disconnected => {
            warn!(
                role = kind,
                namespace = ns,
                node,
                server,
                "NATS connection lost; reconnecting"
            )
        }
        Event::Closed => info!(
            role = kind,
            namespace = ns,
            node,
            server,
            "NATS connection closed"
        ),
        Event::Draining => info!(
            role = kind,
            namespace = ns,
            node,
            server,
            "NATS connection draining"
        ),
        Event::LameDuckMode => {
            warn!(
                role = kind,
                namespace = ns,
                node,
                server,
                "NATS server entering lame duck mode"
            )
        }
        Event::SlowConsumer(sid) => {
            warn!(
                role = kind,
                namespace = ns,
                node,
                server,
                sid,
                "NATS slow consumer: messages dropped"
            )
        }
        Event::ServerError(e) => {
            warn!(role = kind, namespace = ns, node, server, error = %e, "NATS server error")
        }
        Event::ClientError(e) => {
            warn!(role = kind, namespace = ns, node, server, error = %e, "NATS client error")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let t = parse_url("nats://127.0.0.1:4222").expect("plain");
        assert_eq!(t.display(), "nats://127.0.0.1:4222");
        assert_eq!((t.user, t.pass), (None, None));

        let t = parse_url("nats://al%40ce:p%3Ass@example.com:1234").expect("creds");
        assert_eq!(t.user.as_deref(), Some("al@ce"));
        assert_eq!(t.pass.as_deref(), Some("p:ss"));
        assert_eq!(t.display(), "nats://example.com:1234");
        assert!(!t.addr.as_url_str().contains("p%3Ass"));

        let t = parse_url("nats://s3cr3t@example.com").expect("token");
        assert_eq!(t.user.as_deref(), Some("s3cr3t"));
        assert_eq!(t.display(), "nats://example.com:4222");

        for bad in [
            "http://x:4222",
            "ws://x:80",
            "nats://",
            "nats://:4222",
            "::::",
        ] {
            assert!(
                matches!(parse_url(bad), Err(ClusterError::InvalidUrl { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn url_lists() {
        let t = parse_urls("nats://127.0.0.1:4230, nats://127.0.0.1:4231,nats://127.0.0.1:4232")
            .expect("list");
        assert_eq!(t.len(), 3);
        assert_eq!(
            t.display(),
            "nats://127.0.0.1:4230,nats://127.0.0.1:4231,nats://127.0.0.1:4232"
        );
        let t = parse_urls("nats://u:p@a:1,nats://b:2,nats://a:1").expect("creds once");
        assert_eq!(
            (t.len(), t.user.as_deref(), t.pass.as_deref()),
            (2, Some("u"), Some("p"))
        );
        assert_eq!(parse_urls("nats://a:1").expect("one").len(), 1);
        for bad in [
            "nats://a:1,",
            ",nats://a:1",
            "nats://u:p@a:1,nats://u:q@b:2",
            "nats://a:1,tls://b:2",
            "nats://a:1,http://b:2",
        ] {
            assert!(
                matches!(parse_urls(bad), Err(ClusterError::InvalidUrl { .. })),
                "{bad}"
            );
        }
        let err = parse_urls("nats://u:hunter2@a:1,nats://u:x@b:2").expect_err("conflict");
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }

    #[test]
    fn passwords_are_not_echoed() {
        let err = parse_url("http://u:hunter2@x").expect_err("bad scheme");
        assert!(!err.to_string().contains("hunter2"), "{err}");
        assert_eq!(redact("nats://u:p@h:1/x@y"), "nats://u:***@h:1/x@y");
        assert_eq!(redact("nats://tok@h"), "nats://***@h");
        assert_eq!(redact("nats://h:4222"), "nats://h:4222");
        assert_eq!(redact("h@x"), "h@x");
        assert_eq!(
            redact("nats://a:b@h,nats://c:d@i"),
            "nats://a:***@h,nats://c:***@i"
        );
    }

    #[test]
    fn percent() {
        assert_eq!(percent_decode("a%20b"), "a b");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
        assert_eq!(percent_decode("%C3%A9"), "é");
        assert_eq!(percent_decode("100%"), "100%");
    }

    #[test]
    fn reconnect_delays() {
        for attempt in 0..40 {
            let d = reconnect_delay(attempt);
            assert!(d <= RECONNECT_CAP, "{attempt}: {d:?}");
        }
        assert!(reconnect_delay(1) <= RECONNECT_BASE);
    }
}
