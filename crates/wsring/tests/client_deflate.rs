//! The Rust client SDK and `wsring bench` with permessage-deflate: against
//! a cluster with deflate on (the default), off, and with server context
//! takeover, messages below and above the node's threshold reach every
//! member of a room intact, and the bench's bytes on the wire show the
//! compression.

mod common;

use common::procs::Proc;
use serde_json::{Value, json};
use std::time::Duration;
use wsring::settings::Common;
use wsring_client::{ClientConfig, Event, Events};
use wsring_node::Routing;

const WAIT: Duration = Duration::from_secs(20);

/// The next message event's data.
async fn next_message(events: &mut Events) -> Value {
    loop {
        match tokio::time::timeout(WAIT, events.next()).await {
            Ok(Some(Event::Message(m))) => return m.data,
            Ok(Some(_)) => continue,
            other => panic!("no message: {other:?}"),
        }
    }
}

/// `members` SDK clients (offering deflate if `offer`) join one room; one
/// of them publishes a short and a long message, and every member gets
/// both. Returns the clients' count of connections with deflate agreed.
async fn fan_out(common: Common, offer: bool, members: usize) -> u64 {
    let c = common::dev(1, common).await;
    let url = c.gateway_url();
    let room = format!("deflate-{offer}");
    let mut clients = Vec::new();
    for i in 0..members {
        let cfg = ClientConfig::new(&url, format!("member-{i}")).deflate(offer);
        let (client, mut events) = wsring_client::connect_with(cfg).await.expect("connects");
        assert!(matches!(
            tokio::time::timeout(WAIT, events.next()).await,
            Ok(Some(Event::Connected { .. }))
        ));
        client.join(&room).await.expect("join");
        clients.push((client, events));
    }
    let short = json!({"text": "hi"});
    // Well past the 256-byte threshold, and compressible.
    let long = json!({"text": "the deploy is done, can you review my pull request? ".repeat(40)});
    clients[0].0.publish(&room, &short).await.expect("publish");
    clients[0].0.publish(&room, &long).await.expect("publish");
    let mut agreed = 0;
    for (client, events) in &mut clients {
        assert_eq!(next_message(events).await, short);
        assert_eq!(next_message(events).await, long);
        agreed += client.stats().deflate;
        client.close();
    }
    c.shutdown().await;
    agreed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_inflates_what_a_node_with_deflate_compresses() {
    assert_eq!(fan_out(common::common(Routing::Hash), true, 20).await, 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_offers_deflate_by_default_and_may_not() {
    assert!(ClientConfig::new("ws://127.0.0.1:1/ws", "u").deflate);
    assert_eq!(fan_out(common::common(Routing::Hash), false, 3).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_works_with_a_node_that_declines_deflate() {
    let mut common = common::common(Routing::Hash);
    common.node.deflate = false;
    assert_eq!(fan_out(common, true, 3).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_keeps_the_history_of_a_node_that_takes_over_its_context() {
    let mut common = common::common(Routing::Hash);
    common.node.deflate_server_context_takeover = true;
    common.node.deflate_server_max_window_bits = 10;
    assert_eq!(fan_out(common, true, 5).await, 5);
}

/// The bench's report line `| name | value ... |`, first number.
fn field(out: &str, name: &str) -> u64 {
    out.lines()
        .find(|l| l.starts_with(&format!("| {name} |")))
        .and_then(|l| l.split('|').nth(2))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {out}"))
}

/// The bench's bytes on the wire against uncompressed.
fn ratio(out: &str) -> f64 {
    let wire = field(out, "bytes received on the wire") as f64;
    let line = out
        .lines()
        .find(|l| l.starts_with("| bytes received on the wire |"))
        .unwrap_or_default();
    let plain: f64 = line
        .split('(')
        .nth(1)
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no uncompressed bytes in {out}"));
    assert!(plain > 0.0, "{out}");
    wire / plain
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_measures_the_bytes_deflate_saves() {
    let c = common::dev(1, common::common(Routing::Hash)).await;
    let gw = c.gateway_url();
    let run = |deflate: bool| {
        let gw = gw.clone();
        async move {
            let mut args = vec![
                "bench",
                "--url",
                &gw,
                "--clients",
                "20",
                "--rate",
                "50",
                "--duration",
                "1s",
                "--mode",
                "room",
                "--room-size",
                "10",
                "--payload",
                "800",
                "--text",
                "chat",
            ];
            if deflate {
                args.push("--deflate");
            }
            let (status, out) = Proc::run_stdout(&args, Duration::from_secs(60)).await;
            assert!(status.success(), "{out}");
            assert_eq!(field(&out, "sent"), 50, "{out}");
            assert_eq!(field(&out, "received"), 500, "{out}");
            out
        }
    };
    let plain = run(false).await;
    let deflated = run(true).await;
    let (r_plain, r_deflated) = (ratio(&plain), ratio(&deflated));
    // Without deflate the wire carries the frames as they are (plus the
    // join acks' and pings' few bytes on both sides of the count).
    assert!((0.97..=1.03).contains(&r_plain), "{plain}");
    assert!(r_deflated < 0.75, "{deflated}");
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_with_deflate_fails_against_a_node_that_declines_it() {
    let mut common = common::common(Routing::Hash);
    common.node.deflate = false;
    let c = common::dev(1, common).await;
    let gw = c.gateway_url();
    let (status, out) = Proc::run_stdout(
        &[
            "bench",
            "--url",
            &gw,
            "--clients",
            "2",
            "--duration",
            "200ms",
            "--deflate",
        ],
        Duration::from_secs(60),
    )
    .await;
    assert!(!status.success(), "{out}");
    c.shutdown().await;
}
