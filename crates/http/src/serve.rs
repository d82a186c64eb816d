//! The HTTP/1.1 accept loop of nodes and gateways.
//!
//! We drive hyper directly instead of `axum::serve` for one reason: a crash
//! (in `wsring dev`) or the end of a drain must cut *every* connection at
//! once, keep-alive ones included. Each connection task races its connection
//! against the stop token and simply drops it when the token fires.
//!
//! The loop also keeps a hostile peer from exhausting the process:
//! * a connection cap ([`ServeLimits::max_connections`], kept below the file
//!   descriptor limit): one more connection is answered `503` with the JSON
//!   error body and closed, before any upgrade;
//! * a header-read timeout ([`ServeLimits::header_read_timeout`]): a peer
//!   that does not finish its request head in time (slowloris, a silent
//!   TCP connection) is dropped;
//! * a body read timeout ([`ServeLimits::body_read_timeout`], see
//!   [`crate::body`]): a request body must arrive whole in time (408);
//! * `accept` errors (EMFILE) are logged at most once per second, with the
//!   count of those suppressed in between.

use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use tracing::warn;

/// Limits of one accept loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServeLimits {
    /// Open connections at most (WebSockets, tunnels and HTTP calls alike).
    pub max_connections: usize,
    /// Time a connection gets to send a complete request head.
    pub header_read_timeout: Duration,
    /// Time a request's body gets to arrive whole, from its head (408
    /// past it).
    pub body_read_timeout: Duration,
}

impl Default for ServeLimits {
    fn default() -> Self {
        ServeLimits {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            body_read_timeout: DEFAULT_BODY_READ_TIMEOUT,
        }
    }
}

/// Default connection cap: well below the usual 20,000–65,536 file
/// descriptors a process may hold, leaving room for backend connections and,
/// on a gateway, the second descriptor of every tunnel.
pub const DEFAULT_MAX_CONNECTIONS: usize = 8_000;

/// Default header-read timeout.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Default body read timeout.
pub const DEFAULT_BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Pending connections the kernel queues for a listener before `accept`.
///
/// A rebalance sends thousands of clients to one node within a second or
/// two; with the usual 1,024 a burst overflows the queue and the dropped
/// SYNs are only retried after a second. The kernel caps it at
/// `net.core.somaxconn`.
pub const LISTEN_BACKLOG: u32 = 4096;

/// Binds a listener on `addr` (`HOST:PORT`; the first address it resolves
/// to that binds) with [`LISTEN_BACKLOG`].
pub async fn bind(addr: &str) -> std::io::Result<TcpListener> {
    let mut last = None;
    for a in tokio::net::lookup_host(addr).await? {
        let socket = if a.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        // As std's listener does: a restarted process can take its port
        // back while old connections sit in TIME_WAIT.
        socket.set_reuseaddr(true)?;
        match socket.bind(a).and_then(|()| socket.listen(LISTEN_BACKLOG)) {
            Ok(listener) => return Ok(listener),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "the address resolved to nothing",
        )
    }))
}

/// Serves `app` on `listener` until `stop` fires, with the default limits.
pub async fn serve(listener: TcpListener, app: Router, stop: CancellationToken) {
    serve_with(listener, app, stop, ServeLimits::default(), None).await
}

/// Serves `app` on `listener` until `stop` fires.
pub async fn serve_with(
    listener: TcpListener,
    app: Router,
    stop: CancellationToken,
    limits: ServeLimits,
    tls: Option<TlsAcceptor>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let mut accept_errors = ErrorLog::default();
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => return,
            r = listener.accept() => r,
        };
        let (tcp, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // Typically EMFILE: back off briefly instead of spinning, and
                // do not flood the log while it lasts.
                accept_errors.record(&e);
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            tokio::spawn(refuse(tcp));
            continue;
        };
        // The peer address travels with each request (axum's `ConnectInfo`),
        // for `X-Forwarded-For` and logs.
        let app = app.clone();
        let svc =
            hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(ConnectInfo(peer));
                let req = req.map(|b| {
                    axum::body::Body::new(crate::body::TimedBody::new(b, limits.body_read_timeout))
                });
                app.clone().oneshot(req)
            });
        let stop = stop.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            // The slot is held until the connection (and any WebSocket it
            // upgraded to) ends.
            let _slot = slot;
            let mut http = hyper::server::conn::http1::Builder::new();
            http.timer(TokioTimer::new())
                .header_read_timeout(limits.header_read_timeout);
            let conn = async {
                match tls {
                    None => {
                        let _ = http
                            .serve_connection(TokioIo::new(tcp), svc)
                            .with_upgrades()
                            .await;
                    }
                    Some(acceptor) => {
                        // The handshake counts against the header-read
                        // timeout: a silent TLS client is a slowloris too.
                        let shaken =
                            tokio::time::timeout(limits.header_read_timeout, acceptor.accept(tcp))
                                .await;
                        if let Ok(Ok(stream)) = shaken {
                            let _ = http
                                .serve_connection(TokioIo::new(stream), svc)
                                .with_upgrades()
                                .await;
                        }
                    }
                }
            };
            tokio::select! {
                _ = conn => {}
                _ = stop.cancelled() => {}
            }
        });
    }
}

/// The answer past the connection cap.
const REFUSAL: &str = "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
     retry-after: 1\r\nconnection: close\r\ncontent-length: 76\r\n\r\n\
     {\"error\":{\"code\":\"unavailable\",\"message\":\"connection limit reached, retry\"}}";

/// Answers 503 and closes, reading what the peer already sent so the close
/// is graceful (a socket closed with unread bytes resets, and the peer would
/// never see the answer). Bounded in time and bytes.
async fn refuse(mut tcp: TcpStream) {
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = tcp.write_all(REFUSAL.as_bytes()).await;
        let _ = tcp.shutdown().await;
        let mut sink = [0u8; 4096];
        let mut left = 64 * 1024usize;
        while left > 0 {
            match tcp.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    })
    .await;
}

/// Rate-limits one kind of log line: the first error logs at once, later
/// ones at most once a second with the number suppressed in between.
#[derive(Default)]
struct ErrorLog {
    last: Option<tokio::time::Instant>,
    suppressed: u64,
}

impl ErrorLog {
    fn record(&mut self, e: &std::io::Error) {
        let now = tokio::time::Instant::now();
        match self.last {
            Some(t) if now.duration_since(t) < Duration::from_secs(1) => self.suppressed += 1,
            _ => {
                warn!(error = %e, suppressed = self.suppressed, "accept failed");
                self.last = Some(now);
                self.suppressed = 0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    async fn start(limits: ServeLimits) -> (std::net::SocketAddr, CancellationToken) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let stop = CancellationToken::new();
        let app = Router::new().route("/", get(|| async { "hi" }));
        tokio::spawn(serve_with(listener, app, stop.clone(), limits, None));
        (addr, stop)
    }

    async fn read_all(tcp: &mut TcpStream) -> Vec<u8> {
        let mut out = Vec::new();
        let mut buf = [0u8; 1024];
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return out,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    }

    #[test]
    fn refusal_is_a_well_formed_json_503() {
        let (head, body) = REFUSAL.split_once("\r\n\r\n").expect("head and body");
        assert!(head.starts_with("HTTP/1.1 503 "));
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let v: serde_json::Value = serde_json::from_str(body).expect("json");
        assert_eq!(v["error"]["code"], "unavailable");
    }

    #[tokio::test]
    async fn connections_past_the_cap_get_503_and_the_rest_keep_working() {
        let (addr, stop) = start(ServeLimits {
            max_connections: 2,
            header_read_timeout: Duration::from_secs(60),
            ..ServeLimits::default()
        })
        .await;
        let held = [
            TcpStream::connect(addr).await.expect("1"),
            TcpStream::connect(addr).await.expect("2"),
        ];
        let mut third = TcpStream::connect(addr).await.expect("3");
        third
            .write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .expect("write");
        let answer = tokio::time::timeout(Duration::from_secs(5), read_all(&mut third))
            .await
            .expect("answered");
        assert!(
            answer.starts_with(b"HTTP/1.1 503"),
            "{:?}",
            String::from_utf8_lossy(&answer)
        );
        // Freeing a slot lets the next one in.
        drop(held);
        let mut ok = None;
        for _ in 0..100 {
            let mut tcp = TcpStream::connect(addr).await.expect("4");
            tcp.write_all(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
                .await
                .expect("write");
            let a = read_all(&mut tcp).await;
            if a.starts_with(b"HTTP/1.1 200") {
                ok = Some(a);
                break;
            }
            // The dropped connections' slots free once their tasks notice.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(ok.is_some(), "a freed slot is reused");
        stop.cancel();
    }

    #[tokio::test(start_paused = true)]
    async fn silent_and_slow_connections_are_dropped_after_the_header_timeout() {
        let (addr, stop) = start(ServeLimits {
            max_connections: 10,
            header_read_timeout: Duration::from_secs(5),
            ..ServeLimits::default()
        })
        .await;
        let mut silent = TcpStream::connect(addr).await.expect("silent");
        let mut slow = TcpStream::connect(addr).await.expect("slow");
        slow.write_all(b"GET / HTTP/1.1\r\nhost")
            .await
            .expect("write");
        let started = tokio::time::Instant::now();
        for tcp in [&mut silent, &mut slow] {
            let mut buf = [0u8; 64];
            let r = tokio::time::timeout(Duration::from_secs(60), tcp.read(&mut buf))
                .await
                .expect("dropped before 60 s");
            assert!(
                matches!(r, Ok(0) | Err(_)) || buf.starts_with(b"HTTP/1.1 408"),
                "{r:?}"
            );
        }
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_secs(5) && waited < Duration::from_secs(7),
            "{waited:?}"
        );
        stop.cancel();
    }

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
