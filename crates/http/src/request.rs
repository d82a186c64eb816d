//! Reading requests: query parameters from the raw query string, and JSON
//! bodies whose every failure (unreadable, too large, not JSON, wrong shape)
//! becomes a JSON 4xx instead of axum's plain-text rejection.

use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use bytes::Bytes;
use serde::de::DeserializeOwned;
use wsring_protocol::ErrorCode;

use crate::ApiError;

/// A named query parameter from a raw query string (percent-decoded; the
/// first one wins if it repeats).
pub fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// The query of `GET /api/history` (`user` or `room`, `since`, `limit`),
/// checked the same way by every process.
pub fn history_query(
    query: Option<&str>,
) -> Result<wsring_protocol::HistoryQuery, wsring_protocol::InvalidBody> {
    wsring_protocol::HistoryQuery::parse(
        query_param(query, "user"),
        query_param(query, "room"),
        query_param(query, "since"),
        query_param(query, "limit"),
    )
}

/// The answer for a body that could not be read: 413 `payload_too_large`
/// past the body limit, 408 past the body read timeout, 400 otherwise.
pub fn rejection(r: BytesRejection) -> ApiError {
    if let Some(t) = crate::body::timed_out(&r) {
        return ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            ErrorCode::BadRequest,
            t.to_string(),
        );
    }
    if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(r.status(), ErrorCode::PayloadTooLarge, r.body_text())
    } else {
        ApiError::bad_request(r.body_text())
    }
}

/// Parses a JSON body, mapping every failure to a JSON 4xx. Bodies nested
/// deeper than [`wsring_protocol::MAX_JSON_DEPTH`] are refused (400) before
/// parsing, as client frames are: their `data` would be relayed as it is.
pub fn parse_body<T: DeserializeOwned>(body: Result<Bytes, BytesRejection>) -> Result<T, ApiError> {
    let bytes = body.map_err(rejection)?;
    if let Err(depth) = wsring_protocol::check_depth(&bytes, wsring_protocol::MAX_JSON_DEPTH) {
        return Err(ApiError::bad_request(format!(
            "invalid JSON body: nested deeper than {} levels (at least {depth})",
            wsring_protocol::MAX_JSON_DEPTH
        )));
    }
    serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use wsring_protocol::SendBody;

    #[test]
    fn query_param_decodes_and_takes_the_first() {
        let q = Some("user=bob%40x&arcs=1&user=eve&sp=a+b");
        assert_eq!(query_param(q, "user").as_deref(), Some("bob@x"));
        assert_eq!(query_param(q, "arcs").as_deref(), Some("1"));
        assert_eq!(query_param(q, "sp").as_deref(), Some("a b"));
        assert_eq!(query_param(q, "missing"), None);
        assert_eq!(query_param(None, "user"), None);
        assert_eq!(query_param(Some(""), "user"), None);
        assert_eq!(query_param(Some("user="), "user").as_deref(), Some(""));
    }

    #[test]
    fn parse_body_refuses_deep_nesting() {
        let deep = format!(
            r#"{{"to":"bob","data":{}1{}}}"#,
            "[".repeat(30_000),
            "]".repeat(30_000)
        );
        let e = parse_body::<SendBody>(Ok(Bytes::from(deep))).expect_err("too deep");
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert!(e.message.contains("nested deeper than 64"), "{}", e.message);
        let ok = format!(
            r#"{{"to":"bob","data":{}1{}}}"#,
            "[".repeat(63),
            "]".repeat(63)
        );
        assert!(parse_body::<SendBody>(Ok(Bytes::from(ok))).is_ok());
    }

    #[test]
    fn parse_body_accepts_json_and_rejects_the_rest_as_400() {
        let ok: SendBody =
            parse_body(Ok(Bytes::from_static(br#"{"to":"bob","data":[1]}"#))).expect("parses");
        assert_eq!(ok.to, "bob");
        assert_eq!(ok.data.get(), "[1]");
        for bad in [
            &b"not json"[..],
            br#"{"to":"bob"}"#,
            br#"{"to":1,"data":1}"#,
        ] {
            let e = parse_body::<SendBody>(Ok(Bytes::from_static(bad))).expect_err("rejected");
            assert_eq!(e.status, StatusCode::BAD_REQUEST);
            assert_eq!(e.code, ErrorCode::BadRequest);
            assert!(
                e.message.starts_with("invalid JSON body: "),
                "{}",
                e.message
            );
        }
    }
}
