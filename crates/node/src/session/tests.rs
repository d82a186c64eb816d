//! The connection loop driven through channels: a test plays the client on
//! one end of a `Sink`/`Stream` pair and the node's sessions table on the
//! other. Every timing rule runs on tokio's paused clock.

use futures::channel::mpsc;
use futures::{Sink, SinkExt, StreamExt};
use serde_json::{Value, json};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tungstenite::{Message, Utf8Bytes};
use wsring_cluster::StreamName;

use super::conn::{self, WRITE_STALL};
use super::{End, ReadError, Resume};
use crate::durable;
use crate::node::testing::TestNode;
use crate::sessions::{Outbound, SessionHandle, StreamMsg};

/// The client end of a session.
struct Client {
    tx: mpsc::Sender<Result<Message, ReadError>>,
    rx: mpsc::Receiver<Message>,
    task: JoinHandle<End>,
}

impl Client {
    /// Connects `user` through channels.
    fn connect(t: &TestNode, user: &str, resume: Option<Resume>) -> Client {
        let (server_tx, rx) = mpsc::channel(64);
        Client::connect_with(t, user, resume, server_tx, rx)
    }

    /// Connects `user` as a located client that `moved` frames redirect.
    fn connect_following(t: &TestNode, user: &str) -> Client {
        let (server_tx, rx) = mpsc::channel(64);
        Client::serve(t, user, None, server_tx, rx, true)
    }

    fn connect_with<Si>(
        t: &TestNode,
        user: &str,
        resume: Option<Resume>,
        sink: Si,
        rx: mpsc::Receiver<Message>,
    ) -> Client
    where
        Si: Sink<Message> + Unpin + Send + 'static,
    {
        Client::serve(t, user, resume, sink, rx, false)
    }

    fn serve<Si>(
        t: &TestNode,
        user: &str,
        resume: Option<Resume>,
        sink: Si,
        rx: mpsc::Receiver<Message>,
        follows: bool,
    ) -> Client
    where
        Si: Sink<Message> + Unpin + Send + 'static,
    {
        let (tx, server_rx) = mpsc::channel(64);
        let task = tokio::spawn(conn::serve(
            Arc::clone(&t.node),
            Duplex {
                sink,
                stream: server_rx,
            },
            wsring_auth::Identity::unrestricted(user),
            resume,
            follows,
        ));
        Client { tx, rx, task }
    }

    async fn send(&mut self, msg: Result<Message, ReadError>) {
        self.tx.send(msg).await.expect("session reads");
    }

    async fn text(&mut self, text: &str) {
        self.send(Ok(Message::Text(text.into()))).await;
    }

    /// The next frame of any kind; `None` once the session dropped the
    /// connection.
    async fn next(&mut self) -> Option<Message> {
        self.rx.next().await
    }

    /// The next text frame, parsed (server pings are skipped).
    async fn frame(&mut self) -> Value {
        loop {
            match self.next().await {
                Some(Message::Text(t)) => return serde_json::from_str(t.as_str()).expect("JSON"),
                Some(Message::Ping(_)) => continue,
                other => panic!("expected a text frame, got {other:?}"),
            }
        }
    }

    /// Waits for the server's next WebSocket ping; returns when it came.
    async fn ping_since(&mut self, t0: Instant) -> Duration {
        match self.next().await {
            Some(Message::Ping(_)) => t0.elapsed(),
            other => panic!("expected a ping, got {other:?}"),
        }
    }

    /// The close frame that must come next.
    async fn close_frame(&mut self) -> (u16, String) {
        match self.next().await {
            Some(Message::Close(Some(f))) => (u16::from(f.code), f.reason.to_string()),
            other => panic!("expected a close frame, got {other:?}"),
        }
    }

    /// Waits for the session to end, as the client closing its side would.
    async fn end(self) -> End {
        drop(self.tx);
        self.task.await.expect("session task")
    }

    /// The session's entry in the node's table (it has one while it runs).
    async fn handle(&mut self, t: &TestNode, user: &str) -> SessionHandle {
        let welcome = self.frame().await;
        assert_eq!(welcome["type"], "welcome");
        let session = welcome["session"].as_str().expect("session id");
        t.node
            .table
            .user_sessions(user)
            .into_iter()
            .find(|h| &*h.id == session)
            .expect("the session is in the table")
    }
}

/// The server's ends of the two channels, as the one socket a session
/// reads and writes.
struct Duplex<Si> {
    sink: Si,
    stream: mpsc::Receiver<Result<Message, ReadError>>,
}

impl<Si: Sink<Message> + Unpin> Sink<Message> for Duplex<Si> {
    type Error = Si::Error;
    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Pin::new(&mut self.sink).poll_ready(cx)
    }
    fn start_send(mut self: Pin<&mut Self>, item: Message) -> Result<(), Self::Error> {
        Pin::new(&mut self.sink).start_send(item)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Pin::new(&mut self.sink).poll_flush(cx)
    }
    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Pin::new(&mut self.sink).poll_close(cx)
    }
}

impl<Si: Unpin> futures::Stream for Duplex<Si> {
    type Item = Result<Message, ReadError>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.stream.poll_next_unpin(cx)
    }
}

/// A sink that tells the test when the session's write has to wait for a
/// client that does not read.
struct Stalling {
    inner: mpsc::Sender<Message>,
    stalled: Arc<Notify>,
}

impl Stalling {
    fn report(&self, p: Poll<Result<(), mpsc::SendError>>) -> Poll<Result<(), mpsc::SendError>> {
        if p.is_pending() {
            self.stalled.notify_one();
        }
        p
    }
}

impl Sink<Message> for Stalling {
    type Error = mpsc::SendError;
    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        let p = self.inner.poll_ready(cx);
        self.report(p)
    }
    fn start_send(mut self: Pin<&mut Self>, item: Message) -> Result<(), Self::Error> {
        self.inner.start_send(item)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        let p = Pin::new(&mut self.inner).poll_flush(cx);
        self.report(p)
    }
    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Pin::new(&mut self.inner).poll_close(cx)
    }
}

fn frame(n: usize) -> Outbound {
    Outbound::Frame(Utf8Bytes::from("x".repeat(n)))
}

#[tokio::test(start_paused = true)]
async fn welcome_then_requests_are_answered_in_order() {
    let t = TestNode::start(TestNode::config()).await;
    let mut c = Client::connect(&t, "alice", None);
    let w = c.frame().await;
    assert_eq!(w["type"], "welcome");
    assert_eq!(
        (w["user"].as_str(), w["node"].as_str()),
        (Some("alice"), Some("n1"))
    );
    assert_eq!(w["epoch"], t.node.membership.view().epoch());
    assert!(
        w.get("seq").is_none(),
        "no stream position without durability"
    );
    c.text(r#"{"type":"join","room":"r","id":1}"#).await;
    assert_eq!(c.frame().await, json!({"type":"ack","id":1}));
    c.text(r#"{"type":"publish","room":"r","data":"hi","id":2}"#)
        .await;
    assert_eq!(c.frame().await, json!({"type":"ack","id":2}));
    assert_eq!(
        c.frame().await,
        json!({"type":"message","from":"alice","room":"r","data":"hi"})
    );
    c.text(r#"{"type":"send","to":"alice","data":3}"#).await;
    assert_eq!(
        c.frame().await,
        json!({"type":"message","from":"alice","to":"alice","data":3})
    );
    c.text(r#"{"type":"leave","room":"r","id":"l"}"#).await;
    assert_eq!(c.frame().await, json!({"type":"ack","id":"l"}));
    assert_eq!(c.end().await, End::Gone);
    assert_eq!(t.node.table.len(), 0, "the session is forgotten");
}

#[tokio::test(start_paused = true)]
async fn bad_input_is_answered_and_the_session_goes_on() {
    let t = TestNode::start(TestNode::config()).await;
    let mut c = Client::connect(&t, "alice", None);
    c.frame().await;
    c.text("{not json").await;
    let f = c.frame().await;
    assert_eq!(
        (f["type"].as_str(), f["code"].as_str()),
        (Some("error"), Some("bad_request"))
    );
    c.text(r#"{"type":"shout","id":7}"#).await;
    let f = c.frame().await;
    assert_eq!(
        (f["code"].as_str(), &f["id"]),
        (Some("bad_request"), &json!(7))
    );
    c.send(Ok(Message::Binary(vec![1, 2].into()))).await;
    let f = c.frame().await;
    assert_eq!(
        f,
        json!({"type":"error","code":"bad_request","message":"binary frames are not supported; send JSON text frames"})
    );
    // Control frames are tungstenite's business.
    c.send(Ok(Message::Pong(Default::default()))).await;
    c.text(r#"{"type":"ping","id":"p"}"#).await;
    assert_eq!(c.frame().await, json!({"type":"pong","id":"p"}));
    let counters = &t.node.counters;
    assert_eq!(
        counters.msgs_in.load(std::sync::atomic::Ordering::Relaxed),
        4
    );
    assert_eq!(
        counters.msgs_out.load(std::sync::atomic::Ordering::Relaxed),
        5
    );
}

#[tokio::test(start_paused = true)]
async fn a_ping_flood_is_closed_with_1008_but_normal_pings_are_fine() {
    let t = TestNode::start(TestNode::config()).await;
    // One ping every 200 ms for a minute: well within the budget.
    let mut calm = Client::connect(&t, "calm", None);
    let _welcome = calm.frame().await;
    for _ in 0..300 {
        calm.send(Ok(Message::Ping(Default::default()))).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    calm.text(r#"{"type":"ping","id":"still"}"#).await;
    loop {
        let f = calm.frame().await;
        if f["id"] == "still" {
            break;
        }
    }
    // A burst far past it: closed as a policy violation.
    let mut flood = Client::connect(&t, "flood", None);
    let _welcome = flood.frame().await;
    for _ in 0..200 {
        flood.send(Ok(Message::Ping(vec![0u8; 125].into()))).await;
    }
    assert_eq!(
        flood.close_frame().await,
        (1008, "too many control frames".to_owned())
    );
}

#[tokio::test(start_paused = true)]
async fn a_message_flood_is_answered_rate_limited_then_closed() {
    let mut cfg = TestNode::config();
    cfg.client_messages_per_sec = 10.0;
    cfg.client_message_burst = 20.0;
    cfg.client_rate_strikes = 30;
    let t = TestNode::start(cfg).await;
    let mut c = Client::connect(&t, "alice", None);
    c.frame().await;
    // The burst passes; then every message is refused, its id echoed.
    for i in 0..25 {
        c.text(&format!(r#"{{"type":"ping","id":{i}}}"#)).await;
    }
    let mut pongs = 0;
    let mut limited = Vec::new();
    for _ in 0..25 {
        let f = c.frame().await;
        match f["type"].as_str() {
            Some("pong") => pongs += 1,
            Some("error") => {
                assert_eq!(f["code"], "rate_limited", "{f}");
                limited.push(f["id"].as_i64().expect("id echoed"));
            }
            other => panic!("unexpected {other:?}: {f}"),
        }
    }
    assert_eq!((pongs, limited), (20, (20..25).collect::<Vec<_>>()));
    // Within the rate again: answered normally, and the strikes reset.
    tokio::time::sleep(Duration::from_millis(200)).await;
    c.text(r#"{"type":"ping","id":"ok"}"#).await;
    assert_eq!(c.frame().await, json!({"type":"pong","id":"ok"}));
    // A client that ignores the refusals is cut off.
    for _ in 0..40 {
        c.text(r#"{"type":"ping"}"#).await;
    }
    let closed = loop {
        match c.next().await {
            Some(Message::Close(Some(f))) => break (u16::from(f.code), f.reason.to_string()),
            Some(_) => continue,
            None => panic!("no close frame"),
        }
    };
    assert_eq!(closed, (1008, "rate limit exceeded".to_owned()));
}

/// Sends `n` pings on `c` and counts the pongs and `rate_limited` answers.
async fn pings(c: &mut Client, n: usize) -> (usize, usize) {
    for i in 0..n {
        c.text(&format!(r#"{{"type":"ping","id":{i}}}"#)).await;
    }
    let (mut pongs, mut limited) = (0, 0);
    for _ in 0..n {
        let f = c.frame().await;
        match f["type"].as_str() {
            Some("pong") => pongs += 1,
            Some("error") if f["code"] == "rate_limited" => limited += 1,
            _ => panic!("unexpected {f}"),
        }
    }
    (pongs, limited)
}

#[tokio::test(start_paused = true)]
async fn a_users_sessions_and_reconnects_share_one_budget() {
    let mut cfg = TestNode::config();
    // The per-connection limit out of the way: only the user's binds.
    cfg.client_messages_per_sec = 0.0;
    cfg.user_messages_per_sec = 10.0; // burst 50
    cfg.client_rate_strikes = 1000;
    let t = TestNode::start(cfg).await;
    let mut a = Client::connect(&t, "alice", None);
    let mut b = Client::connect(&t, "alice", None);
    let mut other = Client::connect(&t, "bob", None);
    for c in [&mut a, &mut b, &mut other] {
        c.frame().await;
    }
    // Two sessions of one user: 50 between them, not 50 each.
    let (pa, la) = pings(&mut a, 30).await;
    let (pb, lb) = pings(&mut b, 30).await;
    assert_eq!((pa + pb, la + lb), (50, 10));
    // Another user is not affected.
    assert_eq!(pings(&mut other, 30).await, (30, 0));
    // Reconnecting does not refill the budget.
    drop(a);
    assert_eq!(b.end().await, End::Gone);
    let mut again = Client::connect(&t, "alice", None);
    again.frame().await;
    assert_eq!(pings(&mut again, 5).await, (0, 5));
    // The rate does: 10 a second.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(pings(&mut again, 15).await, (10, 5));
    let refused = {
        again.text(r#"{"type":"ping","id":"x"}"#).await;
        again.frame().await
    };
    assert!(
        refused["message"]
            .as_str()
            .is_some_and(|m| m.contains("from this user")),
        "{refused}"
    );
}

#[tokio::test(start_paused = true)]
async fn one_session_too_many_closes_the_users_oldest() {
    let mut cfg = TestNode::config();
    cfg.max_sessions_per_user = 2;
    let t = TestNode::start(cfg).await;
    let mut first = Client::connect(&t, "alice", None);
    first.frame().await;
    let mut second = Client::connect(&t, "alice", None);
    second.frame().await;
    let mut other = Client::connect(&t, "bob", None);
    other.frame().await;
    let mut third = Client::connect(&t, "alice", None);
    third.frame().await;
    assert_eq!(
        first.close_frame().await,
        (1008, "too many sessions".to_owned())
    );
    // The others are untouched.
    for c in [&mut second, &mut third, &mut other] {
        c.text(r#"{"type":"ping","id":"alive"}"#).await;
        assert_eq!(c.frame().await, json!({"type":"pong","id":"alive"}));
    }
}

#[tokio::test(start_paused = true)]
async fn the_room_cap_is_answered_in_band() {
    let mut cfg = TestNode::config();
    cfg.max_rooms_per_session = 1;
    let t = TestNode::start(cfg).await;
    let mut c = Client::connect(&t, "alice", None);
    c.frame().await;
    c.text(r#"{"type":"join","room":"a","id":1}"#).await;
    assert_eq!(c.frame().await, json!({"type":"ack","id":1}));
    c.text(r#"{"type":"join","room":"b","id":2}"#).await;
    let f = c.frame().await;
    assert_eq!(
        (f["code"].as_str(), &f["id"]),
        (Some("limit_exceeded"), &json!(2))
    );
    // Leaving frees a slot; the session never closed.
    c.text(r#"{"type":"leave","room":"a"}"#).await;
    c.text(r#"{"type":"join","room":"b","id":3}"#).await;
    assert_eq!(c.frame().await, json!({"type":"ack","id":3}));
    assert_eq!(c.end().await, End::Gone);
}

#[tokio::test(start_paused = true)]
async fn read_errors_close_with_the_code_rfc_6455_prescribes() {
    let t = TestNode::start(TestNode::config()).await;
    for (err, code, reason) in [
        (ReadError::TooBig, 1009, "message too big"),
        (ReadError::BadUtf8, 1007, "invalid UTF-8"),
        (ReadError::Protocol, 1002, "protocol error"),
    ] {
        let mut c = Client::connect(&t, "alice", None);
        c.frame().await;
        c.send(Err(err)).await;
        assert_eq!(c.close_frame().await, (code, reason.to_owned()), "{err:?}");
        assert_eq!(c.end().await, End::Closed);
    }
    // A failed connection has no one to send a close frame to.
    let mut c = Client::connect(&t, "alice", None);
    c.frame().await;
    c.send(Err(ReadError::Io)).await;
    assert!(c.next().await.is_none(), "dropped without a close frame");
    assert_eq!(c.end().await, End::Gone);
}

#[tokio::test(start_paused = true)]
async fn a_closed_session_lingers_for_the_clients_in_flight_data() {
    let t = TestNode::start(TestNode::config()).await;
    let mut c = Client::connect(&t, "alice", None);
    c.frame().await;
    let t0 = Instant::now();
    c.send(Err(ReadError::TooBig)).await;
    c.close_frame().await;
    // Still read (and discarded) after the close frame…
    c.text(r#"{"type":"ping"}"#).await;
    // …until the linger bound, though the client never closes its side.
    let Client { tx: _tx, task, .. } = c;
    assert_eq!(task.await.expect("task"), End::Closed);
    assert_eq!(t0.elapsed(), super::conn::CLOSE_LINGER);
}

#[tokio::test(start_paused = true)]
async fn a_full_queue_closes_a_slow_consumer_with_1008() {
    for (queue, bytes, offers) in [(4, 1 << 20, vec![1; 5]), (1024, 100, vec![60, 60])] {
        let mut cfg = TestNode::config();
        cfg.session_queue = queue;
        cfg.session_queue_bytes = bytes;
        let t = TestNode::start(cfg).await;
        let mut c = Client::connect(&t, "alice", None);
        let h = c.handle(&t, "alice").await;
        let accepted: Vec<bool> = offers.iter().map(|&n| h.offer(frame(n))).collect();
        assert_eq!(
            accepted.last(),
            Some(&false),
            "{queue}/{bytes}: the last offer overflows"
        );
        assert!(h.kick.is_cancelled());
        // What was queued is dropped; the close frame comes next.
        assert_eq!(c.close_frame().await, (1008, "slow consumer".to_owned()));
        assert_eq!(c.end().await, End::Closed);
    }
}

#[tokio::test(start_paused = true)]
async fn a_slow_consumer_blocked_in_a_write_is_still_closed_with_1008() {
    let mut cfg = TestNode::config();
    cfg.session_queue = 2;
    let t = TestNode::start(cfg).await;
    let stalled = Arc::new(Notify::new());
    // Room for one frame: the welcome fills it and the flush waits.
    let (inner, rx) = mpsc::channel(0);
    let sink = Stalling {
        inner,
        stalled: Arc::clone(&stalled),
    };
    let mut c = Client::connect_with(&t, "alice", None, sink, rx);
    stalled.notified().await;
    let h = t.node.table.user_sessions("alice").pop().expect("session");
    let started = Instant::now();
    while h.offer(frame(1)) {}
    // The client reads again within the write-stall bound: it gets what the
    // socket held, then the close frame.
    assert_eq!(c.frame().await["type"], "welcome");
    assert_eq!(c.close_frame().await, (1008, "slow consumer".to_owned()));
    assert!(started.elapsed() < WRITE_STALL);
    assert_eq!(c.end().await, End::Closed);
}

#[tokio::test(start_paused = true)]
async fn a_peer_that_never_reads_is_dropped_after_the_write_stall_bound() {
    let t = TestNode::start(TestNode::config()).await;
    let stalled = Arc::new(Notify::new());
    let (inner, rx) = mpsc::channel(0);
    let sink = Stalling {
        inner,
        stalled: Arc::clone(&stalled),
    };
    let c = Client::connect_with(&t, "alice", None, sink, rx);
    stalled.notified().await;
    let t0 = Instant::now();
    let Client {
        tx: _tx,
        rx: _rx,
        task,
    } = c;
    assert_eq!(task.await.expect("task"), End::Gone);
    assert_eq!(t0.elapsed(), WRITE_STALL);
}

#[tokio::test(start_paused = true)]
async fn pings_every_interval_while_the_client_answers() {
    let t = TestNode::start(TestNode::config()).await;
    let every = t.node.cfg.ping_interval;
    let mut c = Client::connect(&t, "alice", None);
    c.frame().await;
    let t0 = Instant::now();
    for i in 1..=6u32 {
        assert_eq!(c.ping_since(t0).await, every * i, "ping {i}");
        c.send(Ok(Message::Pong(Default::default()))).await;
    }
    assert!(!c.task.is_finished());
}

#[tokio::test(start_paused = true)]
async fn a_client_silent_for_two_and_a_half_periods_is_dropped() {
    let t = TestNode::start(TestNode::config()).await;
    let every = t.node.cfg.ping_interval;
    let mut c = Client::connect(&t, "alice", None);
    c.frame().await;
    let t0 = Instant::now();
    for i in 1..=2u32 {
        assert_eq!(c.ping_since(t0).await, every * i);
    }
    // Nothing was heard for 2.5 periods (50 s by default): no close frame
    // (the peer is presumed dead), the connection is dropped at once.
    assert!(c.next().await.is_none());
    assert_eq!(t0.elapsed(), every * 5 / 2);
    assert_eq!(c.end().await, End::Gone);
}

#[tokio::test(start_paused = true)]
async fn the_idle_limit_counts_from_the_last_frame_heard() {
    let t = TestNode::start(TestNode::config()).await;
    let every = t.node.cfg.ping_interval;
    let mut c = Client::connect(&t, "alice", None);
    c.frame().await;
    let t0 = Instant::now();
    assert_eq!(c.ping_since(t0).await, every);
    // One pong 10 s after the first ping; then silence: dropped 2.5
    // periods after that pong, not at a ping tick.
    tokio::time::sleep(Duration::from_secs(10)).await;
    c.send(Ok(Message::Pong(Default::default()))).await;
    let heard = Instant::now();
    while let Some(m) = c.next().await {
        assert!(matches!(m, Message::Ping(_)), "{m:?}");
    }
    assert_eq!(heard.elapsed(), every * 5 / 2);
    assert_eq!(c.end().await, End::Gone);
}

#[tokio::test(start_paused = true)]
async fn a_session_is_closed_with_3000_when_its_identity_expires() {
    let t = TestNode::start(TestNode::config()).await;
    let (server_tx, rx) = mpsc::channel(64);
    let (tx, server_rx) = mpsc::channel(64);
    let mut identity = wsring_auth::Identity::unrestricted("alice");
    identity.expire_at = Some(wsring_auth::unix_now() + 30);
    let task = tokio::spawn(conn::serve(
        Arc::clone(&t.node),
        Duplex {
            sink: server_tx,
            stream: server_rx,
        },
        identity,
        None,
        false,
    ));
    let mut c = Client { tx, rx, task };
    c.frame().await;
    let t0 = Instant::now();
    // It answers pings meanwhile; the expiry closes it all the same.
    let code = loop {
        match c.next().await {
            Some(Message::Ping(_)) => c.send(Ok(Message::Pong(Default::default()))).await,
            Some(Message::Close(Some(f))) => break (u16::from(f.code), f.reason.to_string()),
            other => panic!("expected a ping or the close frame, got {other:?}"),
        }
    };
    assert_eq!(code, (3000, "expired".to_owned()));
    // Unix time has a one-second resolution.
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_secs(29) && took <= Duration::from_secs(30),
        "{took:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn any_client_frame_counts_as_a_sign_of_life() {
    let t = TestNode::start(TestNode::config()).await;
    let every = t.node.cfg.ping_interval;
    let mut c = Client::connect(&t, "alice", None);
    c.frame().await;
    let t0 = Instant::now();
    // An application ping between server pings keeps the session alive.
    for i in 1..=4u32 {
        assert_eq!(c.ping_since(t0).await, every * i);
        c.text(r#"{"type":"ping"}"#).await;
        assert_eq!(c.frame().await, json!({"type":"pong","id":null}));
    }
}

#[tokio::test(start_paused = true)]
async fn a_burst_of_pings_gets_one_pong_each_in_order() {
    let t = TestNode::start(TestNode::config()).await;
    let mut c = Client::connect(&t, "alice", None);
    let h = c.handle(&t, "alice").await;
    // Deliveries keep flowing while the client sends as fast as it can.
    for n in 0..50 {
        c.text(&format!(r#"{{"type":"ping","id":{n}}}"#)).await;
        assert!(h.offer(Outbound::Frame(Utf8Bytes::from(format!("{{\"n\":{n}}}")))));
    }
    let (mut pongs, mut deliveries) = (Vec::new(), Vec::new());
    while pongs.len() < 50 || deliveries.len() < 50 {
        let f = c.frame().await;
        match f["type"].as_str() {
            Some("pong") => pongs.push(f["id"].as_i64().expect("id")),
            _ => deliveries.push(f["n"].as_i64().expect("n")),
        }
    }
    let want: Vec<i64> = (0..50).collect();
    assert_eq!((pongs, deliveries), (want.clone(), want));
}

#[tokio::test(start_paused = true)]
async fn moves_stops_and_crashes() {
    let t = TestNode::start(TestNode::config()).await;
    let mut c = Client::connect(&t, "alice", None);
    let h = c.handle(&t, "alice").await;
    h.offer(Outbound::Moved {
        epoch: 7,
        retry_after_ms: 30,
    });
    assert_eq!(
        c.frame().await,
        json!({"type":"moved","epoch":7,"retry_after_ms":30})
    );
    assert_eq!(c.close_frame().await, (1012, "moved".to_owned()));
    assert_eq!(c.end().await, End::Closed);

    // A located client is told where to go: the owner under the latest
    // view (this one node here), with that view's epoch.
    let mut c = Client::connect_following(&t, "alice");
    let h = c.handle(&t, "alice").await;
    h.offer(Outbound::Moved {
        epoch: 7,
        retry_after_ms: 30,
    });
    let view = t.node.membership.view();
    let member = view.member(t.node.id()).expect("a member");
    let url = format!("{}?ring_epoch={}", member.url, view.epoch());
    assert_eq!(
        c.frame().await,
        json!({"type":"moved","epoch":7,"retry_after_ms":30,"url":url})
    );
    assert_eq!(c.close_frame().await, (1012, "moved".to_owned()));
    assert_eq!(c.end().await, End::Closed);

    let mut c = Client::connect(&t, "alice", None);
    let h = c.handle(&t, "alice").await;
    h.offer(Outbound::Close(1001, "server shutting down".into()));
    assert_eq!(
        c.close_frame().await,
        (1001, "server shutting down".to_owned())
    );
    assert_eq!(c.end().await, End::Closed);

    let mut c = Client::connect(&t, "alice", None);
    c.frame().await;
    t.node.kill.cancel();
    assert!(c.next().await.is_none(), "a crash sends no close frame");
    assert_eq!(c.end().await, End::Killed);
}

#[tokio::test(start_paused = true)]
async fn a_user_this_node_does_not_own_is_moved_at_once() {
    let t = TestNode::start(TestNode::config()).await;
    t.node
        .leaving
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let mut c = Client::connect(&t, "alice", None);
    assert_eq!(c.frame().await["type"], "welcome");
    let epoch = t.node.membership.view().epoch();
    assert_eq!(
        c.frame().await,
        json!({"type":"moved","epoch":epoch,"retry_after_ms":0})
    );
    assert_eq!(c.close_frame().await, (1012, "moved".to_owned()));
}

/// The `resumed` frame that ends a replay.
fn resumed(stream: &str, complete: bool, seq: u64, epoch: &str) -> Value {
    json!({"type":"resumed","stream":stream,"complete":complete,"seq":seq,"epoch":epoch})
}

fn resume(seq: u64, epoch: &str) -> Option<Resume> {
    Some(Resume {
        seq,
        epoch: epoch.to_owned(),
    })
}

#[tokio::test(start_paused = true)]
async fn a_complete_resume_replays_what_the_client_missed() {
    let t = TestNode::start(TestNode::durable_config()).await;
    let user = StreamName::User("alice".into());
    let epoch = t.append(&user, 3).await;
    let mut c = Client::connect(&t, "alice", resume(1, &epoch));
    let w = c.frame().await;
    assert_eq!(
        (w["seq"].as_u64(), w["stream_epoch"].as_str()),
        (Some(3), Some(epoch.as_str()))
    );
    for seq in 2..=3 {
        let m = c.frame().await;
        assert_eq!(
            m,
            json!({"type":"message","from":"sender","to":"alice","data":seq,"seq":seq,"epoch":epoch})
        );
    }
    assert_eq!(c.frame().await, resumed("user", true, 3, &epoch));
}

#[tokio::test(start_paused = true)]
async fn an_incomplete_resume_says_so_and_starts_at_the_head() {
    let t = TestNode::start(TestNode::durable_config()).await;
    let user = StreamName::User("alice".into());
    let epoch = t.append(&user, 3).await;
    for r in [resume(1, "lost-epoch"), resume(9, &epoch)] {
        let mut c = Client::connect(&t, "alice", r.clone());
        c.frame().await;
        assert_eq!(c.frame().await, resumed("user", false, 3, &epoch), "{r:?}");
        c.end().await;
    }
    // Without durability nothing can be replayed: said honestly.
    let t = TestNode::start(TestNode::config()).await;
    let mut c = Client::connect(&t, "alice", resume(1, &epoch));
    c.frame().await;
    assert_eq!(c.frame().await, resumed("user", false, 0, ""));
}

#[tokio::test(start_paused = true)]
async fn no_stream_store_at_connect_closes_with_1013() {
    let t = TestNode::start(TestNode::durable_config()).await;
    t.streams_down();
    let mut c = Client::connect(&t, "alice", None);
    assert_eq!(
        c.close_frame().await,
        (1013, "stream store unavailable".to_owned())
    );
    assert_eq!(c.end().await, End::Closed);
}

#[tokio::test(start_paused = true)]
async fn server_rooms_that_cannot_be_read_at_connect_are_joined_later() {
    use wsring_cluster::ServerRooms;
    let t = TestNode::start(TestNode::config()).await;
    t.backend.rooms.add("alice", "ops", 8).await.expect("add");
    t.fail_room_reads(2);
    let mut c = Client::connect(&t, "alice", None);
    let h = c.handle(&t, "alice").await;
    let e = c.frame().await;
    assert_eq!(
        (e["type"].as_str(), e["code"].as_str()),
        (Some("error"), Some("unavailable"))
    );
    assert!(e.get("id").is_none(), "{e}");
    // The session serves meanwhile.
    c.text(r#"{"type":"ping","id":"p"}"#).await;
    assert_eq!(c.frame().await, json!({"type":"pong","id":"p"}));
    let t0 = Instant::now();
    // Read again after 1 s (fails, silently), then after 2 s more.
    assert_eq!(c.frame().await, json!({"type":"joined","room":"ops"}));
    assert_eq!(t0.elapsed(), Duration::from_secs(3));
    assert!(t.node.table.is_in(&h.id, "ops"));
}

#[tokio::test(start_paused = true)]
async fn live_durable_messages_fill_gaps_and_drop_duplicates() {
    let t = TestNode::start(TestNode::durable_config()).await;
    let user = StreamName::User("alice".into());
    let mut c = Client::connect(&t, "alice", None);
    let h = c.handle(&t, "alice").await;
    // Three messages reach the store; only the third arrives live.
    let epoch = t.append(&user, 3).await;
    let live = |seq: u64| {
        let data = serde_json::value::RawValue::from_string(seq.to_string()).expect("json");
        let stored = durable::encode(Some("sender"), Some("alice"), None, &data);
        let text = durable::render(&stored, seq, &epoch).expect("render");
        Outbound::Stream(Arc::new(StreamMsg {
            stream: user.clone(),
            seq,
            epoch: epoch.as_str().into(),
            frame: Utf8Bytes::from(text),
        }))
    };
    h.offer(live(3));
    h.offer(live(2));
    h.offer(live(3));
    for seq in 1..=3 {
        assert_eq!(c.frame().await["seq"], seq);
    }
    // The duplicates were dropped: the next frame is the next message.
    t.append(&user, 1).await;
    h.offer(live(4));
    assert_eq!(c.frame().await["seq"], 4);
}

#[tokio::test(start_paused = true)]
async fn a_durable_join_acks_then_replays_then_reports() {
    let t = TestNode::start(TestNode::durable_config()).await;
    let room = StreamName::Room("r".into());
    let epoch = t.append(&room, 2).await;
    let mut c = Client::connect(&t, "alice", None);
    c.frame().await;
    c.text(&format!(
        r#"{{"type":"join","room":"r","id":1,"resume":0,"epoch":"{epoch}"}}"#
    ))
    .await;
    assert_eq!(c.frame().await, json!({"type":"ack","id":1}));
    for seq in 1..=2 {
        let m = c.frame().await;
        assert_eq!(
            (m["room"].as_str(), m["seq"].as_u64()),
            (Some("r"), Some(seq))
        );
    }
    assert_eq!(c.frame().await, resumed("room:r", true, 2, &epoch));
}

#[tokio::test(start_paused = true)]
async fn a_failed_catch_up_is_retried_after_a_second_and_still_reported() {
    let t = TestNode::start(TestNode::durable_config()).await;
    let room = StreamName::Room("r".into());
    let epoch = t.append(&room, 1).await;
    let mut c = Client::connect(&t, "alice", None);
    c.frame().await;
    // Let the (paused) clock run past the catch-up pass every durable
    // session makes once views have settled.
    tokio::time::sleep(crate::rebalance::SETTLE * 2).await;
    t.fail_reads(1);
    let t0 = Instant::now();
    c.text(&format!(
        r#"{{"type":"join","room":"r","id":1,"resume":0,"epoch":"{epoch}"}}"#
    ))
    .await;
    assert_eq!(c.frame().await, json!({"type":"ack","id":1}));
    let m = c.frame().await;
    assert_eq!(
        (m["type"].as_str(), m["seq"].as_u64()),
        (Some("message"), Some(1))
    );
    assert_eq!(
        t0.elapsed(),
        Duration::from_secs(1),
        "first retry after 1 s"
    );
    // The `resumed` the failed pass owed comes with the retry.
    assert_eq!(c.frame().await, resumed("room:r", true, 1, &epoch));
}

/// The session future lives in its task for as long as the connection, so
/// its size is part of every idle session's memory: what runs only now and
/// then (commands, catch-up, joins, a write that has to wait) is boxed
/// while it runs instead. A bound that catches such a future slipping back
/// in (a command's alone is over a kilobyte), not a target.
#[tokio::test]
async fn the_session_future_stays_small() {
    let t = TestNode::start(TestNode::config()).await;
    let (server_tx, _rx) = mpsc::channel::<Message>(1);
    let (_tx, server_rx) = mpsc::channel(1);
    let session = conn::serve(
        Arc::clone(&t.node),
        Duplex {
            sink: server_tx,
            stream: server_rx,
        },
        wsring_auth::Identity::unrestricted("alice"),
        None,
        false,
    );
    let size = std::mem::size_of_val(&session);
    println!("the session future: {size} bytes");
    assert!(size <= 2 * 1024, "{size} bytes");
}

/// A Pusher connection runs the same loop with the Pusher codec at its
/// edges: `connection_established` first, Pusher frames in, room messages
/// out as channel events, `pusher:ping` for the keep-alive, 4200 for a
/// drain's move.
#[tokio::test]
async fn a_pusher_session_speaks_pusher_at_every_edge() {
    tokio::time::pause();
    let t = TestNode::start(TestNode::config()).await;
    let (server_tx, rx) = mpsc::channel(64);
    let (tx, server_rx) = mpsc::channel(64);
    let app = Arc::new(wsring_auth::pusher::PusherApp::new(
        "1", "key", "secret", false,
    ));
    let task = tokio::spawn(conn::serve_as(
        Arc::clone(&t.node),
        Duplex {
            sink: server_tx,
            stream: server_rx,
        },
        wsring_auth::Identity::unrestricted("pusher:7.1"),
        None,
        false,
        Some(Box::new(crate::pusher::PusherConn::new("7.1".into(), app))),
    ));
    let mut c = Client { tx, rx, task };
    let f = c.frame().await;
    assert_eq!(f["event"], "pusher:connection_established");
    let data: Value = serde_json::from_str(f["data"].as_str().expect("string")).expect("JSON");
    assert_eq!(data["socket_id"], "7.1");

    c.text(r#"{"event":"pusher:subscribe","data":{"channel":"news"}}"#)
        .await;
    let f = c.frame().await;
    assert_eq!(
        (f["event"].as_str(), f["channel"].as_str()),
        (Some("pusher_internal:subscription_succeeded"), Some("news"))
    );
    let event = crate::pusher::frames::RoomEvent {
        event: "greet".into(),
        data: serde_json::value::RawValue::from_string(r#""hi""#.into()).expect("raw"),
        socket_id: None,
        user_id: None,
        terminate: false,
    };
    t.node
        .publish_room(None, "news", &event.to_raw(), None, None)
        .await
        .expect("published");
    assert_eq!(
        c.frame().await,
        json!({"event":"greet","channel":"news","data":"hi"})
    );

    c.send(Ok(Message::Binary(bytes::Bytes::from_static(b"x"))))
        .await;
    assert_eq!(c.frame().await["event"], "pusher:error");

    // The keep-alive is the protocol's own ping, not a WebSocket one.
    tokio::time::advance(t.node.cfg.ping_interval).await;
    match c.next().await {
        Some(Message::Text(t)) => assert!(t.as_str().contains("pusher:ping"), "{t}"),
        other => panic!("expected pusher:ping, got {other:?}"),
    }

    let h = t.node.table.user_sessions("pusher:7.1").remove(0);
    assert_eq!(h.codec, crate::sessions::Codec::Pusher);
    h.offer(Outbound::Moved {
        epoch: 9,
        retry_after_ms: 0,
    });
    assert_eq!(c.close_frame().await.0, 4200, "reconnect now");
}
