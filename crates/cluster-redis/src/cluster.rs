//! Redis Cluster mode: the `redis-cluster://host1:port,host2:port,…` URL (a
//! comma-separated list of seed nodes; any one reachable seed is enough, the
//! client learns the rest of the topology from it) and the cluster clients
//! built from it.
//!
//! Placement, so that traffic spreads over the shards while every script
//! stays atomic:
//!
//! * Broker channels carry no hash tag: each per-node channel and each room
//!   channel hashes to its own slot, and the broker uses sharded pub/sub
//!   (`SPUBLISH`/`SSUBSCRIBE`, see [`cluster_broker`](crate::cluster_broker)),
//!   so a message crosses only the shard that owns its channel instead of
//!   being broadcast over the whole cluster bus as classic `PUBLISH` is.
//! * The registry's keys (membership document, heartbeats, incarnation
//!   counter) share the `{<ns>}` hash tag: one slot, so the compare-and-set
//!   and the heartbeat scripts stay single-slot and atomic. That slot sees a
//!   few writes per second per node (one heartbeat per interval, plus a
//!   document write per join or leave), far below what one shard serves.
//! * Each durable stream's keys share their own `{<ns>:u:<user>}` /
//!   `{<ns>:r:<room>}` tag: streams spread over the shards, and the append,
//!   head and read scripts touch one slot each.
//! * The membership change notification is published with classic `PUBLISH`
//!   from inside the compare-and-set script (it must be in the same atomic
//!   step); the cluster bus carries it to every node, which is cheap at the
//!   rate of membership changes.

use redis::ProtocolVersion;
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use std::time::Duration;
use wsring_cluster::ClusterError;

/// The URL scheme that selects Redis Cluster mode.
pub const SCHEME: &str = "redis-cluster://";

/// Whether `url` names a Redis Cluster.
pub fn is_cluster_url(url: &str) -> bool {
    url.starts_with(SCHEME)
}

/// The parsed seed list of a `redis-cluster://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Seeds {
    /// `redis://host:port/` of each seed, without credentials.
    pub nodes: Vec<String>,
    pub user: Option<String>,
    pub pass: Option<String>,
}

impl Seeds {
    /// The seeds as `host:port,…`, safe to log.
    pub(crate) fn display(&self) -> String {
        let hosts: Vec<&str> = self
            .nodes
            .iter()
            .map(|n| n.trim_start_matches("redis://").trim_end_matches('/'))
            .collect();
        format!("{SCHEME}{}", hosts.join(","))
    }
}

/// `url` with any password replaced by `***`.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let userinfo = &url[s + 3..at];
            let shown = match userinfo.split_once(':') {
                Some((u, _)) => format!("{u}:***"),
                None => "***".to_owned(),
            };
            format!("{}{shown}{}", &url[..s + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

/// Parses `redis-cluster://[user:pass@]host:port,host:port,…`. Credentials,
/// given once before the first host, apply to every node.
pub(crate) fn parse(url: &str) -> Result<Seeds, ClusterError> {
    let invalid = |reason: &str| ClusterError::InvalidUrl {
        url: redact(url),
        reason: reason.to_owned(),
    };
    let rest = url
        .strip_prefix(SCHEME)
        .ok_or_else(|| invalid("expected redis-cluster://host:port,host:port,..."))?;
    let rest = rest.trim_end_matches('/');
    if rest.contains(['?', '#']) || rest.contains('/') {
        return Err(invalid(
            "a Redis Cluster URL takes no path or query: redis-cluster://host:port,host:port,...",
        ));
    }
    let (creds, hosts) = match rest.rsplit_once('@') {
        Some((c, h)) => (Some(c), h),
        None => (None, rest),
    };
    let (user, pass) = match creds {
        None => (None, None),
        Some(c) => match c.split_once(':') {
            Some((u, p)) => ((!u.is_empty()).then(|| u.to_owned()), Some(p.to_owned())),
            None => (None, Some(c.to_owned())),
        },
    };
    let mut nodes = Vec::new();
    for host in hosts.split(',').map(str::trim) {
        let Some((h, p)) = host.rsplit_once(':') else {
            return Err(invalid("every seed needs host:port"));
        };
        if h.is_empty() || h.contains('@') || p.parse::<u16>().is_err() {
            return Err(invalid("every seed needs host:port"));
        }
        let node = format!("redis://{h}:{p}/");
        if !nodes.contains(&node) {
            nodes.push(node);
        }
    }
    Ok(Seeds { nodes, user, pass })
}

/// No push sender: a connection without pub/sub.
pub(crate) const NO_PUSH: Option<tokio::sync::mpsc::UnboundedSender<redis::PushInfo>> = None;

/// Per-command bound inside the cluster client (the callers add their own
/// overall timeout); connects fail fast.
const CONNECT: Duration = Duration::from_secs(2);
const RESPONSE: Duration = Duration::from_secs(2);

/// A cluster client for `seeds`. With `push`, the connection speaks RESP3
/// and delivers pub/sub messages and disconnection notices to `push`.
pub(crate) fn client(
    seeds: &Seeds,
    push: Option<impl redis::aio::AsyncPushSender>,
) -> Result<ClusterClient, ClusterError> {
    let mut b = ClusterClientBuilder::new(seeds.nodes.clone())
        .connection_timeout(CONNECT)
        .response_timeout(RESPONSE)
        // A failover takes a few seconds (node timeout plus election):
        // retry redirected and failed commands for about that long.
        .retries(6)
        .min_retry_wait(50)
        .max_retry_wait(1000);
    if let Some(u) = &seeds.user {
        b = b.username(u);
    }
    if let Some(p) = &seeds.pass {
        b = b.password(p);
    }
    if let Some(tx) = push {
        b = b.use_protocol(ProtocolVersion::RESP3).push_sender(tx);
    }
    b.build().map_err(|e| ClusterError::InvalidUrl {
        url: seeds.display(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let s = parse("redis-cluster://127.0.0.1:7100,127.0.0.1:7101, 10.0.0.1:7102").expect("ok");
        assert_eq!(
            s.nodes,
            vec![
                "redis://127.0.0.1:7100/",
                "redis://127.0.0.1:7101/",
                "redis://10.0.0.1:7102/"
            ]
        );
        assert_eq!(
            s.display(),
            "redis-cluster://127.0.0.1:7100,127.0.0.1:7101,10.0.0.1:7102"
        );
        let s = parse("redis-cluster://al:pw@h:1,h:2").expect("creds");
        assert_eq!(
            (s.user.as_deref(), s.pass.as_deref()),
            (Some("al"), Some("pw"))
        );
        let s = parse("redis-cluster://:pw@h:1").expect("password only");
        assert_eq!((s.user, s.pass.as_deref()), (None, Some("pw")));
        for bad in [
            "redis://h:1",
            "redis-cluster://",
            "redis-cluster://h",
            "redis-cluster://h:1,",
            "redis-cluster://h:x",
            "redis-cluster://h:1/0",
            "redis-cluster://h:1?x=y",
        ] {
            assert!(
                matches!(parse(bad), Err(ClusterError::InvalidUrl { .. })),
                "{bad}"
            );
        }
        let err = parse("redis-cluster://u:hunter2@h").expect_err("no port");
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }
}
