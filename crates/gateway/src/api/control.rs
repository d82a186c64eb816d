//! Dev-mode node control: `POST /api/nodes` (201 `{"id","url"}`) and
//! `DELETE /api/nodes/{id}?mode=drain|crash` (202). Without a launcher (a
//! production `wsring gateway`) both answer 501 `not_supported`.

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use serde_json::{Value, json};
use std::sync::Arc;
use wsring_http::{ApiError, query_param};
use wsring_protocol::ErrorCode;

use crate::Gateway;
use crate::launcher::{LaunchError, Launcher, RemoveMode};

fn launcher(gw: &Gateway) -> Result<&Arc<dyn Launcher>, ApiError> {
    gw.launcher.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            ErrorCode::NotSupported,
            "node control is only available under `wsring dev`",
        )
    })
}

fn launch_error(e: LaunchError) -> ApiError {
    match e {
        LaunchError::NotFound(_) => ApiError::not_found(e.to_string()),
        LaunchError::Failed(_) => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Internal,
            e.to_string(),
        ),
    }
}

pub(super) async fn add(
    State(gw): State<Arc<Gateway>>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let l = launcher(&gw)?;
    let n = l.add().await.map_err(launch_error)?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "id": n.id, "url": n.url })),
    ))
}

pub(super) async fn remove(
    State(gw): State<Arc<Gateway>>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let l = launcher(&gw)?;
    let mode: RemoveMode = query_param(q.as_deref(), "mode")
        .as_deref()
        .unwrap_or("drain")
        .parse()
        .map_err(ApiError::bad_request)?;
    l.remove(&id, mode).await.map_err(launch_error)?;
    Ok((StatusCode::ACCEPTED, Json(json!({ "ok": true }))))
}
