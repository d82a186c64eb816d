//! The webhook events a node emits, one function per event type, so every
//! event's fields are declared in one place (and documented in
//! docs/INTEGRATION.md). Emitting never waits: see [`wsring_hooks::webhook`].

use serde_json::Value;
use serde_json::value::RawValue;
use wsring_hooks::Event;

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
