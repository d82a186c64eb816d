//! TLS to the backends, shared by every backend's URL parsing.
//!
//! `rediss://`, `amqps://` and NATS's `tls://` connect over TLS and verify
//! the server against the system's root certificates. A private CA (a
//! self-signed cluster, a company PKI) is named in the URL itself with the
//! query parameter `cacertfile=/path/to/ca.pem`, the name RabbitMQ's URI
//! scheme uses, so one `--cluster` URL carries everything its connections
//! need and no backend grows a side channel for it. The parameter is removed
//! before the URL reaches the backend's client library.

use crate::ClusterError;
use std::path::PathBuf;

/// The query parameter naming a PEM file of CA certificates to trust.
pub const CA_PARAM: &str = "cacertfile";

/// A backend URL with its `cacertfile` taken out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendUrl {
    /// The URL without `cacertfile` (and without a now-empty `?`).
    pub url: String,
    /// The CA file, if one was named.
    pub ca: Option<PathBuf>,
}

impl BackendUrl {
    /// Splits `cacertfile=…` out of `url`'s query.
    pub fn parse(url: &str) -> BackendUrl {
        let Some((base, query)) = url.split_once('?') else {
            return BackendUrl {
                url: url.to_owned(),
                ca: None,
            };
        };
        let (mut ca, mut kept) = (None, Vec::new());
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some((k, v)) if k == CA_PARAM => ca = Some(PathBuf::from(percent_decode(v))),
                _ => kept.push(pair),
            }
        }
        let url = if kept.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        BackendUrl { url, ca }
    }

    /// Reads the CA file as PEM bytes (`None` without one). An unreadable or
    /// empty file is an invalid URL: the node cannot start without it.
    pub fn ca_pem(&self, shown_url: &str) -> Result<Option<Vec<u8>>, ClusterError> {
        let Some(path) = &self.ca else {
            return Ok(None);
        };
        let bad = |reason: String| ClusterError::InvalidUrl {
            url: shown_url.to_owned(),
            reason,
        };
        let pem =
            std::fs::read(path).map_err(|e| bad(format!("{CA_PARAM} {}: {e}", path.display())))?;
        if !pem.windows(11).any(|w| w == b"-----BEGIN ") {
            return Err(bad(format!(
                "{CA_PARAM} {}: not a PEM file",
                path.display()
            )));
        }
        Ok(Some(pem))
    }
}

/// Decodes `%XX` escapes (a path may contain `&` or spaces).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && let (Some(h), Some(l)) = (
                bytes.get(i + 1).and_then(|b| hex(*b)),
                bytes.get(i + 2).and_then(|b| hex(*b)),
            )
        {
            out.push((h * 16 + l) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_the_ca_out() {
        let u = BackendUrl::parse("rediss://h:6380/0?cacertfile=/etc/ca.pem");
        assert_eq!(u.url, "rediss://h:6380/0");
        assert_eq!(u.ca, Some(PathBuf::from("/etc/ca.pem")));
        let u =
            BackendUrl::parse("amqps://u:p@h/%2f?heartbeat=5&cacertfile=%2Ftmp%2Fmy%20ca.pem&x=1");
        assert_eq!(u.url, "amqps://u:p@h/%2f?heartbeat=5&x=1");
        assert_eq!(u.ca, Some(PathBuf::from("/tmp/my ca.pem")));
        let u = BackendUrl::parse("tls://h:4222");
        assert_eq!((u.url.as_str(), u.ca), ("tls://h:4222", None));
    }

    #[test]
    fn unreadable_or_non_pem_ca_is_an_invalid_url() {
        let u = BackendUrl::parse("rediss://h?cacertfile=/nonexistent/ca.pem");
        assert!(matches!(
            u.ca_pem("rediss://h"),
            Err(ClusterError::InvalidUrl { .. })
        ));
        let p = std::env::temp_dir().join(format!("wsring-notpem-{}", std::process::id()));
        std::fs::write(&p, b"hello").expect("write");
        let u = BackendUrl {
            url: "rediss://h".into(),
            ca: Some(p),
        };
        assert!(matches!(
            u.ca_pem("rediss://h"),
            Err(ClusterError::InvalidUrl { .. })
        ));
    }
}
