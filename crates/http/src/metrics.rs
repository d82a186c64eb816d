//! The process's Prometheus exporter. One recorder serves every role in the
//! process (series carry a `node` label, so one `wsring dev` process running
//! several nodes and a gateway exports them all from any `/metrics`).

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
