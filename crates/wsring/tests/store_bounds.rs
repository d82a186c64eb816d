//! The durable store's bounds, attacked end to end against real `wsring
//! node` and `wsring gateway` processes on Redis: floods of unique message
//! ids, rooms joined and left by the hundred, and one sender trying to
//! fill the store for everyone. What Redis actually holds for the test's
//! namespace is measured (`MEMORY USAGE` of every key the stream store
//! wrote) and must stay within the configured limits.

mod common;

use common::procs::{self, Backend, Proc};
use common::{Client, TEST_API_KEY, TEST_JWT_SECRET, token_with};
use serde_json::{Value, json};

/// A durable node and gateway on `b` in namespace `ns`, with tokens and an
/// API key, and `extra` flags for the node. Returns them with the
/// gateway's WebSocket URL and HTTP base.
async fn durable_cluster(b: &Backend, ns: &str, extra: &[&str]) -> (Proc, Proc, String, String) {
    let auth = [
        "--durable",
        "--jwt-secret",
        TEST_JWT_SECRET,
        "--api-key",
        TEST_API_KEY,
    ];
    let mut node_args = auth.to_vec();
    node_args.extend_from_slice(extra);
    let node = b.node(ns, "n1", &node_args).await;
    let (gw, base) = b.gateway(ns, &auth).await;
    let ws = format!("{}/ws", base.replacen("http://", "ws://", 1));
    common::wait_until("the gateway sees the node", || async {
        let (_, v) = common::Api::new(base.clone()).get("/api/nodes").await;
        v["nodes"].as_array().is_some_and(|n| !n.is_empty())
    })
    .await;
    (node, gw, ws, base)
}

async fn connect(ws: &str, user: &str) -> Client {
    let t = token_with(TEST_JWT_SECRET, user, json!({}));
    Client::try_connect(&format!("{ws}?token={t}"))
        .await
        .unwrap_or_else(|r| panic!("{user} refused: {r:?}"))
}

/// Sends every frame, then reads one reply per frame (an ack or an error;
/// a join's `resumed` frame is not a reply), counting error codes.
async fn send_all(c: &mut Client, frames: Vec<Value>) -> (usize, Vec<String>) {
    let n = frames.len();
    for f in frames {
        c.send(f).await;
    }
    let (mut acks, mut errors) = (0, Vec::new());
    while acks + errors.len() < n {
        let r = c.next().await;
        match r["type"].as_str() {
            Some("ack") => acks += 1,
            Some("error") => errors.push(r["code"].as_str().unwrap_or("?").to_owned()),
            Some("resumed") => {}
            _ => panic!("unexpected frame {r}"),
        }
    }
    (acks, errors)
}

/// Every key the stream store wrote for namespace `ns` (each stream's keys,
/// tagged `{ns:…}`, and the usage index `{ns}:streams:*`), with the bytes
/// Redis says each takes.
async fn store_keys(ns: &str) -> Vec<(String, u64)> {
    let client = redis::Client::open("redis://127.0.0.1:6379/").expect("redis url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis connection");
    let mut keys: Vec<String> = Vec::new();
    let mut cursor: u64 = 0;
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{{{ns}*"))
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut conn)
            .await
            .expect("SCAN");
        keys.extend(batch);
        if next == 0 {
            break;
        }
        cursor = next;
    }
    keys.sort();
    keys.dedup();
    let stream_tag = format!("{{{ns}:");
    let usage = format!("{{{ns}}}:streams:");
    let mut out = Vec::new();
    for k in keys {
        if !(k.starts_with(&stream_tag) || k.starts_with(&usage)) {
            continue; // the registry's keys: not the stream store's
        }
        let bytes: Option<u64> = redis::cmd("MEMORY")
            .arg("USAGE")
            .arg(&k)
            .arg("SAMPLES")
            .arg(0)
            .query_async(&mut conn)
            .await
            .expect("MEMORY USAGE");
        out.push((k, bytes.unwrap_or(0)));
    }
    out
}

/// Tight enough that the churned rooms fill it: joins are refused by bytes
/// as well as by streams.
const MAX_BYTES: u64 = 400_000;
const MAX_STREAMS: u64 = 300;

/// Ten connections publish 1,000 messages each with unique ids to one room,
/// and ten more join and leave 100 rooms each: the store keeps one bounded
/// stream with its ids, refuses rooms past `--history-max-streams`, and
/// what Redis holds for the namespace stays under `--history-max-bytes`
/// and `3 × --history-max-streams` keys (meta, entries and dedup index per
/// stream, plus the six usage keys).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unique_ids_and_churned_rooms_stay_within_the_store_limits() {
    let Some(b) = procs::redis().await else {
        return;
    };
    let ns = wsring_cluster_testkit::conformance::unique_ns("bounds");
    let (max_bytes, max_streams) = (MAX_BYTES.to_string(), MAX_STREAMS.to_string());
    let (_node, _gw, ws, _base) = durable_cluster(
        &b,
        &ns,
        &[
            "--history-max-bytes",
            &max_bytes,
            "--history-max-streams",
            &max_streams,
            "--history-max-user-percent",
            "0",
        ],
    )
    .await;

    let pad = "x".repeat(64);
    let floods = (0..10).map(|u| {
        let (ws, pad) = (ws.clone(), pad.clone());
        tokio::spawn(async move {
            let mut c = connect(&ws, &format!("flooder{u}")).await;
            let frames = (0..1000)
                .map(|i| {
                    json!({"type":"publish","room":"flood","data":{"i":i,"pad":pad},
                           "id":format!("unique-{u}-{i}")})
                })
                .collect();
            send_all(&mut c, frames).await
        })
    });
    let churns = (0..10).map(|u| {
        let ws = ws.clone();
        tokio::spawn(async move {
            let mut c = connect(&ws, &format!("churner{u}")).await;
            let mut frames = Vec::new();
            for r in 0..100 {
                let room = format!("churn-{u}-{r}");
                frames.push(json!({"type":"join","room":room,"id":format!("j{r}")}));
                frames.push(json!({"type":"leave","room":room,"id":format!("l{r}")}));
            }
            send_all(&mut c, frames).await
        })
    });
    let (mut published, mut refused_publish) = (0, Vec::new());
    for f in floods {
        let (acks, errors) = f.await.expect("flood task");
        published += acks;
        refused_publish.extend(errors);
    }
    let mut refused_joins = Vec::new();
    for c in churns {
        let (_, errors) = c.await.expect("churn task");
        refused_joins.extend(errors);
    }
    assert!(
        refused_publish.iter().all(|c| c == "storage_full"),
        "{refused_publish:?}"
    );
    assert!(published > 0, "nothing was published");
    // Leaving a room never fails; joins past the stream limit are refused.
    assert!(
        !refused_joins.is_empty() && refused_joins.iter().all(|c| c == "storage_full"),
        "{} refusals: {:?}",
        refused_joins.len(),
        refused_joins.iter().take(5).collect::<Vec<_>>()
    );

    let keys = store_keys(&ns).await;
    let total: u64 = keys.iter().map(|(_, n)| n).sum();
    let mut biggest = keys.clone();
    biggest.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
    eprintln!(
        "store: {} keys, {total} bytes in Redis (limits: {MAX_STREAMS} streams, {MAX_BYTES} bytes); \
         {published} published, {} publishes and {} joins refused; largest: {:?}",
        keys.len(),
        refused_publish.len(),
        refused_joins.len(),
        &biggest[..biggest.len().min(4)]
    );
    assert!(
        keys.len() as u64 <= 3 * MAX_STREAMS + 6,
        "{} keys for at most {MAX_STREAMS} streams",
        keys.len()
    );
    assert!(
        total <= MAX_BYTES,
        "Redis holds {total} bytes for a store limited to {MAX_BYTES}"
    );
    b.purge(&ns).await;
}

/// Publishes `n` messages of `size` bytes to `room` as one client; returns
/// how many were stored before the first refusal, and its code.
async fn publish_until_refused(c: &mut Client, room: &str, size: usize) -> (usize, String) {
    let data = "q".repeat(size);
    for i in 0..1000 {
        c.send(json!({"type":"publish","room":room,"data":data,"id":format!("{room}-{i}")}))
            .await;
        let r = c.next().await;
        match r["type"].as_str() {
            Some("ack") => continue,
            Some("error") => return (i, r["code"].as_str().unwrap_or("?").to_owned()),
            _ => panic!("unexpected frame {r}"),
        }
    }
    panic!("1,000 publishes of {size} bytes were all stored");
}

/// `POST /api/publish` with the API key.
async fn api_publish(base: &str, room: &str, data: &str) -> (u16, Value) {
    let r = common::http()
        .post(format!("{base}/api/publish"))
        .bearer_auth(TEST_API_KEY)
        .json(&json!({"room": room, "data": data}))
        .send()
        .await
        .expect("POST /api/publish");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// One user publishing as fast as it may fills its own share of the store
/// (10% of `--history-max-bytes` by default) and is then refused with
/// `quota_exceeded` (of a 1 MiB store), its connection open; another user, the API key and
/// a brand-new user still store. The API key has a share of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_sender_fills_only_its_own_share_of_the_store() {
    let Some(b) = procs::redis().await else {
        return;
    };
    let ns = wsring_cluster_testkit::conformance::unique_ns("quota");
    let max_bytes = (1024 * 1024).to_string();
    let (_node, _gw, ws, base) =
        durable_cluster(&b, &ns, &["--history-max-bytes", &max_bytes]).await;
    let mut mallory = connect(&ws, "mallory").await;
    let (stored, code) = publish_until_refused(&mut mallory, "mallory-room", 4000).await;
    assert_eq!(code, "quota_exceeded");
    // 10% of 1 MiB is about 26 messages of 4 kB.
    assert!(
        (15..=30).contains(&stored),
        "stored {stored} before refusal"
    );
    mallory.roundtrip("still open").await;
    let (again, code) = publish_until_refused(&mut mallory, "another-room", 4000).await;
    assert_eq!((again, code.as_str()), (0, "quota_exceeded"));

    let mut alice = connect(&ws, "alice").await;
    alice
        .send(json!({"type":"publish","room":"mallory-room","data":"hi","id":"a1"}))
        .await;
    assert_eq!(alice.next().await, json!({"type":"ack","id":"a1"}));
    let (s, v) = api_publish(&base, "mallory-room", "from the server").await;
    assert_eq!(s, 202, "{v}");

    // The API key fills its own share and is refused alone.
    let big = "k".repeat(4000);
    let mut n = 0;
    let refusal = loop {
        let (s, v) = api_publish(&base, &format!("api-{n}"), &big).await;
        if s != 202 {
            break (s, v);
        }
        n += 1;
        assert!(n < 100, "the API key's share never refused");
    };
    assert_eq!(refusal.0, 507, "{}", refusal.1);
    assert_eq!(
        refusal.1["error"]["code"], "quota_exceeded",
        "{}",
        refusal.1
    );
    let mut carol = connect(&ws, "carol").await;
    let (stored, code) = publish_until_refused(&mut carol, "carol-room", 4000).await;
    assert!(
        stored >= 15 && code == "quota_exceeded",
        "a new user gets a whole share of its own: {stored}, {code}"
    );
    b.purge(&ns).await;
}
