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
//! Retention: length (exact) on every append, plus age trimming from the
//! head; both keys get a `PEXPIRE` of the retention age on every append, so
//! a stream idle for longer than that disappears and comes back with a new
//! epoch — exactly what a client resuming from it must be told.
//!
//! Store limits (`max_streams`, `max_bytes`): three usage keys under the
//! namespace's tag (see [`Keys::stream_usage`]) record each stream's last
//! append and retained payload bytes. An append first *reserves* its bytes
//! there (refused when a limit would be passed), then appends, then
//! *settles*: bytes the append trimmed (or a duplicate never stored) are
//! given back. Streams whose last append is older than the retention age
//! have expired in Redis and are dropped from the usage as they are found.
//! The usage is separate from the stream's own slot on a Redis Cluster, so
//! the steps are not one atomic script: a failure between them can only
//! over-count, and the over-count ends when the stream expires.

use async_trait::async_trait;
use bytes::Bytes;
use redis::{Script, Value};
use wsring_cluster::stream::new_epoch;
use wsring_cluster::{
    Appended, ClusterError, ReadBatch, Retention, StoreLimit, StreamName, StreamPos, StreamStore,
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
local function size(entry)
  local f = entry[2]
  for i = 1, #f, 2 do
    if f[i] == 'p' then return string.len(f[i + 1]) end
  end
  return 0
end
local function trim_age(x, cutoff)
  local freed = 0
  for _ = 1, 1000 do
    local first = redis.call('XRANGE', x, '-', '+', 'COUNT', 1)
    if #first == 0 then return freed end
    if tonumber(first[1][2][2]) >= cutoff then return freed end
    freed = freed + size(first[1])
    redis.call('XDEL', x, first[1][1])
  end
  return freed
end
local function trim_len(x, max)
  local freed = 0
  local over = redis.call('XLEN', x) - max
  if over > 0 then
    for _, entry in ipairs(redis.call('XRANGE', x, '-', '+', 'COUNT', over)) do
      freed = freed + size(entry)
      redis.call('XDEL', x, entry[1])
    end
  end
  return freed
end
";

/// KEYS: meta, entries, dedup. ARGV: payload, max_len, ttl_ms, fresh epoch,
/// has_dedup. Returns {seq, epoch, duplicate, payload bytes trimmed}.
const APPEND: &str = r"
local ttl = tonumber(ARGV[3])
if ARGV[5] == '1' then
  local seen = redis.call('GET', KEYS[3])
  local e = redis.call('HGET', KEYS[1], 'e')
  if seen and e then return {tonumber(seen), e, 1, 0} end
end
local e = meta(KEYS[1], KEYS[2], ARGV[4])
local seq = redis.call('HINCRBY', KEYS[1], 's', 1)
local now = now_ms()
redis.call('XADD', KEYS[2], seq .. '-0', 't', now, 'p', ARGV[1])
local freed = trim_len(KEYS[2], tonumber(ARGV[2])) + trim_age(KEYS[2], now - ttl)
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('PEXPIRE', KEYS[2], ttl)
if ARGV[5] == '1' then redis.call('SET', KEYS[3], seq, 'PX', ttl) end
return {seq, e, 0, freed}
";

/// Reserves store usage for an append. KEYS: the usage keys (streams by
/// last append, bytes per stream, byte total). ARGV: stream, bytes, ttl_ms,
/// max_streams, max_bytes (0: no limit). Returns 0 (reserved), 1 (streams
/// limit) or 2 (bytes limit).
const RESERVE: &str = r"
local now = now_ms()
local ttl = tonumber(ARGV[3])
local cutoff = now - ttl
local function forget(s)
  local b = tonumber(redis.call('HGET', KEYS[2], s) or '0')
  redis.call('HDEL', KEYS[2], s)
  redis.call('ZREM', KEYS[1], s)
  if b > 0 then redis.call('DECRBY', KEYS[3], b) end
end
for _, s in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. cutoff, 'LIMIT', 0, 64)) do
  forget(s)
end
local seen = redis.call('ZSCORE', KEYS[1], ARGV[1])
if seen and tonumber(seen) < cutoff then
  forget(ARGV[1])
  seen = false
end
local max_streams = tonumber(ARGV[4])
if not seen and max_streams > 0 and redis.call('ZCARD', KEYS[1]) >= max_streams then
  return 1
end
local len = tonumber(ARGV[2])
local total = tonumber(redis.call('GET', KEYS[3]) or '0')
local max_bytes = tonumber(ARGV[5])
if max_bytes > 0 and total + len > max_bytes then return 2 end
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('HINCRBY', KEYS[2], ARGV[1], len)
redis.call('INCRBY', KEYS[3], len)
for i = 1, 3 do redis.call('PEXPIRE', KEYS[i], ttl) end
return 0
";

/// KEYS: meta, dedup. Returns {seq, epoch} of a dedup key's original, or
/// nil.
const LOOKUP: &str = r"
local seen = redis.call('GET', KEYS[2])
local e = redis.call('HGET', KEYS[1], 'e')
if seen and e then return {tonumber(seen), e} end
return false
";

/// Gives back usage bytes. KEYS: the usage keys. ARGV: stream, bytes.
const SETTLE: &str = r"
local b = redis.call('HGET', KEYS[2], ARGV[1])
if not b then return 0 end
local f = math.min(tonumber(ARGV[2]), tonumber(b))
redis.call('HINCRBY', KEYS[2], ARGV[1], -f)
redis.call('DECRBY', KEYS[3], f)
return 0
";

/// KEYS: meta, entries. ARGV: fresh epoch, ttl_ms. Returns {seq, epoch}.
const HEAD: &str = r"
local e = meta(KEYS[1], KEYS[2], ARGV[1])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
return {tonumber(redis.call('HGET', KEYS[1], 's')), e}
";

/// KEYS: meta, entries. ARGV: after, limit, fresh epoch, ttl_ms.
/// Returns {epoch, first_seq, last_seq, entries, payload bytes trimmed}.
const READ: &str = r"
local e = meta(KEYS[1], KEYS[2], ARGV[3])
local freed = trim_age(KEYS[2], now_ms() - tonumber(ARGV[4]))
local last = tonumber(redis.call('HGET', KEYS[1], 's'))
local first = last + 1
local head = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 1)
if #head > 0 then first = tonumber(string.match(head[1][1], '^(%d+)')) end
local from = (tonumber(ARGV[1]) + 1) .. '-0'
local entries = redis.call('XRANGE', KEYS[2], from, '+', 'COUNT', tonumber(ARGV[2]))
return {e, first, last, entries, freed}
";

/// Durable streams on Redis.
pub struct RedisStreams {
    conn: Conn,
    keys: Keys,
    retention: Retention,
    append: Script,
    head: Script,
    read: Script,
    reserve: Script,
    settle: Script,
    lookup: Script,
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
            reserve: script(RESERVE),
            settle: script(SETTLE),
            lookup: Script::new(LOOKUP),
        }
    }

    fn limited(&self) -> bool {
        self.retention.max_streams > 0 || self.retention.max_bytes > 0
    }

    /// Reserves `len` payload bytes for an append to `stream`, or refuses
    /// it with [`ClusterError::StorageFull`].
    async fn reserve(&self, stream: &StreamName, len: usize) -> Result<(), ClusterError> {
        if !self.limited() {
            return Ok(());
        }
        let [t, b, total] = self.keys.stream_usage();
        let mut call = self.reserve.key(t);
        call.key(b)
            .key(total)
            .arg(stream.key())
            .arg(len)
            .arg(self.ttl_ms())
            .arg(self.retention.max_streams)
            .arg(self.retention.max_bytes);
        let verdict: i64 = self
            .conn
            .call("stream usage reserve", |mut c| async move {
                call.invoke_async(&mut c).await
            })
            .await?;
        match verdict {
            0 => Ok(()),
            1 => Err(ClusterError::StorageFull {
                limit: StoreLimit::Streams,
                max: self.retention.max_streams,
            }),
            2 => Err(ClusterError::StorageFull {
                limit: StoreLimit::Bytes,
                max: self.retention.max_bytes,
            }),
            _ => Err(corrupt("usage reserve reply")),
        }
    }

    /// Where the message appended under dedup `key` went, if it is known.
    async fn original(
        &self,
        stream: &StreamName,
        key: &str,
    ) -> Result<Option<Appended>, ClusterError> {
        let mut call = self.lookup.key(self.keys.stream_meta(stream));
        call.key(self.keys.stream_dedup(stream, key));
        let reply: Value = self
            .conn
            .call("stream dedup lookup", |mut c| async move {
                call.invoke_async(&mut c).await
            })
            .await?;
        if matches!(reply, Value::Nil) {
            return Ok(None);
        }
        let r = items(reply)?;
        let [seq, epoch] = r.as_slice() else {
            return Err(corrupt("lookup reply"));
        };
        Ok(Some(Appended {
            seq: as_u64(seq)?,
            epoch: as_string(epoch)?,
            duplicate: true,
        }))
    }

    /// Gives back `freed` payload bytes of `stream` (trimmed, or reserved
    /// for a duplicate that stored nothing).
    async fn settle(&self, stream: &StreamName, freed: u64) -> Result<(), ClusterError> {
        if !self.limited() || freed == 0 {
            return Ok(());
        }
        let [t, b, total] = self.keys.stream_usage();
        let mut call = self.settle.key(t);
        call.key(b).key(total).arg(stream.key()).arg(freed);
        let _: i64 = self
            .conn
            .call("stream usage settle", |mut c| async move {
                call.invoke_async(&mut c).await
            })
            .await?;
        Ok(())
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
        if let Err(full) = self.reserve(stream, payload.len()).await {
            // A retry of a message stored before the store filled up still
            // learns where it went.
            return match dedup {
                Some(key) => self.original(stream, key).await?.ok_or(full),
                None => Err(full),
            };
        }
        let len = payload.len() as u64;
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
        let [seq, epoch, dup, freed] = r.as_slice() else {
            return Err(corrupt("append reply"));
        };
        let a = Appended {
            seq: as_u64(seq)?,
            epoch: as_string(epoch)?,
            duplicate: as_u64(dup)? == 1,
        };
        // A duplicate stored nothing: its whole reservation comes back.
        let freed = as_u64(freed)? + if a.duplicate { len } else { 0 };
        self.settle(stream, freed).await?;
        Ok(a)
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
        let (Some(epoch), Some(first), Some(last), Some(list), Some(freed)) =
            (r.next(), r.next(), r.next(), r.next(), r.next())
        else {
            return Err(corrupt("read reply"));
        };
        self.settle(stream, as_u64(&freed)?).await?;
        Ok(ReadBatch {
            epoch: as_string(&epoch)?,
            first_seq: as_u64(&first)?,
            last_seq: as_u64(&last)?,
            entries: entries(list)?,
        })
    }
}
