//! The HTTP/1.1 accept loop of nodes and gateways.
//!
//! We drive hyper directly instead of `axum::serve` for one reason: a crash
//! (in `wsring dev`) or the end of a drain must cut *every* connection at
//! once, keep-alive ones included. Each connection task races its connection
//! against the stop token and simply drops it when the token fires.

use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::TokioIo;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use tracing::warn;

/// Serves `app` on `listener` until `stop` fires.
pub async fn serve(listener: TcpListener, app: Router, stop: CancellationToken) {
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => return,
            r = listener.accept() => r,
        };
        let (tcp, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // Typically EMFILE: back off briefly instead of spinning.
                warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        // The peer address travels with each request (axum's `ConnectInfo`),
        // for `X-Forwarded-For` and logs.
        let app = app.clone();
        let svc =
            hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(ConnectInfo(peer));
                app.clone().oneshot(req)
            });
        let stop = stop.clone();
        tokio::spawn(async move {
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), svc)
                .with_upgrades();
            tokio::select! {
                _ = conn => {}
                _ = stop.cancelled() => {}
            }
        });
    }
}
