//! RFC 6455 close codes used by wsring, in one place so that the node, the
//! client SDK and the docs cannot disagree.

/// Server going down for good (only when the whole cluster stops).
pub const GOING_AWAY: u16 = 1001;
/// The text frame was not valid UTF-8 (RFC 6455 §7.4.1, "inconsistent data").
pub const INVALID_PAYLOAD: u16 = 1007;
/// Policy violation; used for a consumer too slow to keep up with its queue.
pub const POLICY_VIOLATION: u16 = 1008;
/// The message exceeded `--max-message-bytes`.
pub const MESSAGE_TOO_BIG: u16 = 1009;
/// "Service restart": this user now belongs to another node; reconnect.
pub const SERVICE_RESTART: u16 = 1012;
/// Temporary overload; the client should back off and retry.
pub const TRY_AGAIN_LATER: u16 = 1013;

/// Close reason sent with [`SERVICE_RESTART`] after a `moved` frame.
pub const REASON_MOVED: &str = "moved";
/// Close reason for a session whose outbound queue overflowed.
pub const REASON_SLOW: &str = "slow consumer";
/// Close reason (with [`POLICY_VIOLATION`]) for a client flooding pings or
/// pongs.
pub const REASON_CONTROL_FLOOD: &str = "too many control frames";

/// Close reason (with [`POLICY_VIOLATION`]) of a connection that kept sending
/// after being answered `rate_limited`.
pub const REASON_RATE_LIMIT: &str = "rate limit exceeded";

/// Close reason (with [`POLICY_VIOLATION`]) of a user's oldest session when
/// the user opened more than the per-user session cap.
pub const REASON_TOO_MANY_SESSIONS: &str = "too many sessions";

/// The identity the connect proxy gave the session expired (its
/// `expire_at` passed): reconnect, and the application decides again. 3000
/// is the registered "Unauthorized" code, outside the application range.
pub const EXPIRED: u16 = 3000;
/// Close reason sent with [`EXPIRED`].
pub const REASON_EXPIRED: &str = "expired";

/// The first close code of the range applications may use (RFC 6455
/// §7.4.2: 4000–4999 are private use).
pub const APP_MIN: u16 = 4000;
/// The last application close code.
pub const APP_MAX: u16 = 4999;
/// Close code of the sessions `POST /api/disconnect` ends when the call
/// names no code of its own: the server ended every session of the user on
/// purpose, so a client should not reconnect on its own.
pub const DISCONNECTED: u16 = APP_MIN;
/// Close reason sent with [`DISCONNECTED`] when the call gives none.
pub const REASON_DISCONNECTED: &str = "disconnected";
/// Longest close reason in bytes: a close frame's payload is at most 125
/// bytes, two of which are the code.
pub const MAX_REASON_BYTES: usize = 123;

/// Whether `code` is an application close code (4000–4999).
pub fn is_app_code(code: u16) -> bool {
    (APP_MIN..=APP_MAX).contains(&code)
}
