//! TLS on wsring's own listeners, end to end against the real binary: a
//! `wsring dev` whose gateway and nodes listen with a certificate generated
//! here (trusted through `--tls-ca`), so clients use `wss://` and `https://`,
//! the gateway tunnels to `wss://` nodes, API relays and presence
//! fan-out go to `https://` nodes, and the Rust client's `Api` calls them
//! over `https://`.

mod common;

use common::procs::dev_process;
use futures::StreamExt;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use tokio::net::TcpStream;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_tungstenite::tungstenite::Message;

/// A self-signed certificate for `localhost` and 127.0.0.1 in a temp dir:
/// `(dir, cert.pem, key.pem)`; the certificate is its own CA.
fn certificate() -> (PathBuf, PathBuf, PathBuf) {
    let dir = std::env::temp_dir().join(format!("wsring-tls-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = rcgen::CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()])
        .expect("params")
        .self_signed(&key)
        .expect("certificate");
    let (c, k) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&c, cert.pem()).expect("write cert");
    std::fs::write(&k, key.serialize_pem()).expect("write key");
    (dir, c, k)
}

/// Opens a WebSocket over TLS to `url` (`wss://127.0.0.1:PORT/ws?…`),
/// trusting `ca`, and returns it with its welcome frame.
async fn connect_wss(
    url: &str,
    ca: &Path,
) -> (
    tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<TcpStream>>,
    Value,
) {
    let authority = url
        .trim_start_matches("wss://")
        .split('/')
        .next()
        .expect("authority");
    let tcp = TcpStream::connect(authority).await.expect("tcp");
    let connector = wsring_http::tls::ClientTls::new(Some(ca))
        .expect("CA")
        .connector();
    let name = ServerName::try_from("127.0.0.1").expect("name");
    let tls = connector.connect(name, tcp).await.expect("TLS handshake");
    let (mut ws, _) = tokio_tungstenite::client_async(url, tls)
        .await
        .expect("upgrade over TLS");
    let welcome: Value = loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => break serde_json::from_str(t.as_str()).expect("json"),
            Some(Ok(_)) => continue,
            other => panic!("no welcome: {other:?}"),
        }
    };
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    (ws, welcome)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_and_nodes_speak_tls_to_clients_and_to_each_other() {
    let (dir, cert, key) = certificate();
    let (c, k) = (cert.display().to_string(), key.display().to_string());
    let (_dev, ws, base) = dev_process(&[
        "--nodes",
        "2",
        "--tls-cert",
        &c,
        "--tls-key",
        &k,
        "--tls-ca",
        &c,
    ])
    .await;
    assert!(
        ws.starts_with("wss://") && base.starts_with("https://"),
        "{ws} {base}"
    );
    let http = common::http_trusting(Some(&cert));

    // The nodes advertise wss:// URLs.
    let nodes: Value = http
        .get(format!("{base}/api/nodes"))
        .send()
        .await
        .expect("GET over TLS")
        .json()
        .await
        .expect("json");
    let urls: Vec<String> = nodes["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .map(|n| n["url"].as_str().expect("url").to_owned())
        .collect();
    assert_eq!(urls.len(), 2);
    assert!(urls.iter().all(|u| u.starts_with("wss://")), "{urls:?}");

    // Through the gateway (a TLS tunnel to a TLS node), and straight to a
    // node whose user it owns.
    let (mut alice, welcome) = connect_wss(&format!("{ws}?user=alice"), &cert).await;
    let owner = welcome["node"].as_str().expect("node").to_owned();
    let owner_url = nodes["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .find(|n| n["id"] == owner.as_str())
        .and_then(|n| n["url"].as_str())
        .expect("owner url")
        .to_owned();
    let (mut direct, _) = connect_wss(&format!("{owner_url}?user=alice"), &cert).await;

    // An API write relayed by the gateway to an https:// node reaches both.
    let r = http
        .post(format!("{base}/api/send"))
        .json(&json!({"to":"alice","data":"over tls"}))
        .send()
        .await
        .expect("POST over TLS");
    assert!(r.status().is_success(), "{}", r.status());
    for ws in [&mut alice, &mut direct] {
        let m = loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) => {
                    let v: Value = serde_json::from_str(t.as_str()).expect("json");
                    if v["type"] == "message" {
                        break v;
                    }
                }
                Some(Ok(_)) => continue,
                other => panic!("no message: {other:?}"),
            }
        };
        assert_eq!(m["data"], "over tls");
    }
    // Presence: the gateway asks every node over https.
    let v: Value = http
        .get(format!("{base}/api/presence?user=alice"))
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("json");
    assert_eq!(v["sessions"].as_array().map(Vec::len), Some(2), "{v}");
    assert!(
        v.get("unreachable")
            .is_none_or(|u| u.as_array().is_none_or(Vec::is_empty)),
        "{v}"
    );

    // The Rust client's server API over https (trusting the CA), asking a
    // node that asks its https:// peers: alice's two sessions, one room.
    let pem = std::fs::read(&cert).expect("read cert");
    let api = wsring_client::Api::with(wsring_client::ApiConfig {
        ca_pem: Some(pem),
        ..wsring_client::ApiConfig::new(&owner_url)
    })
    .expect("api client");
    assert!(api.base().starts_with("https://"), "{}", api.base());
    let joined = api.join("tls-room", "alice").await.expect("join over TLS");
    assert_eq!((joined.sessions, joined.unreachable.len()), (2, 0));
    let count = api.room_count("tls-room").await.expect("count over TLS");
    assert_eq!((count.users, count.sessions), (1, 2));
    let untrusting = wsring_client::Api::new(&base).expect("api client");
    assert!(matches!(
        untrusting.room_count("tls-room").await,
        Err(wsring_client::ApiError::Transport(_))
    ));

    // Plain HTTP to the TLS port gets nowhere.
    let plain = base.replacen("https://", "http://", 1);
    assert!(
        common::http()
            .get(format!("{plain}/healthz"))
            .send()
            .await
            .is_err()
    );
    alice.close(None).await.expect("close");
    direct.close(None).await.expect("close");
    let _ = std::fs::remove_dir_all(&dir);
}
