//! Client settings with documented defaults.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

/// A source of fresh connect tokens: called before every connect and
/// reconnect (see [`ClientConfig::with_token_provider`]). An `Err` counts as
/// a failed connect attempt: the client backs off and calls it again.
pub type TokenProvider =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<String, String>> + Send>> + Send + Sync>;

/// How a client connects and retries. `Debug` never prints the token.
#[derive(Clone)]
pub struct ClientConfig {
    /// The gateway's WebSocket URL, e.g. `ws://127.0.0.1:7000/ws`. No default.
    pub url: String,
    /// The user id. No default. With a token, the server takes the user id
    /// from the token's `sub` instead; keep both the same.
    pub user: String,
    /// Connect token (a JWT), sent as `?token=`; required when the server
    /// has authentication on. Default: none.
    pub token: Option<String>,
    /// Called before every connect and reconnect for the token to connect
    /// with (it replaces [`ClientConfig::token`]), so a session the server
    /// closes when its token expires (close 3000 `expired`) reconnects at
    /// once with a fresh one and, in durable mode, resumes where it was.
    /// Default: none (the fixed `token`, if any).
    pub token_provider: Option<TokenProvider>,
    /// Connect straight to the node that holds this user instead of through
    /// the gateway's tunnel: before every (re)connect the client asks the
    /// gateway where to go (`GET /ws/locate`, with the same credentials)
    /// and connects to the node it names; after a `moved` that names the
    /// new owner's URL it connects there without asking. Halves the socket
    /// work per message; needs the nodes' advertised URLs to be reachable
    /// from the client. Default: off.
    pub direct: bool,
    /// First backoff step after a failed or lost connection. Default: 100 ms.
    pub backoff_base: Duration,
    /// Backoff ceiling. Default: 5 s.
    pub backoff_cap: Duration,
    /// Extra random delay after a `moved` + 1012, on top of the server's
    /// `retry_after_ms`. Default: up to 100 ms.
    pub moved_jitter: Duration,
    /// How long [`crate::connect_with`] keeps trying before giving up, and
    /// how long a request may stay unacknowledged. Default: 30 s.
    pub timeout: Duration,
    /// Events buffered for a slow application before the client stops
    /// reading the socket. Default: 65536.
    pub event_buffer: usize,
    /// Offer permessage-deflate (RFC 7692), as browsers do: the server
    /// then sends its larger messages compressed (a wsring node, those of
    /// 256 bytes and more) and the client inflates them. The client never
    /// compresses what it sends and keeps no compression state between
    /// messages unless the server keeps its own context. Default: on; off
    /// saves the inflating CPU where bandwidth costs nothing (loopback).
    pub deflate: bool,
}

impl ClientConfig {
    /// Defaults for `user` at `url`.
    pub fn new(url: impl Into<String>, user: impl Into<String>) -> Self {
        ClientConfig {
            url: url.into(),
            user: user.into(),
            token: None,
            token_provider: None,
            direct: false,
            backoff_base: Duration::from_millis(100),
            backoff_cap: Duration::from_secs(5),
            moved_jitter: Duration::from_millis(100),
            timeout: Duration::from_secs(30),
            event_buffer: 65_536,
            deflate: true,
        }
    }
}

impl ClientConfig {
    /// These settings with a connect token.
    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// These settings with a token provider: `fetch` is called before every
    /// connect and reconnect, and its token is the one connected with.
    ///
    /// ```
    /// # let cfg = wsring_client::ClientConfig::new("ws://127.0.0.1:7000/ws", "alice");
    /// let cfg = cfg.with_token_provider(|| async {
    ///     // Ask the application's backend for a fresh token here.
    ///     Ok::<_, std::io::Error>("eyJ…".to_owned())
    /// });
    /// ```
    pub fn with_token_provider<F, Fut, E>(mut self, fetch: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<String, E>> + Send + 'static,
        E: std::fmt::Display,
    {
        self.token_provider = Some(Arc::new(move || {
            let fut = fetch();
            Box::pin(async move { fut.await.map_err(|e| e.to_string()) })
        }));
        self
    }

    /// These settings with [`ClientConfig::deflate`] set to `on`.
    pub fn deflate(mut self, on: bool) -> Self {
        self.deflate = on;
        self
    }

    /// These settings with [`ClientConfig::direct`] on.
    pub fn direct(mut self) -> Self {
        self.direct = true;
        self
    }
}

impl std::fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConfig")
            .field("url", &self.url)
            .field("user", &self.user)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("token_provider", &self.token_provider.is_some())
            .field("direct", &self.direct)
            .field("backoff_base", &self.backoff_base)
            .field("backoff_cap", &self.backoff_cap)
            .field("moved_jitter", &self.moved_jitter)
            .field("timeout", &self.timeout)
            .field("event_buffer", &self.event_buffer)
            .field("deflate", &self.deflate)
            .finish()
    }
}
