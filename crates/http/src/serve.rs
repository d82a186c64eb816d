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

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    #[tokio::test]
    async fn stop_cuts_keep_alive_connections() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let stop = CancellationToken::new();
        let app = Router::new().route("/", get(|| async { "hi" }));
        let server = tokio::spawn(serve(listener, app, stop.clone()));

        let mut tcp = TcpStream::connect(addr).await.expect("connect");
        tcp.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .expect("write");
        let mut answer = Vec::new();
        let mut buf = vec![0u8; 1024];
        // The answer may arrive in several reads; the body ends it.
        while !answer.ends_with(b"hi") {
            let n = tcp.read(&mut buf).await.expect("answer");
            assert!(n > 0, "closed before answering");
            answer.extend_from_slice(&buf[..n]);
        }
        assert!(answer.starts_with(b"HTTP/1.1 200"));

        // The connection is idle and kept alive; stopping must close it.
        stop.cancel();
        let closed = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf))
            .await
            .expect("closed promptly");
        assert!(matches!(closed, Ok(0) | Err(_)), "{closed:?}");
        tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .expect("accept loop ends")
            .expect("accept loop does not panic");
    }
}
