//! Keeping one publisher's messages in order across topics.
//!
//! The NATS server delivers everything for one connection in order, and a
//! publisher's messages in the order it sent them. async-nats, however, hands
//! each subscription its own channel, so a broker that forwarded each
//! subscription independently could deliver `end` (on `node.a`) before `r1`
//! (on `room.x`) although `r1` was published first. The node's inbox (and the
//! conformance suite's end markers) expect publish order, as Redis gives it.
//!
//! Two pieces restore it:
//! * **Batches that respect arrival.** One reader task owns every
//!   subscription. Each subscription's waker records its id in a [`Ready`]
//!   set; the reader drains every ready subscription until none is ready.
//!   async-nats pushes messages into the channels one after another from one
//!   task, waking as it goes, so once the reader has seen a message, every
//!   earlier one is already visible in its channel and its subscription is in
//!   the ready set: a batch never misses a message that arrived before one it
//!   contains, and later batches only hold later messages.
//! * **Order inside a batch.** Every wsring publisher stamps its messages with
//!   a `Wsring-Order: {publisher}.{counter}` header ([`stamp`]). [`merge`]
//!   interleaves the per-subscription queues of a batch so that messages of
//!   one publisher come out by counter, keeping each subscription's own order.
//!   Unstamped messages (other publishers) are unconstrained.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::task::{Wake, Waker};

/// Header carrying a message's publisher id and per-publisher counter.
pub(crate) const HDR_ORDER: &str = "Wsring-Order";

pub(crate) use wsring_cluster::order::{Collected, merge, parse_stamp, stamp};

/// Ids of subscriptions whose channels may hold messages, plus the reader
/// task to wake when one is added.
#[derive(Default)]
pub(crate) struct Ready {
    inner: Mutex<ReadyInner>,
}

#[derive(Default)]
struct ReadyInner {
    ids: Vec<u64>,
    queued: HashSet<u64>,
    task: Option<Waker>,
}

impl Ready {
    fn lock(&self) -> std::sync::MutexGuard<'_, ReadyInner> {
        wsring_cluster::lock(&self.inner)
    }

    /// Marks subscription `id` ready and wakes the reader.
    pub(crate) fn push(&self, id: u64) {
        let mut g = self.lock();
        if g.queued.insert(id) {
            g.ids.push(id);
        }
        let task = g.task.take();
        drop(g);
        if let Some(t) = task {
            t.wake();
        }
    }

    /// Registers the reader's waker, then takes the ready ids. Registering
    /// first means a push after an empty take still wakes the reader.
    pub(crate) fn register_and_take(&self, task: &Waker) -> Vec<u64> {
        let mut g = self.lock();
        match &g.task {
            Some(t) if t.will_wake(task) => {}
            _ => g.task = Some(task.clone()),
        }
        g.queued.clear();
        std::mem::take(&mut g.ids)
    }
}

/// The waker given to one subscription's channel: marks it ready.
pub(crate) struct SubWaker {
    id: u64,
    ready: Arc<Ready>,
}

impl SubWaker {
    /// A waker for subscription `id`.
    pub(crate) fn waker(id: u64, ready: &Arc<Ready>) -> Waker {
        Waker::from(Arc::new(SubWaker {
            id,
            ready: Arc::clone(ready),
        }))
    }
}

impl Wake for SubWaker {
    fn wake(self: Arc<Self>) {
        self.ready.push(self.id);
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.ready.push(self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_set_dedups_and_wakes() {
        struct Count(std::sync::atomic::AtomicUsize);
        impl Wake for Count {
            fn wake(self: Arc<Self>) {
                self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        }
        let count = Arc::new(Count(0.into()));
        let task = Waker::from(Arc::clone(&count));
        let ready = Arc::new(Ready::default());
        assert!(ready.register_and_take(&task).is_empty());
        let w = SubWaker::waker(3, &ready);
        w.wake_by_ref();
        w.wake_by_ref();
        SubWaker::waker(4, &ready).wake();
        assert_eq!(count.0.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert_eq!(ready.register_and_take(&task), vec![3, 4]);
        assert!(ready.register_and_take(&task).is_empty());
    }
}
