//! The wsring wire protocol, shared by nodes, the gateway, the Rust client and
//! the bench tool. `docs/PROTOCOL.md` is the human-readable contract; this crate
//! is its executable form.
//!
//! # Layout
//! * [`ids`] — validation of user ids, room names and node ids.
//! * [`client`] — frames a client sends ([`ClientFrame`]), serialised by
//!   clients and parsed by nodes with precise `bad_request` errors.
//! * [`server`] — frames the server sends: borrowed [`ServerFrame`] and
//!   [`MessageFrame`] (the node's allocation-free send path, rendering a
//!   `message` frame once for many recipients) and [`OwnedServerFrame`]
//!   (what clients parse; it serialises through the borrowed types).
//! * [`connect`] — the connect URL query (`user`, `resume`, `epoch`).
//! * [`depth`] — the nesting limit on client JSON.
//! * [`close`] — the RFC 6455 close codes wsring uses and why.
//! * [`envelope`] — what travels between nodes through the broker.
//! * [`api`] — the HTTP contract: routing mode, epoch header, API request
//!   bodies and answers.
//!
//! `docs/PROTOCOL.md`'s frame examples are parsed and re-serialised by
//! `tests/protocol_doc.rs`, so the document and these types cannot drift.

pub mod api;
pub mod client;
pub mod close;
pub mod connect;
pub mod depth;
pub mod envelope;
pub mod ids;
pub mod server;

pub use api::{
    BroadcastBody, DisconnectBody, EPOCH_HEADER, HistoryQuery, HistoryStream, InvalidBody,
    PublishBody, RING_EPOCH_PARAM, RoomUserBody, Routing, SendBody, located_url,
};
pub use client::{ClientFrame, MsgId, ParseError, SERVER_ADDRESS};
pub use connect::{ConnectParams, query_token};
pub use depth::{MAX_JSON_DEPTH, check_depth};
pub use envelope::{Envelope, EnvelopeError, Target};
pub use ids::{IdError, validate_node_id, validate_room, validate_user};
pub use server::{ErrorCode, MessageFrame, OwnedServerFrame, PresenceEvent, ServerFrame};

/// Largest client frame accepted unless `--max-message-bytes` says otherwise.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// Initial read buffer of a client connection (the Rust client, the bench).
///
/// tungstenite's default is 128 KiB, and it zeroes the free part before
/// every socket read: with thousands of clients in one process that memset
/// was most of the process's CPU, and 128 KiB of memory per connection.
/// Server frames are small; a larger message still arrives whole, as the
/// buffer grows for it.
pub const CLIENT_READ_BUFFER_BYTES: usize = 8 * 1024;
