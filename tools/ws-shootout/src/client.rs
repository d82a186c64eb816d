//! Load client: one tokio-tungstenite 0.30 client used against every server candidate.
//!
//! Two workloads, each bounded in time (warm-up + measured window + short drain):
//! - `rpc` / `rpc-light`: `conns` connections (many / few), each keeping `inflight` ~100-byte
//!   JSON requests outstanding; the server parses each and replies. Latency is the
//!   request→reply round trip (under load it is mostly queueing: ≈ conns / rate).
//! - `fanout`: `conns` subscriber connections plus one publisher; each publish makes the server
//!   push one ~200-byte frame to every subscriber. At most `window` rounds are outstanding.
//!   Latency is publish-send → subscriber-receive (same process, same clock).

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use anyhow::{anyhow, bail, Context};
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use tokio::{
    net::TcpStream,
    sync::{Notify, Semaphore},
    time::{timeout, timeout_at, Instant},
};
use tokio_tungstenite::{tungstenite::Message, MaybeTlsStream, WebSocketStream};

use crate::stats;

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Padding that brings an RPC request to ~100 bytes.
const RPC_PAD: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJ";

/// Which workload to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Many RPC connections: throughput and CPU under load.
    Rpc,
    /// A few RPC connections: round-trip latency without queueing.
    RpcLight,
    /// One publisher, many subscribers.
    Fanout,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Rpc => "rpc",
            Mode::RpcLight => "rpc-light",
            Mode::Fanout => "fanout",
        }
    }
}

/// Load parameters.
#[derive(Clone, Debug)]
pub struct LoadCfg {
    pub addr: SocketAddr,
    pub mode: Mode,
    pub conns: usize,
    pub inflight: usize,
    pub window: usize,
    pub warmup: Duration,
    pub secs: Duration,
    pub server_pid: Option<u32>,
}

/// Outcome of one measured run.
#[derive(Clone, Debug, Default)]
pub struct RunResult {
    /// Messages completed inside the measured window (RPC replies / fan-out deliveries).
    pub msgs: u64,
    pub rate: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub server_cpu_s: f64,
    /// Server CPU seconds per 100k messages (NaN without a server pid).
    pub cpu_per_100k: f64,
    pub server_rss_mib: f64,
    /// CPU seconds used by this (client) process during the window.
    pub client_cpu_s: f64,
    /// CPU seconds used by everything else on the machine during the window (noise).
    pub other_cpu_s: f64,
    /// CPU seconds stolen by the hypervisor during the window (noise).
    pub steal_s: f64,
    /// Fan-out frames published but never received (dropped or still queued at the end).
    pub lost: u64,
    pub errors: u64,
}

/// Nanoseconds since the client's epoch, used as the `t` timestamp in messages.
fn now_ns(epoch: Instant) -> u64 {
    epoch.elapsed().as_nanos() as u64
}

/// Finds `"key":<digits>` in a small JSON text without a full parse (keeps client cost low).
fn extract_u64(s: &str, key: &str) -> Option<u64> {
    let pat = format!("\"{key}\":");
    let i = s.find(&pat)? + pat.len();
    let digits: &str = &s[i..];
    let end = digits
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(digits.len());
    digits[..end].parse().ok()
}

fn new_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds")
}

async fn connect(addr: SocketAddr) -> anyhow::Result<Ws> {
    let tcp = TcpStream::connect(addr).await.context("tcp connect")?;
    tcp.set_nodelay(true)?;
    let (ws, _) =
        tokio_tungstenite::client_async(format!("ws://{addr}/ws"), MaybeTlsStream::Plain(tcp))
            .await
            .context("ws handshake")?;
    Ok(ws)
}

/// Opens `n` connections, at most 64 handshakes at a time, each bounded by a 10 s timeout.
async fn connect_many(addr: SocketAddr, n: usize) -> anyhow::Result<Vec<Ws>> {
    let sem = Arc::new(Semaphore::new(64));
    let mut tasks = Vec::with_capacity(n);
    for _ in 0..n {
        let sem = sem.clone();
        tasks.push(tokio::spawn(async move {
            let _permit = sem.acquire_owned().await?;
            timeout(Duration::from_secs(10), connect(addr))
                .await
                .context("connect timeout")?
        }));
    }
    let mut out = Vec::with_capacity(n);
    for t in tasks {
        out.push(t.await??);
    }
    Ok(out)
}

/// CPU accounting over the measured window.
#[derive(Clone, Copy, Debug)]
struct CpuWindow {
    server_s: f64,
    server_rss_mib: f64,
    client_s: f64,
    other_s: f64,
    steal_s: f64,
}

/// Samples server, client and whole-machine CPU at the window start and end.
async fn cpu_window(pid: Option<u32>, t0: Instant, t1: Instant) -> CpuWindow {
    let me = std::process::id();
    let sample = || {
        let server = pid
            .map(|p| stats::proc_cpu_secs(p).unwrap_or(f64::NAN))
            .unwrap_or(f64::NAN);
        let client = stats::proc_cpu_secs(me).unwrap_or(f64::NAN);
        let (busy, steal) = stats::machine_cpu_secs().unwrap_or((f64::NAN, f64::NAN));
        (server, client, busy, steal)
    };
    tokio::time::sleep_until(t0).await;
    let a = sample();
    tokio::time::sleep_until(t1).await;
    let b = sample();
    let rss = pid
        .and_then(stats::proc_rss_kib)
        .map(|k| k as f64 / 1024.0)
        .unwrap_or(f64::NAN);
    let (server_s, client_s) = (b.0 - a.0, b.1 - a.1);
    let known = if server_s.is_finite() {
        server_s + client_s
    } else {
        client_s
    };
    CpuWindow {
        server_s,
        server_rss_mib: rss,
        client_s,
        other_s: (b.2 - a.2 - known).max(0.0),
        steal_s: b.3 - a.3,
    }
}

/// Runs one workload against a server and returns the measurements.
pub async fn run(cfg: &LoadCfg) -> anyhow::Result<RunResult> {
    match cfg.mode {
        Mode::Rpc | Mode::RpcLight => run_rpc(cfg).await,
        Mode::Fanout => run_fanout(cfg).await,
    }
}

async fn run_rpc(cfg: &LoadCfg) -> anyhow::Result<RunResult> {
    let conns = connect_many(cfg.addr, cfg.conns).await?;
    let epoch = Instant::now();
    let t0 = epoch + cfg.warmup;
    let t1 = t0 + cfg.secs;
    let cpu = tokio::spawn(cpu_window(cfg.server_pid, t0, t1));
    let mut tasks = Vec::with_capacity(conns.len());
    for (i, ws) in conns.into_iter().enumerate() {
        tasks.push(tokio::spawn(rpc_conn(
            ws,
            i as u64,
            cfg.inflight.max(1),
            epoch,
            t0,
            t1,
        )));
    }
    let mut hist = new_hist();
    let (mut msgs, mut errors) = (0, 0);
    for t in tasks {
        let (n, e, h) = t.await?;
        msgs += n;
        errors += e;
        hist.add(h)?;
    }
    let cpu = cpu.await?;
    Ok(finish(msgs, errors, 0, &hist, cfg.secs, cpu))
}

fn finish(
    msgs: u64,
    errors: u64,
    lost: u64,
    hist: &Histogram<u64>,
    secs: Duration,
    cpu: CpuWindow,
) -> RunResult {
    let cpu_s = cpu.server_s;
    let window_secs = secs.as_secs_f64();
    RunResult {
        msgs,
        rate: msgs as f64 / window_secs,
        p50_us: hist.value_at_quantile(0.50) as f64,
        p99_us: hist.value_at_quantile(0.99) as f64,
        server_cpu_s: cpu_s,
        cpu_per_100k: if msgs > 0 {
            cpu_s / msgs as f64 * 100_000.0
        } else {
            f64::NAN
        },
        server_rss_mib: cpu.server_rss_mib,
        client_cpu_s: cpu.client_s,
        other_cpu_s: cpu.other_s,
        steal_s: cpu.steal_s,
        lost,
        errors,
    }
}

/// One RPC connection: keep `inflight` requests outstanding until `t1`, then drain and close.
async fn rpc_conn(
    mut ws: Ws,
    conn_id: u64,
    inflight: usize,
    epoch: Instant,
    t0: Instant,
    t1: Instant,
) -> (u64, u64, Histogram<u64>) {
    let mut hist = new_hist();
    let (mut count, mut errors) = (0u64, 0u64);
    let mut next_id = conn_id << 32;
    let mut outstanding = 0usize;
    let mk = |id: u64| {
        Message::Text(
            format!(
                r#"{{"op":"rpc","id":{id},"t":{},"body":"{RPC_PAD}"}}"#,
                now_ns(epoch)
            )
            .into(),
        )
    };
    for _ in 0..inflight {
        next_id += 1;
        if ws.send(mk(next_id)).await.is_err() {
            return (0, 1, hist);
        }
        outstanding += 1;
    }
    // Bounded: stops sending at t1; every wait is capped at 5 s.
    while outstanding > 0 {
        let msg = match timeout(Duration::from_secs(5), ws.next()).await {
            Ok(Some(Ok(m))) => m,
            _ => {
                errors += 1;
                break;
            }
        };
        let Message::Text(text) = msg else { continue };
        outstanding -= 1;
        let now = Instant::now();
        if now >= t0 && now < t1 {
            if let Some(t) = extract_u64(text.as_str(), "t") {
                count += 1;
                let _ = hist.record(((now_ns(epoch).saturating_sub(t)) / 1000).max(1));
            }
        }
        if now < t1 {
            next_id += 1;
            if ws.send(mk(next_id)).await.is_err() {
                errors += 1;
                break;
            }
            outstanding += 1;
        }
    }
    let _ = timeout(Duration::from_millis(500), ws.close(None)).await;
    (count, errors, hist)
}

async fn run_fanout(cfg: &LoadCfg) -> anyhow::Result<RunResult> {
    let n = cfg.conns;
    let mut subs = connect_many(cfg.addr, n).await?;
    // Subscribe everyone before publishing starts.
    for ws in subs.iter_mut() {
        ws.send(Message::Text(r#"{"op":"sub"}"#.into())).await?;
    }
    for ws in subs.iter_mut() {
        match timeout(Duration::from_secs(10), ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) if t.as_str().contains("subbed") => {}
            other => bail!("subscribe failed: {other:?}"),
        }
    }
    let mut publisher = connect(cfg.addr).await?;

    let epoch = Instant::now();
    let t0 = epoch + cfg.warmup;
    let t1 = t0 + cfg.secs;
    let drain_until = t1 + Duration::from_secs(1);
    let cpu = tokio::spawn(cpu_window(cfg.server_pid, t0, t1));
    let received = Arc::new(AtomicU64::new(0));
    let progress = Arc::new(Notify::new());

    let mut tasks = Vec::with_capacity(n);
    for ws in subs {
        let (received, progress) = (received.clone(), progress.clone());
        tasks.push(tokio::spawn(async move {
            sub_conn(ws, epoch, t0, t1, drain_until, n as u64, received, progress).await
        }));
    }

    // Publisher: at most `window` rounds outstanding; a stall of 1 s forgives the deficit
    // (counted as lost) so a dropped frame cannot wedge the run.
    let window = (cfg.window.max(1) * n) as u64;
    let mut seq: u64 = 0;
    let mut forgiven: u64 = 0;
    let mut last_progress = Instant::now();
    let mut last_received = 0;
    while Instant::now() < t1 {
        let got = received.load(Ordering::Relaxed);
        if got != last_received {
            last_received = got;
            last_progress = Instant::now();
        }
        let outstanding = (seq * n as u64).saturating_sub(got + forgiven);
        if outstanding > window {
            if last_progress.elapsed() > Duration::from_secs(1) {
                forgiven += outstanding;
                continue;
            }
            let _ = timeout(Duration::from_millis(20), progress.notified()).await;
            continue;
        }
        let msg = format!(r#"{{"op":"pub","seq":{seq},"t":{}}}"#, now_ns(epoch));
        publisher
            .send(Message::Text(msg.into()))
            .await
            .context("publish")?;
        seq += 1;
    }

    let mut hist = new_hist();
    let (mut msgs, mut errors) = (0, 0);
    for t in tasks {
        let (c, e, h) = t.await?;
        msgs += c;
        errors += e;
        hist.add(h)?;
    }
    let _ = timeout(Duration::from_millis(500), publisher.close(None)).await;
    let cpu = cpu.await?;
    let lost = (seq * n as u64).saturating_sub(received.load(Ordering::Relaxed));
    if seq == 0 {
        return Err(anyhow!("publisher never published"));
    }
    Ok(finish(msgs, errors, lost, &hist, cfg.secs, cpu))
}

/// One subscriber: count and time every event until `drain_until`, then close.
#[allow(clippy::too_many_arguments)]
async fn sub_conn(
    mut ws: Ws,
    epoch: Instant,
    t0: Instant,
    t1: Instant,
    drain_until: Instant,
    n: u64,
    received: Arc<AtomicU64>,
    progress: Arc<Notify>,
) -> (u64, u64, Histogram<u64>) {
    let mut hist = new_hist();
    let (mut count, mut errors) = (0u64, 0u64);
    loop {
        let msg = match timeout_at(drain_until, ws.next()).await {
            Err(_) => break,
            Ok(Some(Ok(m))) => m,
            Ok(_) => {
                errors += 1;
                break;
            }
        };
        let Message::Text(text) = msg else { continue };
        let total = received.fetch_add(1, Ordering::Relaxed) + 1;
        if total.is_multiple_of(n) {
            progress.notify_one();
        }
        let now = Instant::now();
        if now >= t0 && now < t1 {
            if let Some(t) = extract_u64(text.as_str(), "t") {
                count += 1;
                let _ = hist.record(((now_ns(epoch).saturating_sub(t)) / 1000).max(1));
            }
        }
    }
    let _ = timeout(Duration::from_millis(500), ws.close(None)).await;
    (count, errors, hist)
}

#[cfg(test)]
mod tests {
    use super::extract_u64;

    #[test]
    fn extracts_numbers() {
        assert_eq!(
            extract_u64(r#"{"op":"rpc","id":7,"t":12345,"ok":true}"#, "t"),
            Some(12345)
        );
        assert_eq!(extract_u64(r#"{"op":"ev","seq":3,"t":9}"#, "seq"), Some(3));
        assert_eq!(extract_u64(r#"{"op":"ev"}"#, "t"), None);
    }
}
