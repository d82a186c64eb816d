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
