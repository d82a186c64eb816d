//! The Pusher HTTP API, signed with the app secret, on every node:
//!
//! * `POST /apps/{app_id}/events` `{"name","data","channel"|"channels"
//!   (≤ 100),"socket_id"?,"info"?}` → `{}`, or with `info`
//!   (`subscription_count`, `user_count`) `{"channels":{name:{…}}}`,
//!   counted cluster-wide after the publish;
//! * `POST /apps/{app_id}/batch_events` `{"batch":[{"channel","name",
//!   "data","socket_id"?}]}` (≤ 10 events) → `{}`;
//! * `GET /apps/{app_id}/channels?filter_by_prefix=…&info=user_count` →
//!   `{"channels":{name:{…}}}` (`user_count` for presence channels only);
//! * `GET /apps/{app_id}/channels/{name}?info=user_count,subscription_count`
//!   → `{"occupied",…}`;
//! * `GET /apps/{app_id}/channels/{name}/users` → `{"users":[{"id"}]}`
//!   (presence channels);
//! * `POST /apps/{app_id}/users/{user_id}/terminate_connections` → `{}`:
//!   every connection signed in as the user, on every node, is closed
//!   with 4009 (pusher-js does not reconnect from it).
//!
//! Events to `#server-to-user-{id}` (the server libraries' `sendToUser`)
//! go to the connections signed in as that user.
//!
//! Every request is checked ([`wsring_auth::pusher::PusherApp::verify_request`]):
//! a missing or bad signature, a key that is not the app's, a timestamp
//! more than 600 s off or a body that does not match `body_md5` is 401
//! with `{"error":…}`. The native API key does not apply here, nor the
//! app secret there.
//!
//! Events are published to the channel's room, so they reach subscribers
//! on every node. The GET answers are cluster-wide: the answering node
//! asks every other member for its local share (the same path with
//! `scope=local`, signed with the app secret) and adds them up; a member
//! that does not answer within a second is left out.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use wsring_auth::pusher::PusherApp;
use wsring_cluster::report::PRESENCE_PEER_TIMEOUT;

use super::MAX_EVENT_DATA_BYTES;
use super::channel::{self, Kind, Member};
use super::frames::RoomEvent;
use crate::node::Node;

/// Most channels one event may go to.
const MAX_CHANNELS: usize = 100;
/// Most events in one batch.
const MAX_BATCH: usize = 10;
/// Longest event name.
const MAX_EVENT_NAME: usize = 200;

/// The Pusher routes: the WebSocket endpoint and the HTTP API.
pub(crate) fn routes() -> Router<Arc<Node>> {
    Router::new()
        .route("/app/{key}", get(super::ws::upgrade))
        .route("/apps/{app_id}/events", post(events))
        .route("/apps/{app_id}/batch_events", post(batch_events))
        .route("/apps/{app_id}/channels", get(channels))
        .route("/apps/{app_id}/channels/{name}", get(channel_info))
        .route("/apps/{app_id}/channels/{name}/users", get(users))
        .route(
            "/apps/{app_id}/users/{user_id}/terminate_connections",
            post(terminate),
        )
        // Over the router's own limit: set here, it is the one the body
        // extractor sees.
        .layer(axum::extract::DefaultBodyLimit::max(
            wsring_auth::pusher::MAX_API_BODY_BYTES,
        ))
}

/// An error answer: the status and `{"error": message}`.
struct Fail(StatusCode, String);

impl IntoResponse for Fail {
    fn into_response(self) -> Response {
        (self.0, axum::Json(json!({"error": self.1}))).into_response()
    }
}

fn fail(status: StatusCode, message: impl Into<String>) -> Fail {
    Fail(status, message.into())
}

fn ok(body: Value) -> Response {
    (StatusCode::OK, axum::Json(body)).into_response()
}

/// The query's parameters, decoded.
fn params(query: Option<&str>) -> Vec<(String, String)> {
    form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// The app, once the request is for it and correctly signed.
fn check(
    node: &Node,
    app_id: &str,
    method: &Method,
    uri: &Uri,
    params: &[(String, String)],
    body: &[u8],
) -> Result<Arc<PusherApp>, Fail> {
    let Some(app) = node.security.pusher.clone() else {
        return Err(fail(StatusCode::NOT_FOUND, "no Pusher app is configured"));
    };
    if app_id != app.app_id {
        return Err(fail(
            StatusCode::NOT_FOUND,
            format!("unknown app id {app_id:?}"),
        ));
    }
    app.verify_request(
        method.as_str(),
        uri.path(),
        params,
        body,
        wsring_auth::unix_now(),
    )
    .map_err(|e| fail(StatusCode::UNAUTHORIZED, e.to_string()))?;
    Ok(app)
}

/// One event to publish.
#[derive(Deserialize)]
struct EventBody {
    name: String,
    data: Box<RawValue>,
    #[serde(default)]
    channel: Option<String>,
    #[serde(default)]
    channels: Option<Vec<String>>,
    #[serde(default)]
    socket_id: Option<String>,
    /// `subscription_count` and/or `user_count` (presence channels): the
    /// answer then carries them per channel.
    #[serde(default)]
    info: Option<String>,
}

impl EventBody {
    /// The channels, checked, or the 4xx answer.
    fn targets(&self) -> Result<Vec<&str>, Fail> {
        let list: Vec<&str> = match (&self.channel, &self.channels) {
            (Some(c), None) => vec![c.as_str()],
            (None, Some(cs)) => cs.iter().map(String::as_str).collect(),
            (Some(_), Some(_)) => {
                return Err(fail(
                    StatusCode::BAD_REQUEST,
                    "give either channel or channels, not both",
                ));
            }
            (None, None) => {
                return Err(fail(
                    StatusCode::BAD_REQUEST,
                    "channel or channels is required",
                ));
            }
        };
        if list.is_empty() || list.len() > MAX_CHANNELS {
            return Err(fail(
                StatusCode::BAD_REQUEST,
                format!("an event goes to 1 to {MAX_CHANNELS} channels"),
            ));
        }
        for c in &list {
            // A user's own channel takes `sendToUser`'s events.
            if channel::user_channel_owner(c).is_some() {
                continue;
            }
            if let Some(why) = channel::invalid_name(c) {
                return Err(fail(StatusCode::BAD_REQUEST, format!("{c:?}: {why}")));
            }
        }
        if self.name.is_empty() || self.name.len() > MAX_EVENT_NAME {
            return Err(fail(
                StatusCode::BAD_REQUEST,
                format!("the event name must have 1 to {MAX_EVENT_NAME} characters"),
            ));
        }
        if self.data.get().len() > MAX_EVENT_DATA_BYTES {
            return Err(fail(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("event data is larger than {MAX_EVENT_DATA_BYTES} bytes"),
            ));
        }
        Ok(list)
    }

    async fn publish(&self, node: &Node, targets: &[&str]) -> Result<(), Fail> {
        let event = RoomEvent {
            event: self.name.clone(),
            data: self.data.clone(),
            socket_id: self.socket_id.clone(),
            user_id: None,
            terminate: false,
        }
        .to_raw();
        for channel in targets {
            // The app's own backend, like the server's sends: charged to
            // no sender's quota.
            node.publish_room(None, channel, &event, None, None)
                .await
                .map_err(|e| fail(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
        }
        Ok(())
    }
}

fn parse<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, Fail> {
    serde_json::from_slice(body)
        .map_err(|e| fail(StatusCode::BAD_REQUEST, format!("invalid JSON body: {e}")))
}

async fn events(
    State(node): State<Arc<Node>>,
    Path(app_id): Path<String>,
    method: Method,
    uri: Uri,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Response {
    let params = params(q.as_deref());
    let app = match check(&node, &app_id, &method, &uri, &params, &body) {
        Ok(app) => app,
        Err(r) => return r.into_response(),
    };
    let result = async {
        let e: EventBody = parse(&body)?;
        let targets = e.targets()?;
        let info = info_set(e.info.as_deref().unwrap_or(""));
        let user_count = info.contains("user_count");
        if user_count && targets.iter().any(|c| Kind::of(c) != Kind::Presence) {
            return Err(fail(
                StatusCode::BAD_REQUEST,
                "info=user_count is for presence channels only",
            ));
        }
        e.publish(&node, &targets).await?;
        if info.is_empty() {
            return Ok(json!({}));
        }
        // The counts after the publish, cluster-wide: one question to
        // every node (for one channel, about that channel only).
        let prefix = match targets.as_slice() {
            [one] => *one,
            _ => "",
        };
        let share = cluster_share(&node, &app, prefix).await;
        let mut channels = serde_json::Map::new();
        for c in targets {
            let (subs, users) = share.get(c).cloned().unwrap_or_default();
            let mut v = json!({});
            if info.contains("subscription_count") {
                v["subscription_count"] = json!(subs);
            }
            if user_count {
                v["user_count"] = json!(users.len());
            }
            channels.insert(c.to_owned(), v);
        }
        Ok(json!({ "channels": channels }))
    };
    match result.await {
        Ok(body) => ok(body),
        Err(r) => r.into_response(),
    }
}

#[derive(Deserialize)]
struct Batch {
    batch: Vec<EventBody>,
}

async fn batch_events(
    State(node): State<Arc<Node>>,
    Path(app_id): Path<String>,
    method: Method,
    uri: Uri,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Response {
    let params = params(q.as_deref());
    if let Err(r) = check(&node, &app_id, &method, &uri, &params, &body) {
        return r.into_response();
    }
    let result = async {
        let b: Batch = parse(&body)?;
        if b.batch.len() > MAX_BATCH {
            return Err(fail(
                StatusCode::BAD_REQUEST,
                format!("a batch holds at most {MAX_BATCH} events"),
            ));
        }
        // Every event is checked before any is published.
        let mut checked = Vec::with_capacity(b.batch.len());
        for e in &b.batch {
            if e.channels.is_some() {
                return Err(fail(
                    StatusCode::BAD_REQUEST,
                    "a batch event names one channel",
                ));
            }
            checked.push((e, e.targets()?));
        }
        for (e, targets) in checked {
            e.publish(&node, &targets).await?;
        }
        Ok(())
    };
    match result.await {
        Ok(()) => ok(json!({})),
        Err(r) => r.into_response(),
    }
}

/// `POST …/users/{user_id}/terminate_connections`: a terminate order to
/// the user's own channel, so it reaches the user's connections wherever
/// they are.
async fn terminate(
    State(node): State<Arc<Node>>,
    Path((app_id, user_id)): Path<(String, String)>,
    method: Method,
    uri: Uri,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Response {
    let params = params(q.as_deref());
    if let Err(r) = check(&node, &app_id, &method, &uri, &params, &body) {
        return r.into_response();
    }
    if let Some(why) = channel::invalid_user_id(&user_id) {
        return fail(StatusCode::BAD_REQUEST, why).into_response();
    }
    let order = RoomEvent {
        event: "pusher_internal:terminate".into(),
        data: RawValue::from_string("{}".into()).unwrap_or_else(|_| super::frames::null()),
        socket_id: None,
        user_id: None,
        terminate: true,
    }
    .to_raw();
    match node
        .publish_room(None, &channel::user_channel(&user_id), &order, None, None)
        .await
    {
        Ok(_) => ok(json!({})),
        Err(e) => fail(StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    }
}

/// One node's share of some channels: per channel, its local
/// subscriptions and (presence channels) user ids.
type Share = BTreeMap<String, (u64, BTreeSet<String>)>;

fn local_share(node: &Node, matches: impl Fn(&str) -> bool) -> Share {
    let mut out = Share::new();
    for room in node.table.room_names() {
        if !matches(&room) || channel::invalid_name(&room).is_some() {
            continue;
        }
        let counts = node.table.room_counts(&room);
        let subs: u64 = counts.values().sum();
        let users: BTreeSet<String> = if Kind::of(&room) == Kind::Presence {
            counts
                .keys()
                .filter_map(|k| Member::decode(k))
                .map(|m| m.user_id)
                .collect()
        } else {
            BTreeSet::new()
        };
        if subs > 0 {
            out.insert(room, (subs, users));
        }
    }
    out
}

fn share_json(share: &Share) -> Value {
    let channels: serde_json::Map<String, Value> = share
        .iter()
        .map(|(c, (s, u))| (c.clone(), json!({"s": s, "u": u})))
        .collect();
    json!({"channels": channels})
}

fn merge(into: &mut Share, answer: &Value) {
    let Some(channels) = answer.get("channels").and_then(Value::as_object) else {
        return;
    };
    for (c, v) in channels {
        let e = into.entry(c.clone()).or_default();
        e.0 += v.get("s").and_then(Value::as_u64).unwrap_or(0);
        if let Some(users) = v.get("u").and_then(Value::as_array) {
            e.1.extend(users.iter().filter_map(Value::as_str).map(str::to_owned));
        }
    }
}

/// The cluster's share of the channels starting with `prefix`: this
/// node's, and every other member's asked over HTTP.
async fn cluster_share(node: &Node, app: &PusherApp, prefix: &str) -> Share {
    let mut share = local_share(node, |c| c.starts_with(prefix));
    let path = format!("/apps/{}/channels", app.app_id);
    let query = app.sign_request(
        "GET",
        &path,
        &[("filter_by_prefix", prefix), ("scope", "local")],
        b"",
        wsring_auth::unix_now(),
    );
    let view = node.membership.view();
    let targets: Vec<(String, String)> = view
        .doc
        .members
        .iter()
        .filter(|(id, _)| id.as_str() != node.id())
        .map(|(id, m)| {
            let encoded = encode_query(&query);
            (id.clone(), format!("{}{path}?{encoded}", m.api_base()))
        })
        .collect();
    let answers =
        wsring_http::peers::get_json_all(&node.http, targets, PRESENCE_PEER_TIMEOUT, None).await;
    for (peer, answer) in answers {
        match answer {
            Some(a) => merge(&mut share, &a),
            None => tracing::debug!(node = %node.id(), %peer, "no channel share from peer"),
        }
    }
    share
}

/// `k=v&…` with each value percent-encoded for the URL (the signature is
/// over the decoded values).
fn encode_query(query: &str) -> String {
    query
        .split('&')
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => {
                let v: String = form_urlencoded::byte_serialize(v.as_bytes()).collect();
                format!("{k}={v}")
            }
            None => kv.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("&")
}

fn infos(params: &[(String, String)]) -> BTreeSet<String> {
    info_set(param(params, "info").unwrap_or(""))
}

/// The attributes of an `info` list (`a,b`).
fn info_set(info: &str) -> BTreeSet<String> {
    info.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

async fn channels(
    State(node): State<Arc<Node>>,
    Path(app_id): Path<String>,
    method: Method,
    uri: Uri,
    RawQuery(q): RawQuery,
) -> Response {
    let params = params(q.as_deref());
    let app = match check(&node, &app_id, &method, &uri, &params, b"") {
        Ok(app) => app,
        Err(r) => return r.into_response(),
    };
    let prefix = param(&params, "filter_by_prefix").unwrap_or("");
    if param(&params, "scope") == Some("local") {
        return ok(share_json(&local_share(&node, |c| c.starts_with(prefix))));
    }
    let info = infos(&params);
    let user_count = info.contains("user_count");
    if user_count && !prefix.starts_with("presence-") {
        return fail(
            StatusCode::BAD_REQUEST,
            "info=user_count needs filter_by_prefix=presence-",
        )
        .into_response();
    }
    let share = cluster_share(&node, &app, prefix).await;
    let channels: serde_json::Map<String, Value> = share
        .iter()
        .map(|(c, (_, users))| {
            let v = if user_count {
                json!({"user_count": users.len()})
            } else {
                json!({})
            };
            (c.clone(), v)
        })
        .collect();
    ok(json!({"channels": channels}))
}

async fn channel_info(
    State(node): State<Arc<Node>>,
    Path((app_id, name)): Path<(String, String)>,
    method: Method,
    uri: Uri,
    RawQuery(q): RawQuery,
) -> Response {
    let params = params(q.as_deref());
    let app = match check(&node, &app_id, &method, &uri, &params, b"") {
        Ok(app) => app,
        Err(r) => return r.into_response(),
    };
    if let Some(why) = channel::invalid_name(&name) {
        return fail(StatusCode::BAD_REQUEST, why).into_response();
    }
    let info = infos(&params);
    if info.contains("user_count") && Kind::of(&name) != Kind::Presence {
        return fail(
            StatusCode::BAD_REQUEST,
            "info=user_count is for presence channels only",
        )
        .into_response();
    }
    let share = cluster_share(&node, &app, &name).await;
    let (subs, users) = share.get(&name).cloned().unwrap_or_default();
    let mut body = json!({"occupied": subs > 0});
    if info.contains("subscription_count") {
        body["subscription_count"] = json!(subs);
    }
    if info.contains("user_count") {
        body["user_count"] = json!(users.len());
    }
    ok(body)
}

async fn users(
    State(node): State<Arc<Node>>,
    Path((app_id, name)): Path<(String, String)>,
    method: Method,
    uri: Uri,
    RawQuery(q): RawQuery,
) -> Response {
    let params = params(q.as_deref());
    let app = match check(&node, &app_id, &method, &uri, &params, b"") {
        Ok(app) => app,
        Err(r) => return r.into_response(),
    };
    if Kind::of(&name) != Kind::Presence || channel::invalid_name(&name).is_some() {
        return fail(
            StatusCode::BAD_REQUEST,
            "users are listed for presence channels only",
        )
        .into_response();
    }
    let share = cluster_share(&node, &app, &name).await;
    let users: Vec<Value> = share
        .get(&name)
        .map(|(_, u)| u.iter().map(|id| json!({"id": id})).collect())
        .unwrap_or_default();
    ok(json!({"users": users}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_add_up_subscriptions_and_union_users() {
        let mut share = Share::new();
        merge(
            &mut share,
            &json!({"channels":{"presence-a":{"s":2,"u":["1","2"]},"b":{"s":1,"u":[]}}}),
        );
        merge(
            &mut share,
            &json!({"channels":{"presence-a":{"s":1,"u":["2","3"]}}}),
        );
        merge(&mut share, &json!({"garbage":true}));
        assert_eq!(share["presence-a"].0, 3);
        assert_eq!(share["presence-a"].1.len(), 3, "one entry per user id");
        assert_eq!(share["b"].0, 1);
        let round = share_json(&share);
        let mut again = Share::new();
        merge(&mut again, &round);
        assert_eq!(again, share);
    }

    #[test]
    fn peer_queries_are_encoded_for_the_url() {
        assert_eq!(
            encode_query("filter_by_prefix=presence-&info=a,b&x"),
            "filter_by_prefix=presence-&info=a%2Cb&x"
        );
    }
}
