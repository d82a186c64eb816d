//! `wsring dev --cluster URL`: the dev cluster as real OS processes. Each node
//! is a `wsring node` child process on the given backend; the HTTP API's
//! add/drain/crash start it, send it SIGTERM, or SIGKILL it, so failures
//! can be tried on a real backend without a container engine.

use async_trait::async_trait;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::Mutex;
use tracing::{info, warn};
use wsring_cluster::Membership;
use wsring_gateway::{LaunchError, Launched, Launcher, RemoveMode};

/// Time allowed for a child to print its serving line and join the ring.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// Node processes of a dev cluster.
pub struct ProcessNodes {
    exe: PathBuf,
    /// Flags every child gets (backend URLs, namespace, routing, …).
    args: Vec<String>,
    host: String,
    children: Mutex<BTreeMap<String, Child>>,
    next: AtomicU64,
    membership: Arc<Membership>,
}

impl ProcessNodes {
    /// A launcher that runs `exe node <args>` for each node.
    pub fn new(exe: PathBuf, args: Vec<String>, host: String, membership: Arc<Membership>) -> Self {
        ProcessNodes {
            exe,
            args,
            host,
            children: Mutex::new(BTreeMap::new()),
            next: AtomicU64::new(0),
            membership,
        }
    }

    /// Starts node `n<k>` and waits until it serves and is on the ring.
    pub async fn spawn(&self) -> Result<Launched, LaunchError> {
        let fail = |m: String| LaunchError::Failed(m);
        let id = format!("n{}", self.next.fetch_add(1, Ordering::SeqCst) + 1);
        let mut child = Command::new(&self.exe)
            .args(["node", "--exit-with-parent"])
            .args(["--id", &id, "--listen", &format!("{}:0", self.host)])
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| fail(format!("cannot start {}: {e}", self.exe.display())))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| fail("child has no stdout".into()))?;
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(START_TIMEOUT, lines.next_line())
            .await
            .map_err(|_| fail(format!("node {id} did not start within {START_TIMEOUT:?}")))?
            .map_err(|e| fail(e.to_string()))?;
        let Some(url) = line
            .as_deref()
            .and_then(|l| l.split_whitespace().last())
            .filter(|u| u.starts_with("ws"))
            .map(str::to_owned)
        else {
            let status = child.wait().await.ok();
            return Err(fail(format!(
                "node {id} exited during start-up ({status:?})"
            )));
        };
        // Keep draining stdout so the child never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let mut views = self.membership.subscribe();
        tokio::time::timeout(START_TIMEOUT, views.wait_for(|v| v.ring.contains(&id)))
            .await
            .map_err(|_| fail(format!("node {id} never appeared on the ring")))?
            .map_err(|_| fail("membership stopped".into()))?;
        info!(node = %id, %url, pid = ?child.id(), "node process started");
        self.children.lock().await.insert(id.clone(), child);
        Ok(Launched { id, url })
    }

    /// SIGTERM every child (they drain), then reap them; SIGKILL stragglers.
    pub async fn shutdown(&self) {
        let children = std::mem::take(&mut *self.children.lock().await);
        for child in children.values() {
            signal(child, Signal::SIGTERM);
        }
        for (id, mut child) in children {
            if tokio::time::timeout(Duration::from_secs(15), child.wait())
                .await
                .is_err()
            {
                warn!(node = %id, "did not stop after SIGTERM; killing");
                let _ = child.kill().await;
            }
        }
    }

    /// Process ids by node id (for tests).
    pub async fn pids(&self) -> BTreeMap<String, u32> {
        self.children
            .lock()
            .await
            .iter()
            .filter_map(|(id, c)| c.id().map(|p| (id.clone(), p)))
            .collect()
    }
}

fn signal(child: &Child, sig: Signal) {
    if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok())
        && let Err(e) = kill(Pid::from_raw(pid), sig)
    {
        warn!(pid, signal = %sig, error = %e, "signal failed");
    }
}

#[async_trait]
impl Launcher for ProcessNodes {
    async fn add(&self) -> Result<Launched, LaunchError> {
        self.spawn().await
    }

    async fn remove(&self, id: &str, mode: RemoveMode) -> Result<(), LaunchError> {
        let mut child = self
            .children
            .lock()
            .await
            .remove(id)
            .ok_or_else(|| LaunchError::NotFound(id.to_owned()))?;
        let sig = match mode {
            RemoveMode::Drain => Signal::SIGTERM,
            RemoveMode::Crash => Signal::SIGKILL,
        };
        signal(&child, sig);
        let id = id.to_owned();
        tokio::spawn(async move {
            let status = child.wait().await;
            info!(node = %id, ?status, "node process exited");
        });
        Ok(())
    }
}
