//! Refused connects in the log. An operator whose clients cannot connect
//! needs to see why on the server, but a misconfigured client fleet (or a
//! scanner) can be refused thousands of times a second: each reason is
//! logged at INFO at most once per [`REFUSAL_LOG_EVERY`], the next line
//! saying how many were left out meanwhile. The line carries the status,
//! the code, the reason and the remote address; never the token (the
//! reasons are [`wsring_auth::AuthError`] texts, which never repeat it).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{LazyLock, Mutex};
use std::time::Duration;
use tokio::time::Instant;

use crate::ApiError;

/// At most one line per reason this often.
pub const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(1);

/// Reasons remembered at once; past it, reasons quiet for a period are
/// forgotten (memory stays bounded whatever the refusals say).
const MAX_REASONS: usize = 256;

/// Per-reason rate limit of the refusal log lines.
#[derive(Debug, Default)]
pub struct RefusalLog {
    reasons: HashMap<String, (Instant, u64)>,
}

impl RefusalLog {
    /// Notes one refusal for `reason` at `now`: `Some(n)` when it is to be
    /// logged, `n` refusals of that reason having been left out since its
    /// last line; `None` when it is left out.
    pub fn note(&mut self, reason: &str, now: Instant) -> Option<u64> {
        if let Some((last, suppressed)) = self.reasons.get_mut(reason) {
            if now.duration_since(*last) < REFUSAL_LOG_EVERY {
                *suppressed += 1;
                return None;
            }
            let left_out = std::mem::take(suppressed);
            *last = now;
            return Some(left_out);
        }
        if self.reasons.len() >= MAX_REASONS {
            self.reasons
                .retain(|_, (last, _)| now.duration_since(*last) < REFUSAL_LOG_EVERY);
            if self.reasons.len() >= MAX_REASONS {
                // Every slot busy within the period: a flood of distinct
                // reasons is left out rather than grow the map.
                return None;
            }
        }
        self.reasons.insert(reason.to_owned(), (now, 0));
        Some(0)
    }
}

static LOG: LazyLock<Mutex<RefusalLog>> = LazyLock::new(Mutex::default);

/// Logs a refused WebSocket connect (or locate) at INFO, rate limited per
/// reason. Server errors (5xx) are logged where they arise; only the
/// client's refusals (4xx) are logged here.
pub fn log_refused(role: &'static str, peer: Option<SocketAddr>, err: &ApiError) {
    if !err.status.is_client_error() {
        return;
    }
    let key = format!(
        "{} {}: {}",
        err.status.as_u16(),
        err.code.as_str(),
        err.message
    );
    let verdict = LOG
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .note(&key, Instant::now());
    if let Some(suppressed) = verdict {
        let remote = peer.map(|p| p.ip().to_string()).unwrap_or_default();
        tracing::info!(
            role,
            remote = %remote,
            status = err.status.as_u16(),
            code = err.code.as_str(),
            reason = %err.message,
            suppressed,
            "connect refused"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn one_line_per_reason_per_second_with_the_count_left_out() {
        let mut log = RefusalLog::default();
        let t0 = Instant::now();
        assert_eq!(log.note("401 unauthorized: token expired", t0), Some(0));
        for _ in 0..5 {
            assert_eq!(log.note("401 unauthorized: token expired", t0), None);
        }
        // Another reason has its own budget.
        assert_eq!(log.note("403 forbidden: origin", t0), Some(0));
        tokio::time::advance(Duration::from_millis(999)).await;
        assert_eq!(
            log.note("401 unauthorized: token expired", Instant::now()),
            None
        );
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(
            log.note("401 unauthorized: token expired", Instant::now()),
            Some(6)
        );
        assert_eq!(
            log.note("401 unauthorized: token expired", Instant::now()),
            None
        );
    }

    #[tokio::test(start_paused = true)]
    async fn memory_is_bounded_under_a_flood_of_distinct_reasons() {
        let mut log = RefusalLog::default();
        let now = Instant::now();
        for i in 0..MAX_REASONS {
            assert_eq!(log.note(&format!("r{i}"), now), Some(0));
        }
        assert_eq!(log.note("one more", now), None);
        assert_eq!(log.reasons.len(), MAX_REASONS);
        tokio::time::advance(REFUSAL_LOG_EVERY).await;
        assert_eq!(log.note("one more", Instant::now()), Some(0));
        assert_eq!(log.reasons.len(), 1);
    }
}
