//! `{"type":"send","to":"bob","data":…}`: a direct message to every session
//! of a user, wherever the cluster holds them.

use serde_json::value::RawValue;
use wsring_protocol::{ErrorCode, MsgId, SERVER_ADDRESS};

use super::proxy::{self, Target, Verdict};
use super::{Outcome, answer, dedup_key};
use crate::node::Node;
use crate::session::state::SessionState;

/// A direct message.
#[derive(Debug)]
pub(crate) struct Send {
    pub to: String,
    pub data: Box<RawValue>,
    pub id: Option<MsgId>,
}

impl Send {
    pub async fn apply(self, s: &mut SessionState, node: &Node) -> Outcome {
        if self.to == SERVER_ADDRESS {
            return self.for_server(s, node).await;
        }
        if !s.may_send {
            let msg = "this connection's token does not allow direct sends";
            return Outcome::error(ErrorCode::Forbidden, msg, self.id.as_ref());
        }
        let id = self.id.as_ref();
        let data = match proxy::ask(node, s, Target::User(&self.to), &self.data, id).await {
            Verdict::Accept(replaced) => replaced.unwrap_or(self.data),
            Verdict::Refuse(outcome) => return outcome,
        };
        let key = dedup_key(s, id);
        let from = s.handle.user.clone();
        let result = node
            .send_direct(Some(&from), &self.to, &data, key, Some(&from))
            .await;
        answer(result, id)
    }

    /// A message for the application: through the publish proxy when one is
    /// configured (acknowledged once it accepts), else a `message.to_server`
    /// webhook event (acknowledged once every receiver's queue took it).
    async fn for_server(self, s: &SessionState, node: &Node) -> Outcome {
        let id = self.id.as_ref();
        if node.publish_proxy.is_some() {
            return match proxy::ask(node, s, Target::User(SERVER_ADDRESS), &self.data, id).await {
                Verdict::Accept(_) => Outcome::ack(id),
                Verdict::Refuse(outcome) => outcome,
            };
        }
        if !node.hooks.enabled() {
            let msg = "no webhook or publish proxy is configured to receive messages to @server";
            return Outcome::error(ErrorCode::BadRequest, msg, id);
        }
        match crate::events::to_server(node, &s.handle, &self.data, id) {
            Some(_) => Outcome::ack(id),
            None => Outcome::error(
                ErrorCode::Unavailable,
                "the webhook queue is full; retry later",
                id,
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::tests::reply;
    use crate::node::testing::TestNode;
    use serde_json::json;

    fn send(to: &str, data: &str, id: Option<MsgId>) -> Send {
        Send {
            to: to.into(),
            data: RawValue::from_string(data.into()).expect("json"),
            id,
        }
    }

    #[tokio::test]
    async fn delivers_to_every_session_of_the_user_and_acks() {
        let t = TestNode::start(TestNode::config()).await;
        let mut alice = t.state("alice");
        let (_b1, mut rx1) = t.session("bob");
        let (_b2, mut rx2) = t.session("bob");
        let o = send("bob", r#"{"hi":1}"#, Some(MsgId::Str("m1".into())))
            .apply(&mut alice, &t.node)
            .await;
        assert_eq!(reply(&o), json!({"type":"ack","id":"m1"}));
        let want = json!({"type":"message","from":"alice","to":"bob","data":{"hi":1}});
        assert_eq!(TestNode::next_message(&mut rx1).await, want);
        assert_eq!(TestNode::next_message(&mut rx2).await, want);
        // Without an id there is nothing to acknowledge.
        let o = send("bob", "2", None).apply(&mut alice, &t.node).await;
        assert_eq!(o, Outcome::none());
    }

    #[tokio::test]
    async fn a_receive_only_token_cannot_send() {
        let t = TestNode::start(TestNode::config()).await;
        let mut alice = t
            .state("alice")
            .with_grants(wsring_auth::RoomPolicy::All, false);
        let (_b, mut rx) = t.session("bob");
        let o = send("bob", "1", Some(MsgId::Int(3)))
            .apply(&mut alice, &t.node)
            .await;
        let f = reply(&o);
        assert_eq!(
            (f["code"].as_str(), &f["id"]),
            (Some("forbidden"), &json!(3))
        );
        assert!(rx.try_recv().is_err(), "nothing was delivered");
    }

    #[tokio::test]
    async fn durable_messages_are_stored_with_their_position() {
        let t = TestNode::start(TestNode::durable_config()).await;
        let mut alice = t.state("alice");
        let (_b, mut rx) = t.session("bob");
        for n in 1..=2 {
            let o = send("bob", &n.to_string(), Some(MsgId::Int(n)))
                .apply(&mut alice, &t.node)
                .await;
            assert_eq!(reply(&o), json!({"type":"ack","id":n}));
            let m = TestNode::next_message(&mut rx).await;
            assert_eq!((m["seq"].as_i64(), &m["data"]), (Some(n), &json!(n)));
        }
        // A retry with the same id is deduplicated: acked, not stored again.
        let o = send("bob", "1", Some(MsgId::Int(1)))
            .apply(&mut alice, &t.node)
            .await;
        assert_eq!(reply(&o), json!({"type":"ack","id":1}));
        assert_eq!(
            t.head(&wsring_cluster::StreamName::User("bob".into()))
                .await,
            2
        );
    }

    #[tokio::test]
    async fn a_reused_id_with_a_different_message_is_a_conflict() {
        let t = TestNode::start(TestNode::durable_config()).await;
        let mut alice = t.state("alice");
        let (_b, mut rx) = t.session("bob");
        let o = send("bob", r#""pay 10""#, Some(MsgId::Str("inv-42".into())))
            .apply(&mut alice, &t.node)
            .await;
        assert_eq!(reply(&o), json!({"type":"ack","id":"inv-42"}));
        TestNode::next_message(&mut rx).await;
        let o = send("bob", r#""pay 9999""#, Some(MsgId::Str("inv-42".into())))
            .apply(&mut alice, &t.node)
            .await;
        let f = reply(&o);
        assert_eq!(
            (f["code"].as_str(), &f["id"]),
            (Some("conflict"), &json!("inv-42"))
        );
        assert!(
            rx.try_recv().is_err(),
            "the conflicting message is not sent"
        );
        // Another sender's ids are its own.
        let mut carol = t.state("carol");
        let o = send("bob", r#""pay 9999""#, Some(MsgId::Str("inv-42".into())))
            .apply(&mut carol, &t.node)
            .await;
        assert_eq!(reply(&o)["type"], "ack");
        assert_eq!(
            t.head(&wsring_cluster::StreamName::User("bob".into()))
                .await,
            2
        );
    }

    #[tokio::test]
    async fn a_failed_hand_off_is_an_error_not_an_ack() {
        let t = TestNode::start(TestNode::durable_config()).await;
        let mut alice = t.state("alice");
        t.streams_down();
        let o = send("bob", "1", Some(MsgId::Int(9)))
            .apply(&mut alice, &t.node)
            .await;
        let f = reply(&o);
        assert_eq!(
            (f["type"].as_str(), f["code"].as_str()),
            (Some("error"), Some("unavailable"))
        );
        assert_eq!(f["id"], 9);
    }
}
