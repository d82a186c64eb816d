//! `{"type":"publish","room":"lobby","data":…}`: a message to every member of
//! a room, the sender's sessions included. Publishing does not require
//! membership (the HTTP API publishes without being a member, too).

use serde_json::value::RawValue;
use wsring_protocol::{ErrorCode, MsgId};

use super::proxy::{self, Target, Verdict};
use super::{Outcome, answer, dedup_key};
use crate::node::Node;
use crate::session::state::SessionState;

/// A room message.
#[derive(Debug)]
pub(crate) struct Publish {
    pub room: String,
    pub data: Box<RawValue>,
    pub id: Option<MsgId>,
}

impl Publish {
    pub async fn apply(self, s: &mut SessionState, node: &Node) -> Outcome {
        if let Err(why) =
            wsring_auth::may_publish(&s.rooms, s.may_send, s.publish.as_ref(), &self.room)
        {
            let msg = format!("{why} {:?}", self.room);
            return Outcome::error(ErrorCode::Forbidden, &msg, self.id.as_ref());
        }
        let id = self.id.as_ref();
        let data = match proxy::ask(node, s, Target::Room(&self.room), &self.data, id).await {
            Verdict::Accept(replaced) => replaced.unwrap_or(self.data),
            Verdict::Refuse(outcome) => return outcome,
        };
        let key = dedup_key(s, id);
        let from = s.handle.user.clone();
        let result = node
            .publish_room(Some(&from), &self.room, &data, key, Some(&from))
            .await;
        answer(result, id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::tests::reply;
    use crate::node::testing::TestNode;
    use serde_json::json;

    fn publish(room: &str, data: &str, id: Option<MsgId>) -> Publish {
        Publish {
            room: room.into(),
            data: RawValue::from_string(data.into()).expect("json"),
            id,
        }
    }

    #[tokio::test]
    async fn publishing_outside_the_token_claim_is_forbidden() {
        let t = TestNode::start(TestNode::config()).await;
        let policy = wsring_auth::RoomPolicy::from_claim(&["chat.*"]).expect("claim");
        let mut alice = t.state("alice").with_grants(policy, true);
        let (bob, mut bob_rx) = t.session("bob");
        t.node.join_room(&bob, "ops").await.expect("join");
        let o = publish("ops", "1", Some(MsgId::Int(5)))
            .apply(&mut alice, &t.node)
            .await;
        assert_eq!(reply(&o)["code"], "forbidden");
        assert!(bob_rx.try_recv().is_err(), "nothing was delivered");
        let o = publish("chat.7", "2", Some(MsgId::Int(6)))
            .apply(&mut alice, &t.node)
            .await;
        assert_eq!(reply(&o), json!({"type":"ack","id":6}));
    }

    #[tokio::test]
    async fn a_receive_only_token_cannot_publish_unless_its_publish_claim_says_so() {
        let t = TestNode::start(TestNode::config()).await;
        let (bob, mut bob_rx) = t.session("bob");
        t.node.join_room(&bob, "ops").await.expect("join");
        t.node.join_room(&bob, "announce").await.expect("join");
        // `send: false`, no `publish` claim: no room at all.
        let mut quiet = t
            .state("quiet")
            .with_grants(wsring_auth::RoomPolicy::All, false);
        let o = publish("ops", "1", Some(MsgId::Int(1)))
            .apply(&mut quiet, &t.node)
            .await;
        assert_eq!(reply(&o)["code"], "forbidden");
        assert!(
            reply(&o)["message"]
                .as_str()
                .is_some_and(|m| m.contains("receive-only")),
            "{o:?}"
        );
        assert!(bob_rx.try_recv().is_err(), "nothing was delivered");
        // `send: false` with `publish: ["announce"]`: that room only.
        let only = wsring_auth::RoomPolicy::from_claim(&["announce"]).expect("claim");
        let mut speaker = t
            .state("speaker")
            .with_grants(wsring_auth::RoomPolicy::All, false)
            .with_publish(Some(only.clone()));
        let o = publish("ops", "2", Some(MsgId::Int(2)))
            .apply(&mut speaker, &t.node)
            .await;
        assert_eq!(reply(&o)["code"], "forbidden");
        let o = publish("announce", "3", Some(MsgId::Int(3)))
            .apply(&mut speaker, &t.node)
            .await;
        assert_eq!(reply(&o), json!({"type":"ack","id":3}));
        assert_eq!(
            TestNode::next_message(&mut bob_rx).await["data"],
            3,
            "the allowed publish arrived, and only it"
        );
        // `send: true` with a `publish` claim: the claim still limits.
        let mut sender = t
            .state("sender")
            .with_grants(wsring_auth::RoomPolicy::All, true)
            .with_publish(Some(only));
        let o = publish("ops", "4", Some(MsgId::Int(4)))
            .apply(&mut sender, &t.node)
            .await;
        assert_eq!(reply(&o)["code"], "forbidden");
        assert!(bob_rx.try_recv().is_err(), "nothing more was delivered");
    }

    #[tokio::test]
    async fn reaches_room_members_and_not_others_without_membership() {
        let t = TestNode::start(TestNode::config()).await;
        let mut alice = t.state("alice");
        let (bob, mut bob_rx) = t.session("bob");
        let (_carol, mut carol_rx) = t.session("carol");
        t.node.join_room(&bob, "r").await.expect("joined");
        // Alice is not a member and may publish all the same.
        let o = publish("r", r#""hey""#, Some(MsgId::Int(1)))
            .apply(&mut alice, &t.node)
            .await;
        assert_eq!(reply(&o), json!({"type":"ack","id":1}));
        assert_eq!(
            TestNode::next_message(&mut bob_rx).await,
            json!({"type":"message","from":"alice","room":"r","data":"hey"})
        );
        assert!(carol_rx.try_recv().is_err(), "not a member");
    }

    #[tokio::test]
    async fn a_failed_append_is_an_error_not_an_ack() {
        let t = TestNode::start(TestNode::durable_config()).await;
        let mut alice = t.state("alice");
        t.streams_down();
        let o = publish("r", "1", None).apply(&mut alice, &t.node).await;
        let f = reply(&o);
        assert_eq!(
            (f["type"].as_str(), f["code"].as_str()),
            (Some("error"), Some("unavailable"))
        );
        assert_eq!(f["id"], serde_json::Value::Null);
    }
}
