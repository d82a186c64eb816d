//! The Pusher Channels wire format (protocol 7): what a client sends, what
//! the server sends, and how the session core's deliveries (native room
//! messages and `presence` frames) are written for a Pusher connection.
//!
//! Every Pusher frame is `{"event","channel"?,"data"?}`. Pusher sends the
//! `data` of its own `pusher:*`/`pusher_internal:*` events as a JSON string
//! holding JSON (errors excepted), and relays application events' `data` as
//! it was given; clients parse a string that holds JSON.
//!
//! A Pusher event travels through the cluster as the `data` of an ordinary
//! room message, the room being the channel: [`RoomEvent`], which carries
//! the socket to leave out (a trigger's `socket_id`, a client event's
//! sender). Each Pusher connection drops what names itself there, on
//! whichever node it is.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;

use super::channel::Member;

/// A frame from a Pusher client.
#[derive(Debug, Deserialize)]
pub(crate) struct ClientFrame {
    pub event: String,
    #[serde(default)]
    pub channel: Option<String>,
    #[serde(default)]
    pub data: Option<Box<RawValue>>,
}

impl ClientFrame {
    /// The `data` as an object: pusher-js sends objects, some clients a
    /// string holding one.
    pub fn data_object<T: for<'de> Deserialize<'de>>(&self) -> Option<T> {
        let raw = self.data.as_deref()?;
        if let Ok(t) = serde_json::from_str(raw.get()) {
            return Some(t);
        }
        let text: String = serde_json::from_str(raw.get()).ok()?;
        serde_json::from_str(&text).ok()
    }
}

/// `pusher:subscribe`'s data.
#[derive(Debug, Deserialize)]
pub(crate) struct Subscribe {
    pub channel: String,
    #[serde(default)]
    pub auth: Option<String>,
    #[serde(default)]
    pub channel_data: Option<String>,
}

/// `pusher:signin`'s data.
#[derive(Debug, Deserialize)]
pub(crate) struct Signin {
    /// The user's JSON, as signed.
    pub user_data: String,
    pub auth: String,
}

/// `pusher:unsubscribe`'s data.
#[derive(Debug, Deserialize)]
pub(crate) struct Unsubscribe {
    pub channel: String,
}

/// A Pusher event as it travels in a room message's `data`.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct RoomEvent {
    pub event: String,
    pub data: Box<RawValue>,
    /// The connection that does not get it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub socket_id: Option<String>,
    /// A client event's sender on a presence channel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// Not an event: every receiving connection closes
    /// (`terminate_connections`, sent to a user's own channel).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub terminate: bool,
}

/// What a delivery becomes on a Pusher connection.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Delivery {
    /// A frame to send.
    Frame(String),
    /// Close the connection with this code and reason.
    Close(u16, &'static str),
}

impl RoomEvent {
    /// The room message data for this event.
    pub fn to_raw(&self) -> Box<RawValue> {
        let text = serde_json::to_string(self).unwrap_or_else(|_| "null".to_owned());
        RawValue::from_string(text).unwrap_or_else(|_| null())
    }
}

pub(crate) fn null() -> Box<RawValue> {
    match RawValue::from_string("null".to_owned()) {
        Ok(v) => v,
        Err(_) => unreachable!("null is JSON"),
    }
}

#[derive(Serialize)]
struct Out<'a, D: Serialize + ?Sized> {
    event: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    channel: Option<&'a str>,
    data: &'a D,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_id: Option<&'a str>,
}

/// A frame with `data` as given.
pub(crate) fn event<D: Serialize + ?Sized>(event: &str, channel: Option<&str>, data: &D) -> String {
    let out = Out {
        event,
        channel,
        data,
        user_id: None,
    };
    serde_json::to_string(&out).unwrap_or_default()
}

/// A frame whose `data` is `data` encoded as a JSON string, as Pusher
/// sends its own events.
pub(crate) fn internal(event_name: &str, channel: Option<&str>, data: &Value) -> String {
    event(event_name, channel, &data.to_string())
}

/// `pusher:connection_established`.
pub(crate) fn connection_established(socket_id: &str, activity_timeout: u64) -> String {
    internal(
        "pusher:connection_established",
        None,
        &serde_json::json!({"socket_id": socket_id, "activity_timeout": activity_timeout}),
    )
}

/// `pusher:ping`, the server's keep-alive for a Pusher connection.
pub(crate) fn ping() -> String {
    internal("pusher:ping", None, &serde_json::json!({}))
}

/// `pusher:error` (its data is an object, as Pusher sends it).
pub(crate) fn error(code: Option<u16>, message: &str) -> String {
    event(
        "pusher:error",
        None,
        &serde_json::json!({"code": code, "message": message}),
    )
}

/// `pusher:subscription_error` for `channel`.
pub(crate) fn subscription_error(channel: &str, status: u16, kind: &str, message: &str) -> String {
    event(
        "pusher:subscription_error",
        Some(channel),
        &serde_json::json!({"type": kind, "error": message, "status": status}),
    )
}

/// `pusher_internal:subscription_succeeded`, with the member list on a
/// presence channel (one entry per user id).
pub(crate) fn subscription_succeeded(channel: &str, members: Option<&[Member]>) -> String {
    let data = match members {
        None => serde_json::json!({}),
        Some(members) => {
            let mut ids = Vec::new();
            let mut hash = serde_json::Map::new();
            for m in members {
                if !hash.contains_key(&m.user_id) {
                    ids.push(m.user_id.clone());
                    hash.insert(m.user_id.clone(), m.user_info.clone());
                }
            }
            serde_json::json!({"presence": {"count": ids.len(), "ids": ids, "hash": hash}})
        }
    };
    internal(
        "pusher_internal:subscription_succeeded",
        Some(channel),
        &data,
    )
}

/// The parts of a native server frame a Pusher connection may receive.
#[derive(Deserialize)]
struct Native {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    room: Option<String>,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    event: Option<String>,
    #[serde(default)]
    data: Option<Box<RawValue>>,
}

/// What a delivery of the session core becomes on a Pusher connection
/// with socket `socket_id`; `is_presence(channel)` says whether the
/// connection is subscribed to `channel` as a presence channel (`None`:
/// not subscribed). `None`: nothing (not for this connection, or nothing
/// Pusher has a frame for).
pub(crate) fn delivery(
    frame: &str,
    socket_id: &str,
    subscribed: impl Fn(&str) -> Option<bool>,
) -> Option<Delivery> {
    let n: Native = serde_json::from_str(frame).ok()?;
    let room = n.room?;
    let presence = subscribed(&room)?;
    match n.kind.as_str() {
        "message" => {
            let e: RoomEvent = serde_json::from_str(n.data?.get()).ok()?;
            if e.terminate {
                return Some(Delivery::Close(
                    super::code::TERMINATED,
                    "connection terminated by the server",
                ));
            }
            if e.socket_id.as_deref() == Some(socket_id) {
                return None;
            }
            let out = Out {
                event: &e.event,
                channel: Some(&room),
                data: &e.data,
                user_id: e.user_id.as_deref(),
            };
            serde_json::to_string(&out).ok().map(Delivery::Frame)
        }
        "presence" if presence => {
            let m = Member::decode(&n.user?)?;
            let frame = match n.event.as_deref()? {
                "join" => Some(internal(
                    "pusher_internal:member_added",
                    Some(&room),
                    &serde_json::json!({"user_id": m.user_id, "user_info": m.user_info}),
                )),
                "leave" => Some(internal(
                    "pusher_internal:member_removed",
                    Some(&room),
                    &serde_json::json!({"user_id": m.user_id}),
                )),
                _ => None,
            };
            frame.map(Delivery::Frame)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use wsring_protocol::MessageFrame;

    /// A delivery's frame.
    fn delivered(
        frame: &str,
        socket_id: &str,
        subscribed: impl Fn(&str) -> Option<bool>,
    ) -> Option<String> {
        match delivery(frame, socket_id, subscribed)? {
            Delivery::Frame(f) => Some(f),
            Delivery::Close(..) => None,
        }
    }

    fn parse(s: &str) -> Value {
        serde_json::from_str(s).expect("JSON")
    }

    /// The `data` of an internal event, decoded from its string.
    fn inner(v: &Value) -> Value {
        parse(v["data"].as_str().expect("string data"))
    }

    #[test]
    fn connection_established_carries_its_data_as_a_string() {
        let f = parse(&connection_established("123.456", 120));
        assert_eq!(f["event"], "pusher:connection_established");
        assert_eq!(
            inner(&f),
            json!({"socket_id":"123.456","activity_timeout":120})
        );
    }

    #[test]
    fn subscribe_data_is_read_as_object_or_string() {
        for text in [
            r#"{"event":"pusher:subscribe","data":{"channel":"a","auth":"k:s"}}"#,
            r#"{"event":"pusher:subscribe","data":"{\"channel\":\"a\",\"auth\":\"k:s\"}"}"#,
        ] {
            let f: ClientFrame = serde_json::from_str(text).expect("frame");
            let s: Subscribe = f.data_object().expect("subscribe data");
            assert_eq!((s.channel.as_str(), s.auth.as_deref()), ("a", Some("k:s")));
        }
    }

    #[test]
    fn presence_list_has_one_entry_per_user_id() {
        let members = [
            Member::new("1".into(), json!({"n":"a"})),
            Member::new("2".into(), Value::Null),
            Member::new("1".into(), json!({"n":"a"})),
        ];
        let f = parse(&subscription_succeeded("presence-x", Some(&members)));
        assert_eq!(f["channel"], "presence-x");
        assert_eq!(
            inner(&f),
            json!({"presence":{"count":2,"ids":["1","2"],"hash":{"1":{"n":"a"},"2":null}}})
        );
        let f = parse(&subscription_succeeded("x", None));
        assert_eq!(inner(&f), json!({}));
    }

    fn room_message(room: &str, e: &RoomEvent) -> String {
        MessageFrame::room(None, room, &e.to_raw()).render()
    }

    #[test]
    fn room_messages_become_channel_events_except_for_the_excluded_socket() {
        let e = RoomEvent {
            event: "greet".into(),
            data: RawValue::from_string(r#""{\"a\":1}""#.into()).expect("raw"),
            socket_id: Some("1.1".into()),
            user_id: None,
            terminate: false,
        };
        let frame = room_message("c", &e);
        let subscribed = |c: &str| (c == "c").then_some(false);
        let out = delivered(&frame, "2.2", subscribed).expect("delivered");
        assert_eq!(
            parse(&out),
            json!({"event":"greet","channel":"c","data":"{\"a\":1}"})
        );
        assert_eq!(delivered(&frame, "1.1", subscribed), None, "excluded");
        assert_eq!(delivered(&frame, "2.2", |_| None), None, "not subscribed");
        // A client event on a presence channel names its sender.
        let e = RoomEvent {
            user_id: Some("u1".into()),
            ..e
        };
        let out = delivered(&room_message("c", &e), "2.2", subscribed).expect("delivered");
        assert_eq!(parse(&out)["user_id"], "u1");
        // Native payloads that are not Pusher events are not delivered.
        let native = MessageFrame::room(
            Some("bob"),
            "c",
            &RawValue::from_string("1".into()).expect("raw"),
        )
        .render();
        assert_eq!(delivered(&native, "2.2", subscribed), None);
    }

    #[test]
    fn terminate_closes_every_receiver() {
        let e = RoomEvent {
            event: "pusher_internal:terminate".into(),
            data: null(),
            socket_id: None,
            user_id: None,
            terminate: true,
        };
        let frame = room_message("#server-to-user-u", &e);
        let subscribed = |c: &str| (c == "#server-to-user-u").then_some(false);
        assert_eq!(
            delivery(&frame, "2.2", subscribed),
            Some(Delivery::Close(4009, "connection terminated by the server"))
        );
        assert_eq!(delivery(&frame, "2.2", |_| None), None, "not signed in");
    }

    #[test]
    fn presence_frames_become_member_events() {
        let m = Member::new("7".into(), json!({"name":"Ann"}));
        let frame = |event: &str| {
            json!({"type":"presence","room":"presence-r","user":m.key.as_ref(),"event":event})
                .to_string()
        };
        let subscribed = |c: &str| (c == "presence-r").then_some(true);
        let added = parse(&delivered(&frame("join"), "1.1", subscribed).expect("added"));
        assert_eq!(added["event"], "pusher_internal:member_added");
        assert_eq!(
            inner(&added),
            json!({"user_id":"7","user_info":{"name":"Ann"}})
        );
        let removed = parse(&delivered(&frame("leave"), "1.1", subscribed).expect("removed"));
        assert_eq!(removed["event"], "pusher_internal:member_removed");
        assert_eq!(inner(&removed), json!({"user_id":"7"}));
        // Only presence subscribers hear them.
        assert_eq!(
            delivered(&frame("join"), "1.1", |c: &str| (c == "presence-r")
                .then_some(false)),
            None
        );
    }

    #[test]
    fn errors() {
        let f = parse(&error(Some(4001), "unknown app key"));
        assert_eq!(
            f,
            json!({"event":"pusher:error","data":{"code":4001,"message":"unknown app key"}})
        );
        let f = parse(&subscription_error("private-a", 401, "AuthError", "bad"));
        assert_eq!(f["channel"], "private-a");
        assert_eq!(f["data"]["status"], 401);
    }
}
