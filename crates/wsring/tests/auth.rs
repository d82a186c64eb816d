//! Authentication and authorization end to end, against the real binary:
//! connect tokens at the gateway and again at a node reached directly, the
//! `rooms` and `send` claims, the API key on write and control calls, JSON
//! content types, origins and CORS, and what `/api/info` says about it all.

mod common;

use common::procs::dev_process;
use common::{Client, TEST_API_KEY, TEST_JWT_SECRET, token, token_with};
use reqwest::header;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const ORIGIN: &str = "https://app.example";

/// A secured `wsring dev`: tokens, an API key and one allowed origin.
async fn secured() -> (common::procs::Proc, String, String) {
    dev_process(&[
        "--nodes",
        "2",
        "--jwt-secret",
        TEST_JWT_SECRET,
        "--api-key",
        TEST_API_KEY,
        "--allowed-origins",
        ORIGIN,
    ])
    .await
}

/// A GET's JSON body.
async fn get_json(url: &str) -> Value {
    common::http()
        .get(url)
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("json")
}

/// The `/ws` URL of every node, straight from the gateway's membership view.
async fn node_urls(base: &str) -> Vec<String> {
    let v = get_json(&format!("{base}/api/nodes")).await;
    v["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .map(|n| n["url"].as_str().expect("url").to_owned())
        .collect()
}

/// Asserts a connect is refused with `status` and `code` before the upgrade.
async fn refused(url: &str, status: u16, code: &str) {
    match Client::try_connect(url).await {
        Ok(c) => panic!("{url}: accepted as {}", c.welcome),
        Err(r) => {
            assert_eq!(r.status, status, "{url}: {:?}", r.body);
            assert_eq!(r.body["error"]["code"], code, "{url}: {:?}", r.body);
        }
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

#[tokio::test]
async fn connect_tokens_are_required_at_the_gateway_and_at_every_node() {
    let (_dev, ws, base) = secured().await;
    let mut endpoints = vec![ws];
    endpoints.extend(node_urls(&base).await);
    assert_eq!(endpoints.len(), 3);
    let expired = token_with(
        TEST_JWT_SECRET,
        "alice",
        json!({"exp": now() - 3600, "iat": now() - 7200}),
    );
    let foreign = token_with("another-secret", "alice", json!({}));
    // `alg: none`: a header and claims with no signature.
    let b64 = |v: Value| {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let unsigned = format!(
        "{}.{}.",
        b64(json!({"alg":"none","typ":"JWT"})),
        b64(json!({"sub":"alice","exp": now() + 60}))
    );
    // A healthy client on the same cluster throughout.
    let mut healthy = Client::try_connect(&format!("{}?token={}", endpoints[0], token("healthy")))
        .await
        .expect("healthy client");
    for url in &endpoints {
        for bad in [
            format!("{url}?user=alice"),
            format!("{url}?token="),
            format!("{url}?token=not-a-jwt"),
            format!("{url}?token={expired}"),
            format!("{url}?token={foreign}"),
            format!("{url}?token={unsigned}"),
        ] {
            refused(&bad, 401, "unauthorized").await;
        }
    }
    // A token whose `sub` is not a valid user id (too long) is refused too.
    let oversized = token(&"u".repeat(200));
    refused(
        &format!("{}?token={oversized}", endpoints[0]),
        401,
        "unauthorized",
    )
    .await;
    healthy.roundtrip("still-served").await;
    // A valid token names the user, whatever `user` says; through the
    // gateway it is routed by `sub`.
    let t = token("alice");
    let c = Client::try_connect(&format!("{}?token={t}&user=mallory", endpoints[0]))
        .await
        .expect("valid token accepted");
    assert_eq!(c.welcome["user"], "alice", "{}", c.welcome);
    // The token may come in an Authorization header instead.
    let mut req = endpoints[0]
        .as_str()
        .into_client_request()
        .expect("request");
    req.headers_mut().insert(
        header::AUTHORIZATION,
        format!("Bearer {}", token("bob")).parse().expect("header"),
    );
    let (mut bob, _) = tokio_tungstenite::connect_async(req)
        .await
        .expect("bearer header accepted");
    bob.close(None).await.expect("close");
}

#[tokio::test]
async fn rooms_and_send_claims_limit_what_a_session_may_do() {
    let (_dev, ws, _base) = secured().await;
    let limited = token_with(
        TEST_JWT_SECRET,
        "carol",
        json!({"rooms": ["chat.*", "lobby"], "send": false}),
    );
    let mut c = Client::try_connect(&format!("{ws}?token={limited}"))
        .await
        .expect("connects");
    for (room, id) in [("ops", "j1"), ("chat", "j2")] {
        c.send(json!({"type":"join","room":room,"id":id})).await;
        let f = c.next().await;
        assert_eq!(
            (f["type"].as_str(), f["code"].as_str()),
            (Some("error"), Some("forbidden")),
            "{f}"
        );
        assert_eq!(f["id"], id);
    }
    c.send(json!({"type":"publish","room":"ops","data":1,"id":"p1"}))
        .await;
    assert_eq!(c.next().await["code"], "forbidden");
    c.send(json!({"type":"send","to":"dave","data":1,"id":"s1"}))
        .await;
    assert_eq!(c.next().await["code"], "forbidden");
    // The connection stays open, and allowed rooms work.
    for (room, id) in [("chat.1", "j3"), ("lobby", "j4")] {
        c.send(json!({"type":"join","room":room,"id":id})).await;
        assert_eq!(c.next().await, json!({"type":"ack","id":id}));
    }
    c.send(json!({"type":"publish","room":"chat.1","data":"hi","id":"p2"}))
        .await;
    let mut got = [c.next().await, c.next().await];
    got.sort_by_key(|v| v["type"].as_str().map(str::to_owned));
    assert_eq!(got[0], json!({"type":"ack","id":"p2"}));
    assert_eq!(got[1]["data"], "hi");
    c.roundtrip("alive").await;
}

#[tokio::test]
async fn the_api_needs_its_key_and_json_and_answers_cors_only_for_allowed_origins() {
    let (_dev, ws, base) = secured().await;
    let http = common::http();
    let send = json!({"to":"erin","data":{"n":1}}).to_string();
    let post = |path: &str, key: Option<&str>, ct: &str| {
        let mut r = http
            .post(format!("{base}{path}"))
            .header(header::CONTENT_TYPE, ct)
            .body(send.clone());
        if let Some(k) = key {
            r = r.bearer_auth(k);
        }
        r.send()
    };
    let json_ct = "application/json";
    for path in ["/api/send", "/api/publish", "/api/broadcast"] {
        let r = post(path, None, json_ct).await.expect("POST");
        assert_eq!(r.status(), 401, "{path}");
        assert_eq!(r.headers()[header::WWW_AUTHENTICATE], "Bearer");
        let v: Value = r.json().await.expect("json");
        assert_eq!(v["error"]["code"], "unauthorized", "{path}");
        let r = post(path, Some("wrong-key"), json_ct).await.expect("POST");
        assert_eq!(r.status(), 401, "{path}");
        let r = post(path, Some(TEST_API_KEY), "text/plain")
            .await
            .expect("POST");
        assert_eq!(r.status(), 415, "{path}");
        let v: Value = r.json().await.expect("json");
        assert_eq!(v["error"]["code"], "unsupported_media_type");
    }
    // With the key and JSON, a send is delivered.
    let mut erin = Client::try_connect(&format!("{ws}?token={}", token("erin")))
        .await
        .expect("erin");
    let r = post("/api/send", Some(TEST_API_KEY), json_ct)
        .await
        .expect("POST");
    assert!(r.status().is_success(), "{}", r.status());
    let m = erin.next_non_ack().await;
    assert_eq!(
        (m["type"].as_str(), &m["data"]),
        (Some("message"), &json!({"n":1}))
    );
    // Protected reads and controls.
    for path in ["/api/presence?user=erin", "/api/events"] {
        let r = http.get(format!("{base}{path}")).send().await.expect("GET");
        assert_eq!(r.status(), 401, "{path}");
    }
    let r = http
        .get(format!("{base}/api/presence?user=erin"))
        .bearer_auth(TEST_API_KEY)
        .send()
        .await
        .expect("GET");
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["sessions"].as_array().map(Vec::len), Some(1), "{v}");
    // The event stream takes the key as a header or, for EventSource, `?key=`.
    for (path, key) in [
        ("/api/events", Some(TEST_API_KEY)),
        ("/api/events?key=nope", None),
    ] {
        let mut r = http.get(format!("{base}{path}"));
        if let Some(k) = key {
            r = r.bearer_auth(k);
        }
        let r = r.send().await.expect("GET");
        assert_eq!(r.status(), if key.is_some() { 200 } else { 401 }, "{path}");
    }
    let r = http
        .get(format!("{base}/api/events?key={TEST_API_KEY}"))
        .send()
        .await
        .expect("GET");
    assert_eq!(r.status(), 200);
    drop(r);
    let r = http
        .post(format!("{base}/api/nodes"))
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), 401);
    let r = http
        .delete(format!("{base}/api/nodes/n1?mode=crash"))
        .send()
        .await
        .expect("DELETE");
    assert_eq!(r.status(), 401);
    // The read-only views, health and metrics stay open.
    for path in [
        "/api/nodes",
        "/api/ring",
        "/api/route?user=x",
        "/api/info",
        "/healthz",
        "/metrics",
        "/",
    ] {
        let r = http.get(format!("{base}{path}")).send().await.expect("GET");
        assert_eq!(r.status(), 200, "{path}");
    }
    let info = get_json(&format!("{base}/api/info")).await;
    assert_eq!(
        info["auth"],
        json!({"connect":"jwt","api_key":true,"insecure":false,"origins":true})
    );
    let text = info.to_string();
    assert!(!text.contains(TEST_API_KEY) && !text.contains(TEST_JWT_SECRET));

    // CORS: a preflight from the allowed origin is answered; others get no
    // CORS headers, and a foreign page cannot open /ws.
    let preflight = |origin: &str| {
        http.request(reqwest::Method::OPTIONS, format!("{base}/api/send"))
            .header(header::ORIGIN, origin)
            .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
            .send()
    };
    let r = preflight(ORIGIN).await.expect("OPTIONS");
    assert_eq!(r.status(), 204);
    assert_eq!(r.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN], ORIGIN);
    let r = preflight("https://evil.example").await.expect("OPTIONS");
    assert!(
        r.headers()
            .get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
            .is_none()
    );
    for (origin, ok) in [(ORIGIN, true), ("https://evil.example", false)] {
        let mut req = format!("{ws}?token={}", token("frank"))
            .into_client_request()
            .expect("request");
        req.headers_mut()
            .insert(header::ORIGIN, origin.parse().expect("header"));
        match tokio_tungstenite::connect_async(req).await {
            Ok((mut s, _)) => {
                assert!(ok, "{origin} was let in");
                s.close(None).await.expect("close");
            }
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                assert!(!ok, "{origin} was refused");
                assert_eq!(resp.status(), 403);
            }
            Err(e) => panic!("{origin}: {e}"),
        }
    }
}

#[tokio::test]
async fn dev_stays_open_by_default_and_says_so() {
    let (_dev, ws, base) = dev_process(&["--nodes", "1"]).await;
    let c = Client::try_connect(&format!("{ws}?user=zoe"))
        .await
        .expect("open playground");
    assert_eq!(c.welcome["user"], "zoe");
    let info = get_json(&format!("{base}/api/info")).await;
    assert_eq!(
        info["auth"],
        json!({"connect":"none","api_key":false,"insecure":false,"origins":false})
    );
    // No key configured: the API is open, but still JSON only.
    let r = common::http()
        .post(format!("{base}/api/send"))
        .header(header::CONTENT_TYPE, "text/plain")
        .body(r#"{"to":"zoe","data":1}"#)
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), 415);
}

#[tokio::test]
async fn live_feeds_are_capped() {
    let (_dev, _ws, base) = dev_process(&["--nodes", "1"]).await;
    let http = common::http();
    let mut open = Vec::new();
    for _ in 0..wsring_gateway::events::MAX_FEED_CLIENTS {
        let r = http
            .get(format!("{base}/api/events"))
            .send()
            .await
            .expect("GET");
        assert_eq!(r.status(), 200);
        open.push(r);
    }
    let r = http
        .get(format!("{base}/api/events"))
        .send()
        .await
        .expect("GET");
    assert_eq!(r.status(), 503);
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["error"]["code"], "unavailable");
    // A feed that ends frees its slot.
    drop(open.pop());
    common::wait_until("a freed feed slot", || async {
        let r = http
            .get(format!("{base}/api/events"))
            .send()
            .await
            .expect("GET");
        r.status() == 200
    })
    .await;
}

#[tokio::test]
async fn idempotency_ids_are_scoped_by_api_key_and_a_reuse_with_other_content_is_409() {
    let (_dev, ws, base) = dev_process(&[
        "--nodes",
        "1",
        "--durable",
        "--api-key",
        "key-a",
        "--api-key",
        "key-b",
    ])
    .await;
    let mut bob = Client::try_connect(&format!("{ws}?user=bob"))
        .await
        .expect("bob");
    let http = common::http();
    let send = |key: &'static str, data: &'static str| {
        http.post(format!("{base}/api/send"))
            .bearer_auth(key)
            .json(&json!({"to":"bob","data":data,"id":"invoice-42"}))
            .send()
    };
    // A holder of key A cannot claim the id key B's caller will use.
    let r = send("key-a", "EVIL").await.expect("POST");
    assert_eq!(r.status(), 202);
    let r = send("key-b", "pay 10").await.expect("POST");
    assert_eq!(r.status(), 202);
    let got = [bob.next_non_ack().await, bob.next_non_ack().await];
    assert_eq!(
        got.iter().map(|m| m["data"].clone()).collect::<Vec<_>>(),
        vec![json!("EVIL"), json!("pay 10")]
    );
    // A retry is deduplicated; the same id with other content is a conflict.
    let r = send("key-b", "pay 10").await.expect("POST");
    assert_eq!(r.status(), 202);
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["seq"], 2, "the original position: {v}");
    let r = send("key-b", "pay 9999").await.expect("POST");
    assert_eq!(r.status(), 409);
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["error"]["code"], "conflict");
    bob.roundtrip("after").await;
}

/// A secured `wsring dev` whose tokens' `exp` is enforced with a 1 s leeway;
/// `extra` flags appended.
async fn short_leeway(extra: &[&str]) -> (common::procs::Proc, String, String) {
    let mut args = vec![
        "--nodes",
        "2",
        "--jwt-secret",
        TEST_JWT_SECRET,
        "--jwt-leeway",
        "1s",
        "--api-key",
        TEST_API_KEY,
    ];
    args.extend_from_slice(extra);
    dev_process(&args).await
}

/// A session does not outlive its token: once `exp` plus the leeway has
/// passed, it is closed with 3000 `expired`, although it keeps answering
/// pings.
#[tokio::test]
async fn a_session_is_closed_with_3000_when_its_token_expires() {
    let (_p, ws, _) = short_leeway(&[]).await;
    let exp = now() + 2;
    let t = token_with(TEST_JWT_SECRET, "ephemeral", json!({ "exp": exp }));
    let mut c = Client::try_connect(&format!("{ws}?token={t}"))
        .await
        .expect("admitted");
    c.roundtrip("alive").await;
    let (_, end) = c.until_end().await;
    assert_eq!(end, common::Ended::Close(3000, "expired".into()));
    // Not before the token expired (Unix time has a one-second resolution).
    assert!(now() >= exp, "closed at {} for exp {exp}", now());
}

/// The Rust SDK with a token provider: each session's token lives 2 s; the
/// server closes each one at its expiry, the client fetches a fresh token,
/// reconnects and resumes, and no message sent meanwhile is lost or
/// duplicated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sdk_refreshes_its_token_and_loses_nothing_across_expiries() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let (_p, ws, base) = short_leeway(&["--durable"]).await;
    let fetched = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&fetched);
    let cfg = wsring_client::ClientConfig::new(&ws, "refresher").with_token_provider(move || {
        counter.fetch_add(1, Ordering::SeqCst);
        let t = token_with(TEST_JWT_SECRET, "refresher", json!({ "exp": now() + 2 }));
        async move { Ok::<_, std::convert::Infallible>(t) }
    });
    let (client, mut events) = wsring_client::connect_with(cfg).await.expect("connect");
    // A server-side sender, through the expiries (about 3 of them).
    const N: u64 = 300;
    let sender = tokio::spawn(async move {
        let http = common::http();
        for i in 0..N {
            let r = http
                .post(format!("{base}/api/send"))
                .bearer_auth(TEST_API_KEY)
                .json(&json!({"to": "refresher", "data": i}))
                .send()
                .await
                .expect("send");
            assert_eq!(r.status().as_u16(), 202);
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
    });
    let mut got = Vec::new();
    let mut expiries = 0;
    while (got.len() as u64) < N {
        let e = tokio::time::timeout(std::time::Duration::from_secs(15), events.next())
            .await
            .expect("events keep coming")
            .expect("the client is open");
        match e {
            wsring_client::Event::Message(m) => got.push(m.data.as_u64().expect("number")),
            wsring_client::Event::Disconnected {
                code: Some(3000), ..
            } => expiries += 1,
            wsring_client::Event::Resumed { complete, .. } => assert!(complete, "a gap"),
            _ => {}
        }
    }
    sender.await.expect("sender");
    assert_eq!(
        got,
        (0..N).collect::<Vec<_>>(),
        "every message, once, in order"
    );
    assert!(expiries >= 2, "{expiries} expiries");
    assert!(
        fetched.load(Ordering::SeqCst) > expiries,
        "a fresh token for every connect"
    );
    client.close();
}
