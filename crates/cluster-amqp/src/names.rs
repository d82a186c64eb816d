//! Every RabbitMQ exchange and queue name wsring uses, and the mapping between
//! a [`Topic`] and an (exchange, routing key) pair, in one place.
//!
//! | topic | exchange (type) | routing / binding key |
//! |---|---|---|
//! | `Topic::Node(id)` | `<ns>.direct` (direct) | `id` |
//! | `Topic::Cluster` | `<ns>.fanout` (fanout) | `""` (ignored by fanout) |
//! | `Topic::Room(r)` | `<ns>.rooms` (direct) | `r` |
//!
//! Each broker connection owns one queue, `<ns>.node.<id>.<unique>`, bound to
//! these exchanges for every subscribed topic. Directed messages and room
//! messages live in *different* direct exchanges, so a room called like a node
//! id can never receive that node's directed traffic. The receiving side
//! recovers the topic from the delivery's exchange and routing key with
//! [`Names::topic_of`], the exact inverse of [`Names::route`].

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};
use wsring_cluster::{ClusterError, Topic};

/// Longest namespace accepted (keeps every derived name under AMQP's 255-byte
/// short-string limit).
pub const MAX_NAMESPACE_LEN: usize = wsring_cluster::MAX_NAMESPACE_LEN;

/// Longest node id accepted, for the same reason.
pub const MAX_NODE_LEN: usize = 64;

/// AMQP short strings (exchange, queue, routing key, consumer tag) are at most
/// 255 bytes; lapin panics on longer ones, so every name is checked first.
const MAX_SHORT_STRING: usize = 255;

/// Exchange and queue names for one namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    direct: String,
    fanout: String,
    rooms: String,
    ns: String,
}

impl Names {
    /// Validates the namespace (1–64 of `[A-Za-z0-9_-]`).
    pub fn new(ns: &str) -> Result<Names, ClusterError> {
        wsring_cluster::validate_namespace(ns)?;
        Ok(Names {
            direct: format!("{ns}.direct"),
            fanout: format!("{ns}.fanout"),
            rooms: format!("{ns}.rooms"),
            ns: ns.to_owned(),
        })
    }

    /// The namespace these names belong to.
    pub fn namespace(&self) -> &str {
        &self.ns
    }

    /// The direct exchange for `Topic::Node` (routing key = node id).
    pub fn direct(&self) -> &str {
        &self.direct
    }

    /// The fanout exchange for `Topic::Cluster`.
    pub fn fanout(&self) -> &str {
        &self.fanout
    }

    /// The direct exchange for `Topic::Room` (routing key = room name).
    pub fn rooms(&self) -> &str {
        &self.rooms
    }

    /// All exchanges of the namespace with their kinds, in declaration order.
    pub fn exchanges(&self) -> [(&str, ExchangeType); 3] {
        [
            (self.direct(), ExchangeType::Direct),
            (self.fanout(), ExchangeType::Fanout),
            (self.rooms(), ExchangeType::Direct),
        ]
    }

    /// The queue of one broker connection of `node`: `<ns>.node.<node>.<suffix>`.
    /// The suffix is unique per connection, so a restarted node never collides
    /// with the exclusive queue of its predecessor that the server has not
    /// yet cleaned up.
    pub fn queue(&self, node: &str, suffix: &str) -> Result<String, ClusterError> {
        checked(format!("{}.node.{node}.{suffix}", self.ns), "queue name")
    }

    /// Where a message on `topic` is published: (exchange, routing key).
    pub fn route(&self, topic: &Topic) -> Result<(&str, String), ClusterError> {
        Ok(match topic {
            Topic::Node(id) => (self.direct(), checked(id.clone(), "node id")?),
            Topic::Cluster => (self.fanout(), String::new()),
            Topic::Room(room) => (self.rooms(), checked(room.clone(), "room name")?),
        })
    }

    /// The topic of a delivery, from its exchange and routing key; `None` for
    /// an exchange that is not ours (nothing else is bound to our queue, so
    /// that would be an operator's manual binding).
    pub fn topic_of(&self, exchange: &str, routing_key: &str) -> Option<Topic> {
        if exchange == self.direct {
            Some(Topic::Node(routing_key.to_owned()))
        } else if exchange == self.fanout {
            Some(Topic::Cluster)
        } else if exchange == self.rooms {
            Some(Topic::Room(routing_key.to_owned()))
        } else {
            None
        }
    }
}

/// The exchange types wsring declares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExchangeType {
    /// Exact routing-key match.
    Direct,
    /// Every bound queue.
    Fanout,
}

/// Checks a node id used in queue names and consumer tags.
pub fn validate_node(node: &str) -> Result<(), ClusterError> {
    if node.is_empty() || node.len() > MAX_NODE_LEN {
        return Err(ClusterError::InvalidUrl {
            url: node.to_owned(),
            reason: format!("node id must be 1-{MAX_NODE_LEN} bytes"),
        });
    }
    Ok(())
}

/// A suffix unique to this connection attempt: a hash of the time, the process
/// id and a counter under a randomly keyed hasher (std's `RandomState` is
/// seeded from the OS), so two processes starting in the same nanosecond still
/// differ.
pub fn unique_suffix() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = RandomState::new().build_hasher();
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    h.write_u128(nanos);
    h.write_u32(std::process::id());
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    format!("{:016x}", h.finish())
}

fn checked(s: String, what: &str) -> Result<String, ClusterError> {
    if s.len() > MAX_SHORT_STRING {
        return Err(ClusterError::backend(format!(
            "{what} is {} bytes; AMQP allows at most {MAX_SHORT_STRING}",
            s.len()
        )));
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_rules() {
        assert!(Names::new("prod-1_a").is_ok());
        assert!(Names::new(&"x".repeat(64)).is_ok());
        for bad in ["", "a.b", "a b", "ä", &"x".repeat(65)] {
            assert!(
                matches!(Names::new(bad), Err(ClusterError::InvalidNamespace(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn exchange_names_are_prefixed() {
        let n = Names::new("ns").expect("valid");
        assert_eq!(n.direct(), "ns.direct");
        assert_eq!(n.fanout(), "ns.fanout");
        assert_eq!(n.rooms(), "ns.rooms");
        assert_eq!(n.queue("n1", "abc").expect("short"), "ns.node.n1.abc");
        assert!(n.exchanges().iter().all(|(e, _)| e.starts_with("ns.")));
    }

    #[test]
    fn route_and_topic_of_are_inverse() {
        let n = Names::new("ns").expect("valid");
        let topics = [
            Topic::Node("a".into()),
            Topic::Node("ns.rooms".into()),
            Topic::Cluster,
            Topic::Room("lobby.v2:x@y".into()),
            Topic::Room("a".into()),
            Topic::Room(String::new()),
        ];
        for t in topics {
            let (ex, key) = n.route(&t).expect("routable");
            assert_eq!(n.topic_of(ex, &key), Some(t.clone()), "{t:?}");
        }
    }

    #[test]
    fn node_and_room_of_same_name_do_not_collide() {
        let n = Names::new("ns").expect("valid");
        let node = n.route(&Topic::Node("x".into())).expect("ok");
        let room = n.route(&Topic::Room("x".into())).expect("ok");
        assert_eq!(node.1, room.1);
        assert_ne!(node.0, room.0);
    }

    #[test]
    fn foreign_exchange_is_unknown() {
        let n = Names::new("ns").expect("valid");
        assert_eq!(n.topic_of("other.direct", "a"), None);
        assert_eq!(n.topic_of("", "a"), None);
        assert_eq!(n.topic_of("ns.directx", "a"), None);
    }

    #[test]
    fn overlong_keys_are_errors_not_panics() {
        let n = Names::new("ns").expect("valid");
        let long = "r".repeat(256);
        assert!(matches!(
            n.route(&Topic::Room(long.clone())),
            Err(ClusterError::Backend(_))
        ));
        assert!(n.route(&Topic::Room("r".repeat(255))).is_ok());
        assert!(n.queue(&long, "s").is_err());
    }

    #[test]
    fn node_rules() {
        assert!(validate_node("n-1").is_ok());
        assert!(validate_node("").is_err());
        assert!(validate_node(&"n".repeat(65)).is_err());
    }

    #[test]
    fn suffixes_differ() {
        let a = unique_suffix();
        let b = unique_suffix();
        assert_ne!(a, b);
        assert_eq!(a.len(), 16);
    }
}
