//! `{"type":"ping","id":…}`: an application-level liveness check, answered
//! with `pong` carrying the same id (null when absent).

use wsring_protocol::{MsgId, ServerFrame};

use super::Outcome;
use crate::node::Node;
use crate::session::state::SessionState;

/// An application-level ping.
#[derive(Debug)]
pub(crate) struct Ping {
    pub id: Option<MsgId>,
}

impl Ping {
    pub fn apply(self, _s: &mut SessionState, _node: &Node) -> Outcome {
        Outcome::reply(&ServerFrame::Pong {
            id: self.id.as_ref(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::tests::reply;
    use crate::node::testing::TestNode;
    use serde_json::json;

    #[tokio::test]
    async fn answers_with_pong_carrying_the_id() {
        let t = TestNode::start(TestNode::config()).await;
        let mut s = t.state("alice");
        let o = Ping {
            id: Some(MsgId::Int(5)),
        }
        .apply(&mut s, &t.node);
        assert_eq!(reply(&o), json!({"type":"pong","id":5}));
        let o = Ping { id: None }.apply(&mut s, &t.node);
        assert_eq!(reply(&o), json!({"type":"pong","id":null}));
        assert_eq!((o.catch_up, o.close), (None, None));
    }
}
