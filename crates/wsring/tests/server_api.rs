//! The server API end to end, on 3-node clusters with authentication on:
//! `POST /api/disconnect`, server-side rooms (`/api/rooms/{room}/join` and
//! `/leave`), room members (`GET /api/rooms/{room}`, `/count`), history
//! (`GET /api/history`) and `presence` events, through the gateway and
//! through nodes, called with the Rust client's `Api`.
//!
//! One scenario runs on every backend and routing mode it is given: the
//! in-memory `wsring dev` (hash, and broadcast + durable), Redis (hash +
//! durable), NATS (broadcast + durable) and Redis + RabbitMQ (hash), each
//! with real node and gateway processes. Each step makes sessions land on
//! chosen nodes, so every cluster-wide answer has parts from other nodes.

mod common;

use common::procs::{Backend, Proc, dev_process};
use common::{Client, Ended, TEST_API_KEY, TEST_JWT_SECRET, WAIT, token, token_with, wait_until};
use serde_json::{Value, json};
use std::time::Duration;
use wsring_client::{Api, ApiConfig, ApiError, Event};
use wsring_cluster_testkit::conformance::unique_ns;

/// Rooms one user may be put in by the server, in these clusters.
const MAX_SERVER_ROOMS: &str = "3";

/// A node of the cluster under test.
struct Node {
    id: String,
    ws: String,
    base: String,
}

/// A running cluster: three nodes and a gateway.
struct Cluster {
    _procs: Vec<Proc>,
    /// The gateway's `/ws` URL and HTTP base.
    ws: String,
    base: String,
    nodes: Vec<Node>,
    hash: bool,
    durable: bool,
    /// The real backend and namespace to purge afterwards.
    purge: Option<(Backend, String)>,
    /// Whether the nodes run inside the `wsring dev` process (crashed
    /// through its API) rather than as processes of their own.
    in_dev: bool,
}

fn ws_of(base: &str) -> String {
    format!("{}/ws", base.replacen("http://", "ws://", 1))
}

fn base_of(ws: &str) -> String {
    ws.replacen("ws://", "http://", 1)
        .trim_end_matches("/ws")
        .to_owned()
}

/// Flags both roles get.
fn flags(routing: &str, durable: bool) -> Vec<&'static str> {
    let routing = if routing == "hash" {
        "hash"
    } else {
        "broadcast"
    };
    let mut f = vec![
        "--jwt-secret",
        TEST_JWT_SECRET,
        "--api-key",
        TEST_API_KEY,
        "--routing",
        routing,
        "--heartbeat-ttl",
        "1200ms",
    ];
    if durable {
        f.push("--durable");
    }
    f
}

impl Cluster {
    /// `wsring dev` on the in-memory backend.
    async fn memory(routing: &str, durable: bool) -> Cluster {
        let mut args = vec!["--nodes", "3", "--max-server-rooms", MAX_SERVER_ROOMS];
        args.extend(flags(routing, durable));
        let (p, ws, base) = dev_process(&args).await;
        Self::ready(vec![p], ws, base, routing, durable, None).await
    }

    /// Node and gateway processes on a real backend.
    async fn on(b: Backend, routing: &str, durable: bool) -> Cluster {
        let ns = unique_ns(&format!("api-{}", b.name));
        let mut node_flags = vec!["--max-server-rooms", MAX_SERVER_ROOMS];
        node_flags.extend(flags(routing, durable));
        let mut procs = Vec::new();
        for id in ["n1", "n2", "n3"] {
            procs.push(b.node(&ns, id, &node_flags).await);
        }
        let (g, base) = b.gateway(&ns, &flags(routing, durable)).await;
        procs.push(g);
        let ws = ws_of(&base);
        Self::ready(procs, ws, base, routing, durable, Some((b, ns))).await
    }

    async fn ready(
        procs: Vec<Proc>,
        ws: String,
        base: String,
        routing: &str,
        durable: bool,
        purge: Option<(Backend, String)>,
    ) -> Cluster {
        let open = common::Api::new(&base);
        wait_until("three nodes up", || async {
            let (_, v) = open.get("/api/nodes").await;
            v["nodes"]
                .as_array()
                .is_some_and(|n| n.len() == 3 && n.iter().all(|n| n["state"] == "up"))
        })
        .await;
        let (_, v) = open.get("/api/nodes").await;
        let nodes = v["nodes"]
            .as_array()
            .expect("nodes")
            .iter()
            .map(|n| {
                let ws = n["url"].as_str().expect("url").to_owned();
                Node {
                    id: n["id"].as_str().expect("id").to_owned(),
                    base: base_of(&ws),
                    ws,
                }
            })
            .collect();
        Cluster {
            in_dev: purge.is_none(),
            _procs: procs,
            ws,
            base,
            nodes,
            hash: routing == "hash",
            durable,
            purge,
        }
    }

    /// Kills node `i` abruptly: no goodbye, its sessions' sockets drop.
    async fn crash(&self, i: usize) {
        if self.in_dev {
            let url = format!("{}/api/nodes/{}?mode=crash", self.base, self.node(i).id);
            let (s, _, v) = raw(
                reqwest::Method::DELETE,
                &url,
                None,
                Some(&format!("Bearer {TEST_API_KEY}")),
            )
            .await;
            assert_eq!(s, 202, "{v}");
        } else {
            self._procs[i].signal(nix::sys::signal::Signal::SIGKILL);
        }
    }

    /// The server API client with the key, at `base`.
    fn api_at(&self, base: &str) -> Api {
        Api::with(ApiConfig::new(base).with_key(TEST_API_KEY)).expect("api client")
    }

    /// The server API through the gateway.
    fn api(&self) -> Api {
        self.api_at(&self.base)
    }

    fn node(&self, i: usize) -> &Node {
        &self.nodes[i]
    }

    /// A user id starting with `prefix` whose sessions land on node `i`:
    /// in hash routing one the ring gives to it; in broadcast routing any
    /// (sessions go to the node they connect to).
    async fn user_on(&self, prefix: &str, i: usize) -> String {
        let prefix = format!("{prefix}-{}", rand::random::<u32>());
        if !self.hash {
            return prefix;
        }
        let id = self.node(i).id.clone();
        common::users_where(&common::Api::new(&self.base), &prefix, 1, |n| n == id)
            .await
            .remove(0)
    }

    /// A session of `user` on node `i`, with `claims` in its token: through
    /// the gateway in hash routing (the owner is node `i`), straight to the
    /// node in broadcast routing.
    async fn session_with(&self, user: &str, i: usize, claims: Value) -> Client {
        let url = if self.hash {
            &self.ws
        } else {
            &self.node(i).ws
        };
        let tok = token_with(TEST_JWT_SECRET, user, claims);
        let c = Client::try_connect(&format!("{url}?token={tok}"))
            .await
            .unwrap_or_else(|r| panic!("connect {user}: {r:?}"));
        assert_eq!(c.node(), self.node(i).id, "{user} landed elsewhere");
        let mut c = c;
        c.user = user.to_owned();
        c
    }

    async fn session(&self, user: &str, i: usize) -> Client {
        self.session_with(user, i, json!({})).await
    }

    async fn done(self) {
        if let Some((b, ns)) = &self.purge {
            b.purge(ns).await;
        }
    }
}

/// Frames up to the pong of a ping tagged `tag`: everything the session
/// was sent before it processed the ping.
async fn frames_until_pong(c: &mut Client, tag: &str) -> Vec<Value> {
    c.send(json!({"type":"ping","id":tag})).await;
    let mut frames = Vec::new();
    loop {
        let f = c.next().await;
        if f["type"] == "pong" && f["id"] == tag {
            return frames;
        }
        frames.push(f);
    }
}

/// The next frame of type `kind`, skipping others.
async fn next_of(c: &mut Client, kind: &str) -> Value {
    loop {
        let f = c.next().await;
        if f["type"] == kind {
            return f;
        }
    }
}

/// Sends `frame` (which carries `"id"`) and waits for its ack.
async fn request(c: &mut Client, frame: Value) {
    let id = frame["id"].clone();
    c.send(frame).await;
    loop {
        let f = c.next().await;
        if f["id"] == id {
            assert_eq!(f["type"], "ack", "{f}");
            return;
        }
    }
}

/// A call's status and JSON body, sent with `auth` (a full header value).
async fn raw(
    method: reqwest::Method,
    url: &str,
    body: Option<&str>,
    auth: Option<&str>,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut req = common::http().request(method, url);
    if let Some(b) = body {
        req = req
            .header("content-type", "application/json")
            .body(b.to_owned());
    }
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    let r = req.send().await.expect("request");
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (status, headers, r.json().await.unwrap_or(Value::Null))
}

fn http_error(e: ApiError) -> (u16, String, String) {
    match e {
        ApiError::Http {
            status,
            code,
            message,
        } => (status, code, message),
        other => panic!("expected an HTTP error, got {other}"),
    }
}

/// Every new call needs the API key, on the gateway and on a node.
async fn api_key_required(c: &Cluster) {
    use reqwest::Method;
    for base in [&c.base, &c.node(1).base] {
        for (method, path, body) in [
            (Method::POST, "/api/disconnect", Some(r#"{"user":"k"}"#)),
            (Method::POST, "/api/rooms/r/join", Some(r#"{"user":"k"}"#)),
            (Method::POST, "/api/rooms/r/leave", Some(r#"{"user":"k"}"#)),
            (Method::GET, "/api/rooms/r", None),
            (Method::GET, "/api/rooms/r/count", None),
            (Method::GET, "/api/history?user=k", None),
        ] {
            let url = format!("{base}{path}");
            for auth in [None, Some("Bearer not-the-key")] {
                let (s, h, v) = raw(method.clone(), &url, body, auth).await;
                assert_eq!(s, 401, "{method} {url} {auth:?}: {v}");
                assert_eq!(v["error"]["code"], "unauthorized", "{url}: {v}");
                assert_eq!(
                    h.get("www-authenticate").map(|v| v.as_bytes()),
                    Some(&b"Bearer"[..])
                );
            }
        }
    }
    let keyless = Api::new(&c.base).expect("api");
    let (status, code, _) = http_error(keyless.room_count("r").await.expect_err("no key"));
    assert_eq!((status, code.as_str()), (401, "unauthorized"));
}

/// A bad call: method, path, body, and the status, code and a part of the
/// message it must get.
type BadCase<'a> = (
    reqwest::Method,
    String,
    Option<&'a str>,
    u16,
    &'static str,
    &'static str,
);

/// Bad input is a 4xx with a JSON error body, from the gateway and from a
/// node alike.
async fn bad_inputs(c: &Cluster) {
    use reqwest::Method;
    let key = format!("Bearer {TEST_API_KEY}");
    let auth = Some(key.as_str());
    let long = format!(r#"{{"user":"bob","reason":"{}"}}"#, "x".repeat(124));
    for base in [&c.base, &c.node(2).base] {
        let cases: Vec<BadCase> = vec![
            (
                Method::POST,
                "/api/disconnect".into(),
                Some(r#"{"user":"bob","code":1000}"#),
                400,
                "bad_request",
                "4000-4999",
            ),
            (
                Method::POST,
                "/api/disconnect".into(),
                Some(r#"{"user":"bob","code":5000}"#),
                400,
                "bad_request",
                "4000-4999",
            ),
            (
                Method::POST,
                "/api/disconnect".into(),
                Some(r#"{"user":"a b"}"#),
                400,
                "bad_request",
                "`user`",
            ),
            (
                Method::POST,
                "/api/disconnect".into(),
                Some(r#"{"code":4000}"#),
                400,
                "bad_request",
                "user",
            ),
            (
                Method::POST,
                "/api/disconnect".into(),
                Some(long.as_str()),
                400,
                "bad_request",
                "123 bytes",
            ),
            (
                Method::POST,
                "/api/rooms/a%20b/join".into(),
                Some(r#"{"user":"bob"}"#),
                400,
                "bad_request",
                "room",
            ),
            (
                Method::POST,
                "/api/rooms/ok/join".into(),
                Some(r#"{"user":""}"#),
                400,
                "bad_request",
                "`user`",
            ),
            (
                Method::POST,
                "/api/rooms/ok/leave".into(),
                Some("not json"),
                400,
                "bad_request",
                "JSON",
            ),
            (
                Method::GET,
                "/api/rooms/a%20b".into(),
                None,
                400,
                "bad_request",
                "room",
            ),
            (
                Method::GET,
                format!("/api/rooms/{}/count", "x".repeat(129)),
                None,
                400,
                "bad_request",
                "room",
            ),
            (
                Method::GET,
                "/api/rooms/ok/elsewhere".into(),
                None,
                404,
                "not_found",
                "",
            ),
            (
                Method::GET,
                "/api/history".into(),
                None,
                400,
                "bad_request",
                "`user` or `room`",
            ),
            (
                Method::GET,
                "/api/history?user=a&room=b".into(),
                None,
                400,
                "bad_request",
                "not both",
            ),
            (
                Method::GET,
                "/api/history?user=a&limit=0".into(),
                None,
                400,
                "bad_request",
                "`limit`",
            ),
            (
                Method::GET,
                "/api/history?user=a&limit=1001".into(),
                None,
                400,
                "bad_request",
                "1000",
            ),
            (
                Method::GET,
                "/api/history?room=a&since=-1".into(),
                None,
                400,
                "bad_request",
                "`since`",
            ),
        ];
        for (method, path, body, status, code, needle) in cases {
            let url = format!("{base}{path}");
            let (s, _, v) = raw(method.clone(), &url, body, auth).await;
            assert_eq!(s, status, "{method} {url}: {v}");
            assert_eq!(v["error"]["code"], code, "{method} {url}: {v}");
            let msg = v["error"]["message"].as_str().unwrap_or_default();
            assert!(msg.contains(needle), "{method} {url}: {msg}");
        }
        // A body that is not declared JSON.
        let r = common::http()
            .post(format!("{base}/api/disconnect"))
            .header("authorization", &key)
            .header("content-type", "text/plain")
            .body(r#"{"user":"bob"}"#)
            .send()
            .await
            .expect("post");
        assert_eq!(r.status().as_u16(), 415);
    }
    if !c.durable {
        let (status, code, msg) = http_error(
            c.api()
                .user_history("bob", 0, None)
                .await
                .expect_err("not durable"),
        );
        assert_eq!((status, code.as_str()), (409, "not_supported"), "{msg}");
        assert!(msg.contains("--durable"), "{msg}");
    }
    // The per-user bound on server-side rooms: 409, and nothing stored.
    let api = c.api_at(&c.node(0).base);
    let user = format!("capped-{}", rand::random::<u32>());
    for room in ["cap1", "cap2", "cap3"] {
        let r = api.join(room, &user).await.expect("join");
        assert!(r.changed && r.ok, "{r:?}");
    }
    let (status, code, msg) =
        http_error(api.join("cap4", &user).await.expect_err("over the bound"));
    assert_eq!((status, code.as_str()), (409, "limit_exceeded"), "{msg}");
    assert!(msg.contains('3'), "{msg}");
    let again = c
        .api()
        .join("cap1", &user)
        .await
        .expect("a room held already");
    assert!(!again.changed, "{again:?}");
    assert!(c.api().leave("cap1", &user).await.expect("leave").changed);
    assert!(!c.api().leave("cap1", &user).await.expect("leave").changed);
    assert!(
        c.api()
            .join("cap4", &user)
            .await
            .expect("room for one more")
            .changed
    );
    for room in ["cap2", "cap3", "cap4"] {
        c.api().leave(room, &user).await.expect("leave");
    }
}

/// Members of a room with sessions on all three nodes, the same from the
/// gateway and from every node.
async fn room_members_across_nodes(c: &Cluster) {
    let room = format!("members-{}", rand::random::<u32>());
    let m1 = c.user_on("m1", 0).await;
    let m2 = c.user_on("m2", 1).await;
    let m3 = c.user_on("m3", 2).await;
    let mut sessions = vec![
        c.session(&m1, 0).await,
        c.session(&m2, 1).await,
        c.session(&m3, 2).await,
    ];
    // A second session of m2: on the same node in hash routing, on another
    // one in broadcast routing (the same user on two nodes).
    let second = if c.hash { 1 } else { 2 };
    sessions.push(c.session(&m2, second).await);
    for (i, s) in sessions.iter_mut().enumerate() {
        request(s, json!({"type":"join","room":room,"id":format!("j{i}")})).await;
    }
    let mut want = vec![(m1.clone(), 1), (m2.clone(), 2), (m3.clone(), 1)];
    want.sort();
    let bases: Vec<String> = std::iter::once(c.base.clone())
        .chain(c.nodes.iter().map(|n| n.base.clone()))
        .collect();
    for base in &bases {
        let api = c.api_at(base);
        let m = api.room(&room).await.expect("members");
        let got: Vec<(String, u64)> = m
            .members
            .iter()
            .map(|m| (m.user.clone(), m.sessions))
            .collect();
        assert_eq!(got, want, "members via {base}");
        assert_eq!(
            (m.users, m.sessions, m.truncated),
            (3, 4, false),
            "via {base}"
        );
        assert!(m.unreachable.is_empty(), "{m:?}");
        let n = api.room_count(&room).await.expect("count");
        assert_eq!((n.users, n.sessions), (3, 4), "count via {base}");
    }
    let empty = c.api().room("nobody-here").await.expect("empty room");
    assert_eq!(
        (empty.users, empty.sessions, empty.members.len()),
        (0, 0, 0)
    );
    // Leaving shows at once.
    request(
        &mut sessions[3],
        json!({"type":"leave","room":room,"id":"l"}),
    )
    .await;
    let n = c.api().room_count(&room).await.expect("count");
    assert_eq!((n.users, n.sessions), (3, 3));
}

/// `POST /api/disconnect` on one node closes the user's sessions on others.
async fn disconnect_across_nodes(c: &Cluster) {
    let user = c.user_on("dis", 0).await;
    let mut a = c.session(&user, 0).await;
    // Hash: both on the owner; broadcast: the second on another node.
    let mut b = c.session(&user, if c.hash { 0 } else { 1 }).await;
    let other = c.user_on("bystander", 0).await;
    let mut bystander = c.session(&other, 0).await;
    let p = c.api().presence(&user).await.expect("presence");
    assert_eq!(p.sessions.len(), 2, "{p:?}");
    // Asked on a node that holds none of them.
    let d = c
        .api_at(&c.node(2).base)
        .disconnect(&user)
        .await
        .expect("disconnect");
    assert_eq!(
        (d.ok, d.user.as_str(), d.closed),
        (true, user.as_str(), 2),
        "{d:?}"
    );
    assert!(d.unreachable.is_empty());
    for s in [&mut a, &mut b] {
        assert_eq!(
            s.until_end().await.1,
            Ended::Close(4000, "disconnected".into())
        );
    }
    bystander.roundtrip("still here").await;
    assert!(
        c.api()
            .presence(&user)
            .await
            .expect("presence")
            .sessions
            .is_empty()
    );
    assert!(
        c.api()
            .broadcast(json!("to all"))
            .await
            .expect("broadcast")
            .ok
    );
    let m = next_of(&mut bystander, "message").await;
    assert_eq!(m, json!({"type":"message","from":null,"data":"to all"}));
    // Its own code and reason, through the gateway.
    let mut again = c.session(&user, 0).await;
    let d = c
        .api()
        .disconnect_with(&user, Some(4321), Some("account suspended"))
        .await
        .expect("disconnect");
    assert_eq!(d.closed, 1);
    assert_eq!(
        again.until_end().await.1,
        Ended::Close(4321, "account suspended".into())
    );
    assert_eq!(c.api().disconnect(&user).await.expect("nobody").closed, 0);
    // The Rust client takes an application close as final.
    let sdk_user = c.user_on("sdk", 1).await;
    let cfg = wsring_client::ClientConfig::new(&c.ws, &sdk_user).with_token(token(&sdk_user));
    let (client, mut events) = wsring_client::connect_with(cfg)
        .await
        .expect("sdk connects");
    assert!(matches!(events.next().await, Some(Event::Connected { .. })));
    assert_eq!(
        c.api()
            .disconnect(&sdk_user)
            .await
            .expect("disconnect")
            .closed,
        1
    );
    let ev = tokio::time::timeout(WAIT, events.next())
        .await
        .expect("an event");
    assert_eq!(
        ev,
        Some(Event::Disconnected {
            code: Some(4000),
            reason: "disconnected".into()
        })
    );
    let end = tokio::time::timeout(WAIT, events.next())
        .await
        .expect("the end");
    assert_eq!(end, None, "no reconnect after an application close");
    assert!(client.join("x").await.is_err());
}

/// A server-side room: joined by live sessions now, joined again on every
/// connect, allowed outside the token's claim, gone after the leave.
async fn server_rooms_survive_reconnects(c: &Cluster) {
    let user = c.user_on("srv", 1).await;
    let room = format!("ops-{}", rand::random::<u32>());
    let claims = json!({"rooms":["chat.*"]});
    let mut s = c.session_with(&user, 1, claims.clone()).await;
    // Asked on another node than the session's.
    let r = c
        .api_at(&c.node(2).base)
        .join(&room, &user)
        .await
        .expect("join");
    assert_eq!((r.changed, r.sessions), (true, 1), "{r:?}");
    // The answer came once the session was in the room: a publish right
    // after it reaches the session.
    c.api()
        .publish(&room, json!("one"), None)
        .await
        .expect("publish");
    assert_eq!(
        next_of(&mut s, "joined").await,
        json!({"type":"joined","room":room})
    );
    if c.durable {
        let resumed = next_of(&mut s, "resumed").await;
        assert_eq!(resumed["stream"], format!("room:{room}"));
    }
    let m = next_of(&mut s, "message").await;
    assert_eq!(
        (m["room"].as_str(), &m["data"]),
        (Some(room.as_str()), &json!("one"))
    );
    // The token does not list the room, and the client may still re-join
    // it itself; other rooms outside the claim stay forbidden.
    request(&mut s, json!({"type":"join","room":room,"id":"self"})).await;
    s.send(json!({"type":"join","room":"secret","id":"no"}))
        .await;
    let f = next_of(&mut s, "error").await;
    assert_eq!(
        (f["code"].as_str(), &f["id"]),
        (Some("forbidden"), &json!("no"))
    );
    // A new connect joins it again.
    drop(s);
    let mut s = c.session_with(&user, 1, claims.clone()).await;
    assert_eq!(
        next_of(&mut s, "joined").await,
        json!({"type":"joined","room":room})
    );
    c.api()
        .publish(&room, json!("two"), None)
        .await
        .expect("publish");
    assert_eq!(next_of(&mut s, "message").await["data"], "two");
    let again = c.api().join(&room, &user).await.expect("join again");
    assert_eq!((again.changed, again.sessions), (false, 1));
    // Leave: the live session is told, and later connects do not join.
    let r = c
        .api_at(&c.node(0).base)
        .leave(&room, &user)
        .await
        .expect("leave");
    assert_eq!((r.changed, r.sessions), (true, 1), "{r:?}");
    assert_eq!(
        next_of(&mut s, "left").await,
        json!({"type":"left","room":room})
    );
    c.api()
        .publish(&room, json!("gone"), None)
        .await
        .expect("publish");
    c.api()
        .send(&user, json!("marker"), None)
        .await
        .expect("send");
    let m = next_of(&mut s, "message").await;
    assert_eq!(m["data"], "marker", "no room message after the leave: {m}");
    let frames = frames_until_pong(&mut s, "after-leave").await;
    assert!(
        frames.iter().all(|f| f["data"] != "gone"),
        "a room message after the leave: {frames:?}"
    );
    drop(s);
    let mut s = c.session_with(&user, 1, claims).await;
    let frames = frames_until_pong(&mut s, "p").await;
    assert!(
        frames.iter().all(|f| f["type"] != "joined"),
        "joined after the leave: {frames:?}"
    );
}

/// User-level presence events, cluster-wide.
async fn presence_events(c: &Cluster) {
    let room = format!("pres-{}", rand::random::<u32>());
    let w = c.user_on("watch", 0).await;
    let mut watcher = c.session(&w, 0).await;
    request(
        &mut watcher,
        json!({"type":"join","room":room,"id":"w","presence":true}),
    )
    .await;
    let event =
        |user: &str, ev: &str| json!({"type":"presence","room":room,"user":user,"event":ev});
    // The Rust client, watching the same room.
    let sdk_user = c.user_on("sdkwatch", 2).await;
    let cfg = wsring_client::ClientConfig::new(&c.ws, &sdk_user).with_token(token(&sdk_user));
    let (sdk, mut sdk_events) = wsring_client::connect_with(cfg)
        .await
        .expect("sdk connects");
    sdk.join_with_presence(&room)
        .await
        .expect("join with presence");
    assert_eq!(
        next_of(&mut watcher, "presence").await,
        event(&sdk_user, "join")
    );
    let p1 = c.user_on("p1", 1).await;
    let mut p1a = c.session(&p1, 1).await;
    request(&mut p1a, json!({"type":"join","room":room,"id":"a"})).await;
    assert_eq!(next_of(&mut watcher, "presence").await, event(&p1, "join"));
    loop {
        let ev = tokio::time::timeout(WAIT, sdk_events.next())
            .await
            .expect("an event")
            .expect("open");
        if let Event::Presence {
            room: r,
            user,
            event,
        } = ev
        {
            assert_eq!(
                (r.as_str(), user.as_str(), event),
                (
                    room.as_str(),
                    p1.as_str(),
                    wsring_client::PresenceEvent::Join
                )
            );
            break;
        }
    }
    sdk.close();
    assert_eq!(
        next_of(&mut watcher, "presence").await,
        event(&sdk_user, "leave")
    );
    // A second session of p1 (on another node in broadcast routing) is no
    // news; p2 joining is the next event.
    let mut p1b = c.session(&p1, if c.hash { 1 } else { 2 }).await;
    request(&mut p1b, json!({"type":"join","room":room,"id":"b"})).await;
    let p2 = c.user_on("p2", 2).await;
    let mut p2s = c.session(&p2, 2).await;
    request(&mut p2s, json!({"type":"join","room":room,"id":"c"})).await;
    assert_eq!(next_of(&mut watcher, "presence").await, event(&p2, "join"));
    // p1 leaves with one session, then closes the other: one leave.
    request(&mut p1a, json!({"type":"leave","room":room,"id":"d"})).await;
    drop(p1b);
    assert_eq!(next_of(&mut watcher, "presence").await, event(&p1, "leave"));
    // Server-side joins and leaves count too.
    let p3 = c.user_on("p3", 1).await;
    let _p3s = c.session(&p3, 1).await;
    c.api().join(&room, &p3).await.expect("join");
    assert_eq!(next_of(&mut watcher, "presence").await, event(&p3, "join"));
    c.api().leave(&room, &p2).await.expect("leave");
    assert_eq!(next_of(&mut watcher, "presence").await, event(&p2, "leave"));
    c.api().leave(&room, &p3).await.expect("leave");
    assert_eq!(next_of(&mut watcher, "presence").await, event(&p3, "leave"));
    // Without the flag, a member gets none of it.
    let quiet = c.user_on("quiet", 2).await;
    let mut q = c.session(&quiet, 2).await;
    request(&mut q, json!({"type":"join","room":room,"id":"q"})).await;
    assert_eq!(
        next_of(&mut watcher, "presence").await,
        event(&quiet, "join")
    );
    request(&mut p1a, json!({"type":"join","room":room,"id":"e"})).await;
    assert_eq!(next_of(&mut watcher, "presence").await, event(&p1, "join"));
    let frames = frames_until_pong(&mut q, "q").await;
    assert!(
        frames.iter().all(|f| f["type"] != "presence"),
        "a member without presence got events: {frames:?}"
    );
}

/// Durable history: a user's and a room's stored messages, paged.
async fn history(c: &Cluster) {
    if !c.durable {
        return;
    }
    let user = format!("hist-{}", rand::random::<u32>());
    let room = format!("hroom-{}", rand::random::<u32>());
    let api = c.api();
    for i in 1..=5u64 {
        let a = api.send(&user, json!(i), None).await.expect("send");
        assert_eq!(a.seq, Some(i));
    }
    for i in 1..=3 {
        api.publish(&room, json!({"n": i}), None)
            .await
            .expect("publish");
    }
    for base in [&c.base, &c.node(1).base] {
        let h = c
            .api_at(base)
            .user_history(&user, 2, Some(2))
            .await
            .expect("history");
        assert_eq!(
            (h.user.as_deref(), h.first_seq, h.last_seq),
            (Some(user.as_str()), 1, 5)
        );
        let seqs: Vec<u64> = h.entries.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, vec![3, 4], "via {base}");
        let m: Value = serde_json::from_str(h.entries[0].message.get()).expect("frame");
        assert_eq!(
            m,
            json!({"type":"message","from":null,"to":user,"data":3,"seq":3,"epoch":h.epoch})
        );
    }
    let h = api
        .room_history(&room, 0, None)
        .await
        .expect("room history");
    assert_eq!(h.room.as_deref(), Some(room.as_str()));
    let data: Vec<Value> = h
        .entries
        .iter()
        .map(|e| {
            serde_json::from_str::<Value>(e.message.get()).expect("frame")["data"]["n"].clone()
        })
        .collect();
    assert_eq!(data, vec![json!(1), json!(2), json!(3)]);
    let tail = api
        .room_history(&room, 3, Some(10))
        .await
        .expect("caught up");
    assert!(tail.entries.is_empty() && tail.last_seq == 3);
    let fresh = api
        .user_history("never-written", 0, None)
        .await
        .expect("empty");
    assert!(fresh.entries.is_empty() && !fresh.epoch.is_empty());
}

/// A node that crashes takes its users out of the room: their `leave`
/// events come once the ring drops it. Run last: it kills node 3.
async fn presence_after_a_crash(c: &Cluster) {
    let room = format!("crash-{}", rand::random::<u32>());
    let w = c.user_on("cwatch", 0).await;
    let mut watcher = c.session(&w, 0).await;
    request(
        &mut watcher,
        json!({"type":"join","room":room,"id":"w","presence":true}),
    )
    .await;
    let victim = c.user_on("victim", 2).await;
    let mut v = c.session(&victim, 2).await;
    request(&mut v, json!({"type":"join","room":room,"id":"v"})).await;
    let event = |ev: &str| json!({"type":"presence","room":room,"user":victim,"event":ev});
    assert_eq!(next_of(&mut watcher, "presence").await, event("join"));
    c.crash(2).await;
    assert_eq!(v.until_end().await.1, Ended::Abrupt);
    assert_eq!(next_of(&mut watcher, "presence").await, event("leave"));
    wait_until("the crashed node's members are gone", || async {
        c.api()
            .room_count(&room)
            .await
            .is_ok_and(|n| (n.users, n.sessions) == (1, 1))
    })
    .await;
}

async fn scenario(c: Cluster) {
    api_key_required(&c).await;
    bad_inputs(&c).await;
    room_members_across_nodes(&c).await;
    disconnect_across_nodes(&c).await;
    server_rooms_survive_reconnects(&c).await;
    presence_events(&c).await;
    history(&c).await;
    for p in &c._procs {
        let warnings = p.warnings();
        assert!(warnings.is_empty(), "a healthy run logged: {warnings:?}");
    }
    presence_after_a_crash(&c).await;
    c.done().await;
}

/// Runs a scenario with a bound, so a hang fails instead of stalling CI.
async fn bounded(f: impl std::future::Future<Output = ()>) {
    tokio::time::timeout(Duration::from_secs(240), Box::pin(f))
        .await
        .expect("scenario finished in time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_api_memory_hash() {
    bounded(async { scenario(Cluster::memory("hash", false).await).await }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_api_memory_broadcast_durable() {
    bounded(async { scenario(Cluster::memory("broadcast", true).await).await }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_api_redis_hash_durable() {
    let Some(b) = common::procs::redis().await else {
        return;
    };
    bounded(async { scenario(Cluster::on(b, "hash", true).await).await }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_api_nats_broadcast_durable() {
    let Some(b) = common::procs::nats().await else {
        return;
    };
    bounded(async { scenario(Cluster::on(b, "broadcast", true).await).await }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_api_rabbitmq_hash() {
    let Some(b) = common::procs::amqp().await else {
        return;
    };
    bounded(async { scenario(Cluster::on(b, "hash", false).await).await }).await;
}
