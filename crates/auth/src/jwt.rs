//! Connect tokens: JWT verification with rotation-friendly key sets.
//!
//! A connect carries a JWT (`?token=` or `Authorization: Bearer`). It is
//! accepted when one configured key verifies its signature under the `alg`
//! its header names, `exp` is in the future and `nbf` (if present) in the
//! past, both within a small leeway, `aud`/`iss` match when configured, and
//! `sub` is a valid user id. Keys are typed: an HMAC secret is only ever
//! tried for `HS*`, an RSA key for `RS*`/`PS*`, an EC key for `ES*`, so a
//! token cannot make a public key act as an HMAC secret, and `alg: none` is
//! never accepted.
//!
//! Rotation: any number of keys may be configured at once. A token whose
//! header names a `kid` that a configured key carries (JWKS keys have ids) is
//! checked against that key only; other tokens are tried against every key
//! of their algorithm's family, which for the handful of keys a rotation
//! needs costs a few signature checks at most.

use crate::error::{AuthError, KeyError};
use crate::pattern::RoomPolicy;
use base64::Engine;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Longest accepted token. Real tokens are a few hundred bytes; the cap keeps
/// a hostile one from costing more than a cheap rejection.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// How connect tokens are verified.
#[derive(Debug, Clone, Default)]
pub struct JwtSettings {
    /// HMAC secrets (`HS256`, also `HS384`/`HS512`). Several for rotation.
    pub secrets: Vec<String>,
    /// PEM files with RSA (`RS256`, `PS256`, …), EC (`ES256`, `ES384`) or
    /// Ed25519 (`EdDSA`) public keys. Several for rotation.
    pub public_keys: Vec<PathBuf>,
    /// A JSON Web Key Set file; its keys are selected by the token's `kid`.
    pub jwks_file: Option<PathBuf>,
    /// Clock skew tolerated on `exp` and `nbf`.
    pub leeway: Duration,
    /// Accepted audiences; when set, `aud` is required and must name one.
    pub audience: Vec<String>,
    /// Accepted issuers; when set, `iss` is required and must be one.
    pub issuer: Vec<String>,
}

impl JwtSettings {
    /// Whether any key is configured (authentication is on).
    pub fn has_keys(&self) -> bool {
        !self.secrets.is_empty() || !self.public_keys.is_empty() || self.jwks_file.is_some()
    }
}

/// Who a verified token says the connection is, and what it may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The user id (`sub`).
    pub user: String,
    /// Rooms it may join and publish to (`rooms` claim; all without it).
    pub rooms: RoomPolicy,
    /// Whether it may send direct messages (`send` claim; `true` without it).
    pub send: bool,
    /// When the node closes the session (Unix seconds): a token's `exp`
    /// plus the configured leeway, or the connect proxy's `expire_at`.
    pub expire_at: Option<u64>,
}

impl Identity {
    /// An identity with every permission: unauthenticated mode's `?user=`.
    pub fn unrestricted(user: impl Into<String>) -> Identity {
        Identity {
            user: user.into(),
            rooms: RoomPolicy::All,
            send: true,
            expire_at: None,
        }
    }
}

/// One configured key.
struct Key {
    kid: Option<String>,
    key: DecodingKey,
    algorithms: Vec<Algorithm>,
}

/// Verifies connect tokens against the configured keys.
pub struct Verifier {
    keys: Vec<Key>,
    leeway: u64,
    audience: Vec<String>,
    issuer: Vec<String>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.debug_struct("Verifier")
            .field("keys", &self.keys.len())
            .field("leeway", &self.leeway)
            .field("audience", &self.audience)
            .field("issuer", &self.issuer)
            .finish()
    }
}

/// The claims wsring reads; `exp`, `nbf`, `aud` and `iss` are checked by the
/// JWT library. Unknown claims are ignored.
#[derive(Deserialize)]
struct Claims {
    // Optional here so that a missing `sub` is reported as such by the
    // required-claims check rather than as a parse failure.
    #[serde(default)]
    sub: Option<serde_json::Value>,
    #[serde(default)]
    rooms: Option<Vec<String>>,
    #[serde(default)]
    send: Option<bool>,
    /// Checked by the library (required, numeric); read here for the
    /// session's expiry.
    #[serde(default)]
    exp: Option<serde_json::Value>,
}

impl Verifier {
    /// Loads every configured key. `Ok(None)` when none is configured.
    pub fn from_settings(s: &JwtSettings) -> Result<Option<Verifier>, KeyError> {
        if !s.has_keys() {
            return Ok(None);
        }
        let mut keys = Vec::new();
        for secret in &s.secrets {
            if secret.is_empty() {
                return Err(KeyError::Empty("a JWT secret"));
            }
            keys.push(typed(None, hmac_key(secret.as_bytes())?));
        }
        for path in &s.public_keys {
            keys.push(typed(None, pem_key(path)?));
        }
        if let Some(path) = &s.jwks_file {
            keys.extend(jwks_keys(path)?);
        }
        Ok(Some(Verifier {
            keys,
            leeway: s.leeway.as_secs(),
            audience: s.audience.clone(),
            issuer: s.issuer.clone(),
        }))
    }

    /// Verifies `token` and returns the identity it carries.
    pub fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        if token.is_empty() {
            return Err(AuthError::Missing("missing token"));
        }
        if token.len() > MAX_TOKEN_BYTES {
            return Err(AuthError::Malformed(format!(
                "longer than {MAX_TOKEN_BYTES} bytes"
            )));
        }
        let (alg, kid) = header(token)?;
        let mut candidates: Vec<&Key> = self
            .keys
            .iter()
            .filter(|k| k.algorithms.contains(&alg))
            .collect();
        if candidates.is_empty() {
            return Err(AuthError::Algorithm(format!("{alg:?}")));
        }
        if let Some(kid) = &kid
            && candidates.iter().any(|k| k.kid.as_deref() == Some(kid))
        {
            candidates.retain(|k| k.kid.as_deref() == Some(kid));
        }
        let validation = self.validation(alg);
        let mut last = AuthError::BadSignature;
        for key in candidates {
            match jsonwebtoken::decode::<Claims>(token, &key.key, &validation) {
                Ok(data) => return self.identity(data.claims),
                // The next key may be the one (rotation).
                Err(e) if matches!(e.kind(), ErrorKind::InvalidSignature) => {}
                // The signature verified (claims are checked after it), or
                // the token is broken for every key alike.
                Err(e) => {
                    last = map_error(e.into_kind());
                    if !matches!(last, AuthError::BadSignature) {
                        return Err(last);
                    }
                }
            }
        }
        Err(last)
    }

    fn validation(&self, alg: Algorithm) -> Validation {
        let mut v = Validation::new(alg);
        v.leeway = self.leeway;
        v.validate_exp = true;
        v.validate_nbf = true;
        let mut required = vec!["exp", "sub"];
        if self.audience.is_empty() {
            // An `aud` the server does not check is simply ignored.
            v.validate_aud = false;
        } else {
            v.set_audience(&self.audience);
            required.push("aud");
        }
        if !self.issuer.is_empty() {
            v.set_issuer(&self.issuer);
            required.push("iss");
        }
        v.set_required_spec_claims(&required);
        v
    }
}

/// The header's `alg` and `kid`, read by hand so that `alg: none` and other
/// unsupported algorithms get a precise error instead of a parse failure.
fn header(token: &str) -> Result<(Algorithm, Option<String>), AuthError> {
    let mut parts = token.split('.');
    let (Some(head), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(AuthError::Malformed("not three dot-separated parts".into()));
    };
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(head.trim_end_matches('='))
        .map_err(|_| AuthError::Malformed("header is not base64url".into()))?;
    #[derive(Deserialize)]
    struct Head {
        alg: Option<String>,
        kid: Option<String>,
    }
    let h: Head = serde_json::from_slice(&raw)
        .map_err(|_| AuthError::Malformed("header is not a JSON object".into()))?;
    let alg = h
        .alg
        .ok_or_else(|| AuthError::Malformed("header has no alg".into()))?;
    let parsed: Algorithm = alg
        .parse()
        .map_err(|_| AuthError::Algorithm(alg.chars().take(16).collect()))?;
    Ok((parsed, h.kid))
}

impl Verifier {
    /// The identity a verified token carries; it expires (the node closes
    /// its sessions with 3000 `expired`) when the token does, leeway
    /// included.
    fn identity(&self, c: Claims) -> Result<Identity, AuthError> {
        let exp = c.exp.as_ref().and_then(|v| {
            v.as_u64()
                .or_else(|| v.as_f64().filter(|f| *f >= 0.0).map(|f| f.ceil() as u64))
        });
        let mut id = grant(c.sub, c.rooms, c.send)?;
        id.expire_at = exp.map(|e| e.saturating_add(self.leeway));
        Ok(id)
    }
}

/// An identity from its claims, however they arrived (a token's `sub`, the
/// connect proxy's `user`): a valid user id, valid room patterns.
pub fn grant(
    user: Option<serde_json::Value>,
    rooms: Option<Vec<String>>,
    send: Option<bool>,
) -> Result<Identity, AuthError> {
    let user = match user {
        Some(serde_json::Value::String(s)) => s,
        _ => return Err(AuthError::Subject("the user id must be a string".into())),
    };
    wsring_protocol::validate_user(&user).map_err(|e| AuthError::Subject(e.to_string()))?;
    let rooms = match rooms {
        None => RoomPolicy::All,
        Some(list) => RoomPolicy::from_claim(&list).map_err(|e| AuthError::Rooms(e.to_string()))?,
    };
    Ok(Identity {
        user,
        rooms,
        send: send.unwrap_or(true),
        expire_at: None,
    })
}

fn map_error(kind: ErrorKind) -> AuthError {
    match kind {
        ErrorKind::InvalidSignature => AuthError::BadSignature,
        ErrorKind::ExpiredSignature => AuthError::Expired,
        ErrorKind::ImmatureSignature => AuthError::NotYetValid,
        ErrorKind::InvalidAudience => AuthError::Audience,
        ErrorKind::InvalidIssuer => AuthError::Issuer,
        ErrorKind::MissingRequiredClaim(c) => AuthError::MissingClaim(c),
        ErrorKind::InvalidAlgorithm | ErrorKind::MissingAlgorithm => {
            AuthError::Algorithm("mismatch".into())
        }
        ErrorKind::InvalidClaimFormat(c) => AuthError::Malformed(format!("claim {c}")),
        ErrorKind::Json(_) => {
            AuthError::Malformed("claims are not valid JSON of the expected types".into())
        }
        ErrorKind::Base64(_) | ErrorKind::Utf8(_) => {
            AuthError::Malformed("not base64url-encoded JSON".into())
        }
        _ => AuthError::Malformed("undecodable token".into()),
    }
}

fn typed(kid: Option<String>, key: DecodingKey) -> Key {
    Key {
        kid,
        algorithms: key.family().algorithms().to_vec(),
        key,
    }
}

fn hmac_key(secret: &[u8]) -> Result<DecodingKey, KeyError> {
    DecodingKey::from_secret(secret).map_err(|_| KeyError::Empty("a JWT secret"))
}

/// An RSA, EC or Ed25519 public key from a PEM file.
fn pem_key(path: &Path) -> Result<DecodingKey, KeyError> {
    let pem = std::fs::read(path).map_err(|source| KeyError::Io {
        path: path.to_owned(),
        source,
    })?;
    DecodingKey::from_rsa_pem(&pem)
        .or_else(|_| DecodingKey::from_ec_pem(&pem))
        .or_else(|_| DecodingKey::from_ed_pem(&pem))
        .map_err(|e| KeyError::Pem {
            path: path.to_owned(),
            reason: e.to_string(),
        })
}

/// Every key of a JWKS file, with its `kid` and, if the key names one, its
/// single `alg`.
fn jwks_keys(path: &Path) -> Result<Vec<Key>, KeyError> {
    let text = std::fs::read(path).map_err(|source| KeyError::Io {
        path: path.to_owned(),
        source,
    })?;
    let set: JwkSet = serde_json::from_slice(&text).map_err(|e| KeyError::Jwks {
        path: path.to_owned(),
        reason: format!("not a JSON Web Key Set: {e}"),
    })?;
    if set.keys.is_empty() {
        return Err(KeyError::Jwks {
            path: path.to_owned(),
            reason: "the key set is empty".into(),
        });
    }
    set.keys
        .iter()
        .map(|jwk| {
            let kid = jwk.common.key_id.clone();
            let key = DecodingKey::from_jwk(jwk).map_err(|e| KeyError::Jwks {
                path: path.to_owned(),
                reason: format!("key {:?}: {e}", kid.as_deref().unwrap_or("?")),
            })?;
            let mut k = typed(kid, key);
            if let Some(alg) = jwk.common.key_algorithm
                && let Ok(alg) = Algorithm::try_from(alg)
            {
                k.algorithms.retain(|a| *a == alg);
            }
            Ok(k)
        })
        .collect()
}

#[cfg(test)]
mod tests;
