//! A backend as one pluggable unit: which URLs it takes, which of the five
//! parts (registry, broker, stream store, server-side rooms, webhook
//! queues) it can serve,
//! and how it connects each.
//!
//! Each backend crate exports one type implementing [`Backend`]; the binary
//! keeps one list of them (one entry per cargo feature) and picks the first
//! that [`accepts`](Backend::accepts) a URL and [`serves`](Backend::serves)
//! the part asked for. Adding a backend is then one type and one list entry,
//! with no scheme matching anywhere else.

use async_trait::async_trait;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::{
    Broker, ClusterError, HookQueue, Inbox, Registry, Retention, ServerRooms, StreamStore,
};

/// One of the things a process connects to a backend for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Part {
    /// The membership registry ([`Registry`]).
    Registry,
    /// The message broker ([`Broker`]).
    Broker,
    /// The durable stream store ([`StreamStore`]).
    Streams,
    /// The server-side room store ([`ServerRooms`]).
    ServerRooms,
    /// The durable webhook queues ([`HookQueue`]).
    HookQueue,
}

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Part::Registry => "registry",
            Part::Broker => "broker",
            Part::Streams => "stream store",
            Part::ServerRooms => "server-side room store",
            Part::HookQueue => "webhook queue store",
        })
    }
}

/// A cluster backend: the URLs it takes and the parts it builds from them.
///
/// A part the backend does not [`serve`](Backend::serves) keeps the provided
/// method, which refuses the URL; RabbitMQ, for one, is a broker only.
#[async_trait]
pub trait Backend: Send + Sync {
    /// The backend's name, which is also the binary's cargo feature that
    /// compiles it in (`redis`, `nats`, `amqp`).
    fn name(&self) -> &'static str;

    /// Whether `url` is one of this backend's URLs (by its scheme).
    fn accepts(&self, url: &str) -> bool;

    /// Whether this backend can serve `part`; every part unless overridden.
    fn serves(&self, part: Part) -> bool {
        let _ = part;
        true
    }

    /// Connects the membership registry of `namespace`; `ttl` is the
    /// heartbeat lifetime (backends whose heartbeats carry their own expiry
    /// may ignore it).
    async fn registry(
        &self,
        url: &str,
        namespace: &str,
        ttl: Duration,
    ) -> Result<Arc<dyn Registry>, ClusterError> {
        let _ = (namespace, ttl);
        Err(self.not_served(url, Part::Registry))
    }

    /// Connects node `node`'s broker in `namespace`, with its inbox.
    async fn broker(
        &self,
        url: &str,
        namespace: &str,
        node: &str,
    ) -> Result<(Arc<dyn Broker>, Inbox), ClusterError> {
        let _ = (namespace, node);
        Err(self.not_served(url, Part::Broker))
    }

    /// Connects the durable stream store of `namespace`, with `retention`
    /// applied to every stream.
    async fn streams(
        &self,
        url: &str,
        namespace: &str,
        retention: Retention,
    ) -> Result<Arc<dyn StreamStore>, ClusterError> {
        let _ = (namespace, retention);
        Err(self.not_served(url, Part::Streams))
    }

    /// Connects the server-side room store of `namespace`.
    async fn server_rooms(
        &self,
        url: &str,
        namespace: &str,
    ) -> Result<Arc<dyn ServerRooms>, ClusterError> {
        let _ = namespace;
        Err(self.not_served(url, Part::ServerRooms))
    }

    /// Connects the durable webhook queue store of `namespace`.
    async fn hook_queue(
        &self,
        url: &str,
        namespace: &str,
    ) -> Result<Arc<dyn HookQueue>, ClusterError> {
        let _ = namespace;
        Err(self.not_served(url, Part::HookQueue))
    }

    /// The error for a part this backend does not serve.
    fn not_served(&self, url: &str, part: Part) -> ClusterError {
        ClusterError::InvalidUrl {
            url: url.to_owned(),
            reason: format!("the {} backend cannot serve as {part}", self.name()),
        }
    }
}

/// The first backend in `backends` that accepts `url` and serves `part`.
pub fn find<'a>(backends: &[&'a dyn Backend], url: &str, part: Part) -> Option<&'a dyn Backend> {
    backends
        .iter()
        .copied()
        .find(|b| b.accepts(url) && b.serves(part))
}

#[cfg(test)]
mod tests {
    use super::*;

    struct BrokerOnly;

    impl Backend for BrokerOnly {
        fn name(&self) -> &'static str {
            "only"
        }
        fn accepts(&self, url: &str) -> bool {
            url.starts_with("only://")
        }
        fn serves(&self, part: Part) -> bool {
            part == Part::Broker
        }
    }

    struct Everything;

    impl Backend for Everything {
        fn name(&self) -> &'static str {
            "all"
        }
        fn accepts(&self, url: &str) -> bool {
            url.starts_with("only://") || url.starts_with("all://")
        }
    }

    #[test]
    fn find_skips_backends_that_do_not_serve_the_part() {
        let list: [&dyn Backend; 2] = [&BrokerOnly, &Everything];
        let name = |url, part| find(&list, url, part).map(|b| b.name());
        assert_eq!(name("only://x", Part::Broker), Some("only"));
        assert_eq!(name("only://x", Part::Registry), Some("all"));
        assert_eq!(name("all://x", Part::Streams), Some("all"));
        assert_eq!(name("none://x", Part::Broker), None);
    }

    #[tokio::test]
    async fn an_unserved_part_is_refused_with_the_backend_named() {
        let Err(e) = BrokerOnly
            .registry("only://x", "ns", Duration::from_secs(1))
            .await
        else {
            panic!("a broker-only backend built a registry");
        };
        assert!(
            e.to_string()
                .contains("the only backend cannot serve as registry"),
            "{e}"
        );
    }
}
