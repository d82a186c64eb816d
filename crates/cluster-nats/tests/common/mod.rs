//! Shared test plumbing: finding the NATS server and removing the buckets
//! and streams a test namespace created, so repeated runs do not pile up
//! state on the shared server.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Mutex;
use std::time::Duration;

/// Where the tests expect nats-server with JetStream.
pub const SERVER: &str = "127.0.0.1:4222";

/// The server under test; deletes the JetStream state of every namespace it
/// handed out when dropped.
pub struct Server {
    /// Its address.
    pub addr: SocketAddr,
    namespaces: Mutex<Vec<String>>,
    /// Set for a private TLS server ([`tls_server`]).
    tls: Option<TlsServer>,
}

/// A nats-server of the test's own, with TLS (a throwaway CA) and
/// JetStream, on a random port; killed and its store removed on drop.
pub struct TlsServer {
    child: std::process::Child,
    /// The CA and certificate the server presents.
    pub pki: wsring_cluster::fault::TestPki,
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// `nats://host:port`, or `tls://host:port?cacertfile=…` for a TLS server.
    pub fn url(&self) -> String {
        self.url_at(self.addr)
    }

    /// The URL for reaching this server at `addr` (e.g. through a proxy).
    pub fn url_at(&self, addr: SocketAddr) -> String {
        match &self.tls {
            None => format!("nats://{addr}"),
            Some(t) => format!("tls://{addr}?cacertfile={}", t.pki.ca_file.display()),
        }
    }

    /// Remembers `ns` for clean-up.
    pub fn track(&self, ns: &str) {
        let mut spaces = self.namespaces.lock().unwrap_or_else(|e| e.into_inner());
        if !spaces.iter().any(|s| s == ns) {
            spaces.push(ns.to_owned());
        }
    }
}

/// Deletes the buckets and stream of `namespaces` (absent ones are fine).
pub async fn delete_namespaces(url: &str, namespaces: &[String]) {
    let Ok(client) = async_nats::connect(url).await else {
        return;
    };
    let js = async_nats::jetstream::new(client);
    for ns in namespaces {
        for stream in [
            format!("KV_{ns}_members"),
            format!("KV_{ns}_heartbeats"),
            format!("{ns}_streams"),
        ] {
            let _ = js.delete_stream(&stream).await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let namespaces =
            std::mem::take(&mut *self.namespaces.lock().unwrap_or_else(|e| e.into_inner()));
        // A private server's state dies with it.
        if namespaces.is_empty() || std::thread::panicking() || self.tls.is_some() {
            // After a failure, leave the state for inspection.
            return;
        }
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if handle.runtime_flavor() != tokio::runtime::RuntimeFlavor::MultiThread {
            return;
        }
        let url = self.url();
        tokio::task::block_in_place(|| {
            handle.block_on(async {
                let _ = tokio::time::timeout(
                    Duration::from_secs(5),
                    delete_namespaces(&url, &namespaces),
                )
                .await;
            });
        });
    }
}

/// The server, or `None` (after [`skip_or_fail`]) when it is not reachable.
///
/// [`skip_or_fail`]: wsring_cluster::conformance::skip_or_fail
pub async fn server() -> Option<Server> {
    let addr = match SERVER.to_socket_addrs().ok().and_then(|mut a| a.next()) {
        Some(a) => a,
        None => {
            wsring_cluster::conformance::skip_or_fail(&format!("cannot resolve {SERVER}"));
            return None;
        }
    };
    let probe = tokio::time::timeout(
        Duration::from_secs(3),
        async_nats::connect(format!("nats://{addr}")),
    )
    .await;
    match probe {
        Ok(Ok(client)) => {
            // JetStream must be on too; an API request answers that.
            let js = async_nats::jetstream::new(client);
            if let Err(e) = js.get_stream("wsring-probe-nonexistent").await {
                let jetstream_answered = matches!(
                    e.kind(),
                    async_nats::jetstream::context::GetStreamErrorKind::JetStream(_)
                );
                if !jetstream_answered {
                    wsring_cluster::conformance::skip_or_fail(&format!(
                        "NATS at {SERVER} has no JetStream: {e}"
                    ));
                    return None;
                }
            }
        }
        Ok(Err(e)) => {
            wsring_cluster::conformance::skip_or_fail(&format!(
                "NATS not reachable at {SERVER}: {e}"
            ));
            return None;
        }
        Err(_) => {
            wsring_cluster::conformance::skip_or_fail(&format!(
                "NATS not reachable at {SERVER}: timed out"
            ));
            return None;
        }
    }
    Some(Server {
        addr,
        namespaces: Mutex::new(Vec::new()),
        tls: None,
    })
}

/// Starts a private nats-server with TLS and JetStream (`None` after
/// [`skip_or_fail`] when the binary is missing).
///
/// [`skip_or_fail`]: wsring_cluster::conformance::skip_or_fail
#[allow(dead_code)] // shared plumbing: only the conformance tests use it
pub async fn tls_server() -> Option<Server> {
    use std::io::{BufRead, BufReader};
    let bin = [
        "/usr/sbin/nats-server",
        "/usr/bin/nats-server",
        "nats-server",
    ]
    .into_iter()
    .find(|b| {
        std::process::Command::new(b)
            .arg("--version")
            .output()
            .is_ok()
    });
    let Some(bin) = bin else {
        wsring_cluster::conformance::skip_or_fail("nats-server binary not found");
        return None;
    };
    let pki = wsring_cluster::fault::TestPki::generate();
    let store = pki.dir.join("store");
    let mut child = std::process::Command::new(bin)
        .args(["-a", "127.0.0.1", "-p", "-1", "-js", "-sd"])
        .arg(&store)
        .arg("--tls")
        .arg("--tlscert")
        .arg(&pki.cert_file)
        .arg("--tlskey")
        .arg(&pki.key_file)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start nats-server");
    let stderr = child.stderr.take().expect("stderr");
    // The log line that announces the port is the readiness signal.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(addr) = line.split("Listening for client connections on ").nth(1)
                && let Some(tx) = tx.take()
            {
                let _ = tx.send(addr.trim().to_owned());
            }
        }
    });
    let addr = tokio::task::spawn_blocking(move || rx.recv_timeout(Duration::from_secs(20)))
        .await
        .expect("join")
        .expect("nats-server announces its port");
    Some(Server {
        addr: addr.parse().expect("address"),
        namespaces: Mutex::new(Vec::new()),
        tls: Some(TlsServer { child, pki }),
    })
}
