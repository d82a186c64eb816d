//! Every Redis key and channel name wsring uses, in one place.
//!
//! | what | name |
//! |---|---|
//! | membership document (hash: `v` version, `d` JSON) | `{<ns>}:doc` |
//! | heartbeat of node `id` (string, `PX` = TTL) | `{<ns>}:hb:<id>` |
//! | membership change notification (channel) | `<ns>:membership` |
//! | directed delivery to node `id` (channel) | `<ns>:node:<id>` |
//! | cluster fan-out (channel) | `<ns>:cluster` |
//! | room `r` (channel) | `<ns>:room:<r>` |
//! | stream meta (hash: `e` epoch, `s` last seq) | `{<ns>:u:<user>}:m` / `{<ns>:r:<room>}:m` |
//! | stream entries (Redis Stream, id `<seq>-0`; fields `t` time, `p` payload, `c` cost, `d` dedup key, `o` owner) | `{<ns>:u:<user>}:x` / `{<ns>:r:<room>}:x` |
//! | dedup index of retained entries (hash: key → seq) | `{<ns>:u:<user>}:d` / `{<ns>:r:<room>}:d` |
//! | store usage: streams by last activity (sorted set, score ms) | `{<ns>}:streams:t` |
//! | store usage: bytes counted per stream (hash) | `{<ns>}:streams:b` |
//! | store usage: bytes counted in all (string) | `{<ns>}:streams:total` |
//! | store usage: owner–stream pairs by last activity (sorted set; member `<owner>\n<stream>`) | `{<ns>}:streams:ot` |
//! | store usage: bytes counted per owner–stream pair (hash) | `{<ns>}:streams:ob` |
//! | store usage: bytes counted per owner (hash) | `{<ns>}:streams:ou` |
//! | server-side rooms of `user` (set) | `{<ns>:u:<user>}:rooms` |
//! | durable webhook queues that exist (set of names) | `{<ns>}:hq` |
//! | durable webhook queue `q` (Redis Stream, id `<seq>-1`, field `e` event) | `{<ns>:hq:<q>}:x` |
//! | its last sequence number (string) | `{<ns>:hq:<q>}:n` |
//!
//! | client name of node `id`'s registry connection | `wsring:<ns>:node:<id>` |
//!
//! Registry keys share the `{<ns>}` hash tag (the reaper reads all heartbeats
//! with one `MGET`); each stream's keys share their own tag, so streams spread
//! over a Redis Cluster while every script stays within one slot.

use wsring_cluster::{ClusterError, StreamName, Topic};

/// Key and channel names for one namespace.
#[derive(Debug, Clone)]
pub struct Keys {
    ns: String,
}

impl Keys {
    /// Validates the namespace (1–64 of `[A-Za-z0-9_-]`).
    pub fn new(ns: &str) -> Result<Keys, ClusterError> {
        wsring_cluster::validate_namespace(ns)?;
        Ok(Keys { ns: ns.to_owned() })
    }

    /// The membership document.
    pub fn doc(&self) -> String {
        format!("{{{}}}:doc", self.ns)
    }

    /// A node's heartbeat.
    pub fn heartbeat(&self, node: &str) -> String {
        format!("{{{}}}:hb:{node}", self.ns)
    }

    /// The counter that hands out incarnations (fencing tokens). Same hash
    /// tag as the heartbeats, so a claim is one single-slot script.
    pub fn incarnations(&self) -> String {
        format!("{{{}}}:incarnation", self.ns)
    }

    /// The client name (`CLIENT SETNAME`) of node `id`'s registry
    /// connection, so others can tell from `CLIENT LIST` whether it still
    /// holds one.
    pub fn client_name(&self, node: &str) -> String {
        format!("wsring:{}:node:{node}", self.ns)
    }

    /// The membership change channel.
    pub fn membership_channel(&self) -> String {
        format!("{}:membership", self.ns)
    }

    /// The channel of a broker topic.
    pub fn channel(&self, topic: &Topic) -> String {
        match topic {
            Topic::Node(id) => format!("{}:node:{id}", self.ns),
            Topic::Cluster => format!("{}:cluster", self.ns),
            Topic::Room(r) => format!("{}:room:{r}", self.ns),
        }
    }

    /// The topic of a channel (inverse of [`channel`](Self::channel)).
    pub fn topic(&self, channel: &str) -> Option<Topic> {
        let rest = channel.strip_prefix(&self.ns)?.strip_prefix(':')?;
        if rest == "cluster" {
            return Some(Topic::Cluster);
        }
        if let Some(id) = rest.strip_prefix("node:") {
            return Some(Topic::Node(id.to_owned()));
        }
        rest.strip_prefix("room:")
            .map(|r| Topic::Room(r.to_owned()))
    }

    fn stream_tag(&self, s: &StreamName) -> String {
        format!("{{{}:{}}}", self.ns, s.key())
    }

    /// A stream's meta hash.
    pub fn stream_meta(&self, s: &StreamName) -> String {
        format!("{}:m", self.stream_tag(s))
    }

    /// A stream's entries.
    pub fn stream_entries(&self, s: &StreamName) -> String {
        format!("{}:x", self.stream_tag(s))
    }

    /// The store usage keys: streams by last activity, bytes per stream,
    /// the byte total, owner–stream pairs by last activity, bytes per pair
    /// and bytes per owner. One hash tag, so each usage update is one
    /// script.
    pub fn stream_usage(&self) -> [String; 6] {
        ["t", "b", "total", "ot", "ob", "ou"].map(|k| format!("{{{}}}:streams:{k}", self.ns))
    }

    /// The set of `user`'s server-side rooms: beside the user's stream, in
    /// its slot.
    pub fn server_rooms(&self, user: &str) -> String {
        format!(
            "{}:rooms",
            self.stream_tag(&StreamName::User(user.to_owned()))
        )
    }

    /// The set of durable webhook queue names.
    pub fn hook_queues(&self) -> String {
        format!("{{{}}}:hq", self.ns)
    }

    /// A durable webhook queue's entries and its sequence counter, in one
    /// slot.
    pub fn hook_queue(&self, queue: &str) -> [String; 2] {
        ["x", "n"].map(|k| format!("{{{}:hq:{queue}}}:{k}", self.ns))
    }

    /// A stream's dedup index: one field per retained entry with a dedup
    /// key, dropped with the entry.
    pub fn stream_dedup(&self, s: &StreamName) -> String {
        format!("{}:d", self.stream_tag(s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        let k = Keys::new("t1").expect("ns");
        assert_eq!(k.doc(), "{t1}:doc");
        assert_eq!(k.heartbeat("n1"), "{t1}:hb:n1");
        let s = StreamName::Room("a.b".into());
        assert_eq!(k.stream_entries(&s), "{t1:r:a.b}:x");
        assert_eq!(k.stream_dedup(&s), "{t1:r:a.b}:d");
        assert_eq!(k.server_rooms("bob@x"), "{t1:u:bob@x}:rooms");
        for t in [
            Topic::Cluster,
            Topic::Node("n-1".into()),
            Topic::Room("x:y@z.w".into()),
        ] {
            assert_eq!(k.topic(&k.channel(&t)), Some(t));
        }
        assert_eq!(k.topic("other:cluster"), None);
        assert!(Keys::new("bad ns").is_err());
        assert!(Keys::new("").is_err());
    }
}
