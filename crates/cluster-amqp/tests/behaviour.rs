//! RabbitMQ-specific behaviour beyond the shared conformance suite: what
//! happens while disconnected, after `close`, with bad credentials and when an
//! exchange disappears underneath a node. Uses the RabbitMQ at
//! 127.0.0.1:5672 (skipped, or failed with `WSRING_REQUIRE_BROKERS=1`, if it
//! is not running) and a fault-injection proxy in front of it.

use bytes::Bytes;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::time::timeout;
use wsring_cluster::{BrokerEvent, ClusterError, Inbox, Topic};
use wsring_cluster_amqp::{Names, connect_broker};
use wsring_cluster_testkit::conformance::{skip_or_fail, unique_ns};
use wsring_cluster_testkit::fault::FaultProxy;

const SERVER: &str = "127.0.0.1:5672";
const WAIT: Duration = Duration::from_secs(15);

fn url(addr: SocketAddr) -> String {
    format!("amqp://guest:guest@{addr}/%2f")
}

async fn server() -> Option<SocketAddr> {
    let addr: SocketAddr = SERVER.parse().expect("address");
    match timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(addr)).await {
        Ok(Ok(_)) => Some(addr),
        _ => {
            skip_or_fail(&format!("RabbitMQ not reachable at {SERVER}"));
            None
        }
    }
}

/// Removes the namespace's exchanges (queues are exclusive and vanish alone).
async fn cleanup(server: SocketAddr, ns: &str) {
    use lapin::options::ExchangeDeleteOptions;
    let conn = lapin::Connection::connect(&url(server), lapin::ConnectionProperties::default())
        .await
        .expect("cleanup connection");
    let ch = conn.create_channel().await.expect("channel");
    for (exchange, _) in Names::new(ns).expect("ns").exchanges() {
        ch.exchange_delete(exchange.into(), ExchangeDeleteOptions::default())
            .await
            .expect("delete exchange");
    }
    let _ = conn.close(200, "cleanup".into()).await;
}

async fn next_event(inbox: &mut Inbox) -> BrokerEvent {
    timeout(WAIT, inbox.recv())
        .await
        .expect("event in time")
        .expect("inbox open")
}

async fn expect_message(inbox: &mut Inbox, want: &[u8]) -> Topic {
    match next_event(inbox).await {
        BrokerEvent::Message { topic, payload } => {
            assert_eq!(payload.as_ref(), want);
            topic
        }
        other => panic!("expected message {want:?}, got {other:?}"),
    }
}

/// While the server is unreachable: publish fails fast, subscribe is
/// remembered and bound by the reconnect, exactly one `Disconnected` and one
/// `Resubscribed` are reported however many attempts fail in between.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_is_reported_once_and_subscriptions_made_meanwhile_survive() {
    let Some(server) = server().await else { return };
    let ns = unique_ns("amqp");
    let proxy = FaultProxy::start(server).await.expect("proxy");
    let (a, mut ia) = connect_broker(&url(proxy.addr()), &ns, "a")
        .await
        .expect("connect a");
    let (b, _ib) = connect_broker(&url(server), &ns, "b")
        .await
        .expect("connect b");
    a.subscribe(&Topic::Node("a".into())).await.expect("sub");

    proxy.refuse(true);
    let refused_before = proxy.refused();
    let cut_at = Instant::now();
    proxy.cut();
    assert!(matches!(
        next_event(&mut ia).await,
        BrokerEvent::Disconnected
    ));
    let lost_after = cut_at.elapsed();
    assert!(!a.healthy());
    let err = a
        .publish(&Topic::Cluster, Bytes::from_static(b"x"))
        .await
        .expect_err("publish while disconnected");
    assert!(matches!(err, ClusterError::Unavailable(_)), "{err}");
    // Subscribing while down is remembered, like the in-memory backend.
    let room = Topic::Room("meanwhile".into());
    a.subscribe(&room).await.expect("sub while down");
    a.subscribe(&Topic::Cluster).await.expect("sub while down");
    // Let several reconnect attempts fail.
    proxy
        .wait_refused(refused_before, 3, Duration::from_secs(30))
        .await;
    assert!(!a.healthy());
    proxy.refuse(false);
    let refused_until = Instant::now();
    assert!(matches!(
        next_event(&mut ia).await,
        BrokerEvent::Resubscribed
    ));
    let back_after = refused_until.elapsed();
    eprintln!(
        "disconnect noticed after {lost_after:?}; reconnected {back_after:?} after the server came back"
    );
    assert!(a.healthy());

    b.publish(&room, Bytes::from_static(b"room"))
        .await
        .expect("pub");
    assert_eq!(expect_message(&mut ia, b"room").await, room);
    b.publish(&Topic::Cluster, Bytes::from_static(b"all"))
        .await
        .expect("pub");
    assert_eq!(expect_message(&mut ia, b"all").await, Topic::Cluster);
    b.publish(&Topic::Node("a".into()), Bytes::from_static(b"direct"))
        .await
        .expect("pub");
    assert_eq!(
        expect_message(&mut ia, b"direct").await,
        Topic::Node("a".into())
    );
    a.close().await;
    b.close().await;
    cleanup(server, &ns).await;
}

/// A cut connection (server still up) is back within about one backoff step.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_after_a_cut_is_quick() {
    let Some(server) = server().await else { return };
    let ns = unique_ns("amqp");
    let proxy = FaultProxy::start(server).await.expect("proxy");
    let (a, mut ia) = connect_broker(&url(proxy.addr()), &ns, "a")
        .await
        .expect("connect");
    a.subscribe(&Topic::Node("a".into())).await.expect("sub");
    let cut_at = Instant::now();
    proxy.cut();
    assert!(matches!(
        next_event(&mut ia).await,
        BrokerEvent::Disconnected
    ));
    let lost = cut_at.elapsed();
    assert!(matches!(
        next_event(&mut ia).await,
        BrokerEvent::Resubscribed
    ));
    let back = cut_at.elapsed();
    eprintln!("cut: Disconnected after {lost:?}, Resubscribed after {back:?}");
    assert!(back < Duration::from_secs(5), "took {back:?}");
    a.publish(&Topic::Node("a".into()), Bytes::from_static(b"self"))
        .await
        .expect("pub");
    assert_eq!(
        expect_message(&mut ia, b"self").await,
        Topic::Node("a".into())
    );
    a.close().await;
    cleanup(server, &ns).await;
}

/// `close` ends the inbox, fails later calls, and deletes the queue (the
/// connection goes away, so nothing is left routing to it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_ends_the_inbox() {
    let Some(server) = server().await else { return };
    let ns = unique_ns("amqp");
    let (a, mut ia) = connect_broker(&url(server), &ns, "a")
        .await
        .expect("connect");
    a.subscribe(&Topic::Cluster).await.expect("sub");
    a.close().await;
    assert!(!a.healthy());
    assert!(
        timeout(Duration::from_secs(5), ia.recv())
            .await
            .expect("inbox ends promptly")
            .is_none()
    );
    assert!(matches!(
        a.publish(&Topic::Cluster, Bytes::from_static(b"x")).await,
        Err(ClusterError::Closed)
    ));
    assert!(matches!(
        a.subscribe(&Topic::Node("a".into())).await,
        Err(ClusterError::Closed)
    ));
    a.close().await; // idempotent
    cleanup(server, &ns).await;
}

/// Dropping the handle without `close` also stops the connection and ends
/// the inbox (no reconnect loop left behind).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_stops_the_connection() {
    let Some(server) = server().await else { return };
    let ns = unique_ns("amqp");
    let (a, mut ia) = connect_broker(&url(server), &ns, "a")
        .await
        .expect("connect");
    drop(a);
    assert!(
        timeout(Duration::from_secs(5), ia.recv())
            .await
            .expect("inbox ends promptly")
            .is_none()
    );
    cleanup(server, &ns).await;
}

/// Subscribe and unsubscribe are idempotent, and topics are isolated per
/// namespace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_and_namespaced() {
    let Some(server) = server().await else { return };
    let ns = unique_ns("amqp");
    let other_ns = unique_ns("amqp");
    let (a, mut ia) = connect_broker(&url(server), &ns, "a")
        .await
        .expect("connect");
    let (x, _ix) = connect_broker(&url(server), &other_ns, "x")
        .await
        .expect("connect");
    let room = Topic::Room("r".into());
    for _ in 0..2 {
        a.subscribe(&room).await.expect("sub");
        a.subscribe(&Topic::Cluster).await.expect("sub");
    }
    x.publish(&Topic::Cluster, Bytes::from_static(b"foreign"))
        .await
        .expect("pub");
    a.publish(&room, Bytes::from_static(b"once"))
        .await
        .expect("pub");
    a.publish(&Topic::Cluster, Bytes::from_static(b"end"))
        .await
        .expect("pub");
    // Bound twice would deliver twice; the other namespace not at all.
    assert_eq!(expect_message(&mut ia, b"once").await, room);
    assert_eq!(expect_message(&mut ia, b"end").await, Topic::Cluster);
    for _ in 0..2 {
        a.unsubscribe(&room).await.expect("unsub");
    }
    a.unsubscribe(&Topic::Node("never".into()))
        .await
        .expect("unsub unknown");
    a.publish(&room, Bytes::from_static(b"gone"))
        .await
        .expect("pub");
    a.publish(&Topic::Cluster, Bytes::from_static(b"end2"))
        .await
        .expect("pub");
    assert_eq!(expect_message(&mut ia, b"end2").await, Topic::Cluster);
    a.close().await;
    x.close().await;
    cleanup(server, &ns).await;
    cleanup(server, &other_ns).await;
}

/// An exchange deleted underneath a running node (an operator mistake) closes
/// the publish channel; the node treats it like a connection loss, redeclares
/// everything and works again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovers_from_a_deleted_exchange() {
    let Some(server) = server().await else { return };
    let ns = unique_ns("amqp");
    let (a, mut ia) = connect_broker(&url(server), &ns, "a")
        .await
        .expect("connect");
    a.subscribe(&Topic::Node("a".into())).await.expect("sub");
    cleanup(server, &ns).await;
    let err = a
        .publish(&Topic::Node("a".into()), Bytes::from_static(b"lost"))
        .await
        .expect_err("exchange is gone");
    assert!(matches!(err, ClusterError::Unavailable(_)), "{err}");
    assert!(matches!(
        next_event(&mut ia).await,
        BrokerEvent::Disconnected
    ));
    assert!(matches!(
        next_event(&mut ia).await,
        BrokerEvent::Resubscribed
    ));
    a.publish(&Topic::Node("a".into()), Bytes::from_static(b"again"))
        .await
        .expect("pub after recovery");
    assert_eq!(
        expect_message(&mut ia, b"again").await,
        Topic::Node("a".into())
    );
    a.close().await;
    cleanup(server, &ns).await;
}

/// Wrong credentials are a configuration error, reported at start-up
/// within the connect timeout rather than retried forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_credentials_fail_at_startup() {
    let Some(server) = server().await else { return };
    let started = Instant::now();
    let res = connect_broker(
        &format!("amqp://guest:wrong-password@{server}/%2f"),
        &unique_ns("amqp"),
        "a",
    )
    .await;
    let err = res.err().expect("must fail");
    assert!(
        matches!(err, ClusterError::Backend(_) | ClusterError::Unavailable(_)),
        "{err}"
    );
    eprintln!("bad credentials: {err} after {:?}", started.elapsed());
    assert!(started.elapsed() < Duration::from_secs(7));
}

/// Many concurrent publishers on one connection all get confirms, and each
/// publisher's own messages stay in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_publishers_keep_their_own_order() {
    let Some(server) = server().await else { return };
    let ns = unique_ns("amqp");
    let (a, _ia) = connect_broker(&url(server), &ns, "a")
        .await
        .expect("connect");
    let (b, mut ib) = connect_broker(&url(server), &ns, "b")
        .await
        .expect("connect");
    b.subscribe(&Topic::Node("b".into())).await.expect("sub");
    const TASKS: u32 = 8;
    const EACH: u32 = 100;
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let a = Arc::clone(&a);
        tasks.push(tokio::spawn(async move {
            for i in 0..EACH {
                a.publish(&Topic::Node("b".into()), Bytes::from(format!("{t}:{i}")))
                    .await
                    .expect("pub");
            }
        }));
    }
    for t in tasks {
        t.await.expect("publisher");
    }
    let mut next = [0u32; TASKS as usize];
    for _ in 0..TASKS * EACH {
        let BrokerEvent::Message { payload, .. } = next_event(&mut ib).await else {
            panic!("unexpected event");
        };
        let text = std::str::from_utf8(&payload).expect("utf8");
        let (t, i) = text.split_once(':').expect("t:i");
        let (t, i): (usize, u32) = (t.parse().expect("t"), i.parse().expect("i"));
        assert_eq!(next[t], i, "publisher {t} out of order");
        next[t] += 1;
    }
    a.close().await;
    b.close().await;
    cleanup(server, &ns).await;
}
