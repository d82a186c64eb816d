//! Echo mode (`wsring node --autobahn-echo`): a test mode that lets a
//! WebSocket conformance suite (Autobahn's fuzzing client) exercise the
//! node's WebSocket handling as it runs in production.
//!
//! The node is a real node — the same accept loop, the same upgrade with the
//! same read/write buffers and frame limits ([`crate::ws`]), the same session
//! loop with its close handling, control-frame budget and rate limits — with
//! three differences, all in what the *application* does:
//!
//! * every path upgrades (a conformance client connects to `/`), and no
//!   token or `?user=` is asked for: each connection gets a user of its own;
//! * the session sends no `welcome` and answers each text or binary message
//!   with the same message (opcode and payload) instead of parsing commands;
//! * it runs alone on the embedded in-memory backend: no registry, broker or
//!   stream store.
//!
//! One limit is raised: the largest message, to [`ECHO_MAX_MESSAGE_BYTES`]
//! (16 MiB, the size of Autobahn's largest messages in cases 9.1.6 and
//! 9.2.6) instead of the production default of 64 KiB, and with it the
//! per-session outbound byte budget, which must hold one largest message.
//! Everything derived from the message limit (frame limit, write-buffer
//! bound, byte burst) follows it exactly as it would for an operator who set
//! `--max-message-bytes 16777216`.

use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use wsring_cluster::memory::MemoryBackend;
use wsring_cluster::{Membership, MembershipConfig, Retention};

use crate::{NodeConfig, NodeDeps, NodeError, NodeHandle};

/// The message limit in echo mode: Autobahn's largest messages (cases 9.1.6
/// and 9.2.6) are 16 MiB.
pub const ECHO_MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

impl NodeConfig {
    /// `self` as echo mode runs it: [`NodeConfig::echo`] set, the message
    /// limit at least [`ECHO_MAX_MESSAGE_BYTES`] and the outbound byte budget
    /// at least one such message; every other setting as given.
    pub fn into_echo(mut self) -> NodeConfig {
        self.echo = true;
        self.max_message_bytes = self.max_message_bytes.max(ECHO_MAX_MESSAGE_BYTES);
        self.session_queue_bytes = self.session_queue_bytes.max(self.max_message_bytes);
        self
    }
}

/// Starts a node in echo mode on `listener` (see the module docs), alone on
/// an in-memory backend; `kill` stops it.
pub async fn start_echo(
    cfg: NodeConfig,
    listener: TcpListener,
    kill: CancellationToken,
) -> Result<NodeHandle, NodeError> {
    let cfg = cfg.into_echo();
    let backend = MemoryBackend::new(Retention::default());
    let membership = Membership::start(
        backend.registry.clone(),
        MembershipConfig::default(),
        kill.clone(),
    )
    .await?;
    let (broker, inbox) = backend.hub.connect();
    tracing::info!(
        max_message_bytes = cfg.max_message_bytes,
        session_queue_bytes = cfg.session_queue_bytes,
        "TEST MODE (--autobahn-echo): every path echoes every text and binary message, without \
         authentication or a cluster; never expose this to real clients"
    );
    crate::start(
        cfg,
        listener,
        NodeDeps {
            membership,
            broker,
            inbox,
            streams: None,
            server_rooms: backend.rooms.clone(),
            hook_queue: None,
            security: Arc::new(wsring_auth::Security::open()),
            kill,
        },
    )
    .await
}
