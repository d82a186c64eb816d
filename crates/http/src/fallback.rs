//! The answers for requests no route matches: JSON 404 for an unknown path
//! and JSON 405 for a known path with the wrong method (axum's defaults are
//! empty or plain text, which the contract does not allow).

use axum::http::StatusCode;
use wsring_protocol::ErrorCode;

use crate::ApiError;

/// JSON 404 for unknown paths.
pub async fn not_found() -> ApiError {
    ApiError::not_found("no such route")
}

/// JSON 405 for a known path with the wrong method.
pub async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        ErrorCode::BadRequest,
        "method not allowed on this route",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::tests::render;
    use axum::Router;
    use axum::body::Body;
    use axum::http::Request;
    use axum::routing::get;
    use serde_json::json;
    use tower::ServiceExt;

    fn app() -> Router {
        Router::new()
            .route("/known", get(|| async { "ok" }))
            .fallback(not_found)
            .method_not_allowed_fallback(method_not_allowed)
    }

    async fn call(method: &str, path: &str) -> axum::response::Response {
        let req = Request::builder()
            .method(method)
            .uri(path)
            .body(Body::empty())
            .expect("request builds");
        app().oneshot(req).await.expect("router is infallible")
    }

    #[tokio::test]
    async fn unknown_path_is_a_json_404() {
        let (status, _, body) = render(call("GET", "/nowhere").await).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(
            body,
            json!({ "error": { "code": "not_found", "message": "no such route" } })
        );
    }

    #[tokio::test]
    async fn wrong_method_is_a_json_405() {
        let (status, _, body) = render(call("POST", "/known").await).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(
            body,
            json!({ "error": {
                "code": "bad_request", "message": "method not allowed on this route",
            }})
        );
    }
}
