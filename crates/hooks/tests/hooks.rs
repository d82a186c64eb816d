//! Webhooks and proxies against a real HTTP receiver on loopback: an axum
//! app that verifies signatures and can fail, refuse or hang on purpose.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use wsring_hooks::{
    Event, Format, Proxy, ProxyConfig, ProxyError, WebhookConfig, Webhooks, WhenDown, verify,
};

const SECRET: &str = "test-secret";
const PUSHER_KEY: &str = "app-key";

/// What the receiver does with request number `n` (0-based).
type Behaviour = Arc<dyn Fn(usize) -> Answer + Send + Sync>;

#[derive(Clone, Copy)]
enum Answer {
    Ok,
    Status(u16),
    Hang,
}

#[derive(Default)]
struct Seen {
    requests: usize,
    bad_signatures: usize,
    /// Event ids of accepted batches, in order.
    accepted: Vec<String>,
    batch_sizes: Vec<usize>,
    bodies: Vec<Value>,
}

#[derive(Clone)]
struct Receiver {
    seen: Arc<Mutex<Seen>>,
    changed: Arc<Notify>,
    behaviour: Behaviour,
}

async fn hook(State(r): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let answer = {
        let mut s = r.seen.lock().expect("lock");
        let n = s.requests;
        s.requests += 1;
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let signed = header("x-wsring-signature")
            .is_some_and(|sig| verify(SECRET.as_bytes(), &body, sig))
            // Pusher's format: the bare hex digest, and the app key.
            || (header("x-pusher-key") == Some(PUSHER_KEY)
                && header("x-pusher-signature").is_some_and(|sig| {
                    verify(SECRET.as_bytes(), &body, &format!("sha256={sig}"))
                }));
        if !signed {
            s.bad_signatures += 1;
        }
        let answer = (r.behaviour)(n);
        if matches!(answer, Answer::Ok) {
            let v: Value = serde_json::from_slice(&body).expect("JSON body");
            let events = v["events"].as_array().expect("events").clone();
            s.batch_sizes.push(events.len());
            for e in &events {
                let id = e["id"].as_str().or_else(|| e["name"].as_str());
                s.accepted.push(id.expect("id or name").to_owned());
            }
            s.bodies.push(v);
        }
        answer
    };
    r.changed.notify_waiters();
    match answer {
        Answer::Ok => StatusCode::OK,
        Answer::Status(s) => StatusCode::from_u16(s).expect("status"),
        Answer::Hang => {
            std::future::pending::<()>().await;
            StatusCode::OK
        }
    }
}

async fn receiver(
    behaviour: impl Fn(usize) -> Answer + Send + Sync + 'static,
) -> (String, Receiver) {
    let r = Receiver {
        seen: Arc::default(),
        changed: Arc::default(),
        behaviour: Arc::new(behaviour),
    };
    let app = axum::Router::new()
        .route("/hook", post(hook))
        .with_state(r.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}/hook"), r)
}

impl Receiver {
    /// Waits (bounded) until `cond` holds for what was seen.
    async fn until(&self, what: &str, cond: impl Fn(&Seen) -> bool) {
        let wait = async {
            loop {
                let changed = self.changed.notified();
                if cond(&self.seen.lock().expect("lock")) {
                    return;
                }
                // Also re-check now and then: a notification may land
                // between the check and the wait.
                let _ = tokio::time::timeout(Duration::from_millis(50), changed).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(20), wait)
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for {what}"));
    }
}

/// Waits (bounded) until the sender's counters satisfy `cond`: they are
/// updated once the receiver's answer is back, just after it recorded the
/// batch.
async fn until_stats(hooks: &Webhooks, cond: impl Fn(&wsring_hooks::WebhookStats) -> bool) {
    for _ in 0..400 {
        if cond(&hooks.stats()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("counters never got there: {:?}", hooks.stats());
}

fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder().build().expect("client")
}

fn config(url: &str) -> WebhookConfig {
    WebhookConfig {
        urls: vec![url.to_owned()],
        secret: Some(SECRET.into()),
        retry_base: Duration::from_millis(20),
        retry_cap: Duration::from_millis(100),
        ..WebhookConfig::default()
    }
}

fn ev(i: usize) -> Event {
    Event::new("session.connected").with("user", format!("u{i}"))
}

#[tokio::test]
async fn signed_batches_carry_every_event_once_in_order() {
    let (url, r) = receiver(|_| Answer::Ok).await;
    let hooks = Webhooks::start(config(&url), client(), "n1-abc");
    let ids: Vec<String> = (0..250).filter_map(|i| hooks.emit(ev(i))).collect();
    assert_eq!(ids.len(), 250);
    r.until("all events", |s| s.accepted.len() >= 250).await;
    {
        let s = r.seen.lock().expect("lock");
        assert_eq!(s.accepted, ids, "every event once, in order");
        assert_eq!(s.bad_signatures, 0);
        assert!(
            s.batch_sizes.iter().all(|n| *n <= 100),
            "{:?}",
            s.batch_sizes
        );
        assert!(
            s.batch_sizes.len() < 250,
            "events were batched: {:?}",
            s.batch_sizes
        );
        let first = &s.bodies[0]["events"][0];
        assert_eq!(first["type"], "session.connected");
        assert_eq!(first["user"], "u0");
        assert!(
            first["at_ms"]
                .as_u64()
                .is_some_and(|t| t > 1_600_000_000_000)
        );
        assert_eq!(first["id"], "n1-abc-1");
    }
    until_stats(&hooks, |st| st.delivered == 250).await;
}

#[tokio::test]
async fn pusher_format_is_pushers_body_and_headers() {
    let (url, r) = receiver(|_| Answer::Ok).await;
    let cfg = WebhookConfig {
        format: Format::Pusher {
            key: PUSHER_KEY.into(),
        },
        ..config(&url)
    };
    let hooks = Webhooks::start(cfg, client(), "n1");
    hooks.emit(Event::new("channel_occupied").with("channel", "news"));
    hooks.emit(
        Event::new("member_added")
            .with("channel", "presence-a")
            .with("user_id", "7"),
    );
    r.until("both events", |s| s.accepted.len() == 2).await;
    let s = r.seen.lock().expect("lock");
    assert_eq!(
        s.bad_signatures, 0,
        "signed with the app secret, Pusher's way"
    );
    let body = &s.bodies[0];
    assert!(
        body["time_ms"]
            .as_u64()
            .is_some_and(|t| t > 1_600_000_000_000)
    );
    assert_eq!(
        body["events"],
        json!([
            {"name":"channel_occupied","channel":"news"},
            {"name":"member_added","channel":"presence-a","user_id":"7"}
        ]),
        "no wsring id, type or at_ms"
    );
}

#[tokio::test]
async fn unsigned_without_a_secret_and_every_url_gets_every_event() {
    let (a, ra) = receiver(|_| Answer::Ok).await;
    let (b, rb) = receiver(|_| Answer::Ok).await;
    let cfg = WebhookConfig {
        urls: vec![a, b],
        secret: None,
        ..WebhookConfig::default()
    };
    let hooks = Webhooks::start(cfg, client(), "n");
    for i in 0..5 {
        hooks.emit(ev(i));
    }
    ra.until("5 at a", |s| s.accepted.len() == 5).await;
    rb.until("5 at b", |s| s.accepted.len() == 5).await;
    let s = ra.seen.lock().expect("lock");
    assert_eq!(s.bad_signatures, s.requests, "no secret, no signature");
}

#[tokio::test]
async fn failed_batches_are_retried_with_the_same_ids() {
    // 503, 500, then a hang past the timeout, then success.
    let (url, r) = receiver(|n| match n {
        0 => Answer::Status(503),
        1 => Answer::Status(500),
        2 => Answer::Hang,
        _ => Answer::Ok,
    })
    .await;
    let cfg = WebhookConfig {
        timeout: Duration::from_millis(300),
        ..config(&url)
    };
    let hooks = Webhooks::start(cfg, client(), "n");
    let ids: Vec<String> = (0..3).filter_map(|i| hooks.emit(ev(i))).collect();
    r.until("the retried batch", |s| s.accepted.len() >= 3)
        .await;
    assert_eq!(r.seen.lock().expect("lock").accepted, ids);
    until_stats(&hooks, |st| st.delivered == 3).await;
    let st = hooks.stats();
    assert_eq!(st.dropped, 0);
    assert!(st.retries >= 3, "{st:?}");
}

#[tokio::test]
async fn a_refused_batch_is_dropped_not_retried() {
    let (url, r) = receiver(|n| {
        if n == 0 {
            Answer::Status(400)
        } else {
            Answer::Ok
        }
    })
    .await;
    let hooks = Webhooks::start(config(&url), client(), "n");
    hooks.emit(ev(0));
    r.until("the refusal", |s| s.requests == 1).await;
    let id = hooks.emit(ev(1)).expect("id");
    r.until("the next batch", |s| s.accepted.len() == 1).await;
    assert_eq!(r.seen.lock().expect("lock").accepted, vec![id]);
    let st = hooks.stats();
    assert_eq!((st.dropped, st.retries), (1, 0));
}

#[tokio::test]
async fn a_full_queue_drops_and_counts_without_blocking() {
    // The receiver hangs, so nothing leaves the queue after the first batch.
    let (url, r) = receiver(|_| Answer::Hang).await;
    let cfg = WebhookConfig {
        queue_bytes: 4096,
        timeout: Duration::from_secs(60),
        ..config(&url)
    };
    let hooks = Webhooks::start(cfg, client(), "n");
    hooks.emit(ev(0));
    r.until("the first request", |s| s.requests == 1).await;
    let per_event = 80; // each serialised event is about this big
    let n = 4096 / per_event * 4;
    for i in 0..n {
        hooks.emit(ev(i));
    }
    let st = hooks.stats();
    assert_eq!(st.emitted, n as u64 + 1);
    assert!(st.dropped > 0, "{st:?}");
    assert!(st.dropped < n as u64, "{st:?}");
}

#[tokio::test]
async fn shutdown_flushes_what_is_queued() {
    let (url, r) = receiver(|_| Answer::Ok).await;
    let cfg = WebhookConfig {
        batch_delay: Duration::from_secs(30),
        ..config(&url)
    };
    let hooks = Webhooks::start(cfg, client(), "n");
    for i in 0..3 {
        hooks.emit(ev(i));
    }
    hooks.shutdown(Duration::from_secs(5)).await;
    assert_eq!(r.seen.lock().expect("lock").accepted.len(), 3);
    assert_eq!(hooks.emit(ev(9)).map(|_| ()), Some(()), "ids still issued");
    assert_eq!(hooks.stats().delivered, 3);
}

fn proxy_config(url: &str) -> ProxyConfig {
    ProxyConfig {
        timeout: Duration::from_millis(300),
        failure_threshold: 2,
        open_for: Duration::from_millis(400),
        secret: Some(SECRET.into()),
        ..ProxyConfig::new(url)
    }
}

#[tokio::test]
async fn proxy_answers_times_out_opens_and_recovers() {
    // Two hangs (timeouts), then answers.
    let (url, r) = receiver(|n| if n < 2 { Answer::Hang } else { Answer::Ok }).await;
    let p = Proxy::new("publish", proxy_config(&url), client());
    let q = json!({"events": []});
    assert!(matches!(p.call(&q).await, Err(ProxyError::Timeout(..))));
    assert!(matches!(p.call(&q).await, Err(ProxyError::Timeout(..))));
    // Two failures in a row: open, and no request reaches the application.
    assert_eq!(p.call(&q).await, Err(ProxyError::Open("publish")));
    assert_eq!(r.seen.lock().expect("lock").requests, 2);
    // After open_for, a probe goes through and closes the breaker.
    let reply = loop {
        match p.call(&q).await {
            Err(ProxyError::Open(_)) => tokio::time::sleep(Duration::from_millis(50)).await,
            other => break other.expect("probe answered"),
        }
    };
    assert_eq!(reply.status, 200);
    assert_eq!(r.seen.lock().expect("lock").bad_signatures, 0);
    assert!(p.call(&q).await.is_ok());
}

#[tokio::test]
async fn proxy_to_nothing_is_unreachable_and_busy_past_its_slots() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let dead = format!("http://{}/", listener.local_addr().expect("addr"));
    drop(listener);
    let p = Proxy::new("connect", proxy_config(&dead), client());
    assert!(matches!(
        p.call(&json!({})).await,
        Err(ProxyError::Unreachable(..))
    ));
    assert_eq!(p.when_down(), WhenDown::Reject);

    let (url, r) = receiver(|_| Answer::Hang).await;
    let one = ProxyConfig {
        max_in_flight: 1,
        timeout: Duration::from_secs(10),
        ..proxy_config(&url)
    };
    let p = Proxy::new("connect", one, client());
    let waiting = tokio::spawn({
        let p = p.clone();
        async move { p.call(&json!({})).await }
    });
    r.until("the first call", |s| s.requests == 1).await;
    assert_eq!(p.call(&json!({})).await, Err(ProxyError::Busy("connect")));
    waiting.abort();
}

/// An in-process spool: what the cluster backend's queues are to a node.
#[derive(Default)]
struct TestSpool {
    queues: Mutex<std::collections::BTreeMap<String, (u64, Vec<wsring_hooks::Spooled>)>>,
}

#[async_trait::async_trait]
impl wsring_hooks::Spool for TestSpool {
    async fn append(&self, queue: &str, events: &[Bytes]) -> Result<(), wsring_hooks::SpoolError> {
        let mut qs = self.queues.lock().expect("lock");
        let (last, q) = qs.entry(queue.to_owned()).or_default();
        for e in events {
            *last += 1;
            q.push(wsring_hooks::Spooled {
                seq: *last,
                body: e.clone(),
            });
        }
        Ok(())
    }
    async fn head(
        &self,
        queue: &str,
        max: usize,
    ) -> Result<Vec<wsring_hooks::Spooled>, wsring_hooks::SpoolError> {
        let qs = self.queues.lock().expect("lock");
        Ok(qs
            .get(queue)
            .map(|(_, q)| q.iter().take(max).cloned().collect())
            .unwrap_or_default())
    }
    async fn remove(&self, queue: &str, upto: u64) -> Result<(), wsring_hooks::SpoolError> {
        if let Some((_, q)) = self.queues.lock().expect("lock").get_mut(queue) {
            q.retain(|e| e.seq > upto);
        }
        Ok(())
    }
    async fn forget(&self, queue: &str) -> Result<(), wsring_hooks::SpoolError> {
        self.queues.lock().expect("lock").remove(queue);
        Ok(())
    }
}

impl TestSpool {
    fn held(&self) -> Vec<(String, usize)> {
        let qs = self.queues.lock().expect("lock");
        qs.iter().map(|(k, (_, q))| (k.clone(), q.len())).collect()
    }
}

#[tokio::test]
async fn durable_events_outlive_their_process_and_are_adopted_with_their_ids() {
    let up = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let u = Arc::clone(&up);
    let (url, r) = receiver(move |_| {
        if u.load(std::sync::atomic::Ordering::SeqCst) {
            Answer::Ok
        } else {
            Answer::Status(503)
        }
    })
    .await;
    let spool = Arc::new(TestSpool::default());
    // The first process queues three events while the receiver is down,
    // then stops: they stay in the spool.
    let a = Webhooks::start_durable(config(&url), client(), "a");
    let early = a.emit(ev(0)).expect("id");
    a.attach(spool.clone(), "1-a");
    let mut ids = vec![early];
    ids.extend((1..3).filter_map(|i| a.emit(ev(i))));
    r.until("a failed attempt", |s| s.requests >= 1).await;
    for _ in 0..200 {
        if spool.held().iter().map(|(_, n)| n).sum::<usize>() == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    a.shutdown(Duration::from_secs(2)).await;
    let held = spool.held();
    assert_eq!(held.len(), 1, "{held:?}");
    let (queue, n) = held[0].clone();
    assert_eq!(n, 3, "every event waits in the spool");
    assert_eq!(a.stats().dropped, 0, "nothing counted lost");
    // Another process adopts the queue once the receiver is back.
    up.store(true, std::sync::atomic::Ordering::SeqCst);
    let b = Webhooks::start_durable(config(&url), client(), "b");
    assert!(!b.adopt(&queue), "nothing to adopt with before a spool");
    b.attach(spool.clone(), "2-b");
    assert_eq!(b.queue_owner(&queue), Some("1-a"));
    assert_eq!(b.queue_owner("0000000000000000-1-a"), None, "another URL");
    assert!(b.adopt(&queue));
    r.until("the adopted events", |s| s.accepted.len() >= 3)
        .await;
    assert_eq!(
        r.seen.lock().expect("lock").accepted,
        ids,
        "the ids the first process gave"
    );
    for _ in 0..200 {
        if spool.held().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(spool.held().is_empty(), "the adopted queue is forgotten");
    b.shutdown(Duration::from_secs(1)).await;
}
