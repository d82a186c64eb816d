//! A process of idle WebSocket clients for `scripts/idle-memory.py
//! --rust-clients`: it opens its connections, waits for every `welcome`,
//! then only answers the server's pings until its standard input closes.
//!
//! It speaks the script's worker protocol:
//!
//! ```text
//! idle-worker TARGETS SOURCE FIRST COUNT TIMEOUT CONCURRENCY
//! ```
//!
//! `TARGETS` is a JSON list of `[host, port, path]` (connection i goes to
//! target i mod len), `SOURCE` a local address to connect from (empty: any),
//! users are `idle-FIRST` … `idle-(FIRST+COUNT-1)`, `TIMEOUT` bounds the
//! connecting in seconds and `CONCURRENCY` the handshakes in flight. It
//! prints one JSON line, `{"ready":N,"seconds":S}` or
//! `{"failed":N,"first_error":"…"}`, then answers each line read on standard
//! input with `{"status":{"open","lost","pings","close_frames"}}`.
//!
//! The same job as the script's Python worker at a fraction of its CPU, so
//! that a latency measurement at scale is not paced by the clients'
//! answering pings on the same cores.

use futures::StreamExt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::AsyncBufReadExt;
use tokio::net::TcpSocket;
use tokio::sync::Semaphore;
use tokio_tungstenite::MaybeTlsStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

type Error = Box<dyn std::error::Error + Send + Sync>;

#[derive(Default)]
struct Stats {
    open: AtomicU64,
    lost: AtomicU64,
    pings: AtomicU64,
    close_frames: AtomicU64,
}

struct Target {
    addr: SocketAddr,
    host: String,
    path: String,
}

fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [targets, source, first, count, timeout, concurrency] = args.as_slice() else {
        return Err("usage: idle-worker TARGETS SOURCE FIRST COUNT TIMEOUT CONCURRENCY".into());
    };
    let targets: Vec<(String, u16, String)> = serde_json::from_str(targets)?;
    let source: Option<IpAddr> = if source.is_empty() {
        None
    } else {
        Some(source.parse()?)
    };
    let first: u64 = first.parse()?;
    let count: u64 = count.parse()?;
    let timeout = Duration::from_secs_f64(timeout.parse()?);
    let concurrency: usize = concurrency.parse()?;
    // One thread: thousands of idle sockets need no more, and the machine's
    // cores are the servers' to use.
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(run(targets, source, first, count, timeout, concurrency))
}

async fn run(
    targets: Vec<(String, u16, String)>,
    source: Option<IpAddr>,
    first: u64,
    count: u64,
    timeout: Duration,
    concurrency: usize,
) -> Result<(), Error> {
    let mut resolved = Vec::new();
    for (host, port, path) in targets {
        let addr = tokio::net::lookup_host((host.as_str(), port))
            .await?
            .next()
            .ok_or_else(|| format!("{host} resolves to nothing"))?;
        resolved.push(Target {
            addr,
            host: format!("{host}:{port}"),
            path,
        });
    }
    if resolved.is_empty() {
        return Err("no target".into());
    }
    let targets = Arc::new(resolved);
    let stats = Arc::new(Stats::default());
    let gate = Arc::new(Semaphore::new(concurrency.max(1)));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..count {
        let (targets, stats, gate) = (targets.clone(), stats.clone(), gate.clone());
        tasks.spawn(async move {
            let t = &targets[(i as usize) % targets.len()];
            let user = format!("idle-{}", first + i);
            let ws = {
                let _permit = gate.acquire().await.map_err(|e| e.to_string())?;
                connect(t, source, &user).await?
            };
            stats.open.fetch_add(1, Ordering::Relaxed);
            // Held in a task of its own until the process ends; the
            // reader answers pings by itself (tungstenite queues the pong
            // and writes it on the next read).
            tokio::spawn(hold(ws, stats));
            Ok::<(), String>(())
        });
    }
    let mut failed = 0u64;
    let mut first_error = None;
    let all = async {
        while let Some(r) = tasks.join_next().await {
            if let Err(e) = r.map_err(|e| e.to_string()).and_then(|r| r) {
                failed += 1;
                first_error.get_or_insert(e);
            }
        }
    };
    if tokio::time::timeout(timeout, all).await.is_err() {
        println!(
            "{}",
            serde_json::json!({"failed": tasks.len(), "first_error": "timed out connecting"})
        );
        return Ok(());
    }
    if failed > 0 {
        println!(
            "{}",
            serde_json::json!({"failed": failed, "first_error": first_error})
        );
        return Ok(());
    }
    let seconds = (started.elapsed().as_secs_f64() * 100.0).round() / 100.0;
    println!(
        "{}",
        serde_json::json!({"ready": count, "seconds": seconds})
    );
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    while let Some(_line) = lines.next_line().await? {
        let s = |c: &AtomicU64| c.load(Ordering::Relaxed);
        println!(
            "{}",
            serde_json::json!({"status": {
                "open": s(&stats.open),
                "lost": s(&stats.lost),
                "pings": s(&stats.pings),
                "close_frames": s(&stats.close_frames),
            }})
        );
    }
    Ok(())
}

type Ws = tokio_tungstenite::WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens one connection and waits for its `welcome`.
async fn connect(t: &Target, source: Option<IpAddr>, user: &str) -> Result<Ws, String> {
    let socket = if t.addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(|e| e.to_string())?;
    if let Some(ip) = source {
        socket
            .bind(SocketAddr::new(ip, 0))
            .map_err(|e| format!("binding {ip}: {e}"))?;
    }
    let tcp = socket
        .connect(t.addr)
        .await
        .map_err(|e| format!("connecting to {}: {e}", t.addr))?;
    let sep = if t.path.contains('?') { '&' } else { '?' };
    let req = format!("ws://{}{}{sep}user={user}", t.host, t.path)
        .into_client_request()
        .map_err(|e| e.to_string())?;
    // Smaller still than a client's (the frames here are a welcome and
    // pings), for the least memory per held connection.
    let config = WebSocketConfig::default().read_buffer_size(4 * 1024);
    let (mut ws, _) =
        tokio_tungstenite::client_async_with_config(req, MaybeTlsStream::Plain(tcp), Some(config))
            .await
            .map_err(|e| format!("handshake for {user}: {e}"))?;
    match ws.next().await {
        Some(Ok(Message::Text(t))) if t.as_str().contains("\"welcome\"") => Ok(ws),
        other => Err(format!("{user}: no welcome but {other:?}")),
    }
}

/// Reads until the connection ends, counting pings and close frames.
async fn hold(mut ws: Ws, stats: Arc<Stats>) {
    while let Some(m) = ws.next().await {
        match m {
            Ok(Message::Ping(_)) => {
                stats.pings.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Message::Close(_)) => {
                stats.close_frames.fetch_add(1, Ordering::Relaxed);
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    stats.open.fetch_sub(1, Ordering::Relaxed);
    stats.lost.fetch_add(1, Ordering::Relaxed);
}
