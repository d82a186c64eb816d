//! Client commands, one file per frame kind (in the style of mini-redis's
//! `cmd/`).
//!
//! Each command is a small type with `apply(&mut SessionState, &Node) ->
//! Outcome`: it reads and changes the session's state and the node, and
//! returns what the session should write back (and whether it should then
//! replay a stream or close). Commands never touch the socket and never see
//! the connection loop, so every one of them is tested here without one.
//!
//! Every command answers in-band: an `ack` when the request carried an `id`
//! and the cluster accepted it, an `error` frame otherwise. None of them ends
//! the session on failure.
//!
//! `server_room` holds the two commands the server itself gives a session
//! (through its queue, from `POST /api/rooms/{room}/join|leave`, and at
//! connect for the user's stored rooms); they answer with `joined` and
//! `left` frames.

mod join;
mod leave;
mod ping;
mod proxy;
mod publish;
mod send;
mod server_room;

use wsring_cluster::StreamName;
use wsring_protocol::{ClientFrame, ErrorCode, MsgId, ServerFrame};

use crate::error::RouteError;
use crate::node::{Accepted, Node};
use crate::session::state::SessionState;

pub(crate) use join::Join;
pub(crate) use leave::Leave;
pub(crate) use ping::Ping;
pub(crate) use publish::Publish;
pub(crate) use send::Send;
pub(crate) use server_room::{ServerJoin, ServerLeave};

/// What the session does after a command (or after bad input), in order:
/// write `reply`, replay `catch_up`, close with `close`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
#[must_use]
pub(crate) struct Outcome {
    /// The answer frame (`ack`, `pong`, `error`), if any.
    pub reply: Option<String>,
    /// Durable mode: bring the session's cursor of this stream up to the
    /// store's head, writing everything in between, and finish with a
    /// `resumed` frame.
    pub catch_up: Option<StreamName>,
    /// Close the connection with this code and reason; the session ends.
    pub close: Option<(u16, &'static str)>,
}

impl Outcome {
    /// Nothing to write.
    pub fn none() -> Outcome {
        Outcome::default()
    }

    /// Write `frame`.
    pub fn reply(frame: &ServerFrame<'_>) -> Outcome {
        Outcome {
            reply: Some(frame.to_json()),
            ..Outcome::default()
        }
    }

    /// `ack` for an accepted request that carried an id; nothing otherwise.
    pub fn ack(id: Option<&MsgId>) -> Outcome {
        Self::ack_delivered(id, None)
    }

    /// An `ack` that may say `"delivered":false` (see [`Accepted`]).
    pub fn ack_delivered(id: Option<&MsgId>, delivered: Option<bool>) -> Outcome {
        match id {
            Some(id) => Outcome::reply(&ServerFrame::Ack { id, delivered }),
            None => Outcome::none(),
        }
    }

    /// An `error` frame (echoing the request's id, if any).
    pub fn error(code: ErrorCode, message: &str, id: Option<&MsgId>) -> Outcome {
        Outcome::reply(&ServerFrame::Error { code, message, id })
    }

    /// Close the connection with `code` (after writing nothing).
    pub fn close(code: u16, reason: &'static str) -> Outcome {
        Outcome {
            close: Some((code, reason)),
            ..Outcome::default()
        }
    }

    /// Then replay `stream` up to its head.
    pub fn then_catch_up(mut self, stream: StreamName) -> Outcome {
        self.catch_up = Some(stream);
        self
    }
}

/// One parsed client request.
#[derive(Debug)]
pub(crate) enum Command {
    Send(Send),
    Join(Join),
    Leave(Leave),
    Publish(Publish),
    Ping(Ping),
}

impl From<ClientFrame> for Command {
    fn from(frame: ClientFrame) -> Command {
        match frame {
            ClientFrame::Send { to, data, id } => Command::Send(Send { to, data, id }),
            ClientFrame::Join {
                room,
                id,
                resume,
                epoch,
                presence,
            } => Command::Join(Join {
                room,
                id,
                resume,
                epoch,
                presence,
            }),
            ClientFrame::Leave { room, id } => Command::Leave(Leave { room, id }),
            ClientFrame::Publish { room, data, id } => Command::Publish(Publish { room, data, id }),
            ClientFrame::Ping { id } => Command::Ping(Ping { id }),
        }
    }
}

impl Command {
    /// Parses a text frame; bad input becomes the `error` frame to answer
    /// with (the session goes on).
    pub fn parse(text: &str) -> Result<Command, Outcome> {
        ClientFrame::parse(text)
            .map(Command::from)
            .map_err(|e| Outcome::error(ErrorCode::BadRequest, &e.message, e.id.as_ref()))
    }

    /// Applies the command to the session and the node.
    pub async fn apply(self, s: &mut SessionState, node: &Node) -> Outcome {
        match self {
            Command::Send(c) => c.apply(s, node).await,
            Command::Join(c) => c.apply(s, node).await,
            Command::Leave(c) => c.apply(s, node).await,
            Command::Publish(c) => c.apply(s, node).await,
            Command::Ping(c) => c.apply(s, node),
        }
    }
}

/// The `id` of a request, readable or not as a command, for an answer that
/// refuses it without running it (a rate limit).
pub(crate) fn request_id(text: &str) -> Option<MsgId> {
    match ClientFrame::parse(text) {
        Ok(frame) => frame.id().cloned(),
        Err(e) => e.id,
    }
}

/// `ack` if the cluster accepted a message, an `unavailable` error if not.
fn answer(result: Result<Accepted, RouteError>, id: Option<&MsgId>) -> Outcome {
    match result {
        // Only a known loss is reported; a delivery is not promised.
        Ok(a) => Outcome::ack_delivered(id, (a.delivered == Some(false)).then_some(false)),
        Err(e @ RouteError::Conflict) => Outcome::error(ErrorCode::Conflict, &e.to_string(), id),
        Err(e @ RouteError::StorageFull(_)) => {
            Outcome::error(ErrorCode::StorageFull, &e.to_string(), id)
        }
        Err(e @ RouteError::QuotaExceeded(_)) => {
            Outcome::error(ErrorCode::QuotaExceeded, &e.to_string(), id)
        }
        Err(e) => Outcome::error(ErrorCode::Unavailable, &e.to_string(), id),
    }
}

/// The idempotency key of a client request: per sender, per client id.
/// `/` cannot occur in a user id, so the key is unambiguous even though user
/// ids and request ids may both contain `:`.
fn dedup_key(s: &SessionState, id: Option<&MsgId>) -> Option<String> {
    id.map(|id| format!("ws/{}/{}", s.handle.user, id.key()))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::Value;

    /// The reply frame of an outcome, parsed.
    pub(crate) fn reply(o: &Outcome) -> Value {
        let text = o.reply.as_deref().expect("a reply frame");
        serde_json::from_str(text).expect("reply is JSON")
    }

    #[test]
    fn bad_input_is_answered_with_an_error_frame() {
        for (text, id, needle) in [
            ("{not json", Value::Null, "invalid frame"),
            (
                r#"{"type":"shout","id":7}"#,
                Value::from(7),
                "unknown type \"shout\"",
            ),
            (r#"{"id":"a"}"#, Value::from("a"), "missing field `type`"),
            (
                r#"{"type":"send","to":"bob","id":"x"}"#,
                Value::from("x"),
                "missing field `data`",
            ),
        ] {
            let o = Command::parse(text).expect_err(text);
            let f = reply(&o);
            assert_eq!(f["type"], "error", "{text}");
            assert_eq!(f["code"], "bad_request", "{text}");
            assert_eq!(f["id"], id, "{text}");
            let msg = f["message"].as_str().unwrap_or_default();
            assert!(msg.contains(needle), "{text}: {msg}");
            assert_eq!(o.catch_up, None);
            assert_eq!(o.close, None, "bad input never closes: {text}");
        }
    }

    #[test]
    fn frames_map_to_their_commands() {
        let cases = [
            (r#"{"type":"ping"}"#, "Ping"),
            (r#"{"type":"join","room":"r"}"#, "Join"),
            (r#"{"type":"leave","room":"r"}"#, "Leave"),
            (r#"{"type":"publish","room":"r","data":1}"#, "Publish"),
            (r#"{"type":"send","to":"bob","data":1}"#, "Send"),
        ];
        for (text, kind) in cases {
            let c = Command::parse(text).expect(text);
            assert!(format!("{c:?}").starts_with(kind), "{text} -> {c:?}");
        }
    }

    #[test]
    fn acks_only_requests_with_an_id() {
        assert_eq!(Outcome::ack(None), Outcome::none());
        let o = Outcome::ack(Some(&MsgId::Str("q".into())));
        assert_eq!(reply(&o), serde_json::json!({"type":"ack","id":"q"}));
    }
}
