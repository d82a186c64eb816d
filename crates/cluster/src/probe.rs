//! Direct probes of members: ask a member before burying it.
//!
//! An expired heartbeat says the registry has not heard from a node; it does
//! not say the node is dead (the registry may be unreachable from that node
//! alone). A connect to its address says more, and says it at once:
//! * **refused**: the host is up and nothing listens on the port any more;
//!   the process is gone, so the member can be removed now;
//! * **answered** with the member's incarnation: the process is alive and
//!   serving, whatever its heartbeat says, so it is kept;
//! * anything else (a timeout, an answer without the incarnation): no
//!   conclusion, and the heartbeat TTL decides, as it always did.
//!
//! What makes a process probe a member (see [`crate::membership`]):
//! * a **suspicion**, raised by what a process sees of a member's
//!   connections ([`Suspicion`]): a gateway's tunnel to a node reset, or a
//!   connect to its advertised address refused; or, in the reap pass, a
//!   member late with its heartbeat that holds no connection to the
//!   registry any more ([`crate::Registry::disconnected`], Redis only);
//! * an expired heartbeat, in the reap pass.
//!
//! The cost is bounded by design: only suspects and members with expired
//! heartbeats are probed (a suspect twice, 100 ms apart, when the first
//! probe is inconclusive), at most one probe per member at a time, at most
//! [`MAX_PROBES_IN_FLIGHT`] per process, each bounded by the probe timeout;
//! weak suspicions of a member probed less than [`WEAK_COOLDOWN`] ago are
//! postponed to one probe at the end of the cooldown.

use futures::future::BoxFuture;
use std::sync::Arc;
use std::time::Duration;

/// What a direct probe of a member found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// The connect was refused: nothing listens at the member's address.
    Refused,
    /// The member's process answered, reporting this incarnation.
    Answered(u64),
    /// No conclusion: a timeout, an error, or an answer without an
    /// incarnation (a process not joined yet, or an older version).
    Unconfirmed,
}

/// Probes the member whose advertised WebSocket URL is the first argument,
/// within the timeout given as the second.
pub type Prober = Arc<dyn Fn(String, Duration) -> BoxFuture<'static, Probe> + Send + Sync>;

/// Why a process suspects a member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Suspicion {
    /// A connect to the member was refused: always probed (unless a probe
    /// of it is already running).
    Strong,
    /// A connection to the member ended from its side or failed, as
    /// connections also do in normal operation: probed at most once per
    /// [`WEAK_COOLDOWN`] (a sign during the cooldown is probed at its end).
    Weak,
}

/// Most probes one process runs at once; further suspicions wait for the
/// heartbeat TTL.
pub const MAX_PROBES_IN_FLIGHT: usize = 8;

/// A weak suspicion of a member probed less than this ago waits for the
/// end of this cooldown to have it probed again.
pub const WEAK_COOLDOWN: Duration = Duration::from_secs(1);

/// The default prober, for processes that serve no HTTP client: a TCP
/// connect to the member's address. It can prove death (refused), never
/// life (a listener backlog accepts for a stopped process too).
pub fn tcp_prober() -> Prober {
    Arc::new(|url: String, limit: Duration| {
        Box::pin(async move {
            let Some(addr) = authority_of(&url) else {
                return Probe::Unconfirmed;
            };
            match tokio::time::timeout(limit, tokio::net::TcpStream::connect(addr)).await {
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => Probe::Refused,
                _ => Probe::Unconfirmed,
            }
        })
    })
}

/// `host:port` of a `ws://host:port/path` URL (the scheme's port when none
/// is given).
fn authority_of(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split('/').next()?;
    let authority = authority.rsplit('@').next()?;
    if authority.is_empty() {
        return None;
    }
    let has_port = match authority.rfind(']') {
        Some(end) => authority[end..].contains(':'),
        None => authority.contains(':'),
    };
    if has_port {
        return Some(authority.to_owned());
    }
    let port = if matches!(scheme, "wss" | "https") {
        443
    } else {
        80
    };
    Some(format!("{authority}:{port}"))
}

/// Whether a probe proves that `listed`, the incarnation the membership
/// document gives a member, is alive. A newer incarnation counts: the
/// process claimed its id again and is about to list it.
pub fn proves_alive(probe: Probe, listed: u64) -> bool {
    matches!(probe, Probe::Answered(i) if i >= listed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authority_of_urls() {
        assert_eq!(
            authority_of("ws://127.0.0.1:7001/ws").as_deref(),
            Some("127.0.0.1:7001")
        );
        assert_eq!(authority_of("wss://h/ws").as_deref(), Some("h:443"));
        assert_eq!(authority_of("ws://[::1]/ws").as_deref(), Some("[::1]:80"));
        assert_eq!(authority_of("ws://[::1]:9/ws").as_deref(), Some("[::1]:9"));
        assert_eq!(authority_of("nonsense"), None);
    }

    #[test]
    fn only_the_listed_or_a_newer_incarnation_proves_life() {
        assert!(proves_alive(Probe::Answered(3), 3));
        assert!(proves_alive(Probe::Answered(4), 3));
        assert!(!proves_alive(Probe::Answered(2), 3));
        assert!(!proves_alive(Probe::Refused, 3));
        assert!(!proves_alive(Probe::Unconfirmed, 3));
    }

    #[tokio::test]
    async fn tcp_prober_tells_refused_from_listening() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let open = listener.local_addr().expect("addr");
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr")
        };
        let p = tcp_prober();
        let limit = Duration::from_secs(2);
        assert_eq!(
            p(format!("ws://{open}/ws"), limit).await,
            Probe::Unconfirmed,
            "a listener proves nothing about the process behind it"
        );
        assert_eq!(p(format!("ws://{closed}/ws"), limit).await, Probe::Refused);
    }
}
