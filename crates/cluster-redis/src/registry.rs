//! [`Registry`] on Redis.
//!
//! The document lives in a hash (`v`: version, `d`: JSON). `store` is a Lua
//! compare-and-set that bumps the version and `PUBLISH`es the new version on
//! the membership channel in the same atomic step, so a watcher can never
//! miss a change that happened after it subscribed. Heartbeats are string keys
//! `<incarnation>\n<stats JSON>` with `PX` expiry, so an expired key simply
//! no longer exists for `MGET`. Claim, refresh and release are Lua scripts:
//! a claim takes the next incarnation from a counter key (`INCR`) only if no
//! live record exists; refresh and release act only while the caller's
//! incarnation holds the record. All of these keys share one hash tag, so
//! every script touches one cluster slot.
//!
//! A node names its registry connection (`CLIENT SETNAME`, renewed with each
//! heartbeat, so a reconnected connection carries it again within one
//! period). [`Registry::disconnected`] reads the heartbeats' remaining TTLs
//! (`PTTL`, one pipeline) and, only if some member is late, one
//! `CLIENT LIST TYPE normal`: a late member without a named connection has
//! most likely died. On a Redis Cluster the connections are spread over
//! the shards, so it tells nothing there and the TTL decides.

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use redis::Script;
use std::collections::HashSet;
use std::time::Duration;
use tracing::debug;
use wsring_cluster::registry::is_late;
use wsring_cluster::{ClusterError, Heartbeat, Lease, Registry, Versioned};

use crate::keys::Keys;
use crate::{Conn, at_startup, map_err};

const CAS: &str = r"
local cur = redis.call('HGET', KEYS[1], 'v')
if ARGV[1] == '' then
  if cur then return false end
elseif cur ~= ARGV[1] then
  return false
end
local v = redis.call('HINCRBY', KEYS[1], 'v', 1)
redis.call('HSET', KEYS[1], 'd', ARGV[2])
redis.call('PUBLISH', ARGV[3], v)
return v
";

/// KEYS: heartbeat, incarnation counter. ARGV: stats, ttl ms.
/// Returns the new incarnation, or false when a live record holds the id.
const CLAIM: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then return false end
local inc = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], inc .. '\n' .. ARGV[1], 'PX', ARGV[2])
return inc
";

/// KEYS: heartbeat. ARGV: incarnation, stats, ttl ms.
/// Returns 0 when refreshed, -1 when the record expired, or the incarnation
/// that holds the id now.
const REFRESH: &str = r"
local cur = redis.call('GET', KEYS[1])
if not cur then return -1 end
local holder = tonumber(string.match(cur, '^(%d+)\n'))
if holder ~= tonumber(ARGV[1]) then return holder or 0 end
redis.call('SET', KEYS[1], ARGV[1] .. '\n' .. ARGV[2], 'PX', ARGV[3])
return 0
";

/// KEYS: heartbeat. ARGV: incarnation. Deletes the record if it holds it.
const RELEASE: &str = r"
local cur = redis.call('GET', KEYS[1])
if cur and tonumber(string.match(cur, '^(%d+)\n')) == tonumber(ARGV[1]) then
  redis.call('DEL', KEYS[1])
end
return 0
";

/// Where a registry watch subscribes to the membership channel.
pub(crate) enum WatchSource {
    /// The one server.
    Single(redis::Client),
    /// Any node of a Redis Cluster: classic pub/sub reaches every node.
    Cluster(crate::cluster::Seeds),
}

/// Membership storage on Redis.
pub struct RedisRegistry {
    watch: WatchSource,
    conn: Conn,
    keys: Keys,
    cas: Script,
    claim: Script,
    refresh: Script,
    release: Script,
}

/// Connection manager settings shared by this crate: quick, bounded retries
/// per command (the callers retry with their own backoff).
pub(crate) fn manager_config() -> redis::aio::ConnectionManagerConfig {
    redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_response_timeout(Some(Duration::from_secs(2)))
        .set_number_of_retries(1)
        .set_min_delay(Duration::from_millis(50))
        .set_max_delay(Duration::from_secs(1))
}

impl RedisRegistry {
    /// Connects, failing fast if Redis is unreachable.
    pub async fn connect(client: redis::Client, keys: Keys) -> Result<Self, ClusterError> {
        let conn = Conn::connect(&client, "registry").await?;
        Ok(Self::with_conn(conn, WatchSource::Single(client), keys))
    }

    /// The registry on an open connection (one server or a cluster).
    pub(crate) fn with_conn(conn: Conn, watch: WatchSource, keys: Keys) -> Self {
        RedisRegistry {
            watch,
            conn,
            keys,
            cas: Script::new(CAS),
            claim: Script::new(CLAIM),
            refresh: Script::new(REFRESH),
            release: Script::new(RELEASE),
        }
    }
}

impl RedisRegistry {
    /// Names the registry connection after `node` (one server only). A
    /// failure costs only the early detection of this node's death.
    async fn name_connection(&self, node: &str) {
        if !self.conn.is_single() {
            return;
        }
        let name = self.keys.client_name(node);
        let named = self
            .conn
            .call("CLIENT SETNAME", |mut c| async move {
                redis::cmd("CLIENT")
                    .arg("SETNAME")
                    .arg(name)
                    .query_async::<()>(&mut c)
                    .await
            })
            .await;
        if let Err(e) = named {
            debug!(node, error = %e, "naming the registry connection failed");
        }
    }
}

/// The `name=` of each client in a `CLIENT LIST` reply.
fn client_names(list: &str) -> HashSet<&str> {
    list.lines()
        .filter_map(|line| {
            line.split(' ')
                .find_map(|field| field.strip_prefix("name="))
        })
        .filter(|name| !name.is_empty())
        .collect()
}

#[async_trait]
impl Registry for RedisRegistry {
    async fn load(&self) -> Result<Option<Versioned<Bytes>>, ClusterError> {
        let doc = self.keys.doc();
        let (v, d): (Option<u64>, Option<Vec<u8>>) = self
            .conn
            .call("HMGET", |mut c| async move {
                redis::cmd("HMGET")
                    .arg(doc)
                    .arg("v")
                    .arg("d")
                    .query_async(&mut c)
                    .await
            })
            .await?;
        Ok(match (v, d) {
            (Some(version), Some(d)) => Some(Versioned {
                version,
                value: Bytes::from(d),
            }),
            _ => None,
        })
    }

    async fn store(&self, expected: Option<u64>, doc: Bytes) -> Result<Option<u64>, ClusterError> {
        let mut call = self.cas.key(self.keys.doc());
        call.arg(expected.map(|v| v.to_string()).unwrap_or_default())
            .arg(doc.as_ref())
            .arg(self.keys.membership_channel());
        self.conn
            .call("membership CAS", |mut c| async move {
                call.invoke_async::<Option<u64>>(&mut c).await
            })
            .await
    }

    async fn claim(
        &self,
        node: &str,
        value: Bytes,
        ttl: Duration,
    ) -> Result<Option<u64>, ClusterError> {
        self.name_connection(node).await;
        let mut call = self.claim.key(self.keys.heartbeat(node));
        call.key(self.keys.incarnations())
            .arg(value.as_ref())
            .arg(ttl_ms(ttl));
        self.conn
            .call("heartbeat claim", |mut c| async move {
                call.invoke_async::<Option<u64>>(&mut c).await
            })
            .await
    }

    async fn refresh(
        &self,
        node: &str,
        incarnation: u64,
        value: Bytes,
        ttl: Duration,
    ) -> Result<Lease, ClusterError> {
        self.name_connection(node).await;
        let mut call = self.refresh.key(self.keys.heartbeat(node));
        call.arg(incarnation).arg(value.as_ref()).arg(ttl_ms(ttl));
        let r: i64 = self
            .conn
            .call("heartbeat refresh", |mut c| async move {
                call.invoke_async(&mut c).await
            })
            .await?;
        Ok(match r {
            0 => Lease::Held,
            -1 => Lease::Expired,
            holder => Lease::Taken(u64::try_from(holder).unwrap_or(0)),
        })
    }

    async fn release(&self, node: &str, incarnation: u64) -> Result<(), ClusterError> {
        let mut call = self.release.key(self.keys.heartbeat(node));
        call.arg(incarnation);
        self.conn
            .call("heartbeat release", |mut c| async move {
                call.invoke_async::<()>(&mut c).await
            })
            .await
    }

    async fn heartbeats(&self, nodes: &[String]) -> Result<Vec<Option<Heartbeat>>, ClusterError> {
        if nodes.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = nodes.iter().map(|n| self.keys.heartbeat(n)).collect();
        let values: Vec<Option<Vec<u8>>> = self
            .conn
            .call("MGET", |mut c| async move {
                redis::cmd("MGET").arg(&keys).query_async(&mut c).await
            })
            .await?;
        Ok(values
            .into_iter()
            .map(|v| v.and_then(|v| parse_heartbeat(&v)))
            .collect())
    }

    async fn disconnected(
        &self,
        nodes: &[String],
        ttl: Duration,
        late: Duration,
    ) -> Result<Vec<String>, ClusterError> {
        if nodes.is_empty() || !self.conn.is_single() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = nodes.iter().map(|n| self.keys.heartbeat(n)).collect();
        let remaining: Vec<i64> = self
            .conn
            .call("heartbeat PTTL", |mut c| async move {
                let mut pipe = redis::pipe();
                for k in &keys {
                    pipe.cmd("PTTL").arg(k);
                }
                pipe.query_async(&mut c).await
            })
            .await?;
        // Expired records (-2) are the reaper's; a record without expiry
        // (-1) is not a heartbeat wsring wrote.
        let late: Vec<&String> = nodes
            .iter()
            .zip(remaining)
            .filter(|(_, ms)| {
                u64::try_from(*ms)
                    .is_ok_and(|ms| ms > 0 && is_late(Duration::from_millis(ms), ttl, late))
            })
            .map(|(n, _)| n)
            .collect();
        if late.is_empty() {
            return Ok(Vec::new());
        }
        let list: String = self
            .conn
            .call("CLIENT LIST", |mut c| async move {
                redis::cmd("CLIENT")
                    .arg("LIST")
                    .arg("TYPE")
                    .arg("normal")
                    .query_async(&mut c)
                    .await
            })
            .await?;
        let named = client_names(&list);
        Ok(late
            .into_iter()
            .filter(|n| !named.contains(self.keys.client_name(n).as_str()))
            .cloned()
            .collect())
    }

    async fn watch(&self) -> Result<BoxStream<'static, ()>, ClusterError> {
        // A fresh subscriber connection per watch: when it drops, the stream
        // ends and the membership layer re-watches with backoff.
        let seeds = match &self.watch {
            WatchSource::Single(client) => {
                let mut pubsub = at_startup("registry watch", client.get_async_pubsub()).await?;
                pubsub
                    .subscribe(self.keys.membership_channel())
                    .await
                    .map_err(map_err)?;
                return Ok(pubsub.into_on_message().map(|_| ()).boxed());
            }
            WatchSource::Cluster(seeds) => seeds,
        };
        // Cluster: a RESP3 connection whose pushes carry the notifications.
        // The stream ends at the first lost node connection, so a failover
        // makes the membership layer re-watch (and reload the document).
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let client = crate::cluster::client(seeds, Some(tx))?;
        let mut conn = at_startup("registry watch", client.get_async_connection()).await?;
        at_startup(
            "registry watch subscribe",
            conn.subscribe(self.keys.membership_channel()),
        )
        .await?;
        let stream = futures::stream::unfold((conn, rx), |(conn, mut rx)| async move {
            loop {
                let push = rx.recv().await?;
                match push.kind {
                    redis::PushKind::Message => return Some(((), (conn, rx))),
                    redis::PushKind::Disconnection => return None,
                    _ => {}
                }
            }
        });
        Ok(stream.boxed())
    }
}

/// Splits `<incarnation>\n<stats>`; a record in another shape (written by an
/// incompatible version) reads as incarnation 0 with the whole value as stats.
fn parse_heartbeat(raw: &[u8]) -> Option<Heartbeat> {
    let split = raw.iter().position(|&b| b == b'\n');
    let parsed = split.and_then(|i| {
        let inc = std::str::from_utf8(&raw[..i]).ok()?.parse().ok()?;
        Some(Heartbeat {
            incarnation: inc,
            value: Bytes::copy_from_slice(&raw[i + 1..]),
        })
    });
    Some(parsed.unwrap_or_else(|| Heartbeat {
        incarnation: 0,
        value: Bytes::copy_from_slice(raw),
    }))
}

fn ttl_ms(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_names_of_a_client_list() {
        let list = "id=3 addr=127.0.0.1:1 fd=8 name=wsring:t:node:n1 age=0 flags=N\n\
                    id=4 addr=127.0.0.1:2 fd=9 name= age=0 flags=N\n\
                    id=5 addr=127.0.0.1:3 fd=10 name=other age=1\n";
        let names = client_names(list);
        assert_eq!(names.len(), 2);
        assert!(names.contains("wsring:t:node:n1"));
        assert!(names.contains("other"));
    }
}
