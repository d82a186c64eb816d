//! The node's room subscriptions, kept in line with the session table
//! without holding any lock across a broker call.
//!
//! A room topic should be subscribed exactly while the node has a local
//! member of the room. Each room with a pending change gets one reconciler
//! task at a time: it compares "wanted" (the session table has a member)
//! with "subscribed" and calls the broker until the two agree. Joiners wait
//! until their room is subscribed; leaves and session teardown only update
//! the table and nudge the reconciler, so they never wait on the broker. One
//! slow broker call therefore delays the joins of that one room, nothing
//! else, and every call is bounded by [`BROKER_CALL_TIMEOUT`].

use bytes::Bytes;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tracing::debug;
use wsring_cluster::{Broker, ClusterError, Topic, lock};
use wsring_protocol::{Envelope, Target};

use crate::sessions::SessionTable;

/// Bound on one subscribe, unsubscribe or bookkeeping publish call.
pub(crate) const BROKER_CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// Publishes node-to-node bookkeeping (a roster or occupancy message, whose
/// JSON is the envelope's frame), bounded by [`BROKER_CALL_TIMEOUT`].
pub(crate) async fn publish_bookkeeping(
    broker: &dyn Broker,
    topic: &Topic,
    target: Target,
    msg: &impl Serialize,
) -> Result<(), ClusterError> {
    let env = Envelope {
        target,
        seq: None,
        stream_epoch: None,
        frame: Bytes::from(serde_json::to_vec(msg).unwrap_or_default()),
    };
    match tokio::time::timeout(BROKER_CALL_TIMEOUT, broker.publish(topic, env.encode())).await {
        Ok(r) => r,
        Err(_) => Err(ClusterError::unavailable(format!(
            "bookkeeping publish took longer than {BROKER_CALL_TIMEOUT:?}"
        ))),
    }
}

/// The chunks a node's whole share is sent in, as `(chunk, first, last)`.
/// An empty share is one empty chunk, so the asker still hears the answer.
pub(crate) fn share_chunks<T>(items: &[T], size: usize) -> Vec<(&[T], bool, bool)> {
    let chunks: Vec<&[T]> = if items.is_empty() {
        vec![&[]]
    } else {
        items.chunks(size).collect()
    };
    let n = chunks.len();
    chunks
        .into_iter()
        .enumerate()
        .map(|(i, c)| (c, i == 0, i + 1 == n))
        .collect()
}

/// What the last finished reconciler pass of a room reported.
#[derive(Debug, Clone, Default)]
struct Pass {
    /// Why the last subscribe failed, if it did.
    error: Option<Arc<str>>,
}

struct RoomState {
    subscribed: bool,
    running: bool,
    passes: watch::Sender<Pass>,
}

impl RoomState {
    fn new() -> RoomState {
        RoomState {
            subscribed: false,
            running: false,
            passes: watch::channel(Pass::default()).0,
        }
    }
}

/// Room topic subscriptions of one node.
pub(crate) struct RoomSubs {
    broker: Arc<dyn Broker>,
    table: Arc<SessionTable>,
    rooms: Mutex<HashMap<String, RoomState>>,
}

impl RoomSubs {
    pub fn new(broker: Arc<dyn Broker>, table: Arc<SessionTable>) -> Arc<RoomSubs> {
        Arc::new(RoomSubs {
            broker,
            table,
            rooms: Mutex::new(HashMap::new()),
        })
    }

    /// Waits until `room` is subscribed. Call after adding a member to the
    /// table. On error the caller removes its member again (and nudges).
    pub async fn ensure(self: &Arc<Self>, room: &str) -> Result<(), ClusterError> {
        loop {
            let mut passes = {
                let mut rooms = lock(&self.rooms);
                let st = rooms.entry(room.to_owned()).or_insert_with(RoomState::new);
                if st.subscribed && !st.running {
                    return Ok(());
                }
                let rx = st.passes.subscribe();
                self.start(room, st);
                rx
            };
            // Bounded: a reconciler pass makes at most a few bounded calls.
            let finished = tokio::time::timeout(BROKER_CALL_TIMEOUT * 3, passes.changed()).await;
            let pass = match finished {
                Ok(Ok(())) => passes.borrow_and_update().clone(),
                // The state was dropped (room emptied and cleaned up): look again.
                Ok(Err(_)) => continue,
                Err(_) => {
                    return Err(ClusterError::unavailable(format!(
                        "subscribing room {room:?} did not finish"
                    )));
                }
            };
            let rooms = lock(&self.rooms);
            match rooms.get(room) {
                Some(st) if st.subscribed && !st.running => return Ok(()),
                Some(st) if !st.running && pass.error.is_some() => {
                    let why = pass.error.unwrap_or_else(|| "unknown".into());
                    return Err(ClusterError::unavailable(format!(
                        "subscribing room {room:?}: {why}"
                    )));
                }
                _ => continue,
            }
        }
    }

    /// The table changed for `room` (a member left, a session ended): bring
    /// the subscription in line in the background.
    pub fn nudge(self: &Arc<Self>, room: &str) {
        let mut rooms = lock(&self.rooms);
        if let Some(st) = rooms.get_mut(room) {
            self.start(room, st);
        }
    }

    fn start(self: &Arc<Self>, room: &str, st: &mut RoomState) {
        if !st.running {
            st.running = true;
            tokio::spawn(Arc::clone(self).reconcile(room.to_owned()));
        }
    }

    async fn reconcile(self: Arc<Self>, room: String) {
        let topic = Topic::Room(room.clone());
        loop {
            let (want, have) = {
                let mut rooms = lock(&self.rooms);
                let Some(st) = rooms.get_mut(&room) else {
                    return;
                };
                // Decided under the state lock: a joiner adds its member to
                // the table before it takes this lock, so either we see the
                // member here or the joiner sees `running == false` and
                // starts a new pass.
                let want = self.table.has_room(&room);
                if want == st.subscribed {
                    st.running = false;
                    st.passes.send_replace(Pass::default());
                    if !want && st.passes.receiver_count() == 0 {
                        rooms.remove(&room);
                    }
                    return;
                }
                (want, st.subscribed)
            };
            debug_assert_ne!(want, have);
            let call = async {
                if want {
                    self.broker.subscribe(&topic).await
                } else {
                    self.broker.unsubscribe(&topic).await
                }
            };
            let result = match tokio::time::timeout(BROKER_CALL_TIMEOUT, call).await {
                Ok(r) => r,
                Err(_) => Err(ClusterError::unavailable(format!(
                    "broker call took longer than {BROKER_CALL_TIMEOUT:?}"
                ))),
            };
            let mut rooms = lock(&self.rooms);
            let Some(st) = rooms.get_mut(&room) else {
                return;
            };
            match result {
                Ok(()) => st.subscribed = want,
                Err(e) if want => {
                    // Report to the waiting joiners; they roll back.
                    st.running = false;
                    st.passes.send_replace(Pass {
                        error: Some(e.to_string().into()),
                    });
                    return;
                }
                Err(e) => {
                    // Harmless: extra room messages find no local member and
                    // are dropped; the backend forgets the topic on reconnect.
                    debug!(room, error = %e, "room unsubscribe failed");
                    st.subscribed = false;
                }
            }
        }
    }

    /// Whether the broker is subscribed to `room` (for tests).
    #[cfg(test)]
    pub fn is_subscribed(&self, room: &str) -> bool {
        lock(&self.rooms).get(room).is_some_and(|s| s.subscribed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sessions::SessionHandle;
    use async_trait::async_trait;
    use bytes::Bytes;
    use wsring_cluster::memory::MemoryHub;

    /// A broker whose subscribe to room "stuck" never answers.
    struct Stuck {
        inner: Arc<dyn Broker>,
    }

    #[async_trait]
    impl Broker for Stuck {
        async fn publish(&self, topic: &Topic, payload: Bytes) -> Result<(), ClusterError> {
            self.inner.publish(topic, payload).await
        }
        async fn subscribe(&self, topic: &Topic) -> Result<(), ClusterError> {
            if *topic == Topic::Room("stuck".into()) {
                std::future::pending::<()>().await;
            }
            self.inner.subscribe(topic).await
        }
        async fn unsubscribe(&self, topic: &Topic) -> Result<(), ClusterError> {
            self.inner.unsubscribe(topic).await
        }
        fn healthy(&self) -> bool {
            true
        }
        async fn close(&self) {}
    }

    fn session(table: &SessionTable, id: &str) {
        let (tx, _rx) = crate::outbox::channel(1);
        table.insert(SessionHandle::new(id.into(), "u".into(), tx, 1024));
    }

    async fn settled(subs: &RoomSubs, room: &str, want: bool) {
        for _ in 0..1000 {
            if subs.is_subscribed(room) == want
                && !lock(&subs.rooms).get(room).is_some_and(|s| s.running)
            {
                return;
            }
            tokio::task::yield_now().await;
        }
        panic!("room {room} never settled at subscribed={want}");
    }

    #[tokio::test]
    async fn subscribes_while_members_exist() {
        let hub = Arc::new(MemoryHub::default());
        let (broker, _inbox) = hub.connect();
        let table = Arc::new(SessionTable::default());
        let subs = RoomSubs::new(broker, Arc::clone(&table));
        let topic = Topic::Room("r".into());
        session(&table, "s1");
        session(&table, "s2");
        assert!(table.join("s1", "r").first_local);
        subs.ensure("r").await.expect("subscribed");
        assert_eq!(hub.subscribers(&topic), 1);
        table.join("s2", "r");
        subs.ensure("r").await.expect("still subscribed");
        assert!(!table.leave("s1", "r").emptied, "s2 is still a member");
        subs.nudge("r");
        settled(&subs, "r", true).await;
        assert_eq!(hub.subscribers(&topic), 1);
        // The last member's session ends: unsubscribed in the background.
        for room in table.remove("s2").emptied {
            subs.nudge(&room);
        }
        settled(&subs, "r", false).await;
        assert_eq!(hub.subscribers(&topic), 0);
        // A rejoin subscribes again.
        session(&table, "s3");
        table.join("s3", "r");
        subs.ensure("r").await.expect("subscribed again");
        assert_eq!(hub.subscribers(&topic), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stuck_broker_call_delays_only_its_room() {
        let hub = Arc::new(MemoryHub::default());
        let (inner, _inbox) = hub.connect();
        let broker: Arc<dyn Broker> = Arc::new(Stuck {
            inner: inner as Arc<dyn Broker>,
        });
        let table = Arc::new(SessionTable::default());
        let subs = RoomSubs::new(broker, Arc::clone(&table));
        session(&table, "a");
        session(&table, "b");
        table.join("a", "stuck");
        let stuck = tokio::spawn({
            let subs = Arc::clone(&subs);
            async move { subs.ensure("stuck").await }
        });
        tokio::task::yield_now().await;
        // Another room joins at once; leaving and teardown never wait.
        table.join("b", "free");
        let started = tokio::time::Instant::now();
        subs.ensure("free")
            .await
            .expect("other rooms are not blocked");
        assert_eq!(started.elapsed(), Duration::ZERO);
        for room in table.remove("b").emptied {
            subs.nudge(&room);
        }
        settled(&subs, "free", false).await;
        // The stuck join fails after its bound instead of hanging forever.
        let err = stuck
            .await
            .expect("task")
            .expect_err("a stuck subscribe must fail");
        assert!(matches!(err, ClusterError::Unavailable(_)), "{err}");
        assert!(started.elapsed() <= BROKER_CALL_TIMEOUT * 3);
    }
}
