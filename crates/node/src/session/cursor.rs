//! A session's position in one durable stream, and the rules that move it.
//!
//! The invariant: a session writes message `seq` of a stream only when its
//! cursor is at `seq - 1`. Live messages behind the cursor are duplicates and
//! dropped; messages ahead of it (or from another stream epoch) mean a gap —
//! reordering between publishers, a missed broker message, a reconnect —
//! which the session fills from the stream store before the live message is
//! written. Resume is the same gap fill, starting from the client's last seq.
//!
//! This module only decides; the session's connection loop
//! (`session::replay`) reads the store and writes the frames.

use std::sync::Arc;
use wsring_cluster::StreamPos;

/// A resume point the client sent (`resume`/`epoch` on connect or join):
/// the last seq it saw and the stream epoch that seq belongs to.
#[derive(Debug, Clone)]
pub(crate) struct Resume {
    pub seq: u64,
    pub epoch: String,
}

/// A session's position in one stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Cursor {
    pub epoch: Arc<str>,
    pub seq: u64,
    /// False once we know the client missed something we cannot replay.
    complete: bool,
    /// A `resumed` frame is owed (its catch-up failed on the store).
    owe_report: bool,
}

/// What to do with a live durable message, given the cursor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Live {
    /// The next message: write it and advance.
    Next,
    /// Already written (or from an older epoch we moved past): drop it.
    Behind,
    /// Ahead of the cursor or from another epoch: fill from the store first.
    Gap,
}

impl Cursor {
    /// Live from the stream's current head.
    pub fn at(head: &StreamPos) -> Cursor {
        Cursor {
            epoch: head.epoch.as_str().into(),
            seq: head.seq,
            complete: true,
            owe_report: false,
        }
    }

    /// From the client's resume point; an epoch mismatch or a seq the stream
    /// never reached means the client's history is from a lost stream.
    pub fn resume(head: &StreamPos, r: &Resume) -> Cursor {
        if r.epoch == head.epoch && r.seq <= head.seq {
            Cursor {
                epoch: head.epoch.as_str().into(),
                seq: r.seq,
                complete: true,
                owe_report: false,
            }
        } else {
            Cursor {
                complete: false,
                ..Cursor::at(head)
            }
        }
    }

    /// Where live message `seq` of `epoch` stands relative to the cursor.
    pub fn classify(&self, seq: u64, epoch: &str) -> Live {
        if *self.epoch != *epoch || seq > self.seq + 1 {
            Live::Gap
        } else if seq == self.seq + 1 {
            Live::Next
        } else {
            Live::Behind
        }
    }

    /// The store holds another epoch (the stream was reset): start over from
    /// its beginning; the client's earlier history is gone.
    pub fn restart(&mut self, epoch: &str) {
        self.epoch = epoch.into();
        self.seq = 0;
        self.complete = false;
    }

    /// The history no longer reaches back to the cursor: jump to the head;
    /// the client is told to reload.
    pub fn skip_to(&mut self, seq: u64) {
        self.seq = seq;
        self.complete = false;
    }

    /// A catch-up that owed a `resumed` frame failed; the retry sends it.
    pub fn owe_report(&mut self) {
        self.owe_report = true;
    }

    /// Ends a catch-up pass: whether the client's history is complete and
    /// whether a `resumed` frame was owed; both flags start over.
    pub fn settle(&mut self) -> (bool, bool) {
        let complete = std::mem::replace(&mut self.complete, true);
        let owed = std::mem::replace(&mut self.owe_report, false);
        (complete, owed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(seq: u64, epoch: &str) -> StreamPos {
        StreamPos {
            seq,
            epoch: epoch.into(),
        }
    }

    fn resume(seq: u64, epoch: &str) -> Resume {
        Resume {
            seq,
            epoch: epoch.into(),
        }
    }

    #[test]
    fn a_resume_within_the_stream_is_complete() {
        let mut c = Cursor::resume(&head(10, "e1"), &resume(4, "e1"));
        assert_eq!((c.seq, &*c.epoch), (4, "e1"));
        assert_eq!(c.settle(), (true, false));
        // At the head exactly: nothing to replay, still complete.
        let mut c = Cursor::resume(&head(10, "e1"), &resume(10, "e1"));
        assert_eq!(c.seq, 10);
        assert_eq!(c.settle(), (true, false));
    }

    #[test]
    fn a_resume_from_a_lost_stream_is_incomplete_and_starts_at_the_head() {
        for r in [resume(4, "old"), resume(11, "e1")] {
            let mut c = Cursor::resume(&head(10, "e1"), &r);
            assert_eq!((c.seq, &*c.epoch), (10, "e1"), "{r:?}");
            assert_eq!(c.settle(), (false, false), "{r:?}");
            assert_eq!(c.settle(), (true, false), "reported once");
        }
    }

    #[test]
    fn live_messages_are_written_once_and_in_order() {
        let c = Cursor::at(&head(5, "e"));
        assert_eq!(c.classify(6, "e"), Live::Next);
        assert_eq!(c.classify(5, "e"), Live::Behind);
        assert_eq!(c.classify(1, "e"), Live::Behind);
        assert_eq!(c.classify(7, "e"), Live::Gap);
        assert_eq!(c.classify(6, "other"), Live::Gap);
    }

    #[test]
    fn reset_and_truncated_streams_mark_the_history_incomplete() {
        let mut c = Cursor::at(&head(5, "e"));
        c.restart("e2");
        assert_eq!((c.seq, &*c.epoch), (0, "e2"));
        assert_eq!(c.settle(), (false, false));
        c.skip_to(40);
        assert_eq!(c.seq, 40);
        c.owe_report();
        assert_eq!(c.settle(), (false, true));
        assert_eq!(c.settle(), (true, false));
    }
}
