//! Hostile and malformed input against a running `wsring dev`, byte by byte
//! over raw TCP: each case gets its exact outcome (an error frame, an RFC 6455
//! close code, or an HTTP 4xx with a JSON body), and a healthy client on the
//! same node keeps working throughout.

mod common;

use common::procs::Proc;
use common::{Api, Client, wait_until};
use serde_json::Value;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

const LIMIT: Duration = Duration::from_secs(15);

struct Dev {
    _proc: Proc,
    /// `host:port` of the gateway.
    addr: String,
    ws: String,
}

async fn dev() -> Dev {
    let (p, ws, base) = common::procs::dev_process(&["--nodes", "1"]).await;
    let api = Api::new(base.clone());
    wait_until("1 node", || async { api.node_ids().await.len() == 1 }).await;
    Dev {
        _proc: p,
        addr: base.trim_start_matches("http://").to_owned(),
        ws,
    }
}

/// A WebSocket connection driven by hand, to send what no library would.
struct Raw {
    tcp: TcpStream,
    buf: Vec<u8>,
    /// The HTTP response's `content-length`, once its head was read.
    want: Option<usize>,
}

/// What the server did to a raw connection.
#[derive(Debug, PartialEq)]
enum Seen {
    /// A text frame.
    Text(String),
    /// A close frame with this code.
    Close(u16),
    /// The TCP connection ended without a close frame.
    Eof,
}

impl Raw {
    /// Upgrades `/ws?user=…` with the given extra request lines.
    async fn connect(addr: &str, user: &str) -> Raw {
        let (status, raw) = Raw::handshake(
            addr,
            &format!("/ws?user={user}"),
            "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
        )
        .await;
        assert_eq!(status, 101, "upgrade");
        let mut raw = raw;
        // Skip the welcome frame.
        assert!(matches!(raw.next().await, Seen::Text(t) if t.contains("welcome")));
        raw
    }

    /// Sends an upgrade request for `path` with `headers`; returns the HTTP
    /// status and the connection (positioned after the response head).
    async fn handshake(addr: &str, path: &str, headers: &str) -> (u16, Raw) {
        Raw::request(
            addr,
            path,
            &format!("Upgrade: websocket\r\nConnection: Upgrade\r\n{headers}"),
        )
        .await
    }

    async fn read_head(&mut self) -> String {
        loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
                self.buf.drain(..end + 4);
                return head;
            }
            let mut chunk = [0u8; 4096];
            let n = timeout(LIMIT, self.tcp.read(&mut chunk))
                .await
                .expect("response in time")
                .expect("read");
            assert!(n > 0, "closed before a response");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Writes one frame; `mask` as a client must (RFC 6455 §5.3).
    async fn frame(&mut self, fin: bool, opcode: u8, payload: &[u8], mask: bool) {
        self.frame_header(fin, opcode, payload.len() as u64, mask)
            .await;
        // The server may close mid-frame; that is the point of some cases.
        if mask {
            self.masked_payload(payload).await;
        } else {
            let _ = self.tcp.write_all(payload).await;
        }
    }

    /// Writes a frame header announcing `len` payload bytes (masked with a
    /// fixed key when `mask`), without the payload.
    async fn frame_header(&mut self, fin: bool, opcode: u8, len: u64, mask: bool) {
        let mut h = vec![(if fin { 0x80 } else { 0 }) | opcode];
        let m = if mask { 0x80 } else { 0 };
        if len < 126 {
            h.push(m | len as u8);
        } else if len <= u16::MAX as u64 {
            h.push(m | 126);
            h.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            h.push(m | 127);
            h.extend_from_slice(&len.to_be_bytes());
        }
        if mask {
            h.extend_from_slice(&[0x12, 0x34, 0x56, 0x78]);
        }
        let _ = self.tcp.write_all(&h).await;
    }

    /// Writes the first bytes of a payload announced by [`Raw::frame_header`]
    /// with `mask`, masked with its fixed key.
    async fn masked_payload(&mut self, bytes: &[u8]) {
        let key = [0x12u8, 0x34, 0x56, 0x78];
        let body: Vec<u8> = bytes
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ key[i % 4])
            .collect();
        let _ = self.tcp.write_all(&body).await;
    }

    async fn text(&mut self, s: &str) {
        self.frame(true, 0x1, s.as_bytes(), true).await;
    }

    /// The next frame the server sends (pongs are skipped).
    async fn next(&mut self) -> Seen {
        loop {
            while self.buf.len() < 2 {
                if !self.fill().await {
                    return Seen::Eof;
                }
            }
            let opcode = self.buf[0] & 0x0f;
            let mut len = (self.buf[1] & 0x7f) as usize;
            let mut at = 2;
            if len == 126 || len == 127 {
                let n = if len == 126 { 2 } else { 8 };
                while self.buf.len() < 2 + n {
                    if !self.fill().await {
                        return Seen::Eof;
                    }
                }
                len = self.buf[2..2 + n]
                    .iter()
                    .fold(0usize, |acc, b| (acc << 8) | *b as usize);
                at += n;
            }
            while self.buf.len() < at + len {
                if !self.fill().await {
                    return Seen::Eof;
                }
            }
            let payload: Vec<u8> = self.buf[at..at + len].to_vec();
            self.buf.drain(..at + len);
            match opcode {
                0x1 => return Seen::Text(String::from_utf8_lossy(&payload).into_owned()),
                0x8 => {
                    let code = if payload.len() >= 2 {
                        u16::from_be_bytes([payload[0], payload[1]])
                    } else {
                        1005
                    };
                    return Seen::Close(code);
                }
                _ => continue,
            }
        }
    }

    /// Reads more bytes; false at EOF or on a reset.
    async fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 16 * 1024];
        match timeout(LIMIT, self.tcp.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => false,
            Ok(Ok(n)) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
            Err(_) => panic!("the server neither answered nor closed within {LIMIT:?}"),
        }
    }

    /// Frames until a close frame or the end of the connection.
    async fn until_end(&mut self) -> Seen {
        loop {
            match self.next().await {
                Seen::Text(_) => continue,
                end => return end,
            }
        }
    }
}

fn content_length(head: &str) -> Option<usize> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case("content-length")
            .then(|| v.trim().parse().ok())
            .flatten()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_violations_get_their_close_codes_and_others_keep_working() {
    let d = dev().await;
    let mut healthy = Client::connect(&d.ws, "healthy").await;

    // A control frame longer than 125 bytes: protocol error.
    let mut r = Raw::connect(&d.addr, "ctl").await;
    r.frame(true, 0x9, &[0u8; 126], true).await;
    assert_eq!(r.until_end().await, Seen::Close(1002), "long ping");

    // An unmasked client frame: protocol error.
    let mut r = Raw::connect(&d.addr, "unmasked").await;
    r.frame(true, 0x1, br#"{"type":"ping"}"#, false).await;
    assert_eq!(r.until_end().await, Seen::Close(1002), "unmasked");

    // A fragmented message that grows past the message limit: 1009 on the
    // fragment that crosses it. (Nothing is sent after the crossing point,
    // and the oversized single frames below are headers without payloads: a
    // server that closes a socket with unread bytes in it resets the
    // connection, which would hide the close frame from this client.)
    let mut r = Raw::connect(&d.addr, "frag").await;
    r.frame(false, 0x1, &[b' '; 16 * 1024], true).await;
    for _ in 0..4 {
        r.frame(false, 0x0, &[b' '; 16 * 1024], true).await;
    }
    assert_eq!(r.until_end().await, Seen::Close(1009), "fragment flood");

    // A frame header announcing 100 MiB: refused on the header alone.
    let mut r = Raw::connect(&d.addr, "huge").await;
    r.frame_header(true, 0x2, 100 * 1024 * 1024, true).await;
    assert_eq!(r.until_end().await, Seen::Close(1009), "100 MiB frame");

    // A 1 MiB text message (above the 64 KiB default): 1009.
    let mut r = Raw::connect(&d.addr, "mib").await;
    r.frame_header(true, 0x1, 1024 * 1024, true).await;
    assert_eq!(r.until_end().await, Seen::Close(1009), "1 MiB frame");

    // Invalid UTF-8 in a fragmented text message: 1007.
    let mut r = Raw::connect(&d.addr, "utf8").await;
    r.frame(false, 0x1, b"{\"type\":", true).await;
    r.frame(true, 0x0, &[0xc3, 0x28], true).await;
    assert_eq!(r.until_end().await, Seen::Close(1007), "invalid UTF-8");

    // Invalid UTF-8 early in a frame whose rest never comes: 1007 as soon
    // as the bad byte arrives (RFC 6455 fail-fast), not once the frame is
    // complete; a server that waited would leave this client waiting.
    let mut r = Raw::connect(&d.addr, "utf8fast").await;
    r.frame_header(true, 0x1, 1000, true).await;
    r.masked_payload(b"{\"type\":\"\xce\xba\xed\xa0").await;
    assert_eq!(
        r.until_end().await,
        Seen::Close(1007),
        "invalid UTF-8 mid-frame"
    );

    // A continuation frame with nothing to continue: protocol error.
    let mut r = Raw::connect(&d.addr, "cont").await;
    r.frame(true, 0x0, b"x", true).await;
    assert_eq!(r.until_end().await, Seen::Close(1002), "stray continuation");

    // A reserved opcode: protocol error.
    let mut r = Raw::connect(&d.addr, "opcode").await;
    r.frame(true, 0x3, b"x", true).await;
    assert_eq!(r.until_end().await, Seen::Close(1002), "reserved opcode");

    // A ping flood from a client that does not read: closed with 1008 long
    // before its pongs could pile up.
    let mut r = Raw::connect(&d.addr, "pingflood").await;
    for _ in 0..80 {
        r.frame(true, 0x9, &[7u8; 125], true).await;
    }
    assert_eq!(r.until_end().await, Seen::Close(1008), "ping flood");

    healthy.roundtrip("after-protocol-violations").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_json_gets_bad_request_and_the_session_stays() {
    let d = dev().await;
    let mut r = Raw::connect(&d.addr, "json").await;
    let deep = format!("{}{}", "[".repeat(32_000), "]".repeat(32_000));
    let nested = format!(r#"{{"type":"send","to":"bob","data":{deep}}}"#);
    let deep_obj = format!(
        r#"{{"type":"publish","room":"r","data":{}1{}}}"#,
        r#"{"a":"#.repeat(100),
        "}".repeat(100)
    );
    for bad in [
        "{",
        "[]",
        "null",
        r#"{"type":1}"#,
        r#"{"type":"send","to":"bob","data":1,"id":{"x":1}}"#,
        nested.as_str(),
        deep_obj.as_str(),
    ] {
        r.text(bad).await;
        match r.next().await {
            Seen::Text(t) => {
                let v: Value = serde_json::from_str(&t).expect("json");
                assert_eq!(
                    (v["type"].as_str(), v["code"].as_str()),
                    (Some("error"), Some("bad_request")),
                    "{:.60}",
                    bad
                );
            }
            other => panic!("{:.60}: {other:?}", bad),
        }
    }
    // Still serving this very connection.
    r.text(r#"{"type":"ping","id":"p"}"#).await;
    assert_eq!(
        r.next().await,
        Seen::Text(r#"{"type":"pong","id":"p"}"#.into())
    );
}

/// A raw `GET path` (no client-side path normalisation) and its JSON body.
async fn raw_get(addr: &str, path: &str, headers: &str) -> (u16, Value) {
    let (status, mut raw) = Raw::request(addr, path, headers).await;
    let body = raw.body().await;
    (status, body)
}

impl Raw {
    /// Sends `GET path` with `headers` as is (no client-side path
    /// normalisation); returns the status and the connection, positioned
    /// after the response head.
    async fn request(addr: &str, path: &str, headers: &str) -> (u16, Raw) {
        let mut tcp = TcpStream::connect(addr).await.expect("tcp");
        let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{headers}\r\n");
        tcp.write_all(req.as_bytes()).await.expect("write");
        let mut raw = Raw {
            tcp,
            buf: Vec::new(),
            want: None,
        };
        let head = raw.read_head().await;
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad response head {head:?}"));
        raw.want = content_length(&head);
        (status, raw)
    }

    /// The response body (by `content-length`, or up to EOF), as JSON
    /// (`Value::Null` when it is not JSON).
    async fn body(&mut self) -> Value {
        loop {
            if self.want.is_some_and(|n| self.buf.len() >= n) {
                break;
            }
            let mut chunk = [0u8; 4096];
            match timeout(LIMIT, self.tcp.read(&mut chunk)).await {
                Ok(Ok(0)) | Ok(Err(_)) => break,
                Ok(Ok(n)) => self.buf.extend_from_slice(&chunk[..n]),
                Err(_) => panic!("response body not finished within {LIMIT:?}"),
            }
        }
        serde_json::from_slice(&self.buf).unwrap_or(Value::Null)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_upgrades_and_paths_get_json_errors() {
    let d = dev().await;
    let mut healthy = Client::connect(&d.ws, "healthy").await;
    const KEY: &str = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
    const UPGRADE: &str = "Upgrade: websocket\r\nConnection: Upgrade\r\n";
    const PLAIN: &str = "Connection: close\r\n";
    let long_user = format!("/ws?user={}", "u".repeat(5000));
    let cases: Vec<(&str, String, u16)> = vec![
        // No key.
        (
            "/ws?user=a",
            format!("{UPGRADE}Sec-WebSocket-Version: 13\r\n"),
            400,
        ),
        // Unsupported version.
        (
            "/ws?user=a",
            format!("{UPGRADE}Sec-WebSocket-Version: 8\r\n{KEY}"),
            400,
        ),
        // Not an upgrade at all.
        ("/ws?user=a", PLAIN.into(), 400),
        // An oversized user id.
        (
            &long_user,
            format!("{UPGRADE}Sec-WebSocket-Version: 13\r\n{KEY}"),
            400,
        ),
        // A user id with a path in it.
        (
            "/ws?user=..%2F..%2Fetc",
            format!("{UPGRADE}Sec-WebSocket-Version: 13\r\n{KEY}"),
            400,
        ),
        // Path traversal against the dashboard's assets: never a file.
        ("/../../../../etc/passwd", PLAIN.into(), 404),
        ("/%2e%2e/%2e%2e/etc/passwd", PLAIN.into(), 404),
        ("/..%2f..%2fCargo.toml", PLAIN.into(), 404),
        ("/app.js/../../../etc/passwd", PLAIN.into(), 404),
        ("/dashboard/..%5c..%5cCargo.toml", PLAIN.into(), 404),
    ];
    for (path, headers, want) in cases {
        let (status, body) = raw_get(&d.addr, path, &headers).await;
        assert_eq!(status, want, "{path:.60}: {body}");
        assert!(
            body["error"]["code"].is_string() && body["error"]["message"].is_string(),
            "{path:.60}: not a JSON error body: {body}"
        );
    }
    healthy.roundtrip("after-bad-upgrades").await;
}

/// Slowloris and connection floods: silent connections are dropped after the
/// header-read timeout, connections past the cap get a JSON 503 before any
/// upgrade, and a healthy client keeps working and gets in again once
/// slots free up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_time_out_and_the_cap_answers_503() {
    let (_p, ws, base) = common::procs::dev_process(&[
        "--nodes",
        "1",
        "--max-connections",
        "6",
        "--header-read-timeout",
        "1s",
    ])
    .await;
    let addr = base.trim_start_matches("http://").to_owned();
    let mut healthy = Client::connect(&ws, "healthy").await;
    // Open more connections than the gateway's remaining slots at once (the
    // healthy client holds one; readiness checks may hold a keep-alive one).
    let mut conns = Vec::new();
    for _ in 0..10 {
        conns.push(TcpStream::connect(&addr).await.expect("tcp"));
    }
    // Refused ones are answered at once; held ones stay silent.
    let (mut silent, mut refused) = (Vec::new(), Vec::new());
    for mut tcp in conns {
        let mut buf = [0u8; 256];
        match timeout(Duration::from_millis(100), tcp.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => refused.push(String::from_utf8_lossy(&buf[..n]).into_owned()),
            _ => silent.push(tcp),
        }
    }
    assert!(!refused.is_empty(), "connections past the cap are refused");
    for r in &refused {
        assert!(r.starts_with("HTTP/1.1 503"), "{r}");
        assert!(r.contains(r#""code":"unavailable""#), "{r}");
    }
    // The silent ones are dropped after the header-read timeout…
    for mut tcp in silent {
        let mut buf = [0u8; 64];
        let r = timeout(Duration::from_secs(10), tcp.read(&mut buf))
            .await
            .expect("a silent connection is dropped");
        assert!(
            matches!(r, Ok(0) | Err(_)) || buf.starts_with(b"HTTP/1.1 408"),
            "{r:?}"
        );
    }
    // …the healthy client never noticed, and new clients get in again.
    healthy.roundtrip("after-slowloris").await;
    let mut again = Client::connect(&ws, "again").await;
    again.roundtrip("in-again").await;
}

/// A text frame over the message limit (64 KiB) but under the frame limit
/// (128 KiB), whose first bytes are not UTF-8 and whose rest never comes:
/// closed with 1007 at once, not left waiting for the rest of the frame.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_utf8_past_the_message_limit_fails_at_once_with_1007() {
    let d = dev().await;
    let mut healthy = Client::connect(&d.ws, "healthy").await;
    for len in [64 * 1024 + 1, 100 * 1024, 128 * 1024] {
        let mut raw = Raw::connect(&d.addr, "bad-utf8").await;
        raw.frame_header(true, 0x1, len, true).await;
        raw.masked_payload(&[0xff; 64]).await;
        // `fill` panics if nothing comes within its limit.
        assert_eq!(raw.until_end().await, Seen::Close(1007), "{len}");
    }
    healthy.roundtrip("after-utf8").await;
}

/// A client that never answers pings is dropped 2.5 ping periods after it
/// was last heard (5 s at a 2 s interval), as PROTOCOL.md says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_answers_pings_is_dropped_after_two_and_a_half_periods() {
    let (_p, _ws, base) =
        common::procs::dev_process(&["--nodes", "1", "--ping-interval", "2s"]).await;
    let addr = base.trim_start_matches("http://").to_owned();
    let mut raw = Raw::connect(&addr, "silent").await;
    let t0 = std::time::Instant::now();
    assert_eq!(raw.until_end().await, Seen::Eof);
    let took = t0.elapsed();
    // Three periods (6 s) before; a generous margin below that.
    assert!(
        took >= Duration::from_millis(4500) && took < Duration::from_millis(5800),
        "dropped after {took:?}"
    );
}

/// User ids starting with `@` (the server's addresses: `@server`, in any
/// case, with any suffix) are refused at connect and in the API.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_at_prefix_is_reserved_at_connect_and_in_the_api() {
    let d = dev().await;
    let api = Api::new(format!("http://{}", d.addr));
    for user in ["%40SERVER", "%40server.", "%40Server", "%40alice"] {
        let r = Client::try_connect(&format!("{}?user={user}", d.ws)).await;
        let refused = r.err().unwrap_or_else(|| panic!("{user} was admitted"));
        assert_eq!(refused.status, 400, "{user}: {:?}", refused.body);
        assert_eq!(refused.body["error"]["code"], "bad_request", "{user}");
    }
    for to in ["@SERVER", "@server.", "@x"] {
        let (s, body) = api
            .post("/api/send", serde_json::json!({"to": to, "data": 1}))
            .await;
        assert_eq!(s, 400, "{to}: {body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("reserved")),
            "{body}"
        );
    }
    // `@` elsewhere in an id is still fine.
    let mut ok = Client::connect(&d.ws, "alice%40example.com").await;
    ok.roundtrip("at-inside").await;
}

/// API bodies nested deeper than 64 levels are refused with a JSON 400 and
/// never fanned out; a body that trickles in is cut off with 408 after
/// `--body-read-timeout`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_or_slow_api_bodies_are_refused() {
    let (_p, ws, base) =
        common::procs::dev_process(&["--nodes", "1", "--body-read-timeout", "1s"]).await;
    let api = Api::new(base.clone());
    wait_until("1 node", || async { api.node_ids().await.len() == 1 }).await;
    let mut healthy = Client::connect(&ws, "healthy").await;
    let deep = format!("{}1{}", "[".repeat(30_000), "]".repeat(30_000));
    for (path, body) in [
        ("/api/broadcast", format!(r#"{{"data":{deep}}}"#)),
        ("/api/publish", format!(r#"{{"room":"r","data":{deep}}}"#)),
        ("/api/send", format!(r#"{{"to":"healthy","data":{deep}}}"#)),
    ] {
        let (s, v) = api.post_raw(path, body).await;
        assert_eq!(s, 400, "{path}: {v}");
        assert_eq!(v["error"]["code"], "bad_request", "{path}: {v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("nested deeper than 64")),
            "{path}: {v}"
        );
    }
    // Nothing of it reached the healthy client: the next message it gets
    // is the next good broadcast.
    let (s, v) = api
        .post("/api/broadcast", serde_json::json!({"data": "after"}))
        .await;
    assert_eq!(s, 202, "{v}");
    let got = healthy.next().await;
    assert_eq!(got["data"], "after", "{got}");

    // A body announced as 100 bytes, of which 8 ever arrive.
    let addr = base.trim_start_matches("http://");
    let mut tcp = TcpStream::connect(addr).await.expect("tcp");
    let head = format!(
        "POST /api/broadcast HTTP/1.1\r\nHost: {addr}\r\ncontent-type: application/json\r\n\
         content-length: 100\r\n\r\n{{\"data\":"
    );
    tcp.write_all(head.as_bytes()).await.expect("write");
    let t0 = std::time::Instant::now();
    let mut answer = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        match timeout(LIMIT, tcp.read(&mut chunk)).await {
            Err(_) => panic!("no answer within {LIMIT:?}"),
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => {
                answer.extend_from_slice(&chunk[..n]);
                if answer.windows(4).any(|w| w == b"\r\n\r\n") && answer.ends_with(b"}") {
                    break;
                }
            }
        }
    }
    let answer = String::from_utf8_lossy(&answer).into_owned();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains(r#""code":"bad_request""#), "{answer}");
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    healthy.roundtrip("after-slow-body").await;
}

/// Sends `n` pings at once on `c` and reads the answers: (pongs,
/// `rate_limited` errors), until all are answered or the session is closed
/// (a client that ignores 100 refusals in a row is cut off with 1008).
async fn blast(c: &mut Client, n: usize) -> (usize, usize) {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    for i in 0..n {
        let m = Message::text(format!(r#"{{"type":"ping","id":{i}}}"#));
        if c.ws.feed(m).await.is_err() {
            break;
        }
    }
    let _ = c.ws.flush().await;
    let (mut pongs, mut limited) = (0, 0);
    while pongs + limited < n {
        match timeout(LIMIT, c.ws.next()).await {
            Err(_) => panic!("answers stopped coming"),
            Ok(None) | Ok(Some(Err(_))) | Ok(Some(Ok(Message::Close(_)))) => break,
            Ok(Some(Ok(Message::Text(t)))) => {
                let v: Value = serde_json::from_str(t.as_str()).expect("json");
                match v["type"].as_str() {
                    Some("pong") => pongs += 1,
                    Some("error") if v["code"] == "rate_limited" => limited += 1,
                    _ => {}
                }
            }
            Ok(Some(Ok(_))) => {}
        }
    }
    (pongs, limited)
}

/// The per-user rate limit (defaults: 200 messages a second, burst 1,000)
/// holds across reconnects and across many sessions of one user: neither
/// gets more through than one connection would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnecting_or_opening_more_sessions_does_not_escape_the_rate_limit() {
    let d = dev().await;
    // Reconnect after every burst of 1,000.
    let t0 = std::time::Instant::now();
    let (mut pongs, mut limited) = (0, 0);
    for _ in 0..3 {
        let mut c = Client::connect(&d.ws, "reconnector").await;
        let (p, l) = blast(&mut c, 1000).await;
        pongs += p;
        limited += l;
    }
    let bound = 1000.0 + 200.0 * t0.elapsed().as_secs_f64() * 1.1 + 20.0;
    assert!(
        limited > 0,
        "no rate_limited across reconnects ({pongs} answered)"
    );
    assert!((pongs as f64) <= bound, "{pongs} answered, bound {bound}");

    // 8 sessions of one user at once, 250 each.
    let mut crowd = Vec::new();
    for _ in 0..8 {
        crowd.push(Client::connect(&d.ws, "crowd").await);
    }
    let t0 = std::time::Instant::now();
    let results = futures::future::join_all(crowd.iter_mut().map(|c| blast(c, 250))).await;
    let pongs: usize = results.iter().map(|r| r.0).sum();
    let limited: usize = results.iter().map(|r| r.1).sum();
    let bound = 1000.0 + 200.0 * t0.elapsed().as_secs_f64() * 1.1 + 20.0;
    assert!(
        limited > 0,
        "no rate_limited across sessions ({pongs} answered)"
    );
    assert!((pongs as f64) <= bound, "{pongs} answered, bound {bound}");
    // Another user is unaffected.
    let mut other = Client::connect(&d.ws, "bystander").await;
    assert_eq!(blast(&mut other, 100).await, (100, 0));
}
