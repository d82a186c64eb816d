//! `wsring dev --cluster URL`: the dev cluster as real node processes, driven
//! through the HTTP API (add = spawn, drain = SIGTERM, crash = SIGKILL).

mod common;

use common::procs::Proc;
use common::{Api, Client, Ended, users_where, wait_until};
use nix::sys::signal::Signal;
use serde_json::json;
use std::time::Duration;
use wsring_cluster_testkit::conformance::unique_ns;

async fn children_alive(ns: &str) -> usize {
    let out = tokio::process::Command::new("pgrep")
        .args([
            "-f",
            "--",
            &format!("node --exit-with-parent .*--namespace {ns} "),
        ])
        .output()
        .await
        .expect("pgrep");
    String::from_utf8_lossy(&out.stdout).lines().count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_cluster_with_node_processes_on_redis() {
    let Some(b) = common::procs::redis().await else {
        return;
    };
    let ns = unique_ns("devp");
    let mut dev = Proc::start_until(
        &[
            "dev",
            "--cluster",
            &b.registry,
            "--namespace",
            &ns,
            "--port",
            "0",
            "--nodes",
            "2",
            "--heartbeat-ttl",
            "1200ms",
        ],
        "gateway",
    )
    .await;
    let ws = dev
        .ready_line
        .split_whitespace()
        .nth(1)
        .expect("gateway url")
        .to_owned();
    let api = Api::new(ws.replace("ws://", "http://").trim_end_matches("/ws"));
    wait_until("2 nodes", || async { api.node_ids().await == ["n1", "n2"] }).await;
    let (_, info) = api.get("/api/info").await;
    assert_eq!(
        (info["mode"].as_str(), info["launcher"].as_bool()),
        (Some("dev"), Some(true))
    );
    assert_eq!(children_alive(&ns).await, 2);

    let (s, v) = api.post("/api/nodes", json!({})).await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["id"], "n3");
    wait_until("3 nodes", || async { api.node_ids().await.len() == 3 }).await;
    assert_eq!(children_alive(&ns).await, 3);

    let doomed = users_where(&api, "c", 1, |n| n == "n1").await.remove(0);
    let mut c = Client::connect(&ws, &doomed).await;
    let (s, _) = api.delete("/api/nodes/n1?mode=crash").await;
    assert_eq!(s, 202);
    assert_eq!(c.until_end().await.1, Ended::Abrupt);
    wait_until("n1 reaped", || async {
        api.node_ids().await == ["n2", "n3"]
    })
    .await;

    let moving = users_where(&api, "m", 1, |n| n == "n2").await.remove(0);
    let mut m = Client::connect(&ws, &moving).await;
    let (s, _) = api.delete("/api/nodes/n2?mode=drain").await;
    assert_eq!(s, 202);
    let (frames, end) = m.until_end().await;
    assert_eq!(
        frames.last().map(|f| f["type"].clone()),
        Some(json!("moved"))
    );
    assert_eq!(end, Ended::Close(1012, "moved".into()));
    wait_until("n2 gone", || async { api.node_ids().await == ["n3"] }).await;
    wait_until("children reaped", || async {
        children_alive(&ns).await == 1
    })
    .await;

    dev.signal(Signal::SIGTERM);
    let status = dev.wait(Duration::from_secs(20)).await;
    assert!(status.success(), "{status:?}");
    assert_eq!(children_alive(&ns).await, 0, "no node process outlives dev");
    b.purge(&ns).await;
}
