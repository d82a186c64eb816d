//! The connect proxy's half of the connect decision, shared by gateway and
//! node: when the application decides who a connection is
//! (`--connect-proxy`), what is asked of it, and how its answer is read.
//!
//! [`admission`] decides what a WebSocket upgrade needs:
//!
//! 1. the `Origin` check comes first, as for every connect (403);
//! 2. an identity forwarded by a gateway ([`IDENTITY_HEADER`], or the
//!    [`IDENTITY_PARAM`] query parameter of a client sent straight to its
//!    node by `GET /ws/locate`) that verifies under the shared secret is the
//!    decision (a bad one is 401);
//! 3. with JWT keys configured, a connect presenting a token is decided by
//!    the token, as without a proxy;
//! 4. anything else is a question for the application: [`Admission::Ask`]
//!    carries the request to POST, and [`answered`] reads the reply.
//!
//! Without a connect proxy it is exactly [`crate::admit`].

use axum::http::HeaderMap;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use wsring_auth::{
    AuthError, IDENTITY_HEADER, IDENTITY_PARAM, Identity, Refusal, Security, unix_now,
};
use wsring_protocol::{ConnectParams, ErrorCode, query_token};

use crate::ApiError;
use crate::guard::{admit, header_str, refusal};
use crate::request::query_param;

/// Query parameters never passed to the application (credentials of other
/// schemes, and the identity it already decided).
const PRIVATE_PARAMS: &[&str] = &["token", IDENTITY_PARAM];

/// What the connect proxy is asked: a JSON object with the allow-listed
/// request headers (lower-case names; repeated headers joined by `, `, and
/// cookies by `; `), the query parameters and the client's address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConnectRequest {
    /// Allow-listed request headers.
    pub headers: BTreeMap<String, String>,
    /// The query parameters (first value of each), `token` left out.
    pub query: BTreeMap<String, String>,
    /// The TCP peer (for a gateway's node: the gateway; see the
    /// `x-forwarded-for` header).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote_addr: Option<String>,
}

/// What an upgrade needs before it can go on.
#[derive(Debug)]
pub enum Admission {
    /// Decided: who the connection is.
    Admitted(ConnectParams, Identity),
    /// The application must be asked first.
    Ask(ConnectRequest),
}

/// Decides an upgrade as far as it can without the network (see the
/// module documentation).
pub fn admission(
    security: &Security,
    query: Option<&str>,
    headers: &HeaderMap,
    peer: Option<SocketAddr>,
) -> Result<Admission, ApiError> {
    let Some(proxy) = &security.connect_proxy else {
        return admit(security, query, headers).map(|(p, i)| Admission::Admitted(p, i));
    };
    if !security
        .origins
        .permits(header_str(headers, axum::http::header::ORIGIN))
    {
        return Err(refusal(Refusal {
            status: 403,
            code: ErrorCode::Forbidden,
            message: "this page's Origin is not in the server's allowed origins".into(),
        }));
    }
    let forwarded = match headers.get(IDENTITY_HEADER) {
        Some(h) => Some(h.to_str().unwrap_or_default().to_owned()),
        None => query_param(query, IDENTITY_PARAM),
    };
    if let Some(token) = forwarded {
        let identity = proxy.assertions.verify(&token).map_err(unauthorized)?;
        return admitted_as(query, identity).map(|(p, i)| Admission::Admitted(p, i));
    }
    let has_token = query_token(query).is_some_and(|t| !t.is_empty())
        || header_str(headers, axum::http::header::AUTHORIZATION)
            .and_then(wsring_auth::bearer)
            .is_some();
    if security.connect.is_on() && has_token {
        return admit(security, query, headers).map(|(p, i)| Admission::Admitted(p, i));
    }
    // Each question costs the application a request: a flood from one
    // address is refused here, before it reaches the application.
    if let Some(peer) = peer
        && let Err(wait) = proxy
            .calls
            .check(&peer.ip(), 0, tokio::time::Instant::now().into_std())
    {
        return Err(ApiError::new(
            axum::http::StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::RateLimited,
            format!(
                "too many connects from this address; retry in {} ms",
                wait.0.as_millis().max(1)
            ),
        ));
    }
    Ok(Admission::Ask(request(
        &proxy.headers,
        query,
        headers,
        peer,
    )))
}

fn request(
    allowed: &[String],
    query: Option<&str>,
    headers: &HeaderMap,
    peer: Option<SocketAddr>,
) -> ConnectRequest {
    let mut out = BTreeMap::new();
    for name in allowed {
        let values: Vec<&str> = headers
            .get_all(name.as_str())
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        if !values.is_empty() {
            let sep = if name == "cookie" { "; " } else { ", " };
            out.insert(name.clone(), values.join(sep));
        }
    }
    let mut params = BTreeMap::new();
    for (k, v) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        if !PRIVATE_PARAMS.contains(&k.as_ref()) {
            params
                .entry(k.into_owned())
                .or_insert_with(|| v.into_owned());
        }
    }
    ConnectRequest {
        headers: out,
        query: params,
        remote_addr: peer.map(|p| p.ip().to_string()),
    }
}

/// The application's answer to a connect (HTTP 200 with a JSON object).
#[derive(Debug, Deserialize)]
struct Answer {
    #[serde(default)]
    user: Option<serde_json::Value>,
    #[serde(default)]
    rooms: Option<Vec<String>>,
    #[serde(default)]
    send: Option<bool>,
    #[serde(default)]
    expire_at: Option<u64>,
    #[serde(default)]
    message: Option<String>,
}

/// What a connect-proxy call came to: [`answered`] for a reply (its status
/// and JSON body), 503 when the application did not answer (timeout, error,
/// open breaker), so the client retries later.
pub fn proxy_outcome<E: std::fmt::Display>(
    query: Option<&str>,
    reply: Result<(u16, &serde_json::Value), E>,
) -> Result<(ConnectParams, Identity), ApiError> {
    match reply {
        Ok((status, body)) => answered(query, status, body),
        Err(e) => Err(ApiError::unavailable(format!(
            "the application's connect check did not answer: {e}"
        ))),
    }
}

/// Reads the application's reply (its HTTP status below 500 and JSON body):
/// 2xx with a `user` admits, 401 and 403 refuse with the same status (and the
/// body's `message`, if any), any other status refuses with 403. An answer
/// that cannot be used is 502.
pub fn answered(
    query: Option<&str>,
    status: u16,
    body: &serde_json::Value,
) -> Result<(ConnectParams, Identity), ApiError> {
    let answer: Option<Answer> = serde_json::from_value(body.clone()).ok();
    let message = answer
        .as_ref()
        .and_then(|a| a.message.clone())
        .filter(|m| !m.is_empty());
    if !(200..300).contains(&status) {
        let (status, code) = match status {
            401 => (401, ErrorCode::Unauthorized),
            _ => (403, ErrorCode::Forbidden),
        };
        return Err(refusal(Refusal {
            status,
            code,
            message: message.unwrap_or_else(|| "the application refused this connection".into()),
        }));
    }
    let bad = |why: String| {
        ApiError::new(
            axum::http::StatusCode::BAD_GATEWAY,
            ErrorCode::Unavailable,
            format!("the connect proxy's answer is unusable: {why}"),
        )
    };
    let Some(a) = answer else {
        return Err(bad("not a JSON object".into()));
    };
    let mut identity =
        wsring_auth::grant(a.user, a.rooms, a.send).map_err(|e| bad(e.to_string()))?;
    if let Some(at) = a.expire_at {
        if at <= unix_now() {
            return Err(refusal(Refusal {
                status: 401,
                code: ErrorCode::Unauthorized,
                message: "the application's answer has already expired".into(),
            }));
        }
        identity.expire_at = Some(at);
    }
    admitted_as(query, identity)
}

fn admitted_as(
    query: Option<&str>,
    identity: Identity,
) -> Result<(ConnectParams, Identity), ApiError> {
    let params = ConnectParams::parse_as(query, Some(identity.user.as_str()))
        .map_err(ApiError::bad_request)?;
    Ok((params, identity))
}

fn unauthorized(e: AuthError) -> ApiError {
    refusal(Refusal {
        status: 401,
        code: ErrorCode::Unauthorized,
        message: format!("forwarded identity: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use wsring_auth::AuthSettings;

    fn security(jwt: bool) -> Security {
        AuthSettings {
            connect_proxy: Some("http://127.0.0.1:9/connect".into()),
            connect_proxy_secret: Some("s".into()),
            connect_proxy_headers: vec!["cookie".into(), "user-agent".into()],
            allowed_origins: vec!["*".into()],
            connect_proxy_calls_per_sec: 2.0,
            jwt_secret: if jwt { vec!["k".into()] } else { vec![] },
            ..AuthSettings::default()
        }
        .build(true)
        .expect("settings")
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                axum::http::HeaderName::from_bytes(k.as_bytes()).expect("name"),
                v.parse().expect("value"),
            );
        }
        h
    }

    #[test]
    fn asks_with_only_the_allowed_headers_and_no_token() {
        let sec = security(false);
        let h = headers(&[
            ("cookie", "sid=1"),
            ("cookie", "theme=dark"),
            ("user-agent", "test"),
            ("x-secret", "no"),
        ]);
        let peer = "10.0.0.7:5555".parse().ok();
        let Ok(Admission::Ask(req)) = admission(&sec, Some("room=a&token=t&room=b"), &h, peer)
        else {
            panic!("should ask the application");
        };
        assert_eq!(req.headers["cookie"], "sid=1; theme=dark");
        assert_eq!(req.headers["user-agent"], "test");
        assert!(!req.headers.contains_key("x-secret"));
        assert_eq!(req.query, BTreeMap::from([("room".into(), "a".into())]));
        assert_eq!(req.remote_addr.as_deref(), Some("10.0.0.7"));
    }

    #[test]
    fn questions_from_one_address_are_rate_limited() {
        let sec = security(false);
        let a = "10.0.0.7:5555".parse().ok();
        let b = "10.0.0.8:5555".parse().ok();
        let h = HeaderMap::new();
        // 2 a second, a burst of 10.
        for _ in 0..10 {
            assert!(matches!(
                admission(&sec, None, &h, a),
                Ok(Admission::Ask(_))
            ));
        }
        let e = admission(&sec, None, &h, a).expect_err("over the limit");
        assert_eq!(e.status.as_u16(), 429);
        assert_eq!(e.code, ErrorCode::RateLimited);
        // Another address has its own budget.
        assert!(matches!(
            admission(&sec, None, &h, b),
            Ok(Admission::Ask(_))
        ));
    }

    #[test]
    fn a_token_decides_when_jwt_is_configured() {
        let sec = security(true);
        let h = headers(&[("authorization", "Bearer x.y.z")]);
        // The token is checked (and here refused), not passed on.
        assert!(admission(&sec, None, &h, None).is_err());
        assert!(matches!(
            admission(&sec, Some("user=bob"), &HeaderMap::new(), None),
            Ok(Admission::Ask(_))
        ));
    }

    #[test]
    fn a_forwarded_identity_is_verified() {
        let sec = security(false);
        let proxy = sec.connect_proxy.as_ref().expect("proxy");
        let id = Identity::unrestricted("alice");
        let t = proxy.assertions.mint(&id).expect("mint");
        let Ok(Admission::Admitted(p, got)) = admission(
            &sec,
            Some("user=mallory"),
            &headers(&[(IDENTITY_HEADER, &t)]),
            None,
        ) else {
            panic!("admitted");
        };
        assert_eq!((p.user.as_str(), got), ("alice", id));
        let forged = headers(&[(IDENTITY_HEADER, "a.b.c")]);
        let e = admission(&sec, None, &forged, None).expect_err("refused");
        assert_eq!(e.status.as_u16(), 401);
        // A client sent straight to its node carries it in the query.
        let q = format!("user=mallory&{IDENTITY_PARAM}={t}");
        let Ok(Admission::Admitted(p, _)) = admission(&sec, Some(&q), &HeaderMap::new(), None)
        else {
            panic!("admitted by the query's identity");
        };
        assert_eq!(p.user, "alice");
        let q = format!("user=mallory&{IDENTITY_PARAM}=a.b.c");
        let e = admission(&sec, Some(&q), &HeaderMap::new(), None).expect_err("refused");
        assert_eq!(e.status.as_u16(), 401);
    }

    #[test]
    fn answers() {
        let (p, id) = answered(
            None,
            200,
            &json!({"user":"alice","rooms":["team-*"],"send":false}),
        )
        .expect("admitted");
        assert_eq!(p.user, "alice");
        assert!(id.rooms.allows("team-1") && !id.rooms.allows("other") && !id.send);
        let future = unix_now() + 60;
        let (_, id) = answered(None, 200, &json!({"user":"bob","expire_at":future})).expect("ok");
        assert_eq!(id.expire_at, Some(future));
        let e = answered(None, 200, &json!({"user":"bob","expire_at":1})).expect_err("expired");
        assert_eq!(e.status.as_u16(), 401);
        let e = answered(None, 403, &json!({"message":"banned"})).expect_err("refused");
        assert_eq!(e.status.as_u16(), 403);
        let e = answered(None, 401, &json!(null)).expect_err("refused");
        assert_eq!(e.status.as_u16(), 401);
        let e = answered(None, 404, &json!(null)).expect_err("refused");
        assert_eq!(e.status.as_u16(), 403);
        for unusable in [
            json!({}),
            json!({"user":7}),
            json!({"user":"bad user id\n"}),
            json!([1]),
        ] {
            let e = answered(None, 200, &unusable).expect_err("unusable");
            assert_eq!(e.status.as_u16(), 502, "{unusable}");
        }
        // A reply goes through `answered`; no reply is 503 with the reason.
        let body = json!({"user":"carol"});
        let (p, _) = proxy_outcome::<&str>(None, Ok((200, &body))).expect("admitted");
        assert_eq!(p.user, "carol");
        let e = proxy_outcome(None, Err("timed out")).expect_err("no answer");
        assert_eq!(e.status.as_u16(), 503);
        assert!(e.message.contains("timed out"), "{}", e.message);
    }
}
