//! `{"type":"leave","room":"lobby"}`: stop receiving a room. Leaving a room
//! the session is not in is a no-op, acknowledged like any other leave.
//! Leaving a server-side room only takes this session out of it: the user's
//! stored membership stays, and the next connect joins it again.

use wsring_cluster::StreamName;
use wsring_protocol::MsgId;

use super::Outcome;
use crate::node::Node;
use crate::session::state::SessionState;

/// Leave a room.
#[derive(Debug)]
pub(crate) struct Leave {
    pub room: String,
    pub id: Option<MsgId>,
}

impl Leave {
    pub async fn apply(self, s: &mut SessionState, node: &Node) -> Outcome {
        node.leave_room(&s.handle, &self.room);
        s.server_rooms.remove(&self.room);
        s.cursors.remove(&StreamName::Room(self.room));
        Outcome::ack(self.id.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::Join;
    use crate::cmd::tests::reply;
    use crate::node::testing::TestNode;
    use serde_json::json;

    fn leave(room: &str, id: Option<MsgId>) -> Leave {
        Leave {
            room: room.into(),
            id,
        }
    }

    #[tokio::test]
    async fn stops_room_delivery_and_forgets_the_cursor() {
        let t = TestNode::start(TestNode::durable_config()).await;
        let (mut s, _rx) = t.live_state("alice");
        let join = Join {
            room: "r".into(),
            id: None,
            resume: None,
            epoch: None,
            presence: None,
        };
        let _ = join.apply(&mut s, &t.node).await;
        let stream = StreamName::Room("r".into());
        assert!(s.cursors.contains_key(&stream));
        let o = leave("r", Some(MsgId::Int(2))).apply(&mut s, &t.node).await;
        assert_eq!(reply(&o), json!({"type":"ack","id":2}));
        assert!(!s.cursors.contains_key(&stream));
        assert!(!t.node.table.is_in(&s.handle.id, "r"));
        assert!(t.node.table.room_sessions("r").is_empty());
    }

    #[tokio::test]
    async fn leaving_a_room_never_joined_is_acknowledged() {
        let t = TestNode::start(TestNode::config()).await;
        let (mut s, _rx) = t.live_state("alice");
        let o = leave("nowhere", Some(MsgId::Str("l".into())))
            .apply(&mut s, &t.node)
            .await;
        assert_eq!(reply(&o), json!({"type":"ack","id":"l"}));
        let o = leave("nowhere", None).apply(&mut s, &t.node).await;
        assert_eq!(o, Outcome::none());
    }
}
