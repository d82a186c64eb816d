//! `GET /api/history?user=…|room=…&since=SEQ&limit=N` (durable mode) →
//! `{"user"|"room","epoch","first_seq","last_seq","entries":[{"seq",
//! "message"}]}`: the stored messages of one stream after `since`, oldest
//! first, each `message` exactly the frame a session receives.
//!
//! Bounded twice: at most `limit` entries (1–1000, default 100) and about
//! [`MAX_ANSWER_BYTES`] of messages (always at least one entry); a caller
//! pages on with `since` = the last entry's seq. Without `--durable` there
//! is no history: 409 `not_supported`.

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use serde_json::value::RawValue;
use std::sync::Arc;
use std::time::Duration;
use wsring_cluster::StreamName;
use wsring_http::history_query;
use wsring_protocol::api::{History, HistoryEntry};
use wsring_protocol::{ErrorCode, HistoryStream};

use crate::durable;
use crate::error::ApiError;
use crate::node::Node;

/// Stored message bytes one answer holds at most (past the first entry).
pub(crate) const MAX_ANSWER_BYTES: usize = 1024 * 1024;

/// Entries read from the store per call.
const PAGE: usize = 100;

/// Bound on one store read.
const STORE_TIMEOUT: Duration = Duration::from_secs(5);

pub(super) async fn handle(
    State(node): State<Arc<Node>>,
    RawQuery(q): RawQuery,
) -> Result<Json<History>, ApiError> {
    let query = history_query(q.as_deref())?;
    let Some(store) = node.streams.clone() else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            ErrorCode::NotSupported,
            "history needs durable mode: start the cluster with --durable",
        ));
    };
    let (stream, user, room) = match query.stream {
        HistoryStream::User(u) => (StreamName::User(u.clone()), Some(u), None),
        HistoryStream::Room(r) => (StreamName::Room(r.clone()), None, Some(r)),
    };
    let mut answer = History {
        user,
        room,
        epoch: String::new(),
        first_seq: 0,
        last_seq: 0,
        entries: Vec::new(),
    };
    let mut after = query.since;
    let mut bytes = 0usize;
    loop {
        let want = (query.limit - answer.entries.len()).min(PAGE);
        let read =
            tokio::time::timeout(STORE_TIMEOUT, store.read_after(&stream, after, want)).await;
        let batch = match read {
            Ok(Ok(b)) => b,
            Ok(Err(e)) => return Err(ApiError::unavailable(format!("stream store: {e}"))),
            Err(_) => {
                return Err(ApiError::unavailable(format!(
                    "stream store: no answer within {STORE_TIMEOUT:?}"
                )));
            }
        };
        if answer.epoch.is_empty() {
            answer.epoch = batch.epoch.clone();
        } else if answer.epoch != batch.epoch {
            // The stream was reset while we read: what we have is all of
            // the old epoch this answer can describe.
            break;
        }
        answer.first_seq = batch.first_seq;
        answer.last_seq = batch.last_seq;
        let got = batch.entries.len();
        for (seq, payload) in batch.entries {
            after = seq;
            let message = match durable::render(&payload, seq, &batch.epoch)
                .map_err(|e| e.to_string())
                .and_then(|t| RawValue::from_string(t).map_err(|e| e.to_string()))
            {
                Ok(m) => m,
                Err(e) => {
                    tracing::debug!(seq, error = %e, "skipping an undecodable stored message");
                    continue;
                }
            };
            let len = message.get().len();
            if !answer.entries.is_empty() && bytes + len > MAX_ANSWER_BYTES {
                return Ok(Json(answer));
            }
            bytes += len;
            answer.entries.push(HistoryEntry { seq, message });
        }
        if got < want || answer.entries.len() >= query.limit {
            break;
        }
    }
    Ok(Json(answer))
}
