//! The authentication settings as a plain value, with their defaults
//! declared here once (the `wsring` binary's flags, variables and TOML keys
//! show and fill them). [`AuthSettings::build`] turns them into the runtime
//! [`Security`] that the gateway and the node consult.

use crate::api_key::{ApiKeyId, ApiKeys};
use crate::assertion::Assertions;
use crate::connect::{ConnectAuth, Credentials, Origins};
use crate::error::{AuthError, KeyError};
use crate::jwt::{Identity, JwtSettings, Verifier};
use crate::pusher::{PusherApp, PusherSettings, PusherSettingsError};
use crate::rate::{KeyedLimiter, KeyedLimits};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use wsring_protocol::ErrorCode;

/// Who may connect and call the API. Outside `wsring dev`, a node or gateway
/// refuses to start unless a token key or `--insecure-no-auth` is given.
#[derive(Debug, Clone)]
pub struct AuthSettings {
    /// HMAC secret verifying connect tokens (HS256). Repeat the flag to
    /// accept several at once while rotating.
    pub jwt_secret: Vec<String>,
    /// PEM file with an RSA, EC or Ed25519 public key verifying connect
    /// tokens (RS256, ES256, EdDSA, …). Repeatable.
    pub jwt_public_key: Vec<PathBuf>,
    /// JSON Web Key Set file; a token's `kid` selects its key.
    pub jwt_jwks_file: Option<PathBuf>,
    /// Clock skew tolerated on a token's `exp` and `nbf`.
    pub jwt_leeway: Duration,
    /// Required token audience (`aud`); repeatable. Unset: `aud` is not checked.
    pub jwt_audience: Vec<String>,
    /// Required token issuer (`iss`); repeatable. Unset: `iss` is not checked.
    pub jwt_issuer: Vec<String>,
    /// Key for the HTTP API's send, publish, broadcast, presence, event
    /// stream and node control (`Authorization: Bearer KEY`). Repeatable.
    pub api_key: Vec<String>,
    /// Accept bare `?user=` connects without a token (a proxy in front
    /// authenticates). Logged as a warning and shown on /api/info.
    pub insecure_no_auth: bool,
    /// Origins (scheme://host[:port]) whose pages may open /ws and get CORS
    /// headers on the API; comma-separated. Unset: no Origin check, no CORS.
    pub allowed_origins: Vec<String>,
    /// The application's connect endpoint: each upgrade without a token is
    /// POSTed there (allow-listed headers, query, remote address) and the
    /// answer decides the user, or refuses with 401/403. Needs
    /// `--connect-proxy-secret`, the same on every gateway and node.
    pub connect_proxy: Option<String>,
    /// Signs the connect proxy's requests (`X-Wsring-Signature`) and the
    /// identity a gateway forwards to a node.
    pub connect_proxy_secret: Option<String>,
    /// Time the application has to answer a connect (then 503).
    pub connect_proxy_timeout: Duration,
    /// Request headers passed to the connect proxy, comma-separated (case
    /// does not matter); no others leave.
    pub connect_proxy_headers: Vec<String>,
    /// The Pusher Channels app.
    pub pusher: PusherSettings,
    /// Connect-proxy calls per second allowed from one remote address (the
    /// TCP peer), with a burst of five times this; past it a connect is
    /// answered 429 `rate_limited` without calling the application.
    /// 0: unlimited.
    pub connect_proxy_calls_per_sec: f64,
}

impl Default for AuthSettings {
    /// No key, no proxy, the default timeouts and header list.
    fn default() -> Self {
        AuthSettings {
            jwt_secret: Vec::new(),
            jwt_public_key: Vec::new(),
            jwt_jwks_file: None,
            jwt_leeway: DEFAULT_JWT_LEEWAY,
            jwt_audience: Vec::new(),
            jwt_issuer: Vec::new(),
            api_key: Vec::new(),
            insecure_no_auth: false,
            allowed_origins: Vec::new(),
            connect_proxy: None,
            connect_proxy_secret: None,
            connect_proxy_timeout: DEFAULT_CONNECT_PROXY_TIMEOUT,
            connect_proxy_headers: DEFAULT_PROXY_HEADERS
                .split(',')
                .map(str::to_owned)
                .collect(),
            pusher: PusherSettings::default(),
            connect_proxy_calls_per_sec: DEFAULT_CONNECT_PROXY_CALLS_PER_SEC,
        }
    }
}

/// Clock skew tolerated on a token's `exp` and `nbf` by default.
pub const DEFAULT_JWT_LEEWAY: Duration = Duration::from_secs(5);

/// Time the application has to answer a connect by default.
pub const DEFAULT_CONNECT_PROXY_TIMEOUT: Duration = Duration::from_secs(2);

/// Connect-proxy calls per second from one remote address by default.
pub const DEFAULT_CONNECT_PROXY_CALLS_PER_SEC: f64 = 20.0;

/// What the connect proxy sees of a request by default (comma-separated):
/// the session cookie and credentials an application authenticates with,
/// and what it may log.
pub const DEFAULT_PROXY_HEADERS: &str =
    "cookie,authorization,user-agent,origin,x-forwarded-for,x-real-ip,accept-language";

/// Parses a duration setting ("500ms", "2s", "1m30s", "1h"). A bad value
/// names the format instead of the parser's position ("expected number at
/// 0"), since it may come from a config file far from any help text.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim()).map_err(|_| {
        format!(
            "invalid duration {s:?}: expected a number with a unit, e.g. 500ms, 2s, 1m30s or 1h"
        )
    })
}

/// Why the settings cannot start a node or gateway.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// A key could not be loaded.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// Neither a token key nor `--insecure-no-auth`.
    #[error(
        "no authentication configured: give --jwt-secret SECRET or --jwt-public-key FILE \
         (or --jwt-jwks-file FILE) to require connect tokens, or --insecure-no-auth to accept \
         bare ?user= connects"
    )]
    NoAuth,
    /// Both a token key and `--insecure-no-auth`.
    #[error("--insecure-no-auth contradicts the JWT keys given; drop one")]
    Contradiction,
    /// Both a connect proxy and `--insecure-no-auth`.
    #[error("--insecure-no-auth contradicts --connect-proxy; drop one")]
    ProxyContradiction,
    /// A connect proxy without its secret.
    #[error(
        "--connect-proxy needs --connect-proxy-secret: it signs the requests to the application \
         and the identity a gateway forwards to a node (give every gateway and node the same one)"
    )]
    ProxySecret,
    /// The Pusher app settings are incomplete or invalid.
    #[error(transparent)]
    Pusher(#[from] PusherSettingsError),
    /// A connect proxy that is shown cookies, without an origin allow-list.
    #[error(
        "--connect-proxy with cookies forwarded needs --allowed-origins: a browser sends its \
         cookies with a WebSocket upgrade from any site, so without an Origin check any page \
         could connect as its visitor; list the application's origins (or say \
         --allowed-origins '*' to accept every page)"
    )]
    ProxyOrigins,
}

/// The application's connect endpoint, as the gateway and the node call it.
#[derive(Debug)]
pub struct ConnectProxy {
    /// Where to POST.
    pub url: String,
    /// Signs the requests.
    pub secret: String,
    /// Time allowed for an answer.
    pub timeout: Duration,
    /// Request headers passed on (lower case).
    pub headers: Vec<String>,
    /// The identity tokens a gateway forwards to a node.
    pub assertions: Assertions,
    /// Calls per remote address.
    pub calls: KeyedLimiter<IpAddr>,
}

/// Remote addresses whose connect-proxy calls are tracked at most: about
/// 100 bytes each.
const MAX_PROXY_CALLERS: usize = 65_536;

/// The runtime form: what the gateway and the node consult on each connect
/// and API call.
#[derive(Debug, Clone)]
pub struct Security {
    /// How connects are authenticated.
    pub connect: ConnectAuth,
    /// Keys for the API's write and control calls.
    pub api_keys: ApiKeys,
    /// Browser origins allowed on /ws and given CORS headers.
    pub origins: Origins,
    /// Whether the API's write and control calls need a key: whenever
    /// connects need a token, or a key is configured.
    pub api_protected: bool,
    /// Authentication is off by an explicit `--insecure-no-auth`.
    pub insecure: bool,
    /// The application decides connects without a token.
    pub connect_proxy: Option<Arc<ConnectProxy>>,
    /// The Pusher Channels app served at `/app/{key}` and `/apps/{app_id}`.
    pub pusher: Option<Arc<PusherApp>>,
    /// The native `/ws` is refused: only a Pusher app authenticates (none
    /// of a token key, a connect proxy or `--insecure-no-auth` is given).
    pub native_off: bool,
}

/// Why a connect or API call is refused before anything else happens: the
/// HTTP status, the error code of the JSON body and a message safe to show
/// (it never repeats a token or key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// 401 (no or bad credential) or 403 (origin not allowed).
    pub status: u16,
    /// `unauthorized` or `forbidden`.
    pub code: ErrorCode,
    /// What failed.
    pub message: String,
}

impl Refusal {
    fn unauthorized(e: AuthError) -> Refusal {
        Refusal {
            status: 401,
            code: ErrorCode::Unauthorized,
            message: e.to_string(),
        }
    }

    fn forbidden(message: impl Into<String>) -> Refusal {
        Refusal {
            status: 403,
            code: ErrorCode::Forbidden,
            message: message.into(),
        }
    }
}

/// Why the native `/ws` refuses a connect on a Pusher-only server.
pub const NATIVE_OFF: &str = "the native /ws endpoint needs authentication: this server is configured \
     for Pusher clients only (at /app/{key}); give --jwt-secret (or --jwt-public-key, \
     --jwt-jwks-file), --connect-proxy or --insecure-no-auth to open /ws too";

impl Security {
    /// The connect decision for a WebSocket upgrade: the origin check, then
    /// the token (or, in open mode, `?user=`). `Ok(None)`: open mode and no
    /// user given, for the caller's own "missing user" answer.
    pub fn admit(
        &self,
        credentials: Credentials<'_>,
        origin: Option<&str>,
    ) -> Result<Option<Identity>, Refusal> {
        if self.native_off {
            return Err(Refusal {
                status: 401,
                code: ErrorCode::Unauthorized,
                message: NATIVE_OFF.to_owned(),
            });
        }
        if !self.origins.permits(origin) {
            return Err(Refusal::forbidden(
                "this page's Origin is not in the server's allowed origins",
            ));
        }
        self.connect
            .identify(credentials)
            .map_err(Refusal::unauthorized)
    }

    /// Whether an API write or control call may proceed, and with which key.
    /// `Ok(None)`: the API is unprotected (`wsring dev` without keys). With
    /// authentication on and no key configured, every call is refused.
    pub fn api_call(&self, authorization: Option<&str>) -> Result<Option<ApiKeyId>, Refusal> {
        if !self.api_protected {
            return Ok(None);
        }
        if self.api_keys.is_empty() {
            return Err(Refusal::unauthorized(AuthError::Missing(
                "the API's write and control calls are disabled: no --api-key is configured",
            )));
        }
        self.api_keys
            .check(authorization)
            .map(Some)
            .map_err(Refusal::unauthorized)
    }

    /// What `/api/info` reports: `{"connect":"jwt"|"none","api_key":bool,
    /// "insecure":bool,"origins":bool}`. No secret appears.
    pub fn summary(&self) -> serde_json::Value {
        let connect = match (self.connect.is_on(), self.connect_proxy.is_some()) {
            (true, true) => "jwt+proxy",
            (false, true) => "proxy",
            _ => self.connect.mode(),
        };
        serde_json::json!({
            "connect": connect,
            "api_key": self.api_protected,
            "insecure": self.insecure,
            "origins": self.origins.is_configured(),
        })
    }

    /// No authentication at all: `wsring dev`'s playground default.
    pub fn open() -> Security {
        Security {
            connect: ConnectAuth::Open,
            api_keys: ApiKeys::default(),
            origins: Origins::default(),
            api_protected: false,
            insecure: false,
            connect_proxy: None,
            pusher: None,
            native_off: false,
        }
    }
}

impl AuthSettings {
    /// The JWT part.
    pub fn jwt(&self) -> JwtSettings {
        JwtSettings {
            secrets: self.jwt_secret.clone(),
            public_keys: self.jwt_public_key.clone(),
            jwks_file: self.jwt_jwks_file.clone(),
            leeway: self.jwt_leeway,
            audience: self.jwt_audience.clone(),
            issuer: self.jwt_issuer.clone(),
        }
    }

    /// Loads the keys. `require` is set for `node` and `gateway`, which
    /// refuse to start unauthenticated unless told so explicitly; `wsring
    /// dev` stays open unless keys are given.
    pub fn build(&self, require: bool) -> Result<Security, SettingsError> {
        let jwt = self.jwt();
        if jwt.has_keys() && self.insecure_no_auth {
            return Err(SettingsError::Contradiction);
        }
        let verifier = Verifier::from_settings(&jwt)?;
        let connect_proxy = self.connect_proxy()?;
        if connect_proxy.is_some() && self.insecure_no_auth {
            return Err(SettingsError::ProxyContradiction);
        }
        let pusher = self.pusher.app()?;
        // A Pusher app authenticates its own endpoints; the native `/ws`
        // then stays closed unless its own authentication is chosen too.
        let native_auth = verifier.is_some() || connect_proxy.is_some() || self.insecure_no_auth;
        if require && !native_auth && pusher.is_none() {
            return Err(SettingsError::NoAuth);
        }
        let native_off = require && !native_auth;
        let api_keys = ApiKeys::new(&self.api_key)?;
        let connect = match verifier {
            Some(v) => ConnectAuth::Jwt(Arc::new(v)),
            None => ConnectAuth::Open,
        };
        Ok(Security {
            api_protected: connect.is_on()
                || connect_proxy.is_some()
                || !api_keys.is_empty()
                || native_off,
            connect,
            api_keys,
            origins: Origins::new(&self.allowed_origins),
            insecure: self.insecure_no_auth,
            connect_proxy,
            pusher,
            native_off,
        })
    }

    fn connect_proxy(&self) -> Result<Option<Arc<ConnectProxy>>, SettingsError> {
        let Some(url) = self.connect_proxy.clone().filter(|u| !u.is_empty()) else {
            return Ok(None);
        };
        let headers: Vec<String> = self
            .connect_proxy_headers
            .iter()
            .map(|h| h.trim().to_ascii_lowercase())
            .filter(|h| !h.is_empty())
            .collect();
        let secret = self
            .connect_proxy_secret
            .clone()
            .filter(|s| !s.is_empty())
            .ok_or(SettingsError::ProxySecret)?;
        if headers.iter().any(|h| h == "cookie") && self.allowed_origins.is_empty() {
            return Err(SettingsError::ProxyOrigins);
        }
        Ok(Some(Arc::new(ConnectProxy {
            url,
            assertions: Assertions::new(&secret)?,
            secret,
            timeout: self.connect_proxy_timeout,
            headers,
            calls: KeyedLimiter::new(KeyedLimits {
                messages_per_sec: self.connect_proxy_calls_per_sec.max(0.0),
                message_burst: self.connect_proxy_calls_per_sec.max(0.0) * 5.0,
                bytes_per_sec: 0.0,
                byte_burst: 0.0,
                max_keys: MAX_PROXY_CALLERS,
            }),
        })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connect_proxy_shown_cookies_needs_allowed_origins() {
        let proxy = AuthSettings {
            connect_proxy: Some("http://127.0.0.1:1/connect".into()),
            connect_proxy_secret: Some("s".repeat(32)),
            ..AuthSettings::default()
        };
        let e = proxy
            .build(true)
            .expect_err("cookies without an origin check");
        assert!(matches!(e, SettingsError::ProxyOrigins), "{e}");
        assert!(e.to_string().contains("--allowed-origins"), "{e}");
        // An explicit list, or '*', or no cookies forwarded, starts.
        for origins in [vec!["https://app.example".to_owned()], vec!["*".to_owned()]] {
            let s = AuthSettings {
                allowed_origins: origins,
                ..proxy.clone()
            };
            assert!(s.build(true).is_ok());
        }
        let no_cookies = AuthSettings {
            connect_proxy_headers: vec!["authorization".into()],
            ..proxy.clone()
        };
        assert!(no_cookies.build(true).is_ok());
    }

    #[test]
    fn the_default_is_the_declared_one() {
        let d = AuthSettings::default();
        assert_eq!(d.jwt_leeway, Duration::from_secs(5));
        assert_eq!(d.connect_proxy_timeout, Duration::from_secs(2));
        assert_eq!(
            d.connect_proxy_headers.join(","),
            DEFAULT_PROXY_HEADERS,
            "the header allow-list"
        );
        assert!(d.jwt_secret.is_empty() && d.connect_proxy.is_none() && !d.insecure_no_auth);
    }

    #[test]
    fn node_and_gateway_need_a_choice() {
        let none = AuthSettings::default();
        assert!(matches!(none.build(true), Err(SettingsError::NoAuth)));
        let dev = none.build(false).expect("dev stays open");
        assert!(!dev.connect.is_on() && !dev.api_protected && !dev.insecure);
        let insecure = AuthSettings {
            insecure_no_auth: true,
            ..Default::default()
        }
        .build(true)
        .expect("explicitly insecure");
        assert!(insecure.insecure && !insecure.connect.is_on());
        let msg = SettingsError::NoAuth.to_string();
        assert!(msg.contains("--jwt-secret") && msg.contains("--insecure-no-auth"));
    }

    #[test]
    fn a_pusher_app_alone_starts_with_the_native_ws_closed() {
        let pusher = PusherSettings {
            pusher_app_id: Some("1".into()),
            pusher_key: Some("k".into()),
            pusher_secret: Some("s".into()),
            ..Default::default()
        };
        let s = AuthSettings {
            pusher: pusher.clone(),
            ..Default::default()
        }
        .build(true)
        .expect("a Pusher app is enough to start");
        assert!(s.native_off && s.api_protected && s.pusher.is_some());
        let bare = Credentials {
            user: Some("alice"),
            ..Default::default()
        };
        let r = s.admit(bare, None).expect_err("native /ws closed");
        assert_eq!((r.status, r.code), (401, ErrorCode::Unauthorized));
        assert!(r.message.contains("--jwt-secret") && r.message.contains("--insecure-no-auth"));
        // With the native side's own choice, both are served.
        let both = AuthSettings {
            pusher,
            insecure_no_auth: true,
            ..Default::default()
        }
        .build(true)
        .expect("both");
        assert!(!both.native_off && both.admit(bare, None).is_ok());
        // `wsring dev` (nothing required) keeps /ws open beside the app.
        let dev = AuthSettings {
            pusher: both
                .pusher
                .as_ref()
                .map(|_| PusherSettings {
                    pusher_app_id: Some("1".into()),
                    pusher_key: Some("k".into()),
                    pusher_secret: Some("s".into()),
                    ..Default::default()
                })
                .unwrap_or_default(),
            ..Default::default()
        }
        .build(false)
        .expect("dev");
        assert!(!dev.native_off && dev.pusher.is_some());
    }

    #[test]
    fn a_secret_turns_everything_on() {
        let s = AuthSettings {
            jwt_secret: vec!["s".into()],
            allowed_origins: vec!["https://a.example".into()],
            ..Default::default()
        }
        .build(true)
        .expect("secured");
        assert!(s.connect.is_on() && s.api_protected && s.origins.is_configured());
        let both = AuthSettings {
            jwt_secret: vec!["s".into()],
            insecure_no_auth: true,
            ..Default::default()
        };
        assert!(matches!(
            both.build(true),
            Err(SettingsError::Contradiction)
        ));
    }

    #[test]
    fn api_calls() {
        let open = Security::open();
        assert_eq!(open.api_call(None), Ok(None));
        let keyed = AuthSettings {
            api_key: vec!["k1".into()],
            insecure_no_auth: true,
            ..Default::default()
        }
        .build(true)
        .expect("keyed");
        assert!(keyed.api_call(Some("Bearer k1")).expect("ok").is_some());
        for bad in [None, Some("Bearer k2"), Some("Basic k1")] {
            let r = keyed.api_call(bad).expect_err("refused");
            assert_eq!((r.status, r.code), (401, ErrorCode::Unauthorized));
        }
        // Tokens required, no key: the API is closed to everyone.
        let locked = AuthSettings {
            jwt_secret: vec!["s".into()],
            ..Default::default()
        }
        .build(true)
        .expect("secured");
        let r = locked
            .api_call(Some("Bearer anything"))
            .expect_err("closed");
        assert!(r.message.contains("--api-key"), "{}", r.message);
        assert_eq!(locked.summary()["connect"], "jwt");
        assert_eq!(locked.summary()["api_key"], true);
    }

    #[test]
    fn admit_checks_origin_then_credentials() {
        let s = AuthSettings {
            jwt_secret: vec!["s".into()],
            allowed_origins: vec!["https://app.example".into()],
            ..Default::default()
        }
        .build(true)
        .expect("secured");
        let bare = Credentials {
            user: Some("alice"),
            ..Default::default()
        };
        let r = s
            .admit(bare, Some("https://evil.example"))
            .expect_err("origin");
        assert_eq!((r.status, r.code), (403, ErrorCode::Forbidden));
        let r = s
            .admit(bare, Some("https://app.example"))
            .expect_err("token");
        assert_eq!((r.status, r.code), (401, ErrorCode::Unauthorized));
        let open = Security::open();
        assert_eq!(
            open.admit(bare, None).expect("open").map(|i| i.user),
            Some("alice".to_owned())
        );
    }

    #[test]
    fn an_api_key_alone_protects_the_api() {
        let s = AuthSettings {
            api_key: vec!["k".into()],
            ..Default::default()
        }
        .build(false)
        .expect("dev with a key");
        assert!(!s.connect.is_on() && s.api_protected);
    }
}
