//! The browser end-to-end tests of the dashboard, run by `cargo test
//! --workspace`. Each starts the real `wsring dev` binary (3 nodes, a short
//! heartbeat TTL so crash steps are quick) and runs one script from `e2e/`
//! against its dashboard URL in headless Chromium (playwright-core):
//!
//! * `e2e/dashboard.test.mjs` — the dashboard: load, 30 simulated clients,
//!   add node, crash node, messaging, 300 clients, phone layout, no console
//!   errors;
//! * `e2e/auth.test.mjs` — a secured cluster: the dashboard locked until
//!   the API key is entered, the JS client (as the gateway serves it)
//!   connecting with a token.
//!
//! The JS client's own tests, in Node and in Chromium, are in
//! `js_package.rs`. These need Node.js, `e2e/node_modules/playwright-core`
//! and Debian's Chromium (`/usr/bin/chromium`, or `CHROMIUM_PATH`); what is
//! missing is installed, or the test is skipped visibly, as
//! `common::js` describes.

mod common;

use common::js::{self, Needs};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Upper bound for the whole browser run (the script itself gives up at 240 s).
const E2E_LIMIT: Duration = Duration::from_secs(300);

/// What the scripts in `e2e/` need.
const E2E: Needs = Needs {
    dir: "e2e",
    packages: &["playwright-core"],
    chromium: true,
};

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
    if let Some(why) = js::prerequisites(&E2E).await {
        js::skip(&format!("e2e/{script}"), &why);
        return;
    }
    let _one_at_a_time = BROWSER.lock().await;
    let (mut dev, dashboard) = start_dev(extra).await;
    println!("{script}: dashboard at {dashboard}");

    let run = js::run_node(
        "e2e",
        &[script],
        &[("WSRING_DASHBOARD_URL", &dashboard)],
        E2E_LIMIT,
    )
    .await;

    // Stop the cluster gracefully first (SIGTERM), whatever the outcome;
    // kill_on_drop is the fallback if it does not exit in time.
    if let Some(pid) = dev.id().and_then(|p| i32::try_from(p).ok()) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        let _ = tokio::time::timeout(Duration::from_secs(10), dev.wait()).await;
    }

    js::check_output(
        &format!("e2e/{script}"),
        run,
        "screenshots are in artifacts/",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_in_headless_chromium() {
    run_e2e("dashboard.test.mjs", &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secured_dashboard_and_js_client_in_headless_chromium() {
    run_e2e(
        "auth.test.mjs",
        &["--jwt-secret", "e2e-jwt-secret", "--api-key", "e2e-api-key"],
    )
    .await;
}
