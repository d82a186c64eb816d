//! [`Api`]: a small client for the server API (HTTP, `docs/PROTOCOL.md`),
//! what an application backend uses next to its users' WebSocket clients:
//! send, publish and broadcast, presence, disconnecting a user, server-side
//! room membership, room members and durable history.
//!
//! Every call sends the API key (`Authorization: Bearer`) when one is
//! configured, and is bounded by [`ApiConfig::timeout`]. `https://` servers
//! are verified against the system's roots plus an optional extra CA (PEM),
//! with rustls and the *ring* provider, like the servers' own connections
//! to each other. Answers are the typed bodies of
//! [`wsring_protocol::api`]; a 4xx or 5xx answer is an [`ApiError::Http`]
//! carrying the server's error code and message.

use reqwest::Method;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;
use wsring_protocol::api::{
    Accepted, Disconnected, History, RoomChange, RoomCount, RoomMembers, UserPresence,
};
use wsring_protocol::{DisconnectBody, RoomUserBody};

/// What an [`Api`] call can fail with.
#[derive(Debug, Error)]
pub enum ApiError {
    /// The server answered with an error status and its JSON error body.
    #[error("HTTP {status} {code}: {message}")]
    Http {
        /// HTTP status.
        status: u16,
        /// The error code (`bad_request`, `unauthorized`, `not_supported`,
        /// `limit_exceeded`, …).
        code: String,
        /// The server's explanation.
        message: String,
    },
    /// No answer: connection refused, TLS failure, timeout.
    #[error("request failed: {0}")]
    Transport(#[from] reqwest::Error),
    /// The answer was not the expected JSON.
    #[error("unexpected answer: {0}")]
    Decode(String),
    /// The settings cannot work (a bad URL, CA or payload).
    #[error("invalid setting: {0}")]
    Config(String),
}

/// How an [`Api`] reaches the server.
#[derive(Clone)]
pub struct ApiConfig {
    /// The server's address: `http://host:port` or `https://host:port` (a
    /// gateway or any node). A WebSocket URL (`ws://host:port/ws`) is
    /// accepted too and mapped to its HTTP address. No default.
    pub base: String,
    /// The API key (`--api-key` on the servers), sent as `Authorization:
    /// Bearer`. Default: none.
    pub key: Option<String>,
    /// Extra CA certificates (PEM) to trust for `https://`, besides the
    /// system's. Default: none.
    pub ca_pem: Option<Vec<u8>>,
    /// Bound on each call. Default: 10 s.
    pub timeout: Duration,
}

impl ApiConfig {
    /// Defaults for the server at `base`.
    pub fn new(base: impl Into<String>) -> ApiConfig {
        ApiConfig {
            base: base.into(),
            key: None,
            ca_pem: None,
            timeout: Duration::from_secs(10),
        }
    }

    /// These settings with an API key.
    pub fn with_key(mut self, key: impl Into<String>) -> ApiConfig {
        self.key = Some(key.into());
        self
    }
}

impl std::fmt::Debug for ApiConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiConfig")
            .field("base", &self.base)
            .field("key", &self.key.as_ref().map(|_| "<redacted>"))
            .field("ca_pem", &self.ca_pem.as_ref().map(Vec::len))
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// A client of the server API; cheap to clone.
#[derive(Clone, Debug)]
pub struct Api {
    http: reqwest::Client,
    base: Arc<str>,
    key: Option<Arc<str>>,
}

/// `ws://h:p/ws` → `http://h:p`, `wss://…` → `https://…`; HTTP bases lose
/// a trailing slash.
fn http_base(url: &str) -> Result<String, ApiError> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| ApiError::Config(format!("{url:?} is not a URL")))?;
    let scheme = match scheme {
        "http" | "ws" => "http",
        "https" | "wss" => "https",
        other => {
            return Err(ApiError::Config(format!(
                "unsupported scheme {other:?} in {url:?}; use http://, https://, ws:// or wss://"
            )));
        }
    };
    let authority = rest.split('/').next().unwrap_or(rest);
    if authority.is_empty() {
        return Err(ApiError::Config(format!("{url:?} names no host")));
    }
    Ok(format!("{scheme}://{authority}"))
}

/// rustls with the *ring* provider, trusting the system roots and `ca`.
pub(crate) fn tls(ca: Option<&[u8]>) -> Result<rustls::ClientConfig, ApiError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    // A missing system store is not fatal: the given CA may be all that is
    // needed.
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    if let Some(pem) = ca {
        let mut found = 0;
        for cert in CertificateDer::pem_slice_iter(pem) {
            let cert = cert.map_err(|e| ApiError::Config(format!("CA: {e}")))?;
            roots
                .add(cert)
                .map_err(|e| ApiError::Config(format!("CA: {e}")))?;
            found += 1;
        }
        if found == 0 {
            return Err(ApiError::Config("CA: no certificate in PEM form".into()));
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ApiError::Config(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

impl Api {
    /// A client for the server at `base` without an API key.
    pub fn new(base: &str) -> Result<Api, ApiError> {
        Api::with(ApiConfig::new(base))
    }

    /// A client with explicit settings.
    pub fn with(cfg: ApiConfig) -> Result<Api, ApiError> {
        let base = http_base(&cfg.base)?;
        let http = reqwest::Client::builder()
            .timeout(cfg.timeout)
            .tls_backend_preconfigured(tls(cfg.ca_pem.as_deref())?)
            .build()?;
        Ok(Api {
            http,
            base: base.into(),
            key: cfg.key.map(Into::into),
        })
    }

    /// The HTTP address calls go to.
    pub fn base(&self) -> &str {
        &self.base
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<Value>,
    ) -> Result<T, ApiError> {
        let mut url = format!("{}{path}", self.base);
        if !query.is_empty() {
            let encoded = form_urlencoded::Serializer::new(String::new())
                .extend_pairs(query.iter().map(|(k, v)| (*k, v.as_str())))
                .finish();
            url.push('?');
            url.push_str(&encoded);
        }
        let mut req = self.http.request(method, url);
        if let Some(key) = &self.key {
            req = req.bearer_auth(key);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await?;
        let status = resp.status();
        let bytes = resp.bytes().await?;
        if !status.is_success() {
            let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            let text = |k: &str| v["error"][k].as_str().map(str::to_owned);
            return Err(ApiError::Http {
                status: status.as_u16(),
                code: text("code").unwrap_or_else(|| "unknown".into()),
                message: text("message")
                    .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned()),
            });
        }
        serde_json::from_slice(&bytes).map_err(|e| ApiError::Decode(e.to_string()))
    }

    async fn post<T: DeserializeOwned>(&self, path: &str, body: Value) -> Result<T, ApiError> {
        self.call(Method::POST, path, &[], Some(body)).await
    }

    fn json(v: impl Serialize) -> Result<Value, ApiError> {
        serde_json::to_value(v).map_err(|e| ApiError::Config(format!("payload: {e}")))
    }

    /// `POST /api/send`: `data` to every session of `to`. With an `id`
    /// (an idempotency key in durable mode) a retry is stored once.
    pub async fn send(
        &self,
        to: &str,
        data: impl Serialize,
        id: Option<&str>,
    ) -> Result<Accepted, ApiError> {
        let mut body = json!({ "to": to, "data": Self::json(data)? });
        if let Some(id) = id {
            body["id"] = json!(id);
        }
        self.post("/api/send", body).await
    }

    /// `POST /api/publish`: `data` to every member of `room`.
    pub async fn publish(
        &self,
        room: &str,
        data: impl Serialize,
        id: Option<&str>,
    ) -> Result<Accepted, ApiError> {
        let mut body = json!({ "room": room, "data": Self::json(data)? });
        if let Some(id) = id {
            body["id"] = json!(id);
        }
        self.post("/api/publish", body).await
    }

    /// `POST /api/broadcast`: `data` to every session in the cluster.
    pub async fn broadcast(&self, data: impl Serialize) -> Result<Accepted, ApiError> {
        self.post("/api/broadcast", json!({ "data": Self::json(data)? }))
            .await
    }

    /// `GET /api/presence`: the user's sessions, cluster-wide.
    pub async fn presence(&self, user: &str) -> Result<UserPresence, ApiError> {
        self.call(Method::GET, "/api/presence", &[("user", user.into())], None)
            .await
    }

    /// `POST /api/disconnect`: closes every session of `user` with 4000
    /// `disconnected`.
    pub async fn disconnect(&self, user: &str) -> Result<Disconnected, ApiError> {
        self.disconnect_with(user, None, None).await
    }

    /// `POST /api/disconnect` with an application close code (4000–4999)
    /// and reason (at most 123 bytes).
    pub async fn disconnect_with(
        &self,
        user: &str,
        code: Option<u16>,
        reason: Option<&str>,
    ) -> Result<Disconnected, ApiError> {
        let body = DisconnectBody {
            user: user.to_owned(),
            code,
            reason: reason.map(str::to_owned),
        };
        self.post("/api/disconnect", Self::json(body)?).await
    }

    /// `POST /api/rooms/{room}/join`: `user` is in `room` from now on, on
    /// every session and every connect, until [`leave`](Self::leave).
    pub async fn join(&self, room: &str, user: &str) -> Result<RoomChange, ApiError> {
        let body = Self::json(RoomUserBody {
            user: user.to_owned(),
        })?;
        self.post(&format!("/api/rooms/{}/join", path_segment(room)), body)
            .await
    }

    /// `POST /api/rooms/{room}/leave`: undoes [`join`](Self::join) and takes
    /// every live session of `user` out of `room`.
    pub async fn leave(&self, room: &str, user: &str) -> Result<RoomChange, ApiError> {
        let body = Self::json(RoomUserBody {
            user: user.to_owned(),
        })?;
        self.post(&format!("/api/rooms/{}/leave", path_segment(room)), body)
            .await
    }

    /// `GET /api/rooms/{room}`: the room's members, cluster-wide (at most
    /// 1000 listed; `truncated` says when there are more).
    pub async fn room(&self, room: &str) -> Result<RoomMembers, ApiError> {
        let path = format!("/api/rooms/{}", path_segment(room));
        self.call(Method::GET, &path, &[], None).await
    }

    /// `GET /api/rooms/{room}/count`: how many users and sessions are in it.
    pub async fn room_count(&self, room: &str) -> Result<RoomCount, ApiError> {
        let path = format!("/api/rooms/{}/count", path_segment(room));
        self.call(Method::GET, &path, &[], None).await
    }

    /// `GET /api/history?user=…`: stored direct messages of `user` after
    /// `since` (durable mode), at most `limit` (1–1000; `None`: 100).
    pub async fn user_history(
        &self,
        user: &str,
        since: u64,
        limit: Option<usize>,
    ) -> Result<History, ApiError> {
        self.history(("user", user), since, limit).await
    }

    /// `GET /api/history?room=…`: stored messages of `room` after `since`.
    pub async fn room_history(
        &self,
        room: &str,
        since: u64,
        limit: Option<usize>,
    ) -> Result<History, ApiError> {
        self.history(("room", room), since, limit).await
    }

    async fn history(
        &self,
        (kind, name): (&str, &str),
        since: u64,
        limit: Option<usize>,
    ) -> Result<History, ApiError> {
        let mut query = vec![(kind, name.to_owned()), ("since", since.to_string())];
        if let Some(l) = limit {
            query.push(("limit", l.to_string()));
        }
        self.call(Method::GET, "/api/history", &query, None).await
    }
}

/// A room name as one path segment. Valid room names need no escaping; an
/// invalid one is escaped so the server answers 400 for it, not 404.
fn path_segment(room: &str) -> String {
    let mut out = String::with_capacity(room.len());
    for b in room.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'@' | b'-') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bases_map_to_http() {
        for (given, want) in [
            ("http://127.0.0.1:7000", "http://127.0.0.1:7000"),
            ("http://127.0.0.1:7000/", "http://127.0.0.1:7000"),
            ("ws://127.0.0.1:7000/ws", "http://127.0.0.1:7000"),
            ("wss://h.example:443/ws", "https://h.example:443"),
            ("https://h.example", "https://h.example"),
        ] {
            assert_eq!(http_base(given).expect(given), want);
        }
        for bad in ["127.0.0.1:7000", "ftp://x", "http://"] {
            assert!(http_base(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn room_segments_escape_only_what_they_must() {
        assert_eq!(path_segment("chat.room:1@x-_"), "chat.room:1@x-_");
        assert_eq!(path_segment("a b/c"), "a%20b%2Fc");
    }

    #[test]
    fn a_bad_ca_is_a_setting_error() {
        let cfg = ApiConfig {
            ca_pem: Some(b"not pem".to_vec()),
            ..ApiConfig::new("https://127.0.0.1:1")
        };
        assert!(matches!(Api::with(cfg), Err(ApiError::Config(_))));
        let key = format!("{:?}", ApiConfig::new("http://x").with_key("secret"));
        assert!(!key.contains("secret"), "{key}");
    }
}
