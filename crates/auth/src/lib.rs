//! Who may connect, and what they may do once connected.
//!
//! Three pieces, shared by the gateway and the node (a node verifies again,
//! since nodes can be reached directly):
//! * [`Verifier`]: checks a connect token (a JWT: HS256 secrets, RS256/ES256
//!   PEM public keys or a JWKS file, several at once for rotation) and turns
//!   it into an [`Identity`]: the user id (`sub`), the rooms it may join or
//!   publish to (`rooms` claim), whether it may send direct messages
//!   (`send` claim) and the rooms it may publish to (`publish` claim;
//!   [`may_publish`] is the whole rule).
//! * [`RoomPolicy`]: the `rooms` claim's names and `*`-patterns.
//! * [`ApiKeys`]: the keys that unlock the HTTP API's write and control
//!   calls, compared in constant time.
//! * [`ConnectAuth`] and [`Origins`]: the connect decision (token or, in
//!   open mode, `?user=`) and the `Origin` allow-list with its CORS answer.
//! * [`ConnectProxy`] and [`Assertions`]: the application deciding who a
//!   connection is over HTTP instead of a token (`--connect-proxy`), and the
//!   short-lived identity token a gateway forwards that decision in.
//! * [`RateLimiter`] and [`KeyedLimiter`]: message and byte budgets per
//!   connection and per key (user, remote address), and when a
//!   client that ignores `rate_limited` is closed.
//!
//! * [`mint`]: signs a connect token the [`Verifier`] accepts (for
//!   `wsring token` and `wsring bench`).
//!
//! [`AuthSettings`] declares the flags once; [`Security`] is their runtime
//! form.
//!
//! Every error is an [`AuthError`] whose message is safe to show the caller:
//! it never repeats the token or the key.

mod api_key;
mod assertion;
mod connect;
mod error;
mod jwt;
mod mint;
mod pattern;
pub mod pusher;
mod rate;
mod settings;

pub use api_key::{ApiKeyId, ApiKeys, bearer};
pub use assertion::{Assertions, IDENTITY_HEADER, IDENTITY_PARAM, unix_now};
pub use connect::{ConnectAuth, Credentials, Origins};
pub use error::{AuthError, KeyError};
pub use jsonwebtoken::Algorithm;
pub use jwt::{
    Identity, JwtSettings, MAX_TOKEN_BYTES, PublishRefusal, Verifier, grant, may_publish,
};
pub use mint::{Grant, MintError, SigningKey, mint, unverified_subject};
pub use pattern::{MAX_ROOM_PATTERNS, PatternError, RoomPattern, RoomPolicy};
pub use rate::{
    KeyedLimiter, KeyedLimits, RateLimiter, RateLimits, RetryAfter, TokenBucket, Verdict,
};
pub use settings::{
    AuthSettings, ConnectProxy, DEFAULT_CONNECT_PROXY_CALLS_PER_SEC, DEFAULT_CONNECT_PROXY_TIMEOUT,
    DEFAULT_JWT_LEEWAY, DEFAULT_PROXY_HEADERS, NATIVE_OFF, Refusal, Security, SettingsError,
    parse_duration,
};
