//! The identity a gateway hands to a node after the application's connect
//! proxy decided who a connection is.
//!
//! The node must not take the gateway's word on trust (nodes can be reached
//! directly), and should not ask the application a second time (twice the
//! load, and an application may answer a one-time credential only once). So
//! the gateway forwards the decision as a short-lived HS256 token under
//! `--connect-proxy-secret`, which only the gateways, the nodes and the
//! application know, in the [`IDENTITY_HEADER`] request header. The token
//! names its own audience, so no connect token (and no other use of the
//! secret) can pass for one.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::{AuthError, KeyError};
use crate::jwt::{Identity, grant};
use crate::pattern::RoomPolicy;

/// The request header carrying the identity from gateway to node.
pub const IDENTITY_HEADER: &str = "x-wsring-identity";

/// The query parameter carrying the same token when a client connects to
/// its node directly after asking a gateway where to go (`GET /ws/locate`):
/// browsers cannot set headers on a WebSocket connect.
pub const IDENTITY_PARAM: &str = "identity";

/// The audience every identity token names.
const AUDIENCE: &str = "wsring:connect-identity";

/// Seconds an identity token stays valid: long enough for the gateway's
/// hop to the node (connect timeouts included), short enough that one seen
/// in a log is useless soon after.
const LIFETIME_SECS: u64 = 30;

/// Clock skew tolerated between gateway and node.
const LEEWAY_SECS: u64 = 5;

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    aud: String,
    exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rooms: Option<Vec<String>>,
    send: bool,
    /// The `publish` claim, when the identity has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    publish: Option<Vec<String>>,
    /// The session's own expiry, when the application set one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    xat: Option<u64>,
}

/// Mints and verifies identity tokens under one secret.
pub struct Assertions {
    enc: EncodingKey,
    dec: DecodingKey,
}

impl std::fmt::Debug for Assertions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Assertions(..)")
    }
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Assertions {
    /// Keys from the shared secret (which must not be empty).
    pub fn new(secret: &str) -> Result<Assertions, KeyError> {
        let empty = |_| KeyError::Empty("the connect proxy secret");
        Ok(Assertions {
            enc: EncodingKey::from_secret(secret.as_bytes()).map_err(empty)?,
            dec: DecodingKey::from_secret(secret.as_bytes()).map_err(empty)?,
        })
    }

    /// A token for `id`, valid for a few seconds.
    pub fn mint(&self, id: &Identity) -> Result<String, AuthError> {
        let claims = Claims {
            sub: id.user.clone(),
            aud: AUDIENCE.to_owned(),
            exp: unix_now() + LIFETIME_SECS,
            rooms: id.rooms.entries(),
            send: id.send,
            publish: id.publish.as_ref().and_then(RoomPolicy::entries),
            xat: id.expire_at,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.enc)
            .map_err(|e| AuthError::Malformed(e.to_string()))
    }

    /// The identity a token carries, if it verifies and has not expired.
    pub fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        let mut v = Validation::new(Algorithm::HS256);
        v.set_audience(&[AUDIENCE]);
        v.set_required_spec_claims(&["exp", "aud", "sub"]);
        v.leeway = LEEWAY_SECS;
        let data = jsonwebtoken::decode::<Claims>(token, &self.dec, &v).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind;
            match e.kind() {
                ErrorKind::InvalidSignature => AuthError::BadSignature,
                ErrorKind::ExpiredSignature => AuthError::Expired,
                ErrorKind::InvalidAudience => AuthError::Audience,
                _ => AuthError::Malformed("not a connect identity".into()),
            }
        })?;
        let c = data.claims;
        let mut id = grant(
            Some(serde_json::Value::String(c.sub)),
            c.rooms,
            Some(c.send),
            c.publish,
        )?;
        id.expire_at = c.xat;
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_other_secrets_and_tokens() {
        let a = Assertions::new("s1").expect("key");
        let mut id = Identity::unrestricted("alice");
        id.rooms = RoomPolicy::from_claim(&["team-*", "lobby"]).expect("patterns");
        id.send = false;
        id.publish = Some(RoomPolicy::from_claim(&["announce"]).expect("patterns"));
        id.expire_at = Some(unix_now() + 3600);
        let t = a.mint(&id).expect("mint");
        assert_eq!(a.verify(&t).expect("verify"), id);
        assert!(matches!(
            Assertions::new("s2").expect("key").verify(&t),
            Err(AuthError::BadSignature)
        ));
        // A connect token under the same secret has no identity audience.
        let connect = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &serde_json::json!({"sub":"mallory","exp": unix_now() + 60}),
            &EncodingKey::from_secret(b"s1").expect("key"),
        )
        .expect("encode");
        assert!(a.verify(&connect).is_err());
        assert!(a.verify("garbage").is_err());
    }

    #[test]
    fn an_old_identity_token_is_refused() {
        let a = Assertions::new("s").expect("key");
        let stale = Claims {
            sub: "alice".into(),
            aud: AUDIENCE.into(),
            exp: unix_now() - 60,
            rooms: None,
            send: true,
            publish: None,
            xat: None,
        };
        let t =
            jsonwebtoken::encode(&Header::new(Algorithm::HS256), &stale, &a.enc).expect("encode");
        assert!(matches!(a.verify(&t), Err(AuthError::Expired)));
    }
}
