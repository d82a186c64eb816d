//! [`StreamStore`] on Redis Streams.
//!
//! Each wsring stream is a meta hash (`e`: epoch, `s`: last seq) plus a Redis
//! Stream whose entry ids are `<seq>-0`, so "everything after seq N" is a
//! plain `XRANGE (N+1)-0 +`. All three operations are Lua scripts, so seq
//! assignment, trimming, dedup and the epoch are one atomic step even with
//! many nodes appending to the same stream. Redis's `TIME` is the clock for
//! age trimming, so node clocks never matter.
//!
//! On a Redis Cluster, an append is acknowledged only once a replica has it
//! (`WAIT 1` after the script; see `Conn::wait_replicated`): replication is
//! asynchronous, and a primary killed before its replica caught up would
//! otherwise take acknowledged messages with it. A failed wait is reported
//! as unavailable; the caller's retry with the same dedup key finds the
//! message and waits again.
//!
//! Retention: `MAXLEN` (exact) on every append, plus age trimming from the
//! head; both keys get a `PEXPIRE` of the retention age on every append, so
//! a stream idle for longer than that disappears and comes back with a new
//! epoch — exactly what a client resuming from it must be told.

use async_trait::async_trait;
use bytes::Bytes;
use redis::{Script, Value};
use wsring_cluster::stream::new_epoch;
use wsring_cluster::{
    Appended, ClusterError, ReadBatch, Retention, StreamName, StreamPos, StreamStore,
};

use crate::keys::Keys;

use crate::Conn;

/// Shared Lua helpers: create-or-read the meta, and trim entries by age.
const PRELUDE: &str = r"
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function meta(m, x, fresh)
  local e = redis.call('HGET', m, 'e')
  if not e then
    e = fresh
    redis.call('HSET', m, 'e', e, 's', 0)
    redis.call('DEL', x)
  end
  return e
end
local function trim_age(x, cutoff)
  for _ = 1, 1000 do
    local first = redis.call('XRANGE', x, '-', '+', 'COUNT', 1)
    if #first == 0 then return end
    if tonumber(first[1][2][2]) >= cutoff then return end
    redis.call('XDEL', x, first[1][1])
  end
end
";

/// KEYS: meta, entries, dedup. ARGV: payload, max_len, ttl_ms, fresh epoch,
/// has_dedup. Returns {seq, epoch, duplicate}.
const APPEND: &str = r"
local ttl = tonumber(ARGV[3])
if ARGV[5] == '1' then
  local seen = redis.call('GET', KEYS[3])
  local e = redis.call('HGET', KEYS[1], 'e')
  if seen and e then return {tonumber(seen), e, 1} end
end
local e = meta(KEYS[1], KEYS[2], ARGV[4])
local seq = redis.call('HINCRBY', KEYS[1], 's', 1)
local now = now_ms()
redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[2], seq .. '-0', 't', now, 'p', ARGV[1])
trim_age(KEYS[2], now - ttl)
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('PEXPIRE', KEYS[2], ttl)
if ARGV[5] == '1' then redis.call('SET', KEYS[3], seq, 'PX', ttl) end
return {seq, e, 0}
";

/// KEYS: meta, entries. ARGV: fresh epoch, ttl_ms. Returns {seq, epoch}.
const HEAD: &str = r"
local e = meta(KEYS[1], KEYS[2], ARGV[1])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
return {tonumber(redis.call('HGET', KEYS[1], 's')), e}
";

/// KEYS: meta, entries. ARGV: after, limit, fresh epoch, ttl_ms.
/// Returns {epoch, first_seq, last_seq, entries}.
const READ: &str = r"
local e = meta(KEYS[1], KEYS[2], ARGV[3])
trim_age(KEYS[2], now_ms() - tonumber(ARGV[4]))
local last = tonumber(redis.call('HGET', KEYS[1], 's'))
local first = last + 1
local head = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 1)
if #head > 0 then first = tonumber(string.match(head[1][1], '^(%d+)')) end
local from = (tonumber(ARGV[1]) + 1) .. '-0'
local entries = redis.call('XRANGE', KEYS[2], from, '+', 'COUNT', tonumber(ARGV[2]))
return {e, first, last, entries}
";

/// Durable streams on Redis.
pub struct RedisStreams {
    conn: Conn,
    keys: Keys,
    retention: Retention,
    append: Script,
    head: Script,
    read: Script,
}

impl RedisStreams {
    /// Connects, failing fast if Redis is unreachable.
    pub async fn connect(
        client: redis::Client,
        keys: Keys,
        retention: Retention,
    ) -> Result<Self, ClusterError> {
        let conn = Conn::connect(&client, "streams").await?;
        Ok(Self::with_conn(conn, keys, retention))
    }

    /// The store on an open connection (one server or a cluster).
    pub(crate) fn with_conn(conn: Conn, keys: Keys, retention: Retention) -> Self {
        let script = |body: &str| Script::new(&format!("{PRELUDE}\n{body}"));
        RedisStreams {
            conn,
            keys,
            retention,
            append: script(APPEND),
            head: script(HEAD),
            read: script(READ),
        }
    }

    fn ttl_ms(&self) -> u64 {
        u64::try_from(self.retention.max_age.as_millis())
            .unwrap_or(u64::MAX)
            .max(1)
    }
}

fn corrupt(what: &str) -> ClusterError {
    ClusterError::backend(format!("unexpected reply from stream script: {what}"))
}

fn as_u64(v: &Value) -> Result<u64, ClusterError> {
    match v {
        Value::Int(i) => u64::try_from(*i).map_err(|_| corrupt("negative number")),
        Value::BulkString(b) => std::str::from_utf8(b)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| corrupt("number")),
        _ => Err(corrupt("number")),
    }
}

fn as_string(v: &Value) -> Result<String, ClusterError> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).map_err(|_| corrupt("epoch")),
        Value::SimpleString(s) => Ok(s.clone()),
        _ => Err(corrupt("epoch")),
    }
}

fn items(v: Value) -> Result<Vec<Value>, ClusterError> {
    match v {
        Value::Array(a) => Ok(a),
        _ => Err(corrupt("array")),
    }
}

/// Parses `XRANGE` output: `[[id, [field, value, …]], …]` → `(seq, payload)`.
fn entries(v: Value) -> Result<Vec<(u64, Bytes)>, ClusterError> {
    let mut out = Vec::new();
    for entry in items(v)? {
        let mut parts = items(entry)?.into_iter();
        let (Some(id), Some(fields)) = (parts.next(), parts.next()) else {
            return Err(corrupt("entry"));
        };
        let id = as_string(&id)?;
        let seq = id
            .split('-')
            .next()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| corrupt("entry id"))?;
        let mut payload = None;
        let mut fields = items(fields)?.into_iter();
        while let (Some(k), Some(v)) = (fields.next(), fields.next()) {
            if let (Value::BulkString(k), Value::BulkString(v)) = (k, v)
                && k.as_slice() == b"p"
            {
                payload = Some(Bytes::from(v));
            }
        }
        out.push((seq, payload.ok_or_else(|| corrupt("entry payload"))?));
    }
    Ok(out)
}

#[async_trait]
impl StreamStore for RedisStreams {
    async fn append(
        &self,
        stream: &StreamName,
        payload: Bytes,
        dedup: Option<&str>,
    ) -> Result<Appended, ClusterError> {
        let mut call = self.append.key(self.keys.stream_meta(stream));
        call.key(self.keys.stream_entries(stream))
            .key(self.keys.stream_dedup(stream, dedup.unwrap_or("")))
            .arg(payload.as_ref())
            .arg(self.retention.max_len.max(1))
            .arg(self.ttl_ms())
            .arg(new_epoch())
            .arg(if dedup.is_some() { "1" } else { "0" });
        let reply: Value = self
            .conn
            .call("stream append", |mut c| async move {
                call.invoke_async(&mut c).await
            })
            .await?;
        // On a cluster, acknowledge only what survives a failover (a
        // duplicate too: its original may not have been replicated yet).
        self.conn
            .wait_replicated(&self.keys.stream_meta(stream))
            .await?;
        let r = items(reply)?;
        let [seq, epoch, dup] = r.as_slice() else {
            return Err(corrupt("append reply"));
        };
        Ok(Appended {
            seq: as_u64(seq)?,
            epoch: as_string(epoch)?,
            duplicate: as_u64(dup)? == 1,
        })
    }

    async fn head(&self, stream: &StreamName) -> Result<StreamPos, ClusterError> {
        let mut call = self.head.key(self.keys.stream_meta(stream));
        call.key(self.keys.stream_entries(stream))
            .arg(new_epoch())
            .arg(self.ttl_ms());
        let reply: Value = self
            .conn
            .call("stream head", |mut c| async move {
                call.invoke_async(&mut c).await
            })
            .await?;
        let r = items(reply)?;
        let [seq, epoch] = r.as_slice() else {
            return Err(corrupt("head reply"));
        };
        Ok(StreamPos {
            seq: as_u64(seq)?,
            epoch: as_string(epoch)?,
        })
    }

    async fn read_after(
        &self,
        stream: &StreamName,
        after: u64,
        limit: usize,
    ) -> Result<ReadBatch, ClusterError> {
        let mut call = self.read.key(self.keys.stream_meta(stream));
        call.key(self.keys.stream_entries(stream))
            .arg(after)
            .arg(limit.max(1))
            .arg(new_epoch())
            .arg(self.ttl_ms());
        let reply: Value = self
            .conn
            .call("stream read", |mut c| async move {
                call.invoke_async(&mut c).await
            })
            .await?;
        let mut r = items(reply)?.into_iter();
        let (Some(epoch), Some(first), Some(last), Some(list)) =
            (r.next(), r.next(), r.next(), r.next())
        else {
            return Err(corrupt("read reply"));
        };
        Ok(ReadBatch {
            epoch: as_string(&epoch)?,
            first_seq: as_u64(&first)?,
            last_seq: as_u64(&last)?,
            entries: entries(list)?,
        })
    }
}
