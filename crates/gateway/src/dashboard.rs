//! The browser dashboard, embedded in the binary: `GET /` and its static
//! assets, served from memory so `wsring dev` needs no Node toolchain.

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use std::sync::Arc;

use crate::Gateway;

const INDEX: &str = include_str!("../dashboard/index.html");

pub(crate) fn routes() -> Router<Arc<Gateway>> {
    Router::new().route("/", get(index))
}

async fn index() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], INDEX)
}
