//! One task per WebSocket session: reads client frames and dispatches them to
//! [`crate::cmd`], writes whatever the node queues for it, keeps the
//! connection alive with pings, and (durable mode) keeps per-stream cursors so
//! that every message is delivered exactly once and in order, filling any gap
//! from the stream store.
//!
//! Bad input never ends a session except where RFC 6455 says it must:
//! malformed JSON and binary frames get an `error` frame; an oversized message
//! closes with 1009 and invalid UTF-8 with 1007.

mod cursor;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{Instrument, debug, info_span};
use wsring_cluster::StreamName;
use wsring_protocol::{ClientFrame, ErrorCode, ServerFrame, close};

use crate::cmd;
use crate::node::Node;
use crate::sessions::{Outbound, SessionHandle};

pub(crate) use cursor::Cursor;

/// A resume request from the connect URL.
#[derive(Debug, Clone)]
pub(crate) struct Resume {
    pub seq: u64,
    pub epoch: String,
}

/// Why a session ended; the session is gone either way.
#[derive(Debug)]
pub(crate) enum End {
    /// The client closed or the socket failed.
    Gone,
    /// We closed it (moved, slow, bad input).
    Closed,
    /// The node crashed or stopped: drop the socket without a close frame.
    Killed,
    /// The outbound queue overflowed (slow consumer): close with 1008.
    Kicked,
}

/// Per-session state owned by the session task.
pub(crate) struct Session {
    pub node: Arc<Node>,
    pub handle: SessionHandle,
    sink: SplitSink<WebSocket, Message>,
    dirty: bool,
    /// Durable mode: position of every stream this session follows.
    pub cursors: HashMap<StreamName, Cursor>,
    /// When the next catch-up pass is due. One timer per session, however
    /// many triggers (broker reconnects, failed reads) pile up.
    resync_at: Option<Instant>,
    /// Consecutive failed catch-up passes, for backoff.
    resync_failures: u32,
}

/// A peer that accepts no bytes for this long is treated as gone: a blocked
/// write must never pin a session (or a crash, or a drain) forever.
const WRITE_STALL: Duration = Duration::from_secs(10);

/// Queued deliveries written per turn of the session loop before it looks
/// at the client's frames again.
const OUTBOUND_BATCH: usize = 64;

/// After sending a close frame, read (and discard) for up to this long so the
/// kernel does not answer the client's in-flight data with a reset that could
/// destroy the close frame before the client reads it.
const CLOSE_LINGER: Duration = Duration::from_secs(1);

/// Runs a session to completion.
pub(crate) async fn run(node: Arc<Node>, ws: WebSocket, user: String, resume: Option<Resume>) {
    let (tx, rx) = mpsc::channel(node.cfg.session_queue);
    let handle = SessionHandle::new(
        node.new_session_id(),
        user.into(),
        tx,
        node.cfg.session_queue_bytes,
    );
    let span = info_span!("session", node = %node.id(), user = %handle.user, session = %handle.id);
    node.table.insert(handle.clone());
    let (sink, stream) = ws.split();
    let mut s = Session {
        node: Arc::clone(&node),
        handle: handle.clone(),
        sink,
        dirty: false,
        cursors: HashMap::new(),
        resync_at: None,
        resync_failures: 0,
    };
    let end = s.main(stream, rx, resume).instrument(span.clone()).await;
    span.in_scope(|| debug!(?end, "session ended"));
    // Release the socket before the bookkeeping.
    drop(s);
    node.remove_session(&handle).await;
}

impl Session {
    async fn main(
        &mut self,
        mut stream: SplitStream<WebSocket>,
        mut rx: mpsc::Receiver<Outbound>,
        resume: Option<Resume>,
    ) -> End {
        let end = match self.serve(&mut stream, &mut rx, resume).await {
            End::Kicked => {
                // Whatever the session was doing, even a write blocked on a
                // peer that reads nothing: queued deliveries are dropped and
                // the close frame goes out after what the socket already
                // holds, if the peer reads again within the write-stall bound.
                metrics::counter!("wsring_slow_consumers_total", "node" => self.node.cfg.id.clone())
                    .increment(1);
                match self
                    .close(close::POLICY_VIOLATION, close::REASON_SLOW)
                    .await
                {
                    Err(end) => end,
                    Ok(()) => End::Closed,
                }
            }
            end => end,
        };
        if matches!(end, End::Closed) {
            let _ = tokio::time::timeout(CLOSE_LINGER, async {
                while let Some(Ok(_)) = stream.next().await {}
            })
            .await;
        }
        end
    }

    async fn serve(
        &mut self,
        stream: &mut SplitStream<WebSocket>,
        rx: &mut mpsc::Receiver<Outbound>,
        resume: Option<Resume>,
    ) -> End {
        if let Err(end) = self.start(resume).await {
            return end;
        }
        let ping_every = self.node.cfg.ping_interval;
        let mut ping = tokio::time::interval_at(Instant::now() + ping_every, ping_every);
        let mut last_heard = Instant::now();
        let kill = self.node.kill.clone();
        let kick = self.handle.kick.clone();
        loop {
            // Deliveries first, a bounded batch per turn: a client that keeps
            // sending must not starve its own queue (it would fill and the
            // client would be closed as a slow consumer although it reads
            // everything), and a busy queue must not starve reading.
            for _ in 0..OUTBOUND_BATCH {
                if kick.is_cancelled() || kill.is_cancelled() {
                    break;
                }
                let Ok(out) = rx.try_recv() else { break };
                self.handle.taken(&out);
                if let Err(end) = self.on_outbound(out).await {
                    return end;
                }
            }
            if self.dirty {
                self.dirty = false;
                if let Err(end) = self.io(|s| s.sink.flush()).await {
                    return end;
                }
            }
            let resync_at = self.resync_at;
            let step = tokio::select! {
                biased;
                _ = kill.cancelled() => Err(End::Killed),
                _ = kick.cancelled() => Err(End::Kicked),
                msg = stream.next() => {
                    last_heard = Instant::now();
                    self.on_client(msg).await
                }
                Some(out) = rx.recv() => {
                    self.handle.taken(&out);
                    self.on_outbound(out).await
                }
                _ = tokio::time::sleep_until(resync_at.unwrap_or_else(Instant::now)), if resync_at.is_some() => {
                    self.resync_at = None;
                    self.resync().await
                }
                _ = ping.tick() => {
                    if last_heard.elapsed() > ping_every.mul_f32(2.5) {
                        // Not even a pong: the peer is presumed dead, so a
                        // close frame would go nowhere.
                        debug!("no traffic from client; dropping the connection");
                        Err(End::Gone)
                    } else {
                        self.write(Message::Ping(bytes::Bytes::new())).await
                    }
                }
            };
            if let Err(end) = step {
                return end;
            }
        }
    }

    /// Runs a socket operation, giving up if the node stops, the session is
    /// kicked, or the peer accepts nothing for [`WRITE_STALL`].
    async fn io<'a, F, Fut>(&'a mut self, op: F) -> Result<(), End>
    where
        F: FnOnce(&'a mut Session) -> Fut,
        Fut: std::future::Future<Output = Result<(), axum::Error>> + 'a,
    {
        let kill = self.node.kill.clone();
        let kick = self.handle.kick.clone();
        tokio::select! {
            _ = kill.cancelled() => Err(End::Killed),
            _ = kick.cancelled() => Err(End::Kicked),
            r = tokio::time::timeout(WRITE_STALL, op(self)) => match r {
                Ok(Ok(())) => Ok(()),
                Ok(Err(_)) | Err(_) => Err(End::Gone),
            },
        }
    }

    /// One catch-up pass over every followed stream.
    async fn resync(&mut self) -> Result<(), End> {
        let streams: Vec<StreamName> = self.cursors.keys().cloned().collect();
        for s in streams {
            self.catch_up(&s, false).await?;
        }
        Ok(())
    }

    /// Welcome, ownership re-check and (durable) user-stream resume.
    async fn start(&mut self, resume: Option<Resume>) -> Result<(), End> {
        let user_stream = StreamName::User(self.handle.user.to_string());
        let pos = match &self.node.streams {
            Some(store) => match store.head(&user_stream).await {
                Ok(p) => Some(p),
                Err(e) => {
                    debug!(error = %e, "stream store unavailable at connect");
                    self.close(close::TRY_AGAIN_LATER, "stream store unavailable")
                        .await?;
                    return Err(End::Closed);
                }
            },
            None => None,
        };
        let view = self.node.membership.view();
        let welcome = ServerFrame::Welcome {
            user: &self.handle.user,
            node: self.node.id(),
            session: &self.handle.id,
            epoch: view.epoch(),
            seq: pos.as_ref().map(|p| p.seq),
            stream_epoch: pos.as_ref().map(|p| p.epoch.as_str()),
        };
        self.write_text(welcome.to_json()).await?;
        // The ring may have changed between the upgrade check and our entry
        // in the session table, after the rebalancer's last pass.
        if !self.node.owns(&view, &self.handle.user) {
            return self.moved(view.epoch(), 0).await;
        }
        if pos.is_some() {
            // A peer routing by a view older than the one that sent this
            // user here may publish to the previous owner; once views have
            // settled, one catch-up pass picks up anything that went astray.
            self.schedule_resync(crate::rebalance::SETTLE);
        }
        match (pos, resume) {
            (Some(head), Some(r)) => {
                let cursor = Cursor::resume(&head, &r);
                self.cursors.insert(user_stream.clone(), cursor);
                self.catch_up(&user_stream, true).await?;
            }
            (Some(head), None) => {
                self.cursors.insert(user_stream, Cursor::at(&head));
            }
            (None, Some(_)) => {
                // Not durable: nothing can be replayed; say so honestly.
                let f = ServerFrame::Resumed {
                    stream: "user",
                    complete: false,
                    seq: 0,
                    epoch: "",
                };
                self.write_text(f.to_json()).await?;
            }
            (None, None) => {}
        }
        Ok(())
    }

    async fn on_client(&mut self, msg: Option<Result<Message, axum::Error>>) -> Result<(), End> {
        match msg {
            None => Err(End::Gone),
            Some(Ok(Message::Text(text))) => {
                self.node.counters.msgs_in.fetch_add(1, Ordering::Relaxed);
                match ClientFrame::parse(text.as_str()) {
                    Ok(frame) => cmd::apply(self, frame).await,
                    Err(e) => {
                        self.error(ErrorCode::BadRequest, &e.message, e.id.as_ref())
                            .await
                    }
                }
            }
            Some(Ok(Message::Binary(_))) => {
                self.node.counters.msgs_in.fetch_add(1, Ordering::Relaxed);
                self.error(
                    ErrorCode::BadRequest,
                    "binary frames are not supported; send JSON text frames",
                    None,
                )
                .await
            }
            // tungstenite answers pings and close frames itself; after a close
            // the stream ends on the next read.
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Close(_))) => Ok(()),
            Some(Err(e)) => match classify(e) {
                Some((code, reason)) => self.close(code, reason).await,
                None => Err(End::Gone),
            },
        }
    }

    async fn on_outbound(&mut self, out: Outbound) -> Result<(), End> {
        match out {
            Outbound::Frame(text) => self.write(Message::Text(text)).await,
            Outbound::Stream(m) => self.on_stream(&m).await,
            Outbound::Moved {
                epoch,
                retry_after_ms,
            } => self.moved(epoch, retry_after_ms).await,
            Outbound::Close(code, reason) => self.close(code, reason).await,
            Outbound::Resync => {
                self.schedule_resync(Duration::ZERO);
                Ok(())
            }
        }
    }

    /// Sends `moved` and closes 1012; the session ends.
    async fn moved(&mut self, epoch: u64, retry_after_ms: u64) -> Result<(), End> {
        let f = ServerFrame::Moved {
            epoch,
            retry_after_ms,
        };
        self.write_text(f.to_json()).await?;
        self.close(close::SERVICE_RESTART, close::REASON_MOVED)
            .await
    }

    /// Queues a frame for writing (flushed before the next wait).
    pub(crate) async fn write(&mut self, msg: Message) -> Result<(), End> {
        let counted = matches!(msg, Message::Text(_));
        self.io(|s| s.sink.feed(msg)).await?;
        if counted {
            self.node.counters.msgs_out.fetch_add(1, Ordering::Relaxed);
        }
        self.dirty = true;
        Ok(())
    }

    pub(crate) async fn write_text(&mut self, text: String) -> Result<(), End> {
        self.write(Message::Text(Utf8Bytes::from(text))).await
    }

    pub(crate) async fn error(
        &mut self,
        code: ErrorCode,
        message: &str,
        id: Option<&wsring_protocol::MsgId>,
    ) -> Result<(), End> {
        let f = ServerFrame::Error { code, message, id };
        self.write_text(f.to_json()).await
    }

    /// Sends a close frame and ends the session.
    pub(crate) async fn close(&mut self, code: u16, reason: &'static str) -> Result<(), End> {
        let frame = CloseFrame {
            code,
            reason: Utf8Bytes::from_static(reason),
        };
        // Not through `io`: a kicked session must still get its close frame
        // out, so only a node stop or the write-stall bound cut this short.
        let kill = self.node.kill.clone();
        tokio::select! {
            _ = kill.cancelled() => Err(End::Killed),
            r = tokio::time::timeout(WRITE_STALL, self.sink.send(Message::Close(Some(frame)))) => match r {
                Ok(Ok(())) => Err(End::Closed),
                Ok(Err(_)) | Err(_) => Err(End::Gone),
            },
        }
    }

    /// Arranges a catch-up pass within `delay` (coalesced with any pending).
    pub(crate) fn schedule_resync(&mut self, delay: Duration) {
        let at = Instant::now() + delay;
        self.resync_at = Some(self.resync_at.map_or(at, |t| t.min(at)));
    }

    /// A failed store read: retry with exponential backoff (1 s … 30 s).
    pub(crate) fn resync_failed(&mut self) {
        let delay =
            Duration::from_secs(1 << self.resync_failures.min(5)).min(Duration::from_secs(30));
        self.resync_failures = self.resync_failures.saturating_add(1);
        if self.resync_at.is_none() {
            self.resync_at = Some(Instant::now() + delay);
        }
    }

    /// A successful store read resets the backoff.
    pub(crate) fn resync_ok(&mut self) {
        self.resync_failures = 0;
    }
}

/// Maps a read error to the close code RFC 6455 prescribes, if any.
fn classify(e: axum::Error) -> Option<(u16, &'static str)> {
    let inner = e.into_inner();
    match inner.downcast_ref::<tungstenite::Error>() {
        Some(tungstenite::Error::Capacity(_)) => Some((close::MESSAGE_TOO_BIG, "message too big")),
        Some(tungstenite::Error::Utf8(_)) => Some((close::INVALID_PAYLOAD, "invalid UTF-8")),
        Some(tungstenite::Error::Protocol(_)) => Some((1002, "protocol error")),
        _ => None,
    }
}
