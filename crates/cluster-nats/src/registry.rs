//! The membership [`Registry`] on JetStream KV.
//!
//! * Bucket `{ns}_members` (history 1, no TTL) holds the membership document
//!   under key `doc`. The KV revision (the stream sequence of the key's last
//!   write) is the CAS version: `create` for "must not exist yet", `update`
//!   with the expected revision otherwise. Deleted or purged means absent.
//! * Bucket `{ns}_heartbeats` holds one key per node (the node id, escaped
//!   with [`kv_key`]) and has `max_age = ttl`: JetStream itself deletes a
//!   heartbeat that was not refreshed within the TTL, so the bucket's expiry
//!   *is* the failure detector, whoever looks. A record is
//!   `<incarnation>\n<stats JSON>`. `claim` takes the next incarnation from
//!   the counter key `incarnation` of the members bucket (a revision-checked
//!   increment) and then `create`s the record (fails on a live key);
//!   `refresh` reads the record and `update`s it at the revision it read, only
//!   while the caller's incarnation holds it; `release` purges at the revision
//!   it read, under the same condition. A write between the read and the
//!   revision-checked write makes the latter fail, so nothing is ever written
//!   over another incarnation's record.
//!
//! The TTL is a property of the bucket, not of each write: the `ttl` passed to
//! [`connect_registry`](crate::connect_registry) sets it (and corrects an
//! existing bucket with another one); the per-call `ttl` arguments of the
//! trait are ignored. nats-server 2.9 has no per-message TTL, and wsring uses
//! one TTL per cluster anyway.
//!
//! Expiry promptness: nats-server 2.9.10 removes expired messages from a
//! timer armed for the oldest message's deadline, so a heartbeat disappears
//! within a few tens of milliseconds after `max_age` (measured 1–35 ms for
//! TTLs of 0.8–2 s; the `heartbeat_expiry_is_prompt` test keeps checking it).
//! That is well inside the protocol's slack (reaping waits TTL + one reap
//! period), so no client-side timestamp comparison is layered on top: it
//! would need the server's clock and add a second source of truth.

use async_nats::Client;
use async_nats::jetstream::kv::{
    self, CreateErrorKind, EntryErrorKind, Operation, UpdateErrorKind,
};
use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use std::time::Duration;
use tracing::debug;
use wsring_cluster::{ClusterError, Heartbeat, Lease, Registry, Versioned};

use crate::connect::fail;
use crate::names::{heartbeats_bucket, kv_key, members_bucket};
use crate::setup::{context, ensure_kv};

/// The key of the membership document in the members bucket.
const DOC_KEY: &str = "doc";

/// The key of the incarnation counter in the members bucket.
const INCARNATION_KEY: &str = "incarnation";

/// Rounds of read-then-conditional-write before giving up on a contended
/// record (each lost round means another writer got in between).
const CAS_ROUNDS: usize = 16;

fn encode_heartbeat(incarnation: u64, value: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(value.len() + 21);
    out.extend_from_slice(incarnation.to_string().as_bytes());
    out.push(b'\n');
    out.extend_from_slice(value);
    Bytes::from(out)
}

/// Splits a record; one in another shape reads as incarnation 0.
fn decode_heartbeat(raw: &Bytes) -> Heartbeat {
    let parsed = raw.iter().position(|&b| b == b'\n').and_then(|i| {
        let inc = std::str::from_utf8(&raw[..i]).ok()?.parse().ok()?;
        Some(Heartbeat {
            incarnation: inc,
            value: raw.slice(i + 1..),
        })
    });
    parsed.unwrap_or_else(|| Heartbeat {
        incarnation: 0,
        value: raw.clone(),
    })
}

/// Membership storage in two JetStream KV buckets of one namespace.
pub struct NatsRegistry {
    client: Client,
    members: kv::Store,
    beats: kv::Store,
}

impl NatsRegistry {
    /// Opens (creating or reconciling) both buckets of `namespace` on
    /// `client`, with heartbeat TTL `ttl` and `replicas` copies of each.
    pub(crate) async fn open(
        client: Client,
        namespace: &str,
        ttl: Duration,
        replicas: usize,
    ) -> Result<NatsRegistry, ClusterError> {
        if ttl.is_zero() {
            return Err(ClusterError::backend(
                "registry TTL must be greater than zero (a zero max_age never expires)",
            ));
        }
        let js = context(&client);
        let members = ensure_kv(
            &js,
            &client,
            &members_bucket(namespace),
            format!("wsring membership document ({namespace})"),
            Duration::ZERO,
            -1,
            replicas,
        )
        .await?;
        let beats = ensure_kv(
            &js,
            &client,
            &heartbeats_bucket(namespace),
            format!("wsring node heartbeats ({namespace}); max_age is the TTL"),
            ttl,
            -1,
            replicas,
        )
        .await?;
        Ok(NatsRegistry {
            client,
            members,
            beats,
        })
    }
}

impl NatsRegistry {
    /// The live record under `key` and its revision.
    async fn live_beat(&self, key: &str) -> Result<Option<(Heartbeat, u64)>, ClusterError> {
        match self.beats.entry(key).await {
            Ok(Some(e)) if e.operation == Operation::Put => {
                Ok(Some((decode_heartbeat(&e.value), e.revision)))
            }
            Ok(_) => Ok(None),
            Err(e) => Err(fail(
                &self.client,
                format!("reading heartbeat {key}"),
                e.kind() == EntryErrorKind::TimedOut,
                e,
            )),
        }
    }

    /// Takes the next incarnation from the counter (a revision-checked
    /// increment, retried when another claim got in between).
    async fn next_incarnation(&self) -> Result<u64, ClusterError> {
        for _ in 0..CAS_ROUNDS {
            let current = match self.members.entry(INCARNATION_KEY).await {
                Ok(Some(e)) if e.operation == Operation::Put => {
                    let n = std::str::from_utf8(&e.value)
                        .ok()
                        .and_then(|s| s.parse::<u64>().ok())
                        .unwrap_or(0);
                    Some((n, e.revision))
                }
                Ok(_) => None,
                Err(e) => {
                    return Err(fail(
                        &self.client,
                        "reading the incarnation counter",
                        e.kind() == EntryErrorKind::TimedOut,
                        e,
                    ));
                }
            };
            let next = current.map_or(1, |(n, _)| n + 1);
            let value = Bytes::from(next.to_string());
            let written = match current {
                Some((_, rev)) => match self.members.update(INCARNATION_KEY, value, rev).await {
                    Ok(_) => true,
                    Err(e) if e.kind() == UpdateErrorKind::WrongLastRevision => false,
                    Err(e) => {
                        return Err(fail(
                            &self.client,
                            "advancing the incarnation counter",
                            e.kind() == UpdateErrorKind::TimedOut,
                            e,
                        ));
                    }
                },
                None => match self.members.create(INCARNATION_KEY, value).await {
                    Ok(_) => true,
                    Err(e) if e.kind() == CreateErrorKind::AlreadyExists => false,
                    Err(e) => {
                        return Err(fail(
                            &self.client,
                            "creating the incarnation counter",
                            e.kind() == CreateErrorKind::Publish,
                            e,
                        ));
                    }
                },
            };
            if written {
                return Ok(next);
            }
        }
        Err(ClusterError::Contention(CAS_ROUNDS as u32))
    }
}

#[async_trait]
impl Registry for NatsRegistry {
    async fn load(&self) -> Result<Option<Versioned<Bytes>>, ClusterError> {
        match self.members.entry(DOC_KEY).await {
            Ok(Some(e)) if e.operation == Operation::Put => Ok(Some(Versioned {
                version: e.revision,
                value: e.value,
            })),
            Ok(_) => Ok(None),
            Err(e) => Err(fail(
                &self.client,
                "reading the membership document",
                e.kind() == EntryErrorKind::TimedOut,
                e,
            )),
        }
    }

    async fn store(&self, expected: Option<u64>, doc: Bytes) -> Result<Option<u64>, ClusterError> {
        match expected {
            // `create` also succeeds over a deleted or purged document.
            None => match self.members.create(DOC_KEY, doc).await {
                Ok(rev) => Ok(Some(rev)),
                Err(e) if e.kind() == CreateErrorKind::AlreadyExists => Ok(None),
                Err(e) => Err(fail(
                    &self.client,
                    "creating the membership document",
                    e.kind() == CreateErrorKind::Publish,
                    e,
                )),
            },
            Some(rev) => match self.members.update(DOC_KEY, doc, rev).await {
                Ok(rev) => Ok(Some(rev)),
                Err(e) if e.kind() == UpdateErrorKind::WrongLastRevision => Ok(None),
                Err(e) => Err(fail(
                    &self.client,
                    "updating the membership document",
                    e.kind() == UpdateErrorKind::TimedOut,
                    e,
                )),
            },
        }
    }

    async fn claim(
        &self,
        node: &str,
        value: Bytes,
        _ttl: Duration,
    ) -> Result<Option<u64>, ClusterError> {
        let key = kv_key(node);
        if self.live_beat(&key).await?.is_some() {
            return Ok(None);
        }
        let incarnation = self.next_incarnation().await?;
        // `create` succeeds over an absent, expired, deleted or purged key
        // and fails only when a live value is there.
        match self
            .beats
            .create(&key, encode_heartbeat(incarnation, &value))
            .await
        {
            Ok(_) => Ok(Some(incarnation)),
            Err(e) if e.kind() == CreateErrorKind::AlreadyExists => Ok(None),
            Err(e) => Err(fail(
                &self.client,
                format!("claiming heartbeat {key}"),
                e.kind() == CreateErrorKind::Publish,
                e,
            )),
        }
    }

    async fn refresh(
        &self,
        node: &str,
        incarnation: u64,
        value: Bytes,
        _ttl: Duration,
    ) -> Result<Lease, ClusterError> {
        let key = kv_key(node);
        let record = encode_heartbeat(incarnation, &value);
        for _ in 0..CAS_ROUNDS {
            let Some((beat, revision)) = self.live_beat(&key).await? else {
                return Ok(Lease::Expired);
            };
            if beat.incarnation != incarnation {
                return Ok(Lease::Taken(beat.incarnation));
            }
            match self.beats.update(&key, record.clone(), revision).await {
                Ok(_) => return Ok(Lease::Held),
                // Written meanwhile (a claim by a successor): look again.
                Err(e) if e.kind() == UpdateErrorKind::WrongLastRevision => continue,
                Err(e) => {
                    return Err(fail(
                        &self.client,
                        format!("refreshing heartbeat {key}"),
                        e.kind() == UpdateErrorKind::TimedOut,
                        e,
                    ));
                }
            }
        }
        Err(ClusterError::Contention(CAS_ROUNDS as u32))
    }

    async fn release(&self, node: &str, incarnation: u64) -> Result<(), ClusterError> {
        let key = kv_key(node);
        let Some((beat, revision)) = self.live_beat(&key).await? else {
            return Ok(());
        };
        if beat.incarnation != incarnation {
            return Ok(());
        }
        match self.beats.purge_expect_revision(&key, Some(revision)).await {
            Ok(()) => Ok(()),
            // Someone else wrote the record meanwhile: it is not ours to delete.
            Err(e) if e.kind() == UpdateErrorKind::WrongLastRevision => Ok(()),
            Err(e) => Err(fail(
                &self.client,
                format!("releasing heartbeat {key}"),
                e.kind() == UpdateErrorKind::TimedOut,
                e,
            )),
        }
    }

    async fn heartbeats(&self, nodes: &[String]) -> Result<Vec<Option<Heartbeat>>, ClusterError> {
        // One direct get per node, concurrently: a reap pass costs one round
        // trip, not one per member.
        futures::future::try_join_all(nodes.iter().map(|node| async move {
            let key = kv_key(node);
            match self.beats.entry(key.as_str()).await {
                Ok(Some(e)) if e.operation == Operation::Put => {
                    Ok(Some(decode_heartbeat(&e.value)))
                }
                Ok(_) => Ok(None),
                Err(e) => Err(fail(
                    &self.client,
                    format!("reading heartbeat {key}"),
                    e.kind() == EntryErrorKind::TimedOut,
                    e,
                )),
            }
        }))
        .await
    }

    async fn watch(&self) -> Result<BoxStream<'static, ()>, ClusterError> {
        let watch = self.members.watch(DOC_KEY).await.map_err(|e| {
            fail(
                &self.client,
                "watching the membership document",
                e.kind() == kv::WatchErrorKind::TimedOut,
                e,
            )
        })?;
        // An error ends the stream; the caller re-watches (and reloads).
        Ok(watch
            .take_while(|item| {
                if let Err(e) = item {
                    debug!(error = %e, "membership watch ended");
                }
                std::future::ready(item.is_ok())
            })
            .map(drop)
            .boxed())
    }
}
