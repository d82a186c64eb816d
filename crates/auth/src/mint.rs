//! Minting connect tokens: the signing side of [`crate::Verifier`], for
//! `wsring token` and `wsring bench`.
//!
//! A token carries exactly the claims the verifier reads (`sub`, `exp`,
//! `iat`, and when asked `rooms`, `send`, `aud`, `iss`), so a token minted
//! with a node's `--jwt-secret` (or with the private half of its
//! `--jwt-public-key`) and the same `--jwt-audience`/`--jwt-issuer`
//! verifies on that node. Applications mint their own tokens in production;
//! this is for first clients, scripts and load tests.

use crate::error::KeyError;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What a minted token says about its holder.
#[derive(Debug, Clone, Default)]
pub struct Grant {
    /// The user id (`sub`).
    pub sub: String,
    /// Room names and `*`-patterns it may join and publish to (`rooms`);
    /// empty: the claim is left out, every room is allowed.
    pub rooms: Vec<String>,
    /// `Some(false)`: receive-only (`"send":false`); `None` leaves the
    /// claim out (sending allowed).
    pub send: Option<bool>,
    /// Room names and `*`-patterns it may publish to even when receive-only
    /// (`publish`); empty: the claim is left out, and publishing follows
    /// `rooms` and `send`.
    pub publish: Vec<String>,
    /// Audiences (`aud`): one is written as a string, several as a list.
    pub audience: Vec<String>,
    /// Issuer (`iss`).
    pub issuer: Option<String>,
    /// Lifetime: `exp` is now plus this.
    pub ttl: Duration,
}

/// The key a token is signed with.
#[derive(Debug, Clone)]
pub enum SigningKey {
    /// An HMAC secret, as given to `--jwt-secret` (HS256, HS384, HS512).
    Secret(String),
    /// A PEM file with an RSA (PKCS#1 or PKCS#8), EC (PKCS#8, P-256 or
    /// P-384) or Ed25519 (PKCS#8) private key.
    PrivateKey(PathBuf),
}

/// Why a token could not be minted.
#[derive(Debug, thiserror::Error)]
pub enum MintError {
    /// The key could not be read or is not a usable private key.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The algorithm does not fit the key (e.g. RS256 with an HMAC secret).
    #[error("algorithm {alg} does not fit {family}; use {fits} (or leave --algorithm out)")]
    Algorithm {
        /// The algorithm asked for.
        alg: String,
        /// The key's kind.
        family: &'static str,
        /// The algorithms this key can sign with.
        fits: &'static str,
    },
    /// A claim is unusable (e.g. an invalid user id or room pattern).
    #[error("{0}")]
    Claim(String),
}

#[derive(Serialize)]
struct Claims<'a> {
    sub: &'a str,
    iat: u64,
    exp: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    rooms: Option<&'a [String]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    send: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    publish: Option<&'a [String]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    aud: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    iss: Option<&'a str>,
}

/// Signs a token for `grant` with `key`. `alg` defaults to HS256 for a
/// secret, RS256 for an RSA key, ES256 for an EC key and EdDSA for Ed25519.
/// The claims are checked with the verifier's own rules first, so a token
/// that a node would refuse for its `sub` or `rooms` is never printed.
pub fn mint(key: &SigningKey, alg: Option<Algorithm>, grant: &Grant) -> Result<String, MintError> {
    crate::jwt::grant(
        Some(serde_json::Value::String(grant.sub.clone())),
        (!grant.rooms.is_empty()).then(|| grant.rooms.clone()),
        grant.send,
        (!grant.publish.is_empty()).then(|| grant.publish.clone()),
    )
    .map_err(|e| MintError::Claim(e.to_string()))?;
    let (encoding, family) = match key {
        SigningKey::Secret(s) if s.is_empty() => return Err(KeyError::Empty("a JWT secret").into()),
        SigningKey::Secret(s) => (
            EncodingKey::from_secret(s.as_bytes()).map_err(|e| MintError::Claim(e.to_string()))?,
            Family::Hmac,
        ),
        SigningKey::PrivateKey(path) => private_key(path)?,
    };
    let alg = alg.unwrap_or(family.default_alg());
    if !family.fits(alg) {
        return Err(MintError::Algorithm {
            alg: format!("{alg:?}"),
            family: family.name(),
            fits: family.algorithms(),
        });
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let aud = match grant.audience.as_slice() {
        [] => None,
        [one] => Some(serde_json::Value::String(one.clone())),
        many => Some(serde_json::Value::from(many.to_vec())),
    };
    let claims = Claims {
        sub: &grant.sub,
        iat: now,
        exp: now.saturating_add(grant.ttl.as_secs().max(1)),
        rooms: (!grant.rooms.is_empty()).then_some(grant.rooms.as_slice()),
        send: grant.send,
        publish: (!grant.publish.is_empty()).then_some(grant.publish.as_slice()),
        aud,
        iss: grant.issuer.as_deref(),
    };
    jsonwebtoken::encode(&Header::new(alg), &claims, &encoding)
        .map_err(|e| MintError::Claim(format!("cannot sign the token: {e}")))
}

/// The `sub` of a token, read without checking its signature: for a client
/// that holds tokens and needs to know whose they are (the server verifies).
/// `None` when it is not a JWT with a string `sub`.
pub fn unverified_subject(token: &str) -> Option<String> {
    use base64::Engine;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    claims.get("sub")?.as_str().map(str::to_owned)
}

#[derive(Clone, Copy)]
enum Family {
    Hmac,
    Rsa,
    Ec,
    Ed,
}

impl Family {
    fn name(self) -> &'static str {
        match self {
            Family::Hmac => "an HMAC secret",
            Family::Rsa => "an RSA key",
            Family::Ec => "an EC key",
            Family::Ed => "an Ed25519 key",
        }
    }

    fn default_alg(self) -> Algorithm {
        match self {
            Family::Hmac => Algorithm::HS256,
            Family::Rsa => Algorithm::RS256,
            Family::Ec => Algorithm::ES256,
            Family::Ed => Algorithm::EdDSA,
        }
    }

    fn algorithms(self) -> &'static str {
        match self {
            Family::Hmac => "HS256, HS384 or HS512",
            Family::Rsa => "RS256, RS384, RS512, PS256, PS384 or PS512",
            Family::Ec => "ES256 (P-256) or ES384 (P-384)",
            Family::Ed => "EdDSA",
        }
    }

    fn fits(self, alg: Algorithm) -> bool {
        use Algorithm::*;
        matches!(
            (self, alg),
            (Family::Hmac, HS256 | HS384 | HS512)
                | (Family::Rsa, RS256 | RS384 | RS512 | PS256 | PS384 | PS512)
                | (Family::Ec, ES256 | ES384)
                | (Family::Ed, EdDSA)
        )
    }
}

/// Loads a PEM private key, whichever of the supported kinds it is.
fn private_key(path: &Path) -> Result<(EncodingKey, Family), KeyError> {
    let pem = std::fs::read(path).map_err(|source| KeyError::Io {
        path: path.to_owned(),
        source,
    })?;
    if let Ok(k) = EncodingKey::from_rsa_pem(&pem) {
        return Ok((k, Family::Rsa));
    }
    if let Ok(k) = EncodingKey::from_ec_pem(&pem) {
        return Ok((k, Family::Ec));
    }
    if let Ok(k) = EncodingKey::from_ed_pem(&pem) {
        return Ok((k, Family::Ed));
    }
    Err(KeyError::PrivatePem {
        path: path.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{JwtSettings, Verifier};

    fn verifier(secret: &str, aud: &[&str], iss: &[&str]) -> Verifier {
        Verifier::from_settings(&JwtSettings {
            secrets: vec![secret.into()],
            leeway: Duration::from_secs(5),
            audience: aud.iter().map(|s| s.to_string()).collect(),
            issuer: iss.iter().map(|s| s.to_string()).collect(),
            ..JwtSettings::default()
        })
        .expect("keys load")
        .expect("a key is configured")
    }

    fn grant(sub: &str) -> Grant {
        Grant {
            sub: sub.into(),
            ttl: Duration::from_secs(3600),
            ..Grant::default()
        }
    }

    #[test]
    fn a_minted_token_verifies_with_the_same_secret_and_claims() {
        let g = Grant {
            rooms: vec!["chat.*".into(), "news".into()],
            send: Some(false),
            publish: vec!["news".into()],
            audience: vec!["app".into()],
            issuer: Some("me".into()),
            ..grant("alice")
        };
        let key = SigningKey::Secret("s3cret".into());
        let token = mint(&key, None, &g).expect("mints");
        assert_eq!(unverified_subject(&token).as_deref(), Some("alice"));
        assert_eq!(unverified_subject("not.a-token"), None);
        let id = verifier("s3cret", &["app"], &["me"])
            .verify(&token)
            .expect("verifies");
        assert_eq!(id.user, "alice");
        assert!(!id.send);
        assert!(id.rooms.allows("chat.x") && !id.rooms.allows("other"));
        let publish = id.publish.as_ref().expect("the publish claim");
        assert!(publish.allows("news") && !publish.allows("chat.x"));
        // Another secret, audience or issuer refuses it.
        assert!(verifier("other", &["app"], &["me"]).verify(&token).is_err());
        assert!(
            verifier("s3cret", &["else"], &["me"])
                .verify(&token)
                .is_err()
        );
        assert!(
            verifier("s3cret", &["app"], &["else"])
                .verify(&token)
                .is_err()
        );
    }

    #[test]
    fn a_token_signed_with_an_ec_private_key_verifies_with_its_public_half() {
        let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("keygen");
        let dir = std::env::temp_dir().join(format!("wsring-mint-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("tmp dir");
        let (private, public) = (dir.join("ec.key"), dir.join("ec.pub"));
        std::fs::write(&private, kp.serialize_pem()).expect("write");
        std::fs::write(&public, kp.public_key_pem()).expect("write");
        let key = SigningKey::PrivateKey(private.clone());
        let token = mint(&key, None, &grant("erin")).expect("mints with ES256");
        let v = Verifier::from_settings(&JwtSettings {
            public_keys: vec![public],
            leeway: Duration::from_secs(5),
            ..JwtSettings::default()
        })
        .expect("keys load")
        .expect("configured");
        assert_eq!(v.verify(&token).expect("verifies").user, "erin");
        let err = mint(&key, Some(Algorithm::RS256), &grant("erin")).expect_err("EC + RS256");
        assert!(err.to_string().contains("ES256"), "{err}");
        // A public key is not a signing key.
        let err = mint(
            &SigningKey::PrivateKey(dir.join("ec.pub")),
            None,
            &grant("erin"),
        )
        .expect_err("a public key");
        assert!(err.to_string().contains("private key"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn bad_claims_and_mismatched_algorithms_are_refused() {
        let key = SigningKey::Secret("s".into());
        assert!(matches!(
            mint(&key, None, &grant("not a user id")),
            Err(MintError::Claim(_))
        ));
        let err = mint(&key, Some(Algorithm::RS256), &grant("bob")).expect_err("HMAC + RS256");
        assert!(err.to_string().contains("HS256"), "{err}");
        let empty = SigningKey::Secret(String::new());
        assert!(mint(&empty, None, &grant("bob")).is_err());
        let missing = SigningKey::PrivateKey("/nonexistent/key.pem".into());
        assert!(matches!(
            mint(&missing, None, &grant("bob")),
            Err(MintError::Key(_))
        ));
    }
}
