//! HTTP API keys: `Authorization: Bearer KEY` on write and control calls.
//!
//! Keys are kept only as SHA-256 digests and compared digest against digest
//! without an early exit, so neither a key's bytes nor its length leak
//! through timing. A key's identity for idempotency scoping is a short prefix
//! of its digest, which names it in logs without revealing it.

use crate::error::{AuthError, KeyError};
use sha2::{Digest, Sha256};

/// The configured API keys.
#[derive(Clone, Default)]
pub struct ApiKeys {
    digests: Vec<[u8; 32]>,
}

impl std::fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKeys")
            .field("count", &self.digests.len())
            .finish()
    }
}

/// Which configured key a call presented: `key:` and the first 12 hex
/// digits of its SHA-256 digest.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ApiKeyId(pub String);

impl ApiKeys {
    /// Digests `keys`; an empty key is refused.
    pub fn new<S: AsRef<str>>(keys: &[S]) -> Result<ApiKeys, KeyError> {
        let mut digests = Vec::with_capacity(keys.len());
        for k in keys {
            if k.as_ref().is_empty() {
                return Err(KeyError::Empty("an API key"));
            }
            digests.push(digest(k.as_ref()));
        }
        Ok(ApiKeys { digests })
    }

    /// Whether no key is configured.
    pub fn is_empty(&self) -> bool {
        self.digests.is_empty()
    }

    /// Checks an `Authorization` header value.
    pub fn check(&self, authorization: Option<&str>) -> Result<ApiKeyId, AuthError> {
        let presented = authorization.and_then(bearer).ok_or(AuthError::Missing(
            "this call needs an API key: Authorization: Bearer <key>",
        ))?;
        let d = digest(presented);
        let mut found = None;
        for (i, k) in self.digests.iter().enumerate() {
            // Fold every byte: the time taken does not depend on where (or
            // whether) the digests differ.
            let diff = k
                .iter()
                .zip(d.iter())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b));
            if diff == 0 && found.is_none() {
                found = Some(i);
            }
        }
        match found {
            Some(i) => Ok(ApiKeyId(format!("key:{}", hex(&self.digests[i][..6])))),
            None => Err(AuthError::BadApiKey),
        }
    }
}

/// The credential of an `Authorization: Bearer <credential>` value (the
/// scheme is case-insensitive); `None` for any other form.
pub fn bearer(header: &str) -> Option<&str> {
    let (scheme, rest) = header.trim().split_once(' ')?;
    let cred = rest.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !cred.is_empty()).then_some(cred)
}

fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_bearer_keys() {
        let keys = ApiKeys::new(&["k-one", "k-two"]).expect("keys");
        let a = keys.check(Some("Bearer k-one")).expect("first");
        let b = keys.check(Some("bearer  k-two ")).expect("second");
        assert_ne!(a, b, "each key has its own identity");
        assert!(a.0.starts_with("key:") && a.0.len() == 16);
        assert_eq!(
            keys.check(Some("Bearer k-three")),
            Err(AuthError::BadApiKey)
        );
        assert_eq!(keys.check(Some("Bearer k-on")), Err(AuthError::BadApiKey));
        assert!(matches!(keys.check(None), Err(AuthError::Missing(_))));
        assert!(matches!(
            keys.check(Some("Basic k-one")),
            Err(AuthError::Missing(_))
        ));
        assert!(matches!(
            keys.check(Some("Bearer ")),
            Err(AuthError::Missing(_))
        ));
    }

    #[test]
    fn no_keys_refuse_everyone() {
        let keys = ApiKeys::new::<&str>(&[]).expect("keys");
        assert!(keys.is_empty());
        assert_eq!(keys.check(Some("Bearer x")), Err(AuthError::BadApiKey));
    }

    #[test]
    fn empty_key_is_refused() {
        assert!(ApiKeys::new(&[""]).is_err());
    }

    #[test]
    fn debug_hides_keys() {
        let keys = ApiKeys::new(&["secret-key"]).expect("keys");
        assert!(!format!("{keys:?}").contains("secret"));
    }
}
