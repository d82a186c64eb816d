//! The `rooms` claim: which rooms a connection may join and publish to.
//!
//! Each entry is a room name or a pattern where `*` stands for any run of
//! characters (`chat.*` matches `chat.1` and `chat.a.b`; `*` matches every
//! room). Matching is linear in the room name and needs no regex engine, so
//! a hostile pattern cannot make it slow.

use thiserror::Error;

/// Most entries a `rooms` claim may hold (a token is at most
/// [`crate::MAX_TOKEN_BYTES`] anyway; this keeps a check cheap).
pub const MAX_ROOM_PATTERNS: usize = 256;

/// Why a `rooms` entry was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PatternError {
    /// Empty, too long, or a character a room name cannot contain.
    #[error("invalid room pattern {0:?}")]
    Invalid(String),
    /// More than [`MAX_ROOM_PATTERNS`] entries.
    #[error("more than {MAX_ROOM_PATTERNS} room patterns")]
    TooMany,
}

/// One `rooms` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomPattern {
    /// The literal pieces between `*`s; a pattern without `*` is one piece.
    pieces: Vec<String>,
    /// Whether the pattern contains a `*` at all.
    wild: bool,
}

impl RoomPattern {
    /// Parses an entry: a valid room name in which `*` may stand for any run
    /// of characters.
    pub fn parse(s: &str) -> Result<RoomPattern, PatternError> {
        // With each `*` standing in for one character, a pattern must be a
        // valid room name: the same alphabet and length limit.
        if wsring_protocol::validate_room(&s.replace('*', "x")).is_err() {
            return Err(PatternError::Invalid(s.chars().take(64).collect()));
        }
        let pieces: Vec<String> = s.split('*').map(str::to_owned).collect();
        Ok(RoomPattern {
            wild: pieces.len() > 1,
            pieces,
        })
    }

    /// The entry as written (`*` where it had one).
    pub fn as_entry(&self) -> String {
        self.pieces.join("*")
    }

    /// Whether `room` matches.
    pub fn matches(&self, room: &str) -> bool {
        if !self.wild {
            return self.pieces[0] == room;
        }
        let (first, rest) = self.pieces.split_first().expect("split yields a piece");
        let (last, middle) = rest.split_last().expect("a wild pattern has two pieces");
        if room.len() < first.len() + last.len()
            || !room.starts_with(first.as_str())
            || !room.ends_with(last.as_str())
        {
            return false;
        }
        // Leftmost matching of the middle pieces is optimal for `*`-only
        // globs: taking each piece as early as possible leaves the most room
        // for the rest.
        let mut hay = &room[first.len()..room.len() - last.len()];
        for piece in middle.iter().filter(|p| !p.is_empty()) {
            match hay.find(piece.as_str()) {
                Some(at) => hay = &hay[at + piece.len()..],
                None => return false,
            }
        }
        true
    }
}

/// The rooms a connection may use.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum RoomPolicy {
    /// No `rooms` claim (or no authentication): every room.
    #[default]
    All,
    /// Only rooms matching one of these.
    Only(Vec<RoomPattern>),
}

impl RoomPolicy {
    /// Builds the policy from a `rooms` claim.
    pub fn from_claim<S: AsRef<str>>(entries: &[S]) -> Result<RoomPolicy, PatternError> {
        if entries.len() > MAX_ROOM_PATTERNS {
            return Err(PatternError::TooMany);
        }
        entries
            .iter()
            .map(|e| RoomPattern::parse(e.as_ref()))
            .collect::<Result<Vec<_>, _>>()
            .map(RoomPolicy::Only)
    }

    /// The `rooms` entries this policy was built from (`None`: every room).
    pub fn entries(&self) -> Option<Vec<String>> {
        match self {
            RoomPolicy::All => None,
            RoomPolicy::Only(p) => Some(p.iter().map(RoomPattern::as_entry).collect()),
        }
    }

    /// Whether `room` may be joined and published to.
    pub fn allows(&self, room: &str) -> bool {
        match self {
            RoomPolicy::All => true,
            RoomPolicy::Only(p) => p.iter().any(|p| p.matches(room)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn m(p: &str, room: &str) -> bool {
        RoomPattern::parse(p).expect("pattern").matches(room)
    }

    #[test]
    fn literal_and_star_patterns() {
        assert!(m("lobby", "lobby"));
        assert!(!m("lobby", "lobby2"));
        assert!(m("chat.*", "chat.1"));
        assert!(m("chat.*", "chat.a.b"));
        assert!(m("chat.*", "chat."));
        assert!(!m("chat.*", "chat"));
        assert!(!m("chat.*", "xchat.1"));
        assert!(m("*", "anything"));
        assert!(m("*.vip", "room.vip"));
        assert!(!m("*.vip", "room.vip2"));
        assert!(m("a*b*c", "abc"));
        assert!(m("a*b*c", "a--b--c"));
        assert!(!m("a*b*c", "a--c--b"));
        assert!(m("a**b", "ab"));
        // Overlapping first and last pieces must not both claim one char.
        assert!(!m("ab*ba", "aba"));
        assert!(m("ab*ba", "abba"));
    }

    #[test]
    fn bad_patterns_are_refused() {
        assert!(RoomPattern::parse("").is_err());
        assert!(RoomPattern::parse("a b").is_err());
        assert!(RoomPattern::parse(&"x".repeat(10_000)).is_err());
        let many: Vec<String> = (0..MAX_ROOM_PATTERNS + 1).map(|i| i.to_string()).collect();
        assert_eq!(RoomPolicy::from_claim(&many), Err(PatternError::TooMany));
    }

    #[test]
    fn policy() {
        assert!(RoomPolicy::All.allows("x"));
        let p = RoomPolicy::from_claim(&["lobby", "chat.*"]).expect("policy");
        assert!(p.allows("lobby") && p.allows("chat.9") && !p.allows("admin"));
        let none = RoomPolicy::from_claim::<&str>(&[]).expect("policy");
        assert!(!none.allows("lobby"), "an empty claim allows no room");
    }

    /// Reference: a straightforward exponential-time glob.
    fn reference(p: &[u8], s: &[u8]) -> bool {
        match p.split_first() {
            None => s.is_empty(),
            Some((b'*', rest)) => (0..=s.len()).any(|i| reference(rest, &s[i..])),
            Some((c, rest)) => s.first() == Some(c) && reference(rest, &s[1..]),
        }
    }

    proptest! {
        #[test]
        fn matches_like_a_glob(p in "[ab*]{1,8}", s in "[ab]{0,10}") {
            prop_assume!(p.chars().any(|c| c != '*') || p.contains('*'));
            let pat = RoomPattern::parse(&p).expect("pattern");
            prop_assert_eq!(pat.matches(&s), reference(p.as_bytes(), s.as_bytes()));
        }
    }
}
