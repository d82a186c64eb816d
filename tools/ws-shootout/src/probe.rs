//! Behaviour probes: a hand-rolled raw WebSocket client that sends exactly the frames we want
//! (oversized, fragmented, invalid UTF-8, binary...) and reports what the server answered.

use std::{net::SocketAddr, time::Duration};

use anyhow::{bail, Context};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    time::timeout,
};

const OP_CONT: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;
const MASK: [u8; 4] = [0x12, 0x34, 0x56, 0x78];
const WAIT: Duration = Duration::from_secs(2);

/// What the server sent back first.
#[derive(Debug)]
enum Got {
    Text,
    Binary,
    Pong,
    Close(Option<u16>),
    Eof,
    Timeout,
    Error(String),
}

impl Got {
    fn describe(&self) -> String {
        match self {
            Got::Text => "reply".into(),
            Got::Binary => "binary reply".into(),
            Got::Pong => "pong".into(),
            Got::Close(Some(c)) => format!("close {c}"),
            Got::Close(None) => "close (no code)".into(),
            Got::Eof => "EOF, no close frame".into(),
            Got::Timeout => format!("nothing in {}s", WAIT.as_secs()),
            Got::Error(e) => format!("error: {e}"),
        }
    }
}

/// A raw client connection after the HTTP upgrade.
struct Raw {
    s: TcpStream,
    buf: Vec<u8>,
}

impl Raw {
    /// Connects and upgrades; returns the connection and the HTTP response head.
    async fn open(addr: SocketAddr, extra_headers: &str) -> anyhow::Result<(Raw, String)> {
        let mut s = timeout(WAIT, TcpStream::connect(addr))
            .await
            .context("connect timeout")??;
        s.set_nodelay(true)?;
        let req = format!(
            "GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
             {extra_headers}\r\n"
        );
        s.write_all(req.as_bytes()).await?;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        // Bounded: a response head larger than 64 KiB or slower than WAIT is an error.
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            if buf.len() > 65536 {
                bail!("response head too large");
            }
            let n = timeout(WAIT, s.read(&mut chunk))
                .await
                .context("handshake timeout")??;
            if n == 0 {
                bail!("EOF during handshake");
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        if !head.starts_with("HTTP/1.1 101") {
            bail!("upgrade refused: {}", head.lines().next().unwrap_or(""));
        }
        buf.drain(..head_end);
        Ok((Raw { s, buf }, head))
    }

    /// Sends one masked frame header announcing `len` bytes (payload follows separately).
    async fn send_header(&mut self, fin: bool, op: u8, len: u64) -> std::io::Result<()> {
        let mut h = vec![(if fin { 0x80 } else { 0 }) | op];
        if len < 126 {
            h.push(0x80 | len as u8);
        } else if len <= u16::MAX as u64 {
            h.push(0x80 | 126);
            h.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            h.push(0x80 | 127);
            h.extend_from_slice(&len.to_be_bytes());
        }
        h.extend_from_slice(&MASK);
        self.s.write_all(&h).await
    }

    /// Sends one complete masked frame.
    async fn send(&mut self, fin: bool, op: u8, payload: &[u8]) -> std::io::Result<()> {
        self.send_header(fin, op, payload.len() as u64).await?;
        let masked: Vec<u8> = payload
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ MASK[i % 4])
            .collect();
        self.s.write_all(&masked).await
    }

    async fn fill(&mut self, want: usize) -> Result<(), Got> {
        let mut chunk = [0u8; 8192];
        while self.buf.len() < want {
            match timeout(WAIT, self.s.read(&mut chunk)).await {
                Err(_) => return Err(Got::Timeout),
                Ok(Err(e)) => return Err(Got::Error(e.kind().to_string())),
                Ok(Ok(0)) => return Err(Got::Eof),
                Ok(Ok(n)) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
        Ok(())
    }

    /// Reads the next frame from the server (at most `WAIT` per read).
    async fn recv(&mut self) -> Got {
        match self.recv_inner().await {
            Ok(g) | Err(g) => g,
        }
    }

    async fn recv_inner(&mut self) -> Result<Got, Got> {
        self.fill(2).await?;
        let op = self.buf[0] & 0x0F;
        let masked = self.buf[1] & 0x80 != 0;
        let mut len = (self.buf[1] & 0x7F) as u64;
        let mut off = 2;
        if len == 126 {
            self.fill(4).await?;
            len = u16::from_be_bytes([self.buf[2], self.buf[3]]) as u64;
            off = 4;
        } else if len == 127 {
            self.fill(10).await?;
            len = u64::from_be_bytes(self.buf[2..10].try_into().expect("8 bytes"));
            off = 10;
        }
        if masked {
            off += 4;
        }
        let total = off + len as usize;
        self.fill(total).await?;
        let payload: Vec<u8> = self.buf[off..total].to_vec();
        self.buf.drain(..total);
        Ok(match op {
            OP_TEXT | OP_CONT => Got::Text,
            OP_BINARY => Got::Binary,
            OP_PONG => Got::Pong,
            OP_CLOSE if payload.len() >= 2 => {
                Got::Close(Some(u16::from_be_bytes([payload[0], payload[1]])))
            }
            OP_CLOSE => Got::Close(None),
            other => Got::Error(format!("opcode {other:#x}")),
        })
    }
}

/// JSON RPC request padded to exactly `len` bytes (len ≥ 40).
fn rpc_of_len(len: usize) -> Vec<u8> {
    let head = r#"{"op":"rpc","id":1,"t":0,"body":""#;
    let tail = r#""}"#;
    let mut v = head.as_bytes().to_vec();
    v.resize(len - tail.len(), b'x');
    v.extend_from_slice(tail.as_bytes());
    v
}

/// One probe's name, the behaviour wsring wants, and what was observed.
pub struct ProbeResult {
    pub name: &'static str,
    pub want: &'static str,
    pub got: String,
}

impl ProbeResult {
    /// Whether the observation matches the wanted behaviour.
    pub fn ok(&self) -> bool {
        self.got == self.want
    }
}

/// Runs every probe against the server at `addr` whose `max_msg` is known.
pub async fn run_probes(addr: SocketAddr, pid: u32, max: usize) -> Vec<ProbeResult> {
    let mut out = Vec::new();
    let mut push = |name, want, got: anyhow::Result<String>| {
        out.push(ProbeResult {
            name,
            want,
            got: got.unwrap_or_else(|e| format!("error: {e:#}")),
        })
    };

    push(
        "small rpc (sanity)",
        "reply",
        one_shot(addr, |r| {
            Box::pin(async move { r.send(true, OP_TEXT, &rpc_of_len(100)).await })
        })
        .await,
    );

    push(
        "text of exactly max bytes",
        "reply",
        one_shot(addr, move |r| {
            Box::pin(async move { r.send(true, OP_TEXT, &rpc_of_len(max)).await })
        })
        .await,
    );

    push(
        "text of max+1 bytes, one frame",
        "close 1009",
        one_shot(addr, move |r| {
            Box::pin(async move { r.send(true, OP_TEXT, &rpc_of_len(max + 1)).await })
        })
        .await,
    );

    push(
        "3 fragments of 0.45*max (1.35*max total)",
        "close 1009",
        one_shot(addr, move |r| {
            Box::pin(async move {
                let whole = rpc_of_len(max * 135 / 100);
                let third = whole.len() / 3;
                r.send(false, OP_TEXT, &whole[..third]).await?;
                r.send(false, OP_CONT, &whole[third..2 * third]).await?;
                r.send(true, OP_CONT, &whole[2 * third..]).await
            })
        })
        .await,
    );

    push(
        "header announces 1 GiB, no payload sent",
        "close 1009",
        one_shot(addr, |r| {
            Box::pin(async move { r.send_header(true, OP_TEXT, 1 << 30).await })
        })
        .await,
    );

    push(
        "invalid UTF-8 in one text frame",
        "close 1007",
        one_shot(addr, |r| {
            Box::pin(async move {
                r.send(true, OP_TEXT, b"{\"op\":\"rpc\",\"x\":\"\xC3\x28\"}")
                    .await
            })
        })
        .await,
    );

    push(
        "invalid UTF-8 split across fragments",
        "close 1007",
        one_shot(addr, |r| {
            Box::pin(async move {
                r.send(false, OP_TEXT, b"{\"op\":\"rpc\",\"x\":\"\xC3")
                    .await?;
                r.send(true, OP_CONT, b"\x28\"}").await
            })
        })
        .await,
    );

    push(
        "binary frame, then rpc on same conn",
        "reply",
        async {
            let (mut r, _) = Raw::open(addr, "").await?;
            r.send(true, OP_BINARY, &[1, 2, 3, 4]).await?;
            r.send(true, OP_TEXT, &rpc_of_len(100)).await?;
            Ok(r.recv().await.describe())
        }
        .await,
    );

    push(
        "ping answered with pong",
        "pong",
        one_shot(addr, |r| {
            Box::pin(async move { r.send(true, OP_PING, b"hi").await })
        })
        .await,
    );

    push(
        "process alive + new conn rpc after all above",
        "reply",
        async {
            if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
                return Ok("server process gone".to_owned());
            }
            let (mut r, _) = Raw::open(addr, "").await?;
            r.send(true, OP_TEXT, &rpc_of_len(100)).await?;
            Ok(r.recv().await.describe())
        }
        .await,
    );

    push(
        "permessage-deflate negotiated",
        "yes",
        async {
            let (_r, head) = Raw::open(
                addr,
                "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n",
            )
            .await?;
            let neg = head.to_ascii_lowercase().contains("permessage-deflate");
            Ok(if neg { "yes" } else { "no" }.to_owned())
        }
        .await,
    );

    out
}

type Step<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = std::io::Result<()>> + Send + 'a>>;

/// Opens a connection, runs `send`, and describes the first frame the server sends back.
async fn one_shot<F>(addr: SocketAddr, send: F) -> anyhow::Result<String>
where
    F: for<'a> FnOnce(&'a mut Raw) -> Step<'a>,
{
    let (mut r, _) = Raw::open(addr, "").await?;
    if let Err(e) = send(&mut r).await {
        // The server may close before we finish writing; still report what it sent.
        let got = r.recv().await;
        return Ok(format!("{} (write failed: {})", got.describe(), e.kind()));
    }
    Ok(r.recv().await.describe())
}
