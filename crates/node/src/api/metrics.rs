//! `GET /metrics`: Prometheus text format, from the process-wide
//! `metrics-exporter-prometheus` recorder (series carry a `node` label, so one
//! `wsring dev` process running several nodes exports them all).
//!
//! Series: `wsring_sessions` (gauge), `wsring_messages_in_total`,
//! `wsring_messages_out_total`, `wsring_sessions_moved_total` (counters),
//! `wsring_ring_epoch`, `wsring_ready` (gauges).

use wsring_http::prometheus_handle;

pub(super) async fn handle(
    axum::extract::State(node): axum::extract::State<std::sync::Arc<crate::Node>>,
) -> String {
    let Some(h) = prometheus_handle() else {
        return String::new();
    };
    // The hot path counts in plain atomics; they are copied into the
    // registry only when scraped.
    let id = node.cfg.id.clone();
    let c = &node.counters;
    let load = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
    metrics::counter!("wsring_messages_in_total", "node" => id.clone()).absolute(load(&c.msgs_in));
    metrics::counter!("wsring_messages_out_total", "node" => id.clone())
        .absolute(load(&c.msgs_out));
    metrics::gauge!("wsring_sessions", "node" => id.clone()).set(node.table.len() as f64);
    metrics::gauge!("wsring_ring_epoch", "node" => id.clone())
        .set(node.membership.view().epoch() as f64);
    metrics::gauge!("wsring_ready", "node" => id).set(if node.ready().is_ok() { 1.0 } else { 0.0 });
    h.render()
}
