//! Connection health of one backend link, and the reconnect counter every
//! backend reports through.
//!
//! A healthy cluster never reconnects: a reconnect means a connection was lost
//! (a server restart, a network cut, a keep-alive that failed) and whatever
//! was in flight on it may be gone. So every backend counts them in one
//! series, `wsring_backend_reconnects_total{backend,kind}`, registered at zero
//! when the link is created so that "no reconnects" is an explicit `0`, not
//! a missing line.

use std::sync::atomic::{AtomicBool, Ordering};

use crate::error::ClusterError;

/// The Prometheus name of the reconnect counter.
pub const RECONNECTS_METRIC: &str = "wsring_backend_reconnects_total";

/// The health of one backend connection (or pool) of one role.
#[derive(Debug)]
pub struct Link {
    backend: &'static str,
    kind: &'static str,
    down: AtomicBool,
}

impl Link {
    /// A link of `backend` (`redis`, `nats`, `amqp`, `memory`) serving `kind`
    /// (`registry`, `broker`, `streams`, …). Registers its counter at zero.
    pub fn new(backend: &'static str, kind: &'static str) -> Link {
        metrics::counter!(RECONNECTS_METRIC, "backend" => backend, "kind" => kind).increment(0);
        Link {
            backend,
            kind,
            down: AtomicBool::new(false),
        }
    }

    /// The connection was lost: counts one reconnect, once per outage.
    /// Returns whether this call started the outage.
    pub fn lost(&self) -> bool {
        let first = !self.down.swap(true, Ordering::SeqCst);
        if first {
            metrics::counter!(RECONNECTS_METRIC, "backend" => self.backend, "kind" => self.kind)
                .increment(1);
        }
        first
    }

    /// The connection works (again). Returns whether it had been down.
    pub fn ok(&self) -> bool {
        self.down.swap(false, Ordering::SeqCst)
    }

    /// Whether the link is currently considered up.
    pub fn is_up(&self) -> bool {
        !self.down.load(Ordering::SeqCst)
    }

    /// Passes `r` through, noting a connection-level failure
    /// ([`ClusterError::Unavailable`]) as a lost link and a success as a
    /// working one. Other errors say nothing about the connection.
    pub fn track<T>(&self, r: Result<T, ClusterError>) -> Result<T, ClusterError> {
        match &r {
            Ok(_) => {
                self.ok();
            }
            Err(ClusterError::Unavailable(_)) => {
                self.lost();
            }
            Err(_) => {}
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_count_per_outage() {
        let link = Link::new("memory", "test");
        assert!(link.is_up());
        assert!(link.lost());
        assert!(
            !link.lost(),
            "a second failure in the same outage is not a new reconnect"
        );
        assert!(!link.is_up());
        assert!(link.ok());
        assert!(!link.ok());
        let r: Result<(), _> = link.track(Err(ClusterError::unavailable("cut")));
        assert!(r.is_err());
        assert!(!link.is_up());
        let _ = link.track(Ok::<(), ClusterError>(()));
        assert!(link.is_up());
        let _ = link.track::<()>(Err(ClusterError::Closed));
        assert!(link.is_up(), "non-connection errors leave the link alone");
    }
}
