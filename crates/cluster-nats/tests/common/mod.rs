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
}

impl Server {
    /// `nats://host:port`.
    pub fn url(&self) -> String {
        format!("nats://{}", self.addr)
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
        if namespaces.is_empty() || std::thread::panicking() {
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
    })
}
