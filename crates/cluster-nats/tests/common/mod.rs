//! Shared test plumbing: finding the NATS server (or the local 3-server
//! cluster of `scripts/test-clusters`) and removing the buckets and streams a
//! test namespace created, so repeated runs do not pile up state on the
//! shared servers.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Mutex;
use std::time::Duration;

/// Where the tests expect nats-server with JetStream.
#[allow(dead_code)] // shared plumbing: not every test file uses the server
pub const SERVER: &str = "127.0.0.1:4222";

/// Where the tests expect the 3-server NATS cluster (`scripts/test-clusters
/// start`), unless `WSRING_TEST_NATS_CLUSTER` names another.
pub const CLUSTER: &str = "nats://127.0.0.1:4230,nats://127.0.0.1:4231,nats://127.0.0.1:4232";

/// The cluster's server URLs.
#[allow(dead_code)] // shared plumbing: not every test file uses the cluster
pub fn cluster_url() -> String {
    std::env::var("WSRING_TEST_NATS_CLUSTER").unwrap_or_else(|_| CLUSTER.to_owned())
}

/// The server under test; deletes the JetStream state of every namespace it
/// handed out when dropped.
pub struct Server {
    /// Its address.
    pub addr: SocketAddr,
    namespaces: Mutex<Vec<String>>,
    /// Set for a private TLS server ([`tls_server`]).
    tls: Option<TlsServer>,
    /// Set for the NATS cluster ([`cluster`]): its comma-separated URLs.
    pub cluster: Option<String>,
}

/// A nats-server of the test's own, with TLS (a throwaway CA) and
/// JetStream, on a random port; killed and its store removed on drop.
pub struct TlsServer {
    child: std::process::Child,
    /// The CA and certificate the server presents.
    pub pki: wsring_cluster_testkit::fault::TestPki,
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// `nats://host:port`, `tls://host:port?cacertfile=…` for a TLS server,
    /// or the list of a cluster's servers.
    pub fn url(&self) -> String {
        match &self.cluster {
            Some(urls) => urls.clone(),
            None => self.url_at(self.addr),
        }
    }

    /// The URL for reaching this server at `addr` (e.g. through a proxy).
    pub fn url_at(&self, addr: SocketAddr) -> String {
        match &self.tls {
            None => format!("nats://{addr}"),
            Some(t) => format!("tls://{addr}?cacertfile={}", t.pki.ca_file.display()),
        }
    }

    /// Remembers `ns` for clean-up.
    #[allow(dead_code)] // shared plumbing: not every test file uses it
    pub fn track(&self, ns: &str) {
        let mut spaces = self.namespaces.lock().unwrap_or_else(|e| e.into_inner());
        if !spaces.iter().any(|s| s == ns) {
            spaces.push(ns.to_owned());
        }
    }
}

/// Deletes the buckets and stream of `namespaces` (absent ones are fine).
pub async fn delete_namespaces(url: &str, namespaces: &[String]) {
    let servers: Vec<&str> = url.split(',').collect();
    let Ok(client) = async_nats::connect(servers).await else {
        return;
    };
    let js = async_nats::jetstream::new(client);
    for ns in namespaces {
        for stream in [
            format!("KV_{ns}_members"),
            format!("KV_{ns}_heartbeats"),
            format!("{ns}_rooms"),
            format!("{ns}_streams"),
            format!("KV_{ns}_usage"),
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
/// [`skip_or_fail`]: wsring_cluster_testkit::conformance::skip_or_fail
#[allow(dead_code)] // shared plumbing: not every test file uses the server
pub async fn server() -> Option<Server> {
    let addr = match SERVER.to_socket_addrs().ok().and_then(|mut a| a.next()) {
        Some(a) => a,
        None => {
            wsring_cluster_testkit::conformance::skip_or_fail(&format!("cannot resolve {SERVER}"));
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
                    wsring_cluster_testkit::conformance::skip_or_fail(&format!(
                        "NATS at {SERVER} has no JetStream: {e}"
                    ));
                    return None;
                }
            }
        }
        Ok(Err(e)) => {
            wsring_cluster_testkit::conformance::skip_or_fail(&format!(
                "NATS not reachable at {SERVER}: {e}"
            ));
            return None;
        }
        Err(_) => {
            wsring_cluster_testkit::conformance::skip_or_fail(&format!(
                "NATS not reachable at {SERVER}: timed out"
            ));
            return None;
        }
    }
    Some(Server {
        addr,
        namespaces: Mutex::new(Vec::new()),
        tls: None,
        cluster: None,
    })
}

/// The local NATS cluster, or `None` (after [`skip_or_fail`]) when it is not
/// reachable, is not a cluster, or has no JetStream meta leader.
///
/// [`skip_or_fail`]: wsring_cluster_testkit::conformance::skip_or_fail
#[allow(dead_code)] // shared plumbing: not every test file uses the cluster
pub async fn cluster() -> Option<Server> {
    let urls = cluster_url();
    let servers: Vec<&str> = urls.split(',').collect();
    let hint = "start it with scripts/test-clusters start";
    let client = match tokio::time::timeout(
        Duration::from_secs(3),
        async_nats::ConnectOptions::new()
            .ignore_discovered_servers()
            .connect(servers.clone()),
    )
    .await
    {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            wsring_cluster_testkit::conformance::skip_or_fail(&format!(
                "NATS cluster not reachable at {urls}: {e} ({hint})"
            ));
            return None;
        }
        Err(_) => {
            wsring_cluster_testkit::conformance::skip_or_fail(&format!(
                "NATS cluster not reachable at {urls}: timed out ({hint})"
            ));
            return None;
        }
    };
    if client.server_info().cluster.is_none() {
        wsring_cluster_testkit::conformance::skip_or_fail(&format!(
            "NATS at {urls} is a standalone server, not a cluster"
        ));
        return None;
    }
    // The JetStream API answers only once the cluster has a meta leader.
    let js = async_nats::jetstream::new(client);
    if let Err(e) = js.get_stream("wsring-probe-nonexistent").await
        && !matches!(
            e.kind(),
            async_nats::jetstream::context::GetStreamErrorKind::JetStream(_)
        )
    {
        wsring_cluster_testkit::conformance::skip_or_fail(&format!(
            "NATS cluster at {urls} has no working JetStream: {e} ({hint})"
        ));
        return None;
    }
    let first = servers[0].trim_start_matches("nats://");
    Some(Server {
        addr: first.parse().expect("cluster server address"),
        namespaces: Mutex::new(Vec::new()),
        tls: None,
        cluster: Some(urls),
    })
}

/// Starts a private nats-server with TLS and JetStream (`None` after
/// [`skip_or_fail`] when the binary is missing).
///
/// [`skip_or_fail`]: wsring_cluster_testkit::conformance::skip_or_fail
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
        wsring_cluster_testkit::conformance::skip_or_fail("nats-server binary not found");
        return None;
    };
    let pki = wsring_cluster_testkit::fault::TestPki::generate();
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
        cluster: None,
    })
}
