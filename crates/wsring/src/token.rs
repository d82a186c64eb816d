//! `wsring token`: prints a connect token signed with a cluster's secret or
//! private key, so a first client (or a script) can connect to a secured
//! node or gateway without an application behind it. Also the token list
//! of `wsring bench --token-file`.

use anyhow::Context;
use std::path::Path;
use wsring_auth::{Grant, SigningKey};

use crate::cli::TokenArgs;

/// The signing key the flags name (clap makes exactly one of them present).
fn key(a: &TokenArgs) -> SigningKey {
    match (&a.jwt_secret, &a.private_key) {
        (_, Some(path)) => SigningKey::PrivateKey(path.clone()),
        (Some(secret), None) => SigningKey::Secret(secret.clone()),
        (None, None) => SigningKey::Secret(String::new()),
    }
}

/// Mints the token `a` describes.
pub fn mint(a: &TokenArgs) -> anyhow::Result<String> {
    let grant = Grant {
        sub: a.sub.clone(),
        rooms: a.rooms.clone(),
        send: a.send,
        publish: a.publish.clone(),
        audience: a.jwt_audience.clone(),
        issuer: a.jwt_issuer.clone(),
        ttl: a.ttl,
    };
    wsring_auth::mint(&key(a), a.algorithm, &grant).context("cannot mint the token")
}

/// Prints the token on stdout, alone on its line (for `$(wsring token …)`).
pub fn run(a: &TokenArgs) -> anyhow::Result<()> {
    println!("{}", mint(a)?);
    Ok(())
}

/// Reads a token file: one token per line, blank lines and `#` comments
/// skipped; each token with its user (`sub`, read without verifying: the
/// server verifies).
pub fn read_token_file(path: &Path) -> anyhow::Result<Vec<(String, String)>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the token file {}", path.display()))?;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let sub = wsring_auth::unverified_subject(line).with_context(|| {
            format!(
                "{} line {}: not a connect token with a `sub`",
                path.display(),
                n + 1
            )
        })?;
        out.push((sub, line.to_owned()));
    }
    anyhow::ensure!(
        !out.is_empty(),
        "the token file {} holds no token",
        path.display()
    );
    Ok(out)
}
