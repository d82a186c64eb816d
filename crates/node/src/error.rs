//! Errors: [`NodeError`] for starting a node, [`ApiError`] for HTTP answers
//! (a status plus the JSON body `{"error":{"code":..,"message":..}}`), and
//! [`RouteError`] for a message the cluster could not accept.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use thiserror::Error;
use wsring_cluster::ClusterError;
use wsring_protocol::ErrorCode;

/// Why a node could not start.
#[derive(Debug, Error)]
pub enum NodeError {
    /// The node id is not valid.
    #[error("invalid node id: {0}")]
    InvalidId(#[from] wsring_protocol::IdError),
    /// Registry, broker or stream store failed.
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    /// The listener failed.
    #[error("listener: {0}")]
    Io(#[from] std::io::Error),
    /// The HTTP client for peer calls could not be built (TLS backend or
    /// resolver initialisation); a default client would silently drop the
    /// request timeout, so the node refuses to start instead.
    #[error("http client: {0}")]
    HttpClient(#[from] reqwest::Error),
}

/// Why a message was not accepted. Nothing was acknowledged; retrying with the
/// same id is safe (durable appends are deduplicated by id).
#[derive(Debug, Error)]
pub enum RouteError {
    /// The backend could not take the message.
    #[error("cluster unavailable: {0}")]
    Unavailable(#[from] ClusterError),
    /// No node is up to own the recipient.
    #[error("no node is up to own {0:?}")]
    NoOwner(String),
}

/// An HTTP error answer.
#[derive(Debug)]
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

impl From<RouteError> for ApiError {
    fn from(e: RouteError) -> Self {
        ApiError::unavailable(e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::warn!(status = %self.status, code = self.code.as_str(), message = %self.message, "request failed");
        }
        let mut error = serde_json::Map::new();
        error.insert("code".into(), json!(self.code.as_str()));
        error.insert("message".into(), json!(self.message));
        if let Some(extra) = self.extra {
            error.extend(extra);
        }
        let mut resp = (self.status, Json(json!({ "error": error }))).into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            resp.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("1"),
            );
        }
        resp
    }
}
