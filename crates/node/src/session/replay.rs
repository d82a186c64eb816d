//! Durable delivery inside the connection loop: live messages checked
//! against their stream's [`Cursor`], gaps filled from the stream store,
//! resume reported with a `resumed` frame.

use futures::Sink;
use std::sync::Arc;
use tracing::{debug, warn};
use tungstenite::Message;
use wsring_cluster::StreamName;
use wsring_protocol::ServerFrame;

use super::End;
use super::conn::Conn;
use super::cursor::Live;
use crate::durable;
use crate::sessions::StreamMsg;

/// Batch size for store reads during catch-up.
const READ_BATCH: usize = 256;

/// Bound on store reads in one catch-up: each pass either writes entries or
/// ends; a stream reset mid-way costs one extra pass.
const MAX_PASSES: usize = 10_000;

impl<Si> Conn<Si>
where
    Si: Sink<Message> + Unpin,
{
    /// Handles a live durable message.
    pub(super) async fn on_stream(&mut self, m: &StreamMsg) -> Result<(), End> {
        let Some(c) = self.state.cursors.get(&m.stream) else {
            return Ok(()); // not following this stream (left the room)
        };
        if c.classify(m.seq, &m.epoch) == Live::Gap {
            // Reset stream or a gap: the store is authoritative.
            self.catch_up(&m.stream, false).await?;
        }
        let Some(c) = self.state.cursors.get_mut(&m.stream) else {
            return Ok(());
        };
        if c.classify(m.seq, &m.epoch) == Live::Next {
            c.seq = m.seq;
            self.write(Message::Text(m.frame.clone())).await?;
        }
        Ok(())
    }

    /// One catch-up pass over every followed stream.
    pub(super) async fn resync(&mut self) -> Result<(), End> {
        let streams: Vec<StreamName> = self.state.cursors.keys().cloned().collect();
        for s in streams {
            self.catch_up(&s, false).await?;
        }
        Ok(())
    }

    /// Brings the cursor of `stream` up to the store's head, writing every
    /// message in between. With `report`, finishes with a `resumed` frame.
    pub(super) async fn catch_up(&mut self, stream: &StreamName, report: bool) -> Result<(), End> {
        let Some(store) = self.node.streams.clone() else {
            return Ok(());
        };
        for _ in 0..MAX_PASSES {
            let Some(after) = self.state.cursors.get(stream).map(|c| c.seq) else {
                return Ok(());
            };
            let batch = match store.read_after(stream, after, READ_BATCH).await {
                Ok(b) => b,
                Err(e) => {
                    warn!(?stream, error = %e, "stream read failed; will retry");
                    if report && let Some(c) = self.state.cursors.get_mut(stream) {
                        // The `resumed` this pass owed is sent by the retry.
                        c.owe_report();
                    }
                    self.state.resync_failed();
                    return Ok(());
                }
            };
            self.state.resync_ok();
            let c = self.state.cursors.get_mut(stream).ok_or(End::Closed)?;
            if *c.epoch != *batch.epoch {
                debug!(
                    ?stream,
                    "stream epoch changed; restarting from its beginning"
                );
                c.restart(&batch.epoch);
                continue;
            }
            if !batch.covers(c.seq) {
                // History no longer reaches back to the cursor: jump to the
                // head and tell the client to reload.
                c.skip_to(batch.last_seq);
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
                if let Some(c) = self.state.cursors.get_mut(stream) {
                    c.seq = seq;
                }
            }
        }
        let Some(c) = self.state.cursors.get_mut(stream) else {
            return Ok(());
        };
        let (complete, owed) = c.settle();
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
