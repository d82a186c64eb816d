//! [`ServerRooms`] on JetStream KV: bucket `{ns}_rooms` (history 1, no
//! TTL), one key per user (the user id escaped with [`kv_key`]) holding the
//! user's rooms as a sorted JSON array. Changes are revision-checked
//! read-modify-writes (`create` for a user without rooms, `update` at the
//! revision read, a purge at that revision when the last room goes), retried
//! when another writer got in between, so concurrent adds never take a user
//! past the bound.

use async_nats::Client;
use async_nats::jetstream::kv::{
    self, CreateErrorKind, EntryErrorKind, Operation, UpdateErrorKind,
};
use async_trait::async_trait;
use bytes::Bytes;
use std::time::Duration;
use wsring_cluster::{ClusterError, RoomAdd, ServerRooms};

use crate::connect::fail;
use crate::names::{kv_key, rooms_bucket};
use crate::setup::{context, ensure_kv};

/// Rounds of read-then-conditional-write before giving up on a contended
/// user (each lost round means another writer got in between).
const CAS_ROUNDS: usize = 16;

/// Server-side rooms in a JetStream KV bucket.
pub struct NatsServerRooms {
    client: Client,
    kv: kv::Store,
}

/// What a conditional write found.
enum Write {
    Done,
    Raced,
}

impl NatsServerRooms {
    /// Opens (creating or reconciling) the bucket of `namespace`.
    pub(crate) async fn open(
        client: Client,
        namespace: &str,
        replicas: usize,
    ) -> Result<NatsServerRooms, ClusterError> {
        let js = context(&client);
        let kv = ensure_kv(
            &js,
            &client,
            &rooms_bucket(namespace),
            format!("wsring server-side rooms per user ({namespace})"),
            Duration::ZERO,
            replicas,
        )
        .await?;
        Ok(NatsServerRooms { client, kv })
    }

    /// The user's rooms and the revision they were read at (`None`: none).
    async fn read(&self, key: &str) -> Result<(Vec<String>, Option<u64>), ClusterError> {
        match self.kv.entry(key).await {
            Ok(Some(e)) if e.operation == Operation::Put => {
                let rooms: Vec<String> = serde_json::from_slice(&e.value).map_err(|err| {
                    ClusterError::backend(format!("server rooms of {key}: {err}"))
                })?;
                Ok((rooms, Some(e.revision)))
            }
            Ok(_) => Ok((Vec::new(), None)),
            Err(e) => Err(fail(
                &self.client,
                format!("reading server rooms {key}"),
                e.kind() == EntryErrorKind::TimedOut,
                e,
            )),
        }
    }

    /// Writes `rooms` if the key is still at `revision`.
    async fn write(
        &self,
        key: &str,
        rooms: &[String],
        revision: Option<u64>,
    ) -> Result<Write, ClusterError> {
        if rooms.is_empty() {
            return match self.kv.purge_expect_revision(key, revision).await {
                Ok(()) => Ok(Write::Done),
                Err(e) if e.kind() == UpdateErrorKind::WrongLastRevision => Ok(Write::Raced),
                Err(e) => Err(fail(
                    &self.client,
                    format!("clearing server rooms {key}"),
                    e.kind() == UpdateErrorKind::TimedOut,
                    e,
                )),
            };
        }
        let value = Bytes::from(serde_json::to_vec(rooms).unwrap_or_default());
        match revision {
            Some(rev) => match self.kv.update(key, value, rev).await {
                Ok(_) => Ok(Write::Done),
                Err(e) if e.kind() == UpdateErrorKind::WrongLastRevision => Ok(Write::Raced),
                Err(e) => Err(fail(
                    &self.client,
                    format!("updating server rooms {key}"),
                    e.kind() == UpdateErrorKind::TimedOut,
                    e,
                )),
            },
            None => match self.kv.create(key, value).await {
                Ok(_) => Ok(Write::Done),
                Err(e) if e.kind() == CreateErrorKind::AlreadyExists => Ok(Write::Raced),
                Err(e) => Err(fail(
                    &self.client,
                    format!("creating server rooms {key}"),
                    e.kind() == CreateErrorKind::Publish,
                    e,
                )),
            },
        }
    }
}

#[async_trait]
impl ServerRooms for NatsServerRooms {
    async fn add(&self, user: &str, room: &str, max: usize) -> Result<RoomAdd, ClusterError> {
        let key = kv_key(user);
        for _ in 0..CAS_ROUNDS {
            let (mut rooms, rev) = self.read(&key).await?;
            let at = match rooms.binary_search_by(|r| r.as_str().cmp(room)) {
                Ok(_) => return Ok(RoomAdd::Present),
                Err(at) => at,
            };
            if rooms.len() >= max {
                return Ok(RoomAdd::Full);
            }
            rooms.insert(at, room.to_owned());
            if let Write::Done = self.write(&key, &rooms, rev).await? {
                return Ok(RoomAdd::Added);
            }
        }
        Err(ClusterError::Contention(CAS_ROUNDS as u32))
    }

    async fn remove(&self, user: &str, room: &str) -> Result<bool, ClusterError> {
        let key = kv_key(user);
        for _ in 0..CAS_ROUNDS {
            let (mut rooms, rev) = self.read(&key).await?;
            let Ok(at) = rooms.binary_search_by(|r| r.as_str().cmp(room)) else {
                return Ok(false);
            };
            rooms.remove(at);
            if let Write::Done = self.write(&key, &rooms, rev).await? {
                return Ok(true);
            }
        }
        Err(ClusterError::Contention(CAS_ROUNDS as u32))
    }

    async fn list(&self, user: &str) -> Result<Vec<String>, ClusterError> {
        Ok(self.read(&kv_key(user)).await?.0)
    }
}
