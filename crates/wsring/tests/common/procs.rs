//! Child processes of the real `wsring` binary for multi-process tests, and
//! the backends those tests run against.

#![allow(dead_code)]

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use wsring_cluster_testkit::conformance::skip_or_fail;

/// Reports a skip on the real stderr as well: the harness captures what
/// `skip_or_fail` prints, so a plain `cargo test` would not show it.
fn skip_visibly(why: &str) {
    skip_or_fail(why);
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "SKIPPED: {why}");
}

/// `args` with `--insecure-no-auth` added for a `node` or `gateway` that
/// was given no authentication setting (a Pusher app is one).
fn with_auth_choice<'a>(args: &[&'a str]) -> Vec<&'a str> {
    let mut args = args.to_vec();
    let role = args.first().copied().unwrap_or_default();
    let chose = args.iter().any(|a| {
        a.starts_with("--jwt-") || a.starts_with("--insecure-no-auth") || a.starts_with("--pusher-")
    });
    if (role == "node" || role == "gateway") && !chose {
        args.push("--insecure-no-auth");
    }
    args
}

/// Starts `wsring dev --port 0 <args>` and returns it with its gateway's
/// WebSocket URL (`ws://…/ws`) and HTTP base URL (`http://host:port`).
pub async fn dev_process(args: &[&str]) -> (Proc, String, String) {
    let mut all = vec!["dev", "--port", "0"];
    all.extend_from_slice(args);
    let p = Proc::start_until(&all, "gateway").await;
    let ws = p
        .ready_line
        .split_whitespace()
        .nth(1)
        .expect("gateway url")
        .to_owned();
    let base = ws
        .replacen("wss://", "https://", 1)
        .replacen("ws://", "http://", 1)
        .trim_end_matches("/ws")
        .to_owned();
    (p, ws, base)
}

/// A running `wsring` child process (killed on drop).
pub struct Proc {
    pub child: Child,
    /// The first line it printed on stdout (its readiness line).
    pub ready_line: String,
    /// Every line it wrote to stderr (its log at `RUST_LOG=warn`), also
    /// echoed to the test's own stderr, and the stdout lines after the
    /// readiness line.
    pub log: Arc<Mutex<Vec<String>>>,
}

impl Proc {
    /// Starts `wsring <args>` and waits (up to 30 s) for its readiness line.
    pub async fn start(args: &[&str]) -> Proc {
        Self::start_until(args, "").await
    }

    /// Starts `wsring <args>` and waits for the first stdout line containing
    /// `needle`.
    ///
    /// A `node` or `gateway` given no authentication setting runs with
    /// `--insecure-no-auth`: these tests are about routing, and the ones
    /// about authentication pass their keys.
    pub async fn start_until(args: &[&str], needle: &str) -> Proc {
        let filter = std::env::var("WSRING_TEST_LOG").unwrap_or_else(|_| "warn,lapin=off".into());
        Self::start_logging(args, needle, &filter).await
    }

    /// Like [`start_until`](Self::start_until) with the log filter
    /// `rust_log`; every stdout line after the readiness line is kept in
    /// [`log`](Self::log) too, so a test can read all the process printed.
    pub async fn start_logging(args: &[&str], needle: &str, rust_log: &str) -> Proc {
        let args = with_auth_choice(args);
        let mut child = Command::new(env!("CARGO_BIN_EXE_wsring"))
            .args(&args)
            .env("RUST_LOG", rust_log)
            .stdin(Stdio::null())
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn wsring");
        let log: Arc<Mutex<Vec<String>>> = Arc::default();
        let stderr = child.stderr.take().expect("stderr");
        tokio::spawn({
            let log = Arc::clone(&log);
            async move {
                let mut lines = BufReader::new(stderr).lines();
                while let Ok(Some(l)) = lines.next_line().await {
                    eprintln!("{l}");
                    log.lock().unwrap_or_else(|e| e.into_inner()).push(l);
                }
            }
        });
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                match lines.next_line().await {
                    Ok(Some(l)) if l.contains(needle) => return l,
                    Ok(Some(_)) => continue,
                    other => panic!("wsring {args:?} exited during start-up: {other:?}"),
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("wsring {args:?} printed no {needle:?} line within 30 s"));
        tokio::spawn({
            let log = Arc::clone(&log);
            async move {
                while let Ok(Some(l)) = lines.next_line().await {
                    log.lock().unwrap_or_else(|e| e.into_inner()).push(l);
                }
            }
        });
        Proc {
            child,
            ready_line: line,
            log,
        }
    }

    /// The WARN and ERROR lines it logged so far.
    pub fn warnings(&self) -> Vec<String> {
        self.log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|l| l.contains("WARN") || l.contains("ERROR") || l.contains("panicked"))
            .cloned()
            .collect()
    }

    /// Runs `wsring <args>` to completion (up to `limit`), returning its exit
    /// status and stderr.
    pub async fn run(args: &[&str], limit: Duration) -> (ExitStatus, String) {
        let out = Self::output(args, limit).await;
        (
            out.status,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Like [`run`](Self::run), returning stdout instead of stderr.
    pub async fn run_stdout(args: &[&str], limit: Duration) -> (ExitStatus, String) {
        let out = Self::output(args, limit).await;
        (
            out.status,
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    }

    async fn output(args: &[&str], limit: Duration) -> std::process::Output {
        let args = with_auth_choice(args);
        let args = args.as_slice();
        tokio::time::timeout(
            limit,
            Command::new(env!("CARGO_BIN_EXE_wsring"))
                .args(args)
                .env("RUST_LOG", "off")
                .stdin(Stdio::null())
                .output(),
        )
        .await
        .unwrap_or_else(|_| panic!("wsring {args:?} did not exit within {limit:?}"))
        .expect("run wsring")
    }

    /// The last whitespace-separated word of the readiness line (a URL or address).
    pub fn announced(&self) -> &str {
        self.ready_line
            .split_whitespace()
            .last()
            .unwrap_or_default()
    }

    pub fn pid(&self) -> i32 {
        self.child
            .id()
            .and_then(|p| i32::try_from(p).ok())
            .expect("running")
    }

    pub fn signal(&self, sig: Signal) {
        kill(Pid::from_raw(self.pid()), sig).expect("signal");
    }

    pub async fn wait(&mut self, limit: Duration) -> ExitStatus {
        tokio::time::timeout(limit, self.child.wait())
            .await
            .expect("process exits in time")
            .expect("wait")
    }
}

/// A backend combination to run multi-process tests on.
#[derive(Debug, Clone)]
pub struct Backend {
    pub name: &'static str,
    pub registry: String,
    pub broker: String,
    /// The broker server's address, for fault injection.
    pub broker_addr: &'static str,
}

async fn reachable(name: &str, addr: &str) -> bool {
    match tokio::net::TcpStream::connect(addr).await {
        Ok(_) => true,
        Err(e) => {
            skip_visibly(&format!("{name} not reachable at {addr}: {e}"));
            false
        }
    }
}

/// Redis as registry and broker.
pub async fn redis() -> Option<Backend> {
    reachable("Redis", "127.0.0.1:6379").await.then(|| Backend {
        name: "redis",
        registry: "redis://127.0.0.1:6379/".into(),
        broker: "redis://127.0.0.1:6379/".into(),
        broker_addr: "127.0.0.1:6379",
    })
}

/// NATS as registry and broker.
pub async fn nats() -> Option<Backend> {
    reachable("NATS", "127.0.0.1:4222").await.then(|| Backend {
        name: "nats",
        registry: "nats://127.0.0.1:4222".into(),
        broker: "nats://127.0.0.1:4222".into(),
        broker_addr: "127.0.0.1:4222",
    })
}

/// The local Redis Cluster of `scripts/test-clusters` as registry and broker
/// (`WSRING_TEST_REDIS_CLUSTER` overrides the seeds).
#[allow(dead_code)] // not every test binary runs on the clusters
pub async fn redis_cluster() -> Option<Backend> {
    let url = std::env::var("WSRING_TEST_REDIS_CLUSTER").unwrap_or_else(|_| {
        "redis-cluster://127.0.0.1:7100,127.0.0.1:7101,127.0.0.1:7102,127.0.0.1:7103,127.0.0.1:7104,127.0.0.1:7105".into()
    });
    let first = url
        .trim_start_matches("redis-cluster://")
        .split(',')
        .next()
        .unwrap_or_default()
        .to_owned();
    reachable("Redis Cluster (scripts/test-clusters start)", &first)
        .await
        .then(|| Backend {
            name: "redis-cluster",
            registry: url.clone(),
            broker: url,
            broker_addr: "127.0.0.1:7100",
        })
}

/// The local 3-server NATS cluster of `scripts/test-clusters` as registry
/// and broker (`WSRING_TEST_NATS_CLUSTER` overrides the servers).
#[allow(dead_code)] // not every test binary runs on the clusters
pub async fn nats_cluster() -> Option<Backend> {
    let url = std::env::var("WSRING_TEST_NATS_CLUSTER").unwrap_or_else(|_| {
        "nats://127.0.0.1:4230,nats://127.0.0.1:4231,nats://127.0.0.1:4232".into()
    });
    let first = url
        .split(',')
        .next()
        .unwrap_or_default()
        .trim_start_matches("nats://")
        .to_owned();
    reachable("NATS cluster (scripts/test-clusters start)", &first)
        .await
        .then(|| Backend {
            name: "nats-cluster",
            registry: url.clone(),
            broker: url,
            broker_addr: "127.0.0.1:4230",
        })
}

/// Redis as registry, RabbitMQ as broker.
pub async fn amqp() -> Option<Backend> {
    if !reachable("Redis", "127.0.0.1:6379").await {
        return None;
    }
    reachable("RabbitMQ", "127.0.0.1:5672")
        .await
        .then(|| Backend {
            name: "amqp",
            registry: "redis://127.0.0.1:6379/".into(),
            broker: "amqp://guest:guest@127.0.0.1:5672/%2f".into(),
            broker_addr: "127.0.0.1:5672",
        })
}

impl Backend {
    /// The broker URL with its host:port replaced (to go through a proxy).
    pub fn broker_via(&self, addr: &str) -> String {
        self.broker.replace(self.broker_addr, addr)
    }

    /// Starts node `id`.
    pub async fn node(&self, ns: &str, id: &str, extra: &[&str]) -> Proc {
        self.node_with_broker(ns, id, &self.broker.clone(), extra)
            .await
    }

    /// Starts node `id` with a specific broker URL.
    pub async fn node_with_broker(&self, ns: &str, id: &str, broker: &str, extra: &[&str]) -> Proc {
        let mut args = vec![
            "node",
            "--id",
            id,
            "--listen",
            "127.0.0.1:0",
            "--registry",
            &self.registry,
            "--broker",
            broker,
            "--namespace",
            ns,
        ];
        args.extend_from_slice(extra);
        let p = Proc::start(&args).await;
        assert!(p.ready_line.contains("serving"), "{}", p.ready_line);
        p
    }

    /// Starts a gateway; returns it and its HTTP base URL.
    pub async fn gateway(&self, ns: &str, extra: &[&str]) -> (Proc, String) {
        let mut args = vec![
            "gateway",
            "--listen",
            "127.0.0.1:0",
            "--registry",
            &self.registry,
            "--namespace",
            ns,
        ];
        args.extend_from_slice(extra);
        let p = Proc::start(&args).await;
        assert!(p.ready_line.contains("listening on"), "{}", p.ready_line);
        let base = format!("http://{}", p.announced());
        (p, base)
    }
}

/// Deletes everything a test namespace left on the shared servers.
pub async fn purge(registry: &str, broker: &str, ns: &str) {
    #[cfg(feature = "redis")]
    if registry.starts_with("redis://") || registry.starts_with("redis-cluster://") {
        let _ = wsring_cluster_redis::purge_namespace(registry, ns).await;
    }
    #[cfg(feature = "nats")]
    if registry.starts_with("nats://") {
        let _ = wsring_cluster_nats::purge_namespace(registry, ns).await;
    }
    #[cfg(feature = "amqp")]
    if broker.starts_with("amqp://") {
        let _ = wsring_cluster_amqp::purge_namespace(broker, ns).await;
    }
    let _ = broker;
}

impl Backend {
    /// Deletes what namespace `ns` left on this backend's servers.
    pub async fn purge(&self, ns: &str) {
        purge(&self.registry, &self.broker, ns).await;
    }
}
