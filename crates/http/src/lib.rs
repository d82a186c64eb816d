//! HTTP plumbing shared by the two server roles of wsring, nodes and
//! gateways. They serve the same HTTP contract (`docs/PROTOCOL.md`) but are
//! siblings that never import each other, so what both need lives here:
//!
//! * [`error`] — [`ApiError`], the JSON error answer
//!   `{"error":{"code":..,"message":..}}`.
//! * [`serve`] — the accept loop, which a crash or drain can cut at once,
//!   with a connection cap and a header-read timeout.
//! * [`fallback`] — the JSON 404 and 405 answers for unknown routes.
//! * [`request`] — query parameters, and JSON bodies with JSON rejections.
//! * [`peers`] — concurrent GETs to other cluster members, each bounded by a
//!   timeout (the transport of presence queries).
//! * [`metrics`] — the process-wide Prometheus exporter handle.
//! * [`guard`] — API keys, JSON-only bodies and CORS, as middleware.
//! * [`connect`] — the connect decision with a connect proxy: what to ask
//!   the application, and how its answer reads.
//! * [`tls`] — TLS on listeners, and for connections to other processes.
//!
//! Nothing here knows about sessions, membership or backends.

pub mod body;
pub mod connect;
pub mod error;
pub mod fallback;
pub mod guard;
pub mod metrics;
pub mod peers;
pub mod request;
pub mod serve;
pub mod tls;

pub use connect::{Admission, ConnectRequest, admission, answered, proxy_outcome};
pub use error::ApiError;
pub use fallback::{method_not_allowed, not_found};
pub use guard::{
    admit, cors, header_str, refusal, require_json, require_key, require_key_or_query,
};
pub use metrics::prometheus_handle;
pub use request::{history_query, parse_body, query_param, rejection};
pub use serve::{ServeLimits, serve, serve_with};
