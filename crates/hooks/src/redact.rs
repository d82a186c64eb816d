//! Application URLs as they may be shown: in logs, metrics labels and
//! `/api/info`.
//!
//! A webhook or proxy URL often carries a credential (`user:pass@`, or a
//! `?token=`), and the places that show URLs are less protected than the
//! configuration they came from: `/metrics` is open, logs are shipped and
//! kept. So a URL is never shown as given: [`redact`] keeps scheme, host,
//! port and path and hides userinfo, query values and fragment, and
//! [`label`] is the shorter form metrics use (host, port and path only).
//! Both are total functions: a string that does not parse as a URL is shown
//! as a fixed placeholder, never echoed.

/// Shown in place of a hidden value.
pub const REDACTED: &str = "REDACTED";

/// Shown for a string that does not parse as a URL with a host (it could
/// be anything, a secret included).
pub const UNPARSABLE: &str = "<unparsable URL>";

/// `url` with its secrets hidden: `scheme://host:port/path`, and each query
/// parameter as `name=REDACTED`. Userinfo and fragment are dropped.
///
/// `http://user:pass@h/hook?token=t&x=1` becomes
/// `http://h:80/hook?token=REDACTED&x=REDACTED`.
pub fn redact(url: &str) -> String {
    let Some(u) = parse(url) else {
        return UNPARSABLE.to_owned();
    };
    let mut out = origin_and_path(&u);
    if u.query().is_some() {
        let names: Vec<String> = u
            .query_pairs()
            .map(|(name, _)| format!("{}={REDACTED}", encode(&name)))
            .collect();
        out.push('?');
        out.push_str(&names.join("&"));
    }
    out
}

/// The metrics label for `url`: `host:port/path` (no scheme, userinfo or
/// query), stable for a given receiver and free of secrets.
pub fn label(url: &str) -> String {
    match parse(url) {
        Some(u) => {
            let full = origin_and_path(&u);
            match full.split_once("://") {
                Some((_, rest)) => rest.to_owned(),
                None => full,
            }
        }
        None => UNPARSABLE.to_owned(),
    }
}

/// `url` parsed, when it names a host (`mailto:`-like and other host-less
/// forms are not application URLs, and their path could be anything).
fn parse(url: &str) -> Option<reqwest::Url> {
    reqwest::Url::parse(url).ok().filter(|u| u.has_host())
}

/// `scheme://host:port/path` (the port always shown, default or not).
fn origin_and_path(u: &reqwest::Url) -> String {
    let host = u.host_str().unwrap_or("");
    match u.port_or_known_default() {
        Some(port) => format!("{}://{host}:{port}{}", u.scheme(), u.path()),
        None => format!("{}://{host}{}", u.scheme(), u.path()),
    }
}

/// A query parameter name as it may appear in a URL: characters outside a
/// conservative set are percent-encoded, so a name cannot smuggle `&`, `=`
/// or control characters into a log line.
fn encode(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn userinfo_and_query_values_are_hidden() {
        let u = "http://user:PASS@hooks.example:8080/hook/in?token=T0P&x=1#frag";
        assert_eq!(
            redact(u),
            "http://hooks.example:8080/hook/in?token=REDACTED&x=REDACTED"
        );
        assert_eq!(label(u), "hooks.example:8080/hook/in");
        for shown in [redact(u), label(u)] {
            for secret in ["user", "PASS", "T0P", "frag"] {
                assert!(!shown.contains(secret), "{shown} shows {secret}");
            }
        }
    }

    #[test]
    fn plain_urls_keep_what_identifies_the_receiver() {
        assert_eq!(redact("https://app.example/h"), "https://app.example:443/h");
        assert_eq!(label("http://127.0.0.1:9/"), "127.0.0.1:9/");
        assert_eq!(redact("http://[::1]:81/a"), "http://[::1]:81/a");
        // A bare username (no password) is a credential too.
        assert_eq!(redact("http://tok3n@h:1/p"), "http://h:1/p");
    }

    #[test]
    fn odd_query_names_are_encoded_and_unparsable_urls_hidden() {
        assert_eq!(
            redact("http://h:1/p?a%26b=s3cret&&=v"),
            "http://h:1/p?a%26b=REDACTED&=REDACTED"
        );
        assert_eq!(redact("not a url with s3cret"), UNPARSABLE);
        assert_eq!(label("user:s3cret"), UNPARSABLE);
    }
}
