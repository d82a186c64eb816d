//! Application logic shared by every candidate: JSON RPC replies, subscribe, and fan-out.
//!
//! Protocol (text frames, JSON):
//! - `{"op":"rpc","id":N,"t":T,...}` → reply `{"op":"rpc","id":N,"t":T,"ok":true}`
//! - `{"op":"sub"}` → reply `{"op":"subbed"}`; the connection now receives every event
//! - `{"op":"pub","seq":S,"t":T}` → no reply; one ~200-byte `{"op":"ev",...}` text frame is
//!   pushed to every subscribed connection (built once, cloned per subscriber)
//! - binary frames are counted and ignored; the connection stays open

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        RwLock,
    },
    time::Duration,
};

use futures_util::{Sink, SinkExt};
use serde_json::Value;
use tokio::sync::mpsc;

use super::ServerOpts;

/// Close code for "message too big" (RFC 6455 §7.4.1).
pub const CLOSE_TOO_BIG: u16 = 1009;
/// Close code for "invalid frame payload data", e.g. bad UTF-8 in a text frame.
pub const CLOSE_BAD_DATA: u16 = 1007;

/// Padding that brings a fan-out event to roughly 200 bytes on the wire.
const EVENT_PAD: &str = "fanout-payload-fanout-payload-fanout-payload-fanout-payload-\
fanout-payload-fanout-payload-fanout-payload-fanout-payload-fanout-payload-xx";

/// A message type a candidate crate can send, built from our application output.
pub trait Outbound: Clone + Send + Sync + 'static {
    /// A text frame with this (valid UTF-8) payload.
    fn text(s: String) -> Self;
    /// A close frame with code and reason.
    fn close(code: u16, reason: &'static str) -> Self;
    /// Whether this is a close frame (the writer stops after sending one).
    fn is_close(&self) -> bool;
}

/// What a candidate's read side produced, mapped to crate-independent terms.
pub enum Inbound<'a> {
    /// A complete, UTF-8-validated text message.
    Text(&'a [u8]),
    /// A complete binary message.
    Binary,
    /// The peer sent a close frame (the crate already answers it).
    Close,
    /// Ping/pong or other control traffic handled by the crate.
    Control,
    /// The crate rejected a message as larger than the configured limit.
    TooBig(String),
    /// The crate rejected a text message with invalid UTF-8.
    BadUtf8(String),
    /// Any other read error (I/O, protocol violation...). The connection ends.
    Fatal(String),
}

/// What the reader loop should do next.
pub enum Flow {
    Continue,
    Stop,
}

/// State shared by all connections of one server process.
pub struct AppState<M: Outbound> {
    pub opts: ServerOpts,
    subs: RwLock<HashMap<u64, mpsc::Sender<M>>>,
    next_id: AtomicU64,
    /// Fan-out frames dropped because a subscriber's queue was full.
    pub dropped: AtomicU64,
    /// Binary frames seen (and ignored).
    pub binary: AtomicU64,
}

/// Type-erased holder so one axum state type serves every candidate.
pub struct AnyState {
    pub opts: ServerOpts,
    pub axum: AppState<axum::extract::ws::Message>,
    pub fastws: AppState<super::fastws::Out>,
    pub tokiows: AppState<tokio_websockets::Message>,
    pub tungstenite: AppState<tokio_tungstenite::tungstenite::Message>,
}

impl AnyState {
    /// Creates empty per-candidate states (only one is ever used by a given process).
    pub fn new(opts: ServerOpts) -> Self {
        Self {
            axum: AppState::new(opts.clone()),
            fastws: AppState::new(opts.clone()),
            tokiows: AppState::new(opts.clone()),
            tungstenite: AppState::new(opts.clone()),
            opts,
        }
    }
}

impl<M: Outbound> AppState<M> {
    fn new(opts: ServerOpts) -> Self {
        Self {
            opts,
            subs: RwLock::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            dropped: AtomicU64::new(0),
            binary: AtomicU64::new(0),
        }
    }

    /// Registers a new connection and returns its context and outbound queue receiver.
    pub fn connect(&self) -> (Conn<'_, M>, mpsc::Receiver<M>) {
        let (tx, rx) = mpsc::channel(self.opts.queue);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        (
            Conn {
                state: self,
                id,
                tx,
                subscribed: false,
            },
            rx,
        )
    }

    fn publish(&self, seq: &Value, t: &Value) {
        let ev = M::text(format!(
            r#"{{"op":"ev","seq":{seq},"t":{t},"pad":"{EVENT_PAD}"}}"#
        ));
        let subs = self.subs.read().expect("subs lock");
        for tx in subs.values() {
            if tx.try_send(ev.clone()).is_err() {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// One WebSocket connection's application context.
pub struct Conn<'s, M: Outbound> {
    state: &'s AppState<M>,
    id: u64,
    tx: mpsc::Sender<M>,
    subscribed: bool,
}

impl<M: Outbound> Conn<'_, M> {
    /// A sender for crate-obligated frames (pong / close echo) that must go through the writer.
    pub fn sender(&self) -> mpsc::Sender<M> {
        self.tx.clone()
    }

    /// Handles one inbound event; replies are queued to this connection's writer.
    pub async fn on_inbound(&mut self, ev: Inbound<'_>) -> Flow {
        match ev {
            Inbound::Text(bytes) => match self.on_text(bytes) {
                Some(reply) => self.send(reply).await,
                None => Flow::Continue,
            },
            Inbound::Binary => {
                self.state.binary.fetch_add(1, Ordering::Relaxed);
                Flow::Continue
            }
            Inbound::Control => Flow::Continue,
            Inbound::Close => Flow::Stop,
            Inbound::TooBig(why) => {
                log(&format!("conn {}: too big ({why}); closing 1009", self.id));
                if self.state.opts.app_close {
                    let _ = self.send(M::close(CLOSE_TOO_BIG, "message too big")).await;
                }
                Flow::Stop
            }
            Inbound::BadUtf8(why) => {
                log(&format!(
                    "conn {}: bad utf-8 ({why}); closing 1007",
                    self.id
                ));
                if self.state.opts.app_close {
                    let _ = self.send(M::close(CLOSE_BAD_DATA, "invalid utf-8")).await;
                }
                Flow::Stop
            }
            Inbound::Fatal(why) => {
                log(&format!("conn {}: read error: {why}", self.id));
                Flow::Stop
            }
        }
    }

    async fn send(&self, m: M) -> Flow {
        match self.tx.send(m).await {
            Ok(()) => Flow::Continue,
            Err(_) => Flow::Stop,
        }
    }

    fn on_text(&mut self, bytes: &[u8]) -> Option<M> {
        let v: Value = match serde_json::from_slice(bytes) {
            Ok(v) => v,
            Err(_) => return Some(M::text(r#"{"op":"error","why":"bad json"}"#.to_owned())),
        };
        match v.get("op").and_then(Value::as_str) {
            Some("rpc") => Some(M::text(format!(
                r#"{{"op":"rpc","id":{},"t":{},"ok":true}}"#,
                v.get("id").unwrap_or(&Value::Null),
                v.get("t").unwrap_or(&Value::Null),
            ))),
            Some("sub") => {
                if !self.subscribed {
                    self.subscribed = true;
                    self.state
                        .subs
                        .write()
                        .expect("subs lock")
                        .insert(self.id, self.tx.clone());
                }
                Some(M::text(r#"{"op":"subbed"}"#.to_owned()))
            }
            Some("pub") => {
                self.state.publish(
                    v.get("seq").unwrap_or(&Value::Null),
                    v.get("t").unwrap_or(&Value::Null),
                );
                None
            }
            _ => Some(M::text(r#"{"op":"error","why":"unknown op"}"#.to_owned())),
        }
    }
}

impl<M: Outbound> Drop for Conn<'_, M> {
    fn drop(&mut self) {
        if self.subscribed {
            self.state.subs.write().expect("subs lock").remove(&self.id);
        }
    }
}

/// Writer task for crates whose write half is a `futures::Sink`: batch what is queued, then
/// flush once. Ends after a close frame, when all senders are gone, or on a write error.
pub async fn sink_writer<S, M>(mut sink: S, mut rx: mpsc::Receiver<M>)
where
    S: Sink<M> + Unpin,
    M: Outbound,
{
    'outer: while let Some(m) = rx.recv().await {
        let mut closing = m.is_close();
        if sink.feed(m).await.is_err() {
            break;
        }
        // Bounded batch: at most 64 extra frames per flush.
        for _ in 0..64 {
            if closing {
                break;
            }
            match rx.try_recv() {
                Ok(m) => {
                    closing = m.is_close();
                    if sink.feed(m).await.is_err() {
                        break 'outer;
                    }
                }
                Err(_) => break,
            }
        }
        if sink.flush().await.is_err() || closing {
            break;
        }
    }
    // Sends a close frame if none was sent yet; bounded because some crates wait for the
    // peer's close reply here.
    let _ = tokio::time::timeout(Duration::from_secs(1), sink.close()).await;
}

/// Diagnostics go to stderr only when `WS_SHOOTOUT_VERBOSE` is set.
pub fn log(msg: &str) {
    if std::env::var_os("WS_SHOOTOUT_VERBOSE").is_some() {
        eprintln!("server: {msg}");
    }
}
