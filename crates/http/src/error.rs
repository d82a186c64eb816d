//! [`ApiError`]: every HTTP error wsring answers, as a status plus the JSON
//! body `{"error":{"code":..,"message":..}}` (with optional extra fields in
//! the `error` object). Plain-text errors are not part of the contract, so
//! every failure path of both roles ends here.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use thiserror::Error;
use wsring_protocol::{ErrorCode, InvalidBody};

/// An HTTP error answer.
#[derive(Debug, Error)]
#[error("{status} {}: {message}", code.as_str())]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Machine-readable code.
    pub code: ErrorCode,
    /// Human-readable message.
    pub message: String,
    /// Extra fields merged into the `error` object (e.g. the owner node).
    pub extra: Option<serde_json::Map<String, serde_json::Value>>,
}

impl ApiError {
    /// A new error.
    pub fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            extra: None,
        }
    }

    /// 400 `bad_request`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, ErrorCode::BadRequest, message)
    }

    /// 404 `not_found`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, message)
    }

    /// 503 `unavailable`.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Unavailable,
            message,
        )
    }

    /// Adds a field to the `error` object.
    pub fn with(mut self, key: &str, value: impl Into<serde_json::Value>) -> Self {
        self.extra
            .get_or_insert_with(Default::default)
            .insert(key.to_owned(), value.into());
        self
    }
}

/// A request body with an invalid field is the caller's mistake: 400.
impl From<InvalidBody> for ApiError {
    fn from(e: InvalidBody) -> Self {
        ApiError::bad_request(e.0)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        // A full stream store is a standing condition, reported (rate
        // limited) where it is detected, not once per refused request.
        if self.status.is_server_error() && self.status != StatusCode::INSUFFICIENT_STORAGE {
            tracing::warn!(status = %self.status, code = self.code.as_str(), message = %self.message, "request failed");
        }
        let mut error = serde_json::Map::new();
        error.insert("code".into(), json!(self.code.as_str()));
        error.insert("message".into(), json!(self.message));
        if let Some(extra) = self.extra {
            error.extend(extra);
        }
        let mut resp = (self.status, Json(json!({ "error": error }))).into_response();
        // Every 503 means "nothing was done, try again shortly".
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        resp
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use serde_json::Value;

    /// Renders an answer: status, headers and the parsed JSON body.
    pub(crate) async fn render(
        resp: impl IntoResponse,
    ) -> (StatusCode, axum::http::HeaderMap, Value) {
        let resp = resp.into_response();
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .expect("body collects")
            .to_bytes();
        let body = serde_json::from_slice(&bytes).expect("body is JSON");
        (status, headers, body)
    }

    #[tokio::test]
    async fn body_shape_is_code_and_message_plus_extras() {
        let e = ApiError::new(
            StatusCode::MISDIRECTED_REQUEST,
            ErrorCode::WrongNode,
            "not mine",
        )
        .with("node", "n2")
        .with("epoch", 4);
        let (status, headers, body) = render(e).await;
        assert_eq!(status, StatusCode::MISDIRECTED_REQUEST);
        assert_eq!(
            headers.get(header::CONTENT_TYPE).map(HeaderValue::as_bytes),
            Some(&b"application/json"[..])
        );
        assert!(headers.get(header::RETRY_AFTER).is_none());
        assert_eq!(
            body,
            json!({ "error": {
                "code": "wrong_node", "message": "not mine", "node": "n2", "epoch": 4,
            }})
        );
    }

    #[tokio::test]
    async fn shorthands_pick_their_status_and_503_says_retry_after() {
        let (s, h, b) = render(ApiError::bad_request("nope")).await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        assert!(h.get(header::RETRY_AFTER).is_none());
        assert_eq!(
            b,
            json!({ "error": { "code": "bad_request", "message": "nope" } })
        );
        let (s, _, b) = render(ApiError::not_found("gone")).await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        assert_eq!(b["error"]["code"], "not_found");
        let (s, h, b) = render(ApiError::unavailable("later")).await;
        assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(b["error"]["code"], "unavailable");
        assert_eq!(
            h.get(header::RETRY_AFTER).map(HeaderValue::as_bytes),
            Some(&b"1"[..])
        );
    }

    #[test]
    fn invalid_body_is_a_bad_request_with_its_message() {
        let e = ApiError::from(InvalidBody("`id` must be 1-128 bytes".into()));
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert_eq!(e.code, ErrorCode::BadRequest);
        assert_eq!(e.message, "`id` must be 1-128 bytes");
        assert_eq!(
            e.to_string(),
            "400 Bad Request bad_request: `id` must be 1-128 bytes"
        );
    }
}
