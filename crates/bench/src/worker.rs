//! One bench worker: connects its share of clients, drives traffic for the
//! configured duration, and measures connect time and delivery latency.
//!
//! Each client's socket is split: a sender task paced by a fixed interval
//! (staggered across clients so the load is smooth, not bursty) and a reader
//! task with its own histogram, merged at the end — no shared lock on the
//! hot path. Frames are the protocol crate's types, so the bench speaks
//! exactly the documented wire format, and the handshake is the client
//! SDK's (with `--deflate`, its permessage-deflate offer and inflating
//! layer). Every socket counts the bytes read from it, for the report's
//! bytes on the wire.

use futures::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use serde_json::value::to_raw_value;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::header::SEC_WEBSOCKET_EXTENSIONS;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tracing::debug;
use wsring_client::ws::{Inflate, handshake};
use wsring_protocol::{ClientFrame, ConnectParams, OwnedServerFrame};

use crate::{BenchConfig, BenchError, Mode, Report, Text};

type Ws = WebSocketStream<Inflate<Counted>>;

/// A client's TCP connection, adding the bytes read from it to a counter
/// shared by the worker's clients.
struct Counted {
    tcp: TcpStream,
    read: Arc<AtomicU64>,
}

impl AsyncRead for Counted {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut this.tcp).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        this.read.fetch_add(n as u64, Ordering::Relaxed);
        r
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().tcp).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_shutdown(cx)
    }
}

/// The bytes a server's (unmasked) frame of `payload` bytes takes.
fn frame_bytes(payload: usize) -> u64 {
    let header = match payload {
        0..=125 => 2,
        126..=65535 => 4,
        _ => 10,
    };
    (payload + header) as u64
}

/// Words chat messages are made of (for [`Text::Chat`]).
const WORDS: [&str; 48] = [
    "hello", "team", "the", "deploy", "is", "done", "can", "you", "review", "my", "pull",
    "request", "thanks", "lunch", "meeting", "at", "noon", "great", "work", "on", "release",
    "notes", "bug", "fixed", "in", "staging", "prod", "looks", "good", "to", "me", "ship", "it",
    "tomorrow", "morning", "sounds", "like", "a", "plan", "ok", "I", "think", "we", "should",
    "wait", "for", "CI", "again",
];

/// A message's padding: `repeated` as it is, or chat words for message
/// `seed` built in `chat`.
fn pad<'a>(cfg: &BenchConfig, repeated: &'a str, seed: u64, chat: &'a mut String) -> &'a str {
    match cfg.text {
        Text::Repeat => repeated,
        Text::Chat => {
            *chat = chat_text(seed, cfg.payload);
            chat
        }
    }
}

/// About `len` bytes of chat words, chosen by a generator seeded with
/// `seed` (so every message differs, and runs repeat).
fn chat_text(seed: u64, len: usize) -> String {
    let mut state = seed ^ 0x9e37_79b9_7f4a_7c15;
    let mut out = String::with_capacity(len + 16);
    while out.len() < len {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(WORDS[((state >> 33) % WORDS.len() as u64) as usize]);
    }
    out.truncate(len);
    out
}

/// How long receivers keep listening after the last send.
const DRAIN: Duration = Duration::from_millis(1500);

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// What every bench message carries: its send time, for the receiver to
/// measure latency across processes, and padding to the configured size.
#[derive(Serialize)]
struct Payload<'a> {
    /// Send time, Unix microseconds.
    t: u64,
    /// Padding.
    p: &'a str,
}

/// The part of a received [`Payload`] the reader needs.
#[derive(Deserialize)]
struct Stamp {
    t: u64,
}

/// The body of `POST /api/broadcast`.
#[derive(Serialize)]
struct BroadcastBody<'a> {
    data: Payload<'a>,
}

fn hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 100_000_000, 3).expect("constant histogram bounds are valid")
}

fn host_port(url: &str) -> Result<SocketAddr, BenchError> {
    let rest = url
        .strip_prefix("ws://")
        .ok_or_else(|| BenchError::Url(url.to_owned()))?;
    let authority = rest.split('/').next().unwrap_or_default();
    authority
        .parse()
        .or_else(|_| {
            std::net::ToSocketAddrs::to_socket_addrs(authority)
                .ok()
                .and_then(|mut a| a.next())
                .ok_or(())
        })
        .map_err(|_| BenchError::Url(url.to_owned()))
}

/// Connects one client and waits for its `welcome`; on failure, says why
/// (the first reason is reported if too few clients connect).
async fn connect_one(
    url: &str,
    user: &str,
    token: Option<String>,
    source: Option<IpAddr>,
    deflate: bool,
    read: Arc<AtomicU64>,
) -> Result<Ws, String> {
    let target = host_port(url).map_err(|e| e.to_string())?;
    let socket = if target.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(|e| format!("cannot create a socket: {e}"))?;
    if let Some(ip) = source {
        socket
            .bind(SocketAddr::new(ip, 0))
            .map_err(|e| format!("cannot bind source address {ip}: {e}"))?;
    }
    let tcp = socket
        .connect(target)
        .await
        .map_err(|e| format!("connecting to {target}: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let params = ConnectParams {
        user: user.to_owned(),
        token,
        resume: None,
    };
    let req = params
        .url(url)
        .into_client_request()
        .map_err(|e| format!("invalid request URL: {e}"))?;
    // Not tungstenite's 128 KiB, zeroed before every read: at thousands of
    // connections per bench process that would be its main cost.
    let config =
        WebSocketConfig::default().read_buffer_size(wsring_protocol::CLIENT_READ_BUFFER_BYTES);
    let (mut ws, response) = handshake(Counted { tcp, read }, req, deflate, config)
        .await
        .map_err(|e| match e {
            tungstenite::Error::Http(resp) => refused(url, resp.status().as_u16(), resp.body()),
            e => format!("WebSocket handshake with {url}: {e}"),
        })?;
    if deflate && !response.headers().contains_key(SEC_WEBSOCKET_EXTENSIONS) {
        return Err(format!("{url} did not agree to permessage-deflate"));
    }
    // Wait for the welcome: the session is established only then.
    loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
            Ok(Some(Ok(Message::Text(t))))
                if matches!(
                    OwnedServerFrame::parse(t.as_str()),
                    Ok(OwnedServerFrame::Welcome { .. })
                ) =>
            {
                return Ok(ws);
            }
            Ok(Some(Ok(Message::Close(frame)))) => {
                return Err(format!("closed before welcome: {frame:?}"));
            }
            Ok(Some(Ok(_))) => continue,
            Ok(Some(Err(e))) => return Err(format!("before welcome: {e}")),
            Ok(None) => return Err("connection ended before welcome".into()),
            Err(_) => return Err("no welcome within 10 s".into()),
        }
    }
}

/// A refused upgrade in words: the status, and the server's `code: message`
/// from its JSON error body (e.g. `unauthorized: token expired`).
fn refused(url: &str, status: u16, body: &Option<Vec<u8>>) -> String {
    let reason = body
        .as_deref()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(b).ok())
        .and_then(|v| {
            let e = v.get("error")?;
            Some(format!(
                "{}: {}",
                e.get("code")?.as_str()?,
                e.get("message")?.as_str()?
            ))
        });
    match reason {
        Some(r) => format!("{url} refused the connect with HTTP {status}: {r}"),
        None => format!("{url} refused the connect with HTTP {status}"),
    }
}

/// Runs one worker to completion.
pub async fn run(cfg: BenchConfig) -> Result<Report, BenchError> {
    host_port(&cfg.url)?;
    let mut report = Report::default();
    let mut sockets = Vec::with_capacity(cfg.clients);
    let pace = (cfg.connect_rate > 0.0).then(|| Duration::from_secs_f64(1.0 / cfg.connect_rate));
    let ramp = Instant::now();
    let mut first_failure = None;
    let wire = Arc::new(AtomicU64::new(0));
    for i in 0..cfg.clients {
        if let Some(p) = pace {
            tokio::time::sleep_until(ramp + p * i as u32).await;
        }
        let user = cfg.user(cfg.first + i);
        let token = match cfg.token(cfg.first + i) {
            Ok(t) => t,
            Err(why) => {
                report.connect_errors += 1;
                first_failure.get_or_insert(format!("no token for {user}: {why}"));
                continue;
            }
        };
        let source = (!cfg.source_ips.is_empty()).then(|| cfg.source_ips[i % cfg.source_ips.len()]);
        let t0 = Instant::now();
        match connect_one(
            &cfg.url,
            &user,
            token,
            source,
            cfg.deflate,
            Arc::clone(&wire),
        )
        .await
        {
            Ok(ws) => {
                let _ = report
                    .connect_us
                    .record(t0.elapsed().as_micros().max(1) as u64);
                report.connected += 1;
                sockets.push((cfg.first + i, ws));
            }
            Err(why) => {
                report.connect_errors += 1;
                first_failure.get_or_insert(why);
            }
        }
    }
    if (report.connected as usize) < cfg.clients.div_ceil(2) {
        return Err(BenchError::Connect {
            connected: report.connected as usize,
            wanted: cfg.clients,
            first_failure: first_failure.unwrap_or_else(|| "none recorded".into()),
            url: cfg.url.clone(),
        });
    }
    if cfg.mode == Mode::Room {
        for (idx, ws) in &mut sockets {
            let room = format!("{}-room-{}", cfg.prefix, *idx / cfg.room_size.max(1));
            let join = ClientFrame::Join {
                room,
                id: None,
                resume: None,
                epoch: None,
                presence: None,
            };
            let _ = ws.send(Message::text(join.to_json())).await;
        }
    }
    let sent = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let padding = "x".repeat(cfg.payload);
    let n = sockets.len().max(1);
    let start = Instant::now() + Duration::from_millis(200);
    let end = start + cfg.duration;
    let interval = if cfg.rate > 0.0 {
        Duration::from_secs_f64(n as f64 / cfg.rate)
    } else {
        Duration::MAX
    };
    let mut readers = Vec::new();
    let mut senders = Vec::new();
    // Bytes read from here on are the traffic's (and the join acks').
    let wire_before = wire.load(Ordering::Relaxed);
    for (k, (idx, ws)) in sockets.into_iter().enumerate() {
        let (mut sink, mut stream) = ws.split();
        readers.push(tokio::spawn(async move {
            let mut h = hist();
            let mut received = 0u64;
            let mut plain = 0u64;
            let stop = end + DRAIN;
            loop {
                let next = tokio::time::timeout_at(stop, stream.next()).await;
                let Ok(Some(Ok(Message::Text(t)))) = next else {
                    if matches!(next, Ok(Some(Ok(_)))) {
                        continue;
                    }
                    break;
                };
                plain += frame_bytes(t.len());
                if let Ok(OwnedServerFrame::Message { data, .. }) =
                    OwnedServerFrame::parse(t.as_str())
                    && let Ok(Stamp { t: sent_at }) = Stamp::deserialize(&data)
                {
                    received += 1;
                    let _ = h.record(now_us().saturating_sub(sent_at).max(1));
                }
            }
            (h, received, plain)
        }));
        if cfg.mode == Mode::Broadcast {
            continue;
        }
        let (sent, errors, padding) = (Arc::clone(&sent), Arc::clone(&errors), padding.clone());
        let cfg = cfg.clone();
        senders.push(tokio::spawn(async move {
            // Stagger clients across one interval so the load is smooth.
            let mut next = start + interval.mul_f64(k as f64 / n as f64);
            let mut count = 0u64;
            while next < end {
                tokio::time::sleep_until(next).await;
                next += interval;
                count += 1;
                let mut chat = String::new();
                let payload = Payload {
                    t: now_us(),
                    p: pad(&cfg, &padding, ((idx as u64) << 32) | count, &mut chat),
                };
                // Serialising a struct of a number and a string cannot fail.
                let Ok(data) = to_raw_value(&payload) else {
                    errors.fetch_add(1, Ordering::Relaxed);
                    break;
                };
                let frame = match cfg.mode {
                    Mode::Direct => ClientFrame::Send {
                        to: cfg.user((idx + 1) % cfg.total.max(1)),
                        data,
                        id: None,
                    },
                    _ => ClientFrame::Publish {
                        room: format!("{}-room-{}", cfg.prefix, idx / cfg.room_size.max(1)),
                        data,
                        id: None,
                    },
                };
                if sink.send(Message::text(frame.to_json())).await.is_ok() {
                    sent.fetch_add(1, Ordering::Relaxed);
                } else {
                    errors.fetch_add(1, Ordering::Relaxed);
                    break;
                }
            }
            // Keep the socket open for the drain, then close politely.
            tokio::time::sleep_until(end + DRAIN).await;
            let _ = sink.close().await;
        }));
    }
    if cfg.mode == Mode::Broadcast {
        let api = cfg
            .url
            .replacen("ws://", "http://", 1)
            .trim_end_matches("/ws")
            .to_owned();
        // reqwest is built without a TLS provider of its own; the bench
        // calls plain http:// only, but the client still needs one.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::new();
        let mut next = start;
        let mut count = 0u64;
        while next < end {
            tokio::time::sleep_until(next).await;
            next += interval;
            count += 1;
            let mut chat = String::new();
            let body = BroadcastBody {
                data: Payload {
                    t: now_us(),
                    p: pad(&cfg, &padding, count, &mut chat),
                },
            };
            let mut req = http.post(format!("{api}/api/broadcast")).json(&body);
            if let Some(key) = &cfg.api_key {
                req = req.bearer_auth(key);
            }
            match req.send().await {
                Ok(r) if r.status().is_success() => {
                    sent.fetch_add(1, Ordering::Relaxed);
                }
                other => {
                    debug!(?other, "broadcast failed");
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
    for s in senders {
        let _ = s.await;
    }
    for r in readers {
        if let Ok((h, received, plain)) = r.await {
            let _ = report.latency_us.add(&h);
            report.received += received;
            report.plain_bytes += plain;
        }
    }
    report.wire_bytes = wire.load(Ordering::Relaxed) - wire_before;
    report.sent = sent.load(Ordering::Relaxed);
    report.send_errors = errors.load(Ordering::Relaxed);
    report.seconds = cfg.duration.as_secs_f64();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_text_has_the_length_asked_and_differs_per_message() {
        let a = chat_text(1, 800);
        assert_eq!(a.len(), 800);
        assert_eq!(a, chat_text(1, 800), "runs repeat");
        assert_ne!(a, chat_text(2, 800));
        assert!(a.split(' ').all(|w| WORDS.iter().any(|x| x.starts_with(w))));
        assert_eq!(frame_bytes(125), 127);
        assert_eq!(frame_bytes(126), 130);
        assert_eq!(frame_bytes(70_000), 70_010);
    }
}
