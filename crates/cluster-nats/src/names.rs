//! Naming: how wsring namespaces, topics, streams and node ids map onto NATS
//! subjects, KV keys, bucket and stream names, plus the message headers the
//! stream store writes. Everything that touches the NATS name space goes
//! through here, so the layout documented in the crate root is the only one.
//!
//! Names coming from users (room names, user ids, node ids, dedup keys) are
//! escaped so they always form exactly one subject token / one KV key and two
//! different names can never map to the same subject: every byte outside a
//! small safe set becomes `~XX` (subjects) or `=XX` (KV keys), and the escape
//! character itself is always escaped, which makes the mapping injective.

use std::fmt::Write as _;

use wsring_cluster::{StreamName, Topic};

/// Header carrying a message's per-stream wsring seq (`0` for the epoch marker).
pub(crate) const HDR_SEQ: &str = "Wsring-Seq";
/// Header carrying the stream epoch the message belongs to.
pub(crate) const HDR_EPOCH: &str = "Wsring-Epoch";

/// Escapes `name` into bytes that are kept when `keep` says so, and `esc`
/// followed by two upper-case hex digits otherwise. The empty name becomes a
/// lone `esc`, which no non-empty name produces (escapes always carry digits),
/// so the result is never empty and stays injective.
fn escape(name: &str, esc: char, keep: impl Fn(u8) -> bool) -> String {
    if name.is_empty() {
        return esc.to_string();
    }
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b != esc as u8 && keep(b) {
            out.push(char::from(b));
        } else {
            // Writing to a String cannot fail.
            let _ = write!(out, "{esc}{b:02X}");
        }
    }
    out
}

/// One subject token for a user-supplied name. Keeps `[A-Za-z0-9_:@-]`
/// readable; `.` (the token separator), `~`, wildcards, whitespace and
/// non-ASCII bytes become `~XX`.
pub(crate) fn subject_token(name: &str) -> String {
    escape(name, '~', |b| {
        b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b':' | b'@')
    })
}

/// A KV key for a user-supplied name. KV keys only allow `[-/_=.A-Za-z0-9]`
/// and treat `.` as a separator, so everything but `[A-Za-z0-9_-]` becomes
/// `=XX`.
pub(crate) fn kv_key(name: &str) -> String {
    escape(name, '=', |b| {
        b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-')
    })
}

/// The core NATS subject of a broker topic.
pub(crate) fn topic_subject(ns: &str, topic: &Topic) -> String {
    match topic {
        Topic::Node(id) => format!("{ns}.node.{}", subject_token(id)),
        Topic::Cluster => format!("{ns}.cluster"),
        Topic::Room(room) => format!("{ns}.room.{}", subject_token(room)),
    }
}

/// The KV bucket holding the membership document.
pub(crate) fn members_bucket(ns: &str) -> String {
    format!("{ns}_members")
}

/// The KV bucket holding per-node heartbeats (its `max_age` is the TTL).
pub(crate) fn heartbeats_bucket(ns: &str) -> String {
    format!("{ns}_heartbeats")
}

/// The KV bucket holding each owner's durable-store usage (one key per
/// owner; see the quota module).
pub(crate) fn usage_bucket(ns: &str) -> String {
    format!("{ns}_usage")
}

/// The JetStream stream holding every server-side room membership of a
/// namespace (subjects `{ns}.sr.{user}.{room}`).
pub(crate) fn rooms_stream(ns: &str) -> String {
    format!("{ns}_rooms")
}

/// The JetStream stream holding every durable webhook queue of a
/// namespace (subjects `{ns}.hq.{queue}`).
pub(crate) fn hooks_stream(ns: &str) -> String {
    format!("{ns}_hooks")
}

/// The JetStream stream backing a KV bucket (the `KV_` prefix is fixed by the
/// KV protocol).
pub(crate) fn kv_stream(bucket: &str) -> String {
    format!("KV_{bucket}")
}

/// The JetStream stream holding every durable wsring stream of a namespace.
pub(crate) fn streams_stream(ns: &str) -> String {
    format!("{ns}_streams")
}

/// The subject filter of [`streams_stream`].
pub(crate) fn streams_filter(ns: &str) -> String {
    format!("{ns}.s.>")
}

/// The subject of one durable wsring stream.
pub(crate) fn stream_subject(ns: &str, stream: &StreamName) -> String {
    match stream {
        StreamName::User(u) => format!("{ns}.s.u.{}", subject_token(u)),
        StreamName::Room(r) => format!("{ns}.s.r.{}", subject_token(r)),
    }
}

/// The `Nats-Msg-Id` for a dedup key on a subject. JetStream's duplicate
/// window is stream-wide, so the subject is part of the id; the key is
/// escaped (so `|` never occurs in it) so the id is a valid header value and
/// no other subject/key pair produces the same id.
pub(crate) fn dedup_id(subject: &str, key: &str) -> String {
    format!("{subject}|{}", subject_token(key))
}

/// Why a stored message's wsring headers could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum HeaderError {
    /// A header is absent.
    #[error("missing {0} header")]
    Missing(&'static str),
    /// The seq header is not a decimal u64.
    #[error("invalid {HDR_SEQ} header {0:?}")]
    BadSeq(String),
    /// The epoch header is empty.
    #[error("empty {HDR_EPOCH} header")]
    EmptyEpoch,
}

/// Parses the wsring seq and epoch headers of a stored message.
pub(crate) fn parse_meta(
    seq: Option<&str>,
    epoch: Option<&str>,
) -> Result<(u64, String), HeaderError> {
    let seq = seq.ok_or(HeaderError::Missing(HDR_SEQ))?;
    let seq = seq
        .trim()
        .parse::<u64>()
        .map_err(|_| HeaderError::BadSeq(seq.to_owned()))?;
    let epoch = epoch.ok_or(HeaderError::Missing(HDR_EPOCH))?.trim();
    if epoch.is_empty() {
        return Err(HeaderError::EmptyEpoch);
    }
    Ok((seq, epoch.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn namespaces() {
        assert!(wsring_cluster::validate_namespace("conf-123_abc").is_ok());
        assert!(wsring_cluster::validate_namespace(&"a".repeat(64)).is_ok());
        assert!(wsring_cluster::validate_namespace("").is_err());
        assert!(wsring_cluster::validate_namespace(&"a".repeat(65)).is_err());
        for bad in ["a.b", "a b", "a*", "a>", "ä", "a/b", "a~b"] {
            assert!(wsring_cluster::validate_namespace(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn subject_tokens() {
        assert_eq!(subject_token("lobby"), "lobby");
        assert_eq!(subject_token("lobby.v2:x@y"), "lobby~2Ev2:x@y");
        assert_eq!(subject_token("a~b"), "a~7Eb");
        assert_eq!(subject_token("a b*>"), "a~20b~2A~3E");
        assert_eq!(subject_token("é"), "~C3~A9");
        assert_eq!(subject_token(""), "~");
        // Never a separator or wildcard, never empty.
        for s in ["a.b", ".", "*", ">", "", "x y", "\t"] {
            let t = subject_token(s);
            assert!(!t.is_empty());
            assert!(!t.contains(['.', ' ', '\t', '*', '>']), "{s:?} -> {t}");
            assert!(t != "*" && t != ">");
        }
    }

    #[test]
    fn escaping_is_injective() {
        let names = [
            "",
            "~",
            "~2E",
            ".",
            "a.b",
            "a~2Eb",
            "a=2Eb",
            "a=b",
            "lobby.v2:x@y",
            "lobby.v2:x@z",
            "lobby~v2",
            "=",
            "==",
            "~~",
            "a",
            "A",
            "é",
            "~C3~A9",
        ];
        let subj: HashSet<_> = names.iter().map(|n| subject_token(n)).collect();
        let keys: HashSet<_> = names.iter().map(|n| kv_key(n)).collect();
        assert_eq!(subj.len(), names.len());
        assert_eq!(keys.len(), names.len());
    }

    #[test]
    fn kv_keys_are_valid() {
        for n in ["node-1", "n1.eu:x@y", "", "=", "é", "a/b"] {
            let k = kv_key(n);
            assert!(!k.is_empty());
            assert!(
                k.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'=')),
                "{n:?} -> {k}"
            );
        }
        assert_eq!(kv_key("node-1_a"), "node-1_a");
        assert_eq!(kv_key("n.1"), "n=2E1");
    }

    #[test]
    fn layout() {
        let ns = "prod";
        assert_eq!(
            topic_subject(ns, &Topic::Node("n.1".into())),
            "prod.node.n~2E1"
        );
        assert_eq!(topic_subject(ns, &Topic::Cluster), "prod.cluster");
        assert_eq!(
            topic_subject(ns, &Topic::Room("a.b".into())),
            "prod.room.a~2Eb"
        );
        assert_eq!(
            stream_subject(ns, &StreamName::User("bob.b@x:y".into())),
            "prod.s.u.bob~2Eb@x:y"
        );
        assert_eq!(
            stream_subject(ns, &StreamName::Room("r".into())),
            "prod.s.r.r"
        );
        assert_eq!(members_bucket(ns), "prod_members");
        assert_eq!(heartbeats_bucket(ns), "prod_heartbeats");
        assert_eq!(kv_stream("prod_members"), "KV_prod_members");
        assert_eq!(streams_stream(ns), "prod_streams");
        assert_eq!(streams_filter(ns), "prod.s.>");
        assert_eq!(
            dedup_id("prod.s.u.bob", "k 1\r\n"),
            "prod.s.u.bob|k~201~0D~0A"
        );
    }

    #[test]
    fn headers() {
        assert_eq!(
            parse_meta(Some("7"), Some("abc")),
            Ok((7, "abc".to_owned()))
        );
        assert_eq!(
            parse_meta(Some(" 0 "), Some(" e ")),
            Ok((0, "e".to_owned()))
        );
        assert_eq!(
            parse_meta(None, Some("e")),
            Err(HeaderError::Missing(HDR_SEQ))
        );
        assert_eq!(
            parse_meta(Some("1"), None),
            Err(HeaderError::Missing(HDR_EPOCH))
        );
        assert_eq!(
            parse_meta(Some("-1"), Some("e")),
            Err(HeaderError::BadSeq("-1".into()))
        );
        assert_eq!(
            parse_meta(Some("x"), Some("e")),
            Err(HeaderError::BadSeq("x".into()))
        );
        assert_eq!(
            parse_meta(Some("1"), Some("")),
            Err(HeaderError::EmptyEpoch)
        );
    }
}
