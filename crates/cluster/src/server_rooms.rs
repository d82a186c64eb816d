//! Server-side room memberships: the rooms the server (through
//! `POST /api/rooms/{room}/join`) put a user in, kept in the cluster backend
//! so that every session of the user joins them again on every connect,
//! whichever node it lands on, until `POST /api/rooms/{room}/leave` removes
//! them.
//!
//! One small set of room names per user, bounded by the caller's `max` (the
//! node's `--max-server-rooms`): at most that many names of at most 128
//! bytes each per user. A user with no server-side room stores nothing.

use async_trait::async_trait;

use crate::error::ClusterError;

/// What [`ServerRooms::add`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoomAdd {
    /// The room was added.
    Added,
    /// The user already had the room; nothing changed.
    Present,
    /// The user already has `max` rooms; nothing changed.
    Full,
}

/// Storage of server-side room memberships. Concurrent changes of one user
/// never lose each other, and concurrent adds never leave a user with more
/// than `max` rooms: each add that would is refused with [`RoomAdd::Full`]
/// (a backend may store such an add for a moment and undo it).
#[async_trait]
pub trait ServerRooms: Send + Sync + 'static {
    /// Adds `room` to `user`'s rooms, unless the user already has `max`.
    async fn add(&self, user: &str, room: &str, max: usize) -> Result<RoomAdd, ClusterError>;

    /// Removes `room` from `user`'s rooms; whether it was there.
    async fn remove(&self, user: &str, room: &str) -> Result<bool, ClusterError>;

    /// `user`'s rooms, sorted.
    async fn list(&self, user: &str) -> Result<Vec<String>, ClusterError>;
}
