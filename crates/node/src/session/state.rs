//! What a session knows about itself, apart from its socket: who it is, the
//! durable cursors it follows and when its next catch-up pass is due.
//!
//! Client commands ([`crate::cmd`]) read and change this state and nothing
//! else of the session; the connection loop owns it together with the socket
//! and acts on what the commands return. Keeping the socket out of here is
//! what lets the commands be tested without one.

use std::collections::{HashMap, HashSet};
use std::time::Duration;
use tokio::time::Instant;
use wsring_auth::RoomPolicy;
use wsring_cluster::StreamName;

use super::cursor::Cursor;
use crate::sessions::SessionHandle;

/// Longest wait between failed catch-up passes (and failed reads of the
/// server-side rooms).
const RESYNC_BACKOFF_MAX: Duration = Duration::from_secs(30);

/// The wait after `failures` failed reads in a row: 1 s, doubling, at most
/// 30 s.
fn backoff(failures: u32) -> Duration {
    Duration::from_secs(1 << failures.min(5)).min(RESYNC_BACKOFF_MAX)
}

/// Per-session state, owned by the session task.
pub(crate) struct SessionState {
    /// The session's entry in the node's table (id, user, queue).
    pub handle: SessionHandle,
    /// Durable mode: position of every stream this session follows.
    pub cursors: HashMap<StreamName, Cursor>,
    /// Rooms the connect token lets it join and publish to.
    pub rooms: RoomPolicy,
    /// Whether the connect token lets it send direct messages (and, without
    /// a `publish` claim, publish).
    pub may_send: bool,
    /// The token's `publish` claim, if it has one
    /// ([`wsring_auth::may_publish`]).
    pub publish: Option<RoomPolicy>,
    /// Rooms the server put the session's user in (and the session is in):
    /// allowed whatever the token's `rooms` claim says.
    pub server_rooms: HashSet<String>,
    /// When the next catch-up pass is due. One timer per session, however
    /// many triggers (broker reconnects, failed reads) pile up.
    resync_at: Option<Instant>,
    /// Consecutive failed catch-up passes, for backoff.
    resync_failures: u32,
    /// Consecutive failed reads of the server-side rooms, for backoff.
    rooms_failures: u32,
}

impl SessionState {
    /// A session that follows no stream yet, with every permission.
    pub fn new(handle: SessionHandle) -> SessionState {
        SessionState {
            handle,
            cursors: HashMap::new(),
            rooms: RoomPolicy::All,
            may_send: true,
            publish: None,
            server_rooms: HashSet::new(),
            resync_at: None,
            resync_failures: 0,
            rooms_failures: 0,
        }
    }

    /// The same session limited to what its token grants.
    pub fn with_grants(mut self, rooms: RoomPolicy, may_send: bool) -> SessionState {
        self.rooms = rooms;
        self.may_send = may_send;
        self
    }

    /// The same session with the token's `publish` claim.
    pub fn with_publish(mut self, publish: Option<RoomPolicy>) -> SessionState {
        self.publish = publish;
        self
    }

    /// When the next catch-up pass is due, if one is.
    pub fn resync_at(&self) -> Option<Instant> {
        self.resync_at
    }

    /// The pending catch-up pass starts now: clears the timer.
    pub fn take_resync(&mut self) {
        self.resync_at = None;
    }

    /// Arranges a catch-up pass within `delay` (coalesced with any pending).
    pub fn schedule_resync(&mut self, delay: Duration) {
        let at = Instant::now() + delay;
        self.resync_at = Some(self.resync_at.map_or(at, |t| t.min(at)));
    }

    /// A failed store read: retry with exponential backoff (1 s … 30 s).
    pub fn resync_failed(&mut self) {
        let delay = backoff(self.resync_failures);
        self.resync_failures = self.resync_failures.saturating_add(1);
        if self.resync_at.is_none() {
            self.resync_at = Some(Instant::now() + delay);
        }
    }

    /// A successful store read resets the backoff.
    pub fn resync_ok(&mut self) {
        self.resync_failures = 0;
    }

    /// The server-side rooms could not be read: how long to wait before
    /// the next read (1 s, 2 s, 4 s … 30 s).
    pub fn server_rooms_failed(&mut self) -> Duration {
        let delay = backoff(self.rooms_failures);
        self.rooms_failures = self.rooms_failures.saturating_add(1);
        delay
    }

    /// Failed reads of the server-side rooms in a row.
    pub fn server_rooms_failures(&self) -> u32 {
        self.rooms_failures
    }

    /// The server-side rooms were read.
    pub fn server_rooms_loaded(&mut self) {
        self.rooms_failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> SessionState {
        let (tx, _rx) = crate::outbox::channel(1);
        SessionState::new(SessionHandle::new("s1".into(), "alice".into(), tx, 1024))
    }

    #[tokio::test(start_paused = true)]
    async fn resync_timers_coalesce_to_the_earliest() {
        let mut s = state();
        let t0 = Instant::now();
        assert_eq!(s.resync_at(), None);
        s.schedule_resync(Duration::from_secs(5));
        s.schedule_resync(Duration::from_secs(9));
        assert_eq!(s.resync_at(), Some(t0 + Duration::from_secs(5)));
        s.schedule_resync(Duration::ZERO);
        assert_eq!(s.resync_at(), Some(t0));
        s.take_resync();
        assert_eq!(s.resync_at(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn failed_reads_back_off_exponentially_up_to_thirty_seconds() {
        let mut s = state();
        let mut delays = Vec::new();
        for _ in 0..8 {
            let t0 = Instant::now();
            s.resync_failed();
            let at = s.resync_at().expect("a retry is scheduled");
            delays.push((at - t0).as_secs());
            s.take_resync();
        }
        assert_eq!(delays, vec![1, 2, 4, 8, 16, 30, 30, 30]);
        // A success starts the backoff over.
        s.resync_ok();
        s.resync_failed();
        assert_eq!(s.resync_at(), Some(Instant::now() + Duration::from_secs(1)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_failure_does_not_postpone_a_pass_already_due() {
        let mut s = state();
        s.schedule_resync(Duration::ZERO);
        s.resync_failed();
        assert_eq!(s.resync_at(), Some(Instant::now()));
    }
}
