//! `{"type":"join","room":"lobby","resume":…,"epoch":…,"presence":…}`:
//! start receiving a room, and with `"presence":true` its `presence` events
//! too (the join is answered once the room's roster is ready, so no event
//! after the ack is missed).
//!
//! The session is added to the room (and the node subscribed to the room's
//! topic) *before* the stream position is read, so a message published during
//! the join is either in the history read or arrives live afterwards — never
//! neither. In durable mode the join always ends with a `resumed` frame that
//! carries the room's position, so a client that never saw a room message can
//! still resume it after a reconnect.
//!
//! A room the server put the user in (`POST /api/rooms/{room}/join`) is
//! allowed even outside the token's `rooms` claim, and does not count
//! against the client's own room limit.

use wsring_cluster::StreamName;
use wsring_protocol::{ErrorCode, MsgId};

use super::Outcome;
use crate::error::RouteError;
use crate::node::Node;
use crate::session::cursor::{Cursor, Resume};
use crate::session::state::SessionState;

/// Join a room, optionally resuming it after `resume` of stream `epoch`.
#[derive(Debug)]
pub(crate) struct Join {
    pub room: String,
    pub id: Option<MsgId>,
    pub resume: Option<u64>,
    pub epoch: Option<String>,
    /// Whether the session wants the room's `presence` events.
    pub presence: Option<bool>,
}

impl Join {
    pub async fn apply(self, s: &mut SessionState, node: &Node) -> Outcome {
        let Join {
            room,
            id,
            resume,
            epoch,
            presence,
        } = self;
        let id = id.as_ref();
        // A room the server put the user in is allowed whatever the token
        // says: the server decided.
        if !s.rooms.allows(&room) && !s.server_rooms.contains(&room) {
            // Checked before anything is read: a durable resume never
            // serves a room the token does not allow.
            let msg = format!("this connection's token does not allow room {room:?}");
            return Outcome::error(ErrorCode::Forbidden, &msg, id);
        }
        let session = &s.handle.id;
        let limit = node.cfg.max_rooms_per_session;
        // Server-side rooms do not count against the client's own limit.
        let own_rooms = node
            .table
            .room_count(session)
            .saturating_sub(s.server_rooms.len());
        if !node.table.is_in(session, &room) && own_rooms >= limit {
            let msg = format!("a session may be in at most {limit} rooms");
            return Outcome::error(ErrorCode::LimitExceeded, &msg, id);
        }
        match enter(s, node, &room, resume, epoch, true).await {
            Ok(catch_up) => {
                node.set_presence(&s.handle, &room, presence == Some(true))
                    .await;
                let ack = Outcome::ack(id);
                match catch_up {
                    Some(stream) => ack.then_catch_up(stream),
                    None => ack,
                }
            }
            Err((code, msg)) => Outcome::error(code, &msg, id),
        }
    }
}

/// Puts the session in `room` (the node subscribes to the room first if
/// needed) and, in durable mode, sets its cursor: at the room's head, or at
/// `resume` of stream `epoch`. Returns the stream to replay up to its head
/// (which ends with `resumed`), or why the join failed (the error code and
/// message); a failed join changes nothing. A room stream this creates
/// counts for the user's share of the store when the client asked
/// (`by_client`), for nobody when the server did.
pub(crate) async fn enter(
    s: &mut SessionState,
    node: &Node,
    room: &str,
    resume: Option<u64>,
    epoch: Option<String>,
    by_client: bool,
) -> Result<Option<StreamName>, (ErrorCode, String)> {
    let added = node
        .join_room(&s.handle, room)
        .await
        .map_err(|e| (ErrorCode::Unavailable, e.to_string()))?;
    if added {
        crate::events::member_added(node, &s.handle, room);
    }
    let Some(store) = node.streams.clone() else {
        return Ok(None);
    };
    let stream = StreamName::Room(room.to_owned());
    if s.cursors.contains_key(&stream) && resume.is_none() {
        // Already live in this room: keep the cursor (replacing it with
        // the head would skip messages queued for this session right now).
        return Ok(Some(stream));
    }
    let owner = by_client.then(|| s.handle.user.to_string());
    let head = match store.head_as(&stream, owner.as_deref()).await {
        Ok(h) => h,
        Err(e) => {
            // Undo only what this request did.
            if added {
                node.leave_room(&s.handle, room);
            }
            return Err(match RouteError::from(e) {
                e @ RouteError::StorageFull(_) => (ErrorCode::StorageFull, e.to_string()),
                e @ RouteError::QuotaExceeded(_) => (ErrorCode::QuotaExceeded, e.to_string()),
                e => (
                    ErrorCode::Unavailable,
                    format!("stream store unavailable: {e}"),
                ),
            });
        }
    };
    let cursor = match resume {
        Some(seq) => Cursor::resume(
            &head,
            &Resume {
                seq,
                epoch: epoch.unwrap_or_default(),
            },
        ),
        None => Cursor::at(&head),
    };
    s.cursors.insert(stream.clone(), cursor);
    Ok(Some(stream))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::tests::reply;
    use crate::node::testing::TestNode;
    use serde_json::json;

    fn join(room: &str, id: Option<MsgId>) -> Join {
        Join {
            room: room.into(),
            id,
            resume: None,
            epoch: None,
            presence: None,
        }
    }

    #[tokio::test]
    async fn joins_the_room_and_acks() {
        let t = TestNode::start(TestNode::config()).await;
        let (mut s, _rx) = t.live_state("alice");
        let o = join("r", Some(MsgId::Int(1))).apply(&mut s, &t.node).await;
        assert_eq!(reply(&o), json!({"type":"ack","id":1}));
        assert_eq!(o.catch_up, None, "nothing to replay without streams");
        assert!(t.node.table.is_in(&s.handle.id, "r"));
        assert!(t.node.rooms.is_subscribed("r"));
        assert!(s.cursors.is_empty());
    }

    #[tokio::test]
    async fn rooms_outside_the_token_claim_are_forbidden_even_to_resume() {
        let t = TestNode::start(TestNode::durable_config()).await;
        let room = StreamName::Room("secret".into());
        t.append(&room, 2).await;
        let policy = wsring_auth::RoomPolicy::from_claim(&["chat.*"]).expect("claim");
        let (s, mut rx) = t.live_state("mallory");
        let mut s = s.with_grants(policy, true);
        let mut j = join("secret", Some(MsgId::Int(1)));
        j.resume = Some(0);
        let o = j.apply(&mut s, &t.node).await;
        let f = reply(&o);
        assert_eq!(
            (f["code"].as_str(), &f["id"]),
            (Some("forbidden"), &json!(1))
        );
        assert_eq!(o.catch_up, None, "nothing is replayed");
        assert!(!t.node.table.is_in(&s.handle.id, "secret"));
        assert!(s.cursors.is_empty() && rx.try_recv().is_err());
        let o = join("chat.1", Some(MsgId::Int(2)))
            .apply(&mut s, &t.node)
            .await;
        assert_eq!(reply(&o)["type"], "ack");
    }

    #[tokio::test]
    async fn the_room_cap_refuses_one_more_room_but_not_a_rejoin() {
        let mut cfg = TestNode::config();
        cfg.max_rooms_per_session = 2;
        let t = TestNode::start(cfg).await;
        let (mut s, _rx) = t.live_state("alice");
        for room in ["a", "b"] {
            let o = join(room, None).apply(&mut s, &t.node).await;
            assert_eq!(o, Outcome::none(), "{room}");
        }
        let o = join("c", Some(MsgId::Str("j".into())))
            .apply(&mut s, &t.node)
            .await;
        let f = reply(&o);
        assert_eq!(f["type"], "error");
        assert_eq!(f["code"], "limit_exceeded");
        assert_eq!(f["id"], "j");
        assert_eq!(f["message"], "a session may be in at most 2 rooms");
        assert!(!t.node.table.is_in(&s.handle.id, "c"));
        // A room the session is already in does not count twice.
        let o = join("a", Some(MsgId::Int(3))).apply(&mut s, &t.node).await;
        assert_eq!(reply(&o), json!({"type":"ack","id":3}));
    }

    #[tokio::test]
    async fn durable_joins_start_at_the_head_and_replay_to_it() {
        let t = TestNode::start(TestNode::durable_config()).await;
        let stream = StreamName::Room("r".into());
        t.append(&stream, 3).await;
        let (mut s, _rx) = t.live_state("alice");
        let o = join("r", None).apply(&mut s, &t.node).await;
        assert_eq!(o.reply, None);
        assert_eq!(o.catch_up, Some(stream.clone()), "ends with `resumed`");
        let c = s.cursors.get(&stream).expect("cursor");
        assert_eq!(c.seq, 3);
        // Joining again without a resume point keeps the live cursor.
        s.cursors.get_mut(&stream).expect("cursor").seq = 2;
        let o = join("r", Some(MsgId::Int(1))).apply(&mut s, &t.node).await;
        assert_eq!(o.catch_up, Some(stream.clone()));
        assert_eq!(s.cursors[&stream].seq, 2);
    }

    #[tokio::test]
    async fn a_resume_point_sets_the_cursor() {
        let t = TestNode::start(TestNode::durable_config()).await;
        let stream = StreamName::Room("r".into());
        let epoch = t.append(&stream, 5).await;
        let (mut s, _rx) = t.live_state("alice");
        let o = Join {
            room: "r".into(),
            id: None,
            resume: Some(2),
            epoch: Some(epoch),
            presence: None,
        }
        .apply(&mut s, &t.node)
        .await;
        assert_eq!(o.catch_up, Some(stream.clone()));
        assert_eq!(s.cursors[&stream].seq, 2, "replays 3..=5");
    }

    #[tokio::test]
    async fn a_store_failure_undoes_the_join() {
        let t = TestNode::start(TestNode::durable_config()).await;
        let (mut s, _rx) = t.live_state("alice");
        t.streams_down();
        let o = join("r", Some(MsgId::Int(4))).apply(&mut s, &t.node).await;
        let f = reply(&o);
        assert_eq!(
            (f["code"].as_str(), &f["id"]),
            (Some("unavailable"), &json!(4))
        );
        assert!(
            f["message"]
                .as_str()
                .unwrap_or_default()
                .starts_with("stream store unavailable")
        );
        assert_eq!(o.catch_up, None);
        assert!(!t.node.table.is_in(&s.handle.id, "r"));
        assert!(s.cursors.is_empty());
    }
}
