//! `wsring bench`: a load generator that drives a wsring cluster with many
//! real WebSocket clients and measures what users feel — connect time and
//! end-to-end delivery latency — with HDR histograms.
//!
//! Every message carries its send time (Unix microseconds), so the receiver
//! measures latency even when sender and receiver live in different worker
//! processes (`--procs`, for connection counts above one process's file
//! limit). Workers print their histograms as JSON and the parent merges them.
//! Every loop is bounded by `--duration` (plus a short drain), and only
//! loopback or operator-given addresses are contacted.
//!
//! # Layout
//! * [`BenchConfig`] — what to run.
//! * [`run`] — one worker: connect, send, receive, report.
//! * [`Report`] — mergeable results and their rendering.

mod report;
mod worker;

use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;

pub use report::Report;
pub use worker::run;

/// Traffic shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Client i sends to user i+1: every message crosses the cluster's routing.
    Direct,
    /// Clients join rooms of `room_size`; each publish fans out to the room.
    Room,
    /// `POST /api/broadcast` at the given rate; every client receives each.
    Broadcast,
}

impl std::str::FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "direct" => Ok(Mode::Direct),
            "room" => Ok(Mode::Room),
            "broadcast" => Ok(Mode::Broadcast),
            o => Err(format!("unknown mode {o:?}; use direct, room or broadcast")),
        }
    }
}

/// What a message's padding is made of.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Text {
    /// One character repeated: the cheapest to build, and compresses to
    /// almost nothing.
    #[default]
    Repeat,
    /// Words of a chat conversation, different in every message (from a
    /// fixed seed per sender and message), for measuring compression on
    /// something like real traffic.
    Chat,
}

impl std::str::FromStr for Text {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "repeat" => Ok(Text::Repeat),
            "chat" => Ok(Text::Chat),
            o => Err(format!("unknown text {o:?}; use repeat or chat")),
        }
    }
}

/// A bench run (or one worker's share of it).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BenchConfig {
    /// WebSocket URL, e.g. `ws://127.0.0.1:7000/ws` (gateway or node).
    pub url: String,
    /// Connections (users) in this worker.
    pub clients: usize,
    /// Index of the first user of this worker (users are `<prefix>-<i>`).
    pub first: usize,
    /// Total users across all workers (for direct-mode pairing).
    pub total: usize,
    /// User id prefix (unique per run).
    pub prefix: String,
    /// Traffic shape.
    pub mode: Mode,
    /// Messages per second sent by this worker (all clients together).
    pub rate: f64,
    /// Sending time after all clients connected.
    pub duration: Duration,
    /// Payload padding in bytes.
    pub payload: usize,
    /// What the padding is made of.
    #[serde(default)]
    pub text: Text,
    /// Offer permessage-deflate on every connection (and fail a connection
    /// the server does not agree to it on).
    #[serde(default)]
    pub deflate: bool,
    /// Members per room in room mode.
    pub room_size: usize,
    /// New connections per second while ramping up (0: as fast as possible).
    pub connect_rate: f64,
    /// Local source addresses to spread connections over (beyond ~28k
    /// ephemeral ports per address).
    pub source_ips: Vec<std::net::IpAddr>,
    /// Connect credentials (not serialized: the secret or the token file
    /// reaches each worker process through its own flags and environment).
    #[serde(skip)]
    pub tokens: Tokens,
    /// `Authorization: Bearer` key for `POST /api/broadcast` (broadcast
    /// mode on a cluster whose API is protected).
    #[serde(skip)]
    pub api_key: Option<String>,
}

impl BenchConfig {
    /// The user id of client `i` (0-based across all workers): the
    /// `sub` of the `i`-th token of a token list, else `<prefix>-<i>`.
    pub fn user(&self, i: usize) -> String {
        match &self.tokens {
            Tokens::List(list) if !list.is_empty() => list[i % list.len()].0.clone(),
            _ => format!("{}-{}", self.prefix, i),
        }
    }

    /// The connect token of user `i`, if the cluster needs one.
    pub fn token(&self, i: usize) -> Result<Option<String>, String> {
        match &self.tokens {
            Tokens::None => Ok(None),
            Tokens::Mint(mint) => mint(&self.user(i)).map(Some),
            Tokens::List(list) if list.is_empty() => Err("the token list is empty".into()),
            Tokens::List(list) => Ok(Some(list[i % list.len()].1.clone())),
        }
    }
}

/// A function that mints the connect token of a user id.
pub type MintFn = Arc<dyn Fn(&str) -> Result<String, String> + Send + Sync>;

/// Where the bench's clients get their connect tokens.
#[derive(Clone, Default)]
pub enum Tokens {
    /// No token: a cluster in open mode (`wsring dev`, `--insecure-no-auth`).
    #[default]
    None,
    /// One token per client user, minted on the spot (`--jwt-secret`).
    Mint(MintFn),
    /// Given tokens with their users (`--token-file`): client `i` is the
    /// `i`-th entry's user.
    List(Arc<Vec<(String, String)>>),
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print a token.
        match self {
            Tokens::None => f.write_str("None"),
            Tokens::Mint(_) => f.write_str("Mint"),
            Tokens::List(l) => write!(f, "List({} tokens)", l.len()),
        }
    }
}

/// Why a bench could not run.
#[derive(Debug, Error)]
pub enum BenchError {
    /// The URL is not a usable `ws://host:port/path`.
    #[error("invalid url {0:?}")]
    Url(String),
    /// Fewer than half of the clients could connect.
    #[error("only {connected} of {wanted} clients connected; first failure: {first_failure}; {}", hint(.first_failure, .url))]
    Connect {
        /// Connected.
        connected: usize,
        /// Wanted.
        wanted: usize,
        /// Why the first client that failed could not connect.
        first_failure: String,
        /// The URL dialled.
        url: String,
    },
}

/// What to check after a failed connect: a refused one (HTTP 401 or 403)
/// reached a server that wants credentials; anything else may not have
/// reached a wsring server at all.
fn hint(first_failure: &str, url: &str) -> String {
    if first_failure.contains("HTTP 401") || first_failure.contains("HTTP 403") {
        "the server refused the connect: give the bench the cluster's --jwt-secret \
         (it mints one token per client) or a --token-file"
            .to_owned()
    } else {
        format!("check that a wsring gateway or node serves {url}")
    }
}
