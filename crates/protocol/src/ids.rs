//! Identifier rules. User ids and room names share one alphabet so that they
//! can be embedded in Redis keys, NATS subjects (after escaping `.`) and AMQP
//! routing keys without ambiguity; node ids are stricter because they also
//! become JetStream KV keys and queue names.

use thiserror::Error;

/// Why an identifier was rejected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum IdError {
    /// The identifier was empty or absent.
    #[error("{what} is missing or empty")]
    Empty {
        /// Which identifier ("user", "room", "node id").
        what: &'static str,
    },
    /// The identifier was longer than allowed.
    #[error("{what} is longer than {max} characters")]
    TooLong {
        /// Which identifier.
        what: &'static str,
        /// The limit.
        max: usize,
    },
    /// The identifier used a character outside its alphabet.
    #[error("{what} contains {ch:?}; allowed characters are {allowed}")]
    BadChar {
        /// Which identifier.
        what: &'static str,
        /// The first offending character.
        ch: char,
        /// A description of the alphabet.
        allowed: &'static str,
    },
    /// A user id starting with `@`: that prefix names the server's own
    /// addresses (`@server`), in any case.
    #[error(
        "{what} must not start with '@': that prefix is reserved for server addresses such as @server"
    )]
    Reserved {
        /// Which identifier.
        what: &'static str,
    },
}

/// Maximum length of a user id or room name.
pub const MAX_USER_LEN: usize = 128;
/// Maximum length of a node id.
pub const MAX_NODE_LEN: usize = 64;

const USER_ALPHABET: &str = "A-Z a-z 0-9 _ . : @ -";
const NODE_ALPHABET: &str = "A-Z a-z 0-9 _ -";

fn check(
    what: &'static str,
    s: &str,
    max: usize,
    allowed: &'static str,
    ok: impl Fn(char) -> bool,
) -> Result<(), IdError> {
    if s.is_empty() {
        return Err(IdError::Empty { what });
    }
    if let Some(ch) = s.chars().find(|c| !ok(*c)) {
        return Err(IdError::BadChar { what, ch, allowed });
    }
    // All allowed characters are ASCII, so bytes == characters here.
    if s.len() > max {
        return Err(IdError::TooLong { what, max });
    }
    Ok(())
}

fn user_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '@' | '-')
}

/// A user id is 1–128 characters from `[A-Za-z0-9_.:@-]`, not starting with
/// `@` (reserved for addresses such as `@server`, so that no user can pass
/// for one, whatever its case or suffix).
pub fn validate_user(s: &str) -> Result<(), IdError> {
    check("user", s, MAX_USER_LEN, USER_ALPHABET, user_char)?;
    if s.starts_with('@') {
        return Err(IdError::Reserved { what: "user" });
    }
    Ok(())
}

/// A room name follows the user-id rule: 1–128 characters from `[A-Za-z0-9_.:@-]`.
pub fn validate_room(s: &str) -> Result<(), IdError> {
    check("room", s, MAX_USER_LEN, USER_ALPHABET, user_char)
}

/// A node id is 1–64 characters from `[A-Za-z0-9_-]`.
pub fn validate_node_id(s: &str) -> Result<(), IdError> {
    check("node id", s, MAX_NODE_LEN, NODE_ALPHABET, |c| {
        c.is_ascii_alphanumeric() || matches!(c, '_' | '-')
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_ids() {
        assert!(validate_user("alice").is_ok());
        assert!(validate_user("a.b:c@d-e_f9").is_ok());
        assert!(validate_user(&"x".repeat(128)).is_ok());
        assert_eq!(
            validate_user(&"x".repeat(129)),
            Err(IdError::TooLong {
                what: "user",
                max: 128
            })
        );
        assert_eq!(validate_user(""), Err(IdError::Empty { what: "user" }));
        assert!(matches!(
            validate_user("al ice"),
            Err(IdError::BadChar { ch: ' ', .. })
        ));
        assert!(validate_user("ünï").is_err());
        assert!(validate_user("a/b").is_err());
        for reserved in ["@server", "@SERVER", "@server.", "@Server:x", "@", "@alice"] {
            assert_eq!(
                validate_user(reserved),
                Err(IdError::Reserved { what: "user" }),
                "{reserved}"
            );
        }
        assert!(validate_user("alice@example.com").is_ok());
    }

    #[test]
    fn node_ids() {
        assert!(validate_node_id("n1").is_ok());
        assert!(validate_node_id("wsring-7f9c_2").is_ok());
        assert!(validate_node_id("n.1").is_err());
        assert!(validate_node_id(&"n".repeat(65)).is_err());
    }
}
