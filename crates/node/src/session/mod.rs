//! One task per WebSocket session.
//!
//! * [`state`]: what the session knows (its handle, durable cursors, the
//!   catch-up timer) — all that client commands ([`crate::cmd`]) may change.
//! * [`cursor`]: the position in one durable stream and the rules that move
//!   it.
//! * `conn`: the connection loop — reads client frames and applies them as
//!   commands, writes whatever the node queues, keeps the connection alive
//!   with pings; `replay` is its durable half (gap fill and resume).
//!
//! * `socket`: the WebSocket a session runs on, which holds no protocol
//!   buffers while the connection is idle.
//!
//! The loop is written against anything that is a `Sink<Message>` and a
//! `Stream` of messages; [`run`] plugs in a [`Socket`], and the unit tests
//! plug in channels.
//!
//! Bad input never ends a session except where RFC 6455 says it must:
//! malformed JSON and binary frames get an `error` frame; an oversized message
//! closes with 1009 and invalid UTF-8 with 1007.

mod conn;
pub(crate) mod cursor;
mod replay;
mod socket;
pub(crate) mod state;
#[cfg(test)]
mod tests;

use futures::FutureExt;
use std::future::Future;
use std::sync::Arc;
use wsring_protocol::close;

use crate::node::Node;

pub(crate) use cursor::Resume;
pub(crate) use socket::Socket;

/// Why a session ended; the session is gone either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum End {
    /// The client closed or the socket failed.
    Gone,
    /// We closed it (moved, slow, bad input).
    Closed,
    /// The node crashed or stopped: drop the socket without a close frame.
    Killed,
    /// The outbound queue overflowed (slow consumer): close with 1008.
    Kicked,
}

/// Why reading from the client failed, as far as the close code goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReadError {
    /// A message over the size limit: 1009.
    TooBig,
    /// A text message that is not UTF-8: 1007.
    BadUtf8,
    /// A WebSocket protocol violation: 1002.
    Protocol,
    /// The connection failed; there is no one to send a close frame to.
    Io,
}

impl ReadError {
    /// The close code and reason RFC 6455 prescribes, if any.
    pub fn close(self) -> Option<(u16, &'static str)> {
        match self {
            ReadError::TooBig => Some((close::MESSAGE_TOO_BIG, "message too big")),
            ReadError::BadUtf8 => Some((close::INVALID_PAYLOAD, "invalid UTF-8")),
            ReadError::Protocol => Some((1002, "protocol error")),
            ReadError::Io => None,
        }
    }

    /// Classifies a read error of a session's socket.
    fn of(e: tungstenite::Error) -> ReadError {
        match e {
            tungstenite::Error::Capacity(_) => ReadError::TooBig,
            tungstenite::Error::Utf8(_) => ReadError::BadUtf8,
            tungstenite::Error::Io(e) if crate::text_guard::InvalidText::is(&e) => {
                ReadError::BadUtf8
            }
            tungstenite::Error::Protocol(_) => ReadError::Protocol,
            _ => ReadError::Io,
        }
    }
}

/// Runs a session of `identity` on an upgraded WebSocket to completion;
/// `follows`: its `moved` frames name the new owner's URL.
pub(crate) fn run(
    node: Arc<Node>,
    ws: crate::upgrade::Socket,
    identity: wsring_auth::Identity,
    resume: Option<Resume>,
    follows: bool,
) -> impl Future<Output = ()> {
    // Neither an `async fn` nor an `async` block awaiting the session: both
    // would hold what they are given next to what they move it into (the
    // session future), for the session's whole life.
    conn::serve(node, ws, identity, resume, follows).map(drop)
}

/// Runs a Pusher protocol session ([`crate::pusher`]) on an upgraded
/// WebSocket to completion.
pub(crate) fn run_pusher(
    node: Arc<Node>,
    ws: crate::upgrade::Socket,
    pusher: crate::pusher::PusherConn,
) -> impl Future<Output = ()> {
    // Its user is its socket: it has no other identity, and the session
    // cap per user then never closes another connection.
    let identity = wsring_auth::Identity::unrestricted(format!("pusher:{}", pusher.socket_id));
    conn::serve_as(node, ws, identity, None, false, Some(Box::new(pusher))).map(drop)
}
