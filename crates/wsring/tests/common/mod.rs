//! Shared helpers for wsring's integration tests: a dev cluster on ephemeral
//! ports, a thin real WebSocket client, and condition waits with timeouts (no
//! fixed sleeps standing in for readiness).

#![allow(dead_code)]

pub mod js;
pub mod prereq;
pub mod procs;
pub mod receiver;
pub mod traffic;

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::future::Future;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};
use wsring::dev::{DevCluster, DevOptions};
use wsring::settings::Common;
use wsring_node::Routing;

/// Default wait for anything in these tests.
pub const WAIT: Duration = Duration::from_secs(10);

/// The HS256 secret of tests that run with authentication on.
pub const TEST_JWT_SECRET: &str = "wsring-test-secret";
/// The API key of tests that run with authentication on.
pub const TEST_API_KEY: &str = "wsring-test-api-key";

/// A connect token for `user` signed with `secret`, valid for an hour, with
/// `extra` claims merged in (`rooms`, `send`, or overrides of `exp`).
pub fn token_with(secret: &str, user: &str, extra: Value) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs();
    let mut claims = json!({ "sub": user, "exp": now + 3600 });
    if let (Some(c), Some(e)) = (claims.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            c.insert(k.clone(), v.clone());
        }
    }
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()).expect("HMAC key"),
    )
    .expect("token encodes")
}

/// An HTTP client for the tests (reqwest is built with a TLS provider
/// passed per client, as the servers do; `http://` and `https://` alike).
pub fn http() -> reqwest::Client {
    http_trusting(None)
}

/// [`http`] that also trusts the CA certificate in `ca` (PEM).
pub fn http_trusting(ca: Option<&std::path::Path>) -> reqwest::Client {
    wsring_http::tls::ClientTls::new(ca)
        .and_then(|t| t.http_client(Duration::from_secs(30)))
        .expect("HTTP client")
}

/// A plain connect token for `user` under [`TEST_JWT_SECRET`].
pub fn token(user: &str) -> String {
    token_with(TEST_JWT_SECRET, user, json!({}))
}

/// Settings for a test cluster: short heartbeat TTL so crash tests are quick.
pub fn common(routing: Routing) -> Common {
    let mut c = Common::default();
    c.shared.routing = routing;
    c.heartbeat_ttl = Duration::from_millis(1200);
    c
}

/// A dev cluster on ephemeral ports.
pub async fn dev(nodes: usize, common: Common) -> DevCluster {
    DevCluster::start(DevOptions {
        host: "127.0.0.1".into(),
        port: 0,
        nodes,
        common,
        exe: Some(env!("CARGO_BIN_EXE_wsring").into()),
    })
    .await
    .expect("dev cluster starts")
}

/// Polls `cond` every 20 ms until it holds, failing after `WAIT`.
pub async fn wait_until<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    while !cond().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every series on the Prometheus page at `url` whose name starts with
/// `prefix`, with its value.
pub async fn metric_series(url: &str, prefix: &str) -> Vec<(String, f64)> {
    let body = http()
        .get(url)
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics body");
    body.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_owned(), value.parse().ok()?))
        })
        .collect()
}

/// A small HTTP client for the API.
pub struct Api {
    pub base: String,
    http: reqwest::Client,
}

impl Api {
    pub fn new(base: impl Into<String>) -> Api {
        Api {
            base: base.into(),
            http: http(),
        }
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("GET");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.post_raw(path, body.to_string()).await
    }

    pub async fn post_raw(&self, path: &str, body: String) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("POST");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn delete(&self, path: &str) -> (u16, Value) {
        let r = self
            .http
            .delete(format!("{}{path}", self.base))
            .send()
            .await
            .expect("DELETE");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// The ring owner of `user`.
    pub async fn route(&self, user: &str) -> String {
        let (s, v) = self.get(&format!("/api/route?user={user}")).await;
        assert_eq!(s, 200, "{v}");
        v["node"].as_str().expect("node").to_owned()
    }

    pub async fn epoch(&self) -> u64 {
        self.get("/api/nodes").await.1["epoch"]
            .as_u64()
            .expect("epoch")
    }

    pub async fn node_ids(&self) -> Vec<String> {
        let (_, v) = self.get("/api/nodes").await;
        v["nodes"]
            .as_array()
            .expect("nodes")
            .iter()
            .map(|n| n["id"].as_str().expect("id").to_owned())
            .collect()
    }
}

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A raw protocol client.
pub struct Client {
    pub ws: Ws,
    pub welcome: Value,
    pub user: String,
}

/// How a connection ended.
#[derive(Debug, PartialEq)]
pub enum Ended {
    /// A close frame with this code and reason.
    Close(u16, String),
    /// The TCP connection ended without a close frame (or was reset).
    Abrupt,
}

/// A non-101 answer to a connect.
#[derive(Debug)]
pub struct Refused {
    pub status: u16,
    pub body: Value,
}

impl Client {
    /// Connects and reads the welcome frame.
    pub async fn connect(ws_url: &str, user: &str) -> Client {
        Self::try_connect(&format!("{ws_url}?user={user}"))
            .await
            .unwrap_or_else(|r| panic!("connect {user}: {r:?}"))
            .with_user(user)
    }

    fn with_user(mut self, user: &str) -> Client {
        self.user = user.to_owned();
        self
    }

    /// Connects to a full URL (query included).
    pub async fn try_connect(url: &str) -> Result<Client, Refused> {
        Self::try_connect_with(url, &[]).await
    }

    /// Connects to a full URL with extra request headers (a cookie, say).
    pub async fn try_connect_with(url: &str, headers: &[(&str, &str)]) -> Result<Client, Refused> {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut req = url.into_client_request().expect("a WebSocket URL");
        for (k, v) in headers {
            req.headers_mut().append(
                tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(k.as_bytes())
                    .expect("header name"),
                v.parse().expect("header value"),
            );
        }
        match connect_async(req).await {
            Ok((mut ws, _)) => {
                let welcome = next_json(&mut ws).await;
                assert_eq!(welcome["type"], "welcome", "{welcome}");
                Ok(Client {
                    ws,
                    welcome,
                    user: String::new(),
                })
            }
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                let status = resp.status().as_u16();
                let body = resp
                    .body()
                    .as_ref()
                    .and_then(|b| serde_json::from_slice(b).ok())
                    .unwrap_or(Value::Null);
                Err(Refused { status, body })
            }
            Err(e) => panic!("connect {url}: {e}"),
        }
    }

    pub fn node(&self) -> &str {
        self.welcome["node"].as_str().expect("welcome.node")
    }

    pub async fn send(&mut self, v: Value) {
        self.ws
            .send(Message::text(v.to_string()))
            .await
            .expect("send");
    }

    pub async fn send_raw(&mut self, m: Message) {
        self.ws.send(m).await.expect("send");
    }

    /// The next JSON frame (pings are skipped).
    pub async fn next(&mut self) -> Value {
        next_json(&mut self.ws).await
    }

    /// The next frame, skipping `ack` frames.
    pub async fn next_non_ack(&mut self) -> Value {
        loop {
            let v = self.next().await;
            if v["type"] != "ack" {
                return v;
            }
        }
    }

    /// Reads until the connection ends; frames before the end are returned.
    pub async fn until_end(&mut self) -> (Vec<Value>, Ended) {
        let mut frames = Vec::new();
        loop {
            match tokio::time::timeout(WAIT, self.ws.next()).await {
                Err(_) => panic!("connection of {} did not end", self.user),
                Ok(None) | Ok(Some(Err(_))) => return (frames, Ended::Abrupt),
                Ok(Some(Ok(Message::Close(f)))) => {
                    // Let tungstenite send the close reply, as a real client does.
                    let _ = tokio::time::timeout(Duration::from_secs(2), self.ws.next()).await;
                    let end = match f {
                        Some(f) => Ended::Close(u16::from(f.code), f.reason.to_string()),
                        None => Ended::Close(u16::from(CloseCode::Status), String::new()),
                    };
                    return (frames, end);
                }
                Ok(Some(Ok(Message::Text(t)))) => {
                    frames.push(serde_json::from_str(t.as_str()).expect("json frame"));
                }
                Ok(Some(Ok(_))) => {}
            }
        }
    }

    /// Sends a ping frame and waits for its pong: proves the session is alive
    /// and that every frame before it was processed.
    pub async fn roundtrip(&mut self, tag: &str) {
        self.send(json!({"type":"ping","id":tag})).await;
        loop {
            let v = self.next().await;
            if v["type"] == "pong" && v["id"] == tag {
                return;
            }
        }
    }
}

async fn next_json(ws: &mut Ws) -> Value {
    loop {
        match tokio::time::timeout(WAIT, ws.next()).await {
            Err(_) => panic!("no frame within {WAIT:?}"),
            Ok(None) => panic!("connection closed while waiting for a frame"),
            Ok(Some(Err(e))) => panic!("websocket error: {e}"),
            Ok(Some(Ok(Message::Text(t)))) => {
                return serde_json::from_str(t.as_str()).expect("json frame");
            }
            Ok(Some(Ok(Message::Close(f)))) => panic!("closed while waiting for a frame: {f:?}"),
            Ok(Some(Ok(_))) => {}
        }
    }
}

/// Finds `count` user ids whose owner satisfies `pred`.
pub async fn users_where(
    api: &Api,
    prefix: &str,
    count: usize,
    pred: impl Fn(&str) -> bool,
) -> Vec<String> {
    let mut out = Vec::new();
    for i in 0..10_000 {
        let u = format!("{prefix}{i}");
        if pred(&api.route(&u).await) {
            out.push(u);
            if out.len() == count {
                return out;
            }
        }
    }
    panic!("could not find {count} users for predicate");
}
