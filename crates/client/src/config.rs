//! Client settings with documented defaults.

use std::time::Duration;

/// How a client connects and retries.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The gateway's WebSocket URL, e.g. `ws://127.0.0.1:7000/ws`. No default.
    pub url: String,
    /// The user id. No default.
    pub user: String,
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
}

impl ClientConfig {
    /// Defaults for `user` at `url`.
    pub fn new(url: impl Into<String>, user: impl Into<String>) -> Self {
        ClientConfig {
            url: url.into(),
            user: user.into(),
            backoff_base: Duration::from_millis(100),
            backoff_cap: Duration::from_secs(5),
            moved_jitter: Duration::from_millis(100),
            timeout: Duration::from_secs(30),
            event_buffer: 65_536,
        }
    }
}
