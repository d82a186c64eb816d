//! The API's gate, shared by nodes and gateways so both refuse the same calls
//! the same way:
//!
//! * [`require_key`]: write and control calls need `Authorization: Bearer
//!   <api key>` whenever the API is protected, else 401 `unauthorized`.
//! * [`require_json`]: JSON bodies need `Content-Type: application/json`,
//!   else 415 `unsupported_media_type`. A browser sends a cross-site
//!   `text/plain` or form post without a preflight; requiring JSON forces
//!   one, which [`cors`] answers only for configured origins.
//! * [`cors`]: `Access-Control-Allow-*` headers, and preflight answers, only
//!   for origins in `--allowed-origins`; none at all without it.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use wsring_auth::{Credentials, Identity, Refusal, Security};
use wsring_protocol::{ConnectParams, ErrorCode, query_token};

use crate::ApiError;

/// The JSON answer for a refused connect or call.
pub fn refusal(r: Refusal) -> ApiError {
    let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::UNAUTHORIZED);
    ApiError::new(status, r.code, r.message)
}

/// Who a WebSocket upgrade is, decided identically by gateway and node: the
/// origin and token checks (403, 401), then the query (400). In open mode
/// the `user` parameter names the user with every permission.
pub fn admit(
    security: &Security,
    query: Option<&str>,
    headers: &HeaderMap,
) -> Result<(ConnectParams, Identity), ApiError> {
    let token = query_token(query);
    let user = crate::query_param(query, "user");
    let credentials = Credentials {
        token: token.as_deref(),
        user: user.as_deref(),
        authorization: header_str(headers, header::AUTHORIZATION),
    };
    let proven = security
        .admit(credentials, header_str(headers, header::ORIGIN))
        .map_err(refusal)?;
    let params = ConnectParams::parse_as(query, proven.as_ref().map(|i| i.user.as_str()))
        .map_err(ApiError::bad_request)?;
    let identity = proven.unwrap_or_else(|| Identity::unrestricted(params.user.clone()));
    Ok((params, identity))
}

/// A header's value as text, if it is text.
pub fn header_str(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Middleware: the API key check. Use as a `route_layer` on the protected
/// routes, with the node's or gateway's [`Security`] as state.
pub async fn require_key(State(sec): State<Arc<Security>>, req: Request, next: Next) -> Response {
    match sec.api_call(header_str(req.headers(), header::AUTHORIZATION)) {
        Ok(_) => next.run(req).await,
        Err(r) => {
            let mut resp = refusal(r).into_response();
            // RFC 6750: a 401 names the scheme it wants.
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            resp
        }
    }
}

/// Middleware: [`require_key`] for an event stream a browser opens with
/// `EventSource`, which cannot set headers: the key may also come as the
/// `key` query parameter.
pub async fn require_key_or_query(
    State(sec): State<Arc<Security>>,
    req: Request,
    next: Next,
) -> Response {
    let header = header_str(req.headers(), header::AUTHORIZATION).map(str::to_owned);
    let presented = header
        .or_else(|| crate::query_param(req.uri().query(), "key").map(|k| format!("Bearer {k}")));
    match sec.api_call(presented.as_deref()) {
        Ok(_) => next.run(req).await,
        Err(r) => refusal(r).into_response(),
    }
}

/// Whether a `Content-Type` value is JSON (`application/json`, any
/// parameters, any case).
fn is_json(content_type: Option<&str>) -> bool {
    content_type.is_some_and(|ct| {
        ct.split(';')
            .next()
            .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"))
    })
}

/// Middleware: JSON-bodied calls must say they are JSON.
pub async fn require_json(req: Request, next: Next) -> Response {
    if is_json(header_str(req.headers(), header::CONTENT_TYPE)) {
        return next.run(req).await;
    }
    ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ErrorCode::UnsupportedMediaType,
        "the body must be JSON with Content-Type: application/json",
    )
    .into_response()
}

/// Methods and headers a browser page on an allowed origin may use.
const ALLOWED_METHODS: &str = "GET, POST, DELETE";
const ALLOWED_HEADERS: &str = "authorization, content-type";

/// Middleware over the whole router: CORS for configured origins only.
pub async fn cors(State(sec): State<Arc<Security>>, req: Request, next: Next) -> Response {
    let origin = header_str(req.headers(), header::ORIGIN).map(str::to_owned);
    let allowed = sec.origins.cors(origin.as_deref());
    let preflight = req.method() == Method::OPTIONS
        && req
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    let mut resp = match (&allowed, preflight) {
        (Some(_), true) => {
            let mut r = StatusCode::NO_CONTENT.into_response();
            let h = r.headers_mut();
            h.insert(
                header::ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static(ALLOWED_METHODS),
            );
            h.insert(
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                HeaderValue::from_static(ALLOWED_HEADERS),
            );
            h.insert(
                header::ACCESS_CONTROL_MAX_AGE,
                HeaderValue::from_static("600"),
            );
            r
        }
        _ => next.run(req).await,
    };
    if sec.origins.is_configured() {
        // Answers differ by Origin: caches must keep them apart.
        resp.headers_mut()
            .append(header::VARY, HeaderValue::from_static("origin"));
    }
    if let Some(value) = allowed.and_then(|o| HeaderValue::from_str(&o).ok()) {
        resp.headers_mut()
            .insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::body::Body;
    use axum::middleware::{from_fn, from_fn_with_state};
    use axum::routing::post;
    use tower::ServiceExt;
    use wsring_auth::AuthSettings;

    fn security(keys: &[&str], origins: &[&str]) -> Arc<Security> {
        Arc::new(
            AuthSettings {
                api_key: keys.iter().map(|k| k.to_string()).collect(),
                allowed_origins: origins.iter().map(|o| o.to_string()).collect(),
                insecure_no_auth: true,
                ..Default::default()
            }
            .build(true)
            .expect("settings"),
        )
    }

    fn app(sec: Arc<Security>) -> Router {
        Router::new()
            .route("/api/send", post(|| async { "ok" }))
            .route_layer(from_fn(require_json))
            .route_layer(from_fn_with_state(Arc::clone(&sec), require_key))
            .layer(from_fn_with_state(sec, cors))
    }

    async fn call(app: &Router, req: Request<Body>) -> Response {
        app.clone().oneshot(req).await.expect("infallible")
    }

    fn post_req(ct: Option<&str>, auth: Option<&str>, origin: Option<&str>) -> Request<Body> {
        let mut b = Request::post("/api/send");
        if let Some(ct) = ct {
            b = b.header(header::CONTENT_TYPE, ct);
        }
        if let Some(a) = auth {
            b = b.header(header::AUTHORIZATION, a);
        }
        if let Some(o) = origin {
            b = b.header(header::ORIGIN, o);
        }
        b.body(Body::from("{}")).expect("request")
    }

    #[tokio::test]
    async fn key_then_json() {
        let app = app(security(&["k1"], &[]));
        let r = call(&app, post_req(Some("application/json"), None, None)).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(r.headers()[header::WWW_AUTHENTICATE], "Bearer");
        let r = call(&app, post_req(Some("text/plain"), Some("Bearer k1"), None)).await;
        assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
        let r = call(&app, post_req(None, Some("Bearer k1"), None)).await;
        assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
        let ok = Some("Application/JSON; charset=utf-8");
        let r = call(&app, post_req(ok, Some("Bearer k1"), None)).await;
        assert_eq!(r.status(), StatusCode::OK);
        // No origins configured: no CORS header, even for a browser.
        let r = call(
            &app,
            post_req(ok, Some("Bearer k1"), Some("https://a.example")),
        )
        .await;
        assert!(
            r.headers()
                .get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
                .is_none()
        );
    }

    #[tokio::test]
    async fn cors_only_for_configured_origins() {
        let app = app(security(&["k1"], &["https://app.example"]));
        let preflight = |origin: &str| {
            Request::options("/api/send")
                .header(header::ORIGIN, origin)
                .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
                .body(Body::empty())
                .expect("request")
        };
        let r = call(&app, preflight("https://app.example")).await;
        assert_eq!(r.status(), StatusCode::NO_CONTENT);
        assert_eq!(
            r.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN],
            "https://app.example"
        );
        assert!(
            r.headers()[header::ACCESS_CONTROL_ALLOW_HEADERS]
                .to_str()
                .expect("text")
                .contains("authorization")
        );
        let r = call(&app, preflight("https://evil.example")).await;
        assert_ne!(r.status(), StatusCode::NO_CONTENT);
        assert!(
            r.headers()
                .get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
                .is_none()
        );
        let json = Some("application/json");
        let r = call(
            &app,
            post_req(json, Some("Bearer k1"), Some("https://app.example")),
        )
        .await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(
            r.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN],
            "https://app.example"
        );
    }
}
