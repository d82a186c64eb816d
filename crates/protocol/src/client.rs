//! Frames a client sends: built and serialised by clients, parsed by nodes.
//!
//! Serialisation is derived. Parsing is two-phase on purpose: serde's
//! internally-tagged enums buffer their input and cannot hold a `RawValue`,
//! so we first read a flat struct of optional fields (taking `data` as raw
//! JSON, never re-encoding it), then check the `type` and its required
//! fields ourselves. That also lets every error echo the request's `id`, so
//! the client can tell which request failed. [`ClientFrame::parse`] is the
//! node's entry point (it keeps the `id` of a failed frame); the
//! `Deserialize` impl runs the same checks for generic serde use.

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::value::RawValue;

use crate::ids::{validate_room, validate_user};

/// A client-chosen request id, echoed in `ack`, `pong` and `error` frames.
/// Strings (up to 128 bytes) and integers are accepted.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum MsgId {
    /// A string id, e.g. `"m-17"`.
    Str(String),
    /// An integer id, e.g. `17`.
    Int(i64),
}

impl MsgId {
    /// A stable string form, used as an idempotency key.
    pub fn key(&self) -> String {
        match self {
            MsgId::Str(s) => format!("s:{s}"),
            MsgId::Int(i) => format!("i:{i}"),
        }
    }
}

/// The `to` of a `send` that addresses the application's backend (a
/// webhook event or the publish proxy) instead of a user. No user may
/// connect under this id.
pub const SERVER_ADDRESS: &str = "@server";

/// Longest accepted string [`MsgId`].
pub const MAX_ID_LEN: usize = 128;

/// One client frame.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientFrame {
    /// `{"type":"send","to":"bob","data":…,"id":…}`: a direct message.
    Send {
        /// Recipient user id.
        to: String,
        /// Opaque JSON payload, kept verbatim.
        data: Box<RawValue>,
        /// Optional request id.
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<MsgId>,
    },
    /// `{"type":"join","room":"lobby","id":…,"resume":…,"epoch":…,"presence":…}`.
    Join {
        /// Room to join.
        room: String,
        /// Optional request id.
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<MsgId>,
        /// Durable mode: last room seq the client saw, to replay what it missed.
        #[serde(skip_serializing_if = "Option::is_none")]
        resume: Option<u64>,
        /// Durable mode: the room stream epoch that `resume` belongs to.
        #[serde(skip_serializing_if = "Option::is_none")]
        epoch: Option<String>,
        /// `true`: this session also receives the room's `presence` events
        /// (users joining and leaving, cluster-wide). Every join sets it;
        /// absent means `false`.
        #[serde(skip_serializing_if = "Option::is_none")]
        presence: Option<bool>,
    },
    /// `{"type":"leave","room":"lobby","id":…}`.
    Leave {
        /// Room to leave.
        room: String,
        /// Optional request id.
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<MsgId>,
    },
    /// `{"type":"publish","room":"lobby","data":…,"id":…}`.
    Publish {
        /// Target room.
        room: String,
        /// Opaque JSON payload, kept verbatim.
        data: Box<RawValue>,
        /// Optional request id.
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<MsgId>,
    },
    /// `{"type":"ping","id":…}`.
    Ping {
        /// Optional request id, echoed in `pong`.
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<MsgId>,
    },
}

impl ClientFrame {
    /// Every client frame `type`, in declaration order.
    pub const TYPES: [&'static str; 5] = ["send", "join", "leave", "publish", "ping"];

    /// This frame's `type`.
    pub fn kind(&self) -> &'static str {
        match self {
            ClientFrame::Send { .. } => "send",
            ClientFrame::Join { .. } => "join",
            ClientFrame::Leave { .. } => "leave",
            ClientFrame::Publish { .. } => "publish",
            ClientFrame::Ping { .. } => "ping",
        }
    }

    /// The request id, if the frame carried one.
    pub fn id(&self) -> Option<&MsgId> {
        match self {
            ClientFrame::Send { id, .. }
            | ClientFrame::Join { id, .. }
            | ClientFrame::Leave { id, .. }
            | ClientFrame::Publish { id, .. }
            | ClientFrame::Ping { id } => id.as_ref(),
        }
    }

    /// Sets (or clears) the request id.
    pub fn set_id(&mut self, new: Option<MsgId>) {
        match self {
            ClientFrame::Send { id, .. }
            | ClientFrame::Join { id, .. }
            | ClientFrame::Leave { id, .. }
            | ClientFrame::Publish { id, .. }
            | ClientFrame::Ping { id } => *id = new,
        }
    }

    /// Serialises to JSON text.
    pub fn to_json(&self) -> String {
        // Cannot fail: string keys only, and `RawValue` is already JSON.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Parses one text frame. Every failure is a [`ParseError`] that the node
    /// turns into an `error` frame with code `bad_request`.
    pub fn parse(text: &str) -> Result<ClientFrame, ParseError> {
        // Before parsing: `data` is relayed verbatim, and a nesting bomb
        // must not reach the parser or the recipients.
        if let Err(depth) = crate::depth::check_depth(text.as_bytes(), crate::MAX_JSON_DEPTH) {
            return Err(ParseError {
                message: format!(
                    "JSON nested deeper than {} levels (at least {depth})",
                    crate::MAX_JSON_DEPTH
                ),
                id: None,
            });
        }
        let raw: RawFrame = serde_json::from_str(text).map_err(|e| ParseError {
            message: format!("invalid frame: {e}"),
            id: None,
        })?;
        raw.check()
    }
}

/// Runs [`ClientFrame::parse`]'s checks on any serde input. The nesting limit
/// ([`crate::MAX_JSON_DEPTH`]) needs the text and is applied by `parse` only,
/// the entry point for untrusted input.
impl<'de> Deserialize<'de> for ClientFrame {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        RawFrame::deserialize(d)?
            .check()
            .map_err(|e| D::Error::custom(e.message))
    }
}

/// A frame that could not be parsed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct ParseError {
    /// Human-readable reason, sent as the error frame's `message`.
    pub message: String,
    /// The request id, when the frame was well-formed enough to carry one.
    pub id: Option<MsgId>,
}

/// Phase one of parsing: every field any frame may carry, all optional.
/// `data` is taken as raw JSON, copied once and never re-encoded.
#[derive(Deserialize)]
struct RawFrame {
    #[serde(rename = "type")]
    kind: Option<String>,
    to: Option<String>,
    room: Option<String>,
    #[serde(default)]
    data: Data,
    id: Option<MsgId>,
    resume: Option<u64>,
    epoch: Option<String>,
    presence: Option<bool>,
}

/// Distinguishes `"data": null` (present, a valid payload) from a missing
/// `data` field, which `Option` would conflate.
#[derive(Default)]
enum Data {
    #[default]
    Absent,
    Present(Box<RawValue>),
}

impl<'de> Deserialize<'de> for Data {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Box::<RawValue>::deserialize(d).map(Data::Present)
    }
}

impl RawFrame {
    /// Phase two: the `type` and its required, valid fields.
    fn check(self) -> Result<ClientFrame, ParseError> {
        let id = match self.id {
            Some(MsgId::Str(s)) if s.len() > MAX_ID_LEN => {
                return Err(ParseError {
                    message: format!("`id` is longer than {MAX_ID_LEN} bytes"),
                    id: None,
                });
            }
            other => other,
        };
        let fail = |message: String| ParseError {
            message,
            id: id.clone(),
        };
        let need = |field: Option<String>, name: &str| {
            field.ok_or_else(|| fail(format!("missing field `{name}`")))
        };
        let data = |d: Data| match d {
            Data::Present(raw) => Ok(raw),
            Data::Absent => Err(fail("missing field `data`".into())),
        };
        let Some(kind) = self.kind.as_deref() else {
            return Err(fail("missing field `type`".into()));
        };
        let frame = match kind {
            "send" => {
                let to = need(self.to, "to")?;
                if to != SERVER_ADDRESS {
                    validate_user(&to).map_err(|e| fail(format!("`to`: {e}")))?;
                }
                ClientFrame::Send {
                    to,
                    data: data(self.data)?,
                    id,
                }
            }
            "join" | "leave" | "publish" => {
                let room = need(self.room, "room")?;
                validate_room(&room).map_err(|e| fail(format!("`room`: {e}")))?;
                match kind {
                    "join" => ClientFrame::Join {
                        room,
                        id,
                        resume: self.resume,
                        epoch: self.epoch,
                        presence: self.presence,
                    },
                    "leave" => ClientFrame::Leave { room, id },
                    _ => ClientFrame::Publish {
                        room,
                        data: data(self.data)?,
                        id,
                    },
                }
            }
            "ping" => ClientFrame::Ping { id },
            other => {
                let [rest @ .., last] = ClientFrame::TYPES;
                return Err(fail(format!(
                    "unknown type {other:?}; expected {} or {last}",
                    rest.join(", ")
                )));
            }
        };
        Ok(frame)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_kind() {
        let f = ClientFrame::parse(r#"{"type":"send","to":"bob","data":{"x":[1,2]},"id":"m1"}"#)
            .expect("send");
        match f {
            ClientFrame::Send { to, data, id } => {
                assert_eq!(to, "bob");
                assert_eq!(data.get(), r#"{"x":[1,2]}"#);
                assert_eq!(id, Some(MsgId::Str("m1".into())));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            ClientFrame::parse(r#"{"type":"join","room":"lobby","resume":4,"epoch":"e1"}"#),
            Ok(ClientFrame::Join {
                resume: Some(4),
                ..
            })
        ));
        assert!(matches!(
            ClientFrame::parse(r#"{"type":"leave","room":"lobby","id":7}"#),
            Ok(ClientFrame::Leave {
                id: Some(MsgId::Int(7)),
                ..
            })
        ));
        assert!(matches!(
            ClientFrame::parse(r#"{"type":"publish","room":"r","data":null}"#),
            Ok(ClientFrame::Publish { .. })
        ));
        assert!(matches!(
            ClientFrame::parse(r#"{"type":"ping"}"#),
            Ok(ClientFrame::Ping { id: None })
        ));
    }

    #[test]
    fn rejects_bad_frames_with_reasons() {
        let cases = [
            ("not json", "invalid frame"),
            (r#"{"to":"bob"}"#, "missing field `type`"),
            (r#"{"type":"dance"}"#, "unknown type"),
            (r#"{"type":"send","data":1}"#, "missing field `to`"),
            (r#"{"type":"send","to":"bob"}"#, "missing field `data`"),
            (r#"{"type":"send","to":"b b","data":1}"#, "`to`"),
            (r#"{"type":"join"}"#, "missing field `room`"),
            (r#"{"type":"publish","room":"r"}"#, "missing field `data`"),
            (r#"[1,2]"#, "invalid frame"),
            (r#"{"type":"ping","id":{"a":1}}"#, "invalid frame"),
        ];
        for (input, want) in cases {
            let err = ClientFrame::parse(input).expect_err(input);
            assert!(err.message.contains(want), "{input}: {}", err.message);
        }
    }

    #[test]
    fn errors_echo_the_id() {
        let err = ClientFrame::parse(r#"{"type":"send","id":"x9","data":1}"#).expect_err("to");
        assert_eq!(err.id, Some(MsgId::Str("x9".into())));
    }

    #[test]
    fn id_length_is_bounded() {
        let long = format!(r#"{{"type":"ping","id":"{}"}}"#, "a".repeat(129));
        assert!(ClientFrame::parse(&long).is_err());
    }

    #[test]
    fn serialises_what_it_parses() {
        for text in [
            r#"{"type":"send","to":"bob","data":{"b":1,"a":[2]},"id":"m1"}"#,
            r#"{"type":"join","room":"lobby","id":3,"resume":8,"epoch":"e1"}"#,
            r#"{"type":"join","room":"lobby","id":4,"presence":true}"#,
            r#"{"type":"leave","room":"lobby"}"#,
            r#"{"type":"publish","room":"lobby","data":null,"id":"p1"}"#,
            r#"{"type":"ping"}"#,
        ] {
            let f = ClientFrame::parse(text).expect(text);
            // Byte for byte: field order is the documented one and `data`
            // is kept verbatim.
            assert_eq!(f.to_json(), text);
            assert_eq!(
                serde_json::from_str::<ClientFrame>(text)
                    .expect(text)
                    .to_json(),
                text
            );
        }
    }

    #[test]
    fn deserialize_runs_the_same_checks() {
        let err = serde_json::from_str::<ClientFrame>(r#"{"type":"send","to":"a b","data":1}"#)
            .expect_err("bad user");
        assert!(err.to_string().contains("`to`"), "{err}");
    }

    #[test]
    fn set_id_replaces_the_id() {
        let mut f = ClientFrame::parse(r#"{"type":"leave","room":"r"}"#).expect("leave");
        f.set_id(Some(MsgId::Str("l1".into())));
        assert_eq!(f.kind(), "leave");
        assert_eq!(f.to_json(), r#"{"type":"leave","room":"r","id":"l1"}"#);
    }
}
