//! Property-based fuzzing of the token and claims path: arbitrary text, and
//! correctly signed tokens with random claims of random types. Verification
//! must never panic, must never accept what the key did not sign, and must
//! accept a signed token only when every rule holds (`sub` a valid user id,
//! `exp` in the future, `nbf` in the past, `rooms` a list of valid patterns,
//! `send` a boolean; `null` is the same as an absent optional claim).
//!
//! Runs on stable with proptest (cargo-fuzz needs a nightly toolchain). For
//! a longer, bounded run:
//! `PROPTEST_CASES=100000 cargo test -p wsring-auth --test fuzz --release`.

use proptest::prelude::*;
use serde_json::{Value, json};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use wsring_auth::{JwtSettings, RoomPolicy, Verifier};

const SECRET: &str = "fuzz-secret";

fn verifier() -> Verifier {
    Verifier::from_settings(&JwtSettings {
        secrets: vec![SECRET.into()],
        leeway: Duration::from_secs(5),
        ..Default::default()
    })
    .expect("keys load")
    .expect("a key is configured")
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

/// A claim value of any type, biased towards the plausible.
fn claim(
    plausible: impl Strategy<Value = Value> + 'static,
) -> impl Strategy<Value = Option<Value>> {
    prop::option::of(prop_oneof![
        3 => plausible,
        1 => Just(Value::Null),
        1 => any::<bool>().prop_map(Value::from),
        1 => ".{0,10}".prop_map(Value::from),
        1 => prop::collection::vec(".{0,6}", 0..3).prop_map(Value::from),
    ])
}

fn sign(claims: &Value, secret: &str) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()).expect("HMAC key"),
    )
    .expect("encodes")
}

proptest! {
    #[test]
    fn arbitrary_text_is_refused_without_panicking(token in ".{0,400}") {
        prop_assert!(verifier().verify(&token).is_err());
    }

    #[test]
    fn jwt_shaped_garbage_is_refused(parts in prop::collection::vec("[A-Za-z0-9_-]{0,40}", 1..5)) {
        prop_assert!(verifier().verify(&parts.join(".")).is_err());
    }

    #[test]
    fn signed_tokens_pass_exactly_when_every_rule_holds(
        sub in claim("[A-Za-z0-9_.:@-]{1,20}".prop_map(Value::from)),
        exp in claim((-100_000i64..100_000).prop_map(|d| Value::from(now() + d))),
        nbf in claim((-100_000i64..100_000).prop_map(|d| Value::from(now() + d))),
        rooms in claim(prop::collection::vec("[a-z.*]{1,8}", 0..4).prop_map(Value::from)),
        send in claim(any::<bool>().prop_map(Value::from)),
        foreign in any::<bool>(),
    ) {
        let mut c = serde_json::Map::new();
        for (k, v) in [("sub", &sub), ("exp", &exp), ("nbf", &nbf), ("rooms", &rooms), ("send", &send)] {
            if let Some(v) = v {
                c.insert(k.into(), v.clone());
            }
        }
        let token = sign(&Value::Object(c), if foreign { "another" } else { SECRET });
        let got = verifier().verify(&token);
        if foreign {
            prop_assert!(got.is_err(), "a token signed with another key passed");
            return Ok(());
        }
        let t = now();
        let time_ok = |v: &Option<Value>, must: bool, ok: &dyn Fn(i64) -> bool| match v {
            None => !must,
            Some(v) => v.as_i64().is_some_and(ok),
        };
        // A margin either side of the leeway keeps the clock out of it.
        let clear = |v: &Option<Value>| v.as_ref().and_then(Value::as_i64).is_none_or(|x| (x - t).abs() > 60);
        if !(clear(&exp) && clear(&nbf)) {
            return Ok(());
        }
        let sub_ok = sub
            .as_ref()
            .and_then(Value::as_str)
            .is_some_and(|s| wsring_protocol::validate_user(s).is_ok());
        // `null` counts as absent for the optional claims.
        let rooms_ok = match &rooms {
            None | Some(Value::Null) => true,
            Some(Value::Array(items)) => {
                let names: Option<Vec<&str>> = items.iter().map(Value::as_str).collect();
                names.is_some_and(|n| RoomPolicy::from_claim(&n).is_ok())
            }
            Some(_) => false,
        };
        let send_ok = matches!(&send, None | Some(Value::Null | Value::Bool(_)));
        let expect = sub_ok
            && time_ok(&exp, true, &|x| x > t)
            && time_ok(&nbf, false, &|x| x < t)
            && rooms_ok
            && send_ok;
        prop_assert_eq!(got.is_ok(), expect, "claims {:?} {:?} {:?} {:?} {:?}: {:?}", sub, exp, nbf, rooms, send, got);
        if let Ok(identity) = got {
            prop_assert_eq!(Some(identity.user.as_str()), sub.as_ref().and_then(Value::as_str));
            prop_assert_eq!(identity.send, send.as_ref().and_then(Value::as_bool).unwrap_or(true));
        }
    }

    #[test]
    fn the_none_algorithm_is_never_accepted(sub in "[a-z]{1,8}") {
        use base64::Engine;
        let b64 = |v: Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
        let token = format!(
            "{}.{}.",
            b64(json!({"alg":"none","typ":"JWT"})),
            b64(json!({"sub": sub, "exp": now() + 3600}))
        );
        prop_assert!(verifier().verify(&token).is_err());
    }
}
