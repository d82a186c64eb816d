//! The broker inbox: envelopes from other nodes go to local sessions; a
//! reconnect triggers a catch-up from the durable streams, because anything
//! published while the subscription was down never reached us.

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
                if node.streams.is_some() {
                    for h in node.table.all() {
                        h.offer(Outbound::Resync);
                    }
                }
            }
        }
    }
}
