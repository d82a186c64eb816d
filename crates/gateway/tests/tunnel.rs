//! The gateway's tunnel is byte-transparent once the upgrade is done: a
//! raw TCP client on one side and a raw TCP "node" on the other exchange
//! every kind of WebSocket frame — text, binary, fragments with control
//! frames between them, pings, pongs, close, every length encoding up to
//! 1 MiB, and frames no WebSocket endpoint would accept (reserved bits and
//! opcodes, unmasked client frames, invalid UTF-8) — written in pieces of
//! every size, in both directions at once, and each side receives exactly
//! the bytes the other sent, then the end of the stream.
//!
//! The node is a plain TCP listener registered as member `n1` of an
//! in-memory cluster, so nothing on the node's side interprets the frames
//! either: any difference would be the gateway's doing.

use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use wsring_cluster::memory::MemoryBackend;
use wsring_cluster::{Membership, MembershipConfig, NodeStats, Retention};
use wsring_gateway::GatewayConfig;

/// Bound on every step of the test.
const WAIT: Duration = Duration::from_secs(30);

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// One frame: FIN, RSV bits, opcode, masking key (if masked), payload.
fn frame(fin: bool, rsv: u8, opcode: u8, mask: Option<[u8; 4]>, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![(u8::from(fin) << 7) | ((rsv & 7) << 4) | (opcode & 0x0F)];
    let m = if mask.is_some() { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => out.push(m | n as u8),
        n if n <= 0xFFFF => {
            out.push(m | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(m | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    match mask {
        Some(k) => {
            out.extend_from_slice(&k);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ k[i % 4]));
        }
        None => out.extend_from_slice(payload),
    }
    out
}

/// A deterministic payload of `n` bytes (every byte value occurs).
fn payload(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// Every frame type, length encoding and fragmentation pattern, masked as
/// a client sends them (`mask`) or unmasked as a server does, plus frames
/// a WebSocket endpoint would refuse.
fn all_frames(mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut s = Vec::new();
    // Lengths at every boundary of the 7-bit, 16-bit and 64-bit encodings.
    for (i, n) in [0, 1, 125, 126, 127, 65_535, 65_536, 1 << 20]
        .into_iter()
        .enumerate()
    {
        s.extend(frame(true, 0, 0x1, mask, &"é".repeat(n / 2).into_bytes()));
        s.extend(frame(true, 0, 0x2, mask, &payload(n, i as u8)));
    }
    // Control frames, empty and at their 125-byte limit.
    for op in [0x9, 0xA] {
        s.extend(frame(true, 0, op, mask, b""));
        s.extend(frame(true, 0, op, mask, &payload(125, op)));
    }
    // Fragmented text and binary with pings and pongs between fragments,
    // and a character split across fragments.
    let euro = "€€€".as_bytes();
    s.extend(frame(false, 0, 0x1, mask, &euro[..1]));
    s.extend(frame(true, 0, 0x9, mask, b"between"));
    s.extend(frame(false, 0, 0x0, mask, &euro[1..5]));
    s.extend(frame(true, 0, 0xA, mask, b""));
    s.extend(frame(true, 0, 0x0, mask, &euro[5..]));
    s.extend(frame(false, 0, 0x2, mask, &payload(70_000, 9)));
    for i in 0..20 {
        s.extend(frame(false, 0, 0x0, mask, &payload(i * 13, i as u8)));
    }
    s.extend(frame(true, 0, 0x0, mask, b""));
    // What an endpoint refuses, a tunnel carries: reserved bits, reserved
    // opcodes, a frame masked the wrong way, invalid UTF-8, an oversized
    // and a fragmented control frame, a bad close payload.
    s.extend(frame(true, 0b101, 0x1, mask, b"rsv"));
    s.extend(frame(true, 0, 0x3, mask, b"opcode 3"));
    s.extend(frame(true, 0, 0xB, mask, b"opcode 11"));
    let wrong_mask = match mask {
        Some(_) => None,
        None => Some([1, 2, 3, 4]),
    };
    s.extend(frame(true, 0, 0x2, wrong_mask, b"masked the wrong way"));
    s.extend(frame(true, 0, 0x1, mask, b"\xce\xba\xed\xa0\x80 not UTF-8"));
    s.extend(frame(true, 0, 0x9, mask, &payload(200, 3)));
    s.extend(frame(false, 0, 0x9, mask, b"fragmented ping"));
    s.extend(frame(true, 0, 0x8, mask, &[0x03]));
    // The close handshake, then bytes after it.
    s.extend(frame(true, 0, 0x8, mask, b"\x03\xe8normal closure"));
    s.extend(frame(true, 0, 0x1, mask, b"after close"));
    s.extend_from_slice(b"\x00\xff trailing bytes that are no frame at all");
    s
}

/// Writes `bytes` in pieces of 1, 2, 3, … 4096 bytes (cycling), flushing
/// each, then shuts the write side down.
async fn write_in_pieces<W: AsyncWrite + Unpin>(w: &mut W, bytes: &[u8]) {
    let mut at = 0;
    let mut size = 1;
    while at < bytes.len() {
        let end = (at + size).min(bytes.len());
        w.write_all(&bytes[at..end]).await.expect("write");
        w.flush().await.expect("flush");
        at = end;
        size = if size >= 4096 { 1 } else { size * 2 + 1 };
    }
    w.shutdown().await.expect("shutdown");
}

/// Reads an HTTP head (through the blank line) byte by byte, so nothing
/// after it is consumed.
async fn read_head<R: AsyncRead + Unpin>(r: &mut R) -> String {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let b = r.read_u8().await.expect("HTTP head");
        head.push(b);
        assert!(head.len() < 16 * 1024, "HTTP head too long");
    }
    String::from_utf8(head).expect("ASCII head")
}

/// Both directions at once: `out` written to `io` in pieces while
/// everything the peer sends is read to the end.
async fn exchange(io: TcpStream, out: &[u8]) -> Vec<u8> {
    let (mut r, mut w) = io.into_split();
    let mut got = Vec::new();
    let ((), read) = tokio::join!(write_in_pieces(&mut w, out), r.read_to_end(&mut got));
    read.expect("read to the end");
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tunnel_carries_every_frame_byte_for_byte() {
    let stop = CancellationToken::new();
    let backend = MemoryBackend::new(Retention::default());

    // The "node": a TCP listener that answers the forwarded upgrade itself.
    let node_listener = TcpListener::bind("127.0.0.1:0").await.expect("bind node");
    let node_url = format!("ws://{}/ws", node_listener.local_addr().expect("addr"));
    let node_membership = Membership::start(
        backend.registry.clone(),
        MembershipConfig::default(),
        stop.clone(),
    )
    .await
    .expect("membership");
    node_membership
        .join("n1", &node_url, Arc::new(NodeStats::default))
        .await
        .expect("join");

    let gateway_membership = Membership::start(
        backend.registry.clone(),
        MembershipConfig::default(),
        stop.clone(),
    )
    .await
    .expect("membership");
    gateway_membership
        .wait_for_epoch(node_membership.view().epoch(), WAIT)
        .await;
    let gateway = wsring_gateway::start(
        GatewayConfig::default(),
        TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind gateway"),
        gateway_membership,
        None,
        Arc::new(wsring_auth::Security::open()),
        stop.clone(),
    )
    .await
    .expect("gateway");

    let client_bytes = all_frames(Some([0x12, 0x34, 0x56, 0x78]));
    let node_bytes = all_frames(None);

    let node_side = {
        let node_bytes = node_bytes.clone();
        tokio::spawn(async move {
            let (mut io, _) = node_listener.accept().await.expect("accept");
            let request = read_head(&mut io).await;
            assert!(
                request.starts_with("GET /ws?user=tunnel HTTP/1.1\r\n"),
                "{request}"
            );
            let accept = tungstenite::handshake::derive_accept_key(KEY.as_bytes());
            let answer = format!(
                "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
                 Sec-WebSocket-Accept: {accept}\r\n\r\n"
            );
            io.write_all(answer.as_bytes()).await.expect("answer");
            exchange(io, &node_bytes).await
        })
    };

    let mut client = TcpStream::connect(gateway.addr()).await.expect("connect");
    let request = format!(
        "GET /ws?user=tunnel HTTP/1.1\r\nHost: {}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {KEY}\r\n\r\n",
        gateway.addr()
    );
    client.write_all(request.as_bytes()).await.expect("request");
    let answer = tokio::time::timeout(WAIT, read_head(&mut client))
        .await
        .expect("the gateway answers in time");
    assert!(
        answer.starts_with("HTTP/1.1 101 Switching Protocols\r\n"),
        "{answer}"
    );

    let (to_client, at_node) = tokio::time::timeout(WAIT, async {
        let to_client = exchange(client, &client_bytes).await;
        (to_client, node_side.await.expect("node side"))
    })
    .await
    .expect("both directions finish in time");

    // Compared by length and first difference: a multi-megabyte assert_eq!
    // would drown the report.
    for (what, got, sent) in [
        ("client -> node", &at_node, &client_bytes),
        ("node -> client", &to_client, &node_bytes),
    ] {
        let first_difference = got.iter().zip(sent.iter()).position(|(a, b)| a != b);
        assert_eq!(first_difference, None, "{what}: bytes differ");
        assert_eq!(got.len(), sent.len(), "{what}: lengths differ");
    }
    stop.cancel();
}
