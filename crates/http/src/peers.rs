//! Asking other cluster members over HTTP: one request per member, all at
//! once, each bounded by its own timeout. A member that does not answer in
//! time, answers with an error status or with something that is not JSON
//! yields `None`, so one dead member cannot fail or stall the whole answer.
//!
//! This is only the transport; which members to ask and what their answers
//! mean belongs to the caller (`wsring_cluster::report`).

use futures::future::join_all;
use serde_json::Value;
use std::time::Duration;

/// GETs every `(id, url)` concurrently; answers come back in input order.
/// `authorization` is the caller's own `Authorization` header, passed on so
/// a protected API answers a member exactly as it answered the caller.
pub async fn get_json_all(
    http: &reqwest::Client,
    targets: Vec<(String, String)>,
    timeout: Duration,
    authorization: Option<&str>,
) -> Vec<(String, Option<Value>)> {
    call_json_all(http, targets, None, timeout, authorization).await
}

/// [`get_json_all`] as POSTs of the same JSON `body` to every member.
pub async fn post_json_all(
    http: &reqwest::Client,
    targets: Vec<(String, String)>,
    body: bytes::Bytes,
    timeout: Duration,
    authorization: Option<&str>,
) -> Vec<(String, Option<Value>)> {
    call_json_all(http, targets, Some(body), timeout, authorization).await
}

async fn call_json_all(
    http: &reqwest::Client,
    targets: Vec<(String, String)>,
    body: Option<bytes::Bytes>,
    timeout: Duration,
    authorization: Option<&str>,
) -> Vec<(String, Option<Value>)> {
    let calls = targets.into_iter().map(|(id, url)| {
        let body = body.clone();
        async move {
            let mut req = match body {
                Some(b) => http
                    .post(url)
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(b),
                None => http.get(url),
            }
            .timeout(timeout);
            if let Some(a) = authorization {
                req = req.header(reqwest::header::AUTHORIZATION, a);
            }
            let resp = req.send().await;
            let body = match resp {
                Ok(r) if r.status().is_success() => r.json::<Value>().await.ok(),
                _ => None,
            };
            (id, body)
        }
    });
    join_all(calls).await
}

/// What a `GET /healthz` of a member found (see [`health_probe`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// The connect was refused: nothing listens at that address.
    Refused,
    /// The process answered 200, with the incarnation it reported, if any.
    Answered(Option<u64>),
    /// A timeout, another error, or an answer that is not a healthy one.
    NoAnswer,
}

/// Asks `{api_base}/healthz` once, within `timeout`: whether the process
/// there is alive, and which incarnation of its node it serves.
pub async fn health_probe(http: &reqwest::Client, api_base: &str, timeout: Duration) -> Health {
    let resp = http
        .get(format!("{api_base}/healthz"))
        .timeout(timeout)
        .send()
        .await;
    match resp {
        Ok(r) if r.status().is_success() => {
            let body = r.json::<Value>().await.ok();
            Health::Answered(body.and_then(|b| b["incarnation"].as_u64()))
        }
        Ok(_) => Health::NoAnswer,
        Err(e) if refused(&e) => Health::Refused,
        Err(_) => Health::NoAnswer,
    }
}

/// Whether an error was caused by a refused TCP connect.
fn refused(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::ConnectionRefused
        {
            return true;
        }
        cur = err.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::http::StatusCode;
    use axum::routing::get;
    use serde_json::json;
    use tokio::net::TcpListener;
    use tokio_util::sync::CancellationToken;

    #[tokio::test]
    async fn answers_in_order_and_failures_are_none() {
        let app = Router::new()
            .route(
                "/ok",
                get(|| async { axum::Json(json!({ "sessions": [] })) }),
            )
            .route("/err", get(|| async { StatusCode::INTERNAL_SERVER_ERROR }))
            .route("/text", get(|| async { "not json" }))
            .route(
                "/echo",
                axum::routing::post(|body: bytes::Bytes| async move {
                    axum::Json(json!({ "got": String::from_utf8_lossy(&body) }))
                }),
            );
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let stop = CancellationToken::new();
        tokio::spawn(crate::serve(listener, app, stop.clone()));
        // Accepts connections but never answers: only the timeout ends it.
        let silent = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let silent_url = format!("http://{}/x", silent.local_addr().expect("addr"));

        let http = crate::tls::ClientTls::new(None)
            .and_then(|t| t.http_client(Duration::from_secs(5)))
            .expect("client");
        let targets = vec![
            ("a".to_string(), format!("{base}/ok")),
            ("b".to_string(), format!("{base}/err")),
            ("c".to_string(), format!("{base}/text")),
            ("d".to_string(), silent_url),
        ];
        let got = get_json_all(&http, targets, Duration::from_millis(200), None).await;
        assert_eq!(
            got,
            vec![
                ("a".to_string(), Some(json!({ "sessions": [] }))),
                ("b".to_string(), None),
                ("c".to_string(), None),
                ("d".to_string(), None),
            ]
        );
        let posted = post_json_all(
            &http,
            vec![("a".to_string(), format!("{base}/echo"))],
            bytes::Bytes::from_static(br#"{"x":1}"#),
            Duration::from_secs(2),
            None,
        )
        .await;
        assert_eq!(
            posted,
            vec![("a".to_string(), Some(json!({ "got": r#"{"x":1}"# })))]
        );
        stop.cancel();
        drop(silent);
    }

    #[tokio::test]
    async fn health_probe_tells_refused_answered_and_silent() {
        let app = Router::new().route(
            "/healthz",
            get(|| async { axum::Json(json!({ "ok": true, "incarnation": 7 })) }),
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let live = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        let old = Router::new().route(
            "/healthz",
            get(|| async { axum::Json(json!({ "ok": true })) }),
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let older = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, old).await });
        // Accepts (the kernel does) but never answers.
        let silent_l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let silent = silent_l.local_addr().expect("addr");
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr")
        };
        let http = crate::tls::ClientTls::new(None)
            .and_then(|t| t.http_client(Duration::from_secs(5)))
            .expect("client");
        let t = Duration::from_millis(300);
        assert_eq!(
            health_probe(&http, &format!("http://{live}"), t).await,
            Health::Answered(Some(7))
        );
        assert_eq!(
            health_probe(&http, &format!("http://{older}"), t).await,
            Health::Answered(None)
        );
        assert_eq!(
            health_probe(&http, &format!("http://{silent}"), t).await,
            Health::NoAnswer
        );
        assert_eq!(
            health_probe(&http, &format!("http://{closed}"), t).await,
            Health::Refused
        );
        drop(silent_l);
    }
}
