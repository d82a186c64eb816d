//! [`Registry`] on Redis.
//!
//! The document lives in a hash (`v`: version, `d`: JSON). `store` is a Lua
//! compare-and-set that bumps the version and `PUBLISH`es the new version on
//! the membership channel in the same atomic step, so a watcher can never
//! miss a change that happened after it subscribed. Heartbeats are string keys
//! with `PX` expiry: `SET NX PX` claims an id, `SET PX` refreshes it, and an
//! expired key simply no longer exists for `MGET`.

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use redis::aio::ConnectionManager;
use redis::{AsyncCommands, Script};
use std::time::Duration;
use wsring_cluster::{ClusterError, Registry, Versioned};

use crate::keys::Keys;
use crate::{at_startup, map_err};

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

/// Membership storage on Redis.
pub struct RedisRegistry {
    client: redis::Client,
    conn: ConnectionManager,
    keys: Keys,
    cas: Script,
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
        let conn = at_startup(
            "registry",
            client.get_connection_manager_with_config(manager_config()),
        )
        .await?;
        Ok(RedisRegistry {
            client,
            conn,
            keys,
            cas: Script::new(CAS),
        })
    }
}

#[async_trait]
impl Registry for RedisRegistry {
    async fn load(&self) -> Result<Option<Versioned<Bytes>>, ClusterError> {
        let mut c = self.conn.clone();
        let (v, d): (Option<u64>, Option<Vec<u8>>) = redis::cmd("HMGET")
            .arg(self.keys.doc())
            .arg("v")
            .arg("d")
            .query_async(&mut c)
            .await
            .map_err(map_err)?;
        Ok(match (v, d) {
            (Some(version), Some(d)) => Some(Versioned {
                version,
                value: Bytes::from(d),
            }),
            _ => None,
        })
    }

    async fn store(&self, expected: Option<u64>, doc: Bytes) -> Result<Option<u64>, ClusterError> {
        let mut c = self.conn.clone();
        self.cas
            .key(self.keys.doc())
            .arg(expected.map(|v| v.to_string()).unwrap_or_default())
            .arg(doc.as_ref())
            .arg(self.keys.membership_channel())
            .invoke_async::<Option<u64>>(&mut c)
            .await
            .map_err(map_err)
    }

    async fn claim(&self, node: &str, value: Bytes, ttl: Duration) -> Result<bool, ClusterError> {
        let mut c = self.conn.clone();
        let set: Option<String> = redis::cmd("SET")
            .arg(self.keys.heartbeat(node))
            .arg(value.as_ref())
            .arg("NX")
            .arg("PX")
            .arg(ttl_ms(ttl))
            .query_async(&mut c)
            .await
            .map_err(map_err)?;
        Ok(set.is_some())
    }

    async fn refresh(&self, node: &str, value: Bytes, ttl: Duration) -> Result<(), ClusterError> {
        let mut c = self.conn.clone();
        redis::cmd("SET")
            .arg(self.keys.heartbeat(node))
            .arg(value.as_ref())
            .arg("PX")
            .arg(ttl_ms(ttl))
            .query_async::<()>(&mut c)
            .await
            .map_err(map_err)
    }

    async fn release(&self, node: &str) -> Result<(), ClusterError> {
        let mut c = self.conn.clone();
        c.del::<_, ()>(self.keys.heartbeat(node))
            .await
            .map_err(map_err)
    }

    async fn heartbeats(&self, nodes: &[String]) -> Result<Vec<Option<Bytes>>, ClusterError> {
        if nodes.is_empty() {
            return Ok(Vec::new());
        }
        let mut c = self.conn.clone();
        let keys: Vec<String> = nodes.iter().map(|n| self.keys.heartbeat(n)).collect();
        let values: Vec<Option<Vec<u8>>> = redis::cmd("MGET")
            .arg(&keys)
            .query_async(&mut c)
            .await
            .map_err(map_err)?;
        Ok(values.into_iter().map(|v| v.map(Bytes::from)).collect())
    }

    async fn watch(&self) -> Result<BoxStream<'static, ()>, ClusterError> {
        // A fresh subscriber connection per watch: when it drops, the stream
        // ends and the membership layer re-watches with backoff.
        let mut pubsub = at_startup("registry watch", self.client.get_async_pubsub()).await?;
        pubsub
            .subscribe(self.keys.membership_channel())
            .await
            .map_err(map_err)?;
        Ok(pubsub.into_on_message().map(|_| ()).boxed())
    }
}

fn ttl_ms(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)
}
