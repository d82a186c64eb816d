//! The connection task behind a [`crate::Client`]: one loop that connects,
//! resumes, serves requests and reconnects, owning all client state so no
//! locks are needed.
//!
//! Invariants it keeps:
//! * **Cursors** — for every stream (`user`, `room:<r>`) the last delivered
//!   `(epoch, seq)`. A message at or behind the cursor is a duplicate and is
//!   dropped (and counted: a correct server never sends one).
//! * **Pending requests** — every request with its id, in order, until acked.
//!   After a reconnect they are resent in the same order with the same ids;
//!   a durable cluster deduplicates by id, so nothing is stored twice.
//! * **Rooms** — the rooms the application joined (and whether it wants
//!   their presence events), re-joined with `resume` after each reconnect
//!   before any pending request is resent. Rooms the server joined for the
//!   user are the server's to re-join; a `left` frame drops a room from
//!   both.

use futures::{SinkExt, StreamExt};
use rand::Rng;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::{self, Message as WsMessage};
use tracing::debug;
use wsring_protocol::server::{USER_STREAM, room_stream};
use wsring_protocol::{ClientFrame, ConnectParams, ErrorCode, MsgId, OwnedServerFrame, close};

use crate::config::ClientConfig;
use crate::error::ClientError;
use crate::event::{Event, Message};
use crate::{Command, Receipt, Stats};

use crate::ws::Ws;

/// How often pending requests are checked for retries and timeouts.
const TICK: Duration = Duration::from_millis(200);

#[derive(Debug, Clone)]
struct Cursor {
    epoch: String,
    seq: u64,
}

struct Pending {
    /// The request, with its id.
    frame: ClientFrame,
    reply: Option<oneshot::Sender<Result<Receipt, ClientError>>>,
    deadline: Instant,
    /// Set by an `unavailable` error: resend at this time.
    retry_at: Option<Instant>,
}

/// What a frame asks the session loop to do.
enum Action {
    Continue,
    /// `moved`: a close `SERVICE_RESTART` follows; reconnect after this delay.
    Moved(Duration),
    /// A room could not be re-joined: reconnect (and re-join) with backoff.
    Reconnect,
}

/// How a session ended.
enum Ended {
    /// The application closed the client.
    Closed,
    /// `moved` + close `SERVICE_RESTART`: reconnect after this delay.
    Moved(Duration),
    /// Close 3000 `expired`: the session's token expired. Reconnect at once
    /// with a token provider (it fetches a fresh one), else with backoff.
    Expired,
    /// Anything else: reconnect with backoff.
    Lost,
}

pub(crate) struct Driver {
    cfg: ClientConfig,
    cmd_rx: mpsc::UnboundedReceiver<Command>,
    events: mpsc::Sender<Event>,
    stats: Arc<Stats>,
    cursors: HashMap<String, Cursor>,
    /// Joined rooms, and whether with presence events.
    rooms: BTreeMap<String, bool>,
    pending: BTreeMap<u64, Pending>,
    next_id: u64,
    instance: String,
    /// Internal ids (room re-joins) whose acks are not the application's.
    internal: BTreeSet<String>,
    /// Direct mode: the new owner's URL a `moved` frame named, used by the
    /// next connect instead of a locate (once; a failure locates again).
    moved_to: Option<String>,
}

/// The HTTP client of every locate in this process, built once: loading
/// the system's root certificates takes milliseconds, too much to repeat
/// for each of thousands of clients reconnecting at once.
fn locate_client() -> Result<&'static reqwest::Client, crate::api::ApiError> {
    static CLIENT: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    if let Some(c) = CLIENT.get() {
        return Ok(c);
    }
    let built = reqwest::Client::builder()
        // One locate per connect: an idle pooled connection would only hold
        // a slot of the gateway's connection limit until it ends.
        .pool_max_idle_per_host(0)
        .tls_backend_preconfigured(crate::api::tls(None)?)
        .build()?;
    Ok(CLIENT.get_or_init(|| built))
}

/// Why a locate named no node.
enum NotLocated {
    /// Try again: after the server's hint, or with backoff.
    Later(Option<Duration>),
    /// Refused for good (a 4xx other than 421 and 429).
    Refused { status: u16, body: String },
}

/// `retry_after_ms` from a JSON error body.
fn retry_hint(body: &[u8]) -> Option<Duration> {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v["error"]["retry_after_ms"].as_u64())
        .map(Duration::from_millis)
}

/// The locate request for a gateway's WebSocket URL and a connect query:
/// `ws://h:p/ws?x` → `http://h:p/ws/locate?x&<query>`.
fn locate_url(ws_url: &str, query: &str) -> Option<String> {
    let (scheme, rest) = ws_url.split_once("://")?;
    let scheme = match scheme {
        "ws" | "http" => "http",
        "wss" | "https" => "https",
        _ => return None,
    };
    let (path, given) = match rest.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (rest, None),
    };
    let path = path.trim_end_matches('/');
    Some(match given {
        Some(q) if !q.is_empty() => format!("{scheme}://{path}/locate?{q}&{query}"),
        _ => format!("{scheme}://{path}/locate?{query}"),
    })
}

fn jitter(max: Duration) -> Duration {
    let ms = u64::try_from(max.as_millis()).unwrap_or(u64::MAX);
    Duration::from_millis(rand::rng().random_range(0..=ms))
}

fn id_key(id: &MsgId) -> String {
    match id {
        MsgId::Str(s) => s.clone(),
        MsgId::Int(i) => i.to_string(),
    }
}

impl Driver {
    pub(crate) fn new(
        cfg: ClientConfig,
        cmd_rx: mpsc::UnboundedReceiver<Command>,
        events: mpsc::Sender<Event>,
        stats: Arc<Stats>,
    ) -> Driver {
        let instance = format!("{:08x}", rand::rng().random::<u32>());
        Driver {
            cfg,
            cmd_rx,
            events,
            stats,
            cursors: HashMap::new(),
            rooms: BTreeMap::new(),
            pending: BTreeMap::new(),
            next_id: 0,
            instance,
            internal: BTreeSet::new(),
            moved_to: None,
        }
    }

    fn request_id(&self, n: u64) -> String {
        format!("{}-{n}", self.instance)
    }

    /// The connect query's parameters, with `resume`.
    fn connect_params(&self, resume: Option<(u64, String)>) -> ConnectParams {
        ConnectParams {
            user: self.cfg.user.clone(),
            token: self.cfg.token.clone(),
            resume,
        }
    }

    /// The connect URL at `base`, with `resume`/`epoch` once the user stream
    /// is known.
    fn url(&self, base: &str) -> String {
        let resume = self
            .cursors
            .get(USER_STREAM)
            .map(|c| (c.seq, c.epoch.clone()));
        self.connect_params(resume).url(base)
    }

    pub(crate) async fn run(mut self, ready: oneshot::Sender<Result<(), ClientError>>) {
        let mut ready = Some(ready);
        let started = Instant::now();
        let mut attempt: u32 = 0;
        loop {
            let Some(delay) = self.attempt(&mut ready, &mut attempt).await else {
                return;
            };
            if ready.is_some() && started.elapsed() >= self.cfg.timeout {
                self.fail(ClientError::Timeout, &mut ready);
                return;
            }
            // Keep taking commands while waiting, so a close is prompt.
            let until = Instant::now() + delay;
            loop {
                tokio::select! {
                    _ = tokio::time::sleep_until(until) => break,
                    cmd = self.cmd_rx.recv() => match cmd {
                        None | Some(Command::Close) => return,
                        Some(Command::Request { frame, reply }) => self.enqueue(frame, reply),
                    },
                }
            }
            self.expire_requests();
            if ready.is_none() {
                self.stats.reconnects.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// One connection attempt (located first with [`ClientConfig::direct`]),
    /// and the session if it connects. The delay before the next attempt,
    /// or `None` when the client is done (closed, or refused for good).
    async fn attempt(
        &mut self,
        ready: &mut Option<oneshot::Sender<Result<(), ClientError>>>,
        attempt: &mut u32,
    ) -> Option<Duration> {
        if let Some(fetch) = self.cfg.token_provider.clone() {
            match tokio::time::timeout(self.cfg.timeout, fetch()).await {
                Ok(Ok(token)) => self.cfg.token = Some(token),
                Ok(Err(e)) => {
                    debug!(error = %e, "the token provider failed");
                    return Some(self.backoff(attempt));
                }
                Err(_) => {
                    debug!("the token provider did not answer");
                    return Some(self.backoff(attempt));
                }
            }
        }
        let base = if let Some(url) = self.moved_to.take() {
            url
        } else if self.cfg.direct {
            match self.locate().await {
                Ok(url) => url,
                Err(NotLocated::Later(hint)) => {
                    return Some(hint.unwrap_or_else(|| self.backoff(attempt)));
                }
                Err(NotLocated::Refused { status, body }) => {
                    self.fail(ClientError::Refused { status, body }, ready);
                    return None;
                }
            }
        } else {
            self.cfg.url.clone()
        };
        let connected = tokio::time::timeout(
            self.cfg.timeout,
            crate::ws::connect(&self.url(&base), self.cfg.deflate),
        )
        .await;
        let delay = match connected {
            Ok(Ok((ws, response))) => {
                *attempt = 0;
                if response
                    .headers()
                    .contains_key(tungstenite::http::header::SEC_WEBSOCKET_EXTENSIONS)
                {
                    self.stats.deflate.fetch_add(1, Ordering::Relaxed);
                }
                match self.session(ws, ready).await {
                    Ended::Closed => return None,
                    Ended::Moved(d) => d + jitter(self.cfg.moved_jitter),
                    // With a provider, a fresh token is one call away:
                    // reconnect (and resume) at once.
                    Ended::Expired if self.cfg.token_provider.is_some() => Duration::ZERO,
                    Ended::Expired | Ended::Lost => self.backoff(attempt),
                }
            }
            Ok(Err(tungstenite::Error::Http(resp))) if resp.status().is_server_error() => {
                // The gateway suggests when to come back (it already held
                // the request while the ring converged).
                match resp.body().as_deref().and_then(retry_hint) {
                    Some(d) => d.min(self.cfg.backoff_cap),
                    None => self.backoff(attempt),
                }
            }
            Ok(Err(tungstenite::Error::Http(resp))) if resp.status().is_client_error() => {
                // 4xx other than the transient ones is the caller's fault
                // (an invalid user id): retrying cannot help. A 421 from a
                // node reached directly is retried with a fresh locate.
                let status = resp.status().as_u16();
                if status != 421 && status != 429 {
                    let body = resp
                        .body()
                        .as_ref()
                        .map(|b| String::from_utf8_lossy(b).into_owned())
                        .unwrap_or_default();
                    self.fail(ClientError::Refused { status, body }, ready);
                    return None;
                }
                self.backoff(attempt)
            }
            Ok(Err(e)) => {
                debug!(error = %e, "connect failed");
                self.backoff(attempt)
            }
            Err(_) => self.backoff(attempt),
        };
        Some(delay)
    }

    /// Asks the gateway where this user connects (`GET /ws/locate` with the
    /// connect credentials): the node's URL, ready for the connect query.
    async fn locate(&mut self) -> Result<String, NotLocated> {
        let Some(url) = locate_url(&self.cfg.url, &self.connect_params(None).to_query()) else {
            return Err(NotLocated::Refused {
                status: 400,
                body: format!("cannot derive a locate URL from {:?}", self.cfg.url),
            });
        };
        let http = locate_client().map_err(|e| NotLocated::Refused {
            status: 400,
            body: e.to_string(),
        })?;
        let resp = http
            .get(&url)
            .timeout(self.cfg.timeout)
            .send()
            .await
            .map_err(|e| {
                debug!(error = %e, "locate failed");
                NotLocated::Later(None)
            })?;
        let status = resp.status().as_u16();
        let body = resp.bytes().await.map_err(|_| NotLocated::Later(None))?;
        match status {
            200..=299 => serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|v| v["url"].as_str().map(str::to_owned))
                .ok_or(NotLocated::Later(None)),
            421 | 429 => Err(NotLocated::Later(None)),
            400..=499 => Err(NotLocated::Refused {
                status,
                body: String::from_utf8_lossy(&body).into_owned(),
            }),
            _ => Err(NotLocated::Later(
                retry_hint(&body).map(|d| d.min(self.cfg.backoff_cap)),
            )),
        }
    }

    fn backoff(&self, attempt: &mut u32) -> Duration {
        let exp = self
            .cfg
            .backoff_base
            .saturating_mul(1u32 << (*attempt).min(16))
            .min(self.cfg.backoff_cap);
        *attempt = attempt.saturating_add(1);
        jitter(exp)
    }

    fn fail(
        &mut self,
        e: ClientError,
        ready: &mut Option<oneshot::Sender<Result<(), ClientError>>>,
    ) {
        if let Some(r) = ready.take() {
            let _ = r.send(Err(e));
        }
        for (_, p) in std::mem::take(&mut self.pending) {
            if let Some(r) = p.reply {
                let _ = r.send(Err(ClientError::Closed));
            }
        }
    }

    fn enqueue(
        &mut self,
        mut frame: ClientFrame,
        reply: oneshot::Sender<Result<Receipt, ClientError>>,
    ) {
        let n = self.next_id;
        self.next_id += 1;
        frame.set_id(Some(MsgId::Str(self.request_id(n))));
        match &frame {
            ClientFrame::Join { room, presence, .. } => {
                self.rooms.insert(room.clone(), *presence == Some(true));
            }
            ClientFrame::Leave { room, .. } => {
                self.rooms.remove(room);
                self.cursors.remove(&room_stream(room));
            }
            _ => {}
        }
        self.pending.insert(
            n,
            Pending {
                frame,
                reply: Some(reply),
                deadline: Instant::now() + self.cfg.timeout,
                retry_at: None,
            },
        );
    }

    fn expire_requests(&mut self) {
        let now = Instant::now();
        let expired: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(n, _)| *n)
            .collect();
        for n in expired {
            if let Some(r) = self.pending.remove(&n).and_then(|p| p.reply) {
                let _ = r.send(Err(ClientError::Timeout));
            }
        }
    }

    async fn emit(&self, e: Event) {
        let _ = self.events.send(e).await;
    }

    /// Serves one connection until it ends.
    async fn session(
        &mut self,
        mut ws: Ws,
        ready: &mut Option<oneshot::Sender<Result<(), ClientError>>>,
    ) -> Ended {
        // The first frame is `welcome`.
        let welcome = match tokio::time::timeout(self.cfg.timeout, next_text(&mut ws)).await {
            Ok(Some(text)) => OwnedServerFrame::parse(&text).ok(),
            _ => None,
        };
        let Some(OwnedServerFrame::Welcome {
            node,
            session,
            epoch,
            seq,
            stream_epoch,
            ..
        }) = welcome
        else {
            return Ended::Lost;
        };
        if let (Some(seq), Some(e)) = (seq, stream_epoch) {
            // First connect (or a reconnect after a history loss): live from
            // the head. Otherwise the server replays from our cursor.
            self.cursors
                .entry(USER_STREAM.into())
                .or_insert(Cursor { epoch: e, seq });
        }
        if let Some(r) = ready.take() {
            let _ = r.send(Ok(()));
        }
        self.emit(Event::Connected {
            node,
            session,
            epoch,
        })
        .await;
        // Re-join rooms (with their resume points) before resending anything.
        // Acks of an earlier connection's re-joins will never come.
        self.internal.clear();
        let rooms: Vec<(String, bool)> = self.rooms.iter().map(|(r, p)| (r.clone(), *p)).collect();
        for (room, presence) in rooms {
            if self.pending_join(&room) {
                continue; // the pending join request itself will be resent
            }
            let id = format!("{}-r{}", self.instance, self.next_id);
            self.next_id += 1;
            let cursor = self.cursors.get(&room_stream(&room));
            let frame = ClientFrame::Join {
                room,
                id: Some(MsgId::Str(id.clone())),
                resume: cursor.map(|c| c.seq),
                epoch: cursor.map(|c| c.epoch.clone()),
                presence: presence.then_some(true),
            };
            self.internal.insert(id);
            if ws.send(WsMessage::text(frame.to_json())).await.is_err() {
                return Ended::Lost;
            }
        }
        let resend: Vec<String> = self.pending.values().map(|p| p.frame.to_json()).collect();
        if !resend.is_empty() {
            self.stats
                .resent
                .fetch_add(resend.len() as u64, Ordering::Relaxed);
        }
        for frame in resend {
            if ws.send(WsMessage::text(frame)).await.is_err() {
                return Ended::Lost;
            }
        }
        let mut moved_after = None;
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                frame = ws.next() => match frame {
                    Some(Ok(WsMessage::Text(t))) => match self.on_text(t.as_str()).await {
                        Action::Continue => {}
                        Action::Moved(d) => moved_after = Some(d),
                        Action::Reconnect => {
                            let _ = ws.close(None).await;
                            return Ended::Lost;
                        }
                    },
                    Some(Ok(WsMessage::Close(f))) => {
                        let (code, reason) = f
                            .map(|f| (Some(u16::from(f.code)), f.reason.to_string()))
                            .unwrap_or((None, String::new()));
                        self.emit(Event::Disconnected { code, reason }).await;
                        return match (code, moved_after) {
                            // The application (through the server) ended
                            // this user's sessions on purpose.
                            (Some(c), _) if close::is_app_code(c) => Ended::Closed,
                            (Some(close::SERVICE_RESTART), Some(d)) => Ended::Moved(d),
                            (Some(close::SERVICE_RESTART), None) => Ended::Moved(Duration::ZERO),
                            (Some(close::EXPIRED), _) => Ended::Expired,
                            _ => Ended::Lost,
                        };
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => {
                        self.emit(Event::Disconnected { code: None, reason: e.to_string() }).await;
                        return Ended::Lost;
                    }
                    None => {
                        self.emit(Event::Disconnected { code: None, reason: "connection closed".into() }).await;
                        return Ended::Lost;
                    }
                },
                cmd = self.cmd_rx.recv() => match cmd {
                    None | Some(Command::Close) => {
                        let _ = ws.close(None).await;
                        return Ended::Closed;
                    }
                    Some(Command::Request { frame, reply }) => {
                        let n = self.next_id;
                        self.enqueue(frame, reply);
                        let text = self.pending.get(&n).map(|p| p.frame.to_json()).unwrap_or_default();
                        if ws.send(WsMessage::text(text)).await.is_err() {
                            return Ended::Lost;
                        }
                    }
                },
                // Only while requests wait for their ack: an idle client
                // arms no timer, so thousands of them in one process cost
                // no wakeups.
                _ = tick.tick(), if !self.pending.is_empty() => {
                    self.expire_requests();
                    let now = Instant::now();
                    let due: Vec<String> = self
                        .pending
                        .values_mut()
                        .filter(|p| p.retry_at.is_some_and(|t| t <= now))
                        .map(|p| {
                            p.retry_at = None;
                            p.frame.to_json()
                        })
                        .collect();
                    for frame in due {
                        self.stats.resent.fetch_add(1, Ordering::Relaxed);
                        if ws.send(WsMessage::text(frame)).await.is_err() {
                            return Ended::Lost;
                        }
                    }
                }
            }
        }
    }

    fn pending_join(&self, room: &str) -> bool {
        self.pending
            .values()
            .any(|p| matches!(&p.frame, ClientFrame::Join { room: r, .. } if r == room))
    }

    fn pending_number(&self, id: &MsgId) -> Option<u64> {
        let key = id_key(id);
        let n = key.strip_prefix(&self.instance)?.strip_prefix('-')?;
        n.parse().ok()
    }

    /// Handles one text frame.
    async fn on_text(&mut self, text: &str) -> Action {
        let Ok(frame) = OwnedServerFrame::parse(text) else {
            debug!(text, "ignoring unknown frame");
            return Action::Continue;
        };
        match frame {
            OwnedServerFrame::Message {
                from,
                to,
                room,
                data,
                seq,
                epoch,
            } => {
                let key = match &room {
                    Some(r) => room_stream(r),
                    None => USER_STREAM.to_owned(),
                };
                if let (Some(seq), Some(e)) = (seq, &epoch) {
                    // Broadcasts carry no seq; only stream messages are tracked.
                    if let Some(c) = self.cursors.get(&key) {
                        if c.epoch == *e && seq <= c.seq {
                            self.stats.duplicates.fetch_add(1, Ordering::Relaxed);
                            return Action::Continue;
                        }
                        if c.epoch == *e && seq > c.seq + 1 {
                            self.stats.gaps.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    if to.is_some() || room.is_some() {
                        self.cursors.insert(
                            key,
                            Cursor {
                                epoch: e.clone(),
                                seq,
                            },
                        );
                    }
                }
                self.emit(Event::Message(Message {
                    from,
                    to,
                    room,
                    data,
                    seq,
                    epoch,
                }))
                .await;
            }
            OwnedServerFrame::Ack { id, delivered } => {
                if self.internal.remove(&id_key(&id)) {
                    return Action::Continue;
                }
                if let Some(n) = self.pending_number(&id)
                    && let Some(r) = self.pending.remove(&n).and_then(|p| p.reply)
                {
                    let _ = r.send(Ok(Receipt { delivered }));
                }
            }
            OwnedServerFrame::Error { code, message, id } => {
                let pending = id.as_ref().and_then(|i| self.pending_number(i));
                match pending {
                    Some(n) if code == ErrorCode::Unavailable => {
                        // Transient: nothing was acknowledged; resend soon.
                        if let Some(p) = self.pending.get_mut(&n) {
                            p.retry_at = Some(Instant::now() + Duration::from_millis(250));
                        }
                    }
                    Some(n) => {
                        if let Some(r) = self.pending.remove(&n).and_then(|p| p.reply) {
                            let _ = r.send(Err(ClientError::Server {
                                code: code.as_str().to_owned(),
                                message,
                            }));
                        }
                    }
                    None => {
                        if let Some(i) = &id
                            && self.internal.remove(&id_key(i))
                        {
                            // A room we hold could not be re-joined; staying
                            // connected would silently miss it.
                            debug!(
                                code = code.as_str(),
                                message, "room re-join failed; reconnecting"
                            );
                            return Action::Reconnect;
                        }
                        self.emit(Event::Error {
                            code: code.as_str().to_owned(),
                            message,
                        })
                        .await;
                    }
                }
            }
            OwnedServerFrame::Resumed {
                stream,
                complete,
                seq,
                epoch,
            } => {
                if !epoch.is_empty() {
                    // The server's position is authoritative after a resume.
                    self.cursors.insert(stream.clone(), Cursor { epoch, seq });
                }
                if !complete {
                    self.stats.incomplete.fetch_add(1, Ordering::Relaxed);
                }
                self.emit(Event::Resumed {
                    stream,
                    complete,
                    seq,
                })
                .await;
            }
            OwnedServerFrame::Moved {
                epoch,
                retry_after_ms,
                url,
            } => {
                // Only a direct client follows it: a tunnelled one keeps
                // its gateway (the server names no URL to those anyway).
                self.moved_to = url.filter(|_| self.cfg.direct);
                self.emit(Event::Moved {
                    epoch,
                    retry_after_ms,
                })
                .await;
                return Action::Moved(Duration::from_millis(retry_after_ms));
            }
            OwnedServerFrame::Presence { room, user, event } => {
                self.emit(Event::Presence { room, user, event }).await;
            }
            OwnedServerFrame::Joined { room } => {
                self.emit(Event::Joined { room }).await;
            }
            OwnedServerFrame::Left { room } => {
                self.rooms.remove(&room);
                self.cursors.remove(&room_stream(&room));
                self.emit(Event::Left { room }).await;
            }
            OwnedServerFrame::Welcome { .. } | OwnedServerFrame::Pong { .. } => {}
        }
        Action::Continue
    }
}

async fn next_text(ws: &mut Ws) -> Option<String> {
    loop {
        match ws.next().await? {
            Ok(WsMessage::Text(t)) => return Some(t.to_string()),
            Ok(WsMessage::Close(_)) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locate_urls() {
        assert_eq!(
            locate_url("ws://127.0.0.1:7000/ws", "user=alice").as_deref(),
            Some("http://127.0.0.1:7000/ws/locate?user=alice")
        );
        assert_eq!(
            locate_url("wss://rt.example/app/ws/?v=2", "token=t").as_deref(),
            Some("https://rt.example/app/ws/locate?v=2&token=t")
        );
        assert_eq!(locate_url("127.0.0.1:7000/ws", "user=a"), None);
        assert_eq!(locate_url("ftp://h/ws", "user=a"), None);
    }

    #[test]
    fn retry_hints() {
        let body = br#"{"error":{"code":"unavailable","retry_after_ms":400}}"#;
        assert_eq!(retry_hint(body), Some(Duration::from_millis(400)));
        assert_eq!(retry_hint(b"not json"), None);
    }
}
