//! The authentication settings group of the command line (`--jwt-*`,
//! `--api-key`, `--allowed-origins`, the connect proxy) and the Pusher app
//! (`--pusher-*`): flags, `WSRING_*` variables and TOML keys, declared here
//! once and turned into `wsring-auth`'s plain [`AuthSettings`], whose
//! `Default` holds the defaults the flags show.

use clap::{ArgAction, Args};
use serde::Serialize;
use std::path::PathBuf;
use std::time::Duration;
use wsring_auth::{
    AuthSettings, DEFAULT_CONNECT_PROXY_CALLS_PER_SEC, DEFAULT_CONNECT_PROXY_TIMEOUT,
    DEFAULT_JWT_LEEWAY, DEFAULT_PROXY_HEADERS, parse_duration,
};

use wsring_auth::pusher::PusherSettings;

use super::{human, human_default};

/// Who may connect and call the API. Outside `wsring dev`, a node or gateway
/// refuses to start unless a token key or `--insecure-no-auth` is given.
#[derive(Debug, Clone, Args, Serialize)]
pub struct AuthArgs {
    /// HMAC secret verifying connect tokens (HS256). Repeat the flag to
    /// accept several at once while rotating.
    #[arg(long, env = "WSRING_JWT_SECRET", value_name = "SECRET")]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub jwt_secret: Vec<String>,
    /// PEM file with an RSA, EC or Ed25519 public key verifying connect
    /// tokens (RS256, ES256, EdDSA, …). Repeatable.
    #[arg(long, env = "WSRING_JWT_PUBLIC_KEY", value_name = "FILE")]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub jwt_public_key: Vec<PathBuf>,
    /// JSON Web Key Set file; a token's `kid` selects its key.
    #[arg(long, env = "WSRING_JWT_JWKS_FILE", value_name = "FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwt_jwks_file: Option<PathBuf>,
    /// Clock skew tolerated on a token's `exp` and `nbf`.
    #[arg(long, env = "WSRING_JWT_LEEWAY", value_name = "DURATION", default_value = human_default(DEFAULT_JWT_LEEWAY), value_parser = parse_duration)]
    #[serde(serialize_with = "human")]
    pub jwt_leeway: Duration,
    /// Required token audience (`aud`); repeatable. Unset: `aud` is not checked.
    #[arg(long, env = "WSRING_JWT_AUDIENCE", value_name = "AUD")]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub jwt_audience: Vec<String>,
    /// Required token issuer (`iss`); repeatable. Unset: `iss` is not checked.
    #[arg(long, env = "WSRING_JWT_ISSUER", value_name = "ISS")]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub jwt_issuer: Vec<String>,
    /// Key for the HTTP API's send, publish, broadcast, presence, event
    /// stream and node control (`Authorization: Bearer KEY`). Repeatable.
    #[arg(long, env = "WSRING_API_KEY", value_name = "KEY")]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub api_key: Vec<String>,
    /// Accept bare `?user=` connects without a token (a proxy in front
    /// authenticates). Logged as a warning and shown on /api/info.
    // `--insecure-no-auth` alone means true; `--insecure-no-auth false` is
    // accepted too, so a generated command line can spell out either value.
    #[arg(long, env = "WSRING_INSECURE_NO_AUTH", default_value_t = false, num_args = 0..=1, default_missing_value = "true", action = ArgAction::Set)]
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub insecure_no_auth: bool,
    /// Origins (scheme://host[:port]) whose pages may open /ws and get CORS
    /// headers on the API; comma-separated. Unset: no Origin check, no CORS.
    #[arg(
        long,
        env = "WSRING_ALLOWED_ORIGINS",
        value_name = "ORIGINS",
        value_delimiter = ','
    )]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allowed_origins: Vec<String>,
    /// The application's connect endpoint: each upgrade without a token is
    /// POSTed there (allow-listed headers, query, remote address) and the
    /// answer decides the user, or refuses with 401/403. Needs
    /// `--connect-proxy-secret`, the same on every gateway and node.
    #[arg(long, env = "WSRING_CONNECT_PROXY", value_name = "URL")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connect_proxy: Option<String>,
    /// Signs the connect proxy's requests (`X-Wsring-Signature`) and the
    /// identity a gateway forwards to a node.
    #[arg(long, env = "WSRING_CONNECT_PROXY_SECRET", value_name = "SECRET")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connect_proxy_secret: Option<String>,
    /// Time the application has to answer a connect (then 503).
    #[arg(long, env = "WSRING_CONNECT_PROXY_TIMEOUT", value_name = "DURATION", default_value = human_default(DEFAULT_CONNECT_PROXY_TIMEOUT), value_parser = parse_duration)]
    #[serde(serialize_with = "human")]
    pub connect_proxy_timeout: Duration,
    /// Request headers passed to the connect proxy, comma-separated (case
    /// does not matter); no others leave.
    #[arg(
        long,
        env = "WSRING_CONNECT_PROXY_HEADERS",
        value_name = "NAMES",
        value_delimiter = ',',
        default_value = DEFAULT_PROXY_HEADERS
    )]
    pub connect_proxy_headers: Vec<String>,
    /// The Pusher Channels app.
    #[command(flatten)]
    #[serde(flatten)]
    pub pusher: PusherArgs,
    /// Connect-proxy calls per second allowed from one remote address (the
    /// TCP peer), with a burst of five times this; past it a connect is
    /// answered 429 `rate_limited` without calling the application.
    /// 0: unlimited.
    #[arg(
        long,
        env = "WSRING_CONNECT_PROXY_CALLS_PER_SEC",
        value_name = "N",
        default_value_t = DEFAULT_CONNECT_PROXY_CALLS_PER_SEC
    )]
    pub connect_proxy_calls_per_sec: f64,
}

/// The Pusher Channels app of this cluster. Either none of the id, key and
/// secret is given (the Pusher endpoints are off), or all three.
#[derive(Debug, Clone, Args, Serialize)]
pub struct PusherArgs {
    /// Pusher Channels app id: the `{app_id}` of the HTTP API paths
    /// (`/apps/{app_id}/…`). Setting the id, key and secret turns on the
    /// Pusher endpoints (`/app/{key}` and `/apps/{app_id}/…`).
    #[arg(long, env = "WSRING_PUSHER_APP_ID", value_name = "ID")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pusher_app_id: Option<String>,
    /// Pusher Channels app key: clients connect to `/app/{key}`; signed API
    /// requests carry it as `auth_key`.
    #[arg(long, env = "WSRING_PUSHER_KEY", value_name = "KEY")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pusher_key: Option<String>,
    /// Pusher Channels app secret: verifies private and presence channel
    /// authorizations and signed API requests.
    #[arg(long, env = "WSRING_PUSHER_SECRET", value_name = "SECRET")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pusher_secret: Option<String>,
    /// Let Pusher clients send `client-*` events on private and presence
    /// channels (10 a second per connection).
    #[arg(long, env = "WSRING_PUSHER_CLIENT_EVENTS", default_value_t = false, num_args = 0..=1, default_missing_value = "true", action = ArgAction::Set)]
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub pusher_client_events: bool,
    /// Application URL receiving webhooks in Pusher's format
    /// (channel_occupied, channel_vacated, member_added, member_removed,
    /// client_event), signed with the app secret
    /// (`X-Pusher-Signature`). Repeatable: every URL gets every event. Same
    /// queue, batching and retries as `--webhook-url`.
    #[arg(
        long = "pusher-webhook-url",
        env = "WSRING_PUSHER_WEBHOOK_URL",
        value_name = "URL",
        value_delimiter = ','
    )]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pusher_webhook_url: Vec<String>,
}

impl From<AuthArgs> for AuthSettings {
    fn from(a: AuthArgs) -> Self {
        AuthSettings {
            jwt_secret: a.jwt_secret,
            jwt_public_key: a.jwt_public_key,
            jwt_jwks_file: a.jwt_jwks_file,
            jwt_leeway: a.jwt_leeway,
            jwt_audience: a.jwt_audience,
            jwt_issuer: a.jwt_issuer,
            api_key: a.api_key,
            insecure_no_auth: a.insecure_no_auth,
            allowed_origins: a.allowed_origins,
            connect_proxy: a.connect_proxy,
            connect_proxy_secret: a.connect_proxy_secret,
            connect_proxy_timeout: a.connect_proxy_timeout,
            connect_proxy_headers: a.connect_proxy_headers,
            pusher: a.pusher.into(),
            connect_proxy_calls_per_sec: a.connect_proxy_calls_per_sec,
        }
    }
}

impl From<PusherArgs> for PusherSettings {
    fn from(p: PusherArgs) -> Self {
        PusherSettings {
            pusher_app_id: p.pusher_app_id,
            pusher_key: p.pusher_key,
            pusher_secret: p.pusher_secret,
            pusher_client_events: p.pusher_client_events,
            pusher_webhook_url: p.pusher_webhook_url,
        }
    }
}
