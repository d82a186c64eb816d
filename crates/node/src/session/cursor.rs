//! Durable delivery inside a session: per-stream cursors, live-message
//! ordering, gap filling and resume.
//!
//! The invariant: a session writes message `seq` of a stream only when its
//! cursor is at `seq - 1`. Live messages behind the cursor are duplicates and
//! dropped; messages ahead of it mean a gap (reordering between publishers, a
//! missed broker message, a reconnect), which is filled from the stream store
//! before the live message is written. Resume is the same gap fill, starting
//! from the client's last seq.

use std::sync::Arc;
use tracing::{debug, warn};
use wsring_cluster::{StreamName, StreamPos};
use wsring_protocol::ServerFrame;

use super::{End, Resume, Session};
use crate::durable;
use crate::sessions::StreamMsg;

/// Batch size for store reads during catch-up.
const READ_BATCH: usize = 256;

/// A session's position in one stream.
#[derive(Debug, Clone)]
pub(crate) struct Cursor {
    pub epoch: Arc<str>,
    pub seq: u64,
    /// False once we know the client missed something we cannot replay.
    complete: bool,
    /// A `resumed` frame is owed (its catch-up failed on the store).
    owe_report: bool,
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
}

impl Session {
    /// Handles a live durable message.
    pub(crate) async fn on_stream(&mut self, m: &StreamMsg) -> Result<(), End> {
        let Some(c) = self.cursors.get(&m.stream) else {
            return Ok(()); // not following this stream (left the room)
        };
        if *c.epoch != *m.epoch || m.seq > c.seq + 1 {
            // Reset stream or a gap: the store is authoritative.
            self.catch_up(&m.stream, false).await?;
        }
        let Some(c) = self.cursors.get_mut(&m.stream) else {
            return Ok(());
        };
        if *c.epoch == *m.epoch && m.seq == c.seq + 1 {
            c.seq = m.seq;
            self.write(axum::extract::ws::Message::Text(m.frame.clone()))
                .await?;
        }
        Ok(())
    }

    /// Brings the cursor of `stream` up to the store's head, writing every
    /// message in between. With `report`, finishes with a `resumed` frame.
    pub(crate) async fn catch_up(&mut self, stream: &StreamName, report: bool) -> Result<(), End> {
        let Some(store) = self.node.streams.clone() else {
            return Ok(());
        };
        // Bounded: each pass either writes entries or ends; a stream reset
        // mid-way costs one extra pass.
        for _ in 0..10_000 {
            let Some(cursor) = self.cursors.get(stream).cloned() else {
                return Ok(());
            };
            let batch = match store.read_after(stream, cursor.seq, READ_BATCH).await {
                Ok(b) => b,
                Err(e) => {
                    warn!(?stream, error = %e, "stream read failed; will retry");
                    if report && let Some(c) = self.cursors.get_mut(stream) {
                        // The `resumed` this pass owed is sent by the retry.
                        c.owe_report = true;
                    }
                    self.resync_failed();
                    return Ok(());
                }
            };
            self.resync_ok();
            let c = self.cursors.get_mut(stream).ok_or(End::Closed)?;
            if *c.epoch != *batch.epoch {
                debug!(
                    ?stream,
                    "stream epoch changed; restarting from its beginning"
                );
                *c = Cursor {
                    epoch: batch.epoch.as_str().into(),
                    seq: 0,
                    complete: false,
                    owe_report: c.owe_report,
                };
                continue;
            }
            if !batch.covers(c.seq) {
                // History no longer reaches back to the cursor: jump to the
                // head and tell the client to reload.
                c.seq = batch.last_seq;
                c.complete = false;
                break;
            }
            if batch.entries.is_empty() {
                break;
            }
            let epoch = Arc::clone(&c.epoch);
            for (seq, payload) in batch.entries {
                match durable::render(&payload, seq, &epoch) {
                    Ok(text) => self.write_text(text).await?,
                    Err(e) => {
                        warn!(?stream, seq, error = %e, "skipping undecodable stored message")
                    }
                }
                if let Some(c) = self.cursors.get_mut(stream) {
                    c.seq = seq;
                }
            }
        }
        let Some(c) = self.cursors.get_mut(stream) else {
            return Ok(());
        };
        let complete = std::mem::replace(&mut c.complete, true);
        let owed = std::mem::replace(&mut c.owe_report, false);
        if report || owed || !complete {
            let (seq, epoch) = (c.seq, Arc::clone(&c.epoch));
            let name = stream.to_string();
            let f = ServerFrame::Resumed {
                stream: &name,
                complete,
                seq,
                epoch: &epoch,
            };
            self.write_text(f.to_json()).await?;
        }
        Ok(())
    }
}
