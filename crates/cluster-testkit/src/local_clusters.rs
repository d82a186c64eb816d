//! Fault injection on the local clusters of `scripts/test-clusters` (a Redis
//! Cluster with replicas and a 3-server NATS cluster): finding a server's
//! pid from its port, killing it with SIGKILL, bringing the cluster back to
//! health afterwards, and the durable zero-loss check the fault tests share.

use bytes::Bytes;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use wsring_cluster::stream::{StreamName, StreamStore};

/// Where `scripts/test-clusters` keeps its data and pid files.
pub fn clusters_dir() -> PathBuf {
    std::env::var_os("WSRING_CLUSTERS_DIR")
        .map_or_else(|| PathBuf::from("/tmp/wsring-test-clusters"), PathBuf::from)
}

/// The `scripts/test-clusters` of this workspace.
pub fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/test-clusters")
}

/// The pid of the cluster server listening on client port `port`, from the
/// pid files the script writes (checked against the process's command line,
/// so a stale file never names an unrelated process).
pub fn server_pid(port: u16) -> Option<u32> {
    let dir = clusters_dir();
    for engine in ["redis", "nats"] {
        let Ok(entries) = std::fs::read_dir(dir.join(engine)) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(pid) = std::fs::read_to_string(entry.path().join("pid")) else {
                continue;
            };
            let Ok(pid) = pid.trim().parse::<u32>() else {
                continue;
            };
            let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
                continue;
            };
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(&format!(":{port} ")) || cmd.contains(&format!("-p {port} ")) {
                return Some(pid);
            }
        }
    }
    None
}

/// Kills the server on `port` with SIGKILL and waits until it is gone.
pub fn kill_server(port: u16) -> u32 {
    let pid = server_pid(port).unwrap_or_else(|| panic!("no cluster server on port {port}"));
    let status = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -9 {pid} failed");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::path::Path::new(&format!("/proc/{pid}/cmdline")).exists()
        && std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| !c.is_empty())
    {
        assert!(Instant::now() < deadline, "server {pid} still running");
        std::thread::sleep(Duration::from_millis(20));
    }
    pid
}

/// Runs `scripts/test-clusters start`: restarts whatever is down and waits
/// until both clusters are healthy again.
pub fn restore() {
    let out = std::process::Command::new(script())
        .arg("start")
        .output()
        .expect("run scripts/test-clusters");
    assert!(
        out.status.success(),
        "scripts/test-clusters start failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Restores the clusters when dropped, so a failing fault test does not
/// leave them broken for the tests after it. Tests that fail servers over
/// must not overlap: a server restarted while another test's failover is
/// still pending comes back as an empty primary (the local cluster keeps no
/// data on disk) and takes its shard's data with it.
pub struct RestoreOnDrop;

impl Drop for RestoreOnDrop {
    fn drop(&mut self) {
        let out = std::process::Command::new(script()).arg("start").output();
        if let Ok(o) = out
            && !o.status.success()
        {
            eprintln!(
                "scripts/test-clusters start failed: {}",
                String::from_utf8_lossy(&o.stderr)
            );
        }
    }
}

/// What [`appends_survive`] observed.
#[derive(Debug, Clone)]
pub struct ZeroLoss {
    /// Appends acknowledged (all of them, in the end).
    pub acked: usize,
    /// Failed attempts that were retried (with the same dedup key).
    pub retries: usize,
    /// Longest time one append took, retries included: the outage as a
    /// writer saw it.
    pub longest_append: Duration,
}

/// Appends `total` messages to `stream` one after another, each with its own
/// dedup key and retried on failure until `deadline_per_append`; calls
/// `fault` once `fault_after` are acknowledged. Then reads the stream back
/// and asserts that every acknowledged message is there exactly once, at the
/// seq its acknowledgement named, in order.
pub async fn appends_survive(
    store: Arc<dyn StreamStore>,
    stream: StreamName,
    total: usize,
    fault_after: usize,
    fault: impl FnOnce() + Send + 'static,
    deadline_per_append: Duration,
) -> ZeroLoss {
    let mut fault = Some(fault);
    let mut acked: Vec<(u64, Bytes)> = Vec::with_capacity(total);
    let (mut retries, mut longest) = (0, Duration::ZERO);
    for i in 0..total {
        if i == fault_after
            && let Some(f) = fault.take()
        {
            tokio::task::spawn_blocking(f).await.expect("fault");
        }
        let payload = Bytes::from(format!("m{i}"));
        let key = format!("k{i}");
        let started = Instant::now();
        let a = loop {
            match tokio::time::timeout(
                Duration::from_secs(10),
                store.append(&stream, payload.clone(), Some(&key)),
            )
            .await
            {
                Ok(Ok(a)) => break a,
                Ok(Err(e)) => eprintln!("append {i}: {e} (retrying)"),
                Err(_) => eprintln!("append {i}: timed out (retrying)"),
            }
            retries += 1;
            assert!(
                started.elapsed() < deadline_per_append,
                "append {i} not acknowledged within {deadline_per_append:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        longest = longest.max(started.elapsed());
        acked.push((a.seq, payload));
    }
    // Read everything back.
    let mut got: Vec<(u64, Bytes)> = Vec::new();
    let mut after = 0;
    loop {
        let batch = store
            .read_after(&stream, after, 500)
            .await
            .expect("read back");
        if batch.entries.is_empty() {
            break;
        }
        after = batch.entries.last().map_or(after, |e| e.0);
        got.extend(batch.entries);
    }
    assert_eq!(
        got.len(),
        acked.len(),
        "stored entries differ from acknowledged ones: stored seqs {:?}..{:?}, acknowledged {:?}..{:?}",
        got.first().map(|e| e.0),
        got.last().map(|e| e.0),
        acked.first().map(|e| e.0),
        acked.last().map(|e| e.0),
    );
    for ((seq, p), (gseq, gp)) in acked.iter().zip(&got) {
        assert_eq!((seq, p), (gseq, gp), "acknowledged message lost or moved");
    }
    ZeroLoss {
        acked: acked.len(),
        retries,
        longest_append: longest,
    }
}

/// Waits (up to 30 s) for the first broker event `want` accepts, skipping
/// the others; panics naming `what` if none comes.
pub async fn wait_event(
    inbox: &mut wsring_cluster::Inbox,
    want: fn(&wsring_cluster::BrokerEvent) -> bool,
    what: &str,
) {
    let deadline = Duration::from_secs(30);
    tokio::time::timeout(deadline, async {
        loop {
            match inbox.recv().await {
                Some(e) if want(&e) => return,
                Some(_) => {}
                None => panic!("inbox closed"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {what} within {deadline:?}"));
}

/// After a server was lost: the broker behind `inbox` reports the lost
/// connection, then its resubscription, and a publish on `topic` by
/// `publisher` reaches it again.
pub async fn broker_recovers(
    inbox: &mut wsring_cluster::Inbox,
    publisher: &dyn wsring_cluster::Broker,
    topic: &wsring_cluster::Topic,
) {
    use wsring_cluster::BrokerEvent;
    wait_event(
        inbox,
        |e| matches!(e, BrokerEvent::Disconnected),
        "Disconnected",
    )
    .await;
    wait_event(
        inbox,
        |e| matches!(e, BrokerEvent::Resubscribed),
        "Resubscribed",
    )
    .await;
    publisher
        .publish(topic, Bytes::from_static(b"after"))
        .await
        .expect("publish after the failover");
    wait_event(
        inbox,
        |e| matches!(e, BrokerEvent::Message { payload, .. } if payload.as_ref() == b"after"),
        "message after the failover",
    )
    .await;
}
