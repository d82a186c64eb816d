//! Client errors.

use thiserror::Error;

/// What can go wrong for a client call.
#[derive(Debug, Error)]
pub enum ClientError {
    /// The server refused the connect request (HTTP status and JSON body);
    /// e.g. 400 for an invalid user id. Not retried.
    #[error("connect refused with HTTP {status}: {body}")]
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
