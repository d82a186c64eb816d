//! The connect decision shared by the gateway and the node: who is this
//! WebSocket upgrade, and may it come from this page?
//!
//! With authentication on, the identity comes only from a verified token
//! (`?token=` or `Authorization: Bearer`), and a bare `?user=` is refused;
//! with it off (`wsring dev`, or an explicit `--insecure-no-auth`), `?user=`
//! names the user and every permission is granted.

use crate::api_key::bearer;
use crate::error::AuthError;
use crate::jwt::{Identity, Verifier};
use std::sync::Arc;

/// How connects are authenticated.
#[derive(Debug, Clone)]
pub enum ConnectAuth {
    /// Tokens are required and verified.
    Jwt(Arc<Verifier>),
    /// `?user=` is trusted as is: development, or a deployment that
    /// authenticates in front of wsring.
    Open,
}

/// What a connect presented.
#[derive(Debug, Default, Clone, Copy)]
pub struct Credentials<'a> {
    /// `?token=`.
    pub token: Option<&'a str>,
    /// `?user=`.
    pub user: Option<&'a str>,
    /// The `Authorization` header.
    pub authorization: Option<&'a str>,
}

impl ConnectAuth {
    /// Whether tokens are required.
    pub fn is_on(&self) -> bool {
        matches!(self, ConnectAuth::Jwt(_))
    }

    /// `"jwt"` or `"none"`, as `/api/info` reports it.
    pub fn mode(&self) -> &'static str {
        match self {
            ConnectAuth::Jwt(_) => "jwt",
            ConnectAuth::Open => "none",
        }
    }

    /// Decides who a connect is. `Ok(None)` in open mode when no `user`
    /// was given (the caller reports its own "missing user" error).
    pub fn identify(&self, c: Credentials<'_>) -> Result<Option<Identity>, AuthError> {
        match self {
            ConnectAuth::Jwt(v) => {
                let token = c
                    .token
                    .filter(|t| !t.is_empty())
                    .or_else(|| c.authorization.and_then(bearer))
                    .ok_or(AuthError::Missing(
                        "a token is required: ?token=<JWT> or Authorization: Bearer <JWT>",
                    ))?;
                // `user`, if also given, is ignored: only the token speaks.
                v.verify(token).map(Some)
            }
            ConnectAuth::Open => Ok(c.user.map(Identity::unrestricted)),
        }
    }
}

/// Which pages may open WebSockets and call the API from a browser.
#[derive(Debug, Clone, Default)]
pub struct Origins {
    /// Allowed origins (`scheme://host[:port]`, compared case-insensitively);
    /// `*` allows any. Empty: no check on `/ws`, and no CORS headers.
    allowed: Vec<String>,
}

impl Origins {
    /// From `--allowed-origins` entries (trailing slashes are ignored).
    pub fn new<S: AsRef<str>>(allowed: &[S]) -> Origins {
        Origins {
            allowed: allowed
                .iter()
                .map(|o| o.as_ref().trim().trim_end_matches('/').to_ascii_lowercase())
                .filter(|o| !o.is_empty())
                .collect(),
        }
    }

    /// Whether an allow-list is configured.
    pub fn is_configured(&self) -> bool {
        !self.allowed.is_empty()
    }

    /// Whether a request with this `Origin` header may proceed. Requests
    /// without one come from non-browser clients, which `Origin` cannot
    /// restrict anyway, and pass.
    pub fn permits(&self, origin: Option<&str>) -> bool {
        match origin {
            None => true,
            Some(o) => !self.is_configured() || self.matches(o),
        }
    }

    /// The `Access-Control-Allow-Origin` value for a request from `origin`:
    /// only a configured origin gets one.
    pub fn cors(&self, origin: Option<&str>) -> Option<String> {
        let o = origin?;
        (self.is_configured() && self.matches(o)).then(|| o.to_owned())
    }

    fn matches(&self, origin: &str) -> bool {
        let o = origin.trim().trim_end_matches('/').to_ascii_lowercase();
        self.allowed.iter().any(|a| a == "*" || *a == o)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jwt::JwtSettings;

    fn jwt() -> ConnectAuth {
        let v = Verifier::from_settings(&JwtSettings {
            secrets: vec!["k".into()],
            ..Default::default()
        })
        .expect("keys")
        .expect("configured");
        ConnectAuth::Jwt(Arc::new(v))
    }

    #[test]
    fn jwt_mode_requires_a_token() {
        let a = jwt();
        let bare = Credentials {
            user: Some("alice"),
            ..Default::default()
        };
        assert!(matches!(a.identify(bare), Err(AuthError::Missing(_))));
        let empty = Credentials {
            token: Some(""),
            ..Default::default()
        };
        assert!(matches!(a.identify(empty), Err(AuthError::Missing(_))));
        let garbage = Credentials {
            authorization: Some("Bearer x.y.z"),
            ..Default::default()
        };
        assert!(matches!(a.identify(garbage), Err(AuthError::Malformed(_))));
        assert_eq!(a.mode(), "jwt");
    }

    #[test]
    fn open_mode_trusts_user() {
        let a = ConnectAuth::Open;
        let c = Credentials {
            user: Some("alice"),
            ..Default::default()
        };
        assert_eq!(
            a.identify(c).expect("ok"),
            Some(Identity::unrestricted("alice"))
        );
        assert_eq!(a.identify(Credentials::default()).expect("ok"), None);
        assert!(!a.is_on());
    }

    #[test]
    fn origins() {
        let open = Origins::default();
        assert!(open.permits(Some("https://evil.example")) && open.permits(None));
        assert_eq!(open.cors(Some("https://evil.example")), None);
        let o = Origins::new(&["https://App.example/", "http://localhost:3000"]);
        assert!(o.permits(Some("https://app.example")));
        assert!(o.permits(Some("http://localhost:3000")));
        assert!(!o.permits(Some("https://app.example.evil")));
        assert!(!o.permits(Some("http://app.example")));
        assert!(!o.permits(Some("null")));
        assert!(o.permits(None));
        assert_eq!(
            o.cors(Some("https://app.example")).as_deref(),
            Some("https://app.example")
        );
        assert_eq!(o.cors(Some("https://x.example")), None);
        assert!(Origins::new(&["*"]).permits(Some("https://any.example")));
    }
}
