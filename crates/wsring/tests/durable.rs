//! Durable mode on the memory backend: stream positions on every message,
//! resume after a reconnect (complete, stale epoch, past the history window,
//! garbage parameters), room resume, idempotent sends and the drain window.

mod common;

use common::{Api, Client, Ended, dev, users_where};
use serde_json::{Value, json};
use std::time::Duration;
use wsring_node::Routing;

fn durable(history: u64) -> wsring::settings::Common {
    let mut c = common::common(Routing::Hash);
    c.shared.durable = true;
    c.history_size = history;
    c
}

async fn resume(gw: &str, user: &str, seq: u64, epoch: &str) -> Client {
    let url = format!("{gw}?user={user}&resume={seq}&epoch={epoch}");
    let mut c = Client::try_connect(&url)
        .await
        .unwrap_or_else(|r| panic!("resume refused: {r:?}"));
    c.user = user.to_owned();
    c
}

fn seq(v: &Value) -> u64 {
    v["seq"].as_u64().expect("seq")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_message_carries_its_stream_position() {
    let c = dev(3, durable(1000)).await;
    let api = Api::new(c.http_url());
    let gw = c.gateway_url();
    let mut bob = Client::connect(&gw, "bob").await;
    assert_eq!(bob.welcome["seq"], 0);
    let epoch = bob.welcome["stream_epoch"]
        .as_str()
        .expect("stream_epoch")
        .to_owned();
    let mut alice = Client::connect(&gw, "alice").await;
    for i in 1..=3u64 {
        alice
            .send(json!({"type":"send","to":"bob","data":i,"id":i}))
            .await;
        assert_eq!(alice.next().await["type"], "ack");
        let m = bob.next().await;
        assert_eq!(seq(&m), i, "{m}");
        assert_eq!(m["epoch"], json!(epoch));
    }
    let (s, v) = api
        .post("/api/send", json!({"to":"bob","data":"api"}))
        .await;
    assert_eq!((s, v["seq"].as_u64()), (202, Some(4)));
    assert_eq!(seq(&bob.next().await), 4);
    // Joining a room always reports its position, so it can be resumed.
    bob.send(json!({"type":"join","room":"r1","id":"j"})).await;
    assert_eq!(bob.next().await, json!({"type":"ack","id":"j"}));
    let r = bob.next().await;
    assert_eq!(
        (
            r["type"].as_str(),
            r["stream"].as_str(),
            r["complete"].as_bool()
        ),
        (Some("resumed"), Some("room:r1"), Some(true))
    );
    assert_eq!(r["seq"], 0);
    api.post("/api/publish", json!({"room":"r1","data":"x"}))
        .await;
    let m = bob.next().await;
    assert_eq!((m["room"].as_str(), seq(&m)), (Some("r1"), 1));
    assert_eq!(m["epoch"], r["epoch"]);
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_replays_what_was_missed_then_goes_live() {
    let c = dev(3, durable(1000)).await;
    let api = Api::new(c.http_url());
    let gw = c.gateway_url();
    let bob = Client::connect(&gw, "bob").await;
    let epoch = bob.welcome["stream_epoch"]
        .as_str()
        .expect("epoch")
        .to_owned();
    drop(bob);
    for i in 1..=5 {
        api.post("/api/send", json!({"to":"bob","data":i})).await;
    }
    let mut bob = resume(&gw, "bob", 2, &epoch).await;
    assert_eq!(bob.welcome["seq"], 5);
    for want in 3..=5u64 {
        let m = bob.next().await;
        assert_eq!((seq(&m), m["data"].as_u64()), (want, Some(want)));
    }
    assert_eq!(
        bob.next().await,
        json!({"type":"resumed","stream":"user","complete":true,"seq":5,"epoch":epoch})
    );
    api.post("/api/send", json!({"to":"bob","data":6})).await;
    assert_eq!(
        seq(&bob.next().await),
        6,
        "live after replay, no gap, no duplicate"
    );
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_epoch_and_lost_history_resume_incomplete() {
    let c = dev(3, durable(3)).await;
    let api = Api::new(c.http_url());
    let gw = c.gateway_url();
    let first = Client::connect(&gw, "carol").await;
    let epoch = first.welcome["stream_epoch"]
        .as_str()
        .expect("epoch")
        .to_owned();
    drop(first);
    // A stale epoch: the client's history is from a lost stream.
    let mut stale = resume(&gw, "carol", 0, "oldepoch").await;
    let r = stale.next().await;
    assert_eq!(
        (r["type"].as_str(), r["complete"].as_bool()),
        (Some("resumed"), Some(false)),
        "{r}"
    );
    assert_eq!(r["epoch"], json!(epoch));
    drop(stale);
    // Past the history window: 10 messages, only 3 kept.
    for i in 1..=10 {
        api.post("/api/send", json!({"to":"carol","data":i})).await;
    }
    let mut late = resume(&gw, "carol", 0, &epoch).await;
    let r = late.next().await;
    assert_eq!(
        r,
        json!({"type":"resumed","stream":"user","complete":false,"seq":10,"epoch":epoch}),
        "nothing partial is replayed; the client reloads and continues live"
    );
    api.post("/api/send", json!({"to":"carol","data":11})).await;
    assert_eq!(seq(&late.next().await), 11);
    // Resuming exactly at the oldest kept message minus one is complete.
    drop(late);
    let mut edge = resume(&gw, "carol", 8, &epoch).await;
    assert_eq!(seq(&edge.next().await), 9);
    assert_eq!(seq(&edge.next().await), 10);
    assert_eq!(seq(&edge.next().await), 11);
    assert_eq!(edge.next().await["complete"], true);
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_resume_parameters_are_rejected_before_the_upgrade() {
    let c = dev(3, durable(1000)).await;
    let gw = c.gateway_url();
    for q in [
        "user=u&resume=abc&epoch=e",
        "user=u&resume=-4&epoch=e",
        "user=u&resume=1",
        "user=u&epoch=e",
        "user=u&resume=1&epoch=bad.epoch",
        "user=u&resume=99999999999999999999999&epoch=e",
    ] {
        let r = Client::try_connect(&format!("{gw}?{q}"))
            .await
            .err()
            .expect("refused");
        assert_eq!(r.status, 400, "{q}");
        assert_eq!(r.body["error"]["code"], "bad_request", "{q}");
    }
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_resume_from_their_own_position() {
    let c = dev(3, durable(1000)).await;
    let api = Api::new(c.http_url());
    let gw = c.gateway_url();
    let mut dan = Client::connect(&gw, "dan").await;
    dan.send(json!({"type":"join","room":"ops"})).await;
    let r = dan.next().await;
    let (room_seq, room_epoch) = (seq(&r), r["epoch"].as_str().expect("epoch").to_owned());
    drop(dan);
    for i in 0..3 {
        api.post("/api/publish", json!({"room":"ops","data":i}))
            .await;
    }
    let mut dan = Client::connect(&gw, "dan").await;
    dan.send(json!({"type":"join","room":"ops","id":"j","resume":room_seq,"epoch":room_epoch}))
        .await;
    assert_eq!(dan.next().await, json!({"type":"ack","id":"j"}));
    for want in 1..=3 {
        let m = dan.next().await;
        assert_eq!((m["room"].as_str(), seq(&m)), (Some("ops"), want));
    }
    let r = dan.next().await;
    assert_eq!(
        (r["stream"].as_str(), r["complete"].as_bool(), seq(&r)),
        (Some("room:ops"), Some(true), 3)
    );
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retried_sends_are_stored_once() {
    let c = dev(3, durable(1000)).await;
    let api = Api::new(c.http_url());
    let gw = c.gateway_url();
    let mut erin = Client::connect(&gw, "erin").await;
    let (_, a) = api
        .post("/api/send", json!({"to":"erin","data":"once","id":"k1"}))
        .await;
    let (_, b) = api
        .post("/api/send", json!({"to":"erin","data":"once","id":"k1"}))
        .await;
    assert_eq!(a["seq"], b["seq"], "same id, same position");
    let mut frank = Client::connect(&gw, "frank").await;
    for _ in 0..2 {
        frank
            .send(json!({"type":"send","to":"erin","data":"ws","id":"same"}))
            .await;
        assert_eq!(frank.next().await["type"], "ack");
    }
    api.post("/api/send", json!({"to":"erin","data":"end"}))
        .await;
    let got: Vec<Value> = vec![erin.next().await, erin.next().await, erin.next().await];
    let data: Vec<&Value> = got.iter().map(|m| &m["data"]).collect();
    assert_eq!(data, [&json!("once"), &json!("ws"), &json!("end")]);
    assert_eq!(got.iter().map(seq).collect::<Vec<_>>(), [1, 2, 3]);
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_window_spreads_the_closes() {
    let mut common = durable(1000);
    common.node.drain_window = Duration::from_millis(1000);
    let c = dev(3, common).await;
    let api = Api::new(c.http_url());
    let users = users_where(&api, "dw", 10, |n| n == "n2").await;
    let mut clients = Vec::new();
    for u in &users {
        clients.push(Client::connect(&c.gateway_url(), u).await);
    }
    api.delete("/api/nodes/n2?mode=drain").await;
    let started = tokio::time::Instant::now();
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|mut cl| {
            tokio::spawn(async move {
                let (frames, end) = cl.until_end().await;
                (started.elapsed(), frames, end)
            })
        })
        .collect();
    let mut closed_at = Vec::new();
    for t in tasks {
        let (at, frames, end) = t.await.expect("task");
        assert_eq!(end, Ended::Close(1012, "moved".into()));
        let moved = frames.last().expect("moved frame");
        assert!(moved["retry_after_ms"].as_u64().is_some());
        closed_at.push(at);
    }
    closed_at.sort();
    let spread = closed_at[9] - closed_at[0];
    // The i-th of 10 closes is scheduled at i/10 of the 1 s window, so the
    // first and last are at least 0.9 s apart (slowness only widens it).
    assert!(
        spread >= Duration::from_millis(800),
        "closes spread over {spread:?}"
    );
    c.shutdown().await;
}

/// Publishes `data` to rooms `{prefix}0`, `{prefix}1`, … until one is
/// refused; returns how many were accepted (at most `max`) and the refusal.
async fn publish_until_refused(
    api: &Api,
    prefix: &str,
    data: &Value,
    max: usize,
) -> (usize, (u16, Value)) {
    for n in 0..=max {
        let (s, v) = api
            .post(
                "/api/publish",
                json!({"room": format!("{prefix}{n}"), "data": data}),
            )
            .await;
        if s != 202 {
            return (n, (s, v));
        }
    }
    panic!("more than {max} publishes to new rooms were accepted");
}

/// Publishing big messages to ever new room names (publish needs no
/// membership) fills the stream store only up to its limits: past them the
/// API answers 507 `storage_full`, a client gets an `error` frame with that
/// code, nothing is stored, and messages that fit still flow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_store_limits_refuse_new_rooms_and_bytes() {
    let mut settings = durable(1000);
    settings.history_max_bytes = 200_000;
    settings.history_max_streams = 8;
    let c = dev(3, settings).await;
    let api = Api::new(c.http_url());
    let gw = c.gateway_url();
    let mut bob = Client::connect(&gw, "bob").await;
    let mut alice = Client::connect(&gw, "alice").await;
    let big = "x".repeat(60_000);
    let (stored, refusal) = publish_until_refused(&api, "big", &json!(big), 3).await;
    assert_eq!(stored, 3);
    assert_eq!(refusal.0, 507, "{}", refusal.1);
    assert_eq!(refusal.1["error"]["code"], "storage_full", "{}", refusal.1);
    // Over the WebSocket: an error frame, and the session stays.
    alice
        .send(json!({"type":"publish","room":"big9","data":big,"id":"p1"}))
        .await;
    let e = alice.next().await;
    assert_eq!(
        (e["type"].as_str(), e["code"].as_str()),
        (Some("error"), Some("storage_full")),
        "{e}"
    );
    assert_eq!(e["id"], "p1");
    // What fits is still stored and delivered.
    alice
        .send(json!({"type":"send","to":"bob","data":"small","id":"s1"}))
        .await;
    assert_eq!(alice.next().await, json!({"type":"ack","id":"s1"}));
    let m = bob.next().await;
    assert_eq!(
        (m["data"].as_str(), m["seq"].as_u64()),
        (Some("small"), Some(1))
    );
    // Three rooms and the users' own streams (each made when its user
    // connected; refused appends made none): three more streams fit.
    let (rooms, refusal) = publish_until_refused(&api, "tiny", &json!(1), 3).await;
    assert_eq!(rooms, 3);
    assert_eq!(refusal.0, 507, "{}", refusal.1);
    assert!(
        refusal.1["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("streams")),
        "{}",
        refusal.1
    );
    // Existing streams still take messages.
    let (s, _) = api
        .post("/api/publish", json!({"room": "tiny0", "data": 2}))
        .await;
    assert_eq!(s, 202);
    bob.roundtrip("after").await;
    c.shutdown().await;
}
