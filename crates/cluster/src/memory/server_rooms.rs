//! In-memory [`ServerRooms`]: a sorted set of rooms per user behind a
//! mutex, bounded per user by the caller's `max` and in total by
//! [`MAX_MEMBERSHIPS`], so a dev cluster's memory stays bounded whatever
//! the API is asked to store.

use async_trait::async_trait;
use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use super::lock;
use crate::error::ClusterError;
use crate::server_rooms::{RoomAdd, ServerRooms};

/// Most (user, room) memberships one in-memory store holds: with names of
/// at most 128 bytes, a few tens of MiB at worst.
pub const MAX_MEMBERSHIPS: usize = 100_000;

/// Server-side rooms for a single process.
#[derive(Default)]
pub struct MemoryServerRooms {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    users: HashMap<String, BTreeSet<String>>,
    total: usize,
}

#[async_trait]
impl ServerRooms for MemoryServerRooms {
    async fn add(&self, user: &str, room: &str, max: usize) -> Result<RoomAdd, ClusterError> {
        let mut st = lock(&self.state);
        let have = st.users.get(user);
        if have.is_some_and(|r| r.contains(room)) {
            return Ok(RoomAdd::Present);
        }
        if have.map_or(0, BTreeSet::len) >= max {
            return Ok(RoomAdd::Full);
        }
        if st.total >= MAX_MEMBERSHIPS {
            return Err(ClusterError::backend(format!(
                "the in-memory server-side room store is full ({MAX_MEMBERSHIPS} memberships)"
            )));
        }
        st.users
            .entry(user.to_owned())
            .or_default()
            .insert(room.to_owned());
        st.total += 1;
        Ok(RoomAdd::Added)
    }

    async fn remove(&self, user: &str, room: &str) -> Result<bool, ClusterError> {
        let mut st = lock(&self.state);
        let Some(rooms) = st.users.get_mut(user) else {
            return Ok(false);
        };
        let removed = rooms.remove(room);
        if rooms.is_empty() {
            st.users.remove(user);
        }
        if removed {
            st.total -= 1;
        }
        Ok(removed)
    }

    async fn list(&self, user: &str) -> Result<Vec<String>, ClusterError> {
        Ok(lock(&self.state)
            .users
            .get(user)
            .map(|r| r.iter().cloned().collect())
            .unwrap_or_default())
    }
}
