//! The server's own room commands for a session: join a room the server put
//! the user in ([`ServerJoin`], from `POST /api/rooms/{room}/join` or from
//! the user's stored rooms at connect) and leave one it took the user out of
//! ([`ServerLeave`], from `POST /api/rooms/{room}/leave`). They come through
//! the session's queue, so they apply in order with everything else the
//! session does, and answer with `{"type":"joined"}` / `{"type":"left"}`.
//!
//! Both are idempotent: the stored rooms read at connect and a live call
//! that raced with it may ask for the same join twice; only the first one
//! says `joined`.

use wsring_protocol::ServerFrame;

use super::Outcome;
use super::join::enter;
use crate::node::Node;
use crate::session::state::SessionState;

/// Join a server-side room (no token check, no client room limit).
#[derive(Debug)]
pub(crate) struct ServerJoin {
    pub room: String,
}

impl ServerJoin {
    pub async fn apply(self, s: &mut SessionState, node: &Node) -> Outcome {
        let room = self.room;
        let newly = s.server_rooms.insert(room.clone());
        if !newly && node.table.is_in(&s.handle.id, &room) {
            return Outcome::none();
        }
        match enter(s, node, &room, None, None, false).await {
            Ok(catch_up) => {
                let joined = Outcome::reply(&ServerFrame::Joined { room: &room });
                match catch_up {
                    Some(stream) => joined.then_catch_up(stream),
                    None => joined,
                }
            }
            Err((code, why)) => {
                s.server_rooms.remove(&room);
                let msg = format!("could not join server-side room {room:?}: {why}");
                Outcome::error(code, &msg, None)
            }
        }
    }
}

/// Leave a room the server took the user out of.
#[derive(Debug)]
pub(crate) struct ServerLeave {
    pub room: String,
}

impl ServerLeave {
    pub async fn apply(self, s: &mut SessionState, node: &Node) -> Outcome {
        let room = self.room;
        let held = s.server_rooms.remove(&room);
        let left = node.leave_room(&s.handle, &room);
        s.cursors
            .remove(&wsring_cluster::StreamName::Room(room.clone()));
        if held || left.was_member {
            Outcome::reply(&ServerFrame::Left { room: &room })
        } else {
            Outcome::none()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::Join;
    use crate::cmd::tests::reply;
    use crate::node::testing::TestNode;
    use serde_json::json;
    use wsring_protocol::MsgId;

    fn server_join(room: &str) -> ServerJoin {
        ServerJoin { room: room.into() }
    }

    #[tokio::test]
    async fn a_server_room_is_joined_once_and_allowed_past_the_token() {
        let t = TestNode::start(TestNode::config()).await;
        let policy = wsring_auth::RoomPolicy::from_claim(&["chat.*"]).expect("claim");
        let (s, _rx) = t.live_state("alice");
        let mut s = s.with_grants(policy, true);
        let o = server_join("ops").apply(&mut s, &t.node).await;
        assert_eq!(reply(&o), json!({"type":"joined","room":"ops"}));
        assert!(t.node.table.is_in(&s.handle.id, "ops"));
        assert_eq!(
            server_join("ops").apply(&mut s, &t.node).await,
            Outcome::none(),
            "a repeated server join says nothing"
        );
        // The client may join it again itself (e.g. to resume it).
        let o = Join {
            room: "ops".into(),
            id: Some(MsgId::Int(1)),
            resume: None,
            epoch: None,
            presence: None,
        }
        .apply(&mut s, &t.node)
        .await;
        assert_eq!(reply(&o), json!({"type":"ack","id":1}));
        let o = ServerLeave { room: "ops".into() }
            .apply(&mut s, &t.node)
            .await;
        assert_eq!(reply(&o), json!({"type":"left","room":"ops"}));
        assert!(!t.node.table.is_in(&s.handle.id, "ops"));
        // Now the token's claim applies again.
        let o = Join {
            room: "ops".into(),
            id: Some(MsgId::Int(2)),
            resume: None,
            epoch: None,
            presence: None,
        }
        .apply(&mut s, &t.node)
        .await;
        assert_eq!(reply(&o)["code"], "forbidden");
        assert_eq!(
            ServerLeave { room: "ops".into() }
                .apply(&mut s, &t.node)
                .await,
            Outcome::none(),
            "leaving a room the session is not in says nothing"
        );
    }

    #[tokio::test]
    async fn server_rooms_do_not_count_against_the_client_limit() {
        let mut cfg = TestNode::config();
        cfg.max_rooms_per_session = 1;
        let t = TestNode::start(cfg).await;
        let (mut s, _rx) = t.live_state("alice");
        for room in ["s1", "s2"] {
            let o = server_join(room).apply(&mut s, &t.node).await;
            assert_eq!(reply(&o)["type"], "joined");
        }
        let join = |room: &str, id| Join {
            room: room.into(),
            id: Some(MsgId::Int(id)),
            resume: None,
            epoch: None,
            presence: None,
        };
        let o = join("mine", 1).apply(&mut s, &t.node).await;
        assert_eq!(reply(&o)["type"], "ack");
        let o = join("more", 2).apply(&mut s, &t.node).await;
        assert_eq!(reply(&o)["code"], "limit_exceeded");
    }

    #[tokio::test]
    async fn a_durable_server_join_reports_the_room_position() {
        let t = TestNode::start(TestNode::durable_config()).await;
        let stream = wsring_cluster::StreamName::Room("ops".into());
        t.append(&stream, 2).await;
        let (mut s, _rx) = t.live_state("alice");
        let o = server_join("ops").apply(&mut s, &t.node).await;
        assert_eq!(reply(&o)["type"], "joined");
        assert_eq!(o.catch_up, Some(stream.clone()), "then `resumed`");
        assert_eq!(s.cursors[&stream].seq, 2, "live from the head");
    }
}
