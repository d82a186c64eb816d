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
//! head; the stream's keys get a `PEXPIRE` of the retention age on every
//! append, so a stream idle for longer than that disappears and comes back
//! with a new epoch — exactly what a client resuming from it must be told.
//! Dedup keys live in the entry (`d`) and in the stream's dedup index (a
//! hash beside it); trimming an entry drops its index field, so the index
//! never holds more than `max_len` keys and expires with the stream.
//!
//! Store limits (`max_streams`, `max_bytes`, `max_user_bytes`): six usage
//! keys under the namespace's tag (see [`Keys::stream_usage`]) record each
//! stream's last activity and the bytes it counts, and the same per owner
//! and stream pair and per owner. What counts is
//! [`wsring_cluster::stream`]'s rule: [`STREAM_COST_BYTES`] per stream from
//! its first position (so `head` reserves too, and a read of a stream that
//! does not exist goes through `head`), and each entry's cost, which the
//! entry carries (`c`) so trimming gives back exactly what was counted, to
//! the owner it was counted for (`o`). An append first *reserves* its cost
//! there (refused when a limit would be passed), then appends, then
//! *settles*: what the append trimmed (or a duplicate never stored) is given
//! back. Streams and pairs whose last activity is older than the retention
//! age have expired in Redis and are dropped from the usage as they are
//! found. The usage is separate from the stream's own slot on a Redis
//! Cluster, so the steps are not one atomic script: a failure between them
//! can only over-count, and the over-count ends when the stream expires.

use async_trait::async_trait;
use bytes::Bytes;
use redis::{Script, Value};
use wsring_cluster::stream::{STREAM_COST_BYTES, entry_cost, new_epoch};
use wsring_cluster::{
    Appended, ClusterError, ReadBatch, Retention, StoreLimit, StreamName, StreamPos, StreamStore,
};

use crate::keys::Keys;

use crate::Conn;

/// Shared Lua helpers: create-or-read the meta, and trim entries (with
/// their dedup index fields) by length and age, adding what each trimmed
/// entry counted to `freed[owner]` (`''` for none).
const PRELUDE: &str = r"
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function meta(m, x, d, fresh)
  local e = redis.call('HGET', m, 'e')
  if not e then
    e = fresh
    redis.call('HSET', m, 'e', e, 's', 0)
    redis.call('DEL', x, d)
  end
  return e
end
local function field(entry, name)
  local f = entry[2]
  for i = 1, #f, 2 do
    if f[i] == name then return f[i + 1] end
  end
  return nil
end
local function drop(x, d, entry, freed)
  local key = field(entry, 'd')
  if key then redis.call('HDEL', d, key) end
  local owner = field(entry, 'o') or ''
  local cost = tonumber(field(entry, 'c') or '0')
  freed[owner] = (freed[owner] or 0) + cost
  redis.call('XDEL', x, entry[1])
end
local function trim_age(x, d, cutoff, freed)
  for _ = 1, 1000 do
    local first = redis.call('XRANGE', x, '-', '+', 'COUNT', 1)
    if #first == 0 then return end
    if tonumber(field(first[1], 't')) >= cutoff then return end
    drop(x, d, first[1], freed)
  end
end
local function trim_len(x, d, max, freed)
  local over = redis.call('XLEN', x) - max
  if over > 0 then
    for _, entry in ipairs(redis.call('XRANGE', x, '-', '+', 'COUNT', over)) do
      drop(x, d, entry, freed)
    end
  end
end
local function flat(freed)
  local out = {}
  for owner, bytes in pairs(freed) do
    if bytes > 0 then
      out[#out + 1] = owner
      out[#out + 1] = bytes
    end
  end
  return out
end
";

/// KEYS: meta, entries, dedup index. ARGV: payload, max_len, ttl_ms, fresh
/// epoch, dedup key (`''`: none), owner (`''`: none), cost. Returns {seq,
/// epoch, duplicate, {owner, bytes trimmed, …}}.
const APPEND: &str = r"
local ttl = tonumber(ARGV[3])
local key = ARGV[5]
if key ~= '' then
  local seen = redis.call('HGET', KEYS[3], key)
  local e = redis.call('HGET', KEYS[1], 'e')
  if seen and e then return {tonumber(seen), e, 1, {}} end
end
local e = meta(KEYS[1], KEYS[2], KEYS[3], ARGV[4])
local seq = redis.call('HINCRBY', KEYS[1], 's', 1)
local now = now_ms()
local fields = {'t', now, 'p', ARGV[1], 'c', ARGV[7]}
if key ~= '' then
  fields[#fields + 1] = 'd'
  fields[#fields + 1] = key
  redis.call('HSET', KEYS[3], key, seq)
end
if ARGV[6] ~= '' then
  fields[#fields + 1] = 'o'
  fields[#fields + 1] = ARGV[6]
end
redis.call('XADD', KEYS[2], seq .. '-0', unpack(fields))
local freed = {}
trim_len(KEYS[2], KEYS[3], tonumber(ARGV[2]), freed)
trim_age(KEYS[2], KEYS[3], now - ttl, freed)
for i = 1, 3 do redis.call('PEXPIRE', KEYS[i], ttl) end
return {seq, e, 0, flat(freed)}
";

/// Reserves store usage for an append, or for a stream's first position.
/// KEYS: the six usage keys (streams by activity, bytes per stream, byte
/// total, pairs by activity, bytes per pair, bytes per owner). ARGV:
/// stream, cost, ttl_ms, max_streams, max_bytes, max_user_bytes (0: no
/// limit), owner (`''`: none), the cost of a new stream, the cost of its
/// entries key (charged with its first append, flagged by the field
/// `<stream>\t`), the cost of a new owner–stream pair, and `1` to count
/// without asking the limits (a position for nobody). Returns 0
/// (reserved), 1 (streams limit), 2 (bytes limit) or 3 (owner's share).
const RESERVE: &str = r"
local now = now_ms()
local ttl = tonumber(ARGV[3])
local cutoff = now - ttl
local function forget(s)
  local b = tonumber(redis.call('HGET', KEYS[2], s) or '0')
  redis.call('HDEL', KEYS[2], s, s .. '\t')
  redis.call('ZREM', KEYS[1], s)
  if b > 0 then redis.call('DECRBY', KEYS[3], b) end
end
local function forget_pair(p)
  local b = tonumber(redis.call('HGET', KEYS[5], p) or '0')
  redis.call('HDEL', KEYS[5], p)
  redis.call('ZREM', KEYS[4], p)
  local o = string.match(p, '^(.-)\n')
  if o and b > 0 and redis.call('HINCRBY', KEYS[6], o, -b) <= 0 then
    redis.call('HDEL', KEYS[6], o)
  end
end
for _, s in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. cutoff, 'LIMIT', 0, 64)) do
  forget(s)
end
for _, p in ipairs(redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', '(' .. cutoff, 'LIMIT', 0, 64)) do
  forget_pair(p)
end
local s = ARGV[1]
local owner = ARGV[7]
local pair = owner .. '\n' .. s
local seen = redis.call('ZSCORE', KEYS[1], s)
if seen and tonumber(seen) < cutoff then
  forget(s)
  seen = false
end
if owner ~= '' then
  local ps = redis.call('ZSCORE', KEYS[4], pair)
  if ps and tonumber(ps) < cutoff then forget_pair(pair) end
end
local cost = tonumber(ARGV[2])
local appending = cost > 0
if not seen then cost = cost + tonumber(ARGV[8]) end
local new_entries = appending and redis.call('HEXISTS', KEYS[2], s .. '\t') == 0
if new_entries then cost = cost + tonumber(ARGV[9]) end
local charge_owner = owner ~= '' and cost > 0
if charge_owner and redis.call('HEXISTS', KEYS[5], pair) == 0 then
  cost = cost + tonumber(ARGV[10])
end
local max_streams = tonumber(ARGV[4])
local admit = ARGV[11] == '1'
if not admit and not seen and max_streams > 0 and redis.call('ZCARD', KEYS[1]) >= max_streams then
  return 1
end
local total = tonumber(redis.call('GET', KEYS[3]) or '0')
local max_bytes = tonumber(ARGV[5])
if not admit and max_bytes > 0 and total + cost > max_bytes then return 2 end
local max_user = tonumber(ARGV[6])
if not admit and owner ~= '' and max_user > 0 and cost > 0 then
  local held = tonumber(redis.call('HGET', KEYS[6], owner) or '0')
  if held + cost > max_user then return 3 end
end
redis.call('ZADD', KEYS[1], now, s)
if cost > 0 then
  redis.call('HINCRBY', KEYS[2], s, cost)
  redis.call('INCRBY', KEYS[3], cost)
end
if new_entries then redis.call('HSET', KEYS[2], s .. '\t', 1) end
if charge_owner then
  redis.call('ZADD', KEYS[4], now, pair)
  redis.call('HINCRBY', KEYS[5], pair, cost)
  redis.call('HINCRBY', KEYS[6], owner, cost)
end
for i = 1, 6 do redis.call('PEXPIRE', KEYS[i], ttl) end
return 0
";

/// KEYS: meta, dedup index. ARGV: dedup key. Returns {seq, epoch} of a
/// dedup key's original, or nil.
const LOOKUP: &str = r"
local seen = redis.call('HGET', KEYS[2], ARGV[1])
local e = redis.call('HGET', KEYS[1], 'e')
if seen and e then return {tonumber(seen), e} end
return false
";

/// Gives back usage bytes. KEYS: the six usage keys. ARGV: stream, then
/// owner (`''`: none) and bytes, repeated.
const SETTLE: &str = r"
local s = ARGV[1]
for i = 2, #ARGV - 1, 2 do
  local o = ARGV[i]
  local f = tonumber(ARGV[i + 1])
  local b = redis.call('HGET', KEYS[2], s)
  if b then
    local c = math.min(f, tonumber(b))
    redis.call('HINCRBY', KEYS[2], s, -c)
    redis.call('DECRBY', KEYS[3], c)
  end
  if o ~= '' then
    local p = o .. '\n' .. s
    local pb = redis.call('HGET', KEYS[5], p)
    if pb then
      local c = math.min(f, tonumber(pb))
      if redis.call('HINCRBY', KEYS[5], p, -c) <= 0 then
        redis.call('HDEL', KEYS[5], p)
        redis.call('ZREM', KEYS[4], p)
      end
      if redis.call('HINCRBY', KEYS[6], o, -c) <= 0 then
        redis.call('HDEL', KEYS[6], o)
      end
    end
  end
end
return 0
";

/// KEYS: meta, entries, dedup index. ARGV: fresh epoch, ttl_ms. Returns
/// {seq, epoch}.
const HEAD: &str = r"
local e = meta(KEYS[1], KEYS[2], KEYS[3], ARGV[1])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
return {tonumber(redis.call('HGET', KEYS[1], 's')), e}
";

/// KEYS: meta, entries, dedup index. ARGV: after, limit, ttl_ms. Returns
/// {epoch, first_seq, last_seq, entries, {owner, bytes trimmed, …}}, or
/// {} when the stream has no position (a read creates none: `head` does,
/// counted).
const READ: &str = r"
local e = redis.call('HGET', KEYS[1], 'e')
if not e then return {} end
local freed = {}
trim_age(KEYS[2], KEYS[3], now_ms() - tonumber(ARGV[3]), freed)
local last = tonumber(redis.call('HGET', KEYS[1], 's'))
local first = last + 1
local head = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 1)
if #head > 0 then first = tonumber(string.match(head[1][1], '^(%d+)')) end
local from = (tonumber(ARGV[1]) + 1) .. '-0'
local entries = redis.call('XRANGE', KEYS[2], from, '+', 'COUNT', tonumber(ARGV[2]))
return {e, first, last, entries, flat(freed)}
";

/// What a stream's entries key costs Redis by itself, counted with its
/// first append: Redis keeps the newest entries of a stream in a listpack
/// node allocated at 4 KiB, so even a one-entry stream holds that much
/// (measured with `MEMORY USAGE`: 4,736 bytes).
const ENTRIES_KEY_COST_BYTES: u64 = 4 * 1024 + 640;

/// What a stream's position costs here: [`STREAM_COST_BYTES`], plus its
/// name, which Redis stores four times (in the meta key, the entries and
/// dedup keys, and the usage index).
fn stream_cost(stream: &StreamName) -> u64 {
    STREAM_COST_BYTES + 4 * stream.key().len() as u64
}

/// What an owner–stream pair costs in the usage index (a sorted-set member
/// and a hash field, each naming both), counted when the pair first holds
/// bytes.
fn pair_cost(owner: &str, stream: &StreamName) -> u64 {
    128 + 2 * (owner.len() + stream.key().len()) as u64
}

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
        let r = &self.retention;
        r.max_streams > 0 || r.max_bytes > 0 || r.max_user_bytes > 0
    }

    /// Reserves `cost` bytes for `owner` on `stream` (plus the stream's own
    /// cost if it is new to the usage), or refuses with
    /// [`ClusterError::StorageFull`] or [`ClusterError::QuotaExceeded`]
    /// (never when `admit`: counted only). A zero `cost` (a `head`)
    /// refreshes the stream's activity.
    async fn reserve(
        &self,
        stream: &StreamName,
        cost: u64,
        owner: Option<&str>,
        admit: bool,
    ) -> Result<(), ClusterError> {
        if !self.limited() {
            return Ok(());
        }
        let [t, b, total, ot, ob, ou] = self.keys.stream_usage();
        let mut call = self.reserve.key(t);
        call.key(b)
            .key(total)
            .key(ot)
            .key(ob)
            .key(ou)
            .arg(stream.key())
            .arg(cost)
            .arg(self.ttl_ms())
            .arg(self.retention.max_streams)
            .arg(self.retention.max_bytes)
            .arg(self.retention.max_user_bytes)
            .arg(owner.unwrap_or(""))
            .arg(stream_cost(stream))
            .arg(ENTRIES_KEY_COST_BYTES)
            .arg(owner.map_or(0, |o| pair_cost(o, stream)))
            .arg(if admit { "1" } else { "0" });
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
            3 => Err(ClusterError::QuotaExceeded {
                max: self.retention.max_user_bytes,
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
        call.key(self.keys.stream_dedup(stream)).arg(key);
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

    /// Gives back what `stream`'s trimmed entries (or a duplicate that
    /// stored nothing) counted, per owner (`""`: counted for nobody).
    async fn settle(
        &self,
        stream: &StreamName,
        freed: &[(String, u64)],
    ) -> Result<(), ClusterError> {
        if !self.limited() || freed.iter().all(|(_, n)| *n == 0) {
            return Ok(());
        }
        let [t, b, total, ot, ob, ou] = self.keys.stream_usage();
        let mut call = self.settle.key(t);
        call.key(b)
            .key(total)
            .key(ot)
            .key(ob)
            .key(ou)
            .arg(stream.key());
        for (owner, n) in freed {
            call.arg(owner.as_str()).arg(*n);
        }
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

    /// Runs the read script once: `None` when the stream has no position.
    async fn read_once(
        &self,
        stream: &StreamName,
        after: u64,
        limit: usize,
    ) -> Result<Option<ReadBatch>, ClusterError> {
        let mut call = self.read.key(self.keys.stream_meta(stream));
        call.key(self.keys.stream_entries(stream))
            .key(self.keys.stream_dedup(stream))
            .arg(after)
            .arg(limit.max(1))
            .arg(self.ttl_ms());
        let reply: Value = self
            .conn
            .call("stream read", |mut c| async move {
                call.invoke_async(&mut c).await
            })
            .await?;
        let mut r = items(reply)?.into_iter();
        let Some(epoch) = r.next() else {
            return Ok(None);
        };
        let (Some(first), Some(last), Some(list), Some(freed)) =
            (r.next(), r.next(), r.next(), r.next())
        else {
            return Err(corrupt("read reply"));
        };
        self.settle(stream, &freed_list(freed)?).await?;
        Ok(Some(ReadBatch {
            epoch: as_string(&epoch)?,
            first_seq: as_u64(&first)?,
            last_seq: as_u64(&last)?,
            entries: entries(list)?,
        }))
    }
}

/// Parses a script's `{owner, bytes, …}` list.
fn freed_list(v: Value) -> Result<Vec<(String, u64)>, ClusterError> {
    let flat = items(v)?;
    flat.chunks(2)
        .map(|pair| match pair {
            [owner, n] => Ok((as_string(owner)?, as_u64(n)?)),
            _ => Err(corrupt("freed list")),
        })
        .collect()
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
    async fn append_as(
        &self,
        stream: &StreamName,
        payload: Bytes,
        dedup: Option<&str>,
        owner: Option<&str>,
    ) -> Result<Appended, ClusterError> {
        let cost = entry_cost(payload.len(), dedup, owner);
        if let Err(full) = self.reserve(stream, cost, owner, false).await {
            // A retry of a message stored before the store (or the
            // sender's share) filled up still learns where it went.
            return match dedup {
                Some(key) => self.original(stream, key).await?.ok_or(full),
                None => Err(full),
            };
        }
        let mut call = self.append.key(self.keys.stream_meta(stream));
        call.key(self.keys.stream_entries(stream))
            .key(self.keys.stream_dedup(stream))
            .arg(payload.as_ref())
            .arg(self.retention.max_len.max(1))
            .arg(self.ttl_ms())
            .arg(new_epoch())
            .arg(dedup.unwrap_or(""))
            .arg(owner.unwrap_or(""))
            .arg(cost);
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
        let mut r = items(reply)?.into_iter();
        let (Some(seq), Some(epoch), Some(dup), Some(freed)) =
            (r.next(), r.next(), r.next(), r.next())
        else {
            return Err(corrupt("append reply"));
        };
        let a = Appended {
            seq: as_u64(&seq)?,
            epoch: as_string(&epoch)?,
            duplicate: as_u64(&dup)? == 1,
        };
        let mut freed = freed_list(freed)?;
        // A duplicate stored nothing: its whole reservation comes back.
        if a.duplicate {
            freed.push((owner.unwrap_or("").to_owned(), cost));
        }
        self.settle(stream, &freed).await?;
        Ok(a)
    }

    async fn head_as(
        &self,
        stream: &StreamName,
        owner: Option<&str>,
    ) -> Result<StreamPos, ClusterError> {
        // Counted before it exists: a new stream's position is refused
        // when the store (or the owner's share) is full, unless it is asked
        // for nobody (see the trait).
        self.reserve(stream, 0, owner, owner.is_none()).await?;
        let mut call = self.head.key(self.keys.stream_meta(stream));
        call.key(self.keys.stream_entries(stream))
            .key(self.keys.stream_dedup(stream))
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
        if let Some(batch) = self.read_once(stream, after, limit).await? {
            return Ok(batch);
        }
        // No position yet: create one the way `head` does (counted), so
        // the epoch this read reports stays valid.
        let pos = self.head(stream).await?;
        Ok(match self.read_once(stream, after, limit).await? {
            Some(batch) => batch,
            // Gone again at once (a retention age shorter than the round
            // trip): report the position just created, empty.
            None => ReadBatch {
                epoch: pos.epoch,
                first_seq: pos.seq + 1,
                last_seq: pos.seq,
                entries: Vec::new(),
            },
        })
    }
}
