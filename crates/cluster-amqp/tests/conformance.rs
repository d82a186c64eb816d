//! The backend conformance suite against the RabbitMQ at 127.0.0.1:5672.
//!
//! RabbitMQ is broker-only, so the registry and stream cases report "not
//! applicable". Each case works in its own namespace; queues are exclusive and
//! vanish with their connections, and the harness deletes the namespace's
//! exchanges when the case ends, so a shared server accumulates nothing.
//! The suite runs twice: plaintext (`amqp://`) and over TLS (`amqps://`
//! through a TLS-terminating proxy with a throwaway CA named by
//! `cacertfile`).

use async_trait::async_trait;
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use wsring_cluster::{Broker, Inbox, Registry, Retention, StreamStore};
use wsring_cluster_amqp::{Names, connect_broker};
use wsring_cluster_testkit::conformance::{Harness, skip_or_fail, unique_ns};
use wsring_cluster_testkit::fault::{TestPki, TlsProxy};

const SERVER: &str = "127.0.0.1:5672";

fn url(addr: SocketAddr) -> String {
    format!("amqp://guest:guest@{addr}/%2f")
}

struct Rabbit {
    /// Where clients connect: the server, or the TLS proxy in front of it.
    server: SocketAddr,
    /// The server itself (cleanup goes there directly).
    plain: SocketAddr,
    /// Set for the TLS run.
    tls: Option<(TestPki, TlsProxy)>,
    /// Namespaces used by this case, cleaned up on drop.
    namespaces: Mutex<BTreeSet<String>>,
}

impl Rabbit {
    fn url(&self, addr: SocketAddr) -> String {
        match &self.tls {
            None => url(addr),
            Some((pki, _)) => format!(
                "amqps://guest:guest@{addr}/%2f?cacertfile={}",
                pki.ca_file.display()
            ),
        }
    }
}

#[async_trait]
impl Harness for Rabbit {
    async fn registry(&self, _ns: &str, _ttl: Duration) -> Option<Arc<dyn Registry>> {
        None
    }

    async fn broker(&self, ns: &str, node: &str) -> Option<(Arc<dyn Broker>, Inbox)> {
        self.broker_at(self.server, ns, node).await
    }

    async fn streams(&self, _ns: &str, _retention: Retention) -> Option<Arc<dyn StreamStore>> {
        None
    }

    fn server_addr(&self) -> Option<SocketAddr> {
        Some(self.server)
    }

    async fn broker_at(
        &self,
        addr: SocketAddr,
        ns: &str,
        node: &str,
    ) -> Option<(Arc<dyn Broker>, Inbox)> {
        self.namespaces.lock().expect("lock").insert(ns.to_owned());
        // A server that answered the reachability probe must accept us: a
        // failure here is a test failure, not "not applicable".
        Some(
            connect_broker(&self.url(addr), ns, node)
                .await
                .expect("connect to RabbitMQ"),
        )
    }
}

impl Drop for Rabbit {
    /// Deletes the exchanges of every namespace the case used. Drop cannot be
    /// async, so the cleanup runs on its own thread and runtime.
    fn drop(&mut self) {
        let namespaces =
            std::mem::take(&mut *self.namespaces.lock().unwrap_or_else(|e| e.into_inner()));
        if namespaces.is_empty() {
            return;
        }
        let url = url(self.plain);
        let cleanup = std::thread::spawn(move || {
            // No panics here: this may run while a failed case unwinds.
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                let work = delete_exchanges(&url, &namespaces);
                if let Err(e) = tokio::time::timeout(Duration::from_secs(10), work).await {
                    eprintln!("exchange cleanup timed out: {e}");
                }
            });
        });
        let _ = cleanup.join();
    }
}

async fn delete_exchanges(url: &str, namespaces: &BTreeSet<String>) {
    use lapin::options::ExchangeDeleteOptions;
    use lapin::{Connection, ConnectionProperties};
    let conn = match Connection::connect(url, ConnectionProperties::default()).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("exchange cleanup: cannot connect: {e}");
            return;
        }
    };
    if let Ok(ch) = conn.create_channel().await {
        for ns in namespaces {
            let Ok(names) = Names::new(ns) else { continue };
            for (exchange, _) in names.exchanges() {
                if let Err(e) = ch
                    .exchange_delete(exchange.into(), ExchangeDeleteOptions::default())
                    .await
                {
                    eprintln!("exchange cleanup: {exchange}: {e}");
                }
            }
        }
    }
    let _ = conn.close(200, "cleanup done".into()).await;
}

async fn rabbit() -> Option<Rabbit> {
    let server: SocketAddr = SERVER.parse().expect("address");
    let probe = tokio::time::timeout(
        Duration::from_secs(2),
        tokio::net::TcpStream::connect(server),
    )
    .await;
    match probe {
        Ok(Ok(_)) => Some(Rabbit {
            server,
            plain: server,
            tls: None,
            namespaces: Mutex::new(BTreeSet::new()),
        }),
        Ok(Err(e)) => {
            skip_or_fail(&format!("RabbitMQ not reachable at {SERVER}: {e}"));
            None
        }
        Err(_) => {
            skip_or_fail(&format!("RabbitMQ not reachable at {SERVER}: timed out"));
            None
        }
    }
}

wsring_cluster_testkit::conformance_suite!(rabbit());

/// The same suite over TLS.
mod tls {
    use super::*;

    async fn rabbit_tls() -> Option<Rabbit> {
        let mut r = rabbit().await?;
        let pki = TestPki::generate();
        let proxy = TlsProxy::start(r.plain, &pki).await.expect("tls proxy");
        r.server = proxy.addr();
        r.tls = Some((pki, proxy));
        Some(r)
    }

    wsring_cluster_testkit::conformance_suite!(rabbit_tls());

    /// The TLS run really is TLS, and an untrusted server is refused.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn amqps_verifies_the_server() {
        let Some(h) = rabbit_tls().await else { return };
        let ns = unique_ns("tls");
        let (b, _inbox) = h.broker(&ns, "a").await.expect("broker");
        assert!(b.healthy());
        let proxy = &h.tls.as_ref().expect("tls").1;
        assert!(proxy.handshakes() > 0, "no TLS handshake happened");
        let untrusted = format!("amqps://guest:guest@{}/%2f", proxy.addr());
        let err = connect_broker(&untrusted, &ns, "b")
            .await
            .err()
            .expect("an untrusted server must be refused");
        eprintln!("untrusted CA: {err}");
        b.close().await;
    }
}
