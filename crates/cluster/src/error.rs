//! The error type shared by all backend traits. Backends wrap their client
//! library's errors in [`ClusterError::Unavailable`] (transient: retry with
//! backoff) or [`ClusterError::Backend`] (unexpected: a bug or misconfiguration).

use thiserror::Error;

/// A boxed error from a backend client library.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What can go wrong talking to a cluster backend.
#[derive(Debug, Error)]
pub enum ClusterError {
    /// The backend cannot be reached right now; callers retry with backoff.
    // The source's text is part of the message, so it is deliberately not
    // also exposed as `source()`: error chains would print it twice.
    #[error("backend unavailable: {0}")]
    Unavailable(BoxError),
    /// The backend answered something unexpected.
    #[error("backend error: {0}")]
    Backend(BoxError),
    /// A backend URL that cannot be used.
    #[error("invalid backend URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A namespace that cannot prefix keys, subjects, exchanges and queues.
    #[error("invalid namespace {0:?}: use 1-64 characters from [A-Za-z0-9_-]")]
    InvalidNamespace(String),
    /// Another live node already holds this node id.
    #[error("node id {0:?} is already held by a live node")]
    NodeIdTaken(String),
    /// Stored data could not be decoded (written by an incompatible version?).
    #[error("corrupt {what} in backend: {source}")]
    Corrupt {
        /// Which record.
        what: &'static str,
        /// The decoding error.
        #[source]
        source: serde_json::Error,
    },
    /// Compare-and-set kept losing races; the registry is overloaded.
    #[error("membership update did not converge after {0} attempts")]
    Contention(u32),
    /// The handle was closed.
    #[error("backend handle closed")]
    Closed,
    /// A durable store limit (see [`crate::Retention`]) refused an append;
    /// nothing was stored. Retrying helps only once old entries age out.
    #[error("durable storage is full: the {limit} limit of {max} is reached")]
    StorageFull {
        /// Which limit.
        limit: crate::stream::StoreLimit,
        /// Its configured value.
        max: u64,
    },
    /// The sender's share of the durable store
    /// ([`crate::Retention::max_user_bytes`]) is used up; nothing was
    /// stored. Other senders are not affected; retrying helps only once
    /// this sender's entries age out or are trimmed.
    #[error("this sender's share of durable storage ({max} bytes) is used up")]
    QuotaExceeded {
        /// The quota in bytes.
        max: u64,
    },
}

impl ClusterError {
    /// Wraps a transient connection-level error.
    pub fn unavailable(e: impl Into<BoxError>) -> Self {
        ClusterError::Unavailable(e.into())
    }

    /// Wraps an unexpected backend error.
    pub fn backend(e: impl Into<BoxError>) -> Self {
        ClusterError::Backend(e.into())
    }
}
