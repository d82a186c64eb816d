//! Frames the server sends. Control frames go through [`ServerFrame`];
//! `message` frames are rendered once by [`MessageFrame::render`] and the same
//! bytes are shared by every recipient session, on every node.

use serde::Serialize;
use serde_json::value::RawValue;

use crate::client::MsgId;

/// Machine-readable error codes, used in `error` frames and HTTP error bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Malformed input: invalid JSON, unknown type, missing or invalid field,
    /// binary frame.
    BadRequest,
    /// The cluster could not accept the request right now (backend down, no
    /// nodes); retry later. Nothing was acknowledged.
    Unavailable,
    /// The resource does not exist (unknown node id, unknown route).
    NotFound,
    /// The request conflicts with current state (e.g. a node id already live).
    Conflict,
    /// This node does not own the user in `hash` mode; connect via the gateway.
    WrongNode,
    /// The operation exists only on the `wsring dev` launcher.
    NotSupported,
    /// The request body is larger than allowed.
    PayloadTooLarge,
    /// A per-session limit was reached (e.g. rooms per session).
    LimitExceeded,
    /// A bug or unexpected failure on the server side.
    Internal,
}

impl ErrorCode {
    /// The snake_case string form.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::NotFound => "not_found",
            ErrorCode::Conflict => "conflict",
            ErrorCode::WrongNode => "wrong_node",
            ErrorCode::NotSupported => "not_supported",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::LimitExceeded => "limit_exceeded",
            ErrorCode::Internal => "internal",
        }
    }
}

/// A control frame from server to client.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame<'a> {
    /// First frame of every session.
    Welcome {
        /// The user id from the connect URL.
        user: &'a str,
        /// The node holding this session.
        node: &'a str,
        /// Opaque session id, unique in the cluster.
        session: &'a str,
        /// Ring epoch the node saw when accepting the session.
        epoch: u64,
        /// Durable mode: last seq of the user's stream.
        #[serde(skip_serializing_if = "Option::is_none")]
        seq: Option<u64>,
        /// Durable mode: the user stream's epoch (pass it back as `epoch=` on resume).
        #[serde(skip_serializing_if = "Option::is_none")]
        stream_epoch: Option<&'a str>,
    },
    /// The cluster accepted the request carrying this id.
    Ack {
        /// The request id.
        id: &'a MsgId,
    },
    /// Answer to `ping`.
    Pong {
        /// The ping's id, or null.
        id: Option<&'a MsgId>,
    },
    /// A request failed; the connection stays open.
    Error {
        /// Machine-readable code.
        code: ErrorCode,
        /// Human-readable text.
        message: &'a str,
        /// The failed request's id, when known.
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a MsgId>,
    },
    /// The user now belongs to another node; a close 1012 follows.
    Moved {
        /// The ring epoch that moved the user.
        epoch: u64,
        /// Suggested delay before reconnecting, spreading a rebalance's
        /// reconnects instead of having every client return at once.
        retry_after_ms: u64,
    },
    /// Durable mode: replay of a stream finished and live delivery continues.
    Resumed {
        /// `"user"` or `"room:<name>"`.
        stream: &'a str,
        /// False when history no longer covers the gap (or the epoch changed):
        /// the application must reload its state.
        complete: bool,
        /// The last seq of the stream at the switch to live delivery.
        seq: u64,
        /// The stream's current epoch.
        epoch: &'a str,
    },
}

impl ServerFrame<'_> {
    /// Serialises to JSON text.
    pub fn to_json(&self) -> String {
        // Serialising these plain structs cannot fail: no maps with non-string
        // keys, no fallible Serialize impls.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// A `message` frame, rendered once and fanned out as bytes.
#[derive(Debug, Clone, Serialize)]
pub struct MessageFrame<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    /// Sender user id, or `None` (JSON null) for server-side sends.
    pub from: Option<&'a str>,
    /// Recipient, for direct messages.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<&'a str>,
    /// Room, for room messages.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub room: Option<&'a str>,
    /// The payload, verbatim.
    pub data: &'a RawValue,
    /// Durable mode: position in the user or room stream.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    /// Durable mode: the stream's epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub epoch: Option<&'a str>,
}

impl<'a> MessageFrame<'a> {
    /// A direct message to `to`.
    pub fn direct(from: Option<&'a str>, to: &'a str, data: &'a RawValue) -> Self {
        Self::new(from, Some(to), None, data)
    }

    /// A room message.
    pub fn room(from: Option<&'a str>, room: &'a str, data: &'a RawValue) -> Self {
        Self::new(from, None, Some(room), data)
    }

    /// A cluster-wide broadcast.
    pub fn broadcast(data: &'a RawValue) -> Self {
        Self::new(None, None, None, data)
    }

    fn new(
        from: Option<&'a str>,
        to: Option<&'a str>,
        room: Option<&'a str>,
        data: &'a RawValue,
    ) -> Self {
        MessageFrame {
            kind: "message",
            from,
            to,
            room,
            data,
            seq: None,
            epoch: None,
        }
    }

    /// Adds the durable stream position.
    pub fn with_seq(mut self, seq: u64, epoch: &'a str) -> Self {
        self.seq = Some(seq);
        self.epoch = Some(epoch);
        self
    }

    /// Serialises to JSON text.
    pub fn render(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(s: &str) -> Box<RawValue> {
        RawValue::from_string(s.to_owned()).expect("valid json")
    }

    #[test]
    fn welcome_shape() {
        let f = ServerFrame::Welcome {
            user: "alice",
            node: "n1",
            session: "s1",
            epoch: 3,
            seq: None,
            stream_epoch: None,
        };
        assert_eq!(
            f.to_json(),
            r#"{"type":"welcome","user":"alice","node":"n1","session":"s1","epoch":3}"#
        );
    }

    #[test]
    fn message_shapes() {
        let d = raw(r#"{"a":1}"#);
        assert_eq!(
            MessageFrame::direct(Some("alice"), "bob", &d).render(),
            r#"{"type":"message","from":"alice","to":"bob","data":{"a":1}}"#
        );
        assert_eq!(
            MessageFrame::direct(None, "bob", &d).render(),
            r#"{"type":"message","from":null,"to":"bob","data":{"a":1}}"#
        );
        assert_eq!(
            MessageFrame::room(Some("a"), "lobby", &d)
                .with_seq(7, "e1")
                .render(),
            r#"{"type":"message","from":"a","room":"lobby","data":{"a":1},"seq":7,"epoch":"e1"}"#
        );
        assert_eq!(
            MessageFrame::broadcast(&d).render(),
            r#"{"type":"message","from":null,"data":{"a":1}}"#
        );
    }

    #[test]
    fn control_shapes() {
        let id = MsgId::Str("m1".into());
        assert_eq!(
            ServerFrame::Ack { id: &id }.to_json(),
            r#"{"type":"ack","id":"m1"}"#
        );
        assert_eq!(
            ServerFrame::Pong { id: None }.to_json(),
            r#"{"type":"pong","id":null}"#
        );
        assert_eq!(
            ServerFrame::Error {
                code: ErrorCode::BadRequest,
                message: "nope",
                id: Some(&MsgId::Int(4))
            }
            .to_json(),
            r#"{"type":"error","code":"bad_request","message":"nope","id":4}"#
        );
        assert_eq!(
            ServerFrame::Moved {
                epoch: 5,
                retry_after_ms: 120
            }
            .to_json(),
            r#"{"type":"moved","epoch":5,"retry_after_ms":120}"#
        );
    }
}
