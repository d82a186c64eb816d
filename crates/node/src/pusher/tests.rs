//! [`PusherConn`] on a test node: each client frame applied to a real
//! session state and node (rooms, roster, broker), without a socket.

use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use wsring_auth::pusher::PusherApp;

use super::PusherConn;
use crate::node::testing::TestNode;
use crate::session::state::SessionState;
use crate::sessions::Outbound;

fn app(client_events: bool) -> Arc<PusherApp> {
    Arc::new(PusherApp::new("1", "key", "secret", client_events))
}

/// The reply frame of applying `frame`, parsed.
async fn apply(p: &mut PusherConn, s: &mut SessionState, t: &TestNode, frame: Value) -> Value {
    let o = p.apply(&frame.to_string(), s, &t.node).await;
    serde_json::from_str(o.reply.as_deref().unwrap_or("null")).expect("JSON reply")
}

/// The data of an internal event, decoded from its string.
fn inner(v: &Value) -> Value {
    serde_json::from_str(v["data"].as_str().expect("string data")).expect("JSON data")
}

fn subscribe(channel: &str, auth: Option<String>, channel_data: Option<&str>) -> Value {
    json!({"event":"pusher:subscribe","data":{"channel":channel,"auth":auth,"channel_data":channel_data}})
}

/// The next frame the core queued for a session, as that connection's
/// Pusher frame (`None`: nothing for it).
async fn next_for(p: &PusherConn, rx: &mut crate::outbox::Receiver) -> Option<Value> {
    let item = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("a delivery within 5 s")
        .expect("queue open");
    let Outbound::Frame(f) = item else {
        panic!("expected a frame, got {item:?}");
    };
    p.delivery(f.as_str()).map(|d| match d {
        super::Delivery::Frame(t) => serde_json::from_str(&t).expect("JSON"),
        super::Delivery::Close(code, _) => json!({ "close": code }),
    })
}

#[tokio::test]
async fn signin_puts_the_connection_in_its_users_channel() {
    let t = TestNode::start(TestNode::config()).await;
    let app = app(false);
    let (mut s, mut rx) = t.live_state("pusher:1.1");
    let mut p = PusherConn::new("1.1".into(), Arc::clone(&app));
    let user_data = r#"{"id":"u-7","user_info":{"name":"Ann"}}"#;
    let signin =
        |auth: String| json!({"event":"pusher:signin","data":{"user_data":user_data,"auth":auth}});

    let own_channel = || subscribe("#server-to-user-u-7", None, None);
    // Signed for another socket: refused with 4009, not signed in.
    let f = apply(&mut p, &mut s, &t, signin(app.user_auth("9.9", user_data))).await;
    assert_eq!(
        (f["event"].as_str(), f["data"]["code"].as_u64()),
        (Some("pusher:error"), Some(4009))
    );
    let f = apply(&mut p, &mut s, &t, own_channel()).await;
    assert_eq!(
        f["data"]["status"], 403,
        "not signed in: not in the user's channel"
    );

    let f = apply(&mut p, &mut s, &t, signin(app.user_auth("1.1", user_data))).await;
    assert_eq!(f["event"], "pusher:signin_success");
    assert_eq!(inner(&f), json!({ "user_data": user_data }));
    assert!(t.node.table.is_in(&s.handle.id, "#server-to-user-u-7"));
    // pusher-js then subscribes to it.
    let f = apply(&mut p, &mut s, &t, own_channel()).await;
    assert_eq!(f["event"], "pusher_internal:subscription_succeeded");

    // A user id that is not a string is refused, even when signed.
    let bad = r#"{"id":7}"#;
    let f = apply(
        &mut p,
        &mut s,
        &t,
        json!({"event":"pusher:signin","data":{"user_data":bad,"auth":app.user_auth("1.1", bad)}}),
    )
    .await;
    assert_eq!(f["data"]["code"], 4009);

    // sendToUser's events arrive; a terminate order closes with 4009.
    let event = super::frames::RoomEvent {
        event: "hello".into(),
        data: serde_json::value::RawValue::from_string("{}".into()).expect("raw"),
        socket_id: None,
        user_id: None,
        terminate: false,
    };
    t.node
        .publish_room(None, "#server-to-user-u-7", &event.to_raw(), None, None)
        .await
        .expect("published");
    let f = next_for(&p, &mut rx).await.expect("for this connection");
    assert_eq!(
        (f["event"].as_str(), f["channel"].as_str()),
        (Some("hello"), Some("#server-to-user-u-7"))
    );
    let order = super::frames::RoomEvent {
        terminate: true,
        ..event
    };
    t.node
        .publish_room(None, "#server-to-user-u-7", &order.to_raw(), None, None)
        .await
        .expect("published");
    assert_eq!(next_for(&p, &mut rx).await, Some(json!({"close": 4009})));
}

#[tokio::test]
async fn channels_of_each_kind_subscribe_with_the_right_auth_only() {
    let t = TestNode::start(TestNode::config()).await;
    let app = app(false);
    let (mut s, _rx) = t.live_state("pusher:1.1");
    let mut p = PusherConn::new("1.1".into(), Arc::clone(&app));

    let f = apply(&mut p, &mut s, &t, subscribe("news", None, None)).await;
    assert_eq!(f["event"], "pusher_internal:subscription_succeeded");
    assert_eq!(
        (f["channel"].as_str(), inner(&f)),
        (Some("news"), json!({}))
    );
    assert!(t.node.table.is_in(&s.handle.id, "news"));

    let f = apply(
        &mut p,
        &mut s,
        &t,
        subscribe("private-x", Some("key:00".into()), None),
    )
    .await;
    assert_eq!(f["event"], "pusher:subscription_error");
    assert_eq!(f["data"]["status"], 401);
    assert!(
        !t.node.table.is_in(&s.handle.id, "private-x"),
        "refused: not joined"
    );
    // Signed for another socket: refused too.
    let other = app.channel_auth("9.9", "private-x", None);
    let f = apply(
        &mut p,
        &mut s,
        &t,
        subscribe("private-x", Some(other), None),
    )
    .await;
    assert_eq!(f["data"]["status"], 401);
    let good = app.channel_auth("1.1", "private-x", None);
    let f = apply(&mut p, &mut s, &t, subscribe("private-x", Some(good), None)).await;
    assert_eq!(f["event"], "pusher_internal:subscription_succeeded");
    let enc = app.channel_auth("1.1", "private-encrypted-x", None);
    let f = apply(
        &mut p,
        &mut s,
        &t,
        subscribe("private-encrypted-x", Some(enc), None),
    )
    .await;
    assert_eq!(f["event"], "pusher_internal:subscription_succeeded");

    let data = r#"{"user_id":"u1","user_info":{"name":"Ann"}}"#;
    let auth = app.channel_auth("1.1", "presence-r", Some(data));
    let f = apply(
        &mut p,
        &mut s,
        &t,
        subscribe("presence-r", Some(auth), Some(data)),
    )
    .await;
    assert_eq!(f["event"], "pusher_internal:subscription_succeeded");
    assert_eq!(
        inner(&f),
        json!({"presence":{"count":1,"ids":["u1"],"hash":{"u1":{"name":"Ann"}}}})
    );
    // The room counts the member, not the connection's own user.
    assert!(
        t.node
            .table
            .user_in_room("[\"u1\",{\"name\":\"Ann\"}]", "presence-r")
    );

    let f = apply(&mut p, &mut s, &t, subscribe("bad name", None, None)).await;
    assert_eq!(
        (f["event"].as_str(), &f["data"]["status"]),
        (Some("pusher:subscription_error"), &json!(400))
    );
    let f = apply(&mut p, &mut s, &t, json!({"event":"pusher:ping","data":{}})).await;
    assert_eq!(f["event"], "pusher:pong");
    let o = p.apply("{not json", &mut s, &t.node).await;
    assert!(
        o.reply
            .as_deref()
            .is_some_and(|r| r.contains("pusher:error"))
            && o.close.is_none()
    );
}

#[tokio::test]
async fn presence_members_come_and_go_once_per_user_id() {
    let t = TestNode::start(TestNode::config()).await;
    let app = app(false);
    let data = |u: &str| format!(r#"{{"user_id":"{u}"}}"#);
    let join = |p: &PusherConn, u: &str| {
        let d = data(u);
        subscribe(
            "presence-r",
            Some(app.channel_auth(&p.socket_id, "presence-r", Some(&d))),
            Some(&d),
        )
    };
    let (mut sa, mut rxa) = t.live_state("pusher:1.1");
    let mut a = PusherConn::new("1.1".into(), Arc::clone(&app));
    let f = {
        let frame = join(&a, "ann");
        apply(&mut a, &mut sa, &t, frame).await
    };
    assert_eq!(inner(&f)["presence"]["count"], 1);

    let (mut sb, _rxb) = t.live_state("pusher:1.2");
    let mut b = PusherConn::new("1.2".into(), Arc::clone(&app));
    let f = {
        let frame = join(&b, "bob");
        apply(&mut b, &mut sb, &t, frame).await
    };
    assert_eq!(inner(&f)["presence"]["ids"], json!(["ann", "bob"]));
    let added = next_for(&a, &mut rxa).await.expect("member_added");
    assert_eq!(added["event"], "pusher_internal:member_added");
    assert_eq!(inner(&added), json!({"user_id":"bob","user_info":null}));

    // A second connection of bob: no news for ann, one entry for bob.
    let (mut sc, _rxc) = t.live_state("pusher:1.3");
    let mut c = PusherConn::new("1.3".into(), Arc::clone(&app));
    let f = {
        let frame = join(&c, "bob");
        apply(&mut c, &mut sc, &t, frame).await
    };
    assert_eq!(inner(&f)["presence"]["count"], 2);
    // Bob's first connection leaves: he is still here.
    let f = apply(
        &mut b,
        &mut sb,
        &t,
        json!({"event":"pusher:unsubscribe","data":{"channel":"presence-r"}}),
    )
    .await;
    assert_eq!(f, Value::Null, "unsubscribe has no answer");
    // His last one leaves: ann hears it, once, and nothing before it.
    t.node.remove_session(&sc.handle).await;
    let removed = next_for(&a, &mut rxa).await.expect("member_removed");
    assert_eq!(removed["event"], "pusher_internal:member_removed");
    assert_eq!(inner(&removed), json!({"user_id":"bob"}));
}

#[tokio::test]
async fn client_events_reach_others_never_the_sender_within_their_limits() {
    tokio::time::pause();
    let t = TestNode::start(TestNode::config()).await;
    let app = app(true);
    let (mut sa, mut rxa) = t.live_state("pusher:1.1");
    let mut a = PusherConn::new("1.1".into(), Arc::clone(&app));
    let (mut sb, mut rxb) = t.live_state("pusher:1.2");
    let mut b = PusherConn::new("1.2".into(), Arc::clone(&app));
    for (p, s) in [(&mut a, &mut sa), (&mut b, &mut sb)] {
        let auth = app.channel_auth(&p.socket_id, "private-c", None);
        apply(p, s, &t, subscribe("private-c", Some(auth), None)).await;
        apply(p, s, &t, subscribe("news", None, None)).await;
    }
    let ev = json!({"event":"client-typing","channel":"private-c","data":{"x":1}});
    assert_eq!(apply(&mut a, &mut sa, &t, ev.clone()).await, Value::Null);
    assert_eq!(
        next_for(&b, &mut rxb).await,
        Some(json!({"event":"client-typing","channel":"private-c","data":{"x":1}}))
    );
    assert_eq!(
        next_for(&a, &mut rxa).await,
        None,
        "the sender's copy is dropped"
    );

    // Ten a second: the eleventh at once is refused, the connection stays.
    for _ in 0..9 {
        assert_eq!(apply(&mut a, &mut sa, &t, ev.clone()).await, Value::Null);
    }
    let f = apply(&mut a, &mut sa, &t, ev.clone()).await;
    assert_eq!(
        (f["event"].as_str(), &f["data"]["code"]),
        (Some("pusher:error"), &json!(4301))
    );
    tokio::time::advance(Duration::from_millis(200)).await;
    assert_eq!(apply(&mut a, &mut sa, &t, ev.clone()).await, Value::Null);

    // Not on public channels, not on channels one is not in, not too big.
    let f = apply(
        &mut a,
        &mut sa,
        &t,
        json!({"event":"client-x","channel":"news","data":{}}),
    )
    .await;
    assert_eq!(f["event"], "pusher:error");
    let f = apply(
        &mut a,
        &mut sa,
        &t,
        json!({"event":"client-x","channel":"private-z","data":{}}),
    )
    .await;
    assert_eq!(f["event"], "pusher:error");
    let big = "x".repeat(super::MAX_EVENT_DATA_BYTES);
    let f = apply(
        &mut a,
        &mut sa,
        &t,
        json!({"event":"client-x","channel":"private-c","data":big}),
    )
    .await;
    assert_eq!(f["event"], "pusher:error");

    // An app without client events refuses them.
    let mut off = PusherConn::new("1.1".into(), self::app(false));
    let f = apply(&mut off, &mut sa, &t, ev).await;
    assert_eq!(f["event"], "pusher:error");
}
