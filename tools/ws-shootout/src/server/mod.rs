//! Server side: one axum router whose `/ws` route is served by the selected WebSocket crate.
//!
//! Everything except the WebSocket framing layer is shared between candidates: the HTTP stack
//! (axum 0.8 on hyper 1), the per-connection architecture (reader loop + writer task fed by a
//! bounded queue, so fan-out and replies share one writer), and the application logic in
//! [`app`]. Only the code in the per-crate modules differs.

pub mod app;
mod axum_ws;
mod fastws;
mod tokiows;
mod tungstenite_raw;

use std::{
    io::{BufRead, Write},
    net::SocketAddr,
    sync::Arc,
    time::Duration,
};

use anyhow::Context;
use axum::{routing::get, serve::ListenerExt, Router};
use clap::ValueEnum;

/// The server-side WebSocket implementations under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Impl {
    /// `axum::extract::ws` (tokio-tungstenite 0.29 underneath) — the baseline, defaults.
    Axum,
    /// Same as `axum` but with `read_buffer_size` lowered from 128 KiB to 8 KiB.
    AxumTuned,
    /// `fastwebsockets` 0.10 on a hyper upgrade.
    Fastws,
    /// `tokio-websockets` 0.13 on a hyper upgrade.
    Tokiows,
    /// `tokio-tungstenite` 0.30 directly on a hyper upgrade.
    Tungstenite,
}

impl Impl {
    /// All candidates, baseline first.
    pub const ALL: [Impl; 5] = [
        Impl::Axum,
        Impl::AxumTuned,
        Impl::Fastws,
        Impl::Tokiows,
        Impl::Tungstenite,
    ];

    /// Stable CLI/report name.
    pub fn name(self) -> &'static str {
        match self {
            Impl::Axum => "axum",
            Impl::AxumTuned => "axum-tuned",
            Impl::Fastws => "fastws",
            Impl::Tokiows => "tokiows",
            Impl::Tungstenite => "tungstenite",
        }
    }

    /// Crate (and version) as shown in reports.
    pub fn label(self) -> &'static str {
        match self {
            Impl::Axum => "axum 0.8 ws (tungstenite 0.29), defaults",
            Impl::AxumTuned => "axum 0.8 ws, read_buffer_size 8 KiB",
            Impl::Fastws => "fastwebsockets 0.10",
            Impl::Tokiows => "tokio-websockets 0.13",
            Impl::Tungstenite => "tokio-tungstenite 0.30 (raw)",
        }
    }
}

/// Options shared by every implementation.
#[derive(Clone, Debug)]
pub struct ServerOpts {
    /// Largest accepted WebSocket message, in bytes (frame and whole message).
    pub max_msg: usize,
    /// Capacity of each connection's outbound queue.
    pub queue: usize,
    /// Whether the application sends close 1009/1007 itself after a read error. With `false`
    /// the probes show what each crate does on its own.
    pub app_close: bool,
}

/// Runs the server until `max_secs` elapse or, with `watch_stdin`, stdin reaches EOF (the
/// parent orchestrator closed it or died).
///
/// Prints `LISTENING <addr>` on stdout once bound, so a parent process can use an ephemeral port.
pub fn run(
    imp: Impl,
    port: u16,
    opts: ServerOpts,
    max_secs: u64,
    watch_stdin: bool,
) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("build runtime")?;
    rt.block_on(async move {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("bind {addr}"))?;
        let local = listener.local_addr()?;
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let state = Arc::new(app::AnyState::new(opts));
        let router = match imp {
            Impl::Axum => Router::new().route("/ws", get(axum_ws::handler)),
            Impl::AxumTuned => Router::new().route("/ws", get(axum_ws::handler_tuned)),
            Impl::Fastws => Router::new().route("/ws", get(fastws::handler)),
            Impl::Tokiows => Router::new().route("/ws", get(tokiows::handler)),
            Impl::Tungstenite => Router::new().route("/ws", get(tungstenite_raw::handler)),
        }
        .with_state(state);

        {
            let mut out = std::io::stdout().lock();
            writeln!(out, "LISTENING {local}")?;
            out.flush()?;
        }

        // Stop when the parent closes our stdin (if asked to watch it), or at the time limit.
        // A dropped sender simply disables that branch of the select below.
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        if watch_stdin {
            std::thread::spawn(move || {
                let stdin = std::io::stdin();
                let mut line = String::new();
                // Bounded: returns on EOF or error; each line read is just discarded.
                while stdin
                    .lock()
                    .read_line(&mut line)
                    .map(|n| n > 0)
                    .unwrap_or(false)
                {
                    line.clear();
                }
                let _ = stop_tx.send(());
            });
        } else {
            drop(stop_tx);
        }
        let shutdown = async move {
            tokio::select! {
                Ok(()) = stop_rx => {}
                _ = tokio::time::sleep(Duration::from_secs(max_secs)) => {
                    eprintln!("server: max lifetime {max_secs}s reached, exiting");
                }
            }
        };
        tokio::select! {
            r = axum::serve(listener, router) => r.context("serve")?,
            _ = shutdown => {}
        }
        anyhow::Ok(())
    })?;
    // Do not wait for lingering connection tasks.
    rt.shutdown_timeout(Duration::from_millis(200));
    Ok(())
}

/// Computes `Sec-WebSocket-Accept` for crates that do not expose it for hyper upgrades.
pub(crate) fn accept_key(key: &[u8]) -> String {
    tokio_tungstenite::tungstenite::handshake::derive_accept_key(key)
}

/// Checks the upgrade headers and builds the `101 Switching Protocols` response.
///
/// Used by the candidates that have no hyper integration of their own (tokio-websockets and
/// raw tokio-tungstenite), so each of them does exactly the same HTTP work.
pub(crate) fn switching_protocols(
    headers: &axum::http::HeaderMap,
) -> Result<axum::response::Response, axum::http::StatusCode> {
    use axum::http::{header, StatusCode};
    let has = |name: header::HeaderName, want: &str| {
        headers.get_all(name).iter().any(|v| {
            v.to_str()
                .map(|s| s.split(',').any(|p| p.trim().eq_ignore_ascii_case(want)))
                .unwrap_or(false)
        })
    };
    if !has(header::CONNECTION, "upgrade") || !has(header::UPGRADE, "websocket") {
        return Err(StatusCode::BAD_REQUEST);
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .map(|v| v.as_bytes())
        != Some(b"13")
    {
        return Err(StatusCode::BAD_REQUEST);
    }
    let key = headers
        .get(header::SEC_WEBSOCKET_KEY)
        .ok_or(StatusCode::BAD_REQUEST)?;
    axum::response::Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "upgrade")
        .header(header::UPGRADE, "websocket")
        .header(header::SEC_WEBSOCKET_ACCEPT, accept_key(key.as_bytes()))
        .body(axum::body::Body::empty())
        .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)
}
