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
}

/// Why a message was not accepted. Nothing was acknowledged; retrying with the
/// same id is safe (durable appends are deduplicated by id).
#[derive(Debug, Error)]
pub enum RouteError {
    /// The backend could not take the message.
    #[error("cluster unavailable: {0}")]
    Unavailable(#[from] ClusterError),
    /// No node is up to own the recipient.
    #[error("no node is up to own {0:?}")]
    NoOwner(String),
    /// The idempotency id was already used, by this sender, for a different
    /// message. Nothing was sent; retrying will not help.
    #[error("this id was already used for a different message")]
    Conflict,
}

impl From<RouteError> for ApiError {
    /// A conflict is 409 `conflict`; anything else was not accepted and may
    /// be retried: 503 `unavailable`.
    fn from(e: RouteError) -> Self {
        match e {
            RouteError::Conflict => ApiError::new(
                axum::http::StatusCode::CONFLICT,
                wsring_protocol::ErrorCode::Conflict,
                e.to_string(),
            ),
            e => ApiError::unavailable(e.to_string()),
        }
    }
}
