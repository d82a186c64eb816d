//! One stalled reader must not hurt anyone else or grow the node: a room of
//! 100 members, one of which stops reading its socket, while 100,000 room
//! messages flow (published by a client outside the room). The healthy 99
//! receive every message exactly once and in order; the stalled one is closed with 1008 once its per-session byte
//! budget (1 MiB by default) is full; the node's resident memory stays under
//! its baseline plus [`RSS_BOUND_MIB`].
//!
//! The frame cap (`--session-queue`) is raised far above the message count
//! so that the byte budget, not the frame count, is what closes the stalled
//! session. Messages carry a 2,000-byte payload, so the stalled member's
//! budget fills within seconds. `WSRING_STALL_MESSAGES=N` changes the count.
//! The publisher is a high-rate producer, so the per-connection rate limits
//! are lifted (`--client-messages-per-sec 0 --client-bytes-per-sec 0`, and the
//! same per user).

mod common;

use common::procs::Proc;
use futures::{SinkExt, StreamExt};
use serde_json::json;
use std::time::Duration;
use tokio_tungstenite::connect_async;
use tokio_tungstenite::tungstenite::Message;

const MEMBERS: usize = 100;
const MESSAGES_DEFAULT: u64 = 100_000;
const WINDOW: u64 = 500;
/// Payload padding per message: large enough that the stalled member's
/// budget fills within seconds, well before the 10 s write-stall cut-off.
const PAD: usize = 2000;
/// The stated bound on the node's memory growth while the stalled reader
/// sits on its full budget and 99 healthy readers drain 100,000 messages:
/// one budget (1 MiB) plus its write buffer for the stalled session, the
/// healthy sessions' in-flight queues, allocator slack.
const RSS_BOUND_MIB: u64 = 64;

fn rss_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_reader_is_closed_and_costs_nothing_else() {
    #[allow(non_snake_case)]
    let MESSAGES: u64 = std::env::var("WSRING_STALL_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(MESSAGES_DEFAULT);
    let dev = Proc::start_until(
        &[
            "dev",
            "--port",
            "0",
            "--nodes",
            "1",
            "--session-queue",
            "1000000",
            "--client-messages-per-sec",
            "0",
            "--client-bytes-per-sec",
            "0",
            "--user-messages-per-sec",
            "0",
            "--user-bytes-per-sec",
            "0",
        ],
        "node n1",
    )
    .await;
    let node_ws = dev.announced().to_owned();
    let pid = dev.pid();
    let room = "big";

    // The stalled member joins, sees its ack, and never reads again. A
    // small receive buffer keeps the kernel from absorbing megabytes on its
    // behalf, so the node's own byte budget is what fills.
    let addr: std::net::SocketAddr = node_ws
        .trim_start_matches("ws://")
        .trim_end_matches("/ws")
        .parse()
        .expect("node address");
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    let tcp = socket.connect(addr).await.expect("tcp connect");
    let (mut stalled, _) = tokio_tungstenite::client_async(format!("{node_ws}?user=stalled"), tcp)
        .await
        .expect("stalled connect");
    stalled
        .send(Message::text(
            json!({"type":"join","room":room,"id":"j"}).to_string(),
        ))
        .await
        .expect("join");
    loop {
        match stalled.next().await {
            Some(Ok(Message::Text(t))) if t.contains("\"ack\"") => break,
            Some(Ok(_)) => {}
            other => panic!("join of the stalled member: {other:?}"),
        }
    }

    eprintln!("stall: stalled member joined");
    // 99 healthy members count what they get, in order.
    let mut readers = Vec::new();
    for i in 0..MEMBERS - 1 {
        let (mut ws, _) = connect_async(format!("{node_ws}?user=h{i}").as_str())
            .await
            .expect("connect");
        ws.send(Message::text(
            json!({"type":"join","room":room,"id":"j"}).to_string(),
        ))
        .await
        .expect("join");
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) if t.contains("\"ack\"") => break,
                Some(Ok(_)) => {}
                other => panic!("join of h{i}: {other:?}"),
            }
        }
        readers.push(tokio::spawn(async move {
            let mut next = 1u64;
            while next <= MESSAGES {
                match tokio::time::timeout(Duration::from_secs(30), ws.next()).await {
                    Ok(Some(Ok(Message::Text(t)))) => {
                        let Some(n) = t
                            .split_once("\"n\":")
                            .and_then(|(_, rest)| rest.split(|c: char| !c.is_ascii_digit()).next())
                            .and_then(|d| d.parse::<u64>().ok())
                        else {
                            continue;
                        };
                        assert_eq!(n, next, "h{i}: message {n} arrived when {next} was due");
                        next += 1;
                    }
                    Ok(Some(Ok(_))) => {}
                    other => panic!("h{i} stopped receiving at {next}: {other:?}"),
                }
            }
            next - 1
        }));
    }
    let (mut publisher, _) = connect_async(format!("{node_ws}?user=publisher").as_str())
        .await
        .expect("connect publisher");
    let baseline = rss_kib(pid);
    let mut peak = baseline;
    eprintln!("stall: {} members joined, publishing", MEMBERS);

    // Once the node reports the slow consumer, the stalled client reads
    // again: the node waits a bounded time (10 s) for a stalled peer to take
    // the close frame before it drops the connection.
    let metrics = format!(
        "{}/metrics",
        node_ws.replace("ws://", "http://").trim_end_matches("/ws")
    );
    let stalled_end = tokio::spawn(async move {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(600);
        loop {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the stalled member was never closed as a slow consumer"
            );
            let body = common::http()
                .get(&metrics)
                .send()
                .await
                .expect("metrics")
                .text()
                .await
                .expect("body");
            let kicked = body
                .lines()
                .any(|l| l.starts_with("wsring_slow_consumers_total") && !l.ends_with(" 0"));
            if kicked {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Read what the socket holds, then the close frame.
        let mut frames = 0u64;
        loop {
            match tokio::time::timeout(Duration::from_secs(15), stalled.next()).await {
                Ok(Some(Ok(Message::Text(_)))) => frames += 1,
                Ok(Some(Ok(Message::Close(f)))) => {
                    return (frames, f.map(|f| (u16::from(f.code), f.reason.to_string())));
                }
                Ok(Some(Ok(_))) => {}
                other => panic!("stalled member after {frames} frames: {other:?}"),
            }
        }
    });

    // The publisher is not a member (publishing needs no membership): it
    // keeps a window of publishes in flight and reads their acks.
    let pad = "x".repeat(PAD);
    let mut sent = 0u64;
    let mut acked = 0u64;
    while acked < MESSAGES {
        while sent < MESSAGES && sent - acked < WINDOW {
            sent += 1;
            publisher
                .feed(Message::text(
                    json!({"type":"publish","room":room,"data":{"n":sent,"p":pad},"id":sent.to_string()})
                        .to_string(),
                ))
                .await
                .expect("publish");
        }
        publisher.flush().await.expect("flush");
        // Read acks until half the window is free (or, at the end, all of them).
        while acked < MESSAGES && (sent - acked >= WINDOW / 2 || sent == MESSAGES) {
            match tokio::time::timeout(Duration::from_secs(30), publisher.next()).await {
                Ok(Some(Ok(Message::Text(t)))) if t.contains("\"type\":\"ack\"") => acked += 1,
                Ok(Some(Ok(Message::Text(t)))) if t.contains("\"type\":\"welcome\"") => {}
                Ok(Some(Ok(Message::Text(t)))) => panic!("publisher got an unexpected frame: {t}"),
                Ok(Some(Ok(_))) => {}
                other => panic!("publisher: {other:?} after {acked} acks"),
            }
        }
        if sent % 5_000 < WINDOW {
            peak = peak.max(rss_kib(pid));
            eprintln!("stall: {sent} sent, {acked} acked");
        }
    }
    for r in readers {
        let got = r.await.expect("reader");
        assert_eq!(got, MESSAGES, "a healthy member got everything");
        peak = peak.max(rss_kib(pid));
    }

    // The stalled member was closed with 1008 after what its socket held.
    let (frames, end) = stalled_end.await.expect("stalled client");
    assert_eq!(
        end,
        Some((1008, "slow consumer".to_owned())),
        "after {frames} buffered frames"
    );
    assert!(
        frames < MESSAGES,
        "the stalled member was cut off, not fed everything"
    );
    let growth_mib = peak.saturating_sub(baseline) / 1024;
    println!(
        "stall: {MESSAGES} messages to {MEMBERS} members; node RSS baseline {} MiB, peak {} MiB (+{growth_mib} MiB, bound {RSS_BOUND_MIB} MiB); the stalled member read {} frames before its 1008",
        baseline / 1024,
        peak / 1024,
        frames
    );
    assert!(
        growth_mib <= RSS_BOUND_MIB,
        "node RSS grew by {growth_mib} MiB (bound {RSS_BOUND_MIB} MiB)"
    );
    let w = dev.warnings();
    assert!(w.is_empty(), "{w:#?}");
}
