//! The unit that travels between nodes through the broker.
//!
//! Wire form: one line of JSON header, a `\n`, then the already-rendered
//! client frame. The sender renders the `message` frame once; receivers read
//! only the small header to find local recipients and forward the frame bytes
//! untouched (a zero-copy `Bytes` slice), so fan-out never re-serialises.

use bytes::{BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Who an envelope is for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum Target {
    /// Every session of one user.
    User {
        /// The user id.
        user: String,
    },
    /// Every member session of a room.
    Room {
        /// The room name.
        room: String,
    },
    /// Every session in the cluster.
    All,
    /// Not for sessions: the room's roster bookkeeping between nodes (who
    /// is present where, for `presence` events). The frame is the node
    /// crate's roster message, not a client frame.
    Roster {
        /// The room.
        room: String,
    },
    /// Not for sessions: cluster-wide room occupancy bookkeeping between
    /// nodes (which nodes have members in which rooms, for the occupied and
    /// vacated webhooks). The frame is the node crate's occupancy message.
    Occupancy,
}

#[derive(Serialize, Deserialize)]
struct Header {
    #[serde(flatten)]
    target: Target,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    seq: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    se: Option<String>,
}

/// A message in flight between nodes.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    /// Recipients.
    pub target: Target,
    /// Durable mode: the stream seq of this message.
    pub seq: Option<u64>,
    /// Durable mode: the stream epoch of this message.
    pub stream_epoch: Option<String>,
    /// The rendered client frame (UTF-8 JSON text).
    pub frame: Bytes,
}

/// A broker payload that is not a valid envelope (a bug or a foreign publisher).
#[derive(Debug, Error)]
pub enum EnvelopeError {
    /// No header/frame separator.
    #[error("envelope has no header line")]
    NoHeader,
    /// The header is not valid JSON of the expected shape.
    #[error("bad envelope header: {0}")]
    Header(#[from] serde_json::Error),
    /// The frame is not UTF-8.
    #[error("envelope frame is not UTF-8")]
    NotUtf8,
}

impl Envelope {
    /// Encodes header + `\n` + frame.
    pub fn encode(&self) -> Bytes {
        let header = Header {
            target: self.target.clone(),
            seq: self.seq,
            se: self.stream_epoch.clone(),
        };
        let head = serde_json::to_vec(&header).unwrap_or_default();
        let mut buf = BytesMut::with_capacity(head.len() + 1 + self.frame.len());
        buf.put_slice(&head);
        buf.put_u8(b'\n');
        buf.put_slice(&self.frame);
        buf.freeze()
    }

    /// Decodes, slicing the frame out of `bytes` without copying.
    pub fn decode(bytes: Bytes) -> Result<Envelope, EnvelopeError> {
        let nl = bytes
            .iter()
            .position(|b| *b == b'\n')
            .ok_or(EnvelopeError::NoHeader)?;
        let header: Header = serde_json::from_slice(&bytes[..nl])?;
        let frame = bytes.slice(nl + 1..);
        if std::str::from_utf8(&frame).is_err() {
            return Err(EnvelopeError::NotUtf8);
        }
        Ok(Envelope {
            target: header.target,
            seq: header.seq,
            stream_epoch: header.se,
            frame,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for target in [
            Target::User { user: "bob".into() },
            Target::Room {
                room: "lobby".into(),
            },
            Target::All,
            Target::Roster { room: "r".into() },
            Target::Occupancy,
        ] {
            let e = Envelope {
                target,
                seq: Some(9),
                stream_epoch: Some("ab12".into()),
                frame: Bytes::from_static(br#"{"type":"message","data":"x\ny"}"#),
            };
            assert_eq!(Envelope::decode(e.encode()).expect("decode"), e);
        }
    }

    #[test]
    fn rejects_garbage() {
        assert!(Envelope::decode(Bytes::from_static(b"no newline")).is_err());
        assert!(Envelope::decode(Bytes::from_static(b"{}\n{}")).is_err());
        assert!(Envelope::decode(Bytes::from_static(b"{\"t\":\"all\"}\n\xff")).is_err());
    }
}
