//! A TCP proxy for fault injection in tests: put it between a backend client
//! and its server, then [`cut`](FaultProxy::cut) every connection at once to
//! simulate a dropped broker or registry connection, without touching the
//! shared server other tests are using, or [`blackhole`](FaultProxy::blackhole)
//! it: a host that vanished (no reset, no answer, connections left hanging).
//!
//! Also here for TLS tests: [`TestPki`], a throwaway CA and server
//! certificate, and [`TlsProxy`], which puts TLS in front of a plaintext
//! test server.

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
    /// While true, nothing is forwarded and nothing is closed.
    blackholing: watch::Sender<bool>,
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
        let (blackholing, hole_rx) = watch::channel(false);
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
                let mut hole_rx = hole_rx.clone();
                let u = Arc::clone(&u);
                tokio::spawn(async move {
                    // A vanished host: the connection is held open, silent,
                    // until the hole closes or a cut.
                    let silent =
                        |client: TcpStream,
                         mut hole_rx: watch::Receiver<bool>,
                         mut gen_rx: watch::Receiver<u64>| async move {
                            tokio::select! {
                                _ = hole_rx.wait_for(|h| !*h) => {}
                                _ = gen_rx.wait_for(|g| *g != born) => {}
                            }
                            drop(client);
                        };
                    if *hole_rx.borrow_and_update() {
                        silent(client, hole_rx, gen_rx).await;
                        return;
                    }
                    let Ok(mut server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let local = server.local_addr().ok();
                    if let Some(l) = local {
                        lock(&u).push(l);
                    }
                    let mut client = client;
                    let holed = tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => false,
                        _ = gen_rx.wait_for(|g| *g != born) => false,
                        _ = hole_rx.wait_for(|h| *h) => true,
                    };
                    if holed {
                        // Both ends stay open and silent.
                        let _server = server;
                        silent(client, hole_rx, gen_rx).await;
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
            blackholing,
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

    /// While set, the upstream looks like a host that vanished: nothing is
    /// forwarded either way and nothing is closed or reset, on open
    /// connections and on new ones (accepted, then left silent). Clearing
    /// it closes the connections held silent.
    pub fn blackhole(&self, on: bool) {
        self.blackholing.send_replace(on);
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

use wsring_cluster::lock;

/// A throwaway PKI for TLS tests: a CA and a server certificate for
/// `localhost` and `127.0.0.1`, written as PEM files into a fresh directory.
pub struct TestPki {
    /// The directory holding the files.
    pub dir: std::path::PathBuf,
    /// The CA certificate (what clients trust).
    pub ca_file: std::path::PathBuf,
    /// The server certificate, signed by the CA.
    pub cert_file: std::path::PathBuf,
    /// The server's private key (PKCS#8).
    pub key_file: std::path::PathBuf,
    cert_der: Vec<u8>,
    key_der: Vec<u8>,
}

impl TestPki {
    /// Generates the CA and the server certificate.
    pub fn generate() -> TestPki {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType};
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "wsring test CA");
        let ca_cert = ca_params.self_signed(&ca_key).expect("CA cert");
        let issuer = Issuer::new(ca_params, ca_key);
        let key = KeyPair::generate().expect("server key");
        let mut params = CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
        params
            .subject_alt_names
            .push(SanType::IpAddress(std::net::IpAddr::from([127, 0, 0, 1])));
        let cert = params.signed_by(&key, &issuer).expect("server cert");
        let dir = std::env::temp_dir().join(format!(
            "wsring-pki-{}-{}",
            std::process::id(),
            PKI_SEQ.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&dir).expect("pki dir");
        let write = |name: &str, body: String| {
            let p = dir.join(name);
            std::fs::write(&p, body).expect("write pem");
            p
        };
        TestPki {
            ca_file: write("ca.pem", ca_cert.pem()),
            cert_file: write("cert.pem", cert.pem()),
            key_file: write("key.pem", key.serialize_pem()),
            cert_der: cert.der().to_vec(),
            key_der: key.serialize_der(),
            dir,
        }
    }

    /// A rustls server configuration presenting the server certificate.
    pub fn server_config(&self) -> std::sync::Arc<tokio_rustls::rustls::ServerConfig> {
        use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
        let provider = std::sync::Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
        let cfg = tokio_rustls::rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_no_client_auth()
            .with_single_cert(
                vec![CertificateDer::from(self.cert_der.clone())],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone())),
            )
            .expect("server config");
        std::sync::Arc::new(cfg)
    }
}

impl Drop for TestPki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

static PKI_SEQ: AtomicU64 = AtomicU64::new(0);

/// A TLS-terminating proxy: accepts TLS with a [`TestPki`] certificate and
/// forwards the plaintext to `upstream`, so a plaintext test server can be
/// reached as `rediss://` or `amqps://`.
pub struct TlsProxy {
    addr: SocketAddr,
    /// Accepted TLS handshakes.
    handshakes: Arc<AtomicU64>,
}

impl TlsProxy {
    /// Listens on an ephemeral loopback port.
    pub async fn start(upstream: SocketAddr, pki: &TestPki) -> std::io::Result<TlsProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let acceptor = tokio_rustls::TlsAcceptor::from(pki.server_config());
        let handshakes = Arc::new(AtomicU64::new(0));
        let count = Arc::clone(&handshakes);
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let (acceptor, count) = (acceptor.clone(), Arc::clone(&count));
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    count.fetch_add(1, Ordering::SeqCst);
                    let Ok(mut server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut server).await;
                });
            }
        });
        Ok(TlsProxy { addr, handshakes })
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// TLS handshakes completed so far: proof a client really used TLS.
    pub fn handshakes(&self) -> u64 {
        self.handshakes.load(Ordering::SeqCst)
    }
}
