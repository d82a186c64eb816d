//! The connect URL's query string: `?user=<id>[&resume=<seq>&epoch=<epoch>]`.
//! Parsed identically by the gateway (to route) and the node (to accept), so
//! both reject the same inputs with the same messages, before the upgrade;
//! rendered by the clients (the Rust SDK, the bench tool) with
//! [`ConnectParams::url`].

use crate::ids::validate_user;

/// Parsed and validated connect parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectParams {
    /// The user id.
    pub user: String,
    /// Durable resume point: the last user-stream seq the client saw and the
    /// stream epoch it belongs to.
    pub resume: Option<(u64, String)>,
}

/// Longest accepted stream epoch.
pub const MAX_EPOCH_LEN: usize = 64;

impl ConnectParams {
    /// Parses a raw query string (without the `?`).
    pub fn parse(query: Option<&str>) -> Result<ConnectParams, String> {
        let mut user = None;
        let mut resume = None;
        let mut epoch = None;
        for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            let slot = match k.as_ref() {
                "user" => &mut user,
                "resume" => &mut resume,
                "epoch" => &mut epoch,
                _ => continue,
            };
            if slot.is_some() {
                return Err(format!("`{k}` is given more than once"));
            }
            *slot = Some(v.into_owned());
        }
        let user = user.ok_or("missing query parameter `user`")?;
        validate_user(&user).map_err(|e| e.to_string())?;
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
        Ok(ConnectParams { user, resume })
    }

    /// The query string (without the `?`) that [`ConnectParams::parse`]
    /// reads back as `self`.
    pub fn to_query(&self) -> String {
        let mut q = form_urlencoded::Serializer::new(String::new());
        q.append_pair("user", &self.user);
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
                resume: None,
            },
            ConnectParams {
                user: "bob".into(),
                resume: Some((42, "k2m9x0q1p7ab".into())),
            },
        ] {
            assert_eq!(ConnectParams::parse(Some(&p.to_query())), Ok(p.clone()));
        }
        let p = ConnectParams {
            user: "bob".into(),
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
