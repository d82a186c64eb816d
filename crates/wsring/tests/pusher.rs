//! The Pusher Channels protocol on a 3-node cluster on Redis, as real
//! processes of the `wsring` binary configured with a Pusher app only (no
//! `--jwt-*`, no `--insecure-no-auth`):
//!
//! * the native `/ws` answers 401 naming the settings it lacks;
//! * `/app/{key}` refuses an unknown key with `pusher:error` and close
//!   4001, and a protocol below 7 with 4007;
//! * a gateway configured the same way places Pusher connections by load
//!   and relays the signed API;
//! * `compat/browser.test.js` runs pusher-js's browser build in headless
//!   Chromium: presence across nodes, a forged authorization refused,
//!   client events without echo, server events with `socket_id` exclusion;
//!   then Laravel Echo's Pusher connector (public, private and presence
//!   channels across nodes, a whisper, a leave);
//! * `compat/webhooks.js`, started before the nodes, receives their
//!   webhooks in Pusher's format (`--pusher-webhook-url`) and verifies each
//!   delivery with the `pusher` library's own `webhook().isValid()`;
//!   `compat/pusher.test.js` checks the events (occupied and vacated once
//!   per cluster, members once per user id, client events);
//! * the Python `pusher` library (`compat/server_api.py`, pinned in
//!   `compat/requirements.txt`, installed by pip into `compat/.pydeps` when
//!   missing) answers the same GETs as the Node.js one and triggers events
//!   the clients receive;
//! * `compat/pusher.test.js` drives the unmodified `pusher-js` client and
//!   `pusher` server library (pinned in `compat/package-lock.json`) across
//!   the three nodes: public, private and presence channels, a bad
//!   signature refused, client events, `trigger` with `socket_id`
//!   exclusion, `triggerBatch`, every GET endpoint, a forged API call
//!   refused, and finally a node drained (SIGTERM) under nine gateway
//!   clients of a presence channel: the moved ones are closed with 4200,
//!   reconnect through the gateway and re-subscribe by themselves, and the
//!   member list is whole again; then the same after a node is SIGKILLed
//!   (within the heartbeat TTL).
//!
//! Needs Redis at 127.0.0.1:6379, Node.js 20+ (`npm ci` in `compat/` is
//! run when its packages are missing) and, for the browser part, Debian's
//! Chromium (installed when missing, as `common::js` describes); without
//! them that part prints `SKIPPED` (and fails under
//! `WSRING_REQUIRE_BROKERS=1` or `WSRING_REQUIRE_BROWSER=1`).
//!
//! Run: `cargo test -p wsring --test pusher`.

mod common;

use common::js::{self, Needs};
use common::procs::{self, Proc};
use futures::StreamExt;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;
use wsring_cluster_testkit::conformance::unique_ns;

const APP_ID: &str = "424242";
const KEY: &str = "compat-key";
const SECRET: &str = "compat-secret";

const COMPAT: Needs = Needs {
    dir: "compat",
    packages: &["pusher-js", "pusher", "playwright-core", "laravel-echo"],
    chromium: false,
};

/// The same, in headless Chromium.
const COMPAT_BROWSER: Needs = Needs {
    chromium: true,
    ..COMPAT
};

/// The flags of a Pusher-only node.
fn pusher_flags() -> Vec<&'static str> {
    vec![
        "--pusher-app-id",
        APP_ID,
        "--pusher-key",
        KEY,
        "--pusher-secret",
        SECRET,
        "--pusher-client-events",
        // A SIGKILLed node is noticed within this.
        "--heartbeat-ttl",
        "1500ms",
    ]
}

/// A node's flags: the app, and a short drain window so the drain step
/// is quick.
fn node_flags() -> Vec<&'static str> {
    let mut f = pusher_flags();
    f.extend(["--drain-window", "1s"]);
    f
}

/// Where the Python `pusher` library is installed for the run (from
/// `compat/requirements.txt`, by pip, when it is not there yet).
const PYDEPS: &str = "compat/.pydeps";

/// Makes the Python `pusher` library importable from [`PYDEPS`]; why not,
/// if it cannot be.
async fn python_lib() -> Result<String, String> {
    let dir = js::repo_root().join(PYDEPS);
    let dir_s = dir.to_string_lossy().into_owned();
    let imports = || async {
        tokio::process::Command::new("python3")
            .args(["-c", "import pusher"])
            .env("PYTHONPATH", &dir_s)
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .is_ok_and(|o| o.status.success())
    };
    if imports().await {
        return Ok(dir_s);
    }
    js::say("installing the Python pusher library (pip, compat/requirements.txt)");
    let req = js::repo_root().join("compat/requirements.txt");
    let out = tokio::time::timeout(
        Duration::from_secs(300),
        tokio::process::Command::new("python3")
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--target",
            ])
            .arg(&dir)
            .arg("-r")
            .arg(&req)
            .stdin(std::process::Stdio::null())
            .output(),
    )
    .await
    .map_err(|_| "pip took over 300 s".to_owned())?
    .map_err(|e| format!("cannot run python3: {e}"))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(format!(
            "pip install failed: {}",
            err.lines().last().unwrap_or_default()
        ));
    }
    if imports().await {
        Ok(dir_s)
    } else {
        Err("the pusher module does not import after pip install".into())
    }
}

/// `compat/webhooks.js`, the receiver of the nodes' webhooks in Pusher's
/// format, running until dropped; its `host:port`.
async fn webhook_receiver() -> Result<(tokio::process::Child, String), String> {
    use tokio::io::AsyncBufReadExt;
    if let Some(why) = js::prerequisites(&COMPAT).await {
        return Err(why);
    }
    let mut child = tokio::process::Command::new("node")
        .arg("webhooks.js")
        .current_dir(js::repo_root().join("compat"))
        .envs([
            ("WSRING_PUSHER_APP_ID", APP_ID),
            ("WSRING_PUSHER_KEY", KEY),
            ("WSRING_PUSHER_SECRET", SECRET),
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot run node: {e}"))?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .map_err(|_| "compat/webhooks.js did not listen within 20 s".to_owned())?
        .map_err(|e| format!("compat/webhooks.js: {e}"))?
        .unwrap_or_default();
    let port = line
        .strip_prefix("listening ")
        .ok_or_else(|| format!("compat/webhooks.js said {line:?}"))?;
    Ok((child, format!("127.0.0.1:{port}")))
}

/// `host:port` of a node from its readiness line.
fn host_port(p: &Proc) -> String {
    let a = p.announced();
    let a = a.split("://").last().unwrap_or(a);
    a.split('/').next().unwrap_or(a).to_owned()
}

/// The first frame and the close code a Pusher connection to `url` gets.
async fn first_frame_and_close(url: &str) -> (serde_json::Value, Option<u16>) {
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("upgrade");
    let mut first = serde_json::Value::Null;
    let mut code = None;
    let read = async {
        while let Some(Ok(m)) = ws.next().await {
            match m {
                Message::Text(t) if first.is_null() => {
                    first = serde_json::from_str(t.as_str()).expect("JSON frame");
                }
                Message::Close(f) => {
                    code = f.map(|f| u16::from(f.code));
                    break;
                }
                _ => {}
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("closed within 10 s");
    let _ = ws.close(None).await;
    (first, code)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pusher_clients_and_server_library_on_a_redis_cluster() {
    let Some(b) = procs::redis().await else {
        return;
    };
    let ns = unique_ns("pusher");
    // The webhook receiver first: the nodes send to it from the start.
    let receiver = match webhook_receiver().await {
        Ok(r) => Some(r),
        Err(why) => {
            js::skip("the Pusher webhooks step", &why);
            None
        }
    };
    let hook_url = receiver
        .as_ref()
        .map(|(_, at)| format!("http://{at}/pusher/webhooks"));
    let with_hooks = |mut flags: Vec<&'static str>| -> Vec<String> {
        let mut flags: Vec<String> = flags.drain(..).map(str::to_owned).collect();
        if let Some(url) = &hook_url {
            flags.extend(["--pusher-webhook-url".to_owned(), url.clone()]);
        }
        flags
    };
    let mut nodes = Vec::new();
    let node_args = with_hooks(node_flags());
    let node_args: Vec<&str> = node_args.iter().map(String::as_str).collect();
    for id in ["p1", "p2", "p3"] {
        nodes.push(b.node(&ns, id, &node_args).await);
    }
    // The gateway takes the same settings (it sends no webhooks itself).
    let flags = with_hooks(pusher_flags());
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let hosts: Vec<String> = nodes.iter().map(host_port).collect();
    let (gateway, gw_base) = b.gateway(&ns, &flags).await;
    let gw = gw_base.trim_start_matches("http://").to_owned();
    let http = common::http();
    // Every node sees all three before clients spread over them.
    for h in hosts.iter().chain([&gw]) {
        common::wait_until("three nodes up", || {
            let http = http.clone();
            let url = format!("http://{h}/api/nodes");
            async move {
                let Ok(r) = http.get(&url).send().await else {
                    return false;
                };
                let v: serde_json::Value = r.json().await.unwrap_or_default();
                v["nodes"]
                    .as_array()
                    .is_some_and(|n| n.iter().filter(|m| m["state"] == "up").count() == 3)
            }
        })
        .await;
    }

    // The native endpoint is closed, and says what would open it.
    let r = http
        .get(format!("http://{}/ws?user=alice", hosts[0]))
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .send()
        .await
        .expect("native /ws answers");
    assert_eq!(r.status(), 401);
    let body: serde_json::Value = r.json().await.expect("JSON error body");
    let msg = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains("--jwt-secret") && msg.contains("--insecure-no-auth"),
        "{body}"
    );

    // Pusher's connection errors.
    let (f, code) = first_frame_and_close(&format!("ws://{}/app/wrong?protocol=7", hosts[1])).await;
    assert_eq!(
        (f["event"].as_str(), code),
        (Some("pusher:error"), Some(4001))
    );
    assert_eq!(f["data"]["code"], 4001);
    let (f, code) = first_frame_and_close(&format!("ws://{}/app/{KEY}?protocol=6", hosts[1])).await;
    assert_eq!((f["data"]["code"].as_u64(), code), (Some(4007), Some(4007)));

    let joined = format!("{gw},{}", hosts.join(","));
    let compat_env = |extra: Vec<(&'static str, String)>| {
        let mut env: Vec<(&'static str, String)> = vec![
            ("WSRING_PUSHER_HOSTS", joined.clone()),
            ("WSRING_PUSHER_API", gw.clone()),
            ("WSRING_PUSHER_APP_ID", APP_ID.into()),
            ("WSRING_PUSHER_KEY", KEY.into()),
            ("WSRING_PUSHER_SECRET", SECRET.into()),
        ];
        env.extend(extra);
        env
    };

    // pusher-js's browser build in Chromium (first: the Node run ends by
    // stopping two nodes).
    if let Some(why) = js::prerequisites(&COMPAT_BROWSER).await {
        js::skip("the pusher-js browser run", &why);
    } else {
        let env = compat_env(vec![]);
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let out = js::run_node(
            "compat",
            &["browser.test.js"],
            &env,
            Duration::from_secs(150),
        )
        .await;
        js::check_output(
            "compat/browser.test.js",
            out,
            "its output above names the failing step",
        );
    }

    // The real libraries under Node.
    if let Some(why) = js::prerequisites(&COMPAT).await {
        js::skip("the pusher-js/pusher compatibility run", &why);
    } else {
        // Clients take turns: the gateway (placed by load), then each node
        // directly; the server library calls the gateway.
        let pids: Vec<String> = nodes.iter().map(|n| n.pid().to_string()).collect();
        let mut extra = vec![("WSRING_PUSHER_NODE_PIDS", pids.join(","))];
        if let Some((_, at)) = &receiver {
            extra.push(("WSRING_PUSHER_WEBHOOKS", at.clone()));
        }
        // The Python library takes part when it can be had.
        match python_lib().await {
            Ok(path) => {
                extra.push(("WSRING_PUSHER_PYTHON", "python3".into()));
                extra.push(("PYTHONPATH", path));
            }
            Err(why) => js::skip("the Python pusher library step", &why),
        }
        let env = compat_env(extra);
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let out = js::run_node(
            "compat",
            &["pusher.test.js"],
            &env,
            Duration::from_secs(150),
        )
        .await;
        js::check_output(
            "compat/pusher.test.js",
            out,
            "its output above names the failing step",
        );
    }
    // Clean logs, but for the one WARN a crash causes: the survivors reap
    // the killed node.
    for p in nodes.iter().chain([&gateway]) {
        let unexpected: Vec<String> = p
            .warnings()
            .into_iter()
            .filter(|l| !l.contains("reaped members"))
            .collect();
        assert!(unexpected.is_empty(), "clean log: {unexpected:?}");
    }
    drop(nodes);
    drop(gateway);
    drop(receiver);
    b.purge(&ns).await;
}
