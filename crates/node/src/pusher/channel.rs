//! Pusher channel names and kinds, and presence members.
//!
//! A channel is the room of the same name: its messages, members and
//! counts are the room's, served by the same machinery as native rooms.
//! Names follow Pusher's rule: 1–200 characters from `[A-Za-z0-9_\-=@,.;]`.
//!
//! A signed-in connection (`pusher:signin`) is in its user's own channel
//! `#server-to-user-{id}`, the room the server's `sendToUser` events and
//! `terminate_connections` go to, on whichever nodes the user is.
//!
//! A presence member is the pair (`user_id`, `user_info`) of the
//! connection's `channel_data`. The session joins the room *as* that
//! member ([`crate::sessions::SessionTable::join_as`]), so the cluster-wide
//! roster counts users, not connections, and carries the info to every
//! node: a member's roster name is [`Member::key`], the JSON array
//! `[user_id, user_info]`.

use serde_json::Value;
use std::sync::Arc;

/// Longest channel name.
pub(crate) const MAX_CHANNEL_LEN: usize = 200;
/// Longest presence `user_id`.
pub(crate) const MAX_USER_ID_LEN: usize = 128;
/// Most bytes of a presence `user_info` (as JSON).
pub(crate) const MAX_USER_INFO_BYTES: usize = 1024;

/// The prefix of a signed-in user's own channel.
pub(crate) const USER_CHANNEL_PREFIX: &str = "#server-to-user-";

/// The own channel of signed-in user `id`.
pub(crate) fn user_channel(id: &str) -> String {
    format!("{USER_CHANNEL_PREFIX}{id}")
}

/// The user whose own channel `channel` is, if it is one.
pub(crate) fn user_channel_owner(channel: &str) -> Option<&str> {
    channel
        .strip_prefix(USER_CHANNEL_PREFIX)
        .filter(|id| invalid_user_id(id).is_none())
}

/// Why a signed-in user id is refused, or `None`: 1–128 bytes, no control
/// characters.
pub(crate) fn invalid_user_id(id: &str) -> Option<String> {
    if id.is_empty() {
        return Some("the user id is empty".into());
    }
    if id.len() > MAX_USER_ID_LEN {
        return Some(format!(
            "the user id is longer than {MAX_USER_ID_LEN} bytes"
        ));
    }
    if id.chars().any(char::is_control) {
        return Some("the user id has a control character".into());
    }
    None
}

/// The user id of a `pusher:signin`'s `user_data` (a JSON object with a
/// string `id`), or why not.
pub(crate) fn signin_user_id(user_data: &str) -> Result<String, String> {
    let v: Value =
        serde_json::from_str(user_data).map_err(|e| format!("user_data is not JSON: {e}"))?;
    match v.get("id") {
        Some(Value::String(id)) => match invalid_user_id(id) {
            None => Ok(id.clone()),
            Some(why) => Err(why),
        },
        _ => Err("user_data needs an id (a non-empty string)".into()),
    }
}

/// What a channel's name prefix makes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Anyone may subscribe.
    Public,
    /// `private-…` (including `private-encrypted-…`, relayed as is):
    /// needs a signed `auth`.
    Private,
    /// `presence-…`: needs a signed `auth` over `channel_data` too.
    Presence,
}

impl Kind {
    /// The kind of `channel`.
    pub fn of(channel: &str) -> Kind {
        if channel.starts_with("presence-") {
            Kind::Presence
        } else if channel.starts_with("private-") {
            Kind::Private
        } else {
            Kind::Public
        }
    }
}

/// Why a channel name is refused, or `None`.
pub(crate) fn invalid_name(channel: &str) -> Option<String> {
    if channel.is_empty() {
        return Some("the channel name is empty".into());
    }
    if channel.len() > MAX_CHANNEL_LEN {
        return Some(format!(
            "the channel name is longer than {MAX_CHANNEL_LEN} characters"
        ));
    }
    let ok = |c: char| c.is_ascii_alphanumeric() || "_-=@,.;".contains(c);
    if let Some(c) = channel.chars().find(|c| !ok(*c)) {
        return Some(format!(
            "the channel name has {c:?}; use A-Z a-z 0-9 _ - = @ , . ; only"
        ));
    }
    None
}

/// A presence channel member.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Member {
    pub user_id: String,
    pub user_info: Value,
    /// The name the roster knows the member by.
    pub key: Arc<str>,
}

impl Member {
    /// A member; its key follows from the two parts.
    pub fn new(user_id: String, user_info: Value) -> Member {
        let key = serde_json::to_string(&(&user_id, &user_info))
            .unwrap_or_default()
            .into();
        Member {
            user_id,
            user_info,
            key,
        }
    }

    /// The member a roster name stands for; `None` for a name that is not
    /// a member key (a native session's user in the same room).
    pub fn decode(key: &str) -> Option<Member> {
        let (user_id, user_info): (String, Value) = serde_json::from_str(key).ok()?;
        Some(Member {
            user_id,
            user_info,
            key: key.into(),
        })
    }

    /// The member of a presence subscription's `channel_data`
    /// (`{"user_id": string or number, "user_info"?: any}`), or why not.
    pub fn from_channel_data(data: &str) -> Result<Member, String> {
        let v: Value =
            serde_json::from_str(data).map_err(|e| format!("channel_data is not JSON: {e}"))?;
        let user_id = match v.get("user_id") {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => return Err("channel_data needs a user_id (a string or a number)".into()),
        };
        if user_id.len() > MAX_USER_ID_LEN {
            return Err(format!(
                "the user_id is longer than {MAX_USER_ID_LEN} characters"
            ));
        }
        let user_info = v.get("user_info").cloned().unwrap_or(Value::Null);
        if user_info.to_string().len() > MAX_USER_INFO_BYTES {
            return Err(format!(
                "the user_info is larger than {MAX_USER_INFO_BYTES} bytes"
            ));
        }
        Ok(Member::new(user_id, user_info))
    }
}

/// The Pusher layer's occupancy rules: channel names are its rooms, and a
/// presence channel's members are counted once per user id (for
/// `member_added` / `member_removed`).
pub(crate) struct PusherOccupancy;

impl crate::occupancy::ProtocolOccupancy for PusherOccupancy {
    fn tracks_members(&self, room: &str) -> bool {
        Kind::of(room) == Kind::Presence && invalid_name(room).is_none()
    }

    fn member_user(&self, key: &str) -> Option<String> {
        Member::decode(key).map(|m| m.user_id)
    }

    fn is_channel(&self, room: &str) -> bool {
        invalid_name(room).is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn occupancy_member_items_are_apart_from_every_channel_name() {
        use crate::occupancy::ProtocolOccupancy;
        let item = crate::occupancy::member_item("presence-a", "7\nx");
        assert_eq!(item.split_once('\n'), Some(("presence-a", "7\nx")));
        assert!(!PusherOccupancy.is_channel(&item), "never a channel");
        assert!(PusherOccupancy.tracks_members("presence-a"));
        assert!(!PusherOccupancy.tracks_members("private-a"));
    }
    use serde_json::json;

    #[test]
    fn kinds_follow_the_prefix() {
        assert_eq!(Kind::of("presence-a"), Kind::Presence);
        assert_eq!(Kind::of("private-a"), Kind::Private);
        assert_eq!(Kind::of("private-encrypted-a"), Kind::Private);
        assert_eq!(Kind::of("a-private-"), Kind::Public);
    }

    #[test]
    fn names_follow_pushers_alphabet_and_length() {
        assert_eq!(invalid_name("a_b-c=d@e,f.g;h9"), None);
        assert_eq!(invalid_name(&"x".repeat(200)), None);
        assert!(invalid_name(&"x".repeat(201)).is_some());
        assert!(invalid_name("").is_some());
        for bad in ["a b", "a/b", "a:b", "é", "a*"] {
            assert!(invalid_name(bad).is_some(), "{bad}");
        }
    }

    #[test]
    fn user_channels_and_signin_data() {
        assert_eq!(user_channel("u-7"), "#server-to-user-u-7");
        assert_eq!(user_channel_owner("#server-to-user-u-7"), Some("u-7"));
        assert_eq!(user_channel_owner("#server-to-user-"), None);
        assert_eq!(user_channel_owner("server-to-user-u"), None);
        assert!(
            invalid_name("#server-to-user-u").is_some(),
            "not a channel to subscribe by name"
        );
        assert_eq!(
            signin_user_id(r#"{"id":"u-7","user_info":{}}"#),
            Ok("u-7".into())
        );
        for bad in ["x", "{}", r#"{"id":7}"#, r#"{"id":""}"#, r#"{"id":"a\nb"}"#] {
            assert!(signin_user_id(bad).is_err(), "{bad}");
        }
        assert!(signin_user_id(&format!(r#"{{"id":"{}"}}"#, "u".repeat(129))).is_err());
    }

    #[test]
    fn members_from_channel_data() {
        let m = Member::from_channel_data(r#"{"user_id":10,"user_info":{"name":"Mr. Channels"}}"#)
            .expect("member");
        assert_eq!(m.user_id, "10");
        assert_eq!(m.user_info, json!({"name":"Mr. Channels"}));
        assert_eq!(Member::decode(&m.key), Some(m.clone()));
        let m = Member::from_channel_data(r#"{"user_id":"ann"}"#).expect("no info");
        assert_eq!(m.user_info, Value::Null);
        for bad in [
            "nope",
            "{}",
            r#"{"user_id":""}"#,
            r#"{"user_id":[1]}"#,
            &format!(r#"{{"user_id":"{}"}}"#, "u".repeat(129)),
            &format!(r#"{{"user_id":"u","user_info":"{}"}}"#, "i".repeat(1100)),
        ] {
            assert!(Member::from_channel_data(bad).is_err(), "{bad}");
        }
        assert_eq!(Member::decode("alice"), None, "a native user");
    }
}
