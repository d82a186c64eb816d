//! Errors: [`NodeError`] for starting a node and [`RouteError`] for a
//! message the cluster could not accept (answered over HTTP as a 503
//! [`ApiError`], the JSON error type shared with the gateway).

use thiserror::Error;
use wsring_cluster::ClusterError;

pub use wsring_http::ApiError;

/// Why a node could not start.
#[derive(Debug, Error)]
pub enum NodeError {
    /// The node id is not valid.
    #[error("invalid node id: {0}")]
    InvalidId(#[from] wsring_protocol::IdError),
    /// Registry, broker or stream store failed.
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    /// The listener failed.
    #[error("listener: {0}")]
    Io(#[from] std::io::Error),
    /// The HTTP client for peer calls could not be built (TLS backend or
    /// resolver initialisation); a default client would silently drop the
    /// request timeout, so the node refuses to start instead.
    #[error("http client: {0}")]
    HttpClient(#[from] reqwest::Error),
    /// A TLS certificate, key or CA file could not be used.
    #[error(transparent)]
    Tls(#[from] wsring_http::tls::TlsError),
}

/// Why a message was not accepted. Nothing was acknowledged; retrying with the
/// same id is safe (durable appends are deduplicated by id).
#[derive(Debug, Error)]
pub enum RouteError {
    /// The backend could not take the message.
    #[error("cluster unavailable: {0}")]
    Unavailable(ClusterError),
    /// Durable mode: the stream store is at one of its limits. Nothing was
    /// stored; retrying helps only once old entries age out.
    #[error("{0}")]
    StorageFull(ClusterError),
    /// Durable mode: the sender's share of the stream store is used up.
    /// Nothing was stored; others are not affected.
    #[error("{0}")]
    QuotaExceeded(ClusterError),
    /// No node is up to own the recipient.
    #[error("no node is up to own {0:?}")]
    NoOwner(String),
    /// The idempotency id was already used, by this sender, for a different
    /// message. Nothing was sent; retrying will not help.
    #[error("this id was already used for a different message")]
    Conflict,
}

impl From<ClusterError> for RouteError {
    fn from(e: ClusterError) -> Self {
        match e {
            e @ ClusterError::StorageFull { .. } => {
                storage_full_warning(&e);
                RouteError::StorageFull(e)
            }
            e @ ClusterError::QuotaExceeded { .. } => {
                // One sender's business, not the operator's: counted, not
                // logged.
                metrics::counter!("wsring_quota_exceeded_total").increment(1);
                RouteError::QuotaExceeded(e)
            }
            e => RouteError::Unavailable(e),
        }
    }
}

/// Logs a full stream store at most once a minute (per process): under a
/// flood every append is refused, and one line per refusal would bury the
/// log. Each refusal is counted in `wsring_storage_full_total`.
fn storage_full_warning(e: &ClusterError) {
    use std::sync::atomic::{AtomicU64, Ordering};
    static LAST_WARN_SECS: AtomicU64 = AtomicU64::new(0);
    metrics::counter!("wsring_storage_full_total").increment(1);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let last = LAST_WARN_SECS.load(Ordering::Relaxed);
    if now >= last + 60
        && LAST_WARN_SECS
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        tracing::warn!(error = %e, "durable storage full: appends are refused until entries age out (logged at most once a minute; see wsring_storage_full_total)");
    }
}

impl From<RouteError> for ApiError {
    /// A conflict is 409 `conflict`, a full stream store 507
    /// `storage_full`, a used-up sender share 507 `quota_exceeded`; anything
    /// else was not accepted and may be retried:
    /// 503 `unavailable`.
    fn from(e: RouteError) -> Self {
        match e {
            RouteError::Conflict => ApiError::new(
                axum::http::StatusCode::CONFLICT,
                wsring_protocol::ErrorCode::Conflict,
                e.to_string(),
            ),
            RouteError::StorageFull(_) => ApiError::new(
                axum::http::StatusCode::INSUFFICIENT_STORAGE,
                wsring_protocol::ErrorCode::StorageFull,
                e.to_string(),
            ),
            RouteError::QuotaExceeded(_) => ApiError::new(
                axum::http::StatusCode::INSUFFICIENT_STORAGE,
                wsring_protocol::ErrorCode::QuotaExceeded,
                e.to_string(),
            ),
            e => ApiError::unavailable(e.to_string()),
        }
    }
}
