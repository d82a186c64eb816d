//! The Pusher Channels protocol (version 7): a second codec over the same
//! session core as the native protocol.
//!
//! A Pusher connection is an ordinary session — the same task and loop
//! ([`crate::session`]), queue and byte budget, message rate limits, room
//! membership, cluster-wide roster, drains and webhooks. What differs is
//! only at the edges, here:
//!
//! * `ws`: the `/app/{key}` upgrade (unknown key: `pusher:error` 4001;
//!   protocol below 7: 4007);
//! * [`PusherConn`]: the per-connection state (socket id, subscriptions,
//!   the client-event budget) and [`PusherConn::apply`], which turns each
//!   client frame into operations of the core (join a room, as a presence
//!   member or not; leave it; publish to it) and answers in Pusher frames;
//! * `frames`: the wire format, and how the core's deliveries are written
//!   for a Pusher connection (room messages become channel events, roster
//!   changes `member_added`/`member_removed`);
//! * `channel`: channel names and kinds, presence members;
//! * `api`: the signed HTTP API (`/apps/{app_id}/…`).
//!
//! Placement: a Pusher connection has no user at the upgrade, so it is
//! served where it lands ([`crate::sessions::Codec::Pusher`]) and only
//! moves when its node drains (close 4200: reconnect now; pusher-js then
//! resubscribes by itself).

pub(crate) mod api;
pub(crate) mod channel;
pub(crate) mod frames;
pub(crate) mod ws;

use std::collections::HashMap;
use std::sync::Arc;
use tokio::time::Instant;
use wsring_auth::TokenBucket;
use wsring_auth::pusher::PusherApp;

use self::channel::{Kind, Member};
use self::frames::{ClientFrame, Delivery, RoomEvent, Signin, Subscribe, Unsubscribe};
use crate::cmd::{Leave, Outcome};
use crate::node::Node;
use crate::session::state::SessionState;

/// What the server tells clients in `connection_established`: after this
/// many seconds without traffic a client sends `pusher:ping`.
pub(crate) const ACTIVITY_TIMEOUT_SECS: u64 = 120;

/// Most bytes of an event's `data`, as Pusher documents it.
pub(crate) const MAX_EVENT_DATA_BYTES: usize = 10 * 1024;

/// Client events per second (and burst) per connection.
const CLIENT_EVENTS_PER_SEC: f64 = 10.0;

/// Pusher's close and error codes used here.
pub(crate) mod code {
    /// The app key is not this server's.
    pub const UNKNOWN_APP: u16 = 4001;
    /// The client speaks a protocol older than 7.
    pub const UNSUPPORTED_PROTOCOL: u16 = 4007;
    /// Reconnect now (the node is draining or stopping).
    pub const RECONNECT_NOW: u16 = 4200;
    /// A client event over the rate limit.
    pub const CLIENT_EVENT_RATE: u16 = 4301;
    /// Unauthorized: a sign-in with a bad signature (`pusher:error`), and
    /// the close of a terminated connection, which pusher-js takes as
    /// "refused" and does not reconnect from.
    pub const UNAUTHORIZED: u16 = 4009;
    /// The close code of `terminate_connections`.
    pub const TERMINATED: u16 = UNAUTHORIZED;
}

/// One Pusher connection's protocol state.
pub(crate) struct PusherConn {
    /// The connection's `socket_id`, unique cluster-wide.
    pub socket_id: Arc<str>,
    app: Arc<PusherApp>,
    /// Subscribed channels; presence ones with the member the connection
    /// is in them as.
    channels: HashMap<String, Option<Member>>,
    client_events: TokenBucket,
    /// The signed-in user's id (`pusher:signin`).
    user: Option<String>,
}

impl PusherConn {
    /// The state of a new connection to `app`.
    pub fn new(socket_id: Arc<str>, app: Arc<PusherApp>) -> PusherConn {
        PusherConn {
            socket_id,
            app,
            channels: HashMap::new(),
            client_events: TokenBucket::new(
                CLIENT_EVENTS_PER_SEC,
                CLIENT_EVENTS_PER_SEC,
                Instant::now().into_std(),
            ),
            user: None,
        }
    }

    /// The first frame of the connection.
    pub fn established(&self) -> String {
        frames::connection_established(&self.socket_id, ACTIVITY_TIMEOUT_SECS)
    }

    /// A delivery of the session core as this connection's frame, if it
    /// gets one.
    pub fn delivery(&self, frame: &str) -> Option<Delivery> {
        frames::delivery(frame, &self.socket_id, |c| {
            self.channels.get(c).map(|m| m.is_some())
        })
    }

    /// Handles one client frame.
    pub async fn apply(&mut self, text: &str, s: &mut SessionState, node: &Node) -> Outcome {
        let frame: ClientFrame = match serde_json::from_str(text) {
            Ok(f) => f,
            Err(e) => return reply(frames::error(None, &format!("invalid frame: {e}"))),
        };
        match frame.event.as_str() {
            "pusher:ping" => reply(frames::event("pusher:pong", None, &serde_json::json!({}))),
            "pusher:pong" => Outcome::none(),
            "pusher:subscribe" => match frame.data_object::<Subscribe>() {
                Some(sub) => self.subscribe(sub, s, node).await,
                None => reply(frames::error(
                    None,
                    "pusher:subscribe needs data {\"channel\",\"auth\"?,\"channel_data\"?}",
                )),
            },
            "pusher:unsubscribe" => match frame.data_object::<Unsubscribe>() {
                Some(u) => {
                    if channel::user_channel_owner(&u.channel).is_some() {
                        // The user's own channel is the sign-in's, not the
                        // subscription's.
                        return Outcome::none();
                    }
                    self.channels.remove(&u.channel);
                    let _ = Leave {
                        room: u.channel,
                        id: None,
                    }
                    .apply(s, node)
                    .await;
                    Outcome::none()
                }
                None => reply(frames::error(
                    None,
                    "pusher:unsubscribe needs data {\"channel\"}",
                )),
            },
            name if name.starts_with("client-") => self.client_event(frame, node).await,
            "pusher:signin" => match frame.data_object::<Signin>() {
                Some(signin) => self.signin(signin, s, node).await,
                None => reply(frames::error(
                    None,
                    "pusher:signin needs data {\"user_data\",\"auth\"}",
                )),
            },
            other => reply(frames::error(None, &format!("unsupported event {other:?}"))),
        }
    }

    /// `pusher:signin`: checks the signature, then puts the connection in
    /// its user's own channel, where `sendToUser` events and
    /// `terminate_connections` reach it on whichever node it is.
    async fn signin(&mut self, signin: Signin, s: &mut SessionState, node: &Node) -> Outcome {
        if !self
            .app
            .verify_user_auth(&self.socket_id, &signin.user_data, &signin.auth)
        {
            return reply(frames::error(
                Some(code::UNAUTHORIZED),
                "invalid signature: the auth does not match this socket_id and user_data \
                 under the app secret",
            ));
        }
        let id = match channel::signin_user_id(&signin.user_data) {
            Ok(id) => id,
            Err(why) => return reply(frames::error(Some(code::UNAUTHORIZED), &why)),
        };
        let success = || {
            reply(frames::internal(
                "pusher:signin_success",
                None,
                &serde_json::json!({"user_data": signin.user_data}),
            ))
        };
        if self.user.as_deref() == Some(id.as_str()) {
            return success();
        }
        if let Some(old) = self.user.take() {
            let room = channel::user_channel(&old);
            self.channels.remove(&room);
            let _ = Leave { room, id: None }.apply(s, node).await;
        }
        let room = channel::user_channel(&id);
        if let Err(e) = node.join_room_as(&s.handle, &room, None).await {
            return reply(frames::error(
                None,
                &format!("the cluster could not sign in: {e}"),
            ));
        }
        self.channels.insert(room, None);
        self.user = Some(id);
        success()
    }

    async fn subscribe(&mut self, sub: Subscribe, s: &mut SessionState, node: &Node) -> Outcome {
        let channel = sub.channel;
        if let Some(owner) = channel::user_channel_owner(&channel) {
            // pusher-js subscribes to its user's channel after signing in;
            // the sign-in put the connection there already.
            return if self.user.as_deref() == Some(owner) {
                reply(frames::subscription_succeeded(&channel, None))
            } else {
                reply(frames::subscription_error(
                    &channel,
                    403,
                    "AuthError",
                    "only a connection signed in as this user is in its channel",
                ))
            };
        }
        if let Some(why) = channel::invalid_name(&channel) {
            return reply(frames::subscription_error(
                &channel,
                400,
                "InvalidChannel",
                &why,
            ));
        }
        let kind = Kind::of(&channel);
        let member = match kind {
            Kind::Public => None,
            Kind::Private | Kind::Presence => {
                let data = sub
                    .channel_data
                    .as_deref()
                    .filter(|_| kind == Kind::Presence);
                let auth = sub.auth.as_deref().unwrap_or_default();
                if !self
                    .app
                    .verify_channel_auth(&self.socket_id, &channel, data, auth)
                {
                    return reply(frames::subscription_error(
                        &channel,
                        401,
                        "AuthError",
                        "invalid signature: the auth does not match this socket_id, channel \
                         and channel_data under the app secret",
                    ));
                }
                match data.map(Member::from_channel_data) {
                    None if kind == Kind::Presence => {
                        return reply(frames::subscription_error(
                            &channel,
                            400,
                            "InvalidChannelData",
                            "a presence channel needs channel_data",
                        ));
                    }
                    None => None,
                    Some(Ok(m)) => Some(m),
                    Some(Err(why)) => {
                        return reply(frames::subscription_error(
                            &channel,
                            400,
                            "InvalidChannelData",
                            &why,
                        ));
                    }
                }
            }
        };
        if self.channels.contains_key(&channel) {
            // Already subscribed (a client resubscribing): say so again.
            let members = self.members(&channel, node);
            return reply(frames::subscription_succeeded(&channel, members.as_deref()));
        }
        let limit = node.cfg.max_rooms_per_session;
        if node.table.room_count(&s.handle.id) >= limit {
            return reply(frames::subscription_error(
                &channel,
                400,
                "LimitExceeded",
                &format!("a connection may subscribe to at most {limit} channels"),
            ));
        }
        let key = member.as_ref().map(|m| Arc::clone(&m.key));
        match node.join_room_as(&s.handle, &channel, key.clone()).await {
            Ok(added) => {
                if added {
                    crate::events::member_added(node, &s.handle, &channel);
                }
            }
            Err(e) => {
                return reply(frames::subscription_error(
                    &channel,
                    503,
                    "Unavailable",
                    &format!("the cluster could not subscribe: {e}"),
                ));
            }
        }
        if let Some(key) = &key {
            node.set_presence_as(&s.handle, &channel, true, key).await;
        }
        self.channels.insert(channel.clone(), member);
        let members = self.members(&channel, node);
        reply(frames::subscription_succeeded(&channel, members.as_deref()))
    }

    /// A presence channel's members cluster-wide (`None` for other
    /// channels).
    fn members(&self, channel: &str, node: &Node) -> Option<Vec<Member>> {
        let own = self.channels.get(channel)?.as_ref()?;
        let mut members: Vec<Member> = node
            .roster
            .members(channel)
            .iter()
            .filter_map(|k| Member::decode(k))
            .collect();
        if !members.iter().any(|m| m.key == own.key) {
            members.push(own.clone());
        }
        members.sort_by(|a, b| a.user_id.cmp(&b.user_id));
        Some(members)
    }

    async fn client_event(&mut self, frame: ClientFrame, node: &Node) -> Outcome {
        if !self.app.client_events {
            return reply(frames::error(
                None,
                "client events are not enabled for this app (--pusher-client-events)",
            ));
        }
        let Some(channel) = frame.channel else {
            return reply(frames::error(None, "a client event needs a channel"));
        };
        let Some(member) = self.channels.get(&channel) else {
            return reply(frames::error(
                None,
                &format!("client event on {channel:?}, which this connection is not subscribed to"),
            ));
        };
        if Kind::of(&channel) == Kind::Public {
            return reply(frames::error(
                None,
                "client events are only allowed on private and presence channels",
            ));
        }
        let data = frame.data.unwrap_or_else(|| {
            serde_json::value::RawValue::from_string("{}".into()).unwrap_or_default()
        });
        if data.get().len() > MAX_EVENT_DATA_BYTES {
            return reply(frames::error(
                None,
                &format!("event data is larger than {MAX_EVENT_DATA_BYTES} bytes"),
            ));
        }
        if !self.client_events.take(1.0, Instant::now().into_std()) {
            return reply(frames::error(
                Some(code::CLIENT_EVENT_RATE),
                "client event rejected: more than 10 a second",
            ));
        }
        let event = RoomEvent {
            event: frame.event,
            data,
            socket_id: Some(self.socket_id.to_string()),
            user_id: member.as_ref().map(|m| m.user_id.clone()),
            terminate: false,
        };
        // In durable mode a client event counts against its sender's store
        // quota: the signed-in member's user id, else the connection's own.
        let owner = member
            .as_ref()
            .map(|m| m.user_id.clone())
            .unwrap_or_else(|| self.socket_id.to_string());
        match node
            .publish_room(None, &channel, &event.to_raw(), None, Some(&owner))
            .await
        {
            Ok(_) => {
                crate::events::pusher_client_event(
                    node,
                    &channel,
                    &event.event,
                    &event.data,
                    &self.socket_id,
                    event.user_id.as_deref(),
                );
                Outcome::none()
            }
            Err(e) => reply(frames::error(
                None,
                &format!("the client event was not sent: {e}"),
            )),
        }
    }
}

fn reply(frame: String) -> Outcome {
    Outcome {
        reply: Some(frame),
        ..Outcome::default()
    }
}

#[cfg(test)]
mod tests;
