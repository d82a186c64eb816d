//! WebSocket conformance: the Autobahn test suite's fuzzing client against
//! `wsring node --autobahn-echo`, strictly.
//!
//! The runner is `kosoku` (PyPI), which drives Autobahn's own case files.
//! Every case of groups 1 to 10 runs (framing, pings and pongs, reserved
//! bits, opcodes, fragmentation, UTF-8, close handling, limits and
//! performance). Each case must come out `OK` for both its behaviour and
//! its close behaviour — not `NON-STRICT`, not `FAILED` — except the three
//! that the suite itself marks `INFORMATIONAL` whatever the server does,
//! listed in [`INFORMATIONAL`].
//!
//! Groups 12 and 13 (permessage-deflate: messages of every size, fragmented
//! and not, under every offer of window sizes and context takeover) run
//! separately, four cases at a time, and must all come out `OK` too, never
//! `UNIMPLEMENTED`, `NON-STRICT` or `FAILED`. kosoku 0.1.0 cannot run some of
//! them at all: its port of the case file fails with `Strings must be
//! encoded before hashing` before it opens a connection. Such a case is
//! reported `ERROR` with no HTTP request in its report; the test accepts
//! exactly that (the server was never contacted), prints how many there
//! were, and requires every other case, at least one of each subgroup, to
//! be `OK`.
//!
//! Python's `websockets` (installed next to the runner) negotiates deflate
//! with a node and through a gateway, and exchanges compressed messages
//! both ways; headless Chromium (`e2e/deflate.test.mjs`) negotiates it with
//! a node and round-trips messages.
//!
//! The test finds the runner in `WSRING_KOSOKU` (a path), on `PATH`, or in a
//! virtual environment under the target directory; when it is in none of
//! them it creates that environment and installs `kosoku` from PyPI into
//! it (`WSRING_AUTOBAHN_INSTALL=0` forbids that). When it still cannot run,
//! it prints `SKIPPED: <why>` with the command that fixes it straight to
//! the terminal and passes, unless `WSRING_REQUIRE_AUTOBAHN=1` (CI), which
//! makes the skip a failure.
//!
//! A second run goes through a gateway in front of an echo node and must
//! come out the same, case for case: the tunnel changes nothing.
//!
//! The other tests here need no runner: echo mode echoes text and binary at
//! any path, says it is a test mode at start-up, and keeps its limits.

mod common;

use futures::{SinkExt, StreamExt};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpListener;
use tokio::process::{Child, Command};
use tokio::sync::OnceCell;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_util::sync::CancellationToken;
use wsring_cluster::memory::MemoryBackend;
use wsring_cluster::{Membership, MembershipConfig, Retention};
use wsring_gateway::GatewayConfig;
use wsring_node::{NodeConfig, NodeDeps};

/// The runner's version installed when none is found.
const KOSOKU: &str = "kosoku==0.1.0";
/// Upper bound for the whole suite (it takes about 15 s here).
const RUN_LIMIT: Duration = Duration::from_secs(600);
/// Upper bound for creating the environment and installing the runner.
const INSTALL_LIMIT: Duration = Duration::from_secs(300);
/// Upper bound for anything else.
const WAIT: Duration = Duration::from_secs(30);

/// The cases the suite reports as `INFORMATIONAL` whatever the server does
/// (their case files override the verdict), with the close code wsring
/// answers each with.
///
/// * 7.1.6: a 256 KiB message, a short one, a close and a ping sent back to
///   back — the case only records whether the messages were echoed before
///   the close was processed (wsring echoes both, then closes with 1000);
/// * 7.13.1 and 7.13.2: close codes 5000 and 65535, whose handling "is
///   undefined by the spec" — wsring refuses both as invalid with 1002.
const INFORMATIONAL: [(&str, u16); 3] = [("7.1.6", 1000), ("7.13.1", 1002), ("7.13.2", 1002)];

/// The case groups Autobahn's fuzzing client has below 12 (there is no 8
/// or 11); each must have run.
const GROUPS: [&str; 9] = ["1", "2", "3", "4", "5", "6", "7", "9", "10"];

fn say(msg: &str) {
    common::prereq::say("autobahn", msg);
}

fn tmp() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
}

/// Runs an install command (see [`common::prereq::run`]).
async fn run(program: &Path, args: &[&str]) -> Result<(), String> {
    common::prereq::run(program, args, &tmp(), INSTALL_LIMIT).await
}

/// Whether `program --help` runs.
async fn runs(program: &Path) -> bool {
    let out = Command::new(program)
        .arg("--help")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .status();
    matches!(tokio::time::timeout(WAIT, out).await, Ok(Ok(s)) if s.success())
}

/// The runner to use, installed if need be, once per test process; `Err`
/// says why there is none and how to get one.
async fn kosoku() -> Result<PathBuf, String> {
    static FOUND: OnceCell<Result<PathBuf, String>> = OnceCell::const_new();
    FOUND
        .get_or_init(|| async {
            if let Some(path) = std::env::var_os("WSRING_KOSOKU") {
                let path = PathBuf::from(path);
                return if runs(&path).await {
                    Ok(path)
                } else {
                    Err(format!("WSRING_KOSOKU={} does not run", path.display()))
                };
            }
            let on_path = PathBuf::from("kosoku");
            if runs(&on_path).await {
                return Ok(on_path);
            }
            let venv = tmp().join("kosoku-venv");
            let installed = venv.join("bin/kosoku");
            if runs(&installed).await {
                return Ok(installed);
            }
            let fix = format!(
                "run `python3 -m venv {0} && {0}/bin/pip install {KOSOKU}` \
                 (Python 3.10 or later; on Debian `apt-get install python3-venv` first), \
                 or put `kosoku` on PATH, or set WSRING_KOSOKU",
                venv.display()
            );
            if std::env::var("WSRING_AUTOBAHN_INSTALL").as_deref() == Ok("0") {
                return Err(format!("kosoku is not installed; {fix}"));
            }
            say(&format!(
                "installing the Autobahn runner ({KOSOKU}, PyPI) into {}…",
                venv.display()
            ));
            let venv_arg = venv.to_string_lossy();
            run(Path::new("python3"), &["-m", "venv", &venv_arg])
                .await
                .map_err(|e| format!("{e}; {fix}"))?;
            run(&venv.join("bin/pip"), &["install", "--quiet", KOSOKU])
                .await
                .map_err(|e| format!("{e}; {fix}"))?;
            if !runs(&installed).await {
                return Err(format!(
                    "{} does not run after installing; {fix}",
                    installed.display()
                ));
            }
            say("kosoku installed");
            Ok(installed)
        })
        .await
        .clone()
}

/// A running `wsring node --autobahn-echo`, with its log lines collected.
struct EchoNode {
    child: Child,
    /// `127.0.0.1:PORT`.
    addr: String,
    log: Arc<Mutex<Vec<String>>>,
}

impl EchoNode {
    async fn start(extra: &[&str]) -> EchoNode {
        let mut child = Command::new(env!("CARGO_BIN_EXE_wsring"))
            .args(["node", "--autobahn-echo", "--listen", "127.0.0.1:0"])
            .args(extra)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .env_remove("WSRING_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn wsring node --autobahn-echo");
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut stderr = BufReader::new(child.stderr.take().expect("stderr")).lines();
        let lines = Arc::clone(&log);
        tokio::spawn(async move {
            while let Ok(Some(line)) = stderr.next_line().await {
                lines.lock().expect("log lock").push(line);
            }
        });
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout")).lines();
        // "wsring node autobahn serving ws://127.0.0.1:PORT/ws"
        let line = tokio::time::timeout(WAIT, stdout.next_line())
            .await
            .expect("the echo node starts within 30 s")
            .expect("stdout")
            .unwrap_or_else(|| panic!("the echo node exited: {:?}", log.lock()));
        tokio::spawn(async move { while let Ok(Some(_)) = stdout.next_line().await {} });
        let addr = line
            .split("ws://")
            .nth(1)
            .and_then(|rest| rest.strip_suffix("/ws"))
            .unwrap_or_else(|| panic!("no URL in {line:?}"))
            .to_owned();
        EchoNode { child, addr, log }
    }

    /// Stops the node with SIGTERM and returns its log; it must exit 0.
    async fn stop(mut self) -> Vec<String> {
        let pid = self.child.id().and_then(|p| i32::try_from(p).ok());
        if let Some(pid) = pid {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
        let status = tokio::time::timeout(WAIT, self.child.wait())
            .await
            .expect("the echo node exits within 30 s of SIGTERM")
            .expect("wait");
        // The log reader sees the end of stderr shortly after the exit.
        let deadline = tokio::time::Instant::now() + WAIT;
        while Arc::strong_count(&self.log) > 1 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let log = self.log.lock().expect("log lock").clone();
        assert!(
            status.success(),
            "the echo node exited with {status}: {log:#?}"
        );
        log
    }
}

/// A healthy run logs nothing at WARN or ERROR.
fn assert_quiet(log: &[String]) {
    let loud: Vec<&String> = log
        .iter()
        .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
        .collect();
    assert!(
        loud.is_empty(),
        "WARN/ERROR lines in a healthy run: {loud:#?}"
    );
}

/// `index.json` of a report: case id → (behaviour, close behaviour, the
/// close code the server sent).
fn verdicts(report: &Path) -> BTreeMap<String, (String, String, Option<u64>)> {
    let index = report.join("index.json");
    let text = std::fs::read_to_string(&index)
        .unwrap_or_else(|e| panic!("no report at {}: {e}", index.display()));
    let json: Value = serde_json::from_str(&text).expect("index.json is JSON");
    let agents = json.as_object().expect("index.json: agents");
    assert_eq!(agents.len(), 1, "one agent in {}", index.display());
    let mut out = BTreeMap::new();
    for cases in agents.values() {
        for (id, case) in cases.as_object().expect("index.json: cases") {
            let field = |k: &str| case[k].as_str().unwrap_or("(missing)").to_owned();
            out.insert(
                id.clone(),
                (
                    field("behavior"),
                    field("behaviorClose"),
                    case["remoteCloseCode"].as_u64(),
                ),
            );
        }
    }
    out
}

/// The runner, or `None` after printing why the suite is skipped (a
/// failure under `WSRING_REQUIRE_AUTOBAHN=1`).
async fn runner_or_skip() -> Option<PathBuf> {
    match kosoku().await {
        Ok(path) => Some(path),
        Err(why) => {
            assert!(
                std::env::var("WSRING_REQUIRE_AUTOBAHN").as_deref() != Ok("1"),
                "the Autobahn suite is required (WSRING_REQUIRE_AUTOBAHN=1) but {why}"
            );
            say(&format!("SKIPPED: {why}"));
            None
        }
    }
}

/// One suite at a time: two runs at once on a 2-core machine would only
/// slow each other down.
static SUITE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Runs the suite (groups 1–10) with `runner` against `target` (`host:port`
/// or a `ws://` URL), its report in `<target dir>/tmp/<name>`, and asserts
/// that every case is strictly as expected.
async fn run_suite(runner: &Path, target: &str, name: &str) {
    let _one_at_a_time = SUITE.lock().await;
    let report = tmp().join(name);
    let _ = std::fs::remove_dir_all(&report);
    let report_arg = report.to_string_lossy().into_owned();
    let started = std::time::Instant::now();
    let out = tokio::time::timeout(
        RUN_LIMIT,
        Command::new(runner)
            .args(["-m", "fuzzingclient", "-x", "12.*", "-x", "13.*"])
            .args(["-o", &report_arg, target])
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .unwrap_or_else(|_| panic!("the Autobahn suite did not finish within {RUN_LIMIT:?}"))
    .expect("run kosoku");
    let took = started.elapsed();
    let runner_output = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let verdicts = verdicts(&report);
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    let mut wrong = Vec::new();
    for (id, (behavior, close, code)) in &verdicts {
        *counts.entry(behavior.clone()).or_default() += 1;
        let verdict = match INFORMATIONAL.iter().find(|(i, _)| i == id) {
            Some((_, want)) => {
                behavior == "INFORMATIONAL"
                    && close == "INFORMATIONAL"
                    && *code == Some(u64::from(*want))
            }
            None => behavior == "OK" && close == "OK",
        };
        if !verdict {
            wrong.push(format!("{id}: {behavior} / {close}, close code {code:?}"));
        }
    }
    println!(
        "Autobahn against {target}: {} cases in {:.1?}: {counts:?}; report in {}",
        verdicts.len(),
        took,
        report.display()
    );
    assert!(
        wrong.is_empty(),
        "cases not strictly as expected (details: {}/index.html):\n  {}\nrunner output:\n{runner_output}",
        report.display(),
        wrong.join("\n  ")
    );
    for group in GROUPS {
        assert!(
            verdicts
                .keys()
                .any(|id| id.split('.').next() == Some(group)),
            "no case of group {group} ran:\n{runner_output}"
        );
    }
    assert!(
        !verdicts
            .keys()
            .any(|id| id.starts_with("12.") || id.starts_with("13.")),
        "the compression cases are excluded"
    );
    for (id, _) in INFORMATIONAL {
        assert!(verdicts.contains_key(id), "{id} ran");
    }
    assert!(
        out.status.success(),
        "kosoku exited with {}:\n{runner_output}",
        out.status
    );
}

/// The permessage-deflate subgroups; each must have cases that ran.
const COMPRESSION_GROUPS: [&str; 12] = [
    "12.1", "12.2", "12.3", "12.4", "12.5", "13.1", "13.2", "13.3", "13.4", "13.5", "13.6", "13.7",
];

/// Whether the case report `file` in `report` shows the runner never
/// contacted the server (no HTTP request): its failure is the runner's own.
fn never_connected(report: &Path, file: &str) -> bool {
    let Ok(text) = std::fs::read_to_string(report.join(file)) else {
        return false;
    };
    let Ok(case) = serde_json::from_str::<Value>(&text) else {
        return false;
    };
    case["httpRequest"].as_str() == Some("") && case["started"].as_str() == Some("")
}

/// Runs groups 12 and 13 (permessage-deflate) with `runner` against
/// `target`, report in `<target dir>/tmp/<name>`: every case strictly `OK`,
/// except those the runner fails before connecting (see the module docs).
async fn run_compression_suite(runner: &Path, target: &str, name: &str) {
    let _one_at_a_time = SUITE.lock().await;
    let report = tmp().join(name);
    let _ = std::fs::remove_dir_all(&report);
    let report_arg = report.to_string_lossy().into_owned();
    let started = std::time::Instant::now();
    let out = tokio::time::timeout(
        RUN_LIMIT,
        Command::new(runner)
            .args(["-m", "fuzzingclient", "-i", "12.*", "-i", "13.*", "-p", "4"])
            .args(["-o", &report_arg, target])
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .unwrap_or_else(|_| panic!("the compression cases did not finish within {RUN_LIMIT:?}"))
    .expect("run kosoku");
    let took = started.elapsed();
    let runner_output = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let index: Value = serde_json::from_str(
        &std::fs::read_to_string(report.join("index.json")).expect("index.json"),
    )
    .expect("index.json is JSON");
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    let (mut ok, mut runner_failed, mut wrong) = (Vec::new(), 0, Vec::new());
    for cases in index.as_object().expect("agents").values() {
        for (id, case) in cases.as_object().expect("cases") {
            let behavior = case["behavior"].as_str().unwrap_or("(missing)");
            let close = case["behaviorClose"].as_str().unwrap_or("(missing)");
            *counts.entry(behavior.to_owned()).or_default() += 1;
            if behavior == "OK" && close == "OK" {
                ok.push(id.clone());
            } else if behavior == "ERROR"
                && never_connected(&report, case["reportfile"].as_str().unwrap_or_default())
            {
                runner_failed += 1;
            } else {
                wrong.push(format!("{id}: {behavior} / {close}"));
            }
        }
    }
    println!(
        "Autobahn 12.* and 13.* against {target}: {} OK, {runner_failed} not run by the runner, in {took:.1?}: {counts:?}; report in {}",
        ok.len(),
        report.display()
    );
    assert!(
        wrong.is_empty(),
        "compression cases not strictly OK (details: {}/index.html):\n  {}\nrunner output:\n{runner_output}",
        report.display(),
        wrong.join("\n  ")
    );
    for group in COMPRESSION_GROUPS {
        assert!(
            ok.iter().any(|id| id.starts_with(&format!("{group}."))),
            "no case of group {group} came out OK:\n{runner_output}"
        );
    }
    assert!(ok.len() >= 100, "only {} cases ran OK", ok.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn autobahn_compression_cases_are_strictly_ok() {
    let Some(runner) = runner_or_skip().await else {
        return;
    };
    let node = EchoNode::start(&[]).await;
    run_compression_suite(&runner, &node.addr, "autobahn-deflate-report").await;
    let log = node.stop().await;
    assert_quiet(&log);
}

/// The same cases with both context takeovers allowed: the node keeps a
/// compressor per connection whose offer lets it, and the client's inflater.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn autobahn_compression_cases_with_context_takeover_are_strictly_ok() {
    let Some(runner) = runner_or_skip().await else {
        return;
    };
    let node = EchoNode::start(&[
        "--deflate-server-context-takeover",
        "--deflate-client-context-takeover",
    ])
    .await;
    run_compression_suite(&runner, &node.addr, "autobahn-deflate-takeover-report").await;
    let log = node.stop().await;
    assert_quiet(&log);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn autobahn_compression_cases_through_the_gateway() {
    let Some(runner) = runner_or_skip().await else {
        return;
    };
    let (_node, gateway, stop) = echo_behind_gateway().await;
    let url = format!("ws://{}/ws?user=autobahn", gateway.addr());
    run_compression_suite(&runner, &url, "autobahn-deflate-gateway-report").await;
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn autobahn_fuzzing_client_finds_every_case_strictly_ok() {
    let Some(runner) = runner_or_skip().await else {
        return;
    };
    let node = EchoNode::start(&[]).await;
    run_suite(&runner, &node.addr, "autobahn-report").await;
    let log = node.stop().await;
    assert_quiet(&log);
}

/// A member of the cluster on `backend`, stopped by `stop`.
async fn membership(backend: &MemoryBackend, stop: &CancellationToken) -> Arc<Membership> {
    Membership::start(
        backend.registry.clone(),
        MembershipConfig::default(),
        stop.clone(),
    )
    .await
    .expect("membership")
}

/// The same suite through a gateway in front of an echo node: the gateway
/// routes `/ws?user=…` as it always does (authentication off, as under
/// `wsring dev`) and then only tunnels bytes, so every verdict must be the
/// same as against the node itself.
/// An in-process echo node behind an in-process gateway on one in-memory
/// cluster, both stopped by the returned token.
async fn echo_behind_gateway() -> (
    wsring_node::NodeHandle,
    wsring_gateway::GatewayHandle,
    CancellationToken,
) {
    let stop = CancellationToken::new();
    let backend = MemoryBackend::new(Retention::default());
    let open = Arc::new(wsring_auth::Security::open());
    let node_membership = membership(&backend, &stop).await;
    let (broker, inbox) = backend.hub.connect();
    let node = wsring_node::start(
        NodeConfig::new("n1").into_echo(),
        TcpListener::bind("127.0.0.1:0").await.expect("bind node"),
        NodeDeps {
            membership: node_membership,
            broker,
            inbox,
            streams: None,
            server_rooms: backend.rooms.clone(),
            hook_queue: None,
            security: Arc::clone(&open),
            kill: stop.clone(),
        },
    )
    .await
    .expect("echo node");
    let gateway_membership = membership(&backend, &stop).await;
    let gateway = wsring_gateway::start(
        GatewayConfig::default(),
        TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind gateway"),
        gateway_membership,
        None,
        open,
        stop.clone(),
    )
    .await
    .expect("gateway");
    (node, gateway, stop)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn autobahn_through_the_gateway_finds_the_same() {
    let Some(runner) = runner_or_skip().await else {
        return;
    };
    let (node, gateway, stop) = echo_behind_gateway().await;
    let url = format!("ws://{}/ws?user=autobahn", gateway.addr());
    run_suite(&runner, &url, "autobahn-gateway-report").await;
    // Every session behind the tunnel ends once its case is over.
    let deadline = tokio::time::Instant::now() + WAIT;
    while node.connections() > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} sessions still open 30 s after the suite",
            node.connections()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_mode_echoes_at_any_path_and_says_it_is_a_test_mode() {
    let node = EchoNode::start(&[]).await;
    for path in ["/", "/ws", "/any/path?x=1"] {
        let url = format!("ws://{}{path}", node.addr);
        let (mut ws, response) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(&url))
            .await
            .expect("connect in time")
            .unwrap_or_else(|e| panic!("{url}: {e}"));
        // No compression is offered.
        assert!(
            response.headers().get("sec-websocket-extensions").is_none(),
            "{:?}",
            response.headers()
        );
        let sent = [
            Message::Text("κόσμε".into()),
            Message::Binary(vec![0, 255, 1, 254].into()),
            Message::Text(String::new().into()),
            // Over the production default of 64 KiB: echo mode raises it.
            Message::Binary(vec![7; 1 << 20].into()),
        ];
        for msg in sent {
            ws.send(msg.clone()).await.expect("send");
            let echoed = tokio::time::timeout(WAIT, ws.next())
                .await
                .expect("echo in time")
                .expect("open")
                .expect("a message");
            assert_eq!(echoed, msg, "{url}");
        }
        ws.close(None).await.expect("close");
    }
    let log = node.stop().await;
    assert!(
        log.iter()
            .any(|l| l.contains(" INFO ") && l.contains("TEST MODE (--autobahn-echo)")),
        "the start-up log says it is a test mode: {log:#?}"
    );
    assert_quiet(&log);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_mode_keeps_a_limit_and_refuses_plain_http() {
    // An explicit message limit above the echo minimum stands; a message
    // over it closes with 1009.
    let node = EchoNode::start(&["--max-message-bytes", "20000000"]).await;
    let url = format!("ws://{}/", node.addr);
    let (mut ws, _) = tokio_tungstenite::connect_async(&url)
        .await
        .expect("connect");
    ws.send(Message::Binary(vec![1; 20_000_001].into()))
        .await
        .expect("send");
    // The first thing back is the close frame: nothing was echoed.
    let close = match tokio::time::timeout(WAIT, ws.next())
        .await
        .expect("in time")
    {
        Some(Ok(Message::Close(frame))) => frame,
        Some(Ok(other)) => panic!("unexpected {other:?}"),
        Some(Err(e)) => panic!("no close frame: {e}"),
        None => panic!("closed without a close frame"),
    };
    assert_eq!(close.map(|f| f.code), Some(CloseCode::Size));

    // A plain HTTP request is not an upgrade: a JSON 400.
    let resp = common::http()
        .get(format!("http://{}/anything", node.addr))
        .timeout(WAIT)
        .send()
        .await
        .expect("HTTP answer");
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.expect("JSON body");
    assert_eq!(body["error"]["code"], "bad_request", "{body}");
    drop(ws);
    let log = node.stop().await;
    assert_quiet(&log);
}

/// What the Python client does: connects with websockets' permessage-deflate
/// (its default offer), records the RSV1 bit of every data frame it receives
/// and sends, echoes a chat-sized JSON message and a short one, and prints
/// the negotiated extension with the bits as JSON.
const PYTHON_CLIENT: &str = r#"
import asyncio, json, sys
from websockets.asyncio.client import connect

async def main(url):
    async with connect(url, compression="deflate", max_size=2**20) as ws:
        ext = ws.response.headers.get("Sec-WebSocket-Extensions")
        pmd = ws.protocol.extensions[0]
        rx, tx = [], []
        decode, encode = pmd.decode, pmd.encode
        def counted_decode(frame, *a, **k):
            rx.append(frame.rsv1)
            return decode(frame, *a, **k)
        def counted_encode(frame):
            out = encode(frame)
            tx.append(out.rsv1)
            return out
        pmd.decode, pmd.encode = counted_decode, counted_encode
        chat = json.dumps([{"type": "message", "room": "general", "from": "user%d" % i,
                            "text": "hello everyone, how is it going today?"} for i in range(30)])
        for m in [chat, "short"]:
            await ws.send(m)
            got = await ws.recv()
            assert got == m, "echo differs"
        print(json.dumps({"extensions": ext, "rx": rx, "tx": tx}))

asyncio.run(main(sys.argv[1]))
"#;

/// Python with the `websockets` package: the runner's environment, where
/// it is installed next to `kosoku` if missing; `None` after saying why the
/// test is skipped (a failure under `WSRING_REQUIRE_AUTOBAHN=1`).
async fn python_websockets_or_skip() -> Option<PathBuf> {
    static FOUND: OnceCell<Result<PathBuf, String>> = OnceCell::const_new();
    let found = FOUND
        .get_or_init(|| async {
            let runner = kosoku().await?;
            let python = runner.with_file_name("python");
            let has = |python: PathBuf| async move {
                Command::new(&python)
                    .args(["-c", "import websockets.asyncio.client"])
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .await
                    .is_ok_and(|s| s.success())
            };
            if has(python.clone()).await {
                return Ok(python);
            }
            let fix = format!("run `{} -m pip install websockets`", python.display());
            if std::env::var("WSRING_AUTOBAHN_INSTALL").as_deref() == Ok("0") {
                return Err(format!("Python's websockets is not installed; {fix}"));
            }
            run(&python, &["-m", "pip", "install", "--quiet", "websockets"])
                .await
                .map_err(|e| format!("{e}; {fix}"))?;
            if has(python.clone()).await {
                Ok(python)
            } else {
                Err(format!(
                    "websockets does not import after installing; {fix}"
                ))
            }
        })
        .await
        .clone();
    match found {
        Ok(python) => Some(python),
        Err(why) => {
            assert!(
                std::env::var("WSRING_REQUIRE_AUTOBAHN").as_deref() != Ok("1"),
                "Python's websockets is required (WSRING_REQUIRE_AUTOBAHN=1) but {why}"
            );
            say(&format!("SKIPPED: {why}"));
            None
        }
    }
}

/// Runs [`PYTHON_CLIENT`] against `url` and checks that deflate was
/// negotiated without context takeover and used both ways.
async fn python_negotiates_deflate(python: &Path, url: &str) {
    let out = tokio::time::timeout(
        WAIT,
        Command::new(python)
            .args(["-c", PYTHON_CLIENT, url])
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the Python client finishes within 30 s")
    .expect("run python");
    assert!(
        out.status.success(),
        "the Python client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).expect("the client's JSON");
    let ext = report["extensions"].as_str().unwrap_or_default();
    assert!(ext.starts_with("permessage-deflate"), "{report}");
    assert!(ext.contains("server_no_context_takeover"), "{report}");
    assert!(ext.contains("client_no_context_takeover"), "{report}");
    // The chat message came back compressed, the short one below the
    // threshold did not; the client compressed what it sent.
    assert_eq!(report["rx"], serde_json::json!([true, false]), "{report}");
    assert_eq!(report["tx"][0], true, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_websockets_negotiates_deflate_with_the_node_and_through_the_gateway() {
    let Some(python) = python_websockets_or_skip().await else {
        return;
    };
    let node = EchoNode::start(&[]).await;
    python_negotiates_deflate(&python, &format!("ws://{}/ws", node.addr)).await;
    let log = node.stop().await;
    assert_quiet(&log);

    let (_node, gateway, stop) = echo_behind_gateway().await;
    python_negotiates_deflate(&python, &format!("ws://{}/ws?user=py", gateway.addr())).await;
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deflate_is_declined_when_turned_off() {
    let node = EchoNode::start(&["--deflate", "false"]).await;
    let mut req = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
        format!("ws://{}/ws", node.addr),
    )
    .expect("request");
    req.headers_mut().insert(
        "sec-websocket-extensions",
        "permessage-deflate; client_max_window_bits"
            .parse()
            .expect("header"),
    );
    let (_ws, response) = tokio_tungstenite::connect_async(req)
        .await
        .expect("connect");
    assert!(response.headers().get("sec-websocket-extensions").is_none());
    node.stop().await;
}

/// Headless Chromium (through playwright-core, `e2e/deflate.test.mjs`)
/// negotiates permessage-deflate with a node and round-trips compressed and
/// plain messages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_negotiates_deflate_with_the_node() {
    let needs = common::js::Needs {
        dir: "e2e",
        packages: &["playwright-core"],
        chromium: true,
    };
    if let Some(why) = common::js::prerequisites(&needs).await {
        common::js::skip("e2e/deflate.test.mjs", &why);
        return;
    }
    let node = EchoNode::start(&[]).await;
    let url = format!("ws://{}/ws", node.addr);
    let run = common::js::run_node(
        "e2e",
        &["deflate.test.mjs"],
        &[("WSRING_WS_URL", &url)],
        Duration::from_secs(120),
    )
    .await;
    let log = node.stop().await;
    common::js::check_output("e2e/deflate.test.mjs", run, "see its output above");
    assert_quiet(&log);
}
