//! Request bodies of the write endpoints, parsed with JSON errors (axum's
//! default rejections are plain text, which our contract does not allow).

use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use bytes::Bytes;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;
use wsring_protocol::ErrorCode;

use crate::error::ApiError;

/// `POST /api/send`.
#[derive(Debug, Deserialize)]
pub struct SendBody {
    /// Recipient user id.
    pub to: String,
    /// Payload, verbatim.
    pub data: Box<RawValue>,
    /// Optional idempotency key (durable mode deduplicates retries by it).
    pub id: Option<String>,
}

/// `POST /api/publish`.
#[derive(Debug, Deserialize)]
pub struct PublishBody {
    /// Room name.
    pub room: String,
    /// Payload, verbatim.
    pub data: Box<RawValue>,
    /// Optional idempotency key.
    pub id: Option<String>,
}

/// `POST /api/broadcast`.
#[derive(Debug, Deserialize)]
pub struct BroadcastBody {
    /// Payload, verbatim.
    pub data: Box<RawValue>,
}

/// Parses a JSON body, mapping every failure to a JSON 4xx.
pub fn parse<T: DeserializeOwned>(body: Result<Bytes, BytesRejection>) -> Result<T, ApiError> {
    let bytes = body.map_err(|r| {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(r.status(), ErrorCode::PayloadTooLarge, r.body_text())
        } else {
            ApiError::bad_request(r.body_text())
        }
    })?;
    serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
}

/// Checks an optional idempotency key.
pub fn check_id(id: Option<&str>) -> Result<(), ApiError> {
    match id {
        Some(id) if id.is_empty() || id.len() > wsring_protocol::client::MAX_ID_LEN => {
            Err(ApiError::bad_request("`id` must be 1-128 bytes"))
        }
        _ => Ok(()),
    }
}
