//! The publish proxy's say on a client's `send` or `publish`: the
//! application may accept the message (optionally replacing its `data`) or
//! reject it; without an answer, `--proxy-when-down` decides.
//!
//! Request body: `{"type":"send"|"publish","user","session","to"|"room",
//! "data","id"}`. Answers: 2xx with an empty body or `{}` accepts as is; 2xx
//! with `{"data":…}` accepts with that data; 2xx with
//! `{"error":{"code"?,"message"}}`, or any 4xx, rejects (an `error` frame
//! with code `rejected` reaches the client).

use serde::Serialize;
use serde_json::Value;
use serde_json::value::RawValue;
use tracing::debug;
use wsring_hooks::{ProxyReply, WhenDown};
use wsring_protocol::{ErrorCode, MsgId};

use super::Outcome;
use crate::node::Node;
use crate::session::state::SessionState;

/// What the application decided.
pub(crate) enum Verdict {
    /// Go on, with replacement data if the application gave some.
    Accept(Option<Box<RawValue>>),
    /// Stop: answer the client with this.
    Refuse(Outcome),
}

#[derive(Serialize)]
struct Request<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    user: &'a str,
    session: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    to: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    room: Option<&'a str>,
    data: &'a RawValue,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a MsgId>,
}

/// Where a message goes: a user (`send`) or a room (`publish`).
pub(crate) enum Target<'a> {
    User(&'a str),
    Room(&'a str),
}

/// Asks the publish proxy, if one is configured, about a message.
pub(crate) async fn ask(
    node: &Node,
    s: &SessionState,
    target: Target<'_>,
    data: &RawValue,
    id: Option<&MsgId>,
) -> Verdict {
    let Some(proxy) = &node.publish_proxy else {
        return Verdict::Accept(None);
    };
    let (kind, to, room) = match target {
        Target::User(u) => ("send", Some(u), None),
        Target::Room(r) => ("publish", None, Some(r)),
    };
    let request = Request {
        kind,
        user: &s.handle.user,
        session: &s.handle.id,
        to,
        room,
        data,
        id,
    };
    match proxy.call(&request).await {
        Ok(reply) => judge(reply, id),
        Err(e) => match proxy.when_down() {
            WhenDown::Allow => {
                debug!(error = %e, "publish proxy unanswered; accepting as configured");
                Verdict::Accept(None)
            }
            WhenDown::Reject => {
                Verdict::Refuse(Outcome::error(ErrorCode::Unavailable, &e.to_string(), id))
            }
        },
    }
}

fn judge(reply: ProxyReply, id: Option<&MsgId>) -> Verdict {
    let error = reply.body.get("error");
    if (200..300).contains(&reply.status) && error.is_none() {
        let data = reply
            .body
            .get("data")
            .and_then(|d| serde_json::value::to_raw_value(d).ok());
        return Verdict::Accept(data);
    }
    let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_owned);
    let message = text(error.and_then(|e| e.get("message")))
        .unwrap_or_else(|| format!("rejected by the application (HTTP {})", reply.status));
    let message = match text(error.and_then(|e| e.get("code"))) {
        Some(code) => format!("{code}: {message}"),
        None => message,
    };
    Verdict::Refuse(Outcome::error(ErrorCode::Rejected, &message, id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::tests::reply;
    use serde_json::json;

    fn verdict(status: u16, body: Value) -> Verdict {
        judge(ProxyReply { status, body }, Some(&MsgId::Int(1)))
    }

    #[test]
    fn answers_map_to_verdicts() {
        assert!(matches!(verdict(200, Value::Null), Verdict::Accept(None)));
        assert!(matches!(verdict(204, json!({})), Verdict::Accept(None)));
        let Verdict::Accept(Some(d)) = verdict(200, json!({"data":{"clean":true}})) else {
            panic!("replacement data");
        };
        assert_eq!(d.get(), r#"{"clean":true}"#);
        let Verdict::Refuse(o) = verdict(200, json!({"error":{"code":"spam","message":"no ads"}}))
        else {
            panic!("refusal");
        };
        assert_eq!(
            reply(&o),
            json!({"type":"error","code":"rejected","message":"spam: no ads","id":1})
        );
        let Verdict::Refuse(o) = verdict(403, Value::Null) else {
            panic!("refusal");
        };
        assert_eq!(
            reply(&o)["message"],
            "rejected by the application (HTTP 403)"
        );
    }
}
