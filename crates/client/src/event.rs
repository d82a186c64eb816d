//! What the application receives from a client's event stream.

use serde_json::Value;
pub use wsring_protocol::PresenceEvent;

/// A delivered `message` frame.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// Sender user, or `None` for server-side sends.
    pub from: Option<String>,
    /// Recipient, for direct messages.
    pub to: Option<String>,
    /// Room, for room messages.
    pub room: Option<String>,
    /// The payload.
    pub data: Value,
    /// Durable mode: position in its stream.
    pub seq: Option<u64>,
    /// Durable mode: the stream's epoch.
    pub epoch: Option<String>,
}

/// One thing that happened to the connection.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A session started (first connect or any reconnect).
    Connected {
        /// The node holding the session.
        node: String,
        /// Session id.
        session: String,
        /// Ring epoch.
        epoch: u64,
    },
    /// A message.
    Message(Message),
    /// A stream finished replaying after a (re)connect or join. With
    /// `complete: false` messages were lost from history: reload state.
    Resumed {
        /// `user` or `room:<name>`.
        stream: String,
        /// Whether every missed message was replayed.
        complete: bool,
        /// The stream position now.
        seq: u64,
    },
    /// The user moved to another node; the client reconnects by itself.
    Moved {
        /// The new ring epoch.
        epoch: u64,
        /// The server's suggested delay.
        retry_after_ms: u64,
    },
    /// The connection ended; the client reconnects by itself, unless the
    /// server closed it with an application code (4000–4999, e.g. 4000 from
    /// `POST /api/disconnect`): then this is the last event and the client
    /// is closed.
    Disconnected {
        /// The close code, if the server sent one.
        code: Option<u16>,
        /// The close reason or error text.
        reason: String,
    },
    /// A user entered (its first session anywhere) or left (its last) a room
    /// this client joined with [`crate::Client::join_with_presence`].
    Presence {
        /// The room.
        room: String,
        /// The user.
        user: String,
        /// `Join` or `Leave`.
        event: PresenceEvent,
    },
    /// The server put this user in a room (`POST /api/rooms/{room}/join`,
    /// or at connect for a room it put the user in earlier). The server
    /// joins it again on every connect; the client does not track it.
    Joined {
        /// The room.
        room: String,
    },
    /// The server took this user out of a room
    /// (`POST /api/rooms/{room}/leave`); the client forgets it too.
    Left {
        /// The room.
        room: String,
    },
    /// An `error` frame that answered no pending request.
    Error {
        /// Machine-readable code.
        code: String,
        /// Human-readable text.
        message: String,
    },
}
