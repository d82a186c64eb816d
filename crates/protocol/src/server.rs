//! Frames the server sends, in two forms that share one wire format:
//!
//! * **Borrowed, for sending** — [`ServerFrame`] (control frames) and
//!   [`MessageFrame`] (`message` frames) hold `&str`s and `&RawValue`s that
//!   point into the node's own state, so building a frame allocates nothing
//!   but the output text. A `message` frame is rendered once by
//!   [`MessageFrame::render`] and the same bytes are shared by every
//!   recipient session, on every node. These types cannot be deserialised
//!   (a borrowed `&MsgId` has nothing to borrow from, and a `&str` cannot
//!   hold an escaped string).
//! * **Owned, for receiving** — [`OwnedServerFrame`] is what clients (the
//!   Rust SDK, the bench tool, tests) parse. Its `Serialize` is not derived:
//!   it borrows itself as a [`ServerFrame`] / [`MessageFrame`] and
//!   serialises that, so the server's wire format is written down exactly
//!   once, and the round-trip test over `docs/PROTOCOL.md` checks the
//!   derived `Deserialize` against it.

use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;
use serde_json::value::RawValue;

use crate::client::MsgId;

/// Machine-readable error codes, used in `error` frames and HTTP error bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
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
    /// The operation is not available in this configuration: node control
    /// outside the `wsring dev` launcher (501), history without durable
    /// mode (409).
    NotSupported,
    /// The request body is larger than allowed.
    PayloadTooLarge,
    /// A limit was reached: rooms per session (`error` frame), server-side
    /// rooms per user (HTTP 409).
    LimitExceeded,
    /// A bug or unexpected failure on the server side.
    Internal,
    /// Missing or invalid credentials: a connect token, or an API key (HTTP
    /// 401).
    Unauthorized,
    /// The credentials do not allow this: a room outside the token's `rooms`
    /// claim, a direct send or publish with `send: false`, a publish outside
    /// the `publish` claim, a page from an origin not allowed.
    Forbidden,
    /// Too many messages or bytes per second on this connection; the message
    /// was dropped.
    RateLimited,
    /// The request body is not `application/json` (HTTP 415).
    UnsupportedMediaType,
    /// The application's publish proxy refused the message; `message` says
    /// why (prefixed with the application's own code, if it gave one).
    Rejected,
    /// Durable mode: the stream store is at its stream-count or byte limit;
    /// nothing was stored (HTTP 507). Space frees as old entries age out.
    StorageFull,
    /// Durable mode: the sender (a token's user, or an API key) holds its
    /// whole share of the stream store (`--history-max-user-percent`);
    /// nothing was stored (HTTP 507). Other senders are not affected.
    QuotaExceeded,
    /// A code this build does not know (sent by a newer server). Parsing
    /// maps it here so an older client still fails the request instead of
    /// ignoring the error; never sent.
    #[serde(other)]
    Unknown,
}

impl ErrorCode {
    /// Every code, for exhaustive tests and documentation checks.
    pub const ALL: [ErrorCode; 16] = [
        ErrorCode::BadRequest,
        ErrorCode::Unavailable,
        ErrorCode::NotFound,
        ErrorCode::Conflict,
        ErrorCode::WrongNode,
        ErrorCode::NotSupported,
        ErrorCode::PayloadTooLarge,
        ErrorCode::LimitExceeded,
        ErrorCode::Internal,
        ErrorCode::Unauthorized,
        ErrorCode::Forbidden,
        ErrorCode::RateLimited,
        ErrorCode::UnsupportedMediaType,
        ErrorCode::StorageFull,
        ErrorCode::QuotaExceeded,
        ErrorCode::Rejected,
    ];

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
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::UnsupportedMediaType => "unsupported_media_type",
            ErrorCode::StorageFull => "storage_full",
            ErrorCode::QuotaExceeded => "quota_exceeded",
            ErrorCode::Rejected => "rejected",
            ErrorCode::Unknown => "unknown",
        }
    }
}

/// The `stream` of a `resumed` frame for the user's own stream.
pub const USER_STREAM: &str = "user";

/// The `stream` of a `resumed` frame for a room's stream: `room:<name>`.
pub fn room_stream(room: &str) -> String {
    format!("room:{room}")
}

/// What a `presence` frame reports about a user in a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PresenceEvent {
    /// The user's first session in the cluster entered the room.
    Join,
    /// The user's last session in the cluster left the room.
    Leave,
}

impl PresenceEvent {
    /// `"join"` or `"leave"`.
    pub fn as_str(self) -> &'static str {
        match self {
            PresenceEvent::Join => "join",
            PresenceEvent::Leave => "leave",
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
        /// `false` on a non-durable direct send when the backend reports
        /// that no live node received the message (it is lost); absent
        /// otherwise, including wherever the backend cannot tell.
        #[serde(skip_serializing_if = "Option::is_none")]
        delivered: Option<bool>,
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
        /// Where to reconnect, for a session that connected to its node
        /// directly (with `ring_epoch`): the new owner's WebSocket URL with
        /// the epoch that moved the user, as `GET /ws/locate` would answer.
        /// Absent for tunnelled sessions, in broadcast mode and for sessions
        /// admitted by the connect proxy (those locate again).
        #[serde(skip_serializing_if = "Option::is_none")]
        url: Option<&'a str>,
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
    /// A user entered or left a room this session joined with
    /// `"presence":true` (user level, cluster-wide).
    Presence {
        /// The room.
        room: &'a str,
        /// The user.
        user: &'a str,
        /// `join` or `leave`.
        event: PresenceEvent,
    },
    /// The server made this session a member of a room
    /// (`POST /api/rooms/{room}/join`, or at connect for the user's
    /// server-side rooms).
    Joined {
        /// The room.
        room: &'a str,
    },
    /// The server took this session out of a room
    /// (`POST /api/rooms/{room}/leave`).
    Left {
        /// The room.
        room: &'a str,
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
///
/// `D` is the payload's type: the node passes the payload it received as a
/// [`RawValue`] (the default) and it is written out verbatim;
/// [`OwnedServerFrame`] serialises its parsed [`Value`] through the same
/// struct.
#[derive(Debug, Clone, Serialize)]
#[serde(bound(serialize = "D: Serialize"))]
pub struct MessageFrame<'a, D: ?Sized = RawValue> {
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
    pub data: &'a D,
    /// Durable mode: position in the user or room stream.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    /// Durable mode: the stream's epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub epoch: Option<&'a str>,
}

impl<'a, D: ?Sized + Serialize> MessageFrame<'a, D> {
    /// A direct message to `to`.
    pub fn direct(from: Option<&'a str>, to: &'a str, data: &'a D) -> Self {
        Self::new(from, Some(to), None, data)
    }

    /// A room message.
    pub fn room(from: Option<&'a str>, room: &'a str, data: &'a D) -> Self {
        Self::new(from, None, Some(room), data)
    }

    /// A cluster-wide broadcast.
    pub fn broadcast(data: &'a D) -> Self {
        Self::new(None, None, None, data)
    }

    fn new(from: Option<&'a str>, to: Option<&'a str>, room: Option<&'a str>, data: &'a D) -> Self {
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

/// Any frame the server sends, owned: what a client parses.
///
/// Unknown fields are ignored (the protocol may add fields to any frame); an
/// unknown `type` is a parse error the caller is expected to skip. See the
/// module docs for why serialisation goes through [`ServerFrame`] and
/// [`MessageFrame`].
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum OwnedServerFrame {
    /// First frame of every session; see [`ServerFrame::Welcome`].
    Welcome {
        /// The user id from the connect URL.
        user: String,
        /// The node holding this session.
        node: String,
        /// Opaque session id, unique in the cluster.
        session: String,
        /// Ring epoch the node saw when accepting the session.
        epoch: u64,
        /// Durable mode: last seq of the user's stream.
        #[serde(default)]
        seq: Option<u64>,
        /// Durable mode: the user stream's epoch.
        #[serde(default)]
        stream_epoch: Option<String>,
    },
    /// The cluster accepted the request carrying this id.
    Ack {
        /// The request id.
        id: MsgId,
        /// `Some(false)`: no live node received the message (see
        /// [`ServerFrame::Ack`]).
        #[serde(default)]
        delivered: Option<bool>,
    },
    /// Answer to `ping`.
    Pong {
        /// The ping's id (JSON null when it had none).
        #[serde(default)]
        id: Option<MsgId>,
    },
    /// A delivered message; see [`MessageFrame`].
    Message {
        /// Sender user id; `None` (JSON null) for server-side sends.
        #[serde(default)]
        from: Option<String>,
        /// Recipient, for direct messages.
        #[serde(default)]
        to: Option<String>,
        /// Room, for room messages.
        #[serde(default)]
        room: Option<String>,
        /// The payload.
        data: Value,
        /// Durable mode: position in the user or room stream.
        #[serde(default)]
        seq: Option<u64>,
        /// Durable mode: the stream's epoch.
        #[serde(default)]
        epoch: Option<String>,
    },
    /// A request failed; the connection stays open.
    Error {
        /// Machine-readable code.
        code: ErrorCode,
        /// Human-readable text.
        message: String,
        /// The failed request's id, when known.
        #[serde(default)]
        id: Option<MsgId>,
    },
    /// The user now belongs to another node; a close
    /// [`SERVICE_RESTART`](crate::close::SERVICE_RESTART) follows.
    Moved {
        /// The ring epoch that moved the user.
        epoch: u64,
        /// Suggested delay before reconnecting.
        retry_after_ms: u64,
        /// Where to reconnect (see [`ServerFrame::Moved`]).
        #[serde(default)]
        url: Option<String>,
    },
    /// Durable mode: replay of a stream finished and live delivery continues.
    Resumed {
        /// `"user"` or `"room:<name>"`.
        stream: String,
        /// False when history no longer covers the gap: reload state.
        complete: bool,
        /// The last seq of the stream at the switch to live delivery.
        seq: u64,
        /// The stream's current epoch.
        epoch: String,
    },
    /// A user entered or left a room; see [`ServerFrame::Presence`].
    Presence {
        /// The room.
        room: String,
        /// The user.
        user: String,
        /// `join` or `leave`.
        event: PresenceEvent,
    },
    /// The server made this session a member of a room.
    Joined {
        /// The room.
        room: String,
    },
    /// The server took this session out of a room.
    Left {
        /// The room.
        room: String,
    },
}

impl OwnedServerFrame {
    /// Every server frame `type`, in declaration order.
    pub const TYPES: [&'static str; 10] = [
        "welcome", "ack", "pong", "message", "error", "moved", "resumed", "presence", "joined",
        "left",
    ];

    /// This frame's `type`.
    pub fn kind(&self) -> &'static str {
        match self {
            OwnedServerFrame::Welcome { .. } => "welcome",
            OwnedServerFrame::Ack { .. } => "ack",
            OwnedServerFrame::Pong { .. } => "pong",
            OwnedServerFrame::Message { .. } => "message",
            OwnedServerFrame::Error { .. } => "error",
            OwnedServerFrame::Moved { .. } => "moved",
            OwnedServerFrame::Resumed { .. } => "resumed",
            OwnedServerFrame::Presence { .. } => "presence",
            OwnedServerFrame::Joined { .. } => "joined",
            OwnedServerFrame::Left { .. } => "left",
        }
    }

    /// Parses one text frame.
    pub fn parse(text: &str) -> Result<OwnedServerFrame, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// Serialises to JSON text, exactly as a node would send it.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

impl Serialize for OwnedServerFrame {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let f = match self {
            OwnedServerFrame::Message {
                from,
                to,
                room,
                data,
                seq,
                epoch,
            } => {
                return MessageFrame {
                    kind: "message",
                    from: from.as_deref(),
                    to: to.as_deref(),
                    room: room.as_deref(),
                    data,
                    seq: *seq,
                    epoch: epoch.as_deref(),
                }
                .serialize(s);
            }
            OwnedServerFrame::Welcome {
                user,
                node,
                session,
                epoch,
                seq,
                stream_epoch,
            } => ServerFrame::Welcome {
                user,
                node,
                session,
                epoch: *epoch,
                seq: *seq,
                stream_epoch: stream_epoch.as_deref(),
            },
            OwnedServerFrame::Ack { id, delivered } => ServerFrame::Ack {
                id,
                delivered: *delivered,
            },
            OwnedServerFrame::Pong { id } => ServerFrame::Pong { id: id.as_ref() },
            OwnedServerFrame::Error { code, message, id } => ServerFrame::Error {
                code: *code,
                message,
                id: id.as_ref(),
            },
            OwnedServerFrame::Moved {
                epoch,
                retry_after_ms,
                url,
            } => ServerFrame::Moved {
                epoch: *epoch,
                retry_after_ms: *retry_after_ms,
                url: url.as_deref(),
            },
            OwnedServerFrame::Resumed {
                stream,
                complete,
                seq,
                epoch,
            } => ServerFrame::Resumed {
                stream,
                complete: *complete,
                seq: *seq,
                epoch,
            },
            OwnedServerFrame::Presence { room, user, event } => ServerFrame::Presence {
                room,
                user,
                event: *event,
            },
            OwnedServerFrame::Joined { room } => ServerFrame::Joined { room },
            OwnedServerFrame::Left { room } => ServerFrame::Left { room },
        };
        f.serialize(s)
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
            ServerFrame::Ack {
                id: &id,
                delivered: None
            }
            .to_json(),
            r#"{"type":"ack","id":"m1"}"#
        );
        assert_eq!(
            ServerFrame::Ack {
                id: &id,
                delivered: Some(false)
            }
            .to_json(),
            r#"{"type":"ack","id":"m1","delivered":false}"#
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
                retry_after_ms: 120,
                url: None,
            }
            .to_json(),
            r#"{"type":"moved","epoch":5,"retry_after_ms":120}"#
        );
        assert_eq!(
            ServerFrame::Moved {
                epoch: 5,
                retry_after_ms: 0,
                url: Some("ws://n2/ws?ring_epoch=5"),
            }
            .to_json(),
            r#"{"type":"moved","epoch":5,"retry_after_ms":0,"url":"ws://n2/ws?ring_epoch=5"}"#
        );
    }

    #[test]
    fn error_codes_serialise_as_their_names() {
        for code in ErrorCode::ALL {
            let json = serde_json::to_string(&code).expect("serialise");
            assert_eq!(json, format!("\"{}\"", code.as_str()));
            assert_eq!(
                serde_json::from_str::<ErrorCode>(&json).expect("parse"),
                code
            );
        }
        // A newer server's code still parses, as `Unknown`, so a client
        // fails the request instead of dropping the error.
        assert_eq!(
            serde_json::from_str::<ErrorCode>("\"teapot\"").expect("parse"),
            ErrorCode::Unknown
        );
    }

    #[test]
    fn types_list_every_variant() {
        // serde's own list of the variants, from its unknown-variant error,
        // checked against `TYPES`; `kind()` is checked by the round trips.
        let err = OwnedServerFrame::parse(r#"{"type":"?"}"#).expect_err("unknown");
        let listed = err.to_string();
        for t in OwnedServerFrame::TYPES {
            assert!(listed.contains(&format!("`{t}`")), "{t} in {listed}");
        }
        assert_eq!(
            listed.matches('`').count(),
            2 * (OwnedServerFrame::TYPES.len() + 1),
            "{listed}"
        );
    }

    #[test]
    fn owned_frames_round_trip_through_the_borrowed_ones() {
        for text in [
            r#"{"type":"welcome","user":"a","node":"n1","session":"s","epoch":1,"seq":4,"stream_epoch":"e"}"#,
            r#"{"type":"ack","id":7}"#,
            r#"{"type":"pong","id":null}"#,
            r#"{"type":"message","from":null,"data":[1,{"b":"\u00e9"}]}"#,
            r#"{"type":"message","from":"a","room":"r","data":{"z":1,"a":2},"seq":3,"epoch":"e"}"#,
            r#"{"type":"error","code":"unavailable","message":"try later"}"#,
            r#"{"type":"moved","epoch":2,"retry_after_ms":50}"#,
            r#"{"type":"resumed","stream":"room:r","complete":false,"seq":0,"epoch":""}"#,
            r#"{"type":"presence","room":"r","user":"u","event":"leave"}"#,
            r#"{"type":"joined","room":"r"}"#,
            r#"{"type":"left","room":"r"}"#,
        ] {
            let f = OwnedServerFrame::parse(text).expect(text);
            let back: Value = serde_json::from_str(&f.to_json()).expect("json");
            let want: Value = serde_json::from_str(text).expect("json");
            assert_eq!(back, want, "{text}");
            assert_eq!(want["type"], f.kind());
        }
    }

    #[test]
    fn owned_frames_ignore_unknown_fields() {
        let f = OwnedServerFrame::parse(r#"{"type":"ack","id":"m1","later":true}"#).expect("ack");
        assert_eq!(
            f,
            OwnedServerFrame::Ack {
                id: MsgId::Str("m1".into()),
                delivered: None
            }
        );
    }
}
