//! The dev-mode control surface: something that can start and stop nodes.
//! `wsring dev` implements it (in-process nodes, or child processes with
//! `--cluster`); a production gateway has none, and the node-control routes
//! answer 501 `not_supported`.

use async_trait::async_trait;
use thiserror::Error;

/// How to remove a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoveMode {
    /// Deregister, move sessions with 1012, stop (SIGTERM for processes).
    Drain,
    /// Vanish without a goodbye (SIGKILL for processes).
    Crash,
}

impl std::str::FromStr for RemoveMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "drain" => Ok(RemoveMode::Drain),
            "crash" => Ok(RemoveMode::Crash),
            other => Err(format!("mode must be drain or crash, got {other:?}")),
        }
    }
}

/// A node the launcher started.
#[derive(Debug, Clone)]
pub struct Launched {
    /// Its id.
    pub id: String,
    /// Its `/ws` URL.
    pub url: String,
}

/// Why a launcher operation failed.
#[derive(Debug, Error)]
pub enum LaunchError {
    /// No node with that id is managed by this launcher.
    #[error("no node {0:?} is managed by this launcher")]
    NotFound(String),
    /// Starting or stopping failed.
    #[error("{0}")]
    Failed(String),
}

/// Starts and stops nodes on request.
#[async_trait]
pub trait Launcher: Send + Sync + 'static {
    /// Starts a new node and returns once it is serving and on the ring.
    async fn add(&self) -> Result<Launched, LaunchError>;
    /// Starts removing a node; returns once removal has begun.
    async fn remove(&self, id: &str, mode: RemoveMode) -> Result<(), LaunchError>;
}
