//! [`ServerRooms`] on Redis: one set per user, `{<ns>:u:<user>}:rooms`
//! (the user's stream hash tag, so on a Redis Cluster a user's data shares
//! one slot). An add is one Lua script (member check, size check, `SADD`),
//! so concurrent adds never take a user past the bound. On a Redis Cluster
//! a change is acknowledged once a replica has it, like a stream append.

use async_trait::async_trait;
use redis::Script;
use wsring_cluster::{ClusterError, RoomAdd, ServerRooms};

use crate::Conn;
use crate::keys::Keys;

/// KEYS: the user's set. ARGV: room, max. Returns 1 added, 0 already
/// there, -1 full.
const ADD: &str = r"
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 1 then return 0 end
if redis.call('SCARD', KEYS[1]) >= tonumber(ARGV[2]) then return -1 end
redis.call('SADD', KEYS[1], ARGV[1])
return 1
";

/// Server-side rooms on Redis.
pub struct RedisServerRooms {
    conn: Conn,
    keys: Keys,
    add: Script,
}

impl RedisServerRooms {
    /// Connects, failing fast if Redis is unreachable.
    pub async fn connect(client: redis::Client, keys: Keys) -> Result<Self, ClusterError> {
        let conn = Conn::connect(&client, "rooms").await?;
        Ok(Self::with_conn(conn, keys))
    }

    /// The store on an open connection (one server or a cluster).
    pub(crate) fn with_conn(conn: Conn, keys: Keys) -> Self {
        RedisServerRooms {
            conn,
            keys,
            add: Script::new(ADD),
        }
    }
}

#[async_trait]
impl ServerRooms for RedisServerRooms {
    async fn add(&self, user: &str, room: &str, max: usize) -> Result<RoomAdd, ClusterError> {
        let key = self.keys.server_rooms(user);
        let mut call = self.add.key(&key);
        call.arg(room).arg(max);
        let outcome: i64 = self
            .conn
            .call("server room add", |mut c| async move {
                call.invoke_async(&mut c).await
            })
            .await?;
        match outcome {
            1 => {
                self.conn.wait_replicated(&key).await?;
                Ok(RoomAdd::Added)
            }
            0 => Ok(RoomAdd::Present),
            -1 => Ok(RoomAdd::Full),
            other => Err(ClusterError::backend(format!(
                "unexpected reply {other} from the server room script"
            ))),
        }
    }

    async fn remove(&self, user: &str, room: &str) -> Result<bool, ClusterError> {
        let key = self.keys.server_rooms(user);
        let k = key.clone();
        let room = room.to_owned();
        let removed: i64 = self
            .conn
            .call("server room remove", |mut c| async move {
                redis::cmd("SREM")
                    .arg(k)
                    .arg(room)
                    .query_async(&mut c)
                    .await
            })
            .await?;
        if removed > 0 {
            self.conn.wait_replicated(&key).await?;
        }
        Ok(removed > 0)
    }

    async fn list(&self, user: &str) -> Result<Vec<String>, ClusterError> {
        let key = self.keys.server_rooms(user);
        let mut rooms: Vec<String> = self
            .conn
            .call("server room list", |mut c| async move {
                redis::cmd("SMEMBERS").arg(key).query_async(&mut c).await
            })
            .await?;
        rooms.sort();
        Ok(rooms)
    }
}
