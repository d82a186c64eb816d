//! [`HookQueue`] on Redis: one Redis Stream per queue, `{<ns>:hq:<q>}:x`,
//! whose entry ids are the queue's own sequence numbers (`<seq>-1`, handed
//! out by a counter in the same slot inside the append script, so numbers
//! keep ascending even after every entry was removed), and a set of the
//! queue names, `{<ns>}:hq`, for a node looking for a dead owner's queues.
//! Removal is `XTRIM MINID`. On a Redis Cluster an append is acknowledged
//! once a replica has it, like a stream append.

use async_trait::async_trait;
use bytes::Bytes;
use redis::Script;
use redis::streams::StreamRangeReply;
use wsring_cluster::{ClusterError, HookQueue, Queued};

use crate::Conn;
use crate::keys::Keys;

/// KEYS: entries, counter. ARGV: the events. Returns the last number.
const APPEND: &str = r"
local n = redis.call('INCRBY', KEYS[2], #ARGV) - #ARGV
for i = 1, #ARGV do
  redis.call('XADD', KEYS[1], (n + i) .. '-1', 'e', ARGV[i])
end
return n + #ARGV
";

/// Durable webhook queues on Redis.
pub struct RedisHookQueue {
    conn: Conn,
    keys: Keys,
    append: Script,
}

impl RedisHookQueue {
    /// Connects, failing fast if Redis is unreachable.
    pub async fn connect(client: redis::Client, keys: Keys) -> Result<Self, ClusterError> {
        let conn = Conn::connect(&client, "hooks").await?;
        Ok(Self::with_conn(conn, keys))
    }

    /// The store on an open connection (one server or a cluster).
    pub(crate) fn with_conn(conn: Conn, keys: Keys) -> Self {
        RedisHookQueue {
            conn,
            keys,
            append: Script::new(APPEND),
        }
    }

    fn name(queue: &str) -> Result<&str, ClusterError> {
        if wsring_cluster::hook_queue::valid_queue_name(queue) {
            Ok(queue)
        } else {
            Err(ClusterError::backend(format!(
                "invalid webhook queue name {queue:?}"
            )))
        }
    }
}

/// The sequence number of an entry id `<seq>-1`.
fn seq_of(id: &str) -> Result<u64, ClusterError> {
    id.split('-')
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| ClusterError::backend(format!("unexpected webhook queue entry id {id:?}")))
}

#[async_trait]
impl HookQueue for RedisHookQueue {
    async fn append(&self, queue: &str, events: &[Bytes]) -> Result<(), ClusterError> {
        let queue = Self::name(queue)?;
        if events.is_empty() {
            return Ok(());
        }
        let index = self.keys.hook_queues();
        let q = queue.to_owned();
        // Listed first, so a queue that holds events is always listed.
        self.conn
            .call("webhook queue index", |mut c| async move {
                redis::cmd("SADD")
                    .arg(index)
                    .arg(q)
                    .query_async::<i64>(&mut c)
                    .await
            })
            .await?;
        let [entries, counter] = self.keys.hook_queue(queue);
        let mut call = self.append.key(&entries);
        call.key(&counter);
        for e in events {
            call.arg(e.as_ref());
        }
        let _last: u64 = self
            .conn
            .call("webhook queue append", |mut c| async move {
                call.invoke_async(&mut c).await
            })
            .await?;
        self.conn.wait_replicated(&entries).await
    }

    async fn read(&self, queue: &str, after: u64, max: usize) -> Result<Vec<Queued>, ClusterError> {
        let queue = Self::name(queue)?;
        let [entries, _] = self.keys.hook_queue(queue);
        let reply: StreamRangeReply = self
            .conn
            .call("webhook queue read", |mut c| async move {
                redis::cmd("XRANGE")
                    .arg(entries)
                    .arg(format!("{}-0", after.saturating_add(1)))
                    .arg("+")
                    .arg("COUNT")
                    .arg(max)
                    .query_async(&mut c)
                    .await
            })
            .await?;
        reply
            .ids
            .into_iter()
            .map(|entry| {
                let seq = seq_of(&entry.id)?;
                let body: Vec<u8> = entry.get("e").ok_or_else(|| {
                    ClusterError::backend(format!("webhook queue entry {} has no event", entry.id))
                })?;
                Ok(Queued {
                    seq,
                    body: Bytes::from(body),
                })
            })
            .collect()
    }

    async fn remove(&self, queue: &str, upto: u64) -> Result<(), ClusterError> {
        let queue = Self::name(queue)?;
        let [entries, _] = self.keys.hook_queue(queue);
        self.conn
            .call("webhook queue remove", |mut c| async move {
                redis::cmd("XTRIM")
                    .arg(entries)
                    .arg("MINID")
                    .arg(format!("{}-0", upto.saturating_add(1)))
                    .query_async::<i64>(&mut c)
                    .await
            })
            .await?;
        Ok(())
    }

    async fn forget(&self, queue: &str) -> Result<(), ClusterError> {
        let queue = Self::name(queue)?;
        let [entries, counter] = self.keys.hook_queue(queue);
        self.conn
            .call("webhook queue forget", |mut c| async move {
                redis::cmd("DEL")
                    .arg(entries)
                    .arg(counter)
                    .query_async::<i64>(&mut c)
                    .await
            })
            .await?;
        let index = self.keys.hook_queues();
        let q = queue.to_owned();
        self.conn
            .call("webhook queue index", |mut c| async move {
                redis::cmd("SREM")
                    .arg(index)
                    .arg(q)
                    .query_async::<i64>(&mut c)
                    .await
            })
            .await?;
        Ok(())
    }

    async fn queues(&self) -> Result<Vec<String>, ClusterError> {
        let index = self.keys.hook_queues();
        let mut names: Vec<String> = self
            .conn
            .call("webhook queue list", |mut c| async move {
                redis::cmd("SMEMBERS").arg(index).query_async(&mut c).await
            })
            .await?;
        names.sort();
        Ok(names)
    }
}
