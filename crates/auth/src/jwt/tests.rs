//! Unit tests of token verification: every way a token can be refused, key
//! rotation, and every key type.

use super::*;
use jsonwebtoken::{EncodingKey, Header, encode};
use proptest::prelude::*;
use serde_json::{Value, json};
use std::time::{SystemTime, UNIX_EPOCH};

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

fn hs(secret: &str, claims: Value) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()).expect("key"),
    )
    .expect("encode")
}

fn secrets(s: &[&str]) -> Verifier {
    Verifier::from_settings(&JwtSettings {
        secrets: s.iter().map(|s| s.to_string()).collect(),
        leeway: Duration::from_secs(5),
        ..Default::default()
    })
    .expect("keys")
    .expect("configured")
}

fn b64(v: &Value) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
}

fn tmp(name: &str, body: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("wsring-auth-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let p = dir.join(name);
    std::fs::write(&p, body).expect("write");
    p
}

#[test]
fn accepts_a_valid_token() {
    let v = secrets(&["s3cret"]);
    let exp = now() + 60;
    let id = v
        .verify(&hs("s3cret", json!({"sub": "alice", "exp": exp})))
        .expect("valid");
    // The session expires with the token, the 5 s leeway included.
    assert_eq!(
        id,
        Identity {
            expire_at: Some(exp as u64 + 5),
            ..Identity::unrestricted("alice")
        }
    );
}

#[test]
fn time_claims() {
    let v = secrets(&["k"]);
    let t = |c| v.verify(&hs("k", c));
    assert_eq!(
        t(json!({"sub": "a", "exp": now() - 60})),
        Err(AuthError::Expired)
    );
    // Within the 5 s leeway.
    assert!(t(json!({"sub": "a", "exp": now() - 2})).is_ok());
    assert_eq!(
        t(json!({"sub": "a", "exp": now() + 60, "nbf": now() + 60})),
        Err(AuthError::NotYetValid)
    );
    assert!(t(json!({"sub": "a", "exp": now() + 60, "nbf": now() - 1})).is_ok());
    assert_eq!(
        t(json!({"sub": "a"})),
        Err(AuthError::MissingClaim("exp".into()))
    );
    assert_eq!(
        t(json!({"exp": now() + 60})),
        Err(AuthError::MissingClaim("sub".into()))
    );
    // A claim of the wrong type counts as missing.
    assert_eq!(
        t(json!({"sub": "a", "exp": "tomorrow"})),
        Err(AuthError::MissingClaim("exp".into()))
    );
}

#[test]
fn signature_and_rotation() {
    let claims = json!({"sub": "bob", "exp": now() + 60});
    assert_eq!(
        secrets(&["right"]).verify(&hs("wrong", claims.clone())),
        Err(AuthError::BadSignature)
    );
    // Old and new secret configured together: both verify.
    let both = secrets(&["old", "new"]);
    assert!(both.verify(&hs("old", claims.clone())).is_ok());
    assert!(both.verify(&hs("new", claims.clone())).is_ok());
    // A tampered payload fails.
    let t = hs("new", claims);
    let mut parts: Vec<&str> = t.split('.').collect();
    let forged = b64(&json!({"sub": "mallory", "exp": now() + 60}));
    parts[1] = &forged;
    assert_eq!(both.verify(&parts.join(".")), Err(AuthError::BadSignature));
}

#[test]
fn alg_none_and_unknown_algorithms_are_refused() {
    let v = secrets(&["k"]);
    let claims = b64(&json!({"sub": "alice", "exp": now() + 60}));
    for alg in ["none", "None", "NONE", "HS1"] {
        let token = format!("{}.{claims}.", b64(&json!({"alg": alg, "typ": "JWT"})));
        assert!(
            matches!(v.verify(&token), Err(AuthError::Algorithm(_))),
            "{alg}"
        );
    }
    let no_alg = format!("{}.{claims}.sig", b64(&json!({"typ": "JWT"})));
    assert!(matches!(v.verify(&no_alg), Err(AuthError::Malformed(_))));
}

#[test]
fn malformed_tokens() {
    let v = secrets(&["k"]);
    for bad in [
        "",
        "abc",
        "a.b",
        "a.b.c.d",
        "!!!.b.c",
        "e30.e30.",
        &"a".repeat(9000),
    ] {
        let err = v.verify(bad).expect_err(bad);
        assert!(
            matches!(err, AuthError::Malformed(_) | AuthError::Missing(_)),
            "{bad:.20}: {err:?}"
        );
    }
    // The message never echoes the token.
    let token = hs("other", json!({"sub": "alice", "exp": now() + 60}));
    assert!(
        !v.verify(&token)
            .expect_err("bad")
            .to_string()
            .contains(&token)
    );
}

#[test]
fn subject_must_be_a_user_id() {
    let v = secrets(&["k"]);
    for sub in [
        json!("al ice"),
        json!(""),
        json!(42),
        json!("x".repeat(129)),
    ] {
        assert!(
            matches!(
                v.verify(&hs("k", json!({"sub": sub, "exp": now() + 60}))),
                Err(AuthError::Subject(_) | AuthError::MissingClaim(_))
            ),
            "{sub}"
        );
    }
}

#[test]
fn rooms_and_send_claims() {
    let v = secrets(&["k"]);
    let id = v
        .verify(&hs(
            "k",
            json!({"sub": "a", "exp": now() + 60, "rooms": ["lobby", "chat.*"], "send": false}),
        ))
        .expect("valid");
    assert!(!id.send);
    assert!(id.rooms.allows("chat.7") && id.rooms.allows("lobby") && !id.rooms.allows("ops"));
    assert!(matches!(
        v.verify(&hs(
            "k",
            json!({"sub": "a", "exp": now() + 60, "rooms": ["bad room"]})
        )),
        Err(AuthError::Rooms(_))
    ));
    assert!(matches!(
        v.verify(&hs(
            "k",
            json!({"sub": "a", "exp": now() + 60, "rooms": "lobby"})
        )),
        Err(AuthError::Malformed(_))
    ));
}

#[test]
fn audience_and_issuer_when_configured() {
    let v = Verifier::from_settings(&JwtSettings {
        secrets: vec!["k".into()],
        audience: vec!["chat".into()],
        issuer: vec!["https://auth.example".into()],
        ..Default::default()
    })
    .expect("keys")
    .expect("configured");
    let base = |extra: Value| {
        let mut c = json!({"sub": "a", "exp": now() + 60});
        for (k, val) in extra.as_object().expect("object") {
            c[k] = val.clone();
        }
        v.verify(&hs("k", c))
    };
    assert!(base(json!({"aud": "chat", "iss": "https://auth.example"})).is_ok());
    assert_eq!(
        base(json!({"aud": "other", "iss": "https://auth.example"})),
        Err(AuthError::Audience)
    );
    assert_eq!(
        base(json!({"aud": "chat", "iss": "https://evil.example"})),
        Err(AuthError::Issuer)
    );
    assert_eq!(
        base(json!({"iss": "https://auth.example"})),
        Err(AuthError::MissingClaim("aud".into()))
    );
    // Without configuration, aud is ignored.
    assert!(
        secrets(&["k"])
            .verify(&hs("k", json!({"sub": "a", "exp": now() + 60, "aud": "x"})))
            .is_ok()
    );
}

#[test]
fn es256_from_a_pem_file_and_no_algorithm_confusion() {
    let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("keygen");
    let path = tmp("ec.pem", kp.public_key_pem().as_bytes());
    let v = Verifier::from_settings(&JwtSettings {
        public_keys: vec![path],
        ..Default::default()
    })
    .expect("keys")
    .expect("configured");
    let claims = json!({"sub": "eve", "exp": now() + 60});
    let enc = EncodingKey::from_ec_pem(kp.serialize_pem().as_bytes()).expect("enc");
    let token = encode(&Header::new(Algorithm::ES256), &claims, &enc).expect("encode");
    assert_eq!(v.verify(&token).expect("valid").user, "eve");
    // HS256 "signed" with the public key's PEM as the secret: the classic
    // confusion attack. No HMAC key is configured, so the alg is refused.
    let forged = encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(kp.public_key_pem().as_bytes()).expect("key"),
    )
    .expect("encode");
    assert!(matches!(v.verify(&forged), Err(AuthError::Algorithm(_))));
}

#[test]
fn rs256_from_a_pem_file() {
    use rsa::pkcs1::EncodeRsaPrivateKey;
    use rsa::pkcs8::{EncodePublicKey, LineEnding};
    let private = rsa::RsaPrivateKey::new(&mut rand08::thread_rng(), 2048).expect("keygen");
    let public_pem = private
        .to_public_key()
        .to_public_key_pem(LineEnding::LF)
        .expect("pem");
    let v = Verifier::from_settings(&JwtSettings {
        public_keys: vec![tmp("rsa.pem", public_pem.as_bytes())],
        ..Default::default()
    })
    .expect("keys")
    .expect("configured");
    let enc = EncodingKey::from_rsa_pem(
        private
            .to_pkcs1_pem(LineEnding::LF)
            .expect("pem")
            .as_bytes(),
    )
    .expect("enc");
    let token = encode(
        &Header::new(Algorithm::RS256),
        &json!({"sub": "rsa-user", "exp": now() + 60}),
        &enc,
    )
    .expect("encode");
    assert_eq!(v.verify(&token).expect("valid").user, "rsa-user");
}

#[test]
fn jwks_selects_by_kid() {
    let k = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    let set = json!({"keys": [
        {"kty": "oct", "kid": "2026-01", "alg": "HS256", "k": k("first")},
        {"kty": "oct", "kid": "2026-02", "alg": "HS256", "k": k("second")},
    ]});
    let v = Verifier::from_settings(&JwtSettings {
        jwks_file: Some(tmp("keys.json", set.to_string().as_bytes())),
        ..Default::default()
    })
    .expect("keys")
    .expect("configured");
    let claims = json!({"sub": "a", "exp": now() + 60});
    let with_kid = |kid: &str, secret: &str| {
        let mut h = Header::new(Algorithm::HS256);
        h.kid = Some(kid.into());
        encode(
            &h,
            &claims,
            &EncodingKey::from_secret(secret.as_bytes()).expect("key"),
        )
        .expect("encode")
    };
    assert!(v.verify(&with_kid("2026-02", "second")).is_ok());
    assert!(v.verify(&with_kid("2026-01", "first")).is_ok());
    // The kid pins the key: the other key's signature is not tried.
    assert_eq!(
        v.verify(&with_kid("2026-01", "second")),
        Err(AuthError::BadSignature)
    );
    // An HS384 token is refused: the set says HS256.
    let h384 = encode(
        &Header::new(Algorithm::HS384),
        &claims,
        &EncodingKey::from_secret(b"first").expect("key"),
    )
    .expect("encode");
    assert!(matches!(v.verify(&h384), Err(AuthError::Algorithm(_))));
}

#[test]
fn bad_key_files_fail_at_start_up() {
    let missing = JwtSettings {
        public_keys: vec![PathBuf::from("/nonexistent/key.pem")],
        ..Default::default()
    };
    assert!(matches!(
        Verifier::from_settings(&missing),
        Err(KeyError::Io { .. })
    ));
    let garbage = JwtSettings {
        public_keys: vec![tmp("garbage.pem", b"not a key")],
        ..Default::default()
    };
    assert!(matches!(
        Verifier::from_settings(&garbage),
        Err(KeyError::Pem { .. })
    ));
    let jwks = JwtSettings {
        jwks_file: Some(tmp("bad.json", b"{\"keys\": 3}")),
        ..Default::default()
    };
    assert!(matches!(
        Verifier::from_settings(&jwks),
        Err(KeyError::Jwks { .. })
    ));
    assert!(
        Verifier::from_settings(&JwtSettings::default())
            .expect("ok")
            .is_none()
    );
    let empty = JwtSettings {
        secrets: vec![String::new()],
        ..Default::default()
    };
    assert!(matches!(
        Verifier::from_settings(&empty),
        Err(KeyError::Empty(_))
    ));
}

proptest! {
    /// Whatever arrives in `?token=`, verification answers with an error
    /// and never panics.
    #[test]
    fn arbitrary_input_is_refused(s in ".{0,300}") {
        prop_assert!(secrets(&["k"]).verify(&s).is_err());
    }

    /// Random bytes in each part of a well-formed-looking token.
    #[test]
    fn arbitrary_parts_are_refused(h in "[A-Za-z0-9_-]{0,80}", p in "[A-Za-z0-9_-]{0,80}", s in "[A-Za-z0-9_-]{0,80}") {
        let token = format!("{h}.{p}.{s}");
        prop_assert!(secrets(&["k"]).verify(&token).is_err());
    }
}
