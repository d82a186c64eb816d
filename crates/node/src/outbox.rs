//! A session's queue of outbound work ([`Outbound`]): many senders (fan-out,
//! the API, rebalancing), one receiver (the session task), bounded in
//! items.
//!
//! It exists for memory. tokio's `mpsc` channel allocates its first block
//! of 32 slots when it is made — 1.3 KiB for `Outbound`, in every session,
//! idle or not. This queue holds its items in a `VecDeque` that allocates
//! only while something is queued and is given back whenever the receiver
//! finds the queue empty, so an idle session's queue is a hundred-odd bytes.
//!
//! The lock is held only to push or pop, never across an await.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

use crate::sessions::Outbound;

struct Shared {
    items: Mutex<Items>,
    /// Wakes the receiver: a push, or the last sender gone.
    notify: Notify,
    /// Live [`Sender`]s.
    senders: AtomicUsize,
    /// Most items queued at once.
    capacity: usize,
}

struct Items {
    queue: VecDeque<Outbound>,
    /// The receiver is gone: nothing is queued any more.
    closed: bool,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Items> {
        wsring_cluster::lock(&self.items)
    }
}

/// A queue of at most `capacity` items.
pub(crate) fn channel(capacity: usize) -> (Sender, Receiver) {
    let shared = Arc::new(Shared {
        items: Mutex::new(Items {
            queue: VecDeque::new(),
            closed: false,
        }),
        notify: Notify::new(),
        senders: AtomicUsize::new(1),
        capacity,
    });
    (Sender(Arc::clone(&shared)), Receiver(shared))
}

/// Why [`Sender::try_send`] did not queue an item (it is dropped).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TrySendError {
    /// `capacity` items are queued already.
    Full,
    /// The receiver is gone.
    Closed,
}

/// Why [`Receiver::try_recv`] returned nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TryRecvError {
    /// Nothing is queued.
    Empty,
    /// Nothing is queued and every sender is gone.
    Disconnected,
}

/// The sending side; cloned for every holder of a session's handle.
pub(crate) struct Sender(Arc<Shared>);

impl Sender {
    /// Queues `item` unless the queue is full or the receiver is gone.
    pub(crate) fn try_send(&self, item: Outbound) -> Result<(), TrySendError> {
        {
            let mut items = self.0.lock();
            if items.closed {
                return Err(TrySendError::Closed);
            }
            if items.queue.len() >= self.0.capacity {
                return Err(TrySendError::Full);
            }
            items.queue.push_back(item);
        }
        self.0.notify.notify_one();
        Ok(())
    }
}

impl Clone for Sender {
    fn clone(&self) -> Sender {
        self.0.senders.fetch_add(1, Ordering::Relaxed);
        Sender(Arc::clone(&self.0))
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        if self.0.senders.fetch_sub(1, Ordering::AcqRel) == 1 {
            // The receiver may be waiting for an item that cannot come.
            self.0.notify.notify_one();
        }
    }
}

impl std::fmt::Debug for Sender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sender")
            .field("capacity", &self.0.capacity)
            .finish_non_exhaustive()
    }
}

/// The receiving side, owned by the session task.
pub(crate) struct Receiver(Arc<Shared>);

impl Receiver {
    /// The next item, if one is queued.
    pub(crate) fn try_recv(&mut self) -> Result<Outbound, TryRecvError> {
        let mut items = self.0.lock();
        if let Some(item) = items.queue.pop_front() {
            return Ok(item);
        }
        // Drained: give the slots back (an idle session holds none).
        if items.queue.capacity() > 0 {
            items.queue = VecDeque::new();
        }
        if self.0.senders.load(Ordering::Acquire) == 0 {
            Err(TryRecvError::Disconnected)
        } else {
            Err(TryRecvError::Empty)
        }
    }

    /// Waits for the next item; `None` once nothing is queued and every
    /// sender is gone.
    pub(crate) async fn recv(&mut self) -> Option<Outbound> {
        loop {
            match self.try_recv() {
                Ok(item) => return Some(item),
                Err(TryRecvError::Disconnected) => return None,
                // A push between the check and the wait leaves a permit,
                // so this wait returns at once.
                Err(TryRecvError::Empty) => self.0.notify.notified().await,
            }
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let dropped = {
            let mut items = self.0.lock();
            items.closed = true;
            std::mem::take(&mut items.queue)
        };
        // Outside the lock: dropping an item may complete an API call that
        // waits for it.
        drop(dropped);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn item(n: u64) -> Outbound {
        Outbound::Moved {
            epoch: n,
            retry_after_ms: 0,
        }
    }

    fn epoch(o: Outbound) -> u64 {
        match o {
            Outbound::Moved { epoch, .. } => epoch,
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn items_come_out_in_order_up_to_the_capacity() {
        let (tx, mut rx) = channel(3);
        for n in 0..3 {
            tx.try_send(item(n)).expect("room");
        }
        assert_eq!(tx.try_send(item(9)), Err(TrySendError::Full));
        assert_eq!(epoch(rx.try_recv().expect("first")), 0);
        tx.try_send(item(3)).expect("room again");
        let got: Vec<u64> = (0..3)
            .map(|_| epoch(rx.try_recv().expect("item")))
            .collect();
        assert_eq!(got, vec![1, 2, 3]);
        assert_eq!(rx.try_recv().err(), Some(TryRecvError::Empty));
    }

    #[test]
    fn a_drained_queue_holds_no_slots() {
        let (tx, mut rx) = channel(64);
        assert_eq!(rx.0.lock().queue.capacity(), 0);
        for n in 0..40 {
            tx.try_send(item(n)).expect("room");
        }
        while rx.try_recv().is_ok() {}
        assert_eq!(rx.0.lock().queue.capacity(), 0);
    }

    #[tokio::test]
    async fn the_receiver_wakes_for_an_item_and_ends_when_the_senders_are_gone() {
        let (tx, mut rx) = channel(4);
        let tx2 = tx.clone();
        let waiting = tokio::spawn(async move {
            let first = rx.recv().await.map(epoch);
            let end = rx.recv().await.map(epoch);
            (first, end)
        });
        tokio::task::yield_now().await;
        tx2.try_send(item(7)).expect("room");
        drop(tx);
        drop(tx2);
        let got = tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("woken")
            .expect("task");
        assert_eq!(got, (Some(7), None));
    }

    #[test]
    fn nothing_is_queued_once_the_receiver_is_gone_and_queued_items_are_dropped() {
        let (tx, rx) = channel(4);
        let (done, waiter) = crate::sessions::completion();
        tx.try_send(Outbound::ServerJoin("r".into(), done))
            .expect("room");
        drop(rx);
        assert_eq!(tx.try_send(item(1)), Err(TrySendError::Closed));
        // The completion went with the queue: its waiter sees every copy
        // dropped.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime");
        assert!(rt.block_on(waiter.wait(Duration::from_secs(5))));
    }
}
