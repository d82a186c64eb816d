//! Webhooks and the publish proxy end to end: a dev cluster posting to a
//! real application (a small axum app started here that verifies every
//! signature), driven by real WebSocket clients.

mod common;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use common::{Client, dev};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use wsring_node::Routing;

const SECRET: &str = "hook-secret";
/// The application's own web origin, in the connect proxy tests.
const APP_ORIGIN: &str = "https://app.example";

#[derive(Default)]
struct App {
    events: Vec<Value>,
    bad_signatures: usize,
    proxied: Vec<Value>,
}

type Shared = Arc<Mutex<App>>;

fn signed(headers: &HeaderMap, body: &[u8]) -> bool {
    headers
        .get(wsring_hooks::SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|sig| wsring_hooks::verify(SECRET.as_bytes(), body, sig))
}

async fn events(State(app): State<Shared>, headers: HeaderMap, body: Bytes) -> &'static str {
    let mut a = app.lock().expect("lock");
    if !signed(&headers, &body) {
        a.bad_signatures += 1;
    }
    let v: Value = serde_json::from_slice(&body).expect("JSON batch");
    a.events
        .extend(v["events"].as_array().expect("events").iter().cloned());
    "ok"
}

/// The publish proxy: `"bad"` is refused, `"shout"` replaced, `"slow"`
/// outlasts the proxy timeout, anything else passes.
async fn proxy(State(app): State<Shared>, headers: HeaderMap, body: Bytes) -> axum::Json<Value> {
    let v: Value = serde_json::from_slice(&body).expect("JSON request");
    {
        let mut a = app.lock().expect("lock");
        if !signed(&headers, &body) {
            a.bad_signatures += 1;
        }
        a.proxied.push(v.clone());
    }
    axum::Json(match v["data"].as_str() {
        Some("bad") => json!({"error":{"code":"spam","message":"no ads here"}}),
        Some("shout") => json!({"data":"SHOUT"}),
        Some("slow") => {
            tokio::time::sleep(Duration::from_secs(5)).await;
            json!({})
        }
        _ => json!({}),
    })
}

async fn app() -> (String, Shared) {
    let shared = Shared::default();
    let router = axum::Router::new()
        .route("/events", post(events))
        .route("/proxy", post(proxy))
        .with_state(shared.clone());
    (serve(router).await, shared)
}

/// Serves `router` on an ephemeral loopback port; returns its base URL.
async fn serve(router: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    base
}

/// Waits (bounded) until the app has seen an event matching `pred`.
async fn event(app: &Shared, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..500 {
        if let Some(e) = app
            .lock()
            .expect("lock")
            .events
            .iter()
            .find(|e| pred(e))
            .cloned()
        {
            return e;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!(
        "no {what} event; got {:?}",
        app.lock().expect("lock").events
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_room_and_server_events_reach_the_app_signed() {
    let (base, app) = app().await;
    let mut settings = common::common(Routing::Hash);
    settings.node.webhook_url = vec![format!("{base}/events")];
    settings.node.webhook_secret = Some(SECRET.into());
    let c = dev(3, settings).await;
    let gw = c.gateway_url();
    let mut alice = Client::connect(&gw, "alice").await;
    let session = alice.welcome["session"]
        .as_str()
        .expect("session")
        .to_owned();
    let connected = event(&app, "session.connected", |e| {
        e["type"] == "session.connected"
    })
    .await;
    assert_eq!(connected["user"], "alice");
    assert_eq!(connected["session"], session.as_str());
    assert_eq!(connected["node"], alice.welcome["node"]);

    alice
        .send(json!({"type":"join","room":"chat","id":"j"}))
        .await;
    assert_eq!(alice.next().await, json!({"type":"ack","id":"j"}));
    let added = event(&app, "member_added", |e| e["type"] == "room.member_added").await;
    assert_eq!(
        (added["room"].as_str(), added["user"].as_str()),
        (Some("chat"), Some("alice"))
    );

    alice
        .send(json!({"type":"send","to":"@server","data":{"text":"store me"},"id":"m1"}))
        .await;
    assert_eq!(alice.next().await, json!({"type":"ack","id":"m1"}));
    let msg = event(&app, "message.to_server", |e| {
        e["type"] == "message.to_server"
    })
    .await;
    assert_eq!(msg["data"], json!({"text":"store me"}));
    assert_eq!(msg["client_id"], "m1");
    assert_eq!(msg["user"], "alice");

    alice
        .send(json!({"type":"leave","room":"chat","id":"l"}))
        .await;
    assert_eq!(alice.next().await, json!({"type":"ack","id":"l"}));
    event(&app, "member_removed", |e| {
        e["type"] == "room.member_removed"
    })
    .await;

    alice
        .send_raw(Message::Close(Some(CloseFrame {
            code: CloseCode::Normal,
            reason: "bye".into(),
        })))
        .await;
    let gone = event(&app, "session.disconnected", |e| {
        e["type"] == "session.disconnected"
    })
    .await;
    assert_eq!(
        (gone["code"].as_u64(), gone["reason"].as_str()),
        (Some(1000), Some("bye"))
    );
    assert_eq!(gone["session"], session.as_str());

    {
        let a = app.lock().expect("lock");
        assert_eq!(a.bad_signatures, 0, "every batch is signed");
        let mut ids: Vec<&str> = a.events.iter().filter_map(|e| e["id"].as_str()).collect();
        let n = ids.len();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), n, "event ids are unique");
        assert!(a.events.iter().all(|e| e["at_ms"].as_u64().is_some()));
    }
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_messages_without_a_receiver_are_refused() {
    let c = dev(1, common::common(Routing::Hash)).await;
    let mut alice = Client::connect(&c.gateway_url(), "alice").await;
    alice
        .send(json!({"type":"send","to":"@server","data":1,"id":7}))
        .await;
    let e = alice.next().await;
    assert_eq!(
        (e["code"].as_str(), &e["id"]),
        (Some("bad_request"), &json!(7)),
        "{e}"
    );
    // Nobody may connect as the server's address.
    let refused = Client::try_connect(&format!("{}?user=@server", c.gateway_url())).await;
    assert!(refused.is_err());
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_publish_proxy_accepts_replaces_rejects_and_times_out() {
    let (base, app) = app().await;
    let mut settings = common::common(Routing::Hash);
    settings.node.publish_proxy = Some(format!("{base}/proxy"));
    settings.node.webhook_secret = Some(SECRET.into());
    settings.node.proxy_timeout = Duration::from_millis(500);
    let c = dev(3, settings).await;
    let gw = c.gateway_url();
    let mut alice = Client::connect(&gw, "alice").await;
    let mut bob = Client::connect(&gw, "bob").await;
    let send = |data: &str, id: &str| json!({"type":"send","to":"bob","data":data,"id":id});

    alice.send(send("hello", "1")).await;
    assert_eq!(alice.next().await, json!({"type":"ack","id":"1"}));
    assert_eq!(bob.next().await["data"], "hello");

    alice.send(send("shout", "2")).await;
    assert_eq!(alice.next().await, json!({"type":"ack","id":"2"}));
    assert_eq!(bob.next().await["data"], "SHOUT", "the app replaced data");

    alice.send(send("bad", "3")).await;
    let e = alice.next().await;
    assert_eq!(
        (e["code"].as_str(), e["message"].as_str()),
        (Some("rejected"), Some("spam: no ads here"))
    );

    alice.send(send("slow", "4")).await;
    let e = alice.next().await;
    assert_eq!(
        (e["code"].as_str(), &e["id"]),
        (Some("unavailable"), &json!("4")),
        "{e}"
    );

    alice
        .send(json!({"type":"publish","room":"lobby","data":"bad","id":"5"}))
        .await;
    assert_eq!(alice.next().await["code"], "rejected");
    // Nothing refused or timed out reached bob.
    bob.roundtrip("only-accepted").await;

    alice
        .send(json!({"type":"send","to":"@server","data":"rpc","id":"6"}))
        .await;
    assert_eq!(alice.next().await, json!({"type":"ack","id":"6"}));
    {
        let a = app.lock().expect("lock");
        assert_eq!(a.bad_signatures, 0);
        let last = a.proxied.last().expect("proxied");
        assert_eq!(
            (
                last["type"].as_str(),
                last["to"].as_str(),
                last["user"].as_str()
            ),
            (Some("send"), Some("@server"), Some("alice"))
        );
    }
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_that_is_down_rejects_or_allows_as_configured() {
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        format!("http://{}/proxy", l.local_addr().expect("addr"))
    };
    for (policy, delivered) in [("reject", false), ("allow", true)] {
        let mut settings = common::common(Routing::Hash);
        settings.node.publish_proxy = Some(dead.clone());
        settings.node.proxy_when_down = policy.into();
        let c = dev(1, settings).await;
        let gw = c.gateway_url();
        let mut alice = Client::connect(&gw, "alice").await;
        let mut bob = Client::connect(&gw, "bob").await;
        alice
            .send(json!({"type":"send","to":"bob","data":"x","id":"1"}))
            .await;
        let answer = alice.next().await;
        if delivered {
            assert_eq!(answer, json!({"type":"ack","id":"1"}), "{policy}");
            assert_eq!(bob.next().await["data"], "x");
        } else {
            assert_eq!(answer["code"], "unavailable", "{policy}: {answer}");
            bob.roundtrip("nothing").await;
        }
        c.shutdown().await;
    }
}

/// The `room.occupied` / `room.vacated` events the app got for `room`, in
/// order.
fn occupancy(app: &Shared, room: &str) -> Vec<String> {
    app.lock()
        .expect("lock")
        .events
        .iter()
        .filter(|e| {
            e["room"] == room && (e["type"] == "room.occupied" || e["type"] == "room.vacated")
        })
        .filter_map(|e| e["type"].as_str().map(str::to_owned))
        .collect()
}

/// Waits (bounded) until the occupancy events of `room` are `want`.
async fn occupancy_is(app: &Shared, room: &str, want: &[&str]) {
    for _ in 0..500 {
        if occupancy(app, room) == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{room}: want {want:?}, got {:?}", occupancy(app, room));
}

async fn join(c: &mut Client, room: &str) {
    c.send(json!({"type":"join","room":room,"id":"j"})).await;
    assert_eq!(c.next().await, json!({"type":"ack","id":"j"}));
}

async fn leave(c: &mut Client, room: &str) {
    c.send(json!({"type":"leave","room":room,"id":"l"})).await;
    assert_eq!(c.next().await, json!({"type":"ack","id":"l"}));
}

/// A room is occupied by its first member anywhere and vacated by its last
/// one anywhere: members on three nodes come and go, and the app hears one
/// `room.occupied` and one `room.vacated`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_are_occupied_and_vacated_cluster_wide() {
    let (base, app) = app().await;
    let mut settings = common::common(Routing::Hash);
    settings.node.webhook_url = vec![format!("{base}/events")];
    settings.node.webhook_secret = Some(SECRET.into());
    let c = dev(3, settings).await;
    let (gw, api) = (c.gateway_url(), common::Api::new(c.http_url()));
    let ids = api.node_ids().await;
    assert_eq!(ids.len(), 3);
    let (mut clients, mut users) = (Vec::new(), Vec::new());
    for (i, id) in ids.iter().enumerate() {
        let user = common::users_where(&api, &format!("u{i}-"), 1, |n| n == id)
            .await
            .remove(0);
        clients.push(Client::connect(&gw, &user).await);
        users.push(user);
    }
    let nodes: Vec<String> = clients.iter().map(|c| c.node().to_owned()).collect();
    assert_eq!(nodes, ids, "one member per node");

    join(&mut clients[0], "lobby").await;
    occupancy_is(&app, "lobby", &["room.occupied"]).await;
    join(&mut clients[1], "lobby").await;
    join(&mut clients[2], "lobby").await;
    // The first node's last member leaves, the second's disconnects: two
    // nodes lose the room, the cluster does not.
    leave(&mut clients[0], "lobby").await;
    let second = clients.remove(1);
    drop(second);
    // The third node's member in a second room, as a marker: once its
    // events arrived, those of the earlier changes would have too (one
    // emitter, one queue, in order).
    join(&mut clients[1], "marker").await;
    occupancy_is(&app, "marker", &["room.occupied"]).await;
    assert_eq!(occupancy(&app, "lobby"), ["room.occupied"]);
    leave(&mut clients[1], "lobby").await;
    occupancy_is(&app, "lobby", &["room.occupied", "room.vacated"]).await;

    // Re-occupied, by two members on one node, then vacated again.
    join(&mut clients[0], "lobby").await;
    let mut again = Client::connect(&gw, &users[0]).await;
    join(&mut again, "lobby").await;
    leave(&mut clients[0], "lobby").await;
    leave(&mut again, "lobby").await;
    occupancy_is(
        &app,
        "lobby",
        &[
            "room.occupied",
            "room.vacated",
            "room.occupied",
            "room.vacated",
        ],
    )
    .await;
    assert_eq!(app.lock().expect("lock").bad_signatures, 0);
    c.shutdown().await;
}

/// Separate node processes on a real backend: a node that dies (SIGKILL)
/// vacates the rooms only it had members in, and when the node that emits
/// occupancy events dies, the next one carries on from the same picture.
async fn occupancy_across_crashes(b: common::procs::Backend) {
    use nix::sys::signal::Signal;
    let (base, app) = app().await;
    let ns = wsring_cluster_testkit::conformance::unique_ns(&format!("occ-{}", b.name));
    let url = format!("{base}/events");
    let hook = ["--webhook-url", url.as_str(), "--webhook-secret", SECRET];
    let mut nodes = Vec::new();
    // Started one after another: n1 holds the oldest claim and emits.
    for id in ["n1", "n2", "n3"] {
        nodes.push(b.node(&ns, id, &hook).await);
    }
    let (_gw, http) = b.gateway(&ns, &[]).await;
    let api = common::Api::new(&http);
    common::wait_until("3 nodes up", || async { api.node_ids().await.len() == 3 }).await;
    let gw = format!("{}/ws", http.replacen("http://", "ws://", 1));
    let on = |node: &'static str, prefix: &'static str| {
        let api = &api;
        async move {
            common::users_where(api, prefix, 1, |n| n == node)
                .await
                .remove(0)
        }
    };
    let mut a2 = Client::connect(&gw, &on("n2", "a").await).await;
    let mut a3 = Client::connect(&gw, &on("n3", "b").await).await;
    join(&mut a2, "shared").await;
    join(&mut a3, "shared").await;
    join(&mut a3, "solo").await;
    occupancy_is(&app, "shared", &["room.occupied"]).await;
    occupancy_is(&app, "solo", &["room.occupied"]).await;

    // n3 dies: "solo" had members only there, "shared" still has one on n2.
    nodes[2].signal(Signal::SIGKILL);
    occupancy_is(&app, "solo", &["room.occupied", "room.vacated"]).await;

    // The emitter dies; n2 takes over with the same picture.
    nodes[0].signal(Signal::SIGKILL);
    common::wait_until("n2 alone", || async { api.node_ids().await == ["n2"] }).await;
    let mut later = Client::connect(&gw, &on("n2", "c").await).await;
    join(&mut later, "after").await;
    occupancy_is(&app, "after", &["room.occupied"]).await;
    leave(&mut a2, "shared").await;
    occupancy_is(&app, "shared", &["room.occupied", "room.vacated"]).await;
    assert_eq!(occupancy(&app, "solo"), ["room.occupied", "room.vacated"]);
    assert_eq!(app.lock().expect("lock").bad_signatures, 0);
    // Expected: no authentication (this test's choice), and the two nodes
    // reaped after their crash. Nothing else.
    let unexpected: Vec<String> = nodes[1]
        .warnings()
        .into_iter()
        .filter(|w| !w.contains("authentication is OFF") && !w.contains("reaped members"))
        .collect();
    assert!(unexpected.is_empty(), "n2 logged warnings: {unexpected:?}");
    drop(nodes);
    b.purge(&ns).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn occupancy_across_crashes_on_redis() {
    if let Some(b) = common::procs::redis().await {
        occupancy_across_crashes(b).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn occupancy_across_crashes_on_nats() {
    if let Some(b) = common::procs::nats().await {
        occupancy_across_crashes(b).await;
    }
}

/// The connect proxy's application: `sid=<user>` cookies are sessions of
/// `<user>` (allowed only `team-*` rooms), `sid=banned` is refused with 403,
/// `sid=short` expires in 2 s, `sid=slow` outlasts the proxy timeout, and no
/// cookie is 401. Counts calls per cookie.
async fn connect_app(
    State(app): State<Shared>,
    headers: HeaderMap,
    body: Bytes,
) -> (axum::http::StatusCode, axum::Json<Value>) {
    use axum::http::StatusCode;
    let v: Value = serde_json::from_slice(&body).expect("JSON request");
    {
        let mut a = app.lock().expect("lock");
        if !signed(&headers, &body) {
            a.bad_signatures += 1;
        }
        a.proxied.push(v.clone());
    }
    let cookie = v["headers"]["cookie"].as_str().unwrap_or_default();
    let sid = cookie
        .split("; ")
        .find_map(|c| c.strip_prefix("sid="))
        .unwrap_or_default()
        .to_owned();
    match sid.as_str() {
        "" => (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"message":"log in first"})),
        ),
        "banned" => (
            StatusCode::FORBIDDEN,
            axum::Json(json!({"message":"banned"})),
        ),
        "slow" => {
            tokio::time::sleep(Duration::from_secs(5)).await;
            (StatusCode::OK, axum::Json(json!({"user":"slow"})))
        }
        "short" => {
            let at = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("clock")
                .as_secs()
                + 2;
            (
                StatusCode::OK,
                axum::Json(json!({"user":"short","expire_at":at})),
            )
        }
        user => (
            StatusCode::OK,
            axum::Json(json!({"user":user,"rooms":["team-*"]})),
        ),
    }
}

/// Connects through the connect proxy: the application's answer decides
/// the user (and its rooms) once per connect, through the gateway or
/// straight to a node; refusals keep their status; an application that
/// does not answer is 503; an identity past its `expire_at` is closed with
/// 3000; a forged gateway identity is 401.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connect_proxy_decides_who_connects() {
    let shared = Shared::default();
    let router = axum::Router::new()
        .route("/connect", post(connect_app))
        .with_state(shared.clone());
    let base = serve(router).await;
    let mut settings = common::common(Routing::Hash);
    settings.auth.connect_proxy = Some(format!("{base}/connect"));
    settings.auth.connect_proxy_secret = Some(SECRET.into());
    settings.auth.connect_proxy_timeout = Duration::from_millis(500);
    settings.auth.connect_proxy_headers = vec!["cookie".into(), "user-agent".into()];
    settings.auth.allowed_origins = vec![APP_ORIGIN.into()];
    let c = dev(3, settings).await;
    let gw = c.gateway_url();
    let api = common::Api::new(c.http_url());
    let calls = |who: &str| {
        shared
            .lock()
            .expect("lock")
            .proxied
            .iter()
            .filter(|r| r["headers"]["cookie"].as_str() == Some(who))
            .count()
    };

    // Through the gateway: the user is the application's, not the query's,
    // and the application was asked once (the node took the gateway's word).
    let mut alice =
        Client::try_connect_with(&format!("{gw}?user=mallory"), &[("cookie", "sid=alice")])
            .await
            .expect("admitted");
    assert_eq!(alice.welcome["user"], "alice", "{}", alice.welcome);
    assert_eq!(alice.node(), api.route("alice").await);
    assert_eq!(calls("sid=alice"), 1);
    let req = shared.lock().expect("lock").proxied[0].clone();
    assert_eq!(req["query"], json!({"user":"mallory"}));
    assert!(req["remote_addr"].is_string(), "{req}");
    // Its rooms are the application's too.
    alice
        .send(json!({"type":"join","room":"team-1","id":"ok"}))
        .await;
    assert_eq!(alice.next().await, json!({"type":"ack","id":"ok"}));
    alice
        .send(json!({"type":"join","room":"other","id":"no"}))
        .await;
    assert_eq!(alice.next().await["code"], "forbidden");

    // Straight to the owner node: the node asks the application itself.
    let owner = api.route("bob").await;
    let node_url = c
        .members()
        .into_iter()
        .find(|(id, _)| *id == owner)
        .map(|(_, url)| url)
        .expect("owner url");
    let bob = Client::try_connect_with(&node_url, &[("cookie", "sid=bob")])
        .await
        .expect("admitted by the node");
    assert_eq!(bob.welcome["user"], "bob");
    assert_eq!(calls("sid=bob"), 1);

    // Located through the gateway, then straight to the node: the
    // application is asked once, at the locate, and the node takes the
    // signed decision from the query.
    let locate = |cookie: &'static str| {
        common::http()
            .get(format!("{}/ws/locate?user=mallory", c.http_url()))
            .header("cookie", cookie)
            .send()
    };
    let r = locate("sid=carol").await.expect("locate");
    assert_eq!(r.status().as_u16(), 200);
    let v: Value = r.json().await.expect("JSON");
    assert_eq!(v["user"], "carol", "{v}");
    assert_eq!(v["node"], json!(api.route("carol").await));
    let url = v["url"].as_str().expect("url");
    assert!(url.contains("&identity="), "{url}");
    let carol = Client::try_connect_with(&format!("{url}&user=mallory"), &[])
        .await
        .expect("admitted by the node");
    assert_eq!(carol.welcome["user"], "carol");
    assert_eq!(carol.node(), v["node"].as_str().expect("node"));
    assert_eq!(calls("sid=carol"), 1, "asked once, at the locate");
    let r = locate("sid=banned").await.expect("locate");
    assert_eq!(r.status().as_u16(), 403);
    let v: Value = r.json().await.expect("JSON");
    assert_eq!(v["error"]["message"], "banned");
    // A forged identity in the query does not pass either.
    let r = Client::try_connect_with(&format!("{node_url}?identity=a.b.c"), &[])
        .await
        .err()
        .expect("refused");
    assert_eq!(r.status, 401);

    // Refusals keep their status; a dead or slow application is 503.
    for (cookie, status) in [("sid=banned", 403), ("", 401), ("sid=slow", 503)] {
        let headers: &[(&str, &str)] = if cookie.is_empty() {
            &[]
        } else {
            &[("cookie", cookie)]
        };
        let r = Client::try_connect_with(&gw, headers)
            .await
            .err()
            .unwrap_or_else(|| panic!("{cookie}: admitted"));
        assert_eq!(r.status, status, "{cookie}: {:?}", r.body);
    }
    let r = Client::try_connect_with(&gw, &[("cookie", "sid=banned")])
        .await
        .err()
        .expect("refused");
    assert_eq!(r.body["error"]["message"], "banned");

    // A forged identity header does not pass for the gateway's.
    let r = Client::try_connect_with(&node_url, &[(wsring_auth::IDENTITY_HEADER, "a.b.c")])
        .await
        .err()
        .expect("refused");
    assert_eq!(r.status, 401);

    // A page of another site, carrying the user's cookie, is refused before
    // the application is asked (cross-site WebSocket hijacking).
    let r = Client::try_connect_with(
        &gw,
        &[
            ("cookie", "sid=hijacked"),
            ("origin", "https://evil.example"),
        ],
    )
    .await
    .err()
    .expect("refused");
    assert_eq!(r.status, 403, "{:?}", r.body);
    assert_eq!(calls("sid=hijacked"), 0);
    let ok = Client::try_connect_with(&gw, &[("cookie", "sid=dave"), ("origin", APP_ORIGIN)])
        .await
        .expect("the application's own page is admitted");
    assert_eq!(ok.welcome["user"], "dave");

    // An identity with an expiry is closed when it expires.
    let mut short = Client::try_connect_with(&gw, &[("cookie", "sid=short")])
        .await
        .expect("admitted");
    let (_, end) = short.until_end().await;
    assert_eq!(end, common::Ended::Close(3000, "expired".into()));
    assert_eq!(shared.lock().expect("lock").bad_signatures, 0);
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn occupancy_across_crashes_on_rabbitmq() {
    if let Some(b) = common::procs::amqp().await {
        occupancy_across_crashes(b).await;
    }
}

/// A connect proxy that is shown cookies does not start without an origin
/// allow-list (explicit `'*'` allowed), and connect-proxy calls are limited
/// per remote address: a flood of unauthenticated connects gets 429 without
/// reaching the application.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connect_proxy_needs_origins_and_is_rate_limited_per_address() {
    let shared = Shared::default();
    let router = axum::Router::new()
        .route("/connect", post(connect_app))
        .with_state(shared.clone());
    let base = serve(router).await;
    let proxy = format!("{base}/connect");
    let (status, stderr) = common::procs::Proc::run(
        &[
            "dev",
            "--port",
            "0",
            "--connect-proxy",
            &proxy,
            "--connect-proxy-secret",
            SECRET,
        ],
        Duration::from_secs(20),
    )
    .await;
    assert!(!status.success(), "started without --allowed-origins");
    assert!(stderr.contains("--allowed-origins"), "{stderr}");

    let (_p, ws, _) = common::procs::dev_process(&[
        "--connect-proxy",
        &proxy,
        "--connect-proxy-secret",
        SECRET,
        "--allowed-origins",
        "*",
        "--connect-proxy-calls-per-sec",
        "5",
    ])
    .await;
    let t0 = std::time::Instant::now();
    let (mut unauthorized, mut limited) = (0, 0);
    for _ in 0..100 {
        let r = Client::try_connect_with(&ws, &[])
            .await
            .err()
            .expect("refused");
        match r.status {
            401 => unauthorized += 1,
            429 => {
                assert_eq!(r.body["error"]["code"], "rate_limited", "{:?}", r.body);
                limited += 1;
            }
            other => panic!("{other}: {:?}", r.body),
        }
    }
    let asked = shared.lock().expect("lock").proxied.len();
    // 5 a second, a burst of 25.
    let bound = 25.0 + 5.0 * t0.elapsed().as_secs_f64() * 1.1 + 2.0;
    assert!(limited > 0, "no connect was limited ({asked} asked)");
    assert_eq!(
        asked, unauthorized,
        "every call not limited reached the app"
    );
    assert!(
        (asked as f64) <= bound,
        "{asked} calls reached the app, bound {bound}"
    );
}

/// Secrets planted in the webhook, publish-proxy and connect-proxy URLs
/// (userinfo and query values) and the signing secret.
const PLANTED: [&str; 7] = [
    "hookuser",
    "HOOKPASS",
    "HOOKTOKEN",
    "DEADPASS",
    "PROXYTOKEN",
    "CONNECTPASS",
    "SIGNSECRET",
];

/// Shows webhook and proxy URLs only with their secrets hidden: a `wsring
/// dev` process is given URLs carrying credentials (`user:PASS@`,
/// `?token=`), one receiver fails its first requests and one is not there
/// at all (so retries, WARN lines and proxy errors happen), and then
/// everything the process printed (at debug level), its `/metrics` and its
/// `/api/info` are searched for the planted secrets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_and_proxy_urls_never_show_their_secrets() {
    use axum::http::StatusCode;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let calls = Arc::new(AtomicUsize::new(0));
    let delivered = Arc::new(AtomicUsize::new(0));
    let router = axum::Router::new()
        .route(
            "/events",
            post({
                let (calls, delivered) = (calls.clone(), delivered.clone());
                move || async move {
                    // The first three batches fail: the third failure in a
                    // row is logged as a WARN.
                    if calls.fetch_add(1, Ordering::SeqCst) < 3 {
                        StatusCode::SERVICE_UNAVAILABLE
                    } else {
                        delivered.fetch_add(1, Ordering::SeqCst);
                        StatusCode::OK
                    }
                }
            }),
        )
        .route(
            "/connect",
            post(|| async { axum::Json(json!({"user":"alice"})) }),
        );
    let app = serve(router).await;
    let app_host = app.trim_start_matches("http://");
    // A port nothing listens on: connection refused, at once and every time.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    };
    let hook = format!("http://hookuser:HOOKPASS@{app_host}/events?token=HOOKTOKEN&v=2");
    let dead_hook = format!("http://u:DEADPASS@{dead}/hook?token=HOOKTOKEN");
    let publish_proxy = format!("http://p:PROXYTOKEN@{dead}/proxy?token=PROXYTOKEN");
    let connect_proxy = format!("http://c:CONNECTPASS@{app_host}/connect?key=CONNECTPASS");
    let webhooks = format!("{hook},{dead_hook}");
    let p = common::procs::Proc::start_logging(
        &[
            "dev",
            "--port",
            "0",
            "--nodes",
            "1",
            "--webhook-url",
            &webhooks,
            "--webhook-secret",
            "SIGNSECRET",
            "--publish-proxy",
            &publish_proxy,
            "--proxy-when-down",
            "allow",
            "--connect-proxy",
            &connect_proxy,
            "--connect-proxy-secret",
            "SIGNSECRET",
            "--allowed-origins",
            "https://app.example",
        ],
        "gateway",
        "info,wsring_hooks=debug,wsring_node=debug,wsring_http=debug,wsring_gateway=debug",
    )
    .await;
    let ws = p
        .ready_line
        .split_whitespace()
        .nth(1)
        .expect("gateway url")
        .to_owned();
    let base = ws.replacen("ws://", "http://", 1).replace("/ws", "");

    // The connect proxy admits alice; her publish goes past the dead publish
    // proxy (allowed when down) and makes webhook events.
    let mut alice = Client::try_connect(&ws).await.expect("admitted");
    alice
        .send(json!({"type":"join","room":"chat","id":"j"}))
        .await;
    assert_eq!(alice.next().await, json!({"type":"ack","id":"j"}));
    alice
        .send(json!({"type":"publish","room":"chat","data":"hi","id":"p"}))
        .await;
    assert_eq!(alice.next_non_ack().await["data"], "hi");
    common::wait_until("a webhook batch delivered after retries", || async {
        delivered.load(Ordering::SeqCst) > 0
    })
    .await;
    common::wait_until("a WARN line about the dead receiver", || async {
        p.warnings()
            .iter()
            .any(|l| l.contains("webhook receiver failing"))
    })
    .await;

    let metrics = common::http()
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("body");
    assert!(
        metrics.contains(&format!(
            "wsring_webhook_delivered_total{{url=\"{app_host}/events\"}}"
        )),
        "delivered counter labelled by host and path: {metrics}"
    );
    let info = common::http()
        .get(format!("{base}/api/info"))
        .send()
        .await
        .expect("info")
        .text()
        .await
        .expect("body");
    let log = p.log.lock().expect("log").join("\n");
    assert!(
        log.contains("webhooks on") && log.contains("proxy on"),
        "start-up lines are there to be searched: {log}"
    );
    assert!(
        log.contains("token=REDACTED"),
        "URLs are shown, redacted: {log}"
    );
    for (what, text) in [
        ("the log", &log),
        ("the readiness line", &p.ready_line),
        ("/metrics", &metrics),
        ("/api/info", &info),
    ] {
        for secret in PLANTED {
            assert!(!text.contains(secret), "{what} shows {secret}:\n{text}");
        }
    }
}
