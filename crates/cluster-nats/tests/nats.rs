//! NATS-specific behaviour beyond the shared conformance suite: start-up
//! validation and fail-fast, TTL reconciliation and expiry timing on the
//! real server, cross-topic ordering under load, disconnect handling, and the
//! stream store's concurrency, read windows, epoch resets and per-owner
//! quota (shared by two nodes, given back by age and for duplicates).

mod common;

use bytes::Bytes;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::time::timeout;
use wsring_cluster::{BrokerEvent, ClusterError, Inbox, Retention, StreamName, Topic};
use wsring_cluster_nats::{connect_broker, connect_registry, connect_streams};
use wsring_cluster_testkit::conformance::unique_ns;
use wsring_cluster_testkit::fault::FaultProxy;

macro_rules! server {
    () => {
        match common::server().await {
            Some(s) => s,
            None => return,
        }
    };
}

async fn next_payload(inbox: &mut Inbox) -> Bytes {
    loop {
        match timeout(Duration::from_secs(5), inbox.recv()).await {
            Ok(Some(BrokerEvent::Message { payload, .. })) => return payload,
            Ok(Some(_)) => continue,
            Ok(None) => panic!("inbox closed"),
            Err(_) => panic!("no message within 5s"),
        }
    }
}

async fn kv_max_age(url: &str, bucket: &str) -> Duration {
    let client = async_nats::connect(url).await.expect("connect");
    let js = async_nats::jetstream::new(client);
    let s = js.get_stream(format!("KV_{bucket}")).await.expect("bucket");
    s.cached_info().config.max_age
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_configuration_is_rejected() {
    for url in [
        "http://127.0.0.1:4222",
        "ws://127.0.0.1:4222",
        "nats://",
        ":::",
    ] {
        let err = connect_registry(url, "ns", Duration::from_secs(2))
            .await
            .err()
            .expect("invalid URL");
        assert!(
            matches!(err, ClusterError::InvalidUrl { .. }),
            "{url}: {err}"
        );
    }
    for ns in ["", "a.b", "a b", "a>", &"x".repeat(65)] {
        let err = connect_broker("nats://127.0.0.1:4222", ns, "n1")
            .await
            .err()
            .expect("invalid namespace");
        assert!(
            matches!(err, ClusterError::InvalidNamespace(_)),
            "{ns:?}: {err}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_server_fails_fast() {
    // Nothing listens on a port we just released.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let started = Instant::now();
    let err = connect_streams(
        &format!("nats://127.0.0.1:{port}"),
        "ns",
        Retention::default(),
    )
    .await
    .err()
    .expect("refused");
    assert!(matches!(err, ClusterError::Unavailable(_)), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );

    // A server that accepts but never speaks: bounded by the start-up timeout.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = silent.local_addr().expect("addr");
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            held.push(s);
        }
    });
    let started = Instant::now();
    let err = connect_broker(&format!("nats://{addr}"), "ns", "n1")
        .await
        .err()
        .expect("silent server");
    assert!(matches!(err, ClusterError::Unavailable(_)), "{err}");
    let took = started.elapsed();
    assert!(took < Duration::from_millis(5500), "{took:?}");
    hold.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeat_expiry_is_prompt() {
    let server = server!();
    let ns = unique_ns("nats");
    server.track(&ns);
    let ttl = Duration::from_millis(1000);
    let r = connect_registry(&server.url(), &ns, ttl)
        .await
        .expect("registry");
    let ids = vec!["dead".to_string(), "alive.1:x@y".to_string()];
    assert!(
        r.claim(&ids[0], Bytes::from_static(b"{}"), ttl)
            .await
            .expect("claim")
            .is_some()
    );
    let claimed = Instant::now();
    let alive = r
        .claim(&ids[1], Bytes::from_static(b"{}"), ttl)
        .await
        .expect("claim")
        .expect("claimed");
    let mut gone = None;
    while claimed.elapsed() < ttl * 3 {
        r.refresh(&ids[1], alive, Bytes::from_static(b"{\"n\":1}"), ttl)
            .await
            .expect("refresh");
        let beats = r.heartbeats(&ids).await.expect("beats");
        assert!(beats[1].is_some(), "a refreshed heartbeat must stay alive");
        if beats[0].is_none() {
            gone = Some(claimed.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let gone = gone.expect("unrefreshed heartbeat never expired");
    println!("heartbeat with TTL {ttl:?} expired after {gone:?}");
    assert!(
        gone >= ttl - Duration::from_millis(50),
        "expired early: {gone:?}"
    );
    assert!(
        gone < ttl + Duration::from_millis(500),
        "expired late: {gone:?}"
    );
    // Release is immediate and the id can be claimed again.
    r.release(&ids[1], alive).await.expect("release");
    assert!(r.heartbeats(&ids).await.expect("beats")[1].is_none());
    assert!(
        r.claim(&ids[1], Bytes::from_static(b"{}"), ttl)
            .await
            .expect("reclaim")
            .is_some()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeat_ttl_follows_configuration() {
    let server = server!();
    let ns = unique_ns("nats");
    server.track(&ns);
    let bucket = format!("{ns}_heartbeats");
    let _long = connect_registry(&server.url(), &ns, Duration::from_secs(30))
        .await
        .expect("registry");
    assert_eq!(
        kv_max_age(&server.url(), &bucket).await,
        Duration::from_secs(30)
    );
    // A node started with another TTL fixes the bucket rather than silently
    // living with the old failure detector.
    let short = connect_registry(&server.url(), &ns, Duration::from_millis(700))
        .await
        .expect("registry");
    assert_eq!(
        kv_max_age(&server.url(), &bucket).await,
        Duration::from_millis(700)
    );
    let ttl = Duration::from_millis(700);
    assert!(
        short
            .claim("n", Bytes::from_static(b"{}"), ttl)
            .await
            .expect("claim")
            .is_some()
    );
    // The short TTL is in force: the record expires well before the old 30 s.
    let deadline = Instant::now() + Duration::from_secs(5);
    while short.heartbeats(&["n".into()]).await.expect("beats")[0].is_some() {
        assert!(
            Instant::now() < deadline,
            "heartbeat outlived the 700 ms TTL"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The membership document is unaffected by the change.
    assert!(short.load().await.expect("load").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_keeps_publish_order_across_topics() {
    let server = server!();
    let ns = unique_ns("nats");
    let (a, mut ia) = connect_broker(&server.url(), &ns, "a").await.expect("a");
    let (b, _ib) = connect_broker(&server.url(), &ns, "b").await.expect("b");
    let topics = [
        Topic::Node("a".into()),
        Topic::Cluster,
        Topic::Room("r.1".into()),
        Topic::Room("r:2".into()),
    ];
    for t in &topics {
        a.subscribe(t).await.expect("sub");
        a.subscribe(t).await.expect("idempotent sub");
    }
    let n = 2000u32;
    for i in 0..n {
        let t = &topics[(i as usize * 7 + i as usize / 3) % topics.len()];
        b.publish(t, Bytes::from(i.to_string())).await.expect("pub");
    }
    for i in 0..n {
        assert_eq!(next_payload(&mut ia).await, Bytes::from(i.to_string()));
    }
    a.close().await;
    b.close().await;
    // After close the inbox ends.
    loop {
        match timeout(Duration::from_secs(5), ia.recv())
            .await
            .expect("inbox ends")
        {
            None => break,
            Some(_) => continue,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_backlog_loses_nothing() {
    let server = server!();
    let ns = unique_ns("nats");
    let (a, mut ia) = connect_broker(&server.url(), &ns, "a").await.expect("a");
    let (b, _ib) = connect_broker(&server.url(), &ns, "b").await.expect("b");
    let topics = [Topic::Node("a".into()), Topic::Room("big".into())];
    for t in &topics {
        a.subscribe(t).await.expect("sub");
    }
    // Fill the inbox while nobody reads it, then pile up more than one
    // reader batch behind it, spread over both subscriptions.
    let fill = wsring_cluster::broker::INBOX_CAPACITY as u32;
    let extra = 40_000u32;
    for i in 0..fill {
        b.publish(&topics[0], Bytes::from(format!("0 {i}")))
            .await
            .expect("pub");
    }
    // Wait until the reader has filled the inbox and stalls behind it.
    let start = Instant::now();
    while ia.len() < fill as usize {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "inbox never filled: {} of {fill}",
            ia.len()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for i in 0..extra {
        for (k, t) in topics.iter().enumerate() {
            b.publish(t, Bytes::from(format!("{k} {}", fill * (1 - k as u32) + i)))
                .await
                .expect("pub");
        }
    }
    // Nobody has read the full inbox yet, so whatever the server already
    // delivered is backed up behind it; everything must still arrive.
    // Everything arrives, each topic in order.
    let mut next = [0u32; 2];
    let total = fill + 2 * extra;
    for _ in 0..total {
        let p = next_payload(&mut ia).await;
        let text = std::str::from_utf8(&p).expect("utf8");
        let (k, i) = text.split_once(' ').expect("payload");
        let (k, i): (usize, u32) = (k.parse().expect("k"), i.parse().expect("i"));
        assert_eq!(i, next[k], "topic {k} out of order");
        next[k] += 1;
    }
    assert_eq!(next, [fill + extra, extra]);
    a.close().await;
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_refuses_while_disconnected() {
    let server = server!();
    let ns = unique_ns("nats");
    let proxy = FaultProxy::start(server.addr).await.expect("proxy");
    let (a, mut ia) = connect_broker(&format!("nats://{}", proxy.addr()), &ns, "a")
        .await
        .expect("a");
    let (b, _ib) = connect_broker(&server.url(), &ns, "b").await.expect("b");
    a.subscribe(&Topic::Node("a".into())).await.expect("sub");
    assert!(a.healthy());
    proxy.refuse(true);
    let refused_before = proxy.refused();
    proxy.cut();
    loop {
        match timeout(Duration::from_secs(5), ia.recv())
            .await
            .expect("event")
        {
            Some(BrokerEvent::Disconnected) => break,
            Some(_) => continue,
            None => panic!("inbox closed"),
        }
    }
    assert!(!a.healthy());
    let err = a
        .publish(&Topic::Cluster, Bytes::from_static(b"x"))
        .await
        .expect_err("publish while disconnected");
    assert!(matches!(err, ClusterError::Unavailable(_)), "{err}");
    let err = a
        .subscribe(&Topic::Room("late".into()))
        .await
        .expect_err("subscribe while disconnected");
    assert!(matches!(err, ClusterError::Unavailable(_)), "{err}");
    // Still down after a few reconnect attempts; then the server is back.
    proxy
        .wait_refused(refused_before, 2, Duration::from_secs(30))
        .await;
    assert!(!a.healthy());
    proxy.refuse(false);
    loop {
        match timeout(Duration::from_secs(15), ia.recv())
            .await
            .expect("recovery")
        {
            Some(BrokerEvent::Resubscribed) => break,
            Some(_) => continue,
            None => panic!("inbox closed"),
        }
    }
    assert!(a.healthy());
    b.publish(&Topic::Node("a".into()), Bytes::from_static(b"back"))
        .await
        .expect("pub");
    assert_eq!(next_payload(&mut ia).await.as_ref(), b"back");
    // The failed subscribe left nothing behind: subscribing now works.
    a.subscribe(&Topic::Room("late".into())).await.expect("sub");
    b.publish(&Topic::Room("late".into()), Bytes::from_static(b"room"))
        .await
        .expect("pub");
    assert_eq!(next_payload(&mut ia).await.as_ref(), b"room");
    a.close().await;
    b.close().await;
}

fn retention(max_len: u64, max_age: Duration) -> Retention {
    Retention {
        max_len,
        max_age,
        ..Retention::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_get_dense_seqs() {
    let server = server!();
    let ns = unique_ns("nats");
    server.track(&ns);
    let r = retention(1000, Duration::from_secs(600));
    let stores = [
        connect_streams(&server.url(), &ns, r).await.expect("s1"),
        connect_streams(&server.url(), &ns, r).await.expect("s2"),
    ];
    let stream = StreamName::Room("busy.room".into());
    let head = stores[0].head(&stream).await.expect("head");
    let mut tasks = Vec::new();
    for w in 0..6u32 {
        let store = Arc::clone(&stores[(w % 2) as usize]);
        let stream = stream.clone();
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            for i in 0..20u32 {
                let a = store
                    .append(&stream, Bytes::from(format!("{w}-{i}")), None)
                    .await
                    .expect("append");
                got.push((a.seq, a.epoch, format!("{w}-{i}")));
            }
            got
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("task"));
    }
    let seqs: BTreeSet<u64> = all.iter().map(|(s, _, _)| *s).collect();
    assert_eq!(
        seqs,
        (1..=120).collect::<BTreeSet<u64>>(),
        "dense and unique"
    );
    assert!(all.iter().all(|(_, e, _)| *e == head.epoch));
    let batch = stores[1].read_after(&stream, 0, 1000).await.expect("read");
    assert_eq!((batch.first_seq, batch.last_seq), (1, 120));
    for (seq, _, payload) in &all {
        let entry = &batch.entries[(*seq - 1) as usize];
        assert_eq!((entry.0, entry.1.as_ref()), (*seq, payload.as_bytes()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_windows_are_exact() {
    let server = server!();
    let ns = unique_ns("nats");
    server.track(&ns);
    let s = connect_streams(&server.url(), &ns, retention(40, Duration::from_secs(600)))
        .await
        .expect("streams");
    let st = StreamName::User("u.1".into());
    let noise = StreamName::User("u.2".into());
    // Interleave another stream so stream sequences of `st` have gaps, and
    // overflow max_len so the marker and the oldest entries are gone.
    for i in 1..=55u64 {
        s.append(&st, Bytes::from(i.to_string()), None)
            .await
            .expect("append");
        // A burst in the middle makes the spread uneven, so interpolation
        // guesses wrong and the search must fall back to bisection.
        let burst = if i == 30 { 150 } else { i % 3 };
        for _ in 0..burst {
            s.append(&noise, Bytes::from_static(b"n"), None)
                .await
                .expect("noise");
        }
    }
    for (after, limit) in [
        (0, 100),
        (14, 100),
        (15, 1),
        (16, 3),
        (30, 5),
        (31, 2),
        (29, 3),
        (33, 10),
        (45, 4),
        (53, 10),
        (54, 1),
        (55, 10),
        (70, 10),
        (20, 0),
    ] {
        let b = s.read_after(&st, after, limit).await.expect("read");
        assert_eq!((b.first_seq, b.last_seq), (16, 55), "after {after}");
        let from = (after + 1).max(16);
        let to = (after + limit as u64).min(55);
        let want: Vec<u64> = (from..=to).collect();
        let got: Vec<u64> = b.entries.iter().map(|e| e.0).collect();
        assert_eq!(got, want, "after {after} limit {limit}");
        for (seq, payload) in &b.entries {
            assert_eq!(payload.as_ref(), seq.to_string().as_bytes());
        }
        assert_eq!(b.covers(after), (15..=55).contains(&after), "after {after}");
    }
    assert_eq!(s.head(&st).await.expect("head").seq, 55);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_stream_resets_with_new_epoch() {
    let server = server!();
    let ns = unique_ns("nats");
    server.track(&ns);
    let s = connect_streams(&server.url(), &ns, retention(10, Duration::from_secs(1)))
        .await
        .expect("streams");
    let st = StreamName::Room("idle".into());
    let h1 = s.head(&st).await.expect("head");
    assert_eq!(h1.seq, 0);
    assert_eq!(s.head(&st).await.expect("head"), h1, "head is stable");
    let a = s
        .append(&st, Bytes::from_static(b"x"), None)
        .await
        .expect("append");
    assert_eq!((a.seq, a.epoch.as_str()), (1, h1.epoch.as_str()));
    // The stream ages out on the server's clock: poll until it has.
    let start = Instant::now();
    let b = loop {
        let b = s.read_after(&st, 0, 10).await.expect("read");
        if b.epoch != h1.epoch {
            break b;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "stream never aged out"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_ne!(b.epoch, h1.epoch, "aged-out stream starts a new epoch");
    assert_eq!((b.first_seq, b.last_seq, b.entries.len()), (1, 0, 0));
    let a = s
        .append(&st, Bytes::from_static(b"y"), None)
        .await
        .expect("append");
    assert_eq!((a.seq, a.epoch), (1, b.epoch));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dedup_under_concurrency_and_per_stream() {
    let server = server!();
    let ns = unique_ns("nats");
    server.track(&ns);
    let s = connect_streams(&server.url(), &ns, Retention::default())
        .await
        .expect("streams");
    let st = StreamName::User("d".into());
    let other = StreamName::User("e".into());
    let key = "key with spaces\r\n|~";
    let (x, y) = tokio::join!(
        s.append(&st, Bytes::from_static(b"x"), Some(key)),
        s.append(&st, Bytes::from_static(b"x"), Some(key)),
    );
    let (x, y) = (x.expect("x"), y.expect("y"));
    assert_eq!(x.seq, 1);
    assert_eq!(y.seq, 1);
    assert!(
        x.duplicate != y.duplicate,
        "exactly one stored: {x:?} {y:?}"
    );
    // The same key on another stream is a different message.
    let z = s
        .append(&other, Bytes::from_static(b"z"), Some(key))
        .await
        .expect("z");
    assert_eq!((z.seq, z.duplicate), (1, false));
    assert_eq!(
        s.read_after(&st, 0, 10).await.expect("read").entries.len(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_retention_follows_configuration() {
    let server = server!();
    let ns = unique_ns("nats");
    server.track(&ns);
    let _five = connect_streams(&server.url(), &ns, retention(5, Duration::from_secs(60)))
        .await
        .expect("streams");
    let ten = connect_streams(&server.url(), &ns, retention(10, Duration::from_secs(60)))
        .await
        .expect("streams");
    let client = async_nats::connect(server.url()).await.expect("connect");
    let js = async_nats::jetstream::new(client);
    let info = js
        .get_stream(format!("{ns}_streams"))
        .await
        .expect("stream");
    let cfg = &info.cached_info().config;
    assert_eq!(cfg.max_messages_per_subject, 11);
    assert_eq!(cfg.max_age, Duration::from_secs(60));
    let st = StreamName::User("u".into());
    for i in 1..=12u64 {
        ten.append(&st, Bytes::from(i.to_string()), None)
            .await
            .expect("append");
    }
    let b = ten.read_after(&st, 0, 100).await.expect("read");
    assert_eq!((b.first_seq, b.last_seq, b.entries.len()), (3, 12, 10));
}

/// A 1000-byte payload costs this much under the quota with owner "mallory"
/// and no dedup key: payload + owner + the fixed entry cost.
const KB_COST: u64 = 1000 + 7 + wsring_cluster::stream::ENTRY_COST_BYTES;
use wsring_cluster::stream::STREAM_COST_BYTES;

fn quota_retention(max_age: Duration, entries: u64) -> Retention {
    Retention {
        max_len: 1000,
        max_age,
        max_streams: 0,
        max_bytes: 1024 * 1024,
        // The stream the owner's first append creates counts too.
        max_user_bytes: entries * KB_COST + STREAM_COST_BYTES,
    }
}

/// Two nodes share one owner's quota: together they store exactly as many
/// entries as fit, then both refuse; duplicates cost nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owner_quota_is_shared_by_nodes_and_exact() {
    let server = server!();
    let ns = unique_ns("nats");
    server.track(&ns);
    let r = quota_retention(Duration::from_secs(600), 6);
    let a = connect_streams(&server.url(), &ns, r).await.expect("a");
    let b = connect_streams(&server.url(), &ns, r).await.expect("b");
    let kb = || Bytes::from(vec![b'x'; 1000]);
    let room = StreamName::Room("shared".into());
    for i in 0..6 {
        let s = if i % 2 == 0 { &a } else { &b };
        s.append_as(&room, kb(), None, Some("mallory"))
            .await
            .unwrap_or_else(|e| panic!("append {i} within the quota: {e}"));
    }
    for s in [&a, &b] {
        let e = s
            .append_as(&room, kb(), None, Some("mallory"))
            .await
            .expect_err("past the quota");
        assert!(
            matches!(e, ClusterError::QuotaExceeded { max } if max == 6 * KB_COST + STREAM_COST_BYTES),
            "{e}"
        );
    }
    // Nor may the owner create a stream; the server itself still stores.
    let e = b
        .head_as(&StreamName::Room("new".into()), Some("mallory"))
        .await
        .expect_err("a new stream past the quota");
    assert!(matches!(e, ClusterError::QuotaExceeded { .. }), "{e}");
    a.head_as(&room, Some("mallory"))
        .await
        .expect("an existing stream costs nothing");
    a.append(&room, kb(), None)
        .await
        .expect("the server still stores");
    let head = a.head(&room).await.expect("head");
    assert_eq!(head.seq, 7, "refused appends stored nothing");

    // Duplicates are given back: a fresh owner with room for one keyed
    // entry may retry it any number of times, and is refused a second one.
    let ns2 = unique_ns("nats");
    server.track(&ns2);
    let one = Retention {
        max_user_bytes: wsring_cluster::stream::entry_cost(1000, Some("k1"), Some("mallory"))
            + STREAM_COST_BYTES,
        ..r
    };
    let c = connect_streams(&server.url(), &ns2, one).await.expect("c");
    let first = c
        .append_as(&room, kb(), Some("k1"), Some("mallory"))
        .await
        .expect("first");
    for _ in 0..3 {
        let again = c
            .append_as(&room, kb(), Some("k1"), Some("mallory"))
            .await
            .expect("retry");
        assert!(again.duplicate && again.seq == first.seq, "{again:?}");
    }
    let e = c
        .append_as(&room, kb(), Some("k2"), Some("mallory"))
        .await
        .expect_err("a second entry does not fit");
    assert!(matches!(e, ClusterError::QuotaExceeded { .. }), "{e}");
}

/// Usage comes back once the entries it counted have aged out of the
/// store, and not before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owner_quota_is_given_back_by_age() {
    let server = server!();
    let ns = unique_ns("nats");
    server.track(&ns);
    let age = Duration::from_secs(2);
    let s = connect_streams(&server.url(), &ns, quota_retention(age, 3))
        .await
        .expect("streams");
    let kb = || Bytes::from(vec![b'x'; 1000]);
    let room = StreamName::Room("aging".into());
    let started = Instant::now();
    for _ in 0..3 {
        s.append_as(&room, kb(), None, Some("mallory"))
            .await
            .expect("within the quota");
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match s.append_as(&room, kb(), None, Some("mallory")).await {
            Ok(_) => break,
            Err(ClusterError::QuotaExceeded { .. }) => {
                assert!(Instant::now() < deadline, "usage never came back");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("{e}"),
        }
    }
    // Every counted entry was stored after `started` and is kept `age` by
    // JetStream: nothing came back before then.
    assert!(
        started.elapsed() >= age,
        "given back after {:?}, before any entry aged out",
        started.elapsed()
    );
    // What came back was really gone: the owner never held more than its
    // three entries' worth.
    let batch = s.read_after(&room, 0, 10).await.expect("read");
    assert!(
        batch.entries.len() <= 3,
        "the owner holds {} entries",
        batch.entries.len()
    );
}
