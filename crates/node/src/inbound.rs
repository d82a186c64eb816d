//! The broker inbox: envelopes from other nodes go to local sessions (or,
//! for roster messages, to the rosters); a reconnect triggers a catch-up
//! from the durable streams and a new roster query for every watched room,
//! because anything published while the subscription was down never
//! reached us.

use std::sync::Arc;
use tracing::{info, warn};
use wsring_cluster::{BrokerEvent, Inbox};
use wsring_protocol::Envelope;

use crate::node::Node;
use crate::sessions::Outbound;

pub(crate) async fn run(node: Arc<Node>, mut inbox: Inbox) {
    loop {
        let event = tokio::select! {
            _ = node.kill.cancelled() => return,
            ev = inbox.recv() => ev,
        };
        match event {
            None => return,
            Some(BrokerEvent::Message { payload, .. }) => {
                // After a stall past the TTL another process may hold our id
                // and our channel: hold deliveries until the registry
                // confirms us (or fences us, and we stop).
                if !node.membership.may_act() && !node.membership.wait_may_act().await {
                    return;
                }
                match Envelope::decode(payload) {
                    Ok(env) => node.deliver_local(env),
                    Err(e) => warn!(error = %e, "dropping undecodable broker message"),
                }
            }
            Some(BrokerEvent::Disconnected) => {
                warn!(node = %node.id(), "broker connection lost; serving local sessions, reconnecting");
            }
            Some(BrokerEvent::Resubscribed) => {
                info!(node = %node.id(), "broker connection restored");
                node.roster.resync();
                if let Some(o) = &node.occupancy {
                    o.resync(&node.kill);
                }
                if node.streams.is_some() {
                    for h in node.table.all() {
                        h.offer(Outbound::Resync);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::testing::TestNode;
    use bytes::Bytes;
    use wsring_cluster::{Broker, Topic};
    use wsring_protocol::Target;

    #[tokio::test]
    async fn envelopes_reach_the_local_sessions_they_target() {
        let t = TestNode::start(TestNode::config()).await;
        let (_h, mut rx) = t.session("bob");
        let env = Envelope {
            target: Target::User { user: "bob".into() },
            seq: None,
            stream_epoch: None,
            frame: Bytes::from_static(br#"{"type":"message","from":null,"to":"bob","data":1}"#),
        };
        // From a peer: through the broker, into this node's inbox.
        let (peer, _peer_inbox) = t.backend.hub.connect();
        peer.publish(&Topic::Node(t.node.id().to_owned()), env.encode())
            .await
            .expect("publish");
        let m = TestNode::next_message(&mut rx).await;
        assert_eq!(m["to"], "bob");
    }

    #[tokio::test]
    async fn a_broker_reconnect_makes_durable_sessions_catch_up() {
        for durable in [true, false] {
            let cfg = if durable {
                TestNode::durable_config()
            } else {
                TestNode::config()
            };
            let t = TestNode::start(cfg).await;
            let (_h, mut rx) = t.session("bob");
            t.broker.sever().await;
            t.broker.restore().await;
            // A marker behind the reconnect: whatever the inbox task did
            // about it is queued before the marker arrives.
            t.node
                .broker
                .publish(
                    &Topic::Cluster,
                    Envelope {
                        target: Target::All,
                        seq: None,
                        stream_epoch: None,
                        frame: Bytes::from_static(b"{}"),
                    }
                    .encode(),
                )
                .await
                .expect("publish");
            let first = rx.recv().await.expect("queued");
            assert_eq!(
                matches!(first, Outbound::Resync),
                durable,
                "durable={durable}: {first:?}"
            );
        }
    }
}
