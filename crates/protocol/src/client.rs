//! Frames a client sends, and their parsing.
//!
//! Parsing is two-phase on purpose: serde's internally-tagged enums buffer
//! their input and cannot hold a borrowed `RawValue`, so we first read a flat
//! struct of optional fields (borrowing `data` as raw JSON, never re-encoding
//! it), then check the `type` and its required fields ourselves. That also
//! lets every error echo the request's `id`, so the client can tell which
//! request failed.

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

/// Longest accepted string [`MsgId`].
pub const MAX_ID_LEN: usize = 128;

/// One parsed client frame.
#[derive(Debug, Clone)]
pub enum ClientFrame {
    /// `{"type":"send","to":"bob","data":…,"id":…}`: a direct message.
    Send {
        /// Recipient user id.
        to: String,
        /// Opaque JSON payload, kept verbatim.
        data: Box<RawValue>,
        /// Optional request id.
        id: Option<MsgId>,
    },
    /// `{"type":"join","room":"lobby","id":…,"resume":…,"epoch":…}`.
    Join {
        /// Room to join.
        room: String,
        /// Optional request id.
        id: Option<MsgId>,
        /// Durable mode: last room seq the client saw, to replay what it missed.
        resume: Option<u64>,
        /// Durable mode: the room stream epoch that `resume` belongs to.
        epoch: Option<String>,
    },
    /// `{"type":"leave","room":"lobby","id":…}`.
    Leave {
        /// Room to leave.
        room: String,
        /// Optional request id.
        id: Option<MsgId>,
    },
    /// `{"type":"publish","room":"lobby","data":…,"id":…}`.
    Publish {
        /// Target room.
        room: String,
        /// Opaque JSON payload, kept verbatim.
        data: Box<RawValue>,
        /// Optional request id.
        id: Option<MsgId>,
    },
    /// `{"type":"ping","id":…}`.
    Ping {
        /// Optional request id, echoed in `pong`.
        id: Option<MsgId>,
    },
}

impl ClientFrame {
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
        let raw: RawFrame<'_> = serde_json::from_str(text).map_err(|e| ParseError {
            message: format!("invalid frame: {e}"),
            id: None,
        })?;
        let id = match raw.id {
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
        let data = |d: Data<'_>| match d {
            Data::Present(raw) => Ok(raw.to_owned()),
            Data::Absent => Err(fail("missing field `data`".into())),
        };
        let Some(kind) = raw.kind.as_deref() else {
            return Err(fail("missing field `type`".into()));
        };
        let frame = match kind {
            "send" => {
                let to = need(raw.to, "to")?;
                validate_user(&to).map_err(|e| fail(format!("`to`: {e}")))?;
                ClientFrame::Send {
                    to,
                    data: data(raw.data)?,
                    id,
                }
            }
            "join" | "leave" | "publish" => {
                let room = need(raw.room, "room")?;
                validate_room(&room).map_err(|e| fail(format!("`room`: {e}")))?;
                match kind {
                    "join" => ClientFrame::Join {
                        room,
                        id,
                        resume: raw.resume,
                        epoch: raw.epoch,
                    },
                    "leave" => ClientFrame::Leave { room, id },
                    _ => ClientFrame::Publish {
                        room,
                        data: data(raw.data)?,
                        id,
                    },
                }
            }
            "ping" => ClientFrame::Ping { id },
            other => {
                return Err(fail(format!(
                    "unknown type {other:?}; expected send, join, leave, publish or ping"
                )));
            }
        };
        Ok(frame)
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

#[derive(Deserialize)]
struct RawFrame<'a> {
    #[serde(rename = "type")]
    kind: Option<String>,
    to: Option<String>,
    room: Option<String>,
    #[serde(default, borrow)]
    data: Data<'a>,
    id: Option<MsgId>,
    resume: Option<u64>,
    epoch: Option<String>,
}

/// Distinguishes `"data": null` (present, a valid payload) from a missing
/// `data` field, which `Option` would conflate.
#[derive(Default)]
enum Data<'a> {
    #[default]
    Absent,
    Present(&'a RawValue),
}

impl<'de: 'a, 'a> Deserialize<'de> for Data<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        <&'a RawValue>::deserialize(d).map(Data::Present)
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
}
