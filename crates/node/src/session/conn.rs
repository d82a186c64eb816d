//! The connection loop of one session: client frames in (applied as
//! [`Command`]s), queued deliveries out, pings, the catch-up timer, and the
//! close handshake.
//!
//! It is generic over the transport — anything that is both a
//! `Sink<Message>` for writing and a `Stream` of messages for reading — so
//! the unit tests drive it with channels instead of sockets.
//!
//! The loop's own state lives in the session task for as long as the
//! session does, idle or not, so it is kept small: what a client message or
//! a rare delivery needs while being handled (commands, catch-up, joins) is
//! boxed for that time rather than reserved in every idle session's task.

use futures::{Sink, SinkExt, Stream, StreamExt};
use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tokio::time::Instant;
use tracing::{Instrument, debug, debug_span};
use tungstenite::protocol::CloseFrame;
use tungstenite::{Message, Utf8Bytes};
use wsring_auth::Identity;
use wsring_cluster::StreamName;
use wsring_protocol::{ErrorCode, ServerFrame, close, located_url};

use super::cursor::{Cursor, Resume};
use super::state::SessionState;
use super::{End, ReadError};
use crate::cmd::{Command, Outcome, ServerJoin, ServerLeave};
use crate::node::Node;
use crate::outbox;
use crate::pusher::PusherConn;
use crate::sessions::{Codec, Outbound, SessionHandle};

/// A peer that accepts no bytes for this long is treated as gone: a blocked
/// write must never pin a session (or a crash, or a drain) forever.
pub(super) const WRITE_STALL: Duration = Duration::from_secs(10);

/// Queued deliveries written per turn of the session loop before it looks
/// at the client's frames again.
const OUTBOUND_BATCH: usize = 64;

/// After sending a close frame, read (and discard) for up to this long so the
/// kernel does not answer the client's in-flight data with a reset that could
/// destroy the close frame before the client reads it.
pub(super) const CLOSE_LINGER: Duration = Duration::from_secs(1);

/// Bound on reading the user's server-side rooms at connect.
const SERVER_ROOMS_TIMEOUT: Duration = Duration::from_secs(5);

/// A session missing this many ping periods (not even a pong) is dropped.
const IDLE_PERIODS: f32 = 2.5;

/// Pings and pongs a client may send per second, and in a burst. A real
/// client sends one every few seconds at most; a flood makes tungstenite
/// queue a pong for each, so past this the session is closed with 1008.
const CONTROL_FRAMES_PER_SEC: f64 = 10.0;
const CONTROL_BURST: f64 = 50.0;

/// A session's state together with its socket.
pub(super) struct Conn<Si> {
    pub(super) node: Arc<Node>,
    pub(super) state: SessionState,
    socket: Si,
    /// Frames were fed but not flushed yet.
    dirty: bool,
    /// The client's ping/pong budget.
    control: wsring_auth::TokenBucket,
    /// The client's message and byte budgets.
    rate: wsring_auth::RateLimiter,
    /// The close code and reason the connection ended with, either side's.
    closed_with: Option<(u16, String)>,
    /// A located client that connected without a signed identity: its
    /// `moved` frame names the new owner's URL.
    follows: bool,
    /// The Pusher protocol's state, for a Pusher connection; `None` for
    /// the native protocol.
    pusher: Option<Box<PusherConn>>,
    /// When the session's identity expires, on the session's clock: the
    /// token's `exp` plus the leeway, or the connect proxy's `expire_at`.
    expires: Option<Instant>,
}

/// One socket operation, run under the session's stop conditions.
enum Io {
    Feed(Message),
    Flush,
}

/// Runs a session to completion on a connection: registers it in the
/// node's table, serves it, and forgets it again.
///
/// Not an `async fn`: those keep their arguments for their whole run next
/// to whatever they were moved into, and this future lives as long as the
/// connection. The session's parts are put together here and the future
/// holds them once.
pub(super) fn serve<S>(
    node: Arc<Node>,
    socket: S,
    identity: Identity,
    resume: Option<Resume>,
    follows: bool,
) -> impl Future<Output = End>
where
    S: Sink<Message> + Stream<Item = Result<Message, ReadError>> + Unpin,
{
    serve_as(node, socket, identity, resume, follows, None)
}

/// [`serve`] speaking the Pusher protocol when `pusher` is given.
pub(super) fn serve_as<S>(
    node: Arc<Node>,
    socket: S,
    identity: Identity,
    resume: Option<Resume>,
    follows: bool,
    pusher: Option<Box<PusherConn>>,
) -> impl Future<Output = End>
where
    S: Sink<Message> + Stream<Item = Result<Message, ReadError>> + Unpin,
{
    let (tx, rx) = outbox::channel(node.cfg.session_queue);
    let Identity {
        user,
        rooms,
        send,
        publish,
        expire_at,
    } = identity;
    let codec = if pusher.is_some() {
        Codec::Pusher
    } else {
        Codec::Native
    };
    let handle = SessionHandle::new(
        node.new_session_id(),
        user.into(),
        tx,
        node.cfg.session_queue_bytes,
    )
    .with_codec(codec);
    let rate = wsring_auth::RateLimiter::new(node.cfg.rate_limits(), Instant::now().into_std());
    let mut conn = Conn {
        node,
        state: SessionState::new(handle.clone())
            .with_grants(rooms, send)
            .with_publish(publish),
        socket,
        dirty: false,
        control: wsring_auth::TokenBucket::new(
            CONTROL_FRAMES_PER_SEC,
            CONTROL_BURST,
            Instant::now().into_std(),
        ),
        rate,
        closed_with: None,
        follows,
        pusher,
        expires: expire_at.map(|at| {
            // Unix seconds, as a deadline measured from now.
            let left = at.saturating_sub(wsring_auth::unix_now());
            Instant::now() + Duration::from_secs(left)
        }),
    };
    async move {
        let node = Arc::clone(&conn.node);
        // Debug level: an enabled span costs every session a few hundred
        // bytes for as long as it lives.
        let span =
            debug_span!("session", node = %node.id(), user = %handle.user, session = %handle.id);
        // One session too many for this user: its oldest goes, so a client
        // reconnecting past a half-dead session of its own always gets in.
        for old in node
            .table
            .insert_capped(handle.clone(), node.cfg.max_sessions_per_user)
        {
            span.in_scope(|| debug!(evicted = %old.id, "per-user session cap: closing the oldest"));
            old.offer(Outbound::Close(
                close::POLICY_VIOLATION,
                close::REASON_TOO_MANY_SESSIONS.into(),
            ));
        }
        crate::events::connected(&node, &handle);
        let end = conn.main(rx, resume).instrument(span.clone()).await;
        span.in_scope(|| debug!(?end, "session ended"));
        // 1006: the connection ended without a close frame either way.
        let (code, reason) = conn.closed_with.take().unwrap_or((1006, String::new()));
        // Release the socket before the bookkeeping.
        drop(conn);
        for room in node.remove_session(&handle).await {
            crate::events::member_removed(&node, &handle, &room);
        }
        crate::events::disconnected(&node, &handle, code, &reason);
        end
    }
}

impl<S> Conn<S>
where
    S: Sink<Message> + Stream<Item = Result<Message, ReadError>> + Unpin,
{
    async fn main(&mut self, mut rx: outbox::Receiver, resume: Option<Resume>) -> End {
        let end = match self.serve(&mut rx, resume).await {
            End::Kicked => Box::pin(self.kicked()).await,
            end => end,
        };
        if end == End::Closed {
            Box::pin(self.linger()).await;
        }
        end
    }

    /// A slow consumer goes, whatever the session was doing, even a write
    /// blocked on a peer that reads nothing: queued deliveries are dropped
    /// and the close frame goes out after what the socket already holds, if
    /// the peer reads again within the write-stall bound.
    async fn kicked(&mut self) -> End {
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

    /// When the session's timer must fire next: the next ping, the moment
    /// the idle limit passes if nothing more is heard, or the expiry.
    fn due(&self, next_ping: Instant, last_heard: Instant) -> Instant {
        let idle = last_heard + self.node.cfg.ping_interval.mul_f32(IDLE_PERIODS);
        let at = next_ping.min(idle);
        self.expires.map_or(at, |e| at.min(e))
    }

    /// After our close frame: reads (and discards) for [`CLOSE_LINGER`].
    async fn linger(&mut self) {
        let _ = tokio::time::timeout(CLOSE_LINGER, async {
            while let Some(Ok(_)) = self.socket.next().await {}
        })
        .await;
    }

    async fn serve(&mut self, rx: &mut outbox::Receiver, resume: Option<Resume>) -> End {
        if let Err(end) = Box::pin(self.start(resume)).await {
            return end;
        }
        // One timer for the keep-alive rules and the identity's expiry: it
        // fires at the next ping, when the idle limit would pass if nothing
        // more were heard, or at the expiry, whichever is first. It is reset
        // only when it fires (a message moves `last_heard` on, which can
        // only make the idle limit later), so traffic costs no timer work.
        // (What the loop keeps across its waits is part of every idle
        // session's memory: the rest is computed when the timer fires.)
        let ping_every = self.node.cfg.ping_interval;
        let mut next_ping = Instant::now() + ping_every;
        let mut last_heard = Instant::now();
        let mut timer = Box::pin(tokio::time::sleep_until(self.due(next_ping, last_heard)));
        let kill = self.node.kill.clone();
        let kick = self.state.handle.kick.clone();
        // Boxed, and only while a pass is due: most sessions never have one.
        let mut resync: Option<Pin<Box<tokio::time::Sleep>>> = None;
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
                self.state.handle.taken(&out);
                if let Err(end) = self.on_outbound(out).await {
                    return end;
                }
            }
            if self.dirty {
                self.dirty = false;
                if let Err(end) = self.io(Io::Flush).await {
                    return end;
                }
            }
            match (self.state.resync_at(), &mut resync) {
                (None, _) => resync = None,
                (Some(at), Some(timer)) if timer.deadline() != at => timer.as_mut().reset(at),
                (Some(_), Some(_)) => {}
                (Some(at), None) => resync = Some(Box::pin(tokio::time::sleep_until(at))),
            }
            let resync_due = resync.is_some();
            let step = tokio::select! {
                biased;
                _ = kill.cancelled() => Err(End::Killed),
                _ = kick.cancelled() => Err(End::Kicked),
                msg = self.socket.next() => {
                    last_heard = Instant::now();
                    Box::pin(self.on_client(msg)).await
                }
                // Before the deliveries: a session whose queue never empties
                // (a reader of a busy room) still pings on time, so a client
                // that answers is never taken for dead, and expires on time.
                () = timer.as_mut() => {
                    let now = Instant::now();
                    let idle_limit = ping_every.mul_f32(IDLE_PERIODS);
                    let step = if self.expires.is_some_and(|e| now >= e) {
                        debug!("the session's identity expired; closing");
                        self.close(close::EXPIRED, close::REASON_EXPIRED).await
                    } else if now >= last_heard + idle_limit {
                        // Not even a pong: the peer is presumed dead, so a
                        // close frame would go nowhere.
                        debug!("no traffic from client; dropping the connection");
                        Err(End::Gone)
                    } else if now >= next_ping {
                        next_ping = (next_ping + ping_every).max(now);
                        if self.pusher.is_some() {
                            // Pusher clients answer the protocol's own ping.
                            self.write_text(crate::pusher::frames::ping()).await
                        } else {
                            self.write(Message::Ping(bytes::Bytes::new())).await
                        }
                    } else {
                        Ok(())
                    };
                    timer.as_mut().reset(self.due(next_ping, last_heard));
                    step
                }
                Some(out) = rx.recv() => {
                    self.state.handle.taken(&out);
                    self.on_outbound(out).await
                }
                () = async {
                    if let Some(timer) = resync.as_mut() {
                        timer.as_mut().await;
                    }
                }, if resync_due => {
                    self.state.take_resync();
                    Box::pin(self.resync()).await
                }
            };
            if let Err(end) = step {
                return end;
            }
        }
    }
}

impl<Si> Conn<Si>
where
    Si: Sink<Message> + Unpin,
{
    /// Runs a socket operation, giving up if the node stops, the session is
    /// kicked, or the peer accepts nothing for [`WRITE_STALL`].
    ///
    /// Nearly every operation completes at once (the socket buffers the
    /// frame, the kernel takes the flush), so it is tried first on its own,
    /// without a future; only one that has to wait gets the stop conditions
    /// and the timer, boxed for that time rather than kept in the state of
    /// every session's task.
    async fn io(&mut self, op: Io) -> Result<(), End> {
        match self.io_now(op)? {
            None => Ok(()),
            Some(op) => Box::pin(self.io_waiting(op)).await,
        }
    }

    /// Tries `op` without waiting; hands it back if it has to wait.
    fn io_now(&mut self, op: Io) -> Result<Option<Io>, End> {
        // Nobody is woken by this poll: if it has to wait, the operation is
        // polled again, with the task's waker, by `io_waiting`.
        let mut cx = Context::from_waker(Waker::noop());
        let socket = Pin::new(&mut self.socket);
        let now = match &op {
            Io::Feed(_) => socket.poll_ready(&mut cx),
            Io::Flush => socket.poll_flush(&mut cx),
        };
        match now {
            Poll::Pending => Ok(Some(op)),
            Poll::Ready(Err(_)) => Err(End::Gone),
            Poll::Ready(Ok(())) => match op {
                Io::Feed(msg) => Pin::new(&mut self.socket)
                    .start_send(msg)
                    .map(|()| None)
                    .map_err(|_| End::Gone),
                Io::Flush => Ok(None),
            },
        }
    }

    /// [`io`](Self::io) for an operation that has to wait.
    async fn io_waiting(&mut self, op: Io) -> Result<(), End> {
        let kill = self.node.kill.clone();
        let kick = self.state.handle.kick.clone();
        let sink = &mut self.socket;
        let write = async move {
            match op {
                Io::Feed(msg) => sink.feed(msg).await,
                Io::Flush => sink.flush().await,
            }
        };
        tokio::select! {
            _ = kill.cancelled() => Err(End::Killed),
            _ = kick.cancelled() => Err(End::Kicked),
            r = tokio::time::timeout(WRITE_STALL, write) => match r {
                Ok(Ok(())) => Ok(()),
                Ok(Err(_)) | Err(_) => Err(End::Gone),
            },
        }
    }

    /// Welcome, ownership re-check, (durable) user-stream resume, then the
    /// user's server-side rooms; in echo mode nothing (a conformance client
    /// expects no unsolicited message).
    async fn start(&mut self, resume: Option<Resume>) -> Result<(), End> {
        if self.node.cfg.echo {
            return Ok(());
        }
        if let Some(p) = &self.pusher {
            // No durable user stream and no server-side rooms: a Pusher
            // connection is anonymous until it subscribes.
            let established = p.established();
            return self.write_text(established).await;
        }
        let user_stream = StreamName::User(self.state.handle.user.to_string());
        let pos = match &self.node.streams {
            // The user's own stream counts for nobody: every user has one.
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
        let handle = &self.state.handle;
        let welcome = ServerFrame::Welcome {
            user: &handle.user,
            node: self.node.id(),
            session: &handle.id,
            epoch: view.epoch(),
            seq: pos.as_ref().map(|p| p.seq),
            stream_epoch: pos.as_ref().map(|p| p.epoch.as_str()),
        };
        self.write_text(welcome.to_json()).await?;
        // The ring may have changed between the upgrade check and our entry
        // in the session table, after the rebalancer's last pass.
        if !self.node.owns(&view, &self.state.handle.user) {
            return self.moved(view.epoch(), 0).await;
        }
        if pos.is_some() {
            // A peer routing by a view older than the one that sent this
            // user here may publish to the previous owner; once views have
            // settled, one catch-up pass picks up anything that went astray.
            self.state.schedule_resync(crate::rebalance::SETTLE);
        }
        match (pos, resume) {
            (Some(head), Some(r)) => {
                let cursor = Cursor::resume(&head, &r);
                self.state.cursors.insert(user_stream.clone(), cursor);
                self.catch_up(&user_stream, true).await?;
            }
            (Some(head), None) => {
                self.state.cursors.insert(user_stream, Cursor::at(&head));
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
        self.join_server_rooms().await
    }

    /// Joins every room the server put the user in. The session is in the
    /// node's table already, so a `POST /api/rooms/{room}/join|leave` that
    /// changes the stored rooms after this read also reaches the session's
    /// queue, and is applied after this.
    ///
    /// If the store cannot be read, the session goes on without them (they
    /// are not needed to serve it) and says so with an `unavailable` error
    /// frame; it reads again later, through its own queue, so the read
    /// stays in order with any join or leave queued meanwhile.
    async fn join_server_rooms(&mut self) -> Result<(), End> {
        let user = Arc::clone(&self.state.handle.user);
        let listed =
            tokio::time::timeout(SERVER_ROOMS_TIMEOUT, self.node.server_rooms.list(&user)).await;
        let rooms = match listed {
            Ok(Ok(rooms)) => rooms,
            failed => {
                let why = match failed {
                    Ok(Err(e)) => e.to_string(),
                    _ => format!("no answer within {SERVER_ROOMS_TIMEOUT:?}"),
                };
                let delay = self.state.server_rooms_failed();
                debug!(error = %why, ?delay, "server-side rooms unavailable; reading again later");
                if self.state.server_rooms_failures() == 1 {
                    let msg = format!(
                        "the server-side rooms could not be read ({why}); they are joined once they can be"
                    );
                    let f = ServerFrame::Error {
                        code: ErrorCode::Unavailable,
                        message: &msg,
                        id: None,
                    };
                    self.write_text(f.to_json()).await?;
                }
                let handle = self.state.handle.clone();
                let kill = self.node.kill.clone();
                tokio::spawn(async move {
                    tokio::select! {
                        _ = kill.cancelled() => {}
                        _ = tokio::time::sleep(delay) => {
                            handle.offer(Outbound::LoadServerRooms);
                        }
                    }
                });
                return Ok(());
            }
        };
        self.state.server_rooms_loaded();
        for room in rooms {
            let outcome = ServerJoin { room }.apply(&mut self.state, &self.node).await;
            self.carry_out(outcome).await?;
        }
        Ok(())
    }

    async fn on_client(&mut self, msg: Option<Result<Message, ReadError>>) -> Result<(), End> {
        let outcome = match msg {
            None => return Err(End::Gone),
            Some(Ok(Message::Text(text))) => {
                self.node.counters.msgs_in.fetch_add(1, Ordering::Relaxed);
                match self.rate_check(text.len(), Some(text.as_str())) {
                    Some(refused) if self.pusher.is_some() && refused.close.is_none() => Outcome {
                        reply: Some(crate::pusher::frames::error(
                            None,
                            "too many messages; slow down",
                        )),
                        ..Outcome::default()
                    },
                    Some(refused) => refused,
                    None if self.node.cfg.echo => return self.write(Message::Text(text)).await,
                    None if self.pusher.is_some() => match self.pusher.as_mut() {
                        Some(p) => p.apply(text.as_str(), &mut self.state, &self.node).await,
                        None => Outcome::none(),
                    },
                    None => match Command::parse(text.as_str()) {
                        Ok(cmd) => cmd.apply(&mut self.state, &self.node).await,
                        Err(bad_input) => bad_input,
                    },
                }
            }
            Some(Ok(Message::Binary(b))) => {
                self.node.counters.msgs_in.fetch_add(1, Ordering::Relaxed);
                if let Some(refused) = self.rate_check(b.len(), None) {
                    return self.carry_out(refused).await;
                }
                if self.node.cfg.echo {
                    return self.write(Message::Binary(b)).await;
                }
                if self.pusher.is_some() {
                    return self
                        .write_text(crate::pusher::frames::error(
                            None,
                            "binary frames are not supported; send JSON text frames",
                        ))
                        .await;
                }
                Outcome::error(
                    ErrorCode::BadRequest,
                    "binary frames are not supported; send JSON text frames",
                    None,
                )
            }
            // tungstenite answers pings and close frames itself (after a
            // close the stream ends on the next read); a flood of them is
            // closed before its pongs pile up.
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {
                if self.control.take(1.0, Instant::now().into_std()) {
                    Outcome::none()
                } else {
                    Outcome::close(close::POLICY_VIOLATION, close::REASON_CONTROL_FLOOD)
                }
            }
            Some(Ok(Message::Close(frame))) => {
                if self.closed_with.is_none() {
                    self.closed_with = Some(frame.map_or((1005, String::new()), |f| {
                        (u16::from(f.code), f.reason.to_string())
                    }));
                }
                Outcome::none()
            }
            // Frames are only ever sent raw, never received as such.
            Some(Ok(Message::Frame(_))) => Outcome::none(),
            Some(Err(e)) => match e.close() {
                Some((code, reason)) => Outcome::close(code, reason),
                None => return Err(End::Gone),
            },
        };
        self.carry_out(outcome).await
    }

    /// Charges one client message of `len` bytes to the connection's budget
    /// and to its user's (shared by the user's sessions on this node):
    /// `None` if it may proceed, else the answer (`rate_limited`, echoing the
    /// request's `id` when one can be read, or a 1008 close for a client that
    /// keeps going).
    fn rate_check(&mut self, len: usize, text: Option<&str>) -> Option<Outcome> {
        let now = Instant::now().into_std();
        let node = &self.node;
        let user = &self.state.handle.user;
        let mut user_wait = None;
        let verdict =
            self.rate
                .check_with(len, now, || match node.user_rates.check(user, len, now) {
                    Ok(()) => true,
                    Err(wait) => {
                        user_wait = Some(wait.0);
                        false
                    }
                });
        if verdict == wsring_auth::Verdict::Allow {
            return None;
        }
        metrics::counter!("wsring_rate_limited_total", "node" => self.node.cfg.id.clone())
            .increment(1);
        if verdict == wsring_auth::Verdict::Close {
            return Some(Outcome::close(
                close::POLICY_VIOLATION,
                close::REASON_RATE_LIMIT,
            ));
        }
        let id = text.and_then(crate::cmd::request_id);
        let wait = self
            .rate
            .retry_after(len)
            .max(user_wait.unwrap_or_default())
            .as_millis();
        let message = match user_wait {
            Some(_) => format!("too many messages from this user; retry in {wait} ms"),
            None => format!("too many messages; retry in {wait} ms"),
        };
        Some(Outcome::error(
            ErrorCode::RateLimited,
            &message,
            id.as_ref(),
        ))
    }

    /// Does what a command (or bad input) asked for, in order.
    async fn carry_out(&mut self, outcome: Outcome) -> Result<(), End> {
        if let Some(text) = outcome.reply {
            self.write_text(text).await?;
        }
        if let Some(stream) = outcome.catch_up {
            self.catch_up(&stream, true).await?;
        }
        match outcome.close {
            Some((code, reason)) => self.close(code, reason).await,
            None => Ok(()),
        }
    }

    async fn on_outbound(&mut self, out: Outbound) -> Result<(), End> {
        if let Some(p) = &self.pusher {
            let frame = match &out {
                Outbound::Frame(text) => Some(text),
                Outbound::Stream(m) => Some(&m.frame),
                _ => None,
            };
            if let Some(frame) = frame {
                return match p.delivery(frame.as_str()) {
                    Some(crate::pusher::frames::Delivery::Frame(text)) => {
                        self.write_text(text).await
                    }
                    Some(crate::pusher::frames::Delivery::Close(code, reason)) => {
                        self.close(code, reason).await
                    }
                    None => Ok(()),
                };
            }
        }
        match out {
            Outbound::Frame(text) => self.write(Message::Text(text)).await,
            other => Box::pin(self.on_other_outbound(other)).await,
        }
    }

    /// Everything queued for the session but a ready frame.
    async fn on_other_outbound(&mut self, out: Outbound) -> Result<(), End> {
        match out {
            Outbound::Frame(text) => self.write(Message::Text(text)).await,
            Outbound::Stream(m) => self.on_stream(&m).await,
            Outbound::Moved {
                epoch,
                retry_after_ms,
            } => self.moved(epoch, retry_after_ms).await,
            Outbound::Close(code, reason) => self.close(code, reason).await,
            // The completions are dropped once these are carried out: the
            // API call that queued them is waiting for that.
            Outbound::Disconnect(code, reason, _done) => self.close(code, reason.to_string()).await,
            Outbound::ServerJoin(room, _done) => {
                let room = room.to_string();
                let outcome = ServerJoin { room }.apply(&mut self.state, &self.node).await;
                self.carry_out(outcome).await
            }
            Outbound::ServerLeave(room, _done) => {
                let room = room.to_string();
                let outcome = ServerLeave { room }
                    .apply(&mut self.state, &self.node)
                    .await;
                self.carry_out(outcome).await
            }
            Outbound::LoadServerRooms => self.join_server_rooms().await,
            Outbound::Resync => {
                self.state.schedule_resync(Duration::ZERO);
                Ok(())
            }
        }
    }

    /// Sends `moved` and closes 1012; the session ends. A Pusher
    /// connection is closed with 4200 (reconnect now) instead.
    async fn moved(&mut self, epoch: u64, retry_after_ms: u64) -> Result<(), End> {
        if self.pusher.is_some() {
            return self
                .close(crate::pusher::code::RECONNECT_NOW, close::REASON_MOVED)
                .await;
        }
        let url = if self.follows {
            // The latest view: the one the rebalancer moved the user by, or
            // a newer one (then the client is routed by that).
            let view = self.node.membership.view();
            view.owner(&self.state.handle.user)
                .and_then(|owner| view.member(owner))
                .map(|m| located_url(&m.url, view.epoch(), &[]))
        } else {
            None
        };
        let f = ServerFrame::Moved {
            epoch,
            retry_after_ms,
            url: url.as_deref(),
        };
        self.write_text(f.to_json()).await?;
        self.close(close::SERVICE_RESTART, close::REASON_MOVED)
            .await
    }

    /// Queues a frame for writing (flushed before the next wait).
    pub(super) async fn write(&mut self, msg: Message) -> Result<(), End> {
        let counted = matches!(msg, Message::Text(_));
        // `io`, written out: this future is part of every session's state.
        if let Some(op) = self.io_now(Io::Feed(msg))? {
            Box::pin(self.io_waiting(op)).await?;
        }
        if counted {
            self.node.counters.msgs_out.fetch_add(1, Ordering::Relaxed);
        }
        self.dirty = true;
        Ok(())
    }

    pub(super) async fn write_text(&mut self, text: String) -> Result<(), End> {
        self.write(Message::Text(Utf8Bytes::from(text))).await
    }

    /// Sends a close frame and ends the session.
    async fn close(&mut self, code: u16, reason: impl Into<Cow<'static, str>>) -> Result<(), End> {
        let reason = reason.into();
        // Pusher clients reconnect at once on 4200; the native "come back"
        // codes mean just that.
        let code = match code {
            close::GOING_AWAY | close::SERVICE_RESTART if self.pusher.is_some() => {
                crate::pusher::code::RECONNECT_NOW
            }
            code => code,
        };
        self.closed_with = Some((code, reason.to_string()));
        let reason = match reason {
            Cow::Borrowed(r) => Utf8Bytes::from_static(r),
            Cow::Owned(r) => Utf8Bytes::from(r),
        };
        let frame = CloseFrame {
            code: code.into(),
            reason,
        };
        // Not through `io`: a kicked session must still get its close frame
        // out, so only a node stop or the write-stall bound cut this short.
        let kill = self.node.kill.clone();
        tokio::select! {
            _ = kill.cancelled() => Err(End::Killed),
            r = tokio::time::timeout(WRITE_STALL, self.socket.send(Message::Close(Some(frame)))) => match r {
                Ok(Ok(())) => Err(End::Closed),
                Ok(Err(_)) | Err(_) => Err(End::Gone),
            },
        }
    }
}
