//! The core contract on a 3-node `wsring dev` cluster (memory backend), with
//! real WebSocket clients over loopback, through the gateway.

mod common;

use common::{Api, Client, Ended, WAIT, dev, users_where, wait_until};
use serde_json::{Value, json};
use std::collections::HashMap;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use wsring_cluster::Topic;
use wsring_node::Routing;

fn hash() -> wsring::settings::Common {
    common::common(Routing::Hash)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_node_direct_messages_arrive_exactly_once_on_every_session() {
    let c = dev(3, hash()).await;
    let api = Api::new(c.http_url());
    let gw = c.gateway_url();
    let bob = users_where(&api, "bob", 1, |_| true).await.remove(0);
    let bob_node = api.route(&bob).await;
    let alice = users_where(&api, "alice", 1, |n| n != bob_node)
        .await
        .remove(0);
    let mut a = Client::connect(&gw, &alice).await;
    let mut b1 = Client::connect(&gw, &bob).await;
    let mut b2 = Client::connect(&gw, &bob).await;
    assert_ne!(
        a.node(),
        b1.node(),
        "sender and recipient on different nodes"
    );
    assert_eq!(b1.node(), b2.node());
    const N: usize = 50;
    for i in 0..N {
        a.send(json!({"type":"send","to":bob,"data":{"n":i},"id":format!("m{i}")}))
            .await;
    }
    for i in 0..N {
        assert_eq!(a.next().await, json!({"type":"ack","id":format!("m{i}")}));
    }
    // A final marker on the same path: order is kept per sender, so once it
    // arrives, anything duplicated would have shown up before it.
    a.send(json!({"type":"send","to":bob,"data":"end"})).await;
    for b in [&mut b1, &mut b2] {
        for i in 0..N {
            assert_eq!(
                b.next().await,
                json!({"type":"message","from":alice,"to":bob,"data":{"n":i}})
            );
        }
        assert_eq!(b.next().await["data"], "end");
    }
    let (status, body) = api
        .post("/api/send", json!({"to": bob, "data": "from-api"}))
        .await;
    assert_eq!((status, body), (202, json!({"ok": true})));
    for b in [&mut b1, &mut b2] {
        assert_eq!(
            b.next().await,
            json!({"type":"message","from":null,"to":bob,"data":"from-api"})
        );
    }
    // The sender got nothing but acks.
    a.roundtrip("end").await;
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_reach_members_across_nodes_and_only_their_nodes() {
    let c = dev(3, hash()).await;
    let api = Api::new(c.http_url());
    let gw = c.gateway_url();
    // One member on n1 and one on n2; n3 has only a non-member.
    let m1 = users_where(&api, "r", 1, |n| n == "n1").await.remove(0);
    let m2 = users_where(&api, "r", 1, |n| n == "n2").await.remove(0);
    let outsider = users_where(&api, "o", 1, |n| n == "n3").await.remove(0);
    let mut a = Client::connect(&gw, &m1).await;
    let mut b = Client::connect(&gw, &m2).await;
    let mut o = Client::connect(&gw, &outsider).await;
    for cl in [&mut a, &mut b] {
        cl.send(json!({"type":"join","room":"lobby","id":"j"}))
            .await;
        assert_eq!(cl.next().await, json!({"type":"ack","id":"j"}));
    }
    let hub = c.memory().expect("memory").backend().hub.clone();
    assert_eq!(
        hub.subscribers(&Topic::Room("lobby".into())),
        2,
        "only nodes with members subscribe to the room"
    );
    a.send(json!({"type":"publish","room":"lobby","data":{"hi":1},"id":"p"}))
        .await;
    assert_eq!(
        a.next_non_ack().await,
        json!({"type":"message","from":m1,"room":"lobby","data":{"hi":1}})
    );
    assert_eq!(
        b.next().await,
        json!({"type":"message","from":m1,"room":"lobby","data":{"hi":1}})
    );
    let (s, _) = api
        .post("/api/publish", json!({"room":"lobby","data":2}))
        .await;
    assert_eq!(s, 202);
    for cl in [&mut a, &mut b] {
        assert_eq!(
            cl.next().await,
            json!({"type":"message","from":null,"room":"lobby","data":2})
        );
    }
    // The outsider got nothing: its first frame is this direct marker.
    api.post("/api/send", json!({"to":outsider,"data":"marker"}))
        .await;
    assert_eq!(o.next().await["data"], "marker");
    // Leaving stops delivery and, with no member left, unsubscribes the node.
    b.send(json!({"type":"leave","room":"lobby","id":"l"}))
        .await;
    assert_eq!(b.next().await, json!({"type":"ack","id":"l"}));
    wait_until("n2 unsubscribed", || async {
        hub.subscribers(&Topic::Room("lobby".into())) == 1
    })
    .await;
    api.post("/api/publish", json!({"room":"lobby","data":3}))
        .await;
    assert_eq!(a.next().await["data"], 3);
    api.post("/api/send", json!({"to":m2,"data":"marker"}))
        .await;
    assert_eq!(b.next().await["data"], "marker");
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcast_reaches_every_session_in_the_cluster() {
    let c = dev(3, hash()).await;
    let api = Api::new(c.http_url());
    let mut clients = Vec::new();
    for node in ["n1", "n2", "n3"] {
        for u in users_where(&api, &format!("b{node}-"), 4, |n| n == node).await {
            clients.push(Client::connect(&c.gateway_url(), &u).await);
        }
    }
    let nodes: std::collections::BTreeSet<String> =
        clients.iter().map(|c| c.node().to_owned()).collect();
    assert_eq!(nodes.len(), 3, "sessions spread over all nodes");
    let (s, v) = api
        .post("/api/broadcast", json!({"data":{"all":true}}))
        .await;
    assert_eq!((s, v), (202, json!({"ok":true})));
    for cl in &mut clients {
        assert_eq!(
            cl.next().await,
            json!({"type":"message","from":null,"data":{"all":true}})
        );
    }
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn welcome_node_equals_api_route_and_presence_is_cluster_wide() {
    let c = dev(3, hash()).await;
    let api = Api::new(c.http_url());
    for i in 0..30 {
        let user = format!("w{i}");
        let cl = Client::connect(&c.gateway_url(), &user).await;
        let (s, route) = api.get(&format!("/api/route?user={user}")).await;
        assert_eq!(s, 200);
        assert_eq!(cl.welcome["node"], route["node"], "{user}");
        assert_eq!(cl.welcome["epoch"], route["epoch"]);
        assert_eq!(cl.welcome["user"], json!(user));
        assert!(
            cl.welcome["session"]
                .as_str()
                .is_some_and(|s| !s.is_empty())
        );
    }
    let a = Client::connect(&c.gateway_url(), "pres").await;
    let b = Client::connect(&c.gateway_url(), "pres").await;
    let (s, v) = api.get("/api/presence?user=pres").await;
    assert_eq!(s, 200);
    let mut got: Vec<Value> = v["sessions"].as_array().expect("sessions").clone();
    got.sort_by_key(|x| x["session"].as_str().unwrap_or_default().to_owned());
    let mut want = vec![
        json!({"node": a.node(), "session": a.welcome["session"]}),
        json!({"node": b.node(), "session": b.welcome["session"]}),
    ];
    want.sort_by_key(|x| x["session"].as_str().unwrap_or_default().to_owned());
    assert_eq!(got, want);
    // Every node answers the same.
    for (_, h) in c.memory().expect("memory").handles().await {
        let node_api = Api::new(format!("http://{}", h.addr()));
        assert_eq!(
            node_api.get("/api/presence?user=pres").await.1["sessions"]
                .as_array()
                .map(Vec::len),
            Some(2)
        );
        assert_eq!(node_api.route("pres").await, a.node());
    }
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adding_a_node_moves_exactly_the_users_it_takes_over() {
    let c = dev(3, hash()).await;
    let api = Api::new(c.http_url());
    let mut clients = Vec::new();
    let mut before = HashMap::new();
    for i in 0..60 {
        let user = format!("u{i}");
        let cl = Client::connect(&c.gateway_url(), &user).await;
        before.insert(user.clone(), cl.node().to_owned());
        clients.push(cl);
    }
    let epoch0 = api.epoch().await;
    let (s, v) = api.post("/api/nodes", json!({})).await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["id"], "n4");
    assert!(v["url"].as_str().is_some_and(|u| u.starts_with("ws://")));
    wait_until("gateway sees n4", || async { api.epoch().await > epoch0 }).await;
    let epoch1 = api.epoch().await;
    let mut moved = 0;
    for cl in &mut clients {
        let now = api.route(&cl.user).await;
        if now == before[&cl.user] {
            continue;
        }
        assert_eq!(now, "n4", "a moved user moves to the new node");
        moved += 1;
        let (frames, end) = cl.until_end().await;
        assert_eq!(frames.len(), 1, "{frames:?}");
        assert_eq!(frames[0]["type"], "moved");
        assert_eq!(frames[0]["epoch"], json!(epoch1));
        assert!(frames[0]["retry_after_ms"].as_u64().is_some());
        assert_eq!(end, Ended::Close(1012, "moved".into()));
        let again = Client::connect(&c.gateway_url(), &cl.user).await;
        assert_eq!(again.node(), "n4", "reconnect lands on the new owner");
    }
    assert!(moved > 0 && moved < 60, "moved {moved}");
    // Everyone else is untouched: their first frame is this marker.
    for cl in &mut clients {
        if api.route(&cl.user).await == before[&cl.user] {
            api.post("/api/send", json!({"to":cl.user,"data":"still here"}))
                .await;
            assert_eq!(cl.next().await["data"], "still here", "{}", cl.user);
        }
    }
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashed_node_leaves_the_ring_and_its_users_reconnect_elsewhere() {
    let c = dev(3, hash()).await;
    let api = Api::new(c.http_url());
    let victims = users_where(&api, "v", 5, |n| n == "n2").await;
    let mut clients = Vec::new();
    for u in &victims {
        clients.push(Client::connect(&c.gateway_url(), u).await);
    }
    let (s, _) = api.delete("/api/nodes/n2?mode=crash").await;
    assert_eq!(s, 202);
    for cl in &mut clients {
        let (_, end) = cl.until_end().await;
        assert_eq!(end, Ended::Abrupt, "a crash sends no close frame");
    }
    let started = tokio::time::Instant::now();
    wait_until("n2 reaped", || async {
        !api.node_ids().await.contains(&"n2".to_string())
    })
    .await;
    let took = started.elapsed();
    assert!(took < WAIT, "reaped after {took:?}");
    for u in &victims {
        let cl = Client::connect(&c.gateway_url(), u).await;
        assert_ne!(cl.node(), "n2");
        assert_eq!(cl.node(), api.route(u).await);
    }
    c.shutdown().await;
}

/// The WebSocket URL (`ws://…/ws`) of node `id`.
fn node_url(c: &wsring::dev::DevCluster, id: &str) -> String {
    c.members()
        .into_iter()
        .find(|(n, _)| n == id)
        .map(|(_, url)| url)
        .unwrap_or_else(|| panic!("{id} is a member"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_direct_send_to_a_dead_node_is_acked_as_not_delivered() {
    // A long heartbeat TTL keeps the crashed node in the ring for the whole
    // test: the window in which a non-durable message would be lost.
    let mut common = hash();
    common.heartbeat_ttl = std::time::Duration::from_secs(30);
    let c = dev(3, common).await;
    let api = Api::new(c.http_url());
    let sender = users_where(&api, "s", 1, |n| n == "n1").await.remove(0);
    let victim = users_where(&api, "v", 1, |n| n == "n2").await.remove(0);
    let alive = users_where(&api, "a", 1, |n| n == "n3").await.remove(0);
    let mut s = Client::connect(&c.gateway_url(), &sender).await;
    // The victim connects to n2 itself, not through the gateway: a tunnel
    // that ends makes the gateway suspect n2 and drop it within
    // milliseconds, which would close the window this test needs.
    let mut v = Client::connect(&node_url(&c, "n2"), &victim).await;
    let _a = Client::connect(&c.gateway_url(), &alive).await;
    s.send(json!({"type":"send","to":alive,"data":1,"id":"live"}))
        .await;
    assert_eq!(s.next().await, json!({"type":"ack","id":"live"}));
    let (status, _) = api.delete("/api/nodes/n2?mode=crash").await;
    assert_eq!(status, 202);
    let (_, end) = v.until_end().await;
    assert_eq!(end, Ended::Abrupt);
    // n2 is still the victim's owner in every view, but nobody receives.
    assert_eq!(api.route(&victim).await, "n2");
    s.send(json!({"type":"send","to":victim,"data":2,"id":"lost"}))
        .await;
    assert_eq!(
        s.next().await,
        json!({"type":"ack","id":"lost","delivered":false})
    );
    // The HTTP API of a live node says the same in its 202 body.
    let n1 = node_url(&c, "n1")
        .replacen("ws://", "http://", 1)
        .trim_end_matches("/ws")
        .to_owned();
    let (status, body) = Api::new(n1)
        .post("/api/send", json!({"to": victim, "data": 3}))
        .await;
    assert_eq!((status, body), (202, json!({"ok":true,"delivered":false})));
    // A live receiver's ack is unchanged.
    s.send(json!({"type":"send","to":alive,"data":4,"id":"still"}))
        .await;
    assert_eq!(s.next().await, json!({"type":"ack","id":"still"}));
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rust_sdk_reports_a_send_to_a_dead_node_as_not_delivered() {
    // The same window as above, seen through `wsring-client`: the WebSocket
    // client's receipt and the server API client's answer both carry
    // `delivered: Some(false)`, and a send to a live user carries nothing.
    let mut common = hash();
    common.heartbeat_ttl = std::time::Duration::from_secs(30);
    let c = dev(3, common).await;
    let api = Api::new(c.http_url());
    let sender = users_where(&api, "s", 1, |n| n == "n1").await.remove(0);
    let victim = users_where(&api, "v", 1, |n| n == "n2").await.remove(0);
    let alive = users_where(&api, "a", 1, |n| n == "n3").await.remove(0);
    let (client, _events) = wsring_client::connect(&c.gateway_url(), &sender)
        .await
        .expect("sender connects");
    let mut v = Client::connect(&node_url(&c, "n2"), &victim).await;
    let _a = Client::connect(&c.gateway_url(), &alive).await;
    let live = client.send_receipt(&alive, 1).await.expect("ack");
    assert_eq!(live.delivered, None);
    assert!(!live.lost());
    let (status, _) = api.delete("/api/nodes/n2?mode=crash").await;
    assert_eq!(status, 202);
    let (_, end) = v.until_end().await;
    assert_eq!(end, Ended::Abrupt);
    assert_eq!(api.route(&victim).await, "n2", "n2 is still the owner");

    let lost = client.send_receipt(&victim, 2).await.expect("ack");
    assert_eq!(lost.delivered, Some(false));
    assert!(lost.lost());
    // `send` keeps its signature and still resolves on the ack.
    client.send(&victim, 3).await.expect("ack");

    let sdk_api = wsring_client::Api::new(&node_url(&c, "n1")).expect("api client");
    let answer = sdk_api.send(&victim, 4, None).await.expect("202");
    assert_eq!((answer.ok, answer.delivered), (true, Some(false)));
    let answer = sdk_api.send(&alive, 5, None).await.expect("202");
    assert_eq!((answer.ok, answer.delivered), (true, None));
    let after = client.send_receipt(&alive, 6).await.expect("ack");
    assert_eq!(after.delivered, None);
    client.close();
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_just_joined_is_listed_as_up() {
    let c = dev(2, hash()).await;
    let api = Api::new(c.http_url());
    let (status, body) = api.post("/api/nodes", json!({})).await;
    assert_eq!(status, 201, "{body}");
    // Its first appearance in /api/nodes, not a later one, says `up`.
    let deadline = tokio::time::Instant::now() + WAIT;
    let state = loop {
        let (_, v) = api.get("/api/nodes").await;
        if let Some(n) = v["nodes"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|n| n["id"] == "n3")
        {
            break n["state"].clone();
        }
        assert!(tokio::time::Instant::now() < deadline, "n3 never listed");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    };
    assert_eq!(state, "up");
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn draining_node_moves_its_sessions_then_leaves() {
    let c = dev(3, hash()).await;
    let api = Api::new(c.http_url());
    let users = users_where(&api, "d", 4, |n| n == "n3").await;
    let others = users_where(&api, "k", 4, |n| n != "n3").await;
    let mut drained = Vec::new();
    for u in &users {
        drained.push(Client::connect(&c.gateway_url(), u).await);
    }
    let mut kept = Vec::new();
    for u in &others {
        kept.push(Client::connect(&c.gateway_url(), u).await);
    }
    let (s, v) = api.delete("/api/nodes/n3?mode=drain").await;
    assert_eq!((s, v), (202, json!({"ok":true})));
    for cl in &mut drained {
        let (frames, end) = cl.until_end().await;
        assert_eq!(frames.len(), 1);
        assert_eq!(frames[0]["type"], "moved");
        assert_eq!(end, Ended::Close(1012, "moved".into()));
        let again = Client::connect(&c.gateway_url(), &cl.user).await;
        assert_ne!(again.node(), "n3");
    }
    wait_until("n3 gone", || async { api.node_ids().await == ["n1", "n2"] }).await;
    for cl in &mut kept {
        api.post("/api/send", json!({"to":cl.user,"data":"ok"}))
            .await;
        assert_eq!(cl.next().await["data"], "ok");
    }
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_errors_and_the_session_keeps_working() {
    let c = dev(3, hash()).await;
    let gw = c.gateway_url();
    let mut cl = Client::connect(&gw, "bad").await;
    let cases = [
        "not json",
        r#"{"type":"dance"}"#,
        r#"{"type":"send","data":1}"#,
        r#"{"type":"send","to":"bob"}"#,
        r#"{"type":"join"}"#,
        r#"{"type":"send","to":"has space","data":1}"#,
    ];
    for text in cases {
        cl.send_raw(Message::text(text)).await;
        let v = cl.next().await;
        assert_eq!(v["type"], "error", "{text}");
        assert_eq!(v["code"], "bad_request", "{text}");
        assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    // The id of a malformed request is echoed when it can be read.
    cl.send_raw(Message::text(r#"{"type":"send","id":"x1","data":1}"#))
        .await;
    assert_eq!(cl.next().await["id"], "x1");
    cl.send_raw(Message::binary(vec![1u8, 2, 3])).await;
    let v = cl.next().await;
    assert_eq!(
        (v["type"].as_str(), v["code"].as_str()),
        (Some("error"), Some("bad_request"))
    );
    cl.roundtrip("still-alive").await;

    // Oversized message: close 1009; others unaffected.
    let mut big = Client::connect(&gw, "big").await;
    let mut bystander = Client::connect(&gw, "bystander").await;
    let payload = format!(r#"{{"type":"ping","id":"{}"}}"#, "x".repeat(70_000));
    big.send_raw(Message::text(payload)).await;
    assert_eq!(
        big.until_end().await.1,
        Ended::Close(1009, "message too big".into())
    );

    // Invalid UTF-8 in a text frame: close 1007.
    let mut utf = Client::connect(&gw, "utf").await;
    let frame = Frame::message(vec![b'{', 0xff, 0xfe, b'}'], OpCode::Data(Data::Text), true);
    utf.send_raw(Message::Frame(frame)).await;
    assert_eq!(
        utf.until_end().await.1,
        Ended::Close(1007, "invalid UTF-8".into())
    );
    bystander.roundtrip("fine").await;
    cl.roundtrip("fine").await;
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_connects_and_api_calls_get_json_errors() {
    let c = dev(3, hash()).await;
    let api = Api::new(c.http_url());
    let gw = c.gateway_url();
    let nodes = c.memory().expect("memory").handles().await;
    let n1 = nodes.get("n1").expect("n1");
    for base in [gw.clone(), n1.url().to_owned()] {
        for q in [
            "",
            "?user=",
            "?user=a%20b",
            &format!("?user={}", "x".repeat(129)),
            "?user=ok&resume=zz&epoch=e",
        ] {
            let r = Client::try_connect(&format!("{base}{q}"))
                .await
                .err()
                .expect("refused");
            assert_eq!(r.status, 400, "{base}{q}");
            assert_eq!(r.body["error"]["code"], "bad_request", "{base}{q}");
        }
    }
    // A node refuses users it does not own, naming the owner.
    let foreign = users_where(&api, "f", 1, |n| n != "n1").await.remove(0);
    let r = Client::try_connect(&format!("{}?user={foreign}", n1.url()))
        .await
        .err()
        .expect("misrouted");
    assert_eq!(r.status, 421);
    assert_eq!(r.body["error"]["code"], "wrong_node");
    assert_eq!(r.body["error"]["node"], json!(api.route(&foreign).await));
    // A direct connect to the owner works.
    let own = users_where(&api, "own", 1, |n| n == "n1").await.remove(0);
    let cl = Client::try_connect(&format!("{}?user={own}", n1.url()))
        .await
        .unwrap_or_else(|r| panic!("owner must accept: {r:?}"));
    assert_eq!(cl.node(), "n1");

    let checks: Vec<(u16, Value)> = vec![
        api.get("/api/nope").await,
        api.post_raw("/api/send", "{".into()).await,
        api.post("/api/send", json!({"to":"a b","data":1})).await,
        api.post("/api/publish", json!({"data":1})).await,
        api.post("/api/broadcast", json!({})).await,
        api.get("/api/route").await,
        api.get("/api/route?user=a%20b").await,
        api.get("/api/presence").await,
        api.delete("/api/nodes/n9?mode=crash").await,
        api.delete("/api/nodes/n1?mode=explode").await,
        api.post_raw(
            "/api/send",
            format!(r#"{{"to":"a","data":"{}"}}"#, "x".repeat(70_000)),
        )
        .await,
    ];
    let want = [404, 400, 400, 400, 400, 400, 400, 400, 404, 400, 413];
    for ((status, body), want) in checks.into_iter().zip(want) {
        assert_eq!(status, want, "{body}");
        assert!(body["error"]["code"].is_string(), "{body}");
        assert!(body["error"]["message"].is_string(), "{body}");
    }
    let r = common::http()
        .put(format!("{}/api/send", c.http_url()))
        .send()
        .await
        .expect("PUT");
    assert_eq!(r.status(), 405);
    let v: Value = r.json().await.expect("json");
    assert!(v["error"]["code"].is_string());
    assert_eq!(api.get("/healthz").await.0, 200);
    assert_eq!(api.get("/readyz").await.0, 200);
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcast_routing_spreads_located_clients_before_heartbeats_show_them() {
    let c = dev(3, common::common(Routing::Broadcast)).await;
    let api = Api::new(c.http_url());
    // Back to back, well within one heartbeat of each other: the nodes'
    // heartbeats still say 0 connections, so only the gateway's count of
    // its own recent answers can spread them (evenly: each goes to a node
    // with the fewest).
    let mut per_node: HashMap<String, usize> = HashMap::new();
    for i in 0..30 {
        let (s, v) = api.get(&format!("/ws/locate?user=l{i}")).await;
        assert_eq!(s, 200, "{v}");
        *per_node
            .entry(v["node"].as_str().expect("node").to_owned())
            .or_default() += 1;
    }
    assert_eq!(per_node.len(), 3, "{per_node:?}");
    assert!(
        per_node.values().all(|&n| n == 10),
        "located clients are spread evenly: {per_node:?}"
    );
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcast_routing_spreads_sessions_and_fans_out() {
    let c = dev(3, common::common(Routing::Broadcast)).await;
    let api = Api::new(c.http_url());
    let (_, nodes) = api.get("/api/nodes").await;
    assert_eq!(nodes["routing"], "broadcast");
    let mut clients = Vec::new();
    for i in 0..30 {
        clients.push(Client::connect(&c.gateway_url(), &format!("s{i}")).await);
    }
    let mut per_node: HashMap<String, usize> = HashMap::new();
    for cl in &clients {
        *per_node.entry(cl.node().to_owned()).or_default() += 1;
    }
    assert_eq!(per_node.len(), 3);
    assert!(
        per_node.values().all(|&n| (8..=12).contains(&n)),
        "least-connections spread: {per_node:?}"
    );
    // Two sessions of one user may sit on different nodes; both get each message once.
    let a = clients
        .iter()
        .position(|c| c.node() == "n1")
        .expect("on n1");
    let b = clients
        .iter()
        .position(|c| c.node() == "n2")
        .expect("on n2");
    let target = clients[b].user.clone();
    let mut twin = loop {
        let cl = Client::connect(&c.gateway_url(), &target).await;
        if cl.node() != "n2" {
            break cl;
        }
    };
    clients[a]
        .send(json!({"type":"send","to":target,"data":"x","id":1}))
        .await;
    assert_eq!(clients[a].next().await, json!({"type":"ack","id":1}));
    assert_eq!(clients[b].next().await["data"], "x");
    assert_eq!(twin.next().await["data"], "x");
    clients[a]
        .send(json!({"type":"send","to":target,"data":"y"}))
        .await;
    assert_eq!(
        clients[b].next().await["data"],
        "y",
        "no duplicate before y"
    );
    assert_eq!(twin.next().await["data"], "y");
    // Rooms work in broadcast mode too.
    clients[a]
        .send(json!({"type":"join","room":"r","id":"j"}))
        .await;
    assert_eq!(clients[a].next().await["type"], "ack");
    api.post("/api/publish", json!({"room":"r","data":"room"}))
        .await;
    assert_eq!(clients[a].next().await["data"], "room");
    // Adding a node moves nobody in broadcast mode; draining moves everyone on it.
    api.post("/api/nodes", json!({})).await;
    wait_until("4 nodes", || async { api.node_ids().await.len() == 4 }).await;
    api.delete("/api/nodes/n3?mode=drain").await;
    for cl in clients.iter_mut().filter(|c| c.node() == "n3") {
        let (frames, end) = cl.until_end().await;
        assert_eq!(
            frames.last().map(|f| f["type"].clone()),
            Some(json!("moved"))
        );
        assert_eq!(end, Ended::Close(1012, "moved".into()));
    }
    for cl in clients.iter_mut().filter(|c| c.node() != "n3") {
        cl.roundtrip("alive").await;
    }
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_metrics_are_exported() {
    let c = dev(3, hash()).await;
    let api = Api::new(c.http_url());
    let user = users_where(&api, "metric", 1, |n| n == "n1")
        .await
        .remove(0);
    let mut cl = Client::connect(&c.gateway_url(), &user).await;
    cl.roundtrip("count-me").await;
    let n1 = c.memory().expect("memory").handles().await["n1"].addr();
    let text = |url: String| async move {
        common::http()
            .get(url)
            .send()
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("text")
    };
    let node = text(format!("http://{n1}/metrics")).await;
    for series in [
        "wsring_messages_in_total{node=\"n1\"}",
        "wsring_messages_out_total{node=\"n1\"}",
        "wsring_sessions{node=\"n1\"}",
        "wsring_ring_epoch{node=\"n1\"} 3",
        "wsring_ready{node=\"n1\"} 1",
    ] {
        assert!(node.contains(series), "missing {series} in:\n{node}");
    }
    let gw = text(format!("{}/metrics", c.http_url())).await;
    for series in [
        "wsring_cluster_epoch 3",
        "wsring_cluster_nodes{state=\"up\"} 3",
        "wsring_gateway_tunnels{node=\"n1\"} 1",
    ] {
        assert!(gw.contains(series), "missing {series} in:\n{gw}");
    }
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_dropped_not_kept_forever() {
    let mut settings = hash();
    settings.node.session_queue = 16;
    let c = dev(3, settings).await;
    let api = Api::new(c.http_url());
    // Connected, then never read again: its socket buffers fill up and
    // every write to it blocks.
    let stuck = Client::connect(&c.gateway_url(), "stuck").await;
    let mut fine = Client::connect(&c.gateway_url(), "fine").await;
    let big = "x".repeat(60_000);
    for _ in 0..300 {
        api.post("/api/send", json!({ "to": "stuck", "data": big }))
            .await;
    }
    wait_until("the stuck session is gone", || async {
        let (_, v) = api.get("/api/presence?user=stuck").await;
        v["sessions"].as_array().is_some_and(Vec::is_empty)
    })
    .await;
    // Everyone else is unaffected.
    fine.roundtrip("still-fine").await;
    drop(stuck);
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_per_session_are_capped() {
    let mut settings = hash();
    settings.node.max_rooms_per_session = 2;
    let c = dev(3, settings).await;
    let mut cl = Client::connect(&c.gateway_url(), "joiner").await;
    for room in ["a", "b", "a"] {
        cl.send(json!({"type":"join","room":room,"id":room})).await;
        assert_eq!(cl.next().await["type"], "ack", "{room}");
    }
    cl.send(json!({"type":"join","room":"c","id":"c"})).await;
    let v = cl.next().await;
    assert_eq!(
        (v["type"].as_str(), v["code"].as_str()),
        (Some("error"), Some("limit_exceeded")),
        "{v}"
    );
    cl.send(json!({"type":"leave","room":"a","id":"l"})).await;
    assert_eq!(cl.next().await["type"], "ack");
    cl.send(json!({"type":"join","room":"c","id":"c2"})).await;
    assert_eq!(cl.next().await, json!({"type":"ack","id":"c2"}));
    c.shutdown().await;
}

/// The gateway's `wsring_gateway_tunnels` series, summed.
async fn tunnels(api: &Api) -> u64 {
    let url = format!("{}/metrics", api.base);
    let series = common::metric_series(&url, "wsring_gateway_tunnels").await;
    series.iter().map(|(_, v)| v).sum::<f64>() as u64
}

/// The node of the next `Connected` event (other events are skipped).
async fn connected_node(events: &mut wsring_client::Events) -> String {
    loop {
        let e = tokio::time::timeout(WAIT, events.next())
            .await
            .expect("a connected event in time")
            .expect("the client is running");
        if let wsring_client::Event::Connected { node, .. } = e {
            return node;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_locate_their_node_and_connect_to_it_without_the_tunnel() {
    let c = dev(3, hash()).await;
    let api = Api::new(c.http_url());
    let gw = c.gateway_url();

    // The locate answer: the owner, the epoch, and a URL ready to connect to.
    let (s, v) = api.get("/ws/locate?user=alice").await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["user"], "alice");
    assert_eq!(v["node"], json!(api.route("alice").await));
    let epoch = api.epoch().await;
    assert_eq!(v["epoch"], json!(epoch));
    let url = v["url"].as_str().expect("url");
    assert!(
        url.starts_with("ws://127.0.0.1:") && url.ends_with(&format!("/ws?ring_epoch={epoch}")),
        "{url}"
    );
    // Bad input is refused like a connect: 400 with a JSON error.
    for bad in ["/ws/locate", "/ws/locate?user=", "/ws/locate?user=a%20b"] {
        let (s, v) = api.get(bad).await;
        assert_eq!(s, 400, "{bad}: {v}");
        assert_eq!(v["error"]["code"], "bad_request", "{bad}: {v}");
    }

    // SDK clients with `direct` land on their owners, and no tunnel opens.
    let mut clients = Vec::new();
    for i in 0..12 {
        let user = format!("d{i}");
        let cfg = wsring_client::ClientConfig::new(&gw, &user).direct();
        let (client, mut events) = wsring_client::connect_with(cfg).await.expect("connect");
        let node = connected_node(&mut events).await;
        assert_eq!(node, api.route(&user).await, "{user} is on its owner");
        clients.push((user, client, events, node));
    }
    assert_eq!(tunnels(&api).await, 0, "no client went through the tunnel");
    // Raw clients: located ones (connected to the URL a locate gave) and,
    // for contrast, tunnelled ones through the gateway.
    let mut located = Vec::new();
    for i in 0..12 {
        let user = format!("r{i}");
        let (s, v) = api.get(&format!("/ws/locate?user={user}")).await;
        assert_eq!(s, 200, "{v}");
        let url = format!("{}&user={user}", v["url"].as_str().expect("url"));
        let client = common::Client::try_connect(&url)
            .await
            .unwrap_or_else(|r| panic!("{user}: {r:?}"));
        located.push(client);
    }
    let mut tunnelled = Vec::new();
    for i in 0..12 {
        tunnelled.push(common::Client::connect(&gw, &format!("t{i}")).await);
    }

    // A node joins: the users it takes over follow to it directly (the
    // `moved` frame names it, so no locate is needed); the others stay
    // where they are.
    let (s, v) = api.post("/api/nodes", json!({})).await;
    assert_eq!(s, 201, "{v}");
    wait_until("the gateway sees n4", || async {
        api.epoch().await > epoch
    })
    .await;
    let mut moved = 0;
    for (user, _, events, node) in &mut clients {
        let owner = api.route(user).await;
        if owner == *node {
            continue;
        }
        assert_eq!(owner, "n4");
        assert_eq!(
            connected_node(events).await,
            "n4",
            "{user} follows the move"
        );
        moved += 1;
    }
    assert!(moved > 0, "some users moved to n4");
    let url = format!("{}/metrics", api.base);
    let to_n4 = common::metric_series(&url, "wsring_gateway_tunnels{node=\"n4\"}").await;
    assert!(
        to_n4.iter().all(|(_, v)| *v == 0.0),
        "the moved users skipped the tunnel too: {to_n4:?}"
    );
    // A located session's `moved` names the new owner's URL with the epoch
    // that moved it: the locate answer, ready to connect to. A tunnelled
    // session's names none (its client reconnects through the gateway).
    let epoch = api.epoch().await;
    let (mut followed, mut tunnelled_moved) = (0, 0);
    for (mut c, is_located) in located
        .into_iter()
        .map(|c| (c, true))
        .chain(tunnelled.into_iter().map(|c| (c, false)))
    {
        let user = c.welcome["user"].as_str().expect("user").to_owned();
        if api.route(&user).await != "n4" {
            continue;
        }
        let (frames, end) = c.until_end().await;
        assert_eq!(end, common::Ended::Close(1012, "moved".into()), "{user}");
        let m = frames.last().expect("a moved frame");
        assert_eq!(
            (&m["type"], &m["epoch"]),
            (&json!("moved"), &json!(epoch)),
            "{m}"
        );
        if !is_located {
            assert!(m.get("url").is_none(), "tunnelled {user}: {m}");
            tunnelled_moved += 1;
            continue;
        }
        let (_, v) = api.get(&format!("/ws/locate?user={user}")).await;
        assert_eq!(
            m["url"], v["url"],
            "{user}: the moved frame names what a locate answers"
        );
        let url = format!("{}&user={user}", m["url"].as_str().expect("url"));
        let again = common::Client::try_connect(&url)
            .await
            .unwrap_or_else(|r| panic!("{user} follows its moved URL: {r:?}"));
        assert_eq!(again.node(), "n4");
        followed += 1;
    }
    assert!(
        followed > 0 && tunnelled_moved > 0,
        "{followed} {tunnelled_moved}"
    );

    // Messages flow between direct clients, on new and old nodes alike.
    let (first, rest) = clients.split_first_mut().expect("clients");
    for (user, _, events, _) in rest {
        first
            .1
            .send(user, json!({"to": user.as_str()}))
            .await
            .expect("ack");
        loop {
            let e = tokio::time::timeout(WAIT, events.next())
                .await
                .expect("the message in time")
                .expect("running");
            if let wsring_client::Event::Message(m) = e {
                assert_eq!(m.data, json!({"to": user.as_str()}));
                break;
            }
        }
    }
    c.shutdown().await;
}
