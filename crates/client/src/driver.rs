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
//! * **Rooms** — the rooms the application joined, re-joined with `resume`
//!   after each reconnect before any pending request is resent.

use futures::{SinkExt, StreamExt};
use rand::Rng;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::{self, Message as WsMessage};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};
use tracing::debug;

use crate::config::ClientConfig;
use crate::error::ClientError;
use crate::event::{Event, Message};
use crate::{Command, Stats};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How often pending requests are checked for retries and timeouts.
const TICK: Duration = Duration::from_millis(200);

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Incoming {
    Welcome {
        node: String,
        session: String,
        epoch: u64,
        seq: Option<u64>,
        stream_epoch: Option<String>,
    },
    Ack {
        id: Value,
    },
    Pong {},
    Message {
        from: Option<String>,
        to: Option<String>,
        room: Option<String>,
        data: Value,
        seq: Option<u64>,
        epoch: Option<String>,
    },
    Error {
        code: String,
        message: String,
        id: Option<Value>,
    },
    Moved {
        epoch: u64,
        retry_after_ms: Option<u64>,
    },
    Resumed {
        stream: String,
        complete: bool,
        seq: Option<u64>,
        epoch: Option<String>,
    },
}

#[derive(Debug, Clone)]
struct Cursor {
    epoch: String,
    seq: u64,
}

struct Pending {
    frame: String,
    reply: Option<oneshot::Sender<Result<(), ClientError>>>,
    deadline: Instant,
    /// Set by an `unavailable` error: resend at this time.
    retry_at: Option<Instant>,
}

/// What a frame asks the session loop to do.
enum Action {
    Continue,
    /// `moved`: a 1012 follows; reconnect after this delay.
    Moved(Duration),
    /// A room could not be re-joined: reconnect (and re-join) with backoff.
    Reconnect,
}

/// How a session ended.
enum Ended {
    /// The application closed the client.
    Closed,
    /// `moved` + 1012: reconnect after this delay.
    Moved(Duration),
    /// Anything else: reconnect with backoff.
    Lost,
}

pub(crate) struct Driver {
    cfg: ClientConfig,
    cmd_rx: mpsc::UnboundedReceiver<Command>,
    events: mpsc::Sender<Event>,
    stats: Arc<Stats>,
    cursors: HashMap<String, Cursor>,
    rooms: BTreeSet<String>,
    pending: BTreeMap<u64, Pending>,
    next_id: u64,
    instance: String,
    /// Internal ids (room re-joins) whose acks are not the application's.
    internal: BTreeSet<String>,
}

fn jitter(max: Duration) -> Duration {
    let ms = u64::try_from(max.as_millis()).unwrap_or(u64::MAX);
    Duration::from_millis(rand::rng().random_range(0..=ms))
}

fn id_key(id: &Value) -> String {
    match id {
        Value::String(s) => s.clone(),
        other => other.to_string(),
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
            rooms: BTreeSet::new(),
            pending: BTreeMap::new(),
            next_id: 0,
            instance,
            internal: BTreeSet::new(),
        }
    }

    fn request_id(&self, n: u64) -> String {
        format!("{}-{n}", self.instance)
    }

    /// The connect URL, with `resume`/`epoch` once the user stream is known.
    fn url(&self) -> String {
        let mut q = form_urlencoded::Serializer::new(String::new());
        q.append_pair("user", &self.cfg.user);
        if let Some(c) = self.cursors.get("user") {
            q.append_pair("resume", &c.seq.to_string());
            q.append_pair("epoch", &c.epoch);
        }
        let sep = if self.cfg.url.contains('?') { '&' } else { '?' };
        format!("{}{sep}{}", self.cfg.url, q.finish())
    }

    pub(crate) async fn run(mut self, ready: oneshot::Sender<Result<(), ClientError>>) {
        let mut ready = Some(ready);
        let started = Instant::now();
        let mut attempt: u32 = 0;
        loop {
            let connected = tokio::time::timeout(self.cfg.timeout, connect_async(self.url())).await;
            let delay = match connected {
                Ok(Ok((ws, _))) => {
                    attempt = 0;
                    match self.session(ws, &mut ready).await {
                        Ended::Closed => return,
                        Ended::Moved(d) => d + jitter(self.cfg.moved_jitter),
                        Ended::Lost => self.backoff(&mut attempt),
                    }
                }
                Ok(Err(tungstenite::Error::Http(resp))) if resp.status().is_server_error() => {
                    // The gateway suggests when to come back (it already held
                    // the request while the ring converged).
                    let hint = resp
                        .body()
                        .as_ref()
                        .and_then(|b| serde_json::from_slice::<Value>(b).ok())
                        .and_then(|v| v["error"]["retry_after_ms"].as_u64());
                    match hint {
                        Some(ms) => Duration::from_millis(ms).min(self.cfg.backoff_cap),
                        None => self.backoff(&mut attempt),
                    }
                }
                Ok(Err(tungstenite::Error::Http(resp))) if resp.status().is_client_error() => {
                    // 4xx other than the transient ones is the caller's fault
                    // (an invalid user id): retrying cannot help.
                    let status = resp.status().as_u16();
                    if status != 421 && status != 429 {
                        let body = resp
                            .body()
                            .as_ref()
                            .map(|b| String::from_utf8_lossy(b).into_owned())
                            .unwrap_or_default();
                        self.fail(ClientError::Refused { status, body }, &mut ready);
                        return;
                    }
                    self.backoff(&mut attempt)
                }
                Ok(Err(e)) => {
                    debug!(error = %e, "connect failed");
                    self.backoff(&mut attempt)
                }
                Err(_) => self.backoff(&mut attempt),
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
        mut frame: Map<String, Value>,
        reply: oneshot::Sender<Result<(), ClientError>>,
    ) {
        let n = self.next_id;
        self.next_id += 1;
        frame.insert("id".into(), json!(self.request_id(n)));
        match (
            frame.get("type").and_then(Value::as_str),
            frame.get("room").and_then(Value::as_str),
        ) {
            (Some("join"), Some(room)) => {
                self.rooms.insert(room.to_owned());
            }
            (Some("leave"), Some(room)) => {
                self.rooms.remove(room);
                self.cursors.remove(&format!("room:{room}"));
            }
            _ => {}
        }
        self.pending.insert(
            n,
            Pending {
                frame: Value::Object(frame).to_string(),
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
            Ok(Some(text)) => serde_json::from_str::<Incoming>(&text).ok(),
            _ => None,
        };
        let Some(Incoming::Welcome {
            node,
            session,
            epoch,
            seq,
            stream_epoch,
        }) = welcome
        else {
            return Ended::Lost;
        };
        if let (Some(seq), Some(e)) = (seq, stream_epoch) {
            // First connect (or a reconnect after a history loss): live from
            // the head. Otherwise the server replays from our cursor.
            self.cursors
                .entry("user".into())
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
        let rooms: Vec<String> = self.rooms.iter().cloned().collect();
        for room in rooms {
            if self.pending_join(&room) {
                continue; // the pending join request itself will be resent
            }
            let id = format!("{}-r{}", self.instance, self.next_id);
            self.next_id += 1;
            let mut frame = json!({"type":"join","room":room,"id":id});
            if let Some(c) = self.cursors.get(&format!("room:{room}")) {
                frame["resume"] = json!(c.seq);
                frame["epoch"] = json!(c.epoch);
            }
            self.internal.insert(id);
            if ws.send(WsMessage::text(frame.to_string())).await.is_err() {
                return Ended::Lost;
            }
        }
        let resend: Vec<String> = self.pending.values().map(|p| p.frame.clone()).collect();
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
                            (Some(1012), Some(d)) => Ended::Moved(d),
                            (Some(1012), None) => Ended::Moved(Duration::ZERO),
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
                        let text = self.pending.get(&n).map(|p| p.frame.clone()).unwrap_or_default();
                        if ws.send(WsMessage::text(text)).await.is_err() {
                            return Ended::Lost;
                        }
                    }
                },
                _ = tick.tick() => {
                    self.expire_requests();
                    let now = Instant::now();
                    let due: Vec<String> = self
                        .pending
                        .values_mut()
                        .filter(|p| p.retry_at.is_some_and(|t| t <= now))
                        .map(|p| {
                            p.retry_at = None;
                            p.frame.clone()
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
        self.pending.values().any(|p| {
            serde_json::from_str::<Value>(&p.frame)
                .is_ok_and(|v| v["type"] == "join" && v["room"] == room)
        })
    }

    fn pending_number(&self, id: &Value) -> Option<u64> {
        let key = id_key(id);
        let n = key.strip_prefix(&self.instance)?.strip_prefix('-')?;
        n.parse().ok()
    }

    /// Handles one text frame.
    async fn on_text(&mut self, text: &str) -> Action {
        let Ok(frame) = serde_json::from_str::<Incoming>(text) else {
            debug!(text, "ignoring unknown frame");
            return Action::Continue;
        };
        match frame {
            Incoming::Message {
                from,
                to,
                room,
                data,
                seq,
                epoch,
            } => {
                let key = match &room {
                    Some(r) => format!("room:{r}"),
                    None => "user".to_owned(),
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
            Incoming::Ack { id } => {
                if self.internal.remove(&id_key(&id)) {
                    return Action::Continue;
                }
                if let Some(n) = self.pending_number(&id)
                    && let Some(r) = self.pending.remove(&n).and_then(|p| p.reply)
                {
                    let _ = r.send(Ok(()));
                }
            }
            Incoming::Error { code, message, id } => {
                let pending = id.as_ref().and_then(|i| self.pending_number(i));
                match pending {
                    Some(n) if code == "unavailable" => {
                        // Transient: nothing was acknowledged; resend soon.
                        if let Some(p) = self.pending.get_mut(&n) {
                            p.retry_at = Some(Instant::now() + Duration::from_millis(250));
                        }
                    }
                    Some(n) => {
                        if let Some(r) = self.pending.remove(&n).and_then(|p| p.reply) {
                            let _ = r.send(Err(ClientError::Server { code, message }));
                        }
                    }
                    None => {
                        if let Some(i) = &id
                            && self.internal.remove(&id_key(i))
                        {
                            // A room we hold could not be re-joined; staying
                            // connected would silently miss it.
                            debug!(code, message, "room re-join failed; reconnecting");
                            return Action::Reconnect;
                        }
                        self.emit(Event::Error { code, message }).await;
                    }
                }
            }
            Incoming::Resumed {
                stream,
                complete,
                seq,
                epoch,
            } => {
                if let (Some(seq), Some(epoch)) = (seq, epoch)
                    && !epoch.is_empty()
                {
                    // The server's position is authoritative after a resume.
                    self.cursors.insert(stream.clone(), Cursor { epoch, seq });
                }
                if !complete {
                    self.stats.incomplete.fetch_add(1, Ordering::Relaxed);
                }
                self.emit(Event::Resumed {
                    stream,
                    complete,
                    seq: seq.unwrap_or(0),
                })
                .await;
            }
            Incoming::Moved {
                epoch,
                retry_after_ms,
            } => {
                let ms = retry_after_ms.unwrap_or(0);
                self.emit(Event::Moved {
                    epoch,
                    retry_after_ms: ms,
                })
                .await;
                return Action::Moved(Duration::from_millis(ms));
            }
            Incoming::Welcome { .. } | Incoming::Pong {} => {}
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
