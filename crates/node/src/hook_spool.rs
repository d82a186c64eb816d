//! Durable webhooks on the cluster backend: the adapter from the backend's
//! [`HookQueue`] to the hooks crate's [`Spool`], and the adoption of the
//! queues of nodes that left.
//!
//! In durable mode every node keeps its undelivered webhook events in one
//! backend queue per receiver, named after the node's id and incarnation.
//! The node that emits the cluster's occupancy events (the member with the
//! lowest incarnation, see `occupancy`) also looks for queues whose owner
//! is no longer a member, or is a member under a newer incarnation (it
//! restarted), and delivers them with their original event ids: a node that
//! dies with events queued loses none of those it had stored. When that
//! emitter dies, the next one takes over, as for occupancy.
//!
//! An owner missing from the view is adopted only when it was already
//! missing one sweep earlier: a node that just joined may append before
//! this node's view shows it.

use async_trait::async_trait;
use bytes::Bytes;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::debug;
use wsring_cluster::{HookQueue, View};
use wsring_hooks::{Spool, SpoolError, Spooled};

use crate::node::Node;
use crate::occupancy::emitter;

/// How often the emitter looks for queues of nodes that left (and on every
/// view change).
const SWEEP: Duration = Duration::from_secs(2);

/// Time allowed for listing the queues.
const LIST_TIMEOUT: Duration = Duration::from_secs(5);

/// The backend's queues as the hooks crate's spool.
pub(crate) struct BackendSpool(pub(crate) Arc<dyn HookQueue>);

#[async_trait]
impl Spool for BackendSpool {
    async fn append(&self, queue: &str, events: &[Bytes]) -> Result<(), SpoolError> {
        Ok(self.0.append(queue, events).await?)
    }

    async fn head(&self, queue: &str, max: usize) -> Result<Vec<Spooled>, SpoolError> {
        let events = self.0.read(queue, 0, max).await?;
        Ok(events
            .into_iter()
            .map(|e| Spooled {
                seq: e.seq,
                body: e.body,
            })
            .collect())
    }

    async fn remove(&self, queue: &str, upto: u64) -> Result<(), SpoolError> {
        Ok(self.0.remove(queue, upto).await?)
    }

    async fn forget(&self, queue: &str) -> Result<(), SpoolError> {
        Ok(self.0.forget(queue).await?)
    }
}

/// The owner name of this node's queues: `<incarnation>-<id>`.
pub(crate) fn owner_name(id: &str, incarnation: u64) -> String {
    format!("{incarnation}-{id}")
}

/// Whether the owner `<incarnation>-<id>` is gone according to `view`:
/// `Some(true)` when a newer incarnation of the id is a member (it died
/// and came back), `Some(false)` when it is a member, `None` when the id
/// is not a member at all (gone, or joined after this view).
fn gone(view: &View, owner: &str) -> Option<bool> {
    let (inc, id) = owner.split_once('-')?;
    let inc: u64 = inc.parse().ok()?;
    view.doc.members.get(id).map(|m| m.incarnation > inc)
}

/// Attaches the spool once the node is a member, then sweeps for queues
/// of nodes that left while this node is the emitter, until `kill`.
pub(crate) async fn run(node: Arc<Node>, queue: Arc<dyn HookQueue>, kill: CancellationToken) {
    let Some(inc) = node.membership.incarnation() else {
        return;
    };
    let me = owner_name(node.id(), inc);
    let spool: Arc<dyn Spool> = Arc::new(BackendSpool(Arc::clone(&queue)));
    // wsring's and Pusher's receivers share the backend; a queue's name
    // says whose receiver it belongs to.
    let all = [&node.hooks, &node.pusher_hooks];
    for hooks in all {
        hooks.attach(Arc::clone(&spool), &me);
    }
    let mut views = node.membership.subscribe();
    // Owners missing from the view at the previous sweep.
    let mut missing: HashSet<String> = HashSet::new();
    loop {
        let view = node.membership.view();
        if emitter(&view) == Some(node.id()) {
            match tokio::time::timeout(LIST_TIMEOUT, queue.queues()).await {
                Ok(Ok(names)) => {
                    let mut now_missing = HashSet::new();
                    for name in names {
                        let Some((hooks, owner)) = all
                            .iter()
                            .find_map(|h| h.queue_owner(&name).map(|o| (*h, o)))
                        else {
                            continue;
                        };
                        if owner == me {
                            continue;
                        }
                        let adopt = match gone(&view, owner) {
                            Some(gone) => gone,
                            None => {
                                now_missing.insert(owner.to_owned());
                                missing.contains(owner)
                            }
                        };
                        if adopt {
                            hooks.adopt(&name);
                        }
                    }
                    missing = now_missing;
                }
                Ok(Err(e)) => debug!(error = %e, "webhook queues not listed"),
                Err(_) => debug!("webhook queues not listed within {LIST_TIMEOUT:?}"),
            }
        } else {
            missing.clear();
        }
        tokio::select! {
            () = kill.cancelled() => return,
            _ = views.changed() => {}
            () = tokio::time::sleep(SWEEP) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_gone_or_not() {
        let mut doc = wsring_cluster::MembershipDoc::default();
        doc.members.insert(
            "n-1".into(),
            wsring_cluster::Member {
                url: "ws://127.0.0.1:1/ws".into(),
                state: wsring_cluster::MemberState::Up,
                incarnation: 7,
            },
        );
        let view = View::new(doc, 1);
        assert_eq!(gone(&view, "7-n-1"), Some(false), "the member itself");
        assert_eq!(gone(&view, "6-n-1"), Some(true), "an older incarnation");
        assert_eq!(gone(&view, "8-n-1"), Some(false), "newer than the view");
        assert_eq!(gone(&view, "3-n-2"), None, "not a member");
        assert_eq!(gone(&view, "bad"), None);
        assert_eq!(owner_name("n-1", 7), "7-n-1");
    }
}
