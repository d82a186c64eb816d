//! Client errors.

use thiserror::Error;

/// What can go wrong for a client call.
#[derive(Debug, Error)]
pub enum ClientError {
    /// The server refused the connect request (HTTP status and JSON body);
    /// e.g. 401 for a bad token, 400 for an invalid user id. Not retried.
    /// Shown as the server's `code: message` (`unauthorized: token
    /// expired`) with the status.
    #[error("{} (connect refused with HTTP {status})", reason(body))]
    Refused {
        /// HTTP status.
        status: u16,
        /// The error body.
        body: String,
    },
    /// The server rejected a request (`error` frame), e.g. `bad_request`.
    #[error("{code}: {message}")]
    Server {
        /// Machine-readable code.
        code: String,
        /// Human-readable text.
        message: String,
    },
    /// Not acknowledged (or not connected) within the configured timeout.
    #[error("timed out")]
    Timeout,
    /// The client was closed.
    #[error("client closed")]
    Closed,
    /// The payload could not be encoded as JSON.
    #[error("cannot encode payload: {0}")]
    Encode(serde_json::Error),
}

impl ClientError {
    /// For [`ClientError::Refused`] and [`ClientError::Server`]: the
    /// server's error code (`unauthorized`, `forbidden`, `bad_request`, …).
    pub fn code(&self) -> Option<String> {
        match self {
            ClientError::Refused { body, .. } => error_field(body, "code"),
            ClientError::Server { code, .. } => Some(code.clone()),
            _ => None,
        }
    }
}

/// A field of the `error` object of a JSON error body.
fn error_field(body: &str, field: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    v.get("error")?.get(field)?.as_str().map(str::to_owned)
}

/// A refusal's `code: message`, or the body as it came when it is not the
/// server's JSON error.
fn reason(body: &str) -> String {
    match (error_field(body, "code"), error_field(body, "message")) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        _ if body.trim().is_empty() => "refused".to_owned(),
        _ => body.trim().to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_reads_as_the_servers_code_and_message() {
        let e = ClientError::Refused {
            status: 401,
            body: r#"{"error":{"code":"unauthorized","message":"token expired"}}"#.into(),
        };
        assert_eq!(
            e.to_string(),
            "unauthorized: token expired (connect refused with HTTP 401)"
        );
        assert_eq!(e.code().as_deref(), Some("unauthorized"));
        let e = ClientError::Refused {
            status: 403,
            body: String::new(),
        };
        assert_eq!(e.to_string(), "refused (connect refused with HTTP 403)");
    }
}
