//! The browser end-to-end tests, run by `cargo test --workspace`. Each starts
//! the real `wsring dev` binary (3 nodes, a short heartbeat TTL so crash
//! steps are quick) and runs one script from `e2e/` against its dashboard URL
//! in headless Chromium (playwright-core):
//!
//! * `e2e/dashboard.test.mjs` — the dashboard: load, 30 simulated clients,
//!   add node, crash node, messaging, 300 clients, phone layout, no console
//!   errors;
//! * `e2e/client.test.mjs` — the JS client module against a `--durable`
//!   cluster: resume after a crash, reconnect after `moved`, exactly-once
//!   delivery to the application;
//! * `e2e/auth.test.mjs` — a secured cluster: the dashboard locked until
//!   the API key is entered, the JS client connecting with a token.
//!
//! They need Node.js, `e2e/node_modules/playwright-core` and Debian's
//! Chromium (`/usr/bin/chromium`, or `CHROMIUM_PATH`). So that the plain
//! `cargo test --workspace` runs them on a fresh machine, the first test to
//! start installs what is missing: `npm ci` in `e2e/` (from its lock file),
//! and, when running as root, `apt-get install chromium` (never a browser
//! build of playwright's own). `WSRING_BROWSER_INSTALL=0` turns that off.
//! When a prerequisite is still missing the tests print `SKIPPED: <why>` and
//! the one command that fixes it straight to the terminal (not through the
//! captured test output, so the skip is visible in a normal run) and pass,
//! unless `WSRING_REQUIRE_BROWSER=1` (CI), which makes a skip a failure.

mod common;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::OnceCell;

/// Upper bound for the whole browser run (the script itself gives up at 240 s).
const E2E_LIMIT: Duration = Duration::from_secs(300);
/// Upper bound for installing a prerequisite (apt may wait for its lock).
const INSTALL_LIMIT: Duration = Duration::from_secs(900);

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn chromium() -> PathBuf {
    std::env::var_os("CHROMIUM_PATH")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"))
}

fn say(msg: &str) {
    common::prereq::say("dashboard_e2e", msg);
}

/// Runs an install command (see [`common::prereq::run`]).
async fn run(program: &str, args: &[&str], dir: &Path) -> Result<(), String> {
    common::prereq::run(Path::new(program), args, dir, INSTALL_LIMIT).await
}

fn installing_allowed() -> bool {
    std::env::var("WSRING_BROWSER_INSTALL").as_deref() != Ok("0")
}

/// Installs Debian's chromium with apt (root only); `apt-get update` only
/// if the package cannot be found without it.
async fn install_chromium() -> Result<(), String> {
    const FIX: &str = "run `sudo apt-get install chromium` (Debian's package, /usr/bin/chromium)";
    if !installing_allowed() {
        return Err(format!("{} is missing; {FIX}", chromium().display()));
    }
    if std::env::var_os("CHROMIUM_PATH").is_some() {
        return Err(format!(
            "CHROMIUM_PATH={} does not exist",
            chromium().display()
        ));
    }
    // /proc/self belongs to the process's effective user.
    let root = std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false);
    if !root {
        return Err(format!("/usr/bin/chromium is missing; {FIX}"));
    }
    say("installing chromium (apt-get install chromium) for the browser tests…");
    let root = Path::new("/");
    let install = [
        "-o",
        "DPkg::Lock::Timeout=600",
        "install",
        "-y",
        "-qq",
        "chromium",
    ];
    if run("apt-get", &install, root).await.is_err() {
        run(
            "apt-get",
            &["-o", "DPkg::Lock::Timeout=600", "update", "-qq"],
            root,
        )
        .await?;
        run("apt-get", &install, root).await?;
    }
    say("chromium installed");
    Ok(())
}

/// Installs e2e/'s locked npm dependencies (playwright-core only).
async fn install_npm_deps(e2e: &Path) -> Result<(), String> {
    const FIX: &str = "run `npm ci --prefix e2e`";
    if !installing_allowed() {
        return Err(format!(
            "e2e/node_modules/playwright-core is missing; {FIX}"
        ));
    }
    say("installing e2e's npm dependencies (npm ci in e2e/)…");
    run(
        "npm",
        &["ci", "--no-audit", "--no-fund", "--loglevel=error"],
        e2e,
    )
    .await
    .map_err(|e| format!("{e}; {FIX}"))?;
    say("npm dependencies installed");
    Ok(())
}

/// Makes the browser tests runnable here, once per test process: returns
/// why they cannot run, if they cannot.
async fn prerequisites() -> Option<String> {
    static READY: OnceCell<Option<String>> = OnceCell::const_new();
    READY
        .get_or_init(|| async {
            let node = Command::new("node")
                .arg("--version")
                .stdin(Stdio::null())
                .output()
                .await;
            match node {
                Ok(out) if out.status.success() => {}
                _ => {
                    return Some(
                        "Node.js is not installed; run `sudo apt-get install nodejs npm` (Node 20 or later)"
                            .into(),
                    );
                }
            }
            let e2e = repo_root().join("e2e");
            if !e2e.join("node_modules/playwright-core").exists()
                && let Err(why) = install_npm_deps(&e2e).await
            {
                return Some(why);
            }
            if !chromium().exists()
                && let Err(why) = install_chromium().await
            {
                return Some(why);
            }
            None
        })
        .await
        .clone()
}

/// Starts `wsring dev` (plus `extra` flags) and returns it with its dashboard URL.
async fn start_dev(extra: &[&str]) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_wsring"))
        .args([
            "dev",
            "--port",
            "0",
            "--nodes",
            "3",
            "--heartbeat-ttl",
            "1200ms",
        ])
        .args(extra)
        // The crash step makes the gateway warn about the dead node; that is
        // expected, so only errors reach the test output.
        .env("RUST_LOG", "error")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn wsring dev");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match lines.next_line().await {
                Ok(Some(l)) if l.contains("gateway") => return l,
                Ok(Some(_)) => continue,
                other => panic!("wsring dev exited during start-up: {other:?}"),
            }
        }
    })
    .await
    .expect("wsring dev printed its gateway line within 30 s");
    // Keep draining stdout so the process never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    // "  gateway    ws://127.0.0.1:PORT/ws   (dashboard http://127.0.0.1:PORT/)"
    let ws = line
        .split_whitespace()
        .nth(1)
        .unwrap_or_else(|| panic!("no URL in {line:?}"));
    let http = ws.replacen("ws://", "http://", 1);
    let dashboard = format!("{}/", http.strip_suffix("/ws").unwrap_or(&http));
    (child, dashboard)
}

/// One browser at a time: the tests in this file would otherwise run two
/// Chromiums and two clusters at once on a 2-core machine.
static BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Runs `node e2e/<script>` against a fresh `wsring dev <extra>` cluster.
async fn run_e2e(script: &str, extra: &[&str]) {
    if let Some(why) = prerequisites().await {
        assert!(
            std::env::var("WSRING_REQUIRE_BROWSER").as_deref() != Ok("1"),
            "browser e2e required (WSRING_REQUIRE_BROWSER=1) but {why}"
        );
        say(&format!("SKIPPED e2e/{script}: {why}"));
        return;
    }
    let _one_at_a_time = BROWSER.lock().await;
    let (mut dev, dashboard) = start_dev(extra).await;
    println!("{script}: dashboard at {dashboard}");

    let run = tokio::time::timeout(
        E2E_LIMIT,
        Command::new("node")
            .arg(format!("e2e/{script}"))
            .current_dir(repo_root())
            .env("WSRING_DASHBOARD_URL", &dashboard)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await;

    // Stop the cluster gracefully first (SIGTERM), whatever the outcome;
    // kill_on_drop is the fallback if it does not exit in time.
    if let Some(pid) = dev.id().and_then(|p| i32::try_from(p).ok()) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        let _ = tokio::time::timeout(Duration::from_secs(10), dev.wait()).await;
    }

    let out = run
        .unwrap_or_else(|_| panic!("e2e/{script} did not finish within {E2E_LIMIT:?}"))
        .expect("run node");
    println!("{}", String::from_utf8_lossy(&out.stdout));
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        out.status.success(),
        "e2e/{script} failed ({}); screenshots are in artifacts/",
        out.status
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_in_headless_chromium() {
    run_e2e("dashboard.test.mjs", &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn js_client_durable_in_headless_chromium() {
    run_e2e("client.test.mjs", &["--durable"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secured_dashboard_and_js_client_in_headless_chromium() {
    run_e2e(
        "auth.test.mjs",
        &["--jwt-secret", "e2e-jwt-secret", "--api-key", "e2e-api-key"],
    )
    .await;
}
