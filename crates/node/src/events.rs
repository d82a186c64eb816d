//! The webhook events a node emits, one function per event type, so every
//! event's fields are declared in one place (and documented in
//! docs/INTEGRATION.md). Emitting never waits: see [`wsring_hooks::webhook`].

use serde_json::Value;
use serde_json::value::RawValue;
use wsring_hooks::{Event, Webhooks};

use crate::node::Node;
use crate::sessions::SessionHandle;

fn session_event(kind: &'static str, node: &Node, h: &SessionHandle) -> Event {
    Event::new(kind)
        .with("user", &*h.user)
        .with("session", &*h.id)
        .with("node", node.id())
}

/// A session started (after authentication and the `welcome` frame).
pub(crate) fn connected(node: &Node, h: &SessionHandle) {
    if node.hooks.enabled() {
        node.hooks.emit(session_event("session.connected", node, h));
    }
}

/// A session ended, with the close code and reason the connection ended
/// with (1006 and an empty reason when it ended without a close frame).
pub(crate) fn disconnected(node: &Node, h: &SessionHandle, code: u16, reason: &str) {
    if node.hooks.enabled() {
        node.hooks.emit(
            session_event("session.disconnected", node, h)
                .with("code", code)
                .with("reason", reason),
        );
    }
}

/// A session joined a room.
pub(crate) fn member_added(node: &Node, h: &SessionHandle, room: &str) {
    if node.hooks.enabled() {
        node.hooks
            .emit(session_event("room.member_added", node, h).with("room", room));
    }
}

/// A session left a room (by `leave`, or by ending).
pub(crate) fn member_removed(node: &Node, h: &SessionHandle, room: &str) {
    if node.hooks.enabled() {
        node.hooks
            .emit(session_event("room.member_removed", node, h).with("room", room));
    }
}

/// A client's message to `@server`. `Some(id)` once every receiver's queue
/// took it; `None` when none is configured or a queue was full.
pub(crate) fn to_server(
    node: &Node,
    h: &SessionHandle,
    data: &RawValue,
    id: Option<&wsring_protocol::MsgId>,
) -> Option<String> {
    let data: Value = serde_json::from_str(data.get()).unwrap_or(Value::Null);
    let mut ev = session_event("message.to_server", node, h).with("data", data);
    if let Some(id) = id.and_then(|id| serde_json::to_value(id).ok()) {
        ev = ev.with("client_id", id);
    }
    node.hooks.emit_all(ev)
}

// Webhooks in Pusher's format (`--pusher-webhook-url`): each event is
// `{"name",…}` with the fields Pusher's documentation gives it.

/// `channel_occupied` / `channel_vacated`: a channel's first subscriber
/// anywhere in the cluster came, or its last one went.
pub(crate) fn pusher_channel(hooks: &Webhooks, channel: &str, occupied: bool) {
    let name = if occupied {
        "channel_occupied"
    } else {
        "channel_vacated"
    };
    hooks.emit(Event::new(name).with("channel", channel));
}

/// `member_added` / `member_removed`: a user id's first connection
/// anywhere in the cluster joined a presence channel, or its last one left.
pub(crate) fn pusher_member(hooks: &Webhooks, channel: &str, user_id: &str, added: bool) {
    let name = if added {
        "member_added"
    } else {
        "member_removed"
    };
    hooks.emit(
        Event::new(name)
            .with("channel", channel)
            .with("user_id", user_id),
    );
}

/// `client_event`: a client sent `event` on `channel`. `data` is given as
/// a string, as Pusher does (a string as is, other JSON as its text);
/// `user_id` on presence channels.
pub(crate) fn pusher_client_event(
    node: &Node,
    channel: &str,
    event: &str,
    data: &RawValue,
    socket_id: &str,
    user_id: Option<&str>,
) {
    if !node.pusher_hooks.enabled() {
        return;
    }
    let data = serde_json::from_str::<String>(data.get()).unwrap_or_else(|_| data.get().to_owned());
    let mut ev = Event::new("client_event")
        .with("channel", channel)
        .with("event", event)
        .with("data", data)
        .with("socket_id", socket_id);
    if let Some(user) = user_id {
        ev = ev.with("user_id", user);
    }
    node.pusher_hooks.emit(ev);
}
