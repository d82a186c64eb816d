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
//!   delivery to the application.
//!
//! They need `node`, `/usr/bin/chromium` (or `CHROMIUM_PATH`) and
//! `e2e/node_modules/playwright-core` (`.ci/browser` installs them). When one
//! is missing a test prints `SKIPPED: <why>` and passes, unless
//! `WSRING_REQUIRE_BROWSER=1` (CI), which turns a skip into a failure.

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Upper bound for the whole browser run (the script itself gives up at 240 s).
const E2E_LIMIT: Duration = Duration::from_secs(300);

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn chromium() -> PathBuf {
    std::env::var_os("CHROMIUM_PATH")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"))
}

/// Why the browser test cannot run here, if it cannot.
async fn missing_prerequisite() -> Option<String> {
    let node = Command::new("node")
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .await;
    match node {
        Ok(out) if out.status.success() => {}
        Ok(out) => return Some(format!("`node --version` failed: {}", out.status)),
        Err(e) => return Some(format!("node is not installed ({e})")),
    }
    let chromium = chromium();
    if !chromium.exists() {
        return Some(format!("{} is missing", chromium.display()));
    }
    let pw = repo_root().join("e2e/node_modules/playwright-core");
    if !pw.exists() {
        return Some(format!(
            "{} is missing (run .ci/browser or `npm ci` in e2e/)",
            pw.display()
        ));
    }
    None
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
    if let Some(why) = missing_prerequisite().await {
        assert!(
            std::env::var("WSRING_REQUIRE_BROWSER").as_deref() != Ok("1"),
            "browser e2e required (WSRING_REQUIRE_BROWSER=1) but {why}"
        );
        println!("SKIPPED: {why}");
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
