//! Why a credential was refused ([`AuthError`], answered with HTTP 401
//! `unauthorized`) and why a key could not be loaded at start-up
//! ([`KeyError`]).

use std::path::PathBuf;
use thiserror::Error;

/// A refused credential. The message names the rule that failed and is safe
/// to return to the caller: it never contains the token or key.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AuthError {
    /// No token (connect) or no `Authorization: Bearer` key (API).
    #[error("{0}")]
    Missing(&'static str),
    /// Not a JWT, undecodable header or claims, or a claim of the wrong type.
    #[error("malformed token: {0}")]
    Malformed(String),
    /// `alg` is not one the configured keys accept (including `none`).
    #[error("token algorithm {0} is not accepted")]
    Algorithm(String),
    /// No configured key verifies the signature.
    #[error("token signature does not verify")]
    BadSignature,
    /// `exp` is in the past (beyond the leeway).
    #[error("token expired")]
    Expired,
    /// `nbf` is in the future (beyond the leeway).
    #[error("token not valid yet")]
    NotYetValid,
    /// `aud` does not name a configured audience.
    #[error("token audience is not accepted")]
    Audience,
    /// `iss` is not a configured issuer.
    #[error("token issuer is not accepted")]
    Issuer,
    /// A required claim (`exp`, `sub`, and `aud`/`iss` when configured) is missing.
    #[error("token lacks the {0} claim")]
    MissingClaim(String),
    /// `sub` is not a valid user id.
    #[error("token subject is not a valid user id: {0}")]
    Subject(String),
    /// `rooms` is not a list of valid room names and patterns.
    #[error("token rooms claim: {0}")]
    Rooms(String),
    /// The `Authorization` header names no configured API key.
    #[error("invalid API key")]
    BadApiKey,
}

/// A key or key file that could not be loaded. Start-up fails with it.
#[derive(Debug, Error)]
pub enum KeyError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file holds no usable RSA or EC public key in PEM form.
    #[error("{path}: not an RSA or EC public key in PEM form ({reason})")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        reason: String,
    },
    /// The file holds no usable private key (`wsring token --private-key`).
    #[error(
        "{path}: not an RSA (PKCS#1 or PKCS#8), EC (PKCS#8) or Ed25519 (PKCS#8) private key in PEM form"
    )]
    PrivatePem {
        /// The file.
        path: PathBuf,
    },
    /// The JWKS file is not a JSON Web Key Set, or one of its keys is unusable.
    #[error("{path}: {reason}")]
    Jwks {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// An HMAC secret or API key is empty.
    #[error("{0} must not be empty")]
    Empty(&'static str),
}
