//! Orchestrator: spawns one server process per run, drives it with the in-process client,
//! interleaves candidates across repetitions, and renders the markdown report.

use std::{
    fmt::Write as _,
    io::{BufRead, BufReader},
    net::SocketAddr,
    process::{Child, ChildStdin, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{anyhow, bail, Context};

use crate::{
    client::{self, LoadCfg, Mode, RunResult},
    probe,
    server::{Impl, ServerOpts},
    stats::{fmt_num, median, min_max},
};

/// Everything `bench` needs.
#[derive(Clone, Debug)]
pub struct BenchCfg {
    pub impls: Vec<Impl>,
    pub modes: Vec<Mode>,
    pub reps: usize,
    pub secs: Duration,
    pub warmup: Duration,
    pub rpc_conns: usize,
    pub light_conns: usize,
    pub inflight: usize,
    pub fanout_conns: usize,
    pub window: usize,
    pub opts: ServerOpts,
    pub probes: bool,
}

/// A server child process; dropping it closes its stdin (it exits) and reaps it.
pub struct ServerProc {
    child: Child,
    stdin: Option<ChildStdin>,
    pub addr: SocketAddr,
    pub pid: u32,
}

impl ServerProc {
    /// Starts `ws-shootout server` on an ephemeral loopback port and waits for `LISTENING`.
    pub fn spawn(imp: Impl, opts: &ServerOpts) -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("current_exe")?;
        let mut cmd = Command::new(exe);
        cmd.args(["server", "--impl", imp.name(), "--port", "0"])
            .args(["--max-msg", &opts.max_msg.to_string()])
            .args(["--queue", &opts.queue.to_string()])
            .args(["--max-secs", "300", "--exit-on-stdin-eof"]);
        if !opts.app_close {
            cmd.arg("--no-app-close");
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("spawn server")?;
        let pid = child.id();
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let mut proc = ServerProc {
            child,
            stdin,
            addr: ([127, 0, 0, 1], 0).into(),
            pid,
        };
        let line = rx
            .recv_timeout(Duration::from_secs(10))
            .context("server did not start")?;
        let addr = line
            .trim()
            .strip_prefix("LISTENING ")
            .ok_or_else(|| anyhow!("unexpected server output: {line:?}"))?;
        proc.addr = addr.parse().context("parse server addr")?;
        Ok(proc)
    }
}

impl Drop for ServerProc {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // Our own child, by its handle: stop it and reap it.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One measured run.
struct Run {
    rep: usize,
    mode: Mode,
    imp: Impl,
    r: RunResult,
}

/// Runs the whole shootout and returns the markdown report.
pub fn run(cfg: &BenchCfg) -> anyhow::Result<String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let started = Instant::now();
    let mut md = String::new();

    if cfg.probes {
        md.push_str(&probe_section(&rt, cfg)?);
    }

    let mut runs = Vec::new();
    let mut discarded = Vec::new();
    let mut retries = 0;
    for rep in 0..cfg.reps {
        for &mode in &cfg.modes {
            // Interleave: rotate the order every repetition so no candidate always goes first.
            let n = cfg.impls.len();
            for k in 0..n {
                let imp = cfg.impls[(k + rep) % n];
                let mut r = one_run(&rt, cfg, imp, mode)
                    .with_context(|| format!("{} {} rep {}", imp.name(), mode.name(), rep + 1))?;
                log_run(rep, mode, imp, &r);
                // Another process ate a noticeable share of the machine: repeat once (at most
                // MAX_RETRIES times per shootout, to stay within the time budget) and keep the
                // quieter of the two; the other goes to the "discarded" table.
                if r.other_cpu_s > NOISE_FRACTION * noise_capacity(cfg) && retries < MAX_RETRIES {
                    retries += 1;
                    eprintln!("  noisy (other CPU {:.2}s): repeating once", r.other_cpu_s);
                    let again = one_run(&rt, cfg, imp, mode).with_context(|| {
                        format!("{} {} rep {} retry", imp.name(), mode.name(), rep + 1)
                    })?;
                    log_run(rep, mode, imp, &again);
                    if again.other_cpu_s < r.other_cpu_s {
                        discarded.push(Run { rep, mode, imp, r });
                        r = again;
                    } else {
                        discarded.push(Run {
                            rep,
                            mode,
                            imp,
                            r: again,
                        });
                    }
                }
                runs.push(Run { rep, mode, imp, r });
                std::thread::sleep(Duration::from_millis(300));
            }
        }
    }

    md.push_str(&raw_section("Raw runs", &runs));
    if !discarded.is_empty() {
        md.push_str(&raw_section(
            "Discarded noisy runs (other processes used > 10% of the machine; re-run once, the quieter run kept)",
            &discarded,
        ));
    }
    md.push_str(&summary_section(cfg, &runs));
    md.push_str(&ratio_section(cfg, &runs, false));
    md.push_str(&ratio_section(cfg, &runs, true));
    let _ = writeln!(
        md,
        "\n_Total shootout wall time: {:.0} s._",
        started.elapsed().as_secs_f64()
    );
    Ok(md)
}

fn one_run(
    rt: &tokio::runtime::Runtime,
    cfg: &BenchCfg,
    imp: Impl,
    mode: Mode,
) -> anyhow::Result<RunResult> {
    let server = ServerProc::spawn(imp, &cfg.opts)?;
    let load = LoadCfg {
        addr: server.addr,
        mode,
        conns: match mode {
            Mode::Rpc => cfg.rpc_conns,
            Mode::RpcLight => cfg.light_conns,
            Mode::Fanout => cfg.fanout_conns,
        },
        inflight: cfg.inflight,
        window: cfg.window,
        warmup: cfg.warmup,
        secs: cfg.secs,
        server_pid: Some(server.pid),
    };
    // Hard bound on a single run, whatever happens inside.
    let limit = cfg.warmup + cfg.secs + Duration::from_secs(60);
    let r = rt
        .block_on(async { tokio::time::timeout(limit, client::run(&load)).await })
        .map_err(|_| anyhow!("run exceeded {limit:?}"))??;
    drop(server);
    if r.msgs == 0 {
        bail!("no messages completed");
    }
    Ok(r)
}

fn probe_section(rt: &tokio::runtime::Runtime, cfg: &BenchCfg) -> anyhow::Result<String> {
    let mut md = String::new();
    let max = cfg.opts.max_msg;
    for app_close in [true, false] {
        let mut cols = Vec::new();
        for &imp in &cfg.impls {
            let opts = ServerOpts {
                app_close,
                ..cfg.opts.clone()
            };
            let server = ServerProc::spawn(imp, &opts)?;
            let res = rt.block_on(probe::run_probes(server.addr, server.pid, max));
            drop(server);
            eprintln!(
                "probes done: {} (app close handling: {app_close})",
                imp.name()
            );
            cols.push(res);
        }
        let title = if app_close {
            "Behaviour probes — app handles errors (matches the crate's error and sends 1009/1007)"
        } else {
            "Behaviour probes — crate alone (app just drops the connection on a read error)"
        };
        let _ = writeln!(
            md,
            "\n### {title}\n\nmax message size = {max} bytes. ✅ = wanted behaviour.\n"
        );
        let _ = write!(md, "| probe | wanted |");
        for imp in &cfg.impls {
            let _ = write!(md, " {} |", imp.name());
        }
        let _ = write!(md, "\n|---|---|");
        for _ in &cfg.impls {
            md.push_str("---|");
        }
        md.push('\n');
        let rows = cols.first().map(Vec::len).unwrap_or(0);
        for i in 0..rows {
            let _ = write!(md, "| {} | {} |", cols[0][i].name, cols[0][i].want);
            for col in &cols {
                let p = &col[i];
                let mark = if p.ok() { "✅" } else { "❌" };
                let _ = write!(md, " {mark} {} |", p.got);
            }
            md.push('\n');
        }
    }
    Ok(md)
}

/// Share of machine capacity (cores × window) that other processes may use before a run is
/// considered noisy and repeated.
const NOISE_FRACTION: f64 = 0.10;
/// Most noisy runs repeated in one shootout.
const MAX_RETRIES: usize = 6;

fn noise_capacity(cfg: &BenchCfg) -> f64 {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    cores as f64 * cfg.secs.as_secs_f64()
}

fn log_run(rep: usize, mode: Mode, imp: Impl, r: &RunResult) {
    eprintln!(
        "rep {} {:9} {:12} {:>9.0} msg/s  p50 {:>7.0}us  p99 {:>7.0}us  cpu/100k {:.3}s  other {:.2}s  lost {}  err {}",
        rep + 1,
        mode.name(),
        imp.name(),
        r.rate,
        r.p50_us,
        r.p99_us,
        r.cpu_per_100k,
        r.other_cpu_s,
        r.lost,
        r.errors
    );
}

fn raw_section(title: &str, runs: &[Run]) -> String {
    let mut md = format!(
        "\n### {title}\n\n| rep | workload | impl | msgs/s | p50 µs | p99 µs | server CPU s | CPU s /100k msgs | server RSS MiB | client CPU s | other CPU s | steal s | lost | client errors |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for run in runs {
        let r = &run.r;
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            run.rep + 1,
            run.mode.name(),
            run.imp.name(),
            fmt_num(r.rate),
            fmt_num(r.p50_us),
            fmt_num(r.p99_us),
            fmt_num(r.server_cpu_s),
            fmt_num(r.cpu_per_100k),
            fmt_num(r.server_rss_mib),
            fmt_num(r.client_cpu_s),
            fmt_num(r.other_cpu_s),
            fmt_num(r.steal_s),
            r.lost,
            r.errors
        );
    }
    md
}

type Metric = (&'static str, fn(&RunResult) -> f64);

const METRICS: [Metric; 5] = [
    ("msgs/s", |r| r.rate),
    ("p50 µs", |r| r.p50_us),
    ("p99 µs", |r| r.p99_us),
    ("CPU s/100k", |r| r.cpu_per_100k),
    ("server RSS MiB", |r| r.server_rss_mib),
];

fn cell(v: &[f64]) -> String {
    let (lo, hi) = min_max(v);
    format!("{} [{}–{}]", fmt_num(median(v)), fmt_num(lo), fmt_num(hi))
}

fn summary_section(cfg: &BenchCfg, runs: &[Run]) -> String {
    let mut md =
        String::from("\n### Summary: median [min–max] over repetitions\n\n| workload | impl |");
    for (name, _) in METRICS {
        let _ = write!(md, " {name} |");
    }
    md.push_str("\n|---|---|---|---|---|---|---|\n");
    for &mode in &cfg.modes {
        for &imp in &cfg.impls {
            let _ = write!(md, "| {} | {} |", mode.name(), imp.label());
            for (_, f) in METRICS {
                let v: Vec<f64> = runs
                    .iter()
                    .filter(|r| r.mode == mode && r.imp == imp)
                    .map(|r| f(&r.r))
                    .collect();
                let _ = write!(md, " {} |", cell(&v));
            }
            md.push('\n');
        }
    }
    md
}

/// Ratios against the axum baseline, paired within each repetition (same session, adjacent
/// runs), then median [min–max] over repetitions. With `quiet_only`, a pair counts only if
/// neither run saw other processes use more than `NOISE_FRACTION` of the machine.
fn ratio_section(cfg: &BenchCfg, runs: &[Run], quiet_only: bool) -> String {
    let limit = NOISE_FRACTION * noise_capacity(cfg);
    let title = if quiet_only {
        "Ratio vs axum baseline, quiet pairs only (other CPU ≤ 10% in both runs)"
    } else {
        "Ratio vs axum baseline (paired per repetition, all runs)"
    };
    let mut md = format!(
        "\n### {title}: median [min–max]\n\nmsgs/s: higher is better; latency, CPU and RSS: lower is better.\n\n| workload | impl | pairs |",
    );
    for (name, _) in METRICS {
        let _ = write!(md, " {name} |");
    }
    md.push_str("\n|---|---|---|---|---|---|---|---|\n");
    for &mode in &cfg.modes {
        for &imp in &cfg.impls {
            let pairs: Vec<(&RunResult, &RunResult)> = (0..cfg.reps)
                .filter_map(|rep| {
                    let get = |i: Impl| {
                        runs.iter()
                            .find(|r| r.rep == rep && r.mode == mode && r.imp == i)
                            .map(|r| &r.r)
                    };
                    let (x, b) = (get(imp)?, get(Impl::Axum)?);
                    let quiet = x.other_cpu_s <= limit && b.other_cpu_s <= limit;
                    (quiet || !quiet_only).then_some((x, b))
                })
                .collect();
            let _ = write!(md, "| {} | {} | {} |", mode.name(), imp.name(), pairs.len());
            for (_, f) in METRICS {
                let ratios: Vec<f64> = pairs.iter().map(|(x, b)| f(x) / f(b)).collect();
                if ratios.is_empty() {
                    md.push_str(" n/a |");
                    continue;
                }
                let (lo, hi) = min_max(&ratios);
                let _ = write!(md, " {:.2} [{:.2}–{:.2}] |", median(&ratios), lo, hi);
            }
            md.push('\n');
        }
    }
    md
}
