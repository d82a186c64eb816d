//! A TCP proxy for fault injection in tests: put it between a backend client
//! and its server, then [`cut`](FaultProxy::cut) every connection at once to
//! simulate a dropped broker or registry connection, without touching the
//! shared server other tests are using.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// A running proxy to one upstream address.
pub struct FaultProxy {
    addr: SocketAddr,
    /// Incremented by every cut; connection tasks end when it changes.
    generation: watch::Sender<u64>,
    refusing: Arc<AtomicBool>,
    accepted: Arc<AtomicU64>,
    refused: Arc<AtomicU64>,
    upstreams: Arc<Mutex<Vec<SocketAddr>>>,
}

impl FaultProxy {
    /// Listens on an ephemeral loopback port and forwards to `upstream`.
    pub async fn start(upstream: SocketAddr) -> std::io::Result<FaultProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (generation, gen_rx) = watch::channel(0u64);
        let refusing = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(AtomicU64::new(0));
        let refused = Arc::new(AtomicU64::new(0));
        let upstreams = Arc::new(Mutex::new(Vec::new()));
        let (r, a, f, u) = (
            Arc::clone(&refusing),
            Arc::clone(&accepted),
            Arc::clone(&refused),
            Arc::clone(&upstreams),
        );
        tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                if r.load(Ordering::SeqCst) {
                    f.fetch_add(1, Ordering::SeqCst);
                    drop(client);
                    continue;
                }
                a.fetch_add(1, Ordering::SeqCst);
                let mut gen_rx = gen_rx.clone();
                let born = *gen_rx.borrow_and_update();
                let u = Arc::clone(&u);
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let local = server.local_addr().ok();
                    if let Some(l) = local {
                        lock(&u).push(l);
                    }
                    let mut client = client;
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = gen_rx.wait_for(|g| *g != born) => {}
                    }
                    if let Some(l) = local {
                        lock(&u).retain(|a| *a != l);
                    }
                });
            }
        });
        Ok(FaultProxy {
            addr,
            generation,
            refusing,
            accepted,
            refused,
            upstreams,
        })
    }

    /// The address clients should connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Drops every open connection (new ones are still accepted).
    pub fn cut(&self) {
        self.generation.send_modify(|g| *g += 1);
    }

    /// While set, new connections are accepted and immediately closed.
    pub fn refuse(&self, on: bool) {
        self.refusing.store(on, Ordering::SeqCst);
    }

    /// Local addresses of the proxy's open connections to the upstream, i.e.
    /// the client addresses the server sees (for `CLIENT KILL ADDR …`).
    pub fn upstream_addrs(&self) -> Vec<SocketAddr> {
        lock(&self.upstreams).clone()
    }

    /// Connections accepted so far (a reconnect shows up here).
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Connection attempts turned away while [`FaultProxy::refuse`] was on:
    /// each failed reconnect attempt of a client shows up here.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::SeqCst)
    }

    /// Waits until at least `n` more connection attempts than `since` were
    /// refused, polling; panics after `limit`. Tests use it to let a client's
    /// reconnect loop fail several times instead of sleeping a fixed time.
    pub async fn wait_refused(&self, since: u64, n: u64, limit: std::time::Duration) {
        let start = tokio::time::Instant::now();
        while self.refused() < since + n {
            assert!(
                start.elapsed() < limit,
                "only {} reconnect attempts in {limit:?}",
                self.refused() - since
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }
}

use crate::lock;
