//! The connect URL's query string:
//! `?token=<JWT>` or `?user=<id>`, then `[&resume=<seq>&epoch=<epoch>]`.
//! Parsed identically by the gateway (to route) and the node (to accept), so
//! both reject the same inputs with the same messages, before the upgrade;
//! rendered by the clients (the Rust SDK, the bench tool) with
//! [`ConnectParams::url`].
//!
//! The token is carried, not checked, here: the caller verifies it and then
//! names the user it proved with [`ConnectParams::parse_as`], so with
//! authentication on the `user` parameter never decides who a session is.
//! `Debug` never prints the token.

use crate::ids::validate_user;

/// Parsed and validated connect parameters.
#[derive(Clone, PartialEq, Eq)]
pub struct ConnectParams {
    /// The user id.
    pub user: String,
    /// The connect token (`?token=`), passed through unverified.
    pub token: Option<String>,
    /// Durable resume point: the last user-stream seq the client saw and the
    /// stream epoch it belongs to.
    pub resume: Option<(u64, String)>,
}

/// Longest accepted stream epoch.
pub const MAX_EPOCH_LEN: usize = 64;

impl std::fmt::Debug for ConnectParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectParams")
            .field("user", &self.user)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("resume", &self.resume)
            .finish()
    }
}

/// The `token` parameter of a raw query string, if given once (a repeated
/// one is left for [`ConnectParams::parse`] to refuse).
pub fn query_token(query: Option<&str>) -> Option<String> {
    let mut found = None;
    for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        if k == "token" {
            if found.is_some() {
                return None;
            }
            found = Some(v.into_owned());
        }
    }
    found
}

impl ConnectParams {
    /// Parses a raw query string (without the `?`); `user` names the user.
    pub fn parse(query: Option<&str>) -> Result<ConnectParams, String> {
        Self::parse_as(query, None)
    }

    /// Parses a raw query string whose token proved it is `authenticated`:
    /// that user id is the session's, and a `user` parameter, if any, is
    /// ignored. Without it, `user` is required.
    pub fn parse_as(
        query: Option<&str>,
        authenticated: Option<&str>,
    ) -> Result<ConnectParams, String> {
        let mut user = None;
        let mut token = None;
        let mut resume = None;
        let mut epoch = None;
        for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            let slot = match k.as_ref() {
                "user" => &mut user,
                "token" => &mut token,
                "resume" => &mut resume,
                "epoch" => &mut epoch,
                _ => continue,
            };
            if slot.is_some() {
                return Err(format!("`{k}` is given more than once"));
            }
            *slot = Some(v.into_owned());
        }
        let user = match authenticated {
            Some(sub) => sub.to_owned(),
            None => user.ok_or("missing query parameter `user`")?,
        };
        validate_user(&user).map_err(|e| e.to_string())?;
        if user == crate::client::SERVER_ADDRESS {
            return Err(format!(
                "user {user:?} is reserved: it addresses the application's backend"
            ));
        }
        let resume = match (resume, epoch) {
            (None, None) => None,
            (Some(seq), Some(epoch)) => {
                let seq = seq
                    .parse::<u64>()
                    .map_err(|_| format!("`resume` must be a non-negative integer, got {seq:?}"))?;
                let ok = !epoch.is_empty()
                    && epoch.len() <= MAX_EPOCH_LEN
                    && epoch
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
                if !ok {
                    return Err(format!(
                        "`epoch` must be 1-{MAX_EPOCH_LEN} characters from [A-Za-z0-9_-]"
                    ));
                }
                Some((seq, epoch))
            }
            (Some(_), None) => return Err("`resume` requires `epoch`".into()),
            (None, Some(_)) => return Err("`epoch` requires `resume`".into()),
        };
        Ok(ConnectParams {
            user,
            token,
            resume,
        })
    }

    /// The query string (without the `?`) that [`ConnectParams::parse`]
    /// reads back as `self`.
    pub fn to_query(&self) -> String {
        let mut q = form_urlencoded::Serializer::new(String::new());
        match &self.token {
            // The token names the user; sending `user` too would only add a
            // second, ignored claim.
            Some(token) => q.append_pair("token", token),
            None => q.append_pair("user", &self.user),
        };
        if let Some((seq, epoch)) = &self.resume {
            q.append_pair("resume", &seq.to_string());
            q.append_pair("epoch", epoch);
        }
        q.finish()
    }

    /// `base` (a `ws://host:port/ws` URL, possibly with a query already)
    /// with these parameters appended.
    pub fn url(&self, base: &str) -> String {
        let sep = if base.contains('?') { '&' } else { '?' };
        format!("{base}{sep}{}", self.to_query())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid() {
        let p = ConnectParams::parse(Some("user=alice%40x&resume=12&epoch=ab-1")).expect("ok");
        assert_eq!(p.user, "alice@x");
        assert_eq!(p.resume, Some((12, "ab-1".into())));
        assert_eq!(
            ConnectParams::parse(Some("user=bob&other=1"))
                .expect("ok")
                .resume,
            None
        );
    }

    #[test]
    fn renders_what_it_parses() {
        for p in [
            ConnectParams {
                user: "alice@x:1".into(),
                token: None,
                resume: None,
            },
            ConnectParams {
                user: "bob".into(),
                token: None,
                resume: Some((42, "k2m9x0q1p7ab".into())),
            },
        ] {
            assert_eq!(ConnectParams::parse(Some(&p.to_query())), Ok(p.clone()));
        }
        let p = ConnectParams {
            user: "bob".into(),
            token: None,
            resume: Some((42, "e1".into())),
        };
        assert_eq!(
            p.url("ws://h:1/ws"),
            "ws://h:1/ws?user=bob&resume=42&epoch=e1"
        );
        assert_eq!(
            p.url("ws://h:1/ws?x=1"),
            "ws://h:1/ws?x=1&user=bob&resume=42&epoch=e1"
        );
    }

    #[test]
    fn a_verified_token_names_the_user() {
        let q = Some("token=a.b.c&user=mallory&resume=3&epoch=e");
        let p = ConnectParams::parse_as(q, Some("alice")).expect("ok");
        assert_eq!(p.user, "alice");
        assert_eq!(p.token.as_deref(), Some("a.b.c"));
        assert_eq!(query_token(q).as_deref(), Some("a.b.c"));
        assert_eq!(query_token(Some("token=a&token=b")), None);
        assert!(ConnectParams::parse(Some("token=a&token=b&user=x")).is_err());
        // No user parameter is needed once a token proved who it is.
        assert!(ConnectParams::parse_as(Some("token=t"), Some("bob")).is_ok());
        assert!(ConnectParams::parse(Some("token=t")).is_err());
        // The token is rendered instead of the user, and never printed.
        assert_eq!(p.to_query(), "token=a.b.c&resume=3&epoch=e");
        assert!(!format!("{p:?}").contains("a.b.c"));
    }

    #[test]
    fn invalid() {
        for q in [
            None,
            Some(""),
            Some("user="),
            Some("user=a b"),
            Some("user=a&user=b"),
            Some("user=a&resume=x&epoch=e"),
            Some("user=a&resume=-1&epoch=e"),
            Some("user=a&resume=1"),
            Some("user=a&epoch=e"),
            Some("user=a&resume=1&epoch=a.b"),
        ] {
            assert!(ConnectParams::parse(q).is_err(), "{q:?}");
        }
    }
}
