//! Measures how long users moved by a node join take to receive again.
//!
//! `scripts/rehome.sh` drives it; two modes:
//!
//! * `rehome clients --gateways WS[,WS…] --from A --count N --out FILE`
//!   connects users `u{A}`…`u{A+N-1}` (user i through gateway i mod G),
//!   prints `ready <n>` once every one got `welcome`, then waits for `moved`
//!   frames. After a user's reconnect (the `welcome` following its `moved`)
//!   it sends the user a probe through a gateway's `POST /api/send` (or,
//!   with `--ws-senders K`, as a `send` frame from one of K sender clients),
//!   again `--probe-every-ms` after each unanswered one until one arrives, and records when the
//!   `moved` came, when the reconnect happened and when a probe arrived
//!   (Unix nanoseconds, so several processes share one clock). Untouched
//!   users get one probe each at the end (up to `--check`), to show they
//!   still receive. It writes one JSON document to `--out` and exits. With
//!   `--direct` the clients locate their node through the gateway and
//!   connect to it, skipping the tunnel (`ClientConfig::direct`).
//! * `rehome report --t0-ns T FILE…` merges those documents and prints, for
//!   the moved users, the time from `T` (the joining node's start) until
//!   50 %, 99 % and 100 % of them received again.

use anyhow::{Context, bail};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{Notify, Semaphore, watch};
use tokio::time::Instant;
use wsring_client::{Api, ClientConfig, Event};

/// What one user went through; 0 means "did not happen".
#[derive(Default)]
struct UserState {
    moved_ns: AtomicU64,
    reconnected_ns: AtomicU64,
    received_ns: AtomicU64,
    /// Probes sent to it after its move.
    probes: AtomicU32,
    /// Its reconnect after the move landed on the joining node.
    on_new_node: AtomicBool,
    /// Disconnects that were not a `moved` + 1012.
    other_disconnects: AtomicU32,
    /// When the first probe after the move was acknowledged by the API.
    first_ack_ns: AtomicU64,
    /// Wakes the prober when a probe arrived.
    arrived: Notify,
    /// When the end-of-run probe to an untouched user arrived.
    checked_ns: AtomicU64,
}

/// How probes are sent: `POST /api/send` on the user's gateway, or a `send`
/// frame from one of a few sender clients (cheaper: no HTTP hop per probe).
#[derive(Clone)]
enum Sender {
    Http(Api),
    Ws(wsring_client::Client),
}

impl Sender {
    async fn send(&self, to: &str, data: Value) -> bool {
        match self {
            Sender::Http(api) => api.send(to, data, None).await.is_ok(),
            Sender::Ws(c) => c.send(to, data).await.is_ok(),
        }
    }
}

/// Counters shared by every user task of the process.
#[derive(Default)]
struct Totals {
    moved: AtomicUsize,
    received: AtomicUsize,
    checked: AtomicUsize,
    probe_errors: AtomicU64,
    last_moved: AtomicU64,
}

struct Opts {
    gateways: Vec<String>,
    from: usize,
    count: usize,
    out: String,
    new_node: String,
    in_flight: usize,
    probe_every: Duration,
    max_probes: u32,
    wait_move: Duration,
    window: Duration,
    settle: Duration,
    check: usize,
    ws_senders: usize,
    direct: bool,
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn arg<T: std::str::FromStr>(args: &[String], name: &str, default: Option<T>) -> anyhow::Result<T> {
    match args.iter().position(|a| a == name) {
        Some(i) => {
            let v = args
                .get(i + 1)
                .with_context(|| format!("{name} needs a value"))?;
            v.parse()
                .map_err(|_| anyhow::anyhow!("{name}: cannot parse {v:?}"))
        }
        None => default.with_context(|| format!("{name} is required")),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("clients") => {
            let ms = |name: &str, d: u64| arg(&args, name, Some(d)).map(Duration::from_millis);
            let opts = Opts {
                gateways: arg::<String>(&args, "--gateways", None)?
                    .split(',')
                    .map(str::to_owned)
                    .collect(),
                from: arg(&args, "--from", Some(0))?,
                count: arg(&args, "--count", None)?,
                out: arg(&args, "--out", None)?,
                new_node: arg(&args, "--new-node", Some("n4".into()))?,
                in_flight: arg(&args, "--in-flight", Some(200))?,
                probe_every: ms("--probe-every-ms", 500)?,
                max_probes: arg(&args, "--max-probes", Some(60))?,
                wait_move: ms("--wait-move-ms", 120_000)?,
                window: ms("--window-ms", 30_000)?,
                settle: ms("--settle-ms", 3_000)?,
                check: arg(&args, "--check", Some(1_000))?,
                ws_senders: arg(&args, "--ws-senders", Some(0))?,
                direct: args.iter().any(|a| a == "--direct"),
            };
            clients(opts).await
        }
        Some("report") => {
            let t0: u64 = arg(&args, "--t0-ns", None)?;
            let files: Vec<&String> = args
                .iter()
                .skip(1)
                .filter(|a| !a.starts_with("--") && a.parse::<u64>().is_err())
                .collect();
            report(t0, &files)
        }
        _ => bail!("usage: rehome clients … | rehome report --t0-ns T FILE…"),
    }
}

async fn clients(o: Opts) -> anyhow::Result<()> {
    let apis: Vec<Api> = o
        .gateways
        .iter()
        .map(|g| Api::new(g))
        .collect::<Result<_, _>>()?;
    // Probe senders: with `--ws-senders 0` the gateways' HTTP API.
    let mut senders = Vec::new();
    for k in 0..o.ws_senders {
        let url = o.gateways[k % o.gateways.len()].clone();
        let (c, mut ev) = wsring_client::connect(&url, &format!("probe-{}-{k}", o.from)).await?;
        tokio::spawn(async move { while ev.next().await.is_some() {} });
        senders.push(Sender::Ws(c));
    }
    if senders.is_empty() {
        senders = apis.iter().cloned().map(Sender::Http).collect();
    }
    let senders = Arc::new(senders);
    let apis = Arc::new(apis);
    let users: Arc<Vec<UserState>> = Arc::new((0..o.count).map(|_| UserState::default()).collect());
    let totals = Arc::new(Totals::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let probe_slots = Arc::new(Semaphore::new(o.in_flight));
    let connect_slots = Arc::new(Semaphore::new(o.in_flight));
    let mut tasks = Vec::with_capacity(o.count);
    let mut connects = Vec::with_capacity(o.count);
    let opts = Arc::new(o);
    let started = Instant::now();
    for i in 0..opts.count {
        let n = opts.from + i;
        let user = format!("u{n}");
        let mut cfg = ClientConfig::new(opts.gateways[n % opts.gateways.len()].clone(), &user);
        cfg.event_buffer = 64;
        cfg.direct = opts.direct;
        let slots = Arc::clone(&connect_slots);
        connects.push(tokio::spawn(async move {
            let _slot = slots.acquire_owned().await;
            wsring_client::connect_with(cfg).await
        }));
    }
    let mut failed = 0usize;
    for (i, c) in connects.into_iter().enumerate() {
        let (client, events) = match c.await {
            Ok(Ok(pair)) => pair,
            Ok(Err(e)) => {
                failed += 1;
                eprintln!("connect u{} failed: {e}", opts.from + i);
                continue;
            }
            Err(e) => bail!("connect task: {e}"),
        };
        let n = opts.from + i;
        tasks.push(tokio::spawn(watch_user(
            i,
            n,
            client,
            events,
            Arc::clone(&opts),
            Arc::clone(&senders),
            Arc::clone(&users),
            Arc::clone(&totals),
            Arc::clone(&probe_slots),
            stop_rx.clone(),
        )));
    }
    let connected = tasks.len();
    println!(
        "ready {connected} failed {failed} in {:.1}s",
        started.elapsed().as_secs_f64()
    );

    // Wait for the first move, then until every moved user received again
    // and no new move came for `settle` (or the window ends).
    let deadline = Instant::now() + opts.wait_move;
    while totals.moved.load(Ordering::Relaxed) == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let window_end = Instant::now() + opts.window;
    while Instant::now() < window_end {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let moved = totals.moved.load(Ordering::Relaxed);
        let quiet = now_ns().saturating_sub(totals.last_moved.load(Ordering::Relaxed))
            > u64::try_from(opts.settle.as_nanos()).unwrap_or(u64::MAX);
        if moved == 0 || (totals.received.load(Ordering::Relaxed) >= moved && quiet) {
            break;
        }
    }

    // Untouched users must still receive.
    let unmoved: Vec<usize> = (0..connected)
        .filter(|&i| users[i].moved_ns.load(Ordering::Relaxed) == 0)
        .take(opts.check)
        .collect();
    let mut sends = Vec::with_capacity(unmoved.len());
    for &i in &unmoved {
        let n = opts.from + i;
        let api = apis[n % apis.len()].clone();
        let slots = Arc::clone(&probe_slots);
        let totals = Arc::clone(&totals);
        sends.push(tokio::spawn(async move {
            let _slot = slots.acquire_owned().await;
            if api
                .send(&format!("u{n}"), json!({"probe": "check"}), None)
                .await
                .is_err()
            {
                totals.probe_errors.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for s in sends {
        let _ = s.await;
    }
    let check_end = Instant::now() + Duration::from_secs(5);
    while totals.checked.load(Ordering::Relaxed) < unmoved.len() && Instant::now() < check_end {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = stop_tx.send(true);
    for t in tasks {
        let _ = t.await;
    }

    let moved: Vec<Value> = users
        .iter()
        .filter(|u| u.moved_ns.load(Ordering::Relaxed) != 0)
        .map(|u| {
            json!([
                u.moved_ns.load(Ordering::Relaxed),
                u.reconnected_ns.load(Ordering::Relaxed),
                u.received_ns.load(Ordering::Relaxed),
                u.probes.load(Ordering::Relaxed),
                u.on_new_node.load(Ordering::Relaxed),
                u.first_ack_ns.load(Ordering::Relaxed),
            ])
        })
        .collect();
    let other_disconnects: u64 = users
        .iter()
        .map(|u| u64::from(u.other_disconnects.load(Ordering::Relaxed)))
        .sum();
    let doc = json!({
        "users": connected,
        "connect_failed": failed,
        "moved": moved,
        "other_disconnects": other_disconnects,
        "check_sent": unmoved.len(),
        "check_received": unmoved
            .iter()
            .filter(|&&i| users[i].checked_ns.load(Ordering::Relaxed) != 0)
            .count(),
        "probe_errors": totals.probe_errors.load(Ordering::Relaxed),
    });
    std::fs::write(&opts.out, doc.to_string()).with_context(|| opts.out.clone())?;
    println!("done {}", opts.out);
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn watch_user(
    i: usize,
    n: usize,
    client: wsring_client::Client,
    mut events: wsring_client::Events,
    opts: Arc<Opts>,
    senders: Arc<Vec<Sender>>,
    users: Arc<Vec<UserState>>,
    totals: Arc<Totals>,
    slots: Arc<Semaphore>,
    mut stop: watch::Receiver<bool>,
) {
    let me = &users[i];
    let user = format!("u{n}");
    let api = senders[n % senders.len()].clone();
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            ev = events.next() => match ev {
                None => break,
                Some(Event::Moved { .. }) => {
                    if me.moved_ns.load(Ordering::Relaxed) == 0 {
                        let t = now_ns();
                        me.moved_ns.store(t, Ordering::Relaxed);
                        totals.last_moved.fetch_max(t, Ordering::Relaxed);
                        totals.moved.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Some(Event::Connected { node, .. }) => {
                    if me.moved_ns.load(Ordering::Relaxed) != 0
                        && me.reconnected_ns.load(Ordering::Relaxed) == 0
                    {
                        me.reconnected_ns.store(now_ns(), Ordering::Relaxed);
                        me.on_new_node.store(node == opts.new_node, Ordering::Relaxed);
                        tokio::spawn(probe(
                            i,
                            user.clone(),
                            api.clone(),
                            Arc::clone(&opts),
                            Arc::clone(&users),
                            Arc::clone(&totals),
                            Arc::clone(&slots),
                        ));
                    }
                }
                Some(Event::Message(m)) => match m.data["probe"].as_str() {
                    Some("moved") if me.received_ns.load(Ordering::Relaxed) == 0 => {
                        me.received_ns.store(now_ns(), Ordering::Relaxed);
                        totals.received.fetch_add(1, Ordering::Relaxed);
                        me.arrived.notify_one();
                    }
                    Some("check") if me.checked_ns.load(Ordering::Relaxed) == 0 => {
                        me.checked_ns.store(now_ns(), Ordering::Relaxed);
                        totals.checked.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {}
                },
                Some(Event::Disconnected { code, .. }) => {
                    if code != Some(1012) {
                        me.other_disconnects.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Some(_) => {}
            }
        }
    }
    client.close();
}

/// Probes a moved user after its reconnect until one arrives: the next probe
/// goes only after the previous one was answered and `probe_every` passed
/// without it arriving, so a slow API does not pile probes up.
#[allow(clippy::too_many_arguments)]
async fn probe(
    i: usize,
    user: String,
    api: Sender,
    opts: Arc<Opts>,
    users: Arc<Vec<UserState>>,
    totals: Arc<Totals>,
    slots: Arc<Semaphore>,
) {
    let me = &users[i];
    for _ in 0..opts.max_probes {
        if me.received_ns.load(Ordering::Relaxed) != 0 {
            return;
        }
        me.probes.fetch_add(1, Ordering::Relaxed);
        let sent = {
            let _slot = slots.acquire().await;
            api.send(&user, json!({"probe": "moved"})).await
        };
        if sent {
            let _ =
                me.first_ack_ns
                    .compare_exchange(0, now_ns(), Ordering::Relaxed, Ordering::Relaxed);
        } else {
            totals.probe_errors.fetch_add(1, Ordering::Relaxed);
        }
        let _ = tokio::time::timeout(opts.probe_every, me.arrived.notified()).await;
    }
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[idx.clamp(1, sorted.len()) - 1]
}

fn report(t0: u64, files: &[&String]) -> anyhow::Result<()> {
    let mut users = 0u64;
    let mut failed = 0u64;
    let mut other = 0u64;
    let mut check_sent = 0u64;
    let mut check_received = 0u64;
    let mut probe_errors = 0u64;
    let mut moved = 0usize;
    let mut lost = 0usize;
    let mut not_reconnected = 0usize;
    let mut off_new_node = 0usize;
    let mut extra_probes = 0u64;
    // From a reconnect until the API acknowledged the first probe to it.
    let mut acked = Vec::new();
    let (mut recv, mut reconn, mut first_moved, mut last_moved) =
        (Vec::new(), Vec::new(), u64::MAX, 0u64);
    let secs = |t: u64| (t.saturating_sub(t0)) as f64 / 1e9;
    for f in files {
        let doc: Value = serde_json::from_str(&std::fs::read_to_string(f).context(f.to_string())?)?;
        let n = |k: &str| doc[k].as_u64().unwrap_or(0);
        users += n("users");
        failed += n("connect_failed");
        other += n("other_disconnects");
        check_sent += n("check_sent");
        check_received += n("check_received");
        probe_errors += n("probe_errors");
        for m in doc["moved"].as_array().into_iter().flatten() {
            let at = |k: usize| m[k].as_u64().unwrap_or(0);
            moved += 1;
            first_moved = first_moved.min(at(0));
            last_moved = last_moved.max(at(0));
            match at(1) {
                0 => not_reconnected += 1,
                t => reconn.push(secs(t)),
            }
            match at(2) {
                0 => lost += 1,
                t => recv.push(secs(t)),
            }
            extra_probes += at(3).saturating_sub(1);
            if at(1) != 0 && at(5) != 0 {
                acked.push(at(5).saturating_sub(at(1)) as f64 / 1e9);
            }
            if m[4].as_bool() != Some(true) {
                off_new_node += 1;
            }
        }
    }
    recv.sort_by(f64::total_cmp);
    acked.sort_by(f64::total_cmp);
    reconn.sort_by(f64::total_cmp);
    println!("users {users} (connect failures {failed}), moved {moved}");
    if moved > 0 {
        println!(
            "moved frames arrived {:.3}s .. {:.3}s after the joining node started",
            secs(first_moved),
            secs(last_moved)
        );
    }
    println!(
        "reconnected: p50 {:.3}s p99 {:.3}s 100% {:.3}s (not reconnected: {not_reconnected}, not on the new node: {off_new_node})",
        pct(&reconn, 50.0),
        pct(&reconn, 99.0),
        reconn.last().copied().unwrap_or(f64::NAN)
    );
    println!(
        "received again: p50 {:.3}s p99 {:.3}s 100% {:.3}s (never: {lost}; probes re-sent: {extra_probes}; probe send errors: {probe_errors})",
        pct(&recv, 50.0),
        pct(&recv, 99.0),
        recv.last().copied().unwrap_or(f64::NAN)
    );
    println!(
        "first probe acknowledged by the API, after the reconnect: p50 {:.3}s p99 {:.3}s",
        pct(&acked, 50.0),
        pct(&acked, 99.0)
    );
    println!(
        "untouched users: {check_received}/{check_sent} received a probe; disconnects other than moved: {other}"
    );
    println!(
        "RESULT users={users} moved={moved} p50={:.3} p99={:.3} p100={:.3} lost={lost}",
        pct(&recv, 50.0),
        pct(&recv, 99.0),
        if lost > 0 {
            f64::INFINITY
        } else {
            recv.last().copied().unwrap_or(f64::NAN)
        }
    );
    Ok(())
}
