//! A registry that loses its data (Redis restarted without persistence, a
//! purged bucket): live nodes re-add themselves with epochs still growing,
//! and crash detection keeps working afterwards.

use std::sync::Arc;
use std::time::Duration;
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;
use wsring_cluster::memory::MemoryRegistry;
use wsring_cluster::{Membership, MembershipConfig, NodeStats, Registry, View};

fn cfg() -> MembershipConfig {
    MembershipConfig {
        poll_every: Duration::from_millis(200),
        ..MembershipConfig::with_ttl(Duration::from_millis(800))
    }
}

async fn wait(m: &Membership, what: &str, cond: impl Fn(&View) -> bool) {
    let mut rx = m.subscribe();
    timeout(Duration::from_secs(10), rx.wait_for(|v| cond(v)))
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
        .expect("membership alive");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_rejoin_after_the_document_is_lost() {
    let reg = Arc::new(MemoryRegistry::default());
    let dyn_reg: Arc<dyn Registry> = reg.clone();
    let all = CancellationToken::new();
    let gw = Membership::start(Arc::clone(&dyn_reg), cfg(), all.child_token())
        .await
        .expect("observer");
    let mut crash = Vec::new();
    for id in ["n1", "n2"] {
        let token = all.child_token();
        let m = Membership::start(Arc::clone(&dyn_reg), cfg(), token.clone())
            .await
            .expect("node");
        m.join(id, "ws://127.0.0.1:1/ws", Arc::new(NodeStats::default))
            .await
            .expect("join");
        crash.push(token);
    }
    wait(&gw, "two members", |v| v.ring.len() == 2).await;
    let before = gw.view().epoch();
    reg.wipe();
    wait(&gw, "both back after the wipe", |v| {
        v.ring.len() == 2 && v.epoch() > before
    })
    .await;
    // Crash detection still works on the rebuilt document.
    crash[1].cancel();
    wait(&gw, "n2 reaped", |v| {
        v.ring.len() == 1 && v.member("n1").is_some()
    })
    .await;
    all.cancel();
}
