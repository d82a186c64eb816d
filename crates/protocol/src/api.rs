//! The HTTP side of the contract that every wsring process shares: the
//! routing mode, the epoch header a gateway sends with a forwarded upgrade,
//! the request bodies of the write and control endpoints (`/api/send`,
//! `/api/publish`, `/api/broadcast`, `/api/disconnect`,
//! `/api/rooms/{room}/join|leave`) and the history query, with their
//! validation, and the typed answers of the server API.
//!
//! Nodes and gateways both accept these bodies, so the rules live here once:
//! a gateway rejects bad input with the same message a node would give. The
//! answers are the wire form both roles send and the Rust client's `Api`
//! parses.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use thiserror::Error;

use crate::client::MAX_ID_LEN;
use crate::close;
use crate::ids::{validate_room, validate_user};

/// Header carrying the ring epoch the gateway routed a connect by; a node
/// that has not seen that epoch yet waits briefly for it.
pub const EPOCH_HEADER: &str = "x-wsring-epoch";

/// The same epoch as a connect query parameter, for a client that asked a
/// gateway where its user lives (`GET /ws/locate`) and connects to that
/// node directly (browsers cannot set headers on a WebSocket connect).
pub const RING_EPOCH_PARAM: &str = "ring_epoch";

/// A node's WebSocket URL as a located client connects to it: with the
/// epoch that routed the user there ([`RING_EPOCH_PARAM`]) and any `extra`
/// query pairs (a signed identity), encoded.
pub fn located_url(node_url: &str, epoch: u64, extra: &[(&str, &str)]) -> String {
    let mut q = form_urlencoded::Serializer::new(String::new());
    q.append_pair(RING_EPOCH_PARAM, &epoch.to_string());
    for (k, v) in extra {
        q.append_pair(k, v);
    }
    let sep = if node_url.contains('?') { '&' } else { '?' };
    format!("{node_url}{sep}{}", q.finish())
}

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

/// `POST /api/disconnect`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DisconnectBody {
    /// The user whose sessions are closed.
    pub user: String,
    /// Close code, 4000–4999. Default: [`close::DISCONNECTED`] (4000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<u16>,
    /// Close reason, at most 123 bytes. Default:
    /// [`close::REASON_DISCONNECTED`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl DisconnectBody {
    /// Checks the user, the code (an application code) and the reason's
    /// length.
    pub fn validate(&self) -> Result<(), InvalidBody> {
        validate_user(&self.user).map_err(|e| InvalidBody(format!("`user`: {e}")))?;
        if let Some(code) = self.code
            && !close::is_app_code(code)
        {
            return Err(InvalidBody(format!(
                "`code` must be an application close code ({}-{}), got {code}",
                close::APP_MIN,
                close::APP_MAX
            )));
        }
        if let Some(reason) = &self.reason
            && reason.len() > close::MAX_REASON_BYTES
        {
            return Err(InvalidBody(format!(
                "`reason` must be at most {} bytes",
                close::MAX_REASON_BYTES
            )));
        }
        Ok(())
    }

    /// The close code to send.
    pub fn close_code(&self) -> u16 {
        self.code.unwrap_or(close::DISCONNECTED)
    }

    /// The close reason to send.
    pub fn close_reason(&self) -> &str {
        self.reason.as_deref().unwrap_or(close::REASON_DISCONNECTED)
    }
}

/// `POST /api/rooms/{room}/join` and `/leave`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomUserBody {
    /// The user whose sessions join or leave.
    pub user: String,
}

impl RoomUserBody {
    /// Checks the user.
    pub fn validate(&self) -> Result<(), InvalidBody> {
        validate_user(&self.user).map_err(|e| InvalidBody(format!("`user`: {e}")))
    }
}

/// Checks a room named in a path (`/api/rooms/{room}/…`).
pub fn check_room_path(room: &str) -> Result<(), InvalidBody> {
    validate_room(room).map_err(|e| InvalidBody(format!("room in the path: {e}")))
}

/// Most members one `GET /api/rooms/{room}` lists; a longer list is cut
/// (sorted by user id) and says `"truncated":true`.
pub const ROOM_MEMBERS_MAX: usize = 1000;

/// Entries `GET /api/history` returns when `limit` is not given.
pub const HISTORY_LIMIT_DEFAULT: usize = 100;
/// The largest `limit` `GET /api/history` accepts.
pub const HISTORY_LIMIT_MAX: usize = 1000;

/// Whose history `GET /api/history` reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HistoryStream {
    /// A user's direct messages (`?user=`).
    User(String),
    /// A room's messages (`?room=`).
    Room(String),
}

/// The query of `GET /api/history?user=…|room=…&since=SEQ&limit=N`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryQuery {
    /// The stream.
    pub stream: HistoryStream,
    /// Entries with a seq greater than this (default 0: from the oldest
    /// retained).
    pub since: u64,
    /// At most this many entries (1–[`HISTORY_LIMIT_MAX`], default
    /// [`HISTORY_LIMIT_DEFAULT`]).
    pub limit: usize,
}

impl HistoryQuery {
    /// Checks the raw parameters: exactly one of `user` and `room`, a
    /// non-negative integer `since`, a `limit` within bounds.
    pub fn parse(
        user: Option<String>,
        room: Option<String>,
        since: Option<String>,
        limit: Option<String>,
    ) -> Result<HistoryQuery, InvalidBody> {
        let stream = match (user, room) {
            (Some(u), None) => {
                validate_user(&u).map_err(|e| InvalidBody(format!("`user`: {e}")))?;
                HistoryStream::User(u)
            }
            (None, Some(r)) => {
                validate_room(&r).map_err(|e| InvalidBody(format!("`room`: {e}")))?;
                HistoryStream::Room(r)
            }
            (Some(_), Some(_)) => {
                return Err(InvalidBody("give either `user` or `room`, not both".into()));
            }
            (None, None) => {
                return Err(InvalidBody(
                    "missing query parameter `user` or `room`".into(),
                ));
            }
        };
        let since = match since {
            None => 0,
            Some(s) => s.parse::<u64>().map_err(|_| {
                InvalidBody(format!("`since` must be a non-negative integer, got {s:?}"))
            })?,
        };
        let limit = match limit {
            None => HISTORY_LIMIT_DEFAULT,
            Some(l) => match l.parse::<usize>() {
                Ok(n) if (1..=HISTORY_LIMIT_MAX).contains(&n) => n,
                _ => {
                    return Err(InvalidBody(format!(
                        "`limit` must be an integer from 1 to {HISTORY_LIMIT_MAX}, got {l:?}"
                    )));
                }
            },
        };
        Ok(HistoryQuery {
            stream,
            since,
            limit,
        })
    }
}

/// The 202 answer of `POST /api/send` and `/api/publish`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Accepted {
    /// Always true.
    pub ok: bool,
    /// Durable mode: the message's position in its stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    /// `Some(false)` on a non-durable `POST /api/send` the backend says no
    /// live node received (the user's owner node just died and the ring does
    /// not know yet): the message is lost. Absent otherwise, and never
    /// `Some(true)`; see `docs/PROTOCOL.md`, "What an ack means".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered: Option<bool>,
}

/// One session in a `GET /api/presence` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresenceSession {
    /// The node holding it.
    pub node: String,
    /// The session id.
    pub session: String,
}

/// The answer of `GET /api/presence?user=…`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserPresence {
    /// The user.
    pub user: String,
    /// Its sessions, cluster-wide.
    pub sessions: Vec<PresenceSession>,
    /// Nodes that did not answer in time.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unreachable: Vec<String>,
}

/// The answer of `POST /api/disconnect`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Disconnected {
    /// Always true.
    pub ok: bool,
    /// The user.
    pub user: String,
    /// Sessions told to close: those open on the answering nodes when
    /// each of them took the call.
    pub closed: u64,
    /// Nodes that did not answer in time; sessions there may still be open.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unreachable: Vec<String>,
}

/// The answer of `POST /api/rooms/{room}/join` and `/leave`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomChange {
    /// Always true.
    pub ok: bool,
    /// The room.
    pub room: String,
    /// The user.
    pub user: String,
    /// Whether the stored server-side membership changed (join: it was not
    /// stored yet; leave: it was stored).
    pub changed: bool,
    /// Live sessions of the user told to join or leave now.
    pub sessions: u64,
    /// Nodes that did not answer in time; sessions there change on their
    /// next connect.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unreachable: Vec<String>,
}

/// One member in a `GET /api/rooms/{room}` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomMember {
    /// The user.
    pub user: String,
    /// Its sessions in the room, cluster-wide.
    pub sessions: u64,
}

/// The answer of `GET /api/rooms/{room}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomMembers {
    /// The room.
    pub room: String,
    /// Distinct users in the room.
    pub users: u64,
    /// Sessions in the room.
    pub sessions: u64,
    /// Members sorted by user id, at most [`ROOM_MEMBERS_MAX`].
    pub members: Vec<RoomMember>,
    /// Whether `members` was cut at [`ROOM_MEMBERS_MAX`].
    pub truncated: bool,
    /// Nodes that did not answer in time; their members are missing.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unreachable: Vec<String>,
}

/// The answer of `GET /api/rooms/{room}/count`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomCount {
    /// The room.
    pub room: String,
    /// Distinct users in the room.
    pub users: u64,
    /// Sessions in the room.
    pub sessions: u64,
    /// Nodes that did not answer in time; their members are not counted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unreachable: Vec<String>,
}

impl From<RoomMembers> for RoomCount {
    fn from(m: RoomMembers) -> RoomCount {
        RoomCount {
            room: m.room,
            users: m.users,
            sessions: m.sessions,
            unreachable: m.unreachable,
        }
    }
}

/// One stored message in a `GET /api/history` answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// Its position in the stream.
    pub seq: u64,
    /// The `message` frame exactly as a session receives it (with `seq`
    /// and `epoch`).
    pub message: Box<RawValue>,
}

/// The answer of `GET /api/history`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct History {
    /// The user, for a user stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The room, for a room stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room: Option<String>,
    /// The stream's epoch; it changes when the stream was lost or reset.
    pub epoch: String,
    /// Oldest retained seq (`last_seq + 1` when nothing is retained).
    pub first_seq: u64,
    /// Newest seq.
    pub last_seq: u64,
    /// Entries after `since`, oldest first.
    pub entries: Vec<HistoryEntry>,
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

    #[test]
    fn accepted_reads_delivered_only_when_the_server_sends_it() {
        let read = |j: &str| serde_json::from_str::<Accepted>(j).expect(j);
        let lost = read(r#"{"ok":true,"delivered":false}"#);
        assert_eq!(
            (lost.ok, lost.seq, lost.delivered),
            (true, None, Some(false))
        );
        let plain = read(r#"{"ok":true}"#);
        assert_eq!(plain.delivered, None);
        assert_eq!(read(r#"{"ok":true,"seq":7}"#).seq, Some(7));
        // Written back, an absent flag stays absent.
        assert_eq!(
            serde_json::to_string(&plain).expect("json"),
            r#"{"ok":true}"#
        );
        assert_eq!(
            serde_json::to_string(&lost).expect("json"),
            r#"{"ok":true,"delivered":false}"#
        );
    }

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
    fn disconnect_body_rules() {
        let b = |j: &str| serde_json::from_str::<DisconnectBody>(j).expect(j);
        let plain = b(r#"{"user":"bob"}"#);
        assert_eq!(plain.validate(), Ok(()));
        assert_eq!(
            (plain.close_code(), plain.close_reason()),
            (4000, "disconnected")
        );
        let own = b(r#"{"user":"bob","code":4999,"reason":"banned"}"#);
        assert_eq!(own.validate(), Ok(()));
        assert_eq!((own.close_code(), own.close_reason()), (4999, "banned"));
        for code in [1000, 1012, 3999, 5000] {
            let e = b(&format!(r#"{{"user":"bob","code":{code}}}"#))
                .validate()
                .expect_err("not an app code");
            assert!(e.0.contains("4000-4999"), "{e}");
        }
        let long = format!(r#"{{"user":"bob","reason":"{}"}}"#, "x".repeat(124));
        assert!(b(&long).validate().is_err());
        let fits = format!(r#"{{"user":"bob","reason":"{}"}}"#, "x".repeat(123));
        assert!(b(&fits).validate().is_ok());
        assert!(
            b(r#"{"user":"a b"}"#)
                .validate()
                .expect_err("bad user")
                .0
                .starts_with("`user`: ")
        );
    }

    #[test]
    fn history_query_rules() {
        let s = |v: &str| Some(v.to_owned());
        let q = HistoryQuery::parse(s("bob"), None, None, None).expect("defaults");
        assert_eq!(
            q,
            HistoryQuery {
                stream: HistoryStream::User("bob".into()),
                since: 0,
                limit: HISTORY_LIMIT_DEFAULT
            }
        );
        let q = HistoryQuery::parse(None, s("lobby"), s("7"), s("1000")).expect("room");
        assert_eq!(
            (q.stream, q.since, q.limit),
            (HistoryStream::Room("lobby".into()), 7, 1000)
        );
        for (user, room, since, limit, needle) in [
            (None, None, None, None, "missing"),
            (s("a"), s("b"), None, None, "not both"),
            (s("a b"), None, None, None, "`user`"),
            (None, s("a b"), None, None, "`room`"),
            (s("a"), None, s("-1"), None, "`since`"),
            (s("a"), None, s("x"), None, "`since`"),
            (s("a"), None, None, s("0"), "`limit`"),
            (s("a"), None, None, s("1001"), "`limit`"),
        ] {
            let e = HistoryQuery::parse(user, room, since, limit).expect_err(needle);
            assert!(e.0.contains(needle), "{needle}: {e}");
        }
    }

    #[test]
    fn answers_round_trip() {
        let m: RoomMembers = serde_json::from_str(
            r#"{"room":"r","users":1,"sessions":2,"members":[{"user":"a","sessions":2}],"truncated":false}"#,
        )
        .expect("members");
        assert!(m.unreachable.is_empty());
        let c = RoomCount::from(m);
        assert_eq!(
            serde_json::to_string(&c).expect("json"),
            r#"{"room":"r","users":1,"sessions":2}"#
        );
        let h: History = serde_json::from_str(
            r#"{"room":"r","epoch":"e","first_seq":1,"last_seq":1,"entries":[{"seq":1,"message":{"type":"message"}}]}"#,
        )
        .expect("history");
        assert_eq!(h.entries[0].message.get(), r#"{"type":"message"}"#);
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
