//! The chaos suite: a durable cluster of three `wsring node` processes and
//! two `wsring gateway` processes on a real backend takes one fault after
//! another while 100 users receive numbered streams and four senders (the
//! Rust SDK, which retries until acknowledged) keep sending:
//!
//! * `kill`: SIGKILL a node and start it again;
//! * `stall`: SIGSTOP a node past the heartbeat TTL, start a successor under
//!   its id, SIGCONT the stale one, which must exit non-zero, fenced;
//! * `rolling`: SIGTERM and restart every node, one at a time (a deploy);
//! * `broker-cut`: a node's broker connection cut, and refused for 1 s;
//! * `registry-outage`: every registry connection cut, and refused for 3 s;
//! * `gateway`: SIGKILL a gateway and start it again on its port.
//!
//! After each fault both gateways must agree on the same ring of three up
//! nodes, each id served by exactly one live process. At the end every
//! receiver must hold its whole stream exactly once and in order. The order
//! of the faults and their victims come from a seed, printed at the start;
//! `WSRING_CHAOS_SEED=N` replays a run. Per fault the suite prints the
//! longest delivery gap, the client reconnects and the duplicates the SDK
//! suppressed (BENCHMARKS.md records them).
//!
//! `detect_*` measure failure detection on a default cluster (2 s TTL) whose
//! nodes each reach the registry through a proxy of their own: the registry
//! refused to one node for 15 s (it must never leave any ring, no session may
//! move), a SIGKILL (gone from both gateways' rings and its clients back on
//! their new owners well before the TTL), and a host that vanished (a proxy
//! blackholing its listener, and SIGSTOP: removed on the TTL, not earlier).
//! `detect_nats_cluster_server_killed` kills one of the three local NATS
//! servers: no live node may be reaped. `detect_nodes_only_redis` runs
//! three nodes and no gateway on Redis: a SIGKILLed node is removed by its
//! peers (late heartbeat, no connection left to Redis) before its TTL.
//! They print the figures.
//!
//! `durable_hooks_*`: in durable mode, a node SIGKILLed while the webhook
//! receiver is down loses none of the events it had queued: the occupancy
//! emitter delivers them, with their ids, once the receiver is back.

mod common;

use common::procs::{self, Backend, Proc};
use common::receiver::{Receiver, receiver};
use common::{Api, wait_until};
use nix::sys::signal::Signal;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::json;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use wsring_client::ClientConfig;
use wsring_cluster_testkit::conformance::unique_ns;
use wsring_cluster_testkit::fault::FaultProxy;

const DIRECT: usize = 60;
const ROOM_USERS: usize = 40;
const ROOMS: usize = 4;
const SENDERS: usize = 4;
const ROUND_EVERY: Duration = Duration::from_millis(200);
const TTL: &str = "1500ms";
const IDS: [&str; 3] = ["n1", "n2", "n3"];

fn addr_of(url: &str) -> SocketAddr {
    let hostport = url
        .split("://")
        .nth(1)
        .and_then(|r| r.rsplit('@').next())
        .and_then(|r| r.split('/').next())
        .expect("host:port in url");
    hostport.parse().expect("socket address")
}

struct Cluster {
    #[allow(dead_code)]
    b: Backend,
    ns: String,
    registry: FaultProxy,
    registry_url: String,
    brokers: BTreeMap<&'static str, (FaultProxy, String)>,
    nodes: BTreeMap<&'static str, Proc>,
    gateways: Vec<(Proc, String)>,
}

impl Cluster {
    async fn start(b: Backend) -> Cluster {
        let ns = unique_ns("chaos");
        let registry = FaultProxy::start(addr_of(&b.registry))
            .await
            .expect("proxy");
        let registry_url = b.registry.replace(
            &addr_of(&b.registry).to_string(),
            &registry.addr().to_string(),
        );
        let mut brokers = BTreeMap::new();
        for id in IDS {
            let p = FaultProxy::start(b.broker_addr.parse().expect("addr"))
                .await
                .expect("proxy");
            let url = b.broker_via(&p.addr().to_string());
            brokers.insert(id, (p, url));
        }
        let mut c = Cluster {
            b,
            ns,
            registry,
            registry_url,
            brokers,
            nodes: BTreeMap::new(),
            gateways: Vec::new(),
        };
        for id in IDS {
            let p = c.start_node(id).await;
            c.nodes.insert(id, p);
        }
        for _ in 0..2 {
            let g = c.start_gateway("127.0.0.1:0").await;
            c.gateways.push(g);
        }
        c.converged().await;
        c
    }

    async fn start_node(&self, id: &'static str) -> Proc {
        let broker = &self.brokers[id].1;
        let args = [
            "node",
            "--id",
            id,
            "--listen",
            "127.0.0.1:0",
            "--registry",
            &self.registry_url,
            "--broker",
            broker,
            "--namespace",
            &self.ns,
            "--durable",
            "--heartbeat-ttl",
            TTL,
        ];
        let p = Proc::start(&args).await;
        assert!(p.ready_line.contains("serving"), "{}", p.ready_line);
        p
    }

    async fn start_gateway(&self, listen: &str) -> (Proc, String) {
        let args = [
            "gateway",
            "--listen",
            listen,
            "--registry",
            &self.registry_url,
            "--namespace",
            &self.ns,
            "--durable",
            "--heartbeat-ttl",
            TTL,
        ];
        let p = Proc::start(&args).await;
        assert!(p.ready_line.contains("listening on"), "{}", p.ready_line);
        let addr = p.announced().to_owned();
        (p, addr)
    }

    fn ws(&self, k: usize) -> String {
        format!("ws://{}/ws", self.gateways[k].1)
    }

    fn api(&self, k: usize) -> Api {
        Api::new(format!("http://{}", self.gateways[k].1))
    }

    /// Both gateways list n1..n3, all up, at the same epoch, each at the
    /// URL of the one process now serving that id.
    async fn converged(&self) {
        let want: BTreeMap<String, String> = self
            .nodes
            .iter()
            .map(|(id, p)| ((*id).to_owned(), p.announced().to_owned()))
            .collect();
        let apis = [self.api(0), self.api(1)];
        wait_until("both gateways agree on the ring", || {
            let apis = &apis;
            let want = &want;
            async move {
                let mut epochs = Vec::new();
                for api in apis {
                    let (status, v) = api.get("/api/nodes").await;
                    if status != 200 {
                        return false;
                    }
                    let nodes = v["nodes"].as_array().cloned().unwrap_or_default();
                    let got: BTreeMap<String, String> = nodes
                        .iter()
                        .filter(|n| n["state"] == "up")
                        .map(|n| {
                            (
                                n["id"].as_str().unwrap_or_default().to_owned(),
                                n["url"].as_str().unwrap_or_default().to_owned(),
                            )
                        })
                        .collect();
                    if nodes.len() != 3 || &got != want {
                        return false;
                    }
                    epochs.push(v["epoch"].as_u64());
                }
                epochs.windows(2).all(|w| w[0] == w[1])
            }
        })
        .await;
    }

    fn pids(&self) -> Vec<i32> {
        self.nodes.values().map(Proc::pid).collect()
    }
}

/// SDK settings for chaos: reconnect quickly (gateways come back within
/// seconds) and let requests wait out the longest fault.
fn client_cfg(url: String, user: String) -> ClientConfig {
    let mut cfg = ClientConfig::new(url, user);
    cfg.backoff_cap = Duration::from_secs(1);
    cfg.timeout = Duration::from_secs(60);
    cfg
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    Kill,
    Stall,
    Rolling,
    BrokerCut,
    RegistryOutage,
    Gateway,
}

impl Fault {
    fn name(self) -> &'static str {
        match self {
            Fault::Kill => "kill -9 + restart",
            Fault::Stall => "SIGSTOP past TTL, successor, SIGCONT (fenced)",
            Fault::Rolling => "rolling restart (SIGTERM, one at a time)",
            Fault::BrokerCut => "broker connection cut (1 s refused)",
            Fault::RegistryOutage => "registry outage (3 s)",
            Fault::Gateway => "gateway kill -9 + restart",
        }
    }
}

async fn inject(c: &mut Cluster, fault: Fault, rng: &mut impl Rng) {
    let victim = IDS[rng.random_range(0..IDS.len())];
    match fault {
        Fault::Kill => {
            c.nodes[victim].signal(Signal::SIGKILL);
            let mut old = c.nodes.remove(victim).expect("node");
            old.wait(Duration::from_secs(10)).await;
            let p = c.start_node(victim).await;
            c.nodes.insert(victim, p);
        }
        Fault::Stall => {
            c.nodes[victim].signal(Signal::SIGSTOP);
            let api = c.api(0);
            wait_until("the stalled node reaped", || async {
                let (_, v) = api.get("/api/nodes").await;
                !v["nodes"]
                    .as_array()
                    .is_some_and(|a| a.iter().any(|n| n["id"] == victim))
            })
            .await;
            let successor = c.start_node(victim).await;
            let mut stale = c.nodes.insert(victim, successor).expect("stale node");
            c.converged().await;
            stale.signal(Signal::SIGCONT);
            let status = stale.wait(Duration::from_secs(15)).await;
            assert!(!status.success(), "a fenced node exits non-zero: {status}");
            let log = stale.log.lock().expect("log").join("\n");
            assert!(
                log.contains("claimed by another process"),
                "the stale node says why it stopped:\n{log}"
            );
        }
        Fault::Rolling => {
            for id in IDS {
                c.nodes[id].signal(Signal::SIGTERM);
                let mut old = c.nodes.remove(id).expect("node");
                let status = old.wait(Duration::from_secs(20)).await;
                assert!(status.success(), "a drained node exits 0: {status}");
                let p = c.start_node(id).await;
                c.nodes.insert(id, p);
                c.converged().await;
            }
        }
        Fault::BrokerCut => {
            let proxy = &c.brokers[victim].0;
            proxy.refuse(true);
            proxy.cut();
            tokio::time::sleep(Duration::from_secs(1)).await;
            proxy.refuse(false);
        }
        Fault::RegistryOutage => {
            c.registry.refuse(true);
            c.registry.cut();
            tokio::time::sleep(Duration::from_secs(3)).await;
            c.registry.refuse(false);
        }
        Fault::Gateway => {
            let k = rng.random_range(0..2);
            let addr = c.gateways[k].1.clone();
            c.gateways[k].0.signal(Signal::SIGKILL);
            c.gateways[k].0.wait(Duration::from_secs(10)).await;
            let g = c.start_gateway(&addr).await;
            assert_eq!(g.1, addr, "the gateway is back on its port");
            c.gateways[k] = g;
        }
    }
    c.converged().await;
}

struct Window {
    fault: Fault,
    start: Instant,
    reconnects: u64,
    duplicates: u64,
    resent: u64,
}

async fn chaos(b: Backend) {
    let seed: u64 = std::env::var("WSRING_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    println!(
        "CHAOS {}: seed {seed} (replay with WSRING_CHAOS_SEED={seed})",
        b.name
    );
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut c = Cluster::start(b.clone()).await;

    let mut receivers = Vec::new();
    for i in 0..DIRECT {
        receivers.push(receiver(client_cfg(c.ws(i % 2), format!("d{i}")), None).await);
    }
    for i in 0..ROOM_USERS {
        let room = format!("room{}", i % ROOMS);
        receivers.push(receiver(client_cfg(c.ws(i % 2), format!("m{i}")), Some(room)).await);
    }
    let streams = DIRECT + ROOMS;
    let stop = Arc::new(AtomicBool::new(false));
    let sent: Arc<Mutex<Vec<u64>>> = Arc::new(Mutex::new(vec![0; streams]));
    let mut senders = Vec::new();
    let mut tasks = Vec::new();
    for k in 0..SENDERS {
        let cfg = client_cfg(c.ws(k % 2), format!("sender{k}"));
        let (client, _events) = wsring_client::connect_with(cfg).await.expect("sender");
        let mine: Vec<usize> = (0..streams).filter(|s| s % SENDERS == k).collect();
        let (stop, sent) = (Arc::clone(&stop), Arc::clone(&sent));
        let sender = client.clone();
        tasks.push(tokio::spawn(async move {
            let _events = _events;
            let start = Instant::now();
            let mut n = 0u64;
            while !stop.load(Ordering::SeqCst) {
                tokio::time::sleep_until(start + ROUND_EVERY * n as u32).await;
                for &s in &mine {
                    let data = json!({ "n": n });
                    let r = if s < DIRECT {
                        sender.send(&format!("d{s}"), data).await
                    } else {
                        sender.publish(&format!("room{}", s - DIRECT), data).await
                    };
                    r.unwrap_or_else(|e| panic!("stream {s} message {n}: {e}"));
                    sent.lock().expect("sent")[s] = n + 1;
                }
                n += 1;
            }
        }));
        senders.push(client);
    }

    let totals = |receivers: &[Receiver], senders: &[wsring_client::Client]| {
        let (mut re, mut du) = (0, 0);
        for r in receivers {
            let s = r.client.stats();
            re += s.reconnects;
            du += s.duplicates;
        }
        let resent = senders.iter().map(|c| c.stats().resent).sum::<u64>();
        (re, du, resent)
    };

    let mut faults = vec![
        Fault::Kill,
        Fault::Stall,
        Fault::Rolling,
        Fault::BrokerCut,
        Fault::RegistryOutage,
        Fault::Gateway,
    ];
    faults.shuffle(&mut rng);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut windows = Vec::new();
    for fault in faults {
        let (reconnects, duplicates, resent) = totals(&receivers, &senders);
        windows.push(Window {
            fault,
            start: Instant::now(),
            reconnects,
            duplicates,
            resent,
        });
        println!("CHAOS {}: {}", b.name, fault.name());
        inject(&mut c, fault, &mut rng).await;
        let before = c.pids();
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(before, c.pids());
    }
    let end_of_faults = Instant::now();
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::SeqCst);
    for t in tasks {
        t.await.expect("sender");
    }
    let sent = sent.lock().expect("sent").clone();

    // Every receiver ends with its whole stream, exactly once, in order.
    let expected_of = |i: usize| -> u64 {
        if i < DIRECT {
            sent[i]
        } else {
            sent[DIRECT + (i - DIRECT) % ROOMS]
        }
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let done = receivers
            .iter()
            .enumerate()
            .all(|(i, r)| r.log.lock().expect("log").len() as u64 >= expected_of(i));
        if done || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut delivered = 0u64;
    for (i, r) in receivers.iter().enumerate() {
        let got: Vec<u64> = r.log.lock().expect("log").iter().map(|(n, _)| *n).collect();
        assert_eq!(
            got,
            (0..expected_of(i)).collect::<Vec<_>>(),
            "{}: {} must hold every acknowledged message exactly once, in order (seed {seed})",
            b.name,
            r.user
        );
        delivered += got.len() as u64;
        let s = r.client.stats();
        assert_eq!(s.gaps, 0, "{}: {} {s:?}", b.name, r.user);
        assert_eq!(s.incomplete, 0, "{}: {} lost history {s:?}", b.name, r.user);
    }
    let (reconnects, duplicates, resent) = totals(&receivers, &senders);
    println!(
        "CHAOS {}: sent {} messages on {} streams, {} deliveries, all exactly once and in order; \
         {} reconnects, {} duplicates suppressed by the SDK, {} sends retried",
        b.name,
        sent.iter().sum::<u64>(),
        streams,
        delivered,
        reconnects,
        duplicates,
        resent
    );
    // Per fault: the longest gap any receiver saw between two deliveries
    // arriving inside the window, and what the clients did meanwhile.
    let mut rows = Vec::new();
    for (k, w) in windows.iter().enumerate() {
        let until = windows.get(k + 1).map_or(end_of_faults, |n| n.start);
        let mut gap = Duration::ZERO;
        for r in &receivers {
            let log = r.log.lock().expect("log");
            for pair in log.windows(2) {
                if pair[1].1 > w.start && pair[1].1 <= until {
                    gap = gap.max(pair[1].1 - pair[0].1);
                }
            }
        }
        let (re, du, rs) = windows
            .get(k + 1)
            .map_or((reconnects, duplicates, resent), |n| {
                (n.reconnects, n.duplicates, n.resent)
            });
        rows.push(format!(
            "| {} | {} | {:.2} s | {} | {} | {} |",
            b.name,
            w.fault.name(),
            gap.as_secs_f64(),
            re - w.reconnects,
            du - w.duplicates,
            rs - w.resent
        ));
    }
    println!("CHAOS {} table (seed {seed}):\n{}", b.name, rows.join("\n"));
    for r in &receivers {
        r.client.close();
    }
    for s in &senders {
        s.close();
    }
    drop(c.gateways);
    drop(c.nodes);
    b.purge(&c.ns).await;
}

/// One backend at a time: each run is a whole cluster on two cores.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_redis() {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some(b) = procs::redis().await else {
        return;
    };
    chaos(b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_nats() {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some(b) = procs::nats().await else { return };
    chaos(b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_amqp() {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some(b) = procs::amqp().await else { return };
    chaos(b).await;
}

// ---------------------------------------------------------------------------
// Failure detection: how fast a dead node leaves every ring, and that a live
// one never does.
// ---------------------------------------------------------------------------

/// The default heartbeat TTL: the figures are those of a default cluster.
const DETECT_TTL: Duration = Duration::from_secs(2);

/// A client that records which node each of its sessions started on.
struct Watched {
    client: wsring_client::Client,
    /// `(when, node)` of every `Connected` event.
    sessions: Arc<Mutex<Vec<(Instant, String)>>>,
}

impl Watched {
    async fn connect(url: String, user: String) -> Watched {
        let (client, mut events) = wsring_client::connect_with(client_cfg(url, user))
            .await
            .expect("connect");
        let sessions: Arc<Mutex<Vec<(Instant, String)>>> = Arc::default();
        let s = Arc::clone(&sessions);
        tokio::spawn(async move {
            while let Some(ev) = events.next().await {
                if let wsring_client::Event::Connected { node, .. } = ev {
                    s.lock().expect("sessions").push((Instant::now(), node));
                }
            }
        });
        let w = Watched { client, sessions };
        wait_until("the first session", || async { w.count() > 0 }).await;
        w
    }

    fn count(&self) -> usize {
        self.sessions.lock().expect("sessions").len()
    }

    fn last(&self) -> (Instant, String) {
        self.sessions
            .lock()
            .expect("sessions")
            .last()
            .cloned()
            .expect("a session")
    }
}

/// Three nodes, each reaching the registry through a proxy of its own (so
/// one node alone can lose it), and two gateways. The last node is reached
/// through a proxy in front of its listener, so its host can vanish.
struct Detect {
    b: Backend,
    ns: String,
    registries: BTreeMap<&'static str, FaultProxy>,
    listeners: BTreeMap<&'static str, FaultProxy>,
    nodes: BTreeMap<&'static str, Proc>,
    gateways: Vec<(Proc, String)>,
    /// One API client per gateway, made once: making one loads the
    /// system's CA roots, which in a debug build takes long enough to delay
    /// the polls that measure detection by hundreds of milliseconds.
    apis: Vec<Api>,
}

impl Detect {
    async fn start(b: Backend) -> Detect {
        let ns = unique_ns("detect");
        let ttl = format!("{}ms", DETECT_TTL.as_millis());
        let mut registries = BTreeMap::new();
        let mut listeners = BTreeMap::new();
        let mut nodes = BTreeMap::new();
        for id in IDS {
            // n3 listens on a port picked here, behind a proxy it
            // advertises: everyone else reaches it through the proxy.
            let mut listen = "127.0.0.1:0".to_owned();
            let mut advertise = Vec::new();
            if id == "n3" {
                let port = std::net::TcpListener::bind("127.0.0.1:0")
                    .and_then(|l| l.local_addr())
                    .expect("a free port")
                    .port();
                listen = format!("127.0.0.1:{port}");
                let front = FaultProxy::start(addr_of(&format!("ws://{listen}/ws")))
                    .await
                    .expect("listener proxy");
                advertise = vec![
                    "--advertise".to_owned(),
                    format!("ws://{}/ws", front.addr()),
                ];
                listeners.insert(id, front);
            }
            let proxy = FaultProxy::start(addr_of(&b.registry))
                .await
                .expect("proxy");
            let registry = b
                .registry
                .replace(&addr_of(&b.registry).to_string(), &proxy.addr().to_string());
            let mut args = vec![
                "node",
                "--id",
                id,
                "--listen",
                &listen,
                "--registry",
                &registry,
                "--broker",
                &b.broker,
                "--namespace",
                &ns,
                "--heartbeat-ttl",
                &ttl,
            ];
            args.extend(advertise.iter().map(String::as_str));
            let p = Proc::start(&args).await;
            assert!(p.ready_line.contains("serving"), "{}", p.ready_line);
            registries.insert(id, proxy);
            nodes.insert(id, p);
        }
        let mut gateways = Vec::new();
        for _ in 0..2 {
            let args = [
                "gateway",
                "--listen",
                "127.0.0.1:0",
                "--registry",
                &b.registry,
                "--namespace",
                &ns,
                "--heartbeat-ttl",
                &ttl,
            ];
            let p = Proc::start(&args).await;
            assert!(p.ready_line.contains("listening on"), "{}", p.ready_line);
            let addr = p.announced().to_owned();
            gateways.push((p, addr));
        }
        let apis = gateways
            .iter()
            .map(|(_, addr)| Api::new(format!("http://{addr}")))
            .collect();
        let d = Detect {
            b,
            ns,
            registries,
            listeners,
            nodes,
            gateways,
            apis,
        };
        let all: Vec<&str> = IDS.to_vec();
        wait_until("both gateways list the three nodes", || async {
            d.listed_as(&["up"]).await.iter().all(|l| *l == all)
        })
        .await;
        d
    }

    fn api(&self, k: usize) -> &Api {
        &self.apis[k]
    }

    /// The nodes on each gateway's ring (listed `up`, or `suspect`: on the
    /// ring without a fresh heartbeat).
    async fn listed_everywhere(&self) -> Vec<Vec<&'static str>> {
        self.listed_as(&["up", "suspect"]).await
    }

    /// The nodes each gateway lists in one of `states`.
    async fn listed_as(&self, states: &[&str]) -> Vec<Vec<&'static str>> {
        let mut out = Vec::new();
        for k in 0..self.gateways.len() {
            let (status, v) = self.api(k).get("/api/nodes").await;
            let nodes = v["nodes"].as_array().cloned().unwrap_or_default();
            let up: Vec<&'static str> = IDS
                .into_iter()
                .filter(|id| {
                    status == 200
                        && nodes
                            .iter()
                            .any(|n| n["id"] == *id && states.iter().any(|s| n["state"] == *s))
                })
                .collect();
            out.push(up);
        }
        out
    }

    /// Waits until no gateway lists `id`; the time since `since`.
    async fn gone_from_every_ring(&self, id: &str, since: Instant, limit: Duration) -> Duration {
        loop {
            let listed = self.listed_everywhere().await;
            if listed.iter().all(|l| !l.contains(&id)) {
                return since.elapsed();
            }
            assert!(
                since.elapsed() < limit,
                "{}: {id} still listed after {limit:?}: {listed:?}",
                self.b.name
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

async fn detect(b: Backend) {
    let d = Detect::start(b.clone()).await;
    let mut clients = Vec::new();
    for i in 0..30 {
        let k = i % 2;
        let url = format!("ws://{}/ws", d.gateways[k].1);
        clients.push(Watched::connect(url, format!("u{i}")).await);
    }

    // 1. The registry is unreachable from n1 alone for 15 s while its
    //    listener answers: it is never removed and no session moves.
    let victim = "n1";
    // `/healthz` tells a prober which incarnation of which node answers.
    let base = wsring_cluster::view::api_base_of(d.nodes[victim].announced());
    let (status, health) = Api::new(base).get("/healthz").await;
    assert_eq!(status, 200);
    assert_eq!(health["ok"], true);
    assert_eq!(health["node"], victim);
    assert!(health["incarnation"].as_u64().is_some(), "{health}");
    let epoch_before = d.api(0).epoch().await;
    let proxy = &d.registries[victim];
    proxy.refuse(true);
    proxy.cut();
    let outage = Instant::now();
    while outage.elapsed() < Duration::from_secs(15) {
        let listed = d.listed_everywhere().await;
        assert!(
            listed.iter().all(|l| l.contains(&victim)),
            "{}: {victim} removed {:?} into its registry outage: {listed:?}",
            b.name,
            outage.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    proxy.refuse(false);
    // Back: it heartbeats again, and for a few TTLs nothing changes.
    let after = Instant::now();
    while after.elapsed() < DETECT_TTL * 2 {
        let listed = d.listed_everywhere().await;
        assert!(
            listed.iter().all(|l| l.len() == 3),
            "{}: every node stays listed after the outage: {listed:?}",
            b.name
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for c in &clients {
        assert_eq!(
            c.count(),
            1,
            "{}: no session moved during the outage",
            b.name
        );
    }
    // At most one change: the node listed under the incarnation it claimed
    // when the registry came back. A removal and a rejoin would be two.
    let epochs = d.api(0).epoch().await - epoch_before;
    assert!(
        epochs <= 1,
        "{}: {epochs} membership changes during the outage",
        b.name
    );
    println!(
        "DETECT {}: registry unreachable from {victim} for 15 s: never removed, 0 sessions moved",
        b.name
    );

    // 2. SIGKILL: the node leaves every ring at once, and its clients are
    //    back on their new owners soon after.
    let victim = "n2";
    let theirs: Vec<&Watched> = clients.iter().filter(|c| c.last().1 == victim).collect();
    assert!(!theirs.is_empty(), "some clients are on {victim}");
    let killed = Instant::now();
    d.nodes[victim].signal(Signal::SIGKILL);
    // The wall clock of the kill, to read the processes' logs against.
    let at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    println!(
        "DETECT {}: {victim} SIGKILLed at unix {:.3}",
        b.name,
        at.as_secs_f64()
    );
    let gone = d.gone_from_every_ring(victim, killed, DETECT_TTL * 3).await;
    let mut back = Duration::ZERO;
    for c in &theirs {
        wait_until("the client reconnected elsewhere", || async {
            let (_, node) = c.last();
            c.count() > 1 && node != victim
        })
        .await;
        back = back.max(c.last().0 - killed);
    }
    println!(
        "DETECT {}: SIGKILL: gone from every gateway's ring in {:.3} s, {} clients back on their new owners in {:.3} s",
        b.name,
        gone.as_secs_f64(),
        theirs.len(),
        back.as_secs_f64()
    );
    // The goals: gone from every ring within 0.5 s, clients back within
    // 1.5 s.
    assert!(
        gone < Duration::from_millis(500),
        "{}: a killed node leaves every ring well before its TTL, took {gone:?}",
        b.name
    );
    assert!(
        back < Duration::from_millis(1500),
        "{}: clients of a killed node reconnect soon, took {back:?}",
        b.name
    );

    // 3. A host that vanishes (its listener blackholed: connections hang,
    //    nothing resets; and the process SIGSTOPped, so its heartbeats
    //    stop) is removed within the TTL plus a probe timeout, not earlier.
    let victim = "n3";
    let stopped = Instant::now();
    d.listeners[victim].blackhole(true);
    d.nodes[victim].signal(Signal::SIGSTOP);
    let gone = d
        .gone_from_every_ring(victim, stopped, DETECT_TTL * 4)
        .await;
    d.nodes[victim].signal(Signal::SIGKILL);
    println!(
        "DETECT {}: vanished host (listener blackholed, SIGSTOP): removed in {:.3} s (TTL {:?})",
        b.name,
        gone.as_secs_f64(),
        DETECT_TTL
    );
    // Its last heartbeat may have been up to one period before the stop.
    assert!(
        gone >= DETECT_TTL - DETECT_TTL / 4,
        "{}: a silent node is removed on its TTL, not after {gone:?}",
        b.name
    );
    // The TTL, one reap period and one probe timeout (3.1 s), with a
    // little room for a loaded machine.
    assert!(
        gone < DETECT_TTL + DETECT_TTL * 3 / 4,
        "{}: a vanished host is removed within its TTL and a probe, took {gone:?}",
        b.name
    );

    for c in &clients {
        c.client.close();
    }
    let Detect {
        b,
        ns,
        nodes,
        gateways,
        ..
    } = d;
    drop(gateways);
    drop(nodes);
    b.purge(&ns).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detect_redis() {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some(b) = procs::redis().await else {
        return;
    };
    detect(b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detect_nats() {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some(b) = procs::nats().await else { return };
    detect(b).await;
}

// ---------------------------------------------------------------------------
// Durable webhooks: a node that dies with events queued loses none of them.
// ---------------------------------------------------------------------------

/// What the application received, in arrival order (duplicates included).
type Received = Arc<Mutex<Vec<serde_json::Value>>>;

async fn take_events(
    axum::extract::State(got): axum::extract::State<Received>,
    body: axum::body::Bytes,
) -> &'static str {
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body)
        && let Some(events) = v["events"].as_array()
    {
        got.lock().expect("events").extend(events.iter().cloned());
    }
    "ok"
}

/// The events of queues whose owner is node `id` (any incarnation).
async fn spooled_of(q: &dyn wsring_cluster::HookQueue, id: &str) -> usize {
    let mut n = 0;
    for name in q.queues().await.expect("list webhook queues") {
        if name.ends_with(&format!("-{id}")) {
            n += q.read(&name, 0, 10_000).await.expect("read").len();
        }
    }
    n
}

/// Durable mode, receiver down: the victim's clients join rooms, so the
/// victim queues `session.connected` and `room.member_added` events it
/// cannot deliver; it is SIGKILLed, the receiver comes back, and every one
/// of those events must arrive (with the id the victim gave it).
async fn durable_hooks(b: Backend) {
    let ns = unique_ns("dhooks");
    let got: Received = Arc::default();
    let app = axum::Router::new()
        .route("/events", axum::routing::post(take_events))
        .with_state(Arc::clone(&got));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let app_addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    // The receiver is "down" while its proxy refuses connections.
    let front = FaultProxy::start(app_addr).await.expect("proxy");
    front.refuse(true);
    let url = format!("http://{}/events", front.addr());
    let extra = ["--durable", "--webhook-url", &url];
    let mut nodes = BTreeMap::new();
    for id in IDS {
        nodes.insert(id, b.node(&ns, id, &extra).await);
    }
    let (gw, base) = b.gateway(&ns, &[]).await;
    let ws = format!("{}/ws", base.replace("http://", "ws://"));
    let victim = "n2";
    let mut clients = Vec::new();
    for i in 0..24 {
        clients.push(Watched::connect(ws.clone(), format!("u{i}")).await);
    }
    let mut theirs = Vec::new();
    for (i, c) in clients.iter().enumerate() {
        if c.last().1 == victim {
            c.client.join(&format!("room{i}")).await.expect("join");
            theirs.push(format!("u{i}"));
        }
    }
    assert!(!theirs.is_empty(), "some clients are on {victim}");
    // Per client on the victim: its connect and its join.
    let expected = theirs.len() * 2;
    let spool = wsring::backends::hook_queue(&b.registry, &ns)
        .await
        .expect("webhook queue store");
    let deadline = Instant::now() + Duration::from_secs(20);
    while spooled_of(spool.as_ref(), victim).await < expected {
        assert!(
            Instant::now() < deadline,
            "{}: the victim's events reach its backend queue",
            b.name
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        got.lock().expect("events").is_empty(),
        "nothing delivered while the receiver is down"
    );
    let killed = Instant::now();
    nodes[victim].signal(Signal::SIGKILL);
    // The receiver comes back once the victim is dead.
    tokio::time::sleep(Duration::from_millis(500)).await;
    front.refuse(false);
    let back = Instant::now();
    let from_victim = |e: &serde_json::Value| {
        e["node"] == victim
            && e["id"]
                .as_str()
                .is_some_and(|id| id.starts_with(&format!("{victim}-")))
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let (arrived, duplicates) = loop {
        let (arrived, dups) = {
            let events = got.lock().expect("events");
            let mut seen = std::collections::BTreeSet::new();
            let mut dups = 0usize;
            for e in events.iter().filter(|e| from_victim(e)) {
                if !seen.insert(e["id"].as_str().unwrap_or_default().to_owned()) {
                    dups += 1;
                }
            }
            let arrived: Vec<(String, String)> = events
                .iter()
                .filter(|e| from_victim(e))
                .map(|e| {
                    (
                        e["type"].as_str().unwrap_or_default().to_owned(),
                        e["user"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect();
            (arrived, dups)
        };
        let complete = theirs.iter().all(|u| {
            ["session.connected", "room.member_added"]
                .iter()
                .all(|t| arrived.iter().any(|(k, user)| k == t && user == u))
        });
        if complete {
            break (arrived, dups);
        }
        assert!(
            Instant::now() < deadline,
            "{}: events the killed node had queued are missing: got {arrived:?} for {theirs:?}",
            b.name
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    println!(
        "DURABLE HOOKS {}: {expected} events queued by the killed node, receiver back {:.3} s after the kill: all delivered {:.3} s later ({} arrivals, {duplicates} duplicates)",
        b.name,
        (back - killed).as_secs_f64(),
        back.elapsed().as_secs_f64(),
        arrived.len(),
    );
    // The dead node's queue is forgotten once delivered.
    let deadline = Instant::now() + Duration::from_secs(20);
    while spooled_of(spool.as_ref(), victim).await > 0 {
        assert!(
            Instant::now() < deadline,
            "{}: the dead node's queue empties",
            b.name
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for c in &clients {
        c.client.close();
    }
    drop(gw);
    drop(nodes);
    b.purge(&ns).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durable_hooks_redis() {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some(b) = procs::redis().await else {
        return;
    };
    durable_hooks(b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durable_hooks_nats() {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some(b) = procs::nats().await else { return };
    durable_hooks(b).await;
}

/// The local 3-server NATS cluster of `scripts/test-clusters` loses the
/// server most connections use (SIGKILL): the nodes fail over to the other
/// two, and no live node is reaped, no session moves, for 15 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detect_nats_cluster_server_killed() {
    use wsring_cluster_testkit::local_clusters;
    let _one = ONE_AT_A_TIME.lock().await;
    let Some(b) = procs::nats_cluster().await else {
        return;
    };
    let _restore = local_clusters::RestoreOnDrop;
    let ns = unique_ns("detect-natsc");
    let ttl = format!("{}ms", DETECT_TTL.as_millis());
    let extra = ["--heartbeat-ttl", ttl.as_str()];
    let mut nodes = BTreeMap::new();
    for id in IDS {
        nodes.insert(id, b.node(&ns, id, &extra).await);
    }
    let (gw, base) = b.gateway(&ns, &extra).await;
    let api = Api::new(base.clone());
    let listed = || async {
        let (status, v) = api.get("/api/nodes").await;
        let nodes = v["nodes"].as_array().cloned().unwrap_or_default();
        IDS.into_iter()
            .filter(|id| {
                status == 200
                    && nodes
                        .iter()
                        .any(|n| n["id"] == *id && (n["state"] == "up" || n["state"] == "suspect"))
            })
            .count()
    };
    wait_until("the gateway lists the three nodes", || async {
        listed().await == IDS.len()
    })
    .await;
    let ws = format!("{}/ws", base.replace("http://", "ws://"));
    let mut clients = Vec::new();
    for i in 0..12 {
        clients.push(Watched::connect(ws.clone(), format!("u{i}")).await);
    }
    let epoch_before = api.epoch().await;
    // The first server of the list: every connection starts there.
    local_clusters::kill_server(4230);
    let killed = Instant::now();
    while killed.elapsed() < Duration::from_secs(15) {
        let n = listed().await;
        assert_eq!(
            n,
            IDS.len(),
            "a live node was reaped {:?} after a NATS server was killed",
            killed.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for c in &clients {
        assert_eq!(c.count(), 1, "no session moved");
    }
    let epochs = api.epoch().await - epoch_before;
    println!(
        "DETECT nats-cluster: one of three NATS servers SIGKILLed: no node reaped in 15 s, 0 sessions moved, {epochs} membership changes"
    );
    for c in &clients {
        c.client.close();
    }
    drop(gw);
    drop(nodes);
    b.purge(&ns).await;
}

// ---------------------------------------------------------------------------
// Node-side detection: without any gateway, nodes remove a SIGKILLed peer
// from the registry's view of its connections, before its TTL.
// ---------------------------------------------------------------------------

/// Three nodes and no gateway on Redis, clients connected to the nodes
/// directly. A SIGKILLed node has no tunnel anyone sees reset; its peers
/// find it late with its heartbeat and without a connection to Redis
/// (`CLIENT LIST`), probe it (refused) and remove it, well before its TTL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detect_nodes_only_redis() {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some(b) = procs::redis().await else {
        return;
    };
    let ns = unique_ns("detect-nodes");
    let ttl = format!("{}ms", DETECT_TTL.as_millis());
    let mut nodes = BTreeMap::new();
    for id in IDS {
        nodes.insert(id, b.node(&ns, id, &["--heartbeat-ttl", &ttl]).await);
    }
    let apis: BTreeMap<&str, Api> = IDS
        .into_iter()
        .map(|id| {
            let base = wsring_cluster::view::api_base_of(nodes[id].announced());
            (id, Api::new(base))
        })
        .collect();
    // The nodes each of `observers` lists (up or suspect).
    let listed = |observers: Vec<&'static str>| {
        let apis = &apis;
        async move {
            let mut out = Vec::new();
            for o in observers {
                let (status, v) = apis[o].get("/api/nodes").await;
                let list = v["nodes"].as_array().cloned().unwrap_or_default();
                let ids: Vec<&'static str> = IDS
                    .into_iter()
                    .filter(|id| {
                        status == 200
                            && list.iter().any(|n| {
                                n["id"] == *id && (n["state"] == "up" || n["state"] == "suspect")
                            })
                    })
                    .collect();
                out.push(ids);
            }
            out
        }
    };
    wait_until("every node lists the three nodes", || async {
        listed(IDS.to_vec())
            .await
            .iter()
            .all(|l| l.len() == IDS.len())
    })
    .await;
    // Clients connected to the nodes themselves (each to its user's owner,
    // as a node serves only the users it owns): raw protocol clients.
    let mut clients = Vec::new();
    for i in 0..12 {
        let user = format!("u{i}");
        let owner = apis["n1"].route(&user).await;
        let c = common::Client::connect(nodes[owner.as_str()].announced(), &user).await;
        assert_eq!(c.node(), owner, "a direct client is served by its owner");
        clients.push(c);
    }
    let victim = "n2";
    let survivors = vec!["n1", "n3"];
    let killed = Instant::now();
    nodes[victim].signal(Signal::SIGKILL);
    let gone = loop {
        let now = listed(survivors.clone()).await;
        if now.iter().all(|l| !l.contains(&victim)) {
            break killed.elapsed();
        }
        assert!(
            killed.elapsed() < DETECT_TTL * 3,
            "{victim} still listed by the survivors after {:?}: {now:?}",
            killed.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    println!(
        "DETECT {}: nodes only, SIGKILL: gone from every surviving node's ring in {:.3} s (TTL {:?})",
        b.name,
        gone.as_secs_f64(),
        DETECT_TTL
    );
    // Late after 1.5 heartbeat periods (0.75 s), seen by the next reap pass
    // (at most 0.6 s later): well before the TTL, which alone would take
    // 2 s plus a reap period.
    assert!(
        gone < DETECT_TTL * 3 / 4,
        "{}: a killed node leaves its peers' rings before its TTL, took {gone:?}",
        b.name
    );
    drop(clients);
    drop(nodes);
    b.purge(&ns).await;
}
