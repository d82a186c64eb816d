//! The stored form of a durable message and how it becomes a client frame.
//!
//! Streams store `{"from":…,"to"|"room":…,"data":…}` without position; the
//! `seq` and `epoch` are added at render time. The live path and the replay
//! path both call [`render`], so a replayed message is byte-identical to the
//! live one.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use wsring_protocol::MessageFrame;

#[derive(Serialize, Deserialize)]
struct Stored<'a> {
    #[serde(borrow)]
    from: Option<&'a str>,
    #[serde(borrow, skip_serializing_if = "Option::is_none")]
    to: Option<&'a str>,
    #[serde(borrow, skip_serializing_if = "Option::is_none")]
    room: Option<&'a str>,
    #[serde(borrow)]
    data: &'a RawValue,
}

/// Encodes a direct (`to`) or room message for storage.
pub(crate) fn encode(
    from: Option<&str>,
    to: Option<&str>,
    room: Option<&str>,
    data: &RawValue,
) -> Bytes {
    let s = Stored {
        from,
        to,
        room,
        data,
    };
    Bytes::from(serde_json::to_vec(&s).unwrap_or_default())
}

/// Renders a stored message as the client `message` frame at `seq`.
pub(crate) fn render(stored: &[u8], seq: u64, epoch: &str) -> Result<String, serde_json::Error> {
    let s: Stored<'_> = serde_json::from_slice(stored)?;
    let frame = match (s.to, s.room) {
        (_, Some(room)) => MessageFrame::room(s.from, room, s.data),
        (Some(to), None) => MessageFrame::direct(s.from, to, s.data),
        (None, None) => MessageFrame::broadcast(s.data),
    };
    Ok(frame.with_seq(seq, epoch).render())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_and_replay_render_identically() {
        let data = RawValue::from_string("{\"n\":1}".into()).expect("json");
        let stored = encode(Some("alice"), Some("bob"), None, &data);
        let live = MessageFrame::direct(Some("alice"), "bob", &data)
            .with_seq(3, "ep")
            .render();
        assert_eq!(render(&stored, 3, "ep").expect("render"), live);
        let room = encode(None, None, Some("r"), &data);
        assert_eq!(
            render(&room, 1, "e").expect("render"),
            r#"{"type":"message","from":null,"room":"r","data":{"n":1},"seq":1,"epoch":"e"}"#
        );
    }
}
