//! The HTTP side of the contract that every wsring process shares: the
//! routing mode, the epoch header a gateway sends with a forwarded upgrade,
//! and the request bodies of the write endpoints (`/api/send`,
//! `/api/publish`, `/api/broadcast`) with their validation.
//!
//! Nodes and gateways both accept these bodies, so the rules live here once:
//! a gateway rejects bad input with the same message a node would give.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use thiserror::Error;

use crate::client::MAX_ID_LEN;
use crate::ids::{validate_room, validate_user};

/// Header carrying the ring epoch the gateway routed a connect by; a node
/// that has not seen that epoch yet waits briefly for it.
pub const EPOCH_HEADER: &str = "x-wsring-epoch";

/// How messages find sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Routing {
    /// Consistent hashing: each user lives on its ring owner; a direct message
    /// goes to that one node. The default.
    #[default]
    Hash,
    /// Sessions land anywhere; direct messages fan out to every node.
    Broadcast,
}

impl Routing {
    /// `"hash"` or `"broadcast"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Routing::Hash => "hash",
            Routing::Broadcast => "broadcast",
        }
    }
}

impl std::str::FromStr for Routing {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "hash" => Ok(Routing::Hash),
            "broadcast" => Ok(Routing::Broadcast),
            other => Err(format!("unknown routing {other:?}; use hash or broadcast")),
        }
    }
}

/// A well-formed body with an invalid field. The message is the whole
/// answer text (it names the field), so it goes out verbatim as a
/// `bad_request`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{0}")]
pub struct InvalidBody(pub String);

/// `POST /api/send`.
#[derive(Debug, Deserialize)]
pub struct SendBody {
    /// Recipient user id.
    pub to: String,
    /// Payload, verbatim.
    pub data: Box<RawValue>,
    /// Optional idempotency key (durable mode deduplicates retries by it).
    pub id: Option<String>,
}

impl SendBody {
    /// Checks the recipient.
    pub fn check_recipient(&self) -> Result<(), InvalidBody> {
        validate_user(&self.to).map_err(|e| InvalidBody(format!("`to`: {e}")))
    }

    /// Checks every field: the recipient, then the idempotency key.
    pub fn validate(&self) -> Result<(), InvalidBody> {
        self.check_recipient()?;
        check_id(self.id.as_deref())
    }
}

/// `POST /api/publish`.
#[derive(Debug, Deserialize)]
pub struct PublishBody {
    /// Room name.
    pub room: String,
    /// Payload, verbatim.
    pub data: Box<RawValue>,
    /// Optional idempotency key.
    pub id: Option<String>,
}

impl PublishBody {
    /// Checks the room name.
    pub fn check_room(&self) -> Result<(), InvalidBody> {
        validate_room(&self.room).map_err(|e| InvalidBody(format!("`room`: {e}")))
    }

    /// Checks every field: the room, then the idempotency key.
    pub fn validate(&self) -> Result<(), InvalidBody> {
        self.check_room()?;
        check_id(self.id.as_deref())
    }
}

/// `POST /api/broadcast`.
#[derive(Debug, Deserialize)]
pub struct BroadcastBody {
    /// Payload, verbatim.
    pub data: Box<RawValue>,
}

/// Checks an optional idempotency key: 1–128 bytes when present.
pub fn check_id(id: Option<&str>) -> Result<(), InvalidBody> {
    match id {
        Some(id) if id.is_empty() || id.len() > MAX_ID_LEN => {
            Err(InvalidBody("`id` must be 1-128 bytes".into()))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn send(json: &str) -> SendBody {
        serde_json::from_str(json).expect("valid send body")
    }

    #[test]
    fn routing_round_trips_through_its_string_form() {
        for r in [Routing::Hash, Routing::Broadcast] {
            assert_eq!(r.as_str().parse::<Routing>(), Ok(r));
            assert_eq!(
                serde_json::to_string(&r).expect("serialises"),
                format!("\"{}\"", r.as_str())
            );
        }
        assert_eq!(Routing::default(), Routing::Hash);
        assert!("ring".parse::<Routing>().is_err());
    }

    #[test]
    fn send_body_checks_recipient_then_id() {
        assert_eq!(send(r#"{"to":"bob","data":1}"#).validate(), Ok(()));
        let bad_to = send(r#"{"to":"","data":1,"id":""}"#).validate();
        assert!(bad_to.expect_err("empty to").0.starts_with("`to`: "));
        let bad_id = send(r#"{"to":"bob","data":1,"id":""}"#).validate();
        assert_eq!(bad_id, Err(InvalidBody("`id` must be 1-128 bytes".into())));
        // The recipient check alone does not look at the id.
        assert_eq!(
            send(r#"{"to":"bob","data":1,"id":""}"#).check_recipient(),
            Ok(())
        );
    }

    #[test]
    fn publish_body_checks_room_then_id() {
        let b: PublishBody =
            serde_json::from_str(r#"{"room":"lobby","data":{"x":1}}"#).expect("valid body");
        assert_eq!(b.validate(), Ok(()));
        assert_eq!(b.data.get(), r#"{"x":1}"#, "payload is kept verbatim");
        let b: PublishBody =
            serde_json::from_str(r#"{"room":"a b","data":1}"#).expect("valid body");
        assert!(
            b.validate()
                .expect_err("bad room")
                .0
                .starts_with("`room`: ")
        );
    }

    #[test]
    fn id_bounds() {
        assert!(check_id(None).is_ok());
        assert!(check_id(Some("x")).is_ok());
        assert!(check_id(Some(&"x".repeat(MAX_ID_LEN))).is_ok());
        assert!(check_id(Some(&"x".repeat(MAX_ID_LEN + 1))).is_err());
        assert!(check_id(Some("")).is_err());
    }
}
