//! `GET /metrics`: Prometheus text format, from the process-wide
//! `metrics-exporter-prometheus` recorder (series carry a `node` label, so one
//! `wsring dev` process running several nodes exports them all).

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;

/// The process's Prometheus handle, installing the recorder on first use
/// (`None` if another recorder was installed first).
pub fn prometheus_handle() -> Option<&'static PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| PrometheusBuilder::new().install_recorder().ok())
        .as_ref()
}

pub(super) async fn handle() -> String {
    prometheus_handle().map(|h| h.render()).unwrap_or_default()
}
