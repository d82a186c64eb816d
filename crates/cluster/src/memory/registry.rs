//! In-memory [`Registry`]: a versioned document and heartbeat deadlines behind
//! a mutex, with a broadcast channel as the change notification.

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt};
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::broadcast;
use tokio::time::Instant;

use super::lock;
use crate::error::ClusterError;
use crate::registry::{Heartbeat, Lease, Registry, Versioned, is_late};

/// Membership storage for a single process.
pub struct MemoryRegistry {
    state: Mutex<State>,
    changed: broadcast::Sender<()>,
}

#[derive(Default)]
struct State {
    doc: Option<Versioned<Bytes>>,
    beats: HashMap<String, (Heartbeat, Instant)>,
    /// The last incarnation handed out. Survives [`MemoryRegistry::wipe`]
    /// like a real registry's counter would not; fencing tokens must only
    /// grow within one process anyway.
    incarnations: u64,
    /// Nodes whose process is gone (see [`MemoryRegistry::disconnect`]).
    gone: HashSet<String>,
}

impl Default for MemoryRegistry {
    fn default() -> Self {
        MemoryRegistry {
            state: Mutex::new(State::default()),
            changed: broadcast::channel(64).0,
        }
    }
}

impl State {
    fn live(&self, node: &str, now: Instant) -> Option<&Heartbeat> {
        self.beats
            .get(node)
            .filter(|(_, deadline)| *deadline > now)
            .map(|(v, _)| v)
    }
}

impl MemoryRegistry {
    /// Forgets everything, as a registry server that restarted without
    /// persistence would (for tests of that failure).
    pub fn wipe(&self) {
        let mut st = lock(&self.state);
        let incarnations = st.incarnations;
        *st = State {
            incarnations,
            ..State::default()
        };
        drop(st);
        let _ = self.changed.send(());
    }

    /// Records that `node`'s process closed every connection it held, as
    /// a killed process's kernel does (for tests of
    /// [`Registry::disconnected`]). A later claim of the id clears it.
    pub fn disconnect(&self, node: &str) {
        lock(&self.state).gone.insert(node.to_owned());
    }
}

#[async_trait]
impl Registry for MemoryRegistry {
    async fn load(&self) -> Result<Option<Versioned<Bytes>>, ClusterError> {
        Ok(lock(&self.state).doc.clone())
    }

    async fn store(&self, expected: Option<u64>, doc: Bytes) -> Result<Option<u64>, ClusterError> {
        let mut st = lock(&self.state);
        let current = st.doc.as_ref().map(|d| d.version);
        if current != expected {
            return Ok(None);
        }
        let version = current.unwrap_or(0) + 1;
        st.doc = Some(Versioned {
            version,
            value: doc,
        });
        drop(st);
        let _ = self.changed.send(());
        Ok(Some(version))
    }

    async fn claim(
        &self,
        node: &str,
        value: Bytes,
        ttl: Duration,
    ) -> Result<Option<u64>, ClusterError> {
        let now = Instant::now();
        let mut st = lock(&self.state);
        if st.live(node, now).is_some() {
            return Ok(None);
        }
        st.incarnations += 1;
        st.gone.remove(node);
        let incarnation = st.incarnations;
        st.beats.insert(
            node.to_owned(),
            (Heartbeat { incarnation, value }, now + ttl),
        );
        Ok(Some(incarnation))
    }

    async fn refresh(
        &self,
        node: &str,
        incarnation: u64,
        value: Bytes,
        ttl: Duration,
    ) -> Result<Lease, ClusterError> {
        let now = Instant::now();
        let mut st = lock(&self.state);
        match st.live(node, now).map(|h| h.incarnation) {
            None => Ok(Lease::Expired),
            Some(holder) if holder != incarnation => Ok(Lease::Taken(holder)),
            Some(_) => {
                st.beats.insert(
                    node.to_owned(),
                    (Heartbeat { incarnation, value }, now + ttl),
                );
                Ok(Lease::Held)
            }
        }
    }

    async fn release(&self, node: &str, incarnation: u64) -> Result<(), ClusterError> {
        let mut st = lock(&self.state);
        if st
            .beats
            .get(node)
            .is_some_and(|(h, _)| h.incarnation == incarnation)
        {
            st.beats.remove(node);
        }
        Ok(())
    }

    async fn heartbeats(&self, nodes: &[String]) -> Result<Vec<Option<Heartbeat>>, ClusterError> {
        let now = Instant::now();
        let mut st = lock(&self.state);
        st.beats.retain(|_, (_, deadline)| *deadline > now);
        Ok(nodes.iter().map(|n| st.live(n, now).cloned()).collect())
    }

    async fn disconnected(
        &self,
        nodes: &[String],
        ttl: Duration,
        late: Duration,
    ) -> Result<Vec<String>, ClusterError> {
        let now = Instant::now();
        let st = lock(&self.state);
        Ok(nodes
            .iter()
            .filter(|n| {
                st.beats.get(n.as_str()).is_some_and(|(_, deadline)| {
                    *deadline > now && is_late(*deadline - now, ttl, late)
                }) && st.gone.contains(n.as_str())
            })
            .cloned()
            .collect())
    }

    async fn watch(&self) -> Result<BoxStream<'static, ()>, ClusterError> {
        let rx = self.changed.subscribe();
        Ok(stream::unfold(rx, |mut rx| async move {
            match rx.recv().await {
                // A lagged receiver still means "something changed".
                Ok(()) | Err(broadcast::error::RecvError::Lagged(_)) => Some(((), rx)),
                Err(broadcast::error::RecvError::Closed) => None,
            }
        })
        .boxed())
    }
}
