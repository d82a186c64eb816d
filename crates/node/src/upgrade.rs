//! The server side of the RFC 6455 opening handshake on hyper's upgrade
//! mechanism, and the socket every session runs on.
//!
//! axum's `WebSocketUpgrade` hands its session a socket built on the raw
//! upgraded connection, with no way to put anything between the two. The
//! node needs one thing there: [`crate::text_guard`], which fails a text
//! message on invalid UTF-8 as soon as the offending bytes arrive rather
//! than when its frame is complete (RFC 6455 §8.1 "fail fast"). So the node
//! checks the handshake itself ([`Upgrade`]), answers 101, and builds the
//! session's [`Socket`] — tungstenite over the guarded connection — in
//! [`Upgrade::on_upgrade`]; everything after that is tungstenite, as with
//! axum.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::TokioIo;
use std::future::Future;
use tungstenite::protocol::WebSocketConfig;

use crate::deflate::{Agreed, DeflateSettings};

/// A session's WebSocket: tungstenite over the guarded upgraded connection.
pub(crate) type Socket = crate::session::Socket<TokioIo<hyper::upgrade::Upgraded>>;

/// A valid WebSocket opening handshake (HTTP/1.1 `GET` with `Upgrade:
/// websocket`), not yet answered.
pub(crate) struct Upgrade {
    key: HeaderValue,
    on_upgrade: hyper::upgrade::OnUpgrade,
    /// The client's `Sec-WebSocket-Extensions` values, in order.
    extensions: Vec<HeaderValue>,
    /// permessage-deflate as agreed by [`Upgrade::deflate`], with the
    /// response's header value.
    deflate: Option<(Agreed, HeaderValue)>,
}

/// Why a request is not a WebSocket opening handshake: the HTTP status and
/// what is wrong, for the caller's JSON error body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NotUpgrade {
    pub status: StatusCode,
    pub reason: &'static str,
}

impl NotUpgrade {
    const fn new(status: StatusCode, reason: &'static str) -> NotUpgrade {
        NotUpgrade { status, reason }
    }
}

/// Whether the comma-separated `name` header lists `token` (any case).
fn lists_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Whether the `name` header is exactly `value` (any case).
fn is(headers: &HeaderMap, name: header::HeaderName, value: &str) -> bool {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case(value))
}

impl Upgrade {
    /// Checks the handshake of RFC 6455 §4.2.1 and takes hyper's upgrade
    /// handle out of the request.
    pub(crate) fn from_parts(parts: &mut Parts) -> Result<Upgrade, NotUpgrade> {
        if parts.method != Method::GET {
            return Err(NotUpgrade::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "the request method must be GET",
            ));
        }
        if !lists_token(&parts.headers, header::CONNECTION, "upgrade") {
            return Err(NotUpgrade::new(
                StatusCode::BAD_REQUEST,
                "the Connection header must include `upgrade`",
            ));
        }
        if !is(&parts.headers, header::UPGRADE, "websocket") {
            return Err(NotUpgrade::new(
                StatusCode::BAD_REQUEST,
                "the Upgrade header must be `websocket`",
            ));
        }
        if !is(&parts.headers, header::SEC_WEBSOCKET_VERSION, "13") {
            return Err(NotUpgrade::new(
                StatusCode::BAD_REQUEST,
                "the Sec-WebSocket-Version header must be `13`",
            ));
        }
        let key = parts
            .headers
            .get(header::SEC_WEBSOCKET_KEY)
            .cloned()
            .ok_or(NotUpgrade::new(
                StatusCode::BAD_REQUEST,
                "the Sec-WebSocket-Key header is missing",
            ))?;
        let on_upgrade = parts
            .extensions
            .remove::<hyper::upgrade::OnUpgrade>()
            .ok_or(NotUpgrade::new(
                StatusCode::UPGRADE_REQUIRED,
                "this connection cannot be upgraded",
            ))?;
        let extensions = parts
            .headers
            .get_all(header::SEC_WEBSOCKET_EXTENSIONS)
            .iter()
            .cloned()
            .collect();
        Ok(Upgrade {
            key,
            on_upgrade,
            extensions,
            deflate: None,
        })
    }

    /// Negotiates permessage-deflate from the client's offers
    /// ([`crate::deflate::negotiate`]): every endpoint that upgrades calls
    /// this before [`Upgrade::on_upgrade`]. Without it no extension is
    /// accepted.
    pub(crate) fn deflate(mut self, settings: &DeflateSettings) -> Upgrade {
        let offers = self.extensions.iter().filter_map(|v| v.to_str().ok());
        self.deflate = crate::deflate::negotiate(offers, settings)
            .and_then(|(agreed, answer)| Some((agreed, HeaderValue::from_str(&answer).ok()?)));
        self.extensions = Vec::new();
        self
    }

    /// Answers 101 and runs `session` on the socket once hyper hands the
    /// connection over (in a task of its own, as the response must go out
    /// first). `max` is the message limit in bytes.
    pub(crate) fn on_upgrade<F, Fut>(self, max: usize, session: F) -> Response
    where
        F: FnOnce(Socket) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let accept = tungstenite::handshake::derive_accept_key(self.key.as_bytes());
        let config = config(max);
        let on_upgrade = self.on_upgrade;
        let (agreed, answer) = self.deflate.unzip();
        tokio::spawn(async move {
            let Ok(upgraded) = on_upgrade.await else {
                // The client went away before the switch: no session.
                return;
            };
            // A task of its own, sized for the session alone and not for
            // this wait too: it lasts as long as the connection.
            tokio::spawn(session(Socket::with_deflate(
                TokioIo::new(upgraded),
                config,
                agreed,
            )));
        });
        let mut response = StatusCode::SWITCHING_PROTOCOLS.into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        if let Ok(accept) = HeaderValue::from_str(&accept) {
            headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
        }
        if let Some(answer) = answer {
            headers.insert(header::SEC_WEBSOCKET_EXTENSIONS, answer);
        }
        response
    }
}

impl IntoResponse for NotUpgrade {
    fn into_response(self) -> Response {
        crate::error::ApiError::new(
            self.status,
            wsring_protocol::ErrorCode::BadRequest,
            format!("not a WebSocket upgrade: {}", self.reason),
        )
        .into_response()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Upgrade {
    type Rejection = NotUpgrade;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Upgrade::from_parts(parts)
    }
}

/// The WebSocket settings of every session, for a message limit of `max`
/// bytes.
pub(crate) fn config(max: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        // tungstenite's default 128 KiB read buffer is zero-filled before
        // every read; 8 KiB cut server CPU per message by about a third and
        // memory per idle session by ~120 KiB (tools/ws-shootout/RESULTS.md).
        .read_buffer_size(8 * 1024)
        // Flush small, and never let one socket's write buffer grow past a
        // fixed bound behind a peer that does not read: the per-session byte
        // budget bounds what waits before it.
        .write_buffer_size(crate::config::WRITE_BUFFER)
        .max_write_buffer_size(crate::config::WRITE_BUFFER_MAX + max.saturating_mul(2))
        // Frames up to twice the message limit are read whole before being
        // refused, so the 1009 close is not followed by a TCP reset caused by
        // unread data; larger frames are cut off at the header.
        .max_frame_size(Some(max.saturating_mul(2).max(64 * 1024)))
        .max_message_size(Some(max))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Request;

    fn parts(method: Method, headers: &[(&str, &str)]) -> Parts {
        let mut req = Request::builder().method(method).uri("/ws");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.body(()).expect("request").into_parts().0
    }

    const GOOD: [(&str, &str); 4] = [
        ("connection", "keep-alive, Upgrade"),
        ("upgrade", "WebSocket"),
        ("sec-websocket-version", "13"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ];

    #[test]
    fn each_missing_handshake_header_is_named() {
        for (i, (name, _)) in GOOD.iter().enumerate() {
            let mut headers = GOOD.to_vec();
            headers.remove(i);
            let err = Upgrade::from_parts(&mut parts(Method::GET, &headers))
                .err()
                .expect("refused");
            assert_eq!(err.status, StatusCode::BAD_REQUEST, "{name}");
            let header_name = match *name {
                "sec-websocket-version" => "Sec-WebSocket-Version",
                "sec-websocket-key" => "Sec-WebSocket-Key",
                "connection" => "Connection",
                _ => "Upgrade",
            };
            assert!(err.reason.contains(header_name), "{name}: {}", err.reason);
        }
    }

    #[test]
    fn only_get_upgrades() {
        let err = Upgrade::from_parts(&mut parts(Method::POST, &GOOD))
            .err()
            .expect("refused");
        assert_eq!(err.status, StatusCode::METHOD_NOT_ALLOWED);
    }

    #[test]
    fn a_request_hyper_cannot_upgrade_is_426() {
        // A valid handshake without hyper's upgrade handle (here: not served
        // by hyper at all).
        let err = Upgrade::from_parts(&mut parts(Method::GET, &GOOD))
            .err()
            .expect("refused");
        assert_eq!(err.status, StatusCode::UPGRADE_REQUIRED);
    }

    #[test]
    fn wrong_version_is_refused() {
        let mut headers = GOOD.to_vec();
        headers[2] = ("sec-websocket-version", "8");
        let err = Upgrade::from_parts(&mut parts(Method::GET, &headers))
            .err()
            .expect("refused");
        assert_eq!(err.status, StatusCode::BAD_REQUEST);
    }
}
