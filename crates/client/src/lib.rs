//! Rust client for wsring.
//!
//! ```no_run
//! # async fn demo() -> Result<(), wsring_client::ClientError> {
//! let (client, mut events) = wsring_client::connect("ws://127.0.0.1:7000/ws", "alice").await?;
//! client.join("lobby").await?;
//! client.send("bob", serde_json::json!({"text": "hi"})).await?; // returns on ack
//! while let Some(event) = events.next().await {
//!     println!("{event:?}");
//! }
//! # Ok(()) }
//! ```
//!
//! What the client does for you:
//! * **Reconnects** after any disconnect with exponential backoff and full
//!   jitter; after a `moved` + 1012 it reconnects at once (plus the server's
//!   suggested `retry_after_ms` and a small jitter), landing on the new owner
//!   through the gateway.
//! * **Resumes** (durable clusters): it tracks the last `seq`/`epoch` of the
//!   user stream and of every joined room, reconnects with
//!   `?resume=…&epoch=…`, re-joins rooms with `resume`, and drops nothing and
//!   duplicates nothing across the switch. A `resumed{complete:false}` (the
//!   history no longer covers the gap) is surfaced as [`Event::Resumed`] so
//!   the application can reload its state.
//! * **Retries requests**: `send`, `publish`, `join` and `leave` carry an id
//!   and resolve on the server's `ack`; unacknowledged requests are resent
//!   after a reconnect or an `unavailable` error, with the same id, which a
//!   durable cluster deduplicates — so a message is stored exactly once.
//! * **Reports lost direct messages**: [`Client::send_receipt`] returns the
//!   ack's [`Receipt`]; `delivered: Some(false)` means the backend saw no
//!   live node receive the message (without `--durable`, its owner node
//!   just died), so the application can resend it or tell the user.
//! * **Skips the tunnel when asked** ([`ClientConfig::direct`]): before every
//!   connect it asks the gateway where its user lives (`GET /ws/locate`) and
//!   connects to that node, so messages cross two sockets fewer; a move
//!   leads to a fresh locate.
//! * **Refreshes its token** ([`ClientConfig::with_token_provider`]): the
//!   provider is called before every connect and reconnect, so when the
//!   server closes a session whose token expired (3000 `expired`) the client
//!   reconnects at once with a fresh token and resumes where it was.
//! * **Stops when told to**: a close with an application code (4000–4999,
//!   e.g. from `POST /api/disconnect`) is final: no reconnect.
//!
//! The server API (HTTP, with the API key) has its own small client,
//! [`Api`]: what an application backend calls to send, publish, disconnect
//! users, manage their server-side rooms and read history.
//!
//! # Layout
//! * [`config`] — [`ClientConfig`] and its defaults.
//! * [`event`] — what the application receives.
//! * `driver` — the connection task: reconnect, resume, request tracking.
//! * [`error`] — [`ClientError`].
//! * [`api`] — [`Api`], the server API client, and [`ApiError`].
//!
//! Frames, error codes and close codes come from `wsring-protocol`, the
//! crate the server uses, so the two cannot disagree on the wire format.

pub mod api;
pub mod config;
mod driver;
pub mod error;
pub mod event;
pub mod ws;

use serde::Serialize;
use serde_json::value::{RawValue, to_raw_value};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::{mpsc, oneshot};
use wsring_protocol::ClientFrame;

pub use api::{Api, ApiConfig, ApiError};
pub use config::{ClientConfig, TokenProvider};
pub use error::ClientError;
pub use event::{Event, Message, PresenceEvent};

/// Counters of what the client had to handle.
#[derive(Debug, Default)]
pub struct Stats {
    pub(crate) reconnects: AtomicU64,
    pub(crate) duplicates: AtomicU64,
    pub(crate) gaps: AtomicU64,
    pub(crate) incomplete: AtomicU64,
    pub(crate) resent: AtomicU64,
    pub(crate) deflate: AtomicU64,
}

/// A snapshot of [`Stats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StatsSnapshot {
    /// Connections opened after the first one.
    pub reconnects: u64,
    /// Messages the server sent twice (dropped by the client; should be 0).
    pub duplicates: u64,
    /// Messages that skipped a seq without a `resumed` notice (should be 0).
    pub gaps: u64,
    /// `resumed{complete:false}` notices received.
    pub incomplete: u64,
    /// Requests resent after a reconnect or an `unavailable` error.
    pub resent: u64,
    /// Connections (of all opened) on which the server agreed to
    /// permessage-deflate.
    pub deflate: u64,
}

pub(crate) enum Command {
    Request {
        /// The frame without its id; the driver assigns one.
        frame: ClientFrame,
        reply: oneshot::Sender<Result<Receipt, ClientError>>,
    },
    Close,
}

/// What the cluster's `ack` of a request said, beyond "accepted".
///
/// Without `--durable`, an ack means the cluster took the message and
/// handed it on, not that a session received it. When the backend can tell
/// that no live node received a direct message (the user's owner node just
/// died and the ring does not know yet), the ack says so and
/// [`delivered`](Self::delivered) is `Some(false)`: the message is lost, and
/// resending it after a moment reaches the user's new owner. See
/// `docs/PROTOCOL.md`, "What an ack means", for which backends can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Receipt {
    /// `Some(false)`: no live node received the message. `None`: not known
    /// to be lost — the usual case, and the only one for room messages,
    /// durable clusters and backends that cannot tell.
    pub delivered: Option<bool>,
}

impl Receipt {
    /// True when the server said no live node received the message.
    pub fn lost(&self) -> bool {
        self.delivered == Some(false)
    }
}

/// A handle to a connection; cheap to clone.
#[derive(Clone)]
pub struct Client {
    cmd: mpsc::UnboundedSender<Command>,
    stats: Arc<Stats>,
    user: Arc<str>,
}

/// The stream of [`Event`]s of one client.
pub struct Events {
    rx: mpsc::Receiver<Event>,
}

impl Events {
    /// The next event; `None` after [`Client::close`] (or a fatal error).
    pub async fn next(&mut self) -> Option<Event> {
        self.rx.recv().await
    }
}

/// Connects `user` to `url` (the gateway's `ws://host:port/ws`) with default
/// settings. Returns once the first `welcome` arrived.
pub async fn connect(url: &str, user: &str) -> Result<(Client, Events), ClientError> {
    connect_with(ClientConfig::new(url, user)).await
}

/// Connects with explicit settings.
pub async fn connect_with(cfg: ClientConfig) -> Result<(Client, Events), ClientError> {
    let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
    let (ev_tx, ev_rx) = mpsc::channel(cfg.event_buffer);
    let stats = Arc::new(Stats::default());
    let (ready_tx, ready_rx) = oneshot::channel();
    let user: Arc<str> = cfg.user.as_str().into();
    tokio::spawn(driver::Driver::new(cfg, cmd_rx, ev_tx, Arc::clone(&stats)).run(ready_tx));
    match ready_rx.await {
        Ok(Ok(())) => Ok((
            Client {
                cmd: cmd_tx,
                stats,
                user,
            },
            Events { rx: ev_rx },
        )),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(ClientError::Closed),
    }
}

impl Client {
    /// The user this client connects as.
    pub fn user(&self) -> &str {
        &self.user
    }

    async fn request(&self, frame: ClientFrame) -> Result<(), ClientError> {
        self.request_receipt(frame).await.map(|_| ())
    }

    async fn request_receipt(&self, frame: ClientFrame) -> Result<Receipt, ClientError> {
        let (reply, rx) = oneshot::channel();
        self.cmd
            .send(Command::Request { frame, reply })
            .map_err(|_| ClientError::Closed)?;
        rx.await.map_err(|_| ClientError::Closed)?
    }

    /// Sends `data` to every session of `to`; resolves on the cluster's ack.
    /// [`send_receipt`](Self::send_receipt) also tells whether the server
    /// said the message reached no live node.
    pub async fn send(&self, to: &str, data: impl Serialize) -> Result<(), ClientError> {
        self.send_receipt(to, data).await.map(|_| ())
    }

    /// Like [`send`](Self::send), and returns what the ack said: a
    /// [`Receipt`] with `delivered: Some(false)` when the backend reports
    /// that no live node received the message (its owner just died).
    pub async fn send_receipt(
        &self,
        to: &str,
        data: impl Serialize,
    ) -> Result<Receipt, ClientError> {
        self.request_receipt(ClientFrame::Send {
            to: to.to_owned(),
            data: payload(data)?,
            id: None,
        })
        .await
    }

    /// Publishes `data` to a room; resolves on the cluster's ack.
    pub async fn publish(&self, room: &str, data: impl Serialize) -> Result<(), ClientError> {
        self.request(ClientFrame::Publish {
            room: room.to_owned(),
            data: payload(data)?,
            id: None,
        })
        .await
    }

    /// Joins a room (and keeps it joined across reconnects).
    pub async fn join(&self, room: &str) -> Result<(), ClientError> {
        self.join_as(room, None).await
    }

    /// Joins a room and receives its [`Event::Presence`] events: users
    /// entering and leaving it anywhere in the cluster. Resolves once the
    /// events are live; kept across reconnects like [`join`](Self::join).
    /// A later plain `join` of the same room turns the events off.
    pub async fn join_with_presence(&self, room: &str) -> Result<(), ClientError> {
        self.join_as(room, Some(true)).await
    }

    async fn join_as(&self, room: &str, presence: Option<bool>) -> Result<(), ClientError> {
        self.request(ClientFrame::Join {
            room: room.to_owned(),
            id: None,
            resume: None,
            epoch: None,
            presence,
        })
        .await
    }

    /// Leaves a room.
    pub async fn leave(&self, room: &str) -> Result<(), ClientError> {
        self.request(ClientFrame::Leave {
            room: room.to_owned(),
            id: None,
        })
        .await
    }

    /// Closes the connection for good; the event stream ends.
    pub fn close(&self) {
        let _ = self.cmd.send(Command::Close);
    }

    /// What the client has handled so far.
    pub fn stats(&self) -> StatsSnapshot {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        StatsSnapshot {
            reconnects: g(&self.stats.reconnects),
            duplicates: g(&self.stats.duplicates),
            gaps: g(&self.stats.gaps),
            incomplete: g(&self.stats.incomplete),
            resent: g(&self.stats.resent),
            deflate: g(&self.stats.deflate),
        }
    }
}

/// Encodes an application payload once, as the raw JSON the frame carries.
fn payload(data: impl Serialize) -> Result<Box<RawValue>, ClientError> {
    to_raw_value(&data).map_err(ClientError::Encode)
}
