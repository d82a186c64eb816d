//! The inbound half of permessage-deflate: [`Inflate`] sits between the
//! connection and whatever reads WebSocket frames from it (tungstenite, or
//! the node's UTF-8 guard first), follows the peer's frames as their bytes
//! arrive, and rewrites every compressed message (RSV1 on its first frame)
//! into plain frames of its inflated bytes, which the reader then takes as
//! if the peer had sent them uncompressed. It serves both ends
//! ([`Peer`]): a server reads masked frames from its clients, a client
//! unmasked frames from its server; rewritten frames keep that masking.
//!
//! * Inflated bytes go out as they come, in non-final frames of at most
//!   [`CHUNK`] bytes (with a zero mask when the peer masks), and an empty
//!   final frame ends the message. The whole message is never held here,
//!   and tungstenite's message limit applies to the inflated size as to
//!   any other (1009): once a message has inflated past the limit, the
//!   rest of its compressed bytes are dropped, bounding what a small
//!   compressed message can blow up into.
//! * Uncompressed frames, control frames and anything tungstenite will
//!   refuse itself (RSV1 on a control or continuation frame, reserved bits,
//!   frames masked the wrong way) pass through unchanged, so its errors
//!   and close codes stand.
//! * Compressed bytes that do not inflate fail the connection: a frame with
//!   a reserved bit set is handed on in their place, which tungstenite
//!   answers with close 1002, and whatever follows is dropped.
//! * Without context takeover by the peer the inflater exists only while a
//!   compressed message is being read; between messages this layer holds
//!   nothing but a few bytes of frame state.
//! * A client's layer starts before the opening handshake
//!   ([`Inflate::client`]): it hands on the server's response up to the
//!   end of its head and not a byte further, so the handshake reader keeps
//!   nothing of the frames that follow, and it inflates from there once
//!   told what the response agreed on ([`Inflate::agree`]).
//!
//! Writes pass through untouched.

use flate2::{Decompress, FlushDecompress, Status};
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::TAIL;

/// Inflated bytes per rewritten frame.
pub const CHUNK: usize = 16 * 1024;

/// Raw bytes read from the connection at a time.
const READ: usize = 4 * 1024;

/// A ping frame with RSV2 set: what tungstenite is handed in place of
/// bytes that do not inflate, so it fails the connection with 1002.
const BROKEN: [u8; 6] = [0xA9, 0x80, 0, 0, 0, 0];

/// Whose frames an [`Inflate`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    /// A client's: masked, as RFC 6455 requires of clients (the server's
    /// layer).
    Client,
    /// A server's: unmasked (the client's layer).
    Server,
}

/// The connection `T` with the peer's compressed messages inflated (see
/// the module docs).
pub struct Inflate<T> {
    io: T,
    /// `None`: deflate was not negotiated; everything passes through.
    state: Option<Box<State>>,
    /// A client's layer before the end of the response head: how many
    /// bytes of `\r\n\r\n` the last ones matched.
    head: Option<u8>,
    /// Bytes read past the response head, not yet handed on.
    early: Vec<u8>,
    /// The first bytes of the response head (its status line's start), to
    /// tell an upgrade from a refusal.
    status: Vec<u8>,
}

/// Where the reader is in the client's frames.
struct State {
    /// Header bytes of the frame being read, until complete.
    header: [u8; 14],
    have: usize,
    /// Payload bytes of the current frame still to come.
    left: u64,
    /// The peer masks its frames (a client's), and rewritten frames are
    /// masked too.
    masked: bool,
    /// The current frame's mask and the offset into it.
    mask: [u8; 4],
    mask_at: usize,
    /// The current frame passes through (else it is inflated).
    pass: bool,
    /// The current frame is the last of its message.
    fin: bool,
    /// A compressed message is open (its first frame has been read).
    compressed: bool,
    /// The opcode of the open compressed message, until its first
    /// rewritten frame carried it.
    opcode: Option<u8>,
    /// Bytes the open message has inflated to.
    inflated: usize,
    inflater: Option<Box<Decompress>>,
    /// The client keeps its context: the inflater persists.
    takeover: bool,
    /// Past this many inflated bytes a message's remainder is dropped.
    limit: usize,
    /// Rewritten bytes not yet handed on, from `out_at`.
    out: Vec<u8>,
    out_at: usize,
    /// Inflating failed: everything from now on is dropped.
    broken: bool,
}

impl<T> Inflate<T> {
    /// Everything passes through.
    pub fn plain(io: T) -> Inflate<T> {
        Inflate {
            io,
            state: None,
            head: None,
            early: Vec::new(),
            status: Vec::new(),
        }
    }

    /// `peer`'s compressed messages are inflated; the peer keeps its
    /// context if `takeover`; messages past `limit` inflated bytes are cut
    /// short.
    pub fn deflate(io: T, peer: Peer, takeover: bool, limit: usize) -> Inflate<T> {
        Inflate {
            io,
            state: Some(State::new(peer, takeover, limit)),
            head: None,
            early: Vec::new(),
            status: Vec::new(),
        }
    }

    /// A client's layer before its opening handshake: reads stop at the end
    /// of the server's response head, and everything passes through until
    /// [`Inflate::agree`] says whether deflate was negotiated.
    pub fn client(io: T) -> Inflate<T> {
        Inflate {
            io,
            state: None,
            head: Some(0),
            early: Vec::new(),
            status: Vec::new(),
        }
    }

    /// After the handshake of a layer made by [`Inflate::client`]: the
    /// server's compressed messages are inflated from now on if `agreed`
    /// (`Some(takeover)`: whether the server keeps its context), with
    /// messages past `limit` inflated bytes cut short.
    pub fn agree(&mut self, agreed: Option<bool>, limit: usize) {
        if let Some(takeover) = agreed {
            self.state = Some(State::new(Peer::Server, takeover, limit));
        }
    }

    /// Whether an inflater is held right now.
    pub fn holds_inflater(&self) -> bool {
        self.state.as_ref().is_some_and(|s| s.inflater.is_some())
    }

    /// The connection.
    pub fn get_ref(&self) -> &T {
        &self.io
    }
}

impl State {
    fn new(peer: Peer, takeover: bool, limit: usize) -> Box<State> {
        Box::new(State {
            header: [0; 14],
            have: 0,
            left: 0,
            masked: peer == Peer::Client,
            mask: [0; 4],
            mask_at: 0,
            pass: true,
            fin: true,
            compressed: false,
            opcode: None,
            inflated: 0,
            inflater: None,
            takeover,
            limit,
            out: Vec::new(),
            out_at: 0,
            broken: false,
        })
    }
}

/// The header length once its first two bytes are known.
fn header_len(b1: u8) -> usize {
    let ext = match b1 & 0x7f {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    2 + ext + if b1 & 0x80 != 0 { 4 } else { 0 }
}

/// Appends a frame header for `len` payload bytes, masked (with a zero
/// mask) if `masked`.
fn push_header(out: &mut Vec<u8>, masked: bool, fin: bool, opcode: u8, len: usize) {
    let m = if masked { 0x80 } else { 0 };
    out.push(if fin { 0x80 } else { 0 } | opcode);
    if len < 126 {
        out.push(m | len as u8);
    } else if len <= 0xffff {
        out.push(m | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(m | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    if masked {
        out.extend_from_slice(&[0; 4]);
    }
}

impl State {
    /// Takes raw bytes from the connection, appending what tungstenite
    /// should read to `out`.
    fn feed(&mut self, mut raw: &[u8]) {
        while !raw.is_empty() && !self.broken {
            if self.left == 0 {
                // Reading a header (a payload being read has bytes left:
                // empty ones end as their header does).
                let need = if self.have < 2 {
                    2
                } else {
                    header_len(self.header[1])
                };
                let take = (need - self.have).min(raw.len());
                self.header[self.have..self.have + take].copy_from_slice(&raw[..take]);
                self.have += take;
                raw = &raw[take..];
                if self.have >= 2 && self.have == header_len(self.header[1]) {
                    self.start_frame();
                }
                continue;
            }
            // Reading a payload.
            let take = (self.left.min(raw.len() as u64)) as usize;
            let (chunk, rest) = raw.split_at(take);
            raw = rest;
            self.left -= take as u64;
            if self.pass {
                self.out.extend_from_slice(chunk);
            } else {
                if self.masked {
                    let mut plain = chunk.to_vec();
                    for b in &mut plain {
                        *b ^= self.mask[self.mask_at];
                        self.mask_at = (self.mask_at + 1) % 4;
                    }
                    self.inflate(&plain);
                } else {
                    self.inflate(chunk);
                }
            }
            if self.left == 0 {
                self.end_frame();
            }
        }
    }

    /// The header is complete: decides what to do with the frame.
    fn start_frame(&mut self) {
        let h = &self.header[..self.have];
        let (b0, b1) = (h[0], h[1]);
        let len = match b1 & 0x7f {
            126 => u64::from(u16::from_be_bytes([h[2], h[3]])),
            127 => u64::from_be_bytes([h[2], h[3], h[4], h[5], h[6], h[7], h[8], h[9]]),
            n => u64::from(n),
        };
        let masked = b1 & 0x80 != 0;
        let opcode = b0 & 0x0f;
        let (fin, rsv1, rsv23) = (b0 & 0x80 != 0, b0 & 0x40 != 0, b0 & 0x30 != 0);
        let inflate = masked == self.masked
            && !rsv23
            && match opcode {
                // A new message, compressed, none open.
                1 | 2 => rsv1 && !self.compressed,
                // The next fragment of an open compressed message.
                0 => !rsv1 && self.compressed,
                _ => false,
            };
        if inflate {
            if opcode != 0 {
                self.compressed = true;
                self.opcode = Some(opcode);
                self.inflated = 0;
            }
            self.pass = false;
            self.fin = fin;
            if masked {
                self.mask.copy_from_slice(&h[h.len() - 4..]);
            }
            self.mask_at = 0;
        } else {
            self.pass = true;
            self.out.extend_from_slice(h);
        }
        self.have = 0;
        self.left = len;
        if len == 0 {
            self.end_frame();
        }
    }

    /// The current frame's payload is complete.
    fn end_frame(&mut self) {
        if self.pass || !self.fin {
            return;
        }
        self.inflate(&TAIL);
        // An empty final frame ends the rewritten message.
        let opcode = self.opcode.take().unwrap_or(0);
        if !self.broken {
            push_header(&mut self.out, self.masked, true, opcode, 0);
        }
        self.compressed = false;
        if !self.takeover {
            self.inflater = None;
        }
        self.pass = true;
    }

    /// Inflates `input` (unmasked payload bytes of the open message) into
    /// rewritten frames.
    fn inflate(&mut self, mut input: &[u8]) {
        if self.broken || self.inflated > self.limit {
            return;
        }
        let d = self
            .inflater
            .get_or_insert_with(|| Box::new(Decompress::new(false)));
        let mut buf = Vec::with_capacity(CHUNK);
        loop {
            buf.clear();
            let (in0, out0) = (d.total_in(), d.total_out());
            let r = d.decompress_vec(input, &mut buf, FlushDecompress::Sync);
            let used = (d.total_in() - in0) as usize;
            let made = (d.total_out() - out0) as usize;
            input = &input[used..];
            match r {
                // A deflate stream never ends inside a message: a final
                // block is not what RFC 7692 senders produce, but it is
                // valid deflate, so what follows it cannot be read.
                Ok(Status::StreamEnd) if !input.is_empty() => {
                    self.fail();
                    return;
                }
                Ok(_) => {}
                Err(_) => {
                    self.fail();
                    return;
                }
            }
            if made > 0 {
                let opcode = self.opcode.take().unwrap_or(0);
                push_header(&mut self.out, self.masked, false, opcode, made);
                self.out.extend_from_slice(&buf);
                self.inflated += made;
                if self.inflated > self.limit {
                    // tungstenite refuses the message (1009) on these
                    // bytes; the rest is not worth inflating.
                    return;
                }
            }
            if input.is_empty() && made < CHUNK {
                return;
            }
            if used == 0 && made == 0 {
                return;
            }
        }
    }

    fn fail(&mut self) {
        self.broken = true;
        self.inflater = None;
        self.out.extend_from_slice(&BROKEN);
    }
}

/// The start of an upgrade's status line.
const STATUS_101: &[u8] = b"HTTP/1.1 101";

impl<T: AsyncRead + Unpin> Inflate<T> {
    /// A read of the server's response head: never past its end (the
    /// blank line), so the handshake reader keeps no frame bytes; what a
    /// read brought beyond it waits in `early`.
    fn poll_head(
        &mut self,
        mut matched: u8,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        const END: &[u8; 4] = b"\r\n\r\n";
        let mut raw = [0u8; READ];
        let want = buf.remaining().min(READ);
        let mut rb = ReadBuf::new(&mut raw[..want]);
        ready!(Pin::new(&mut self.io).poll_read(cx, &mut rb))?;
        let got = rb.filled();
        let mut end = got.len();
        for (i, &b) in got.iter().enumerate() {
            matched = if b == END[usize::from(matched)] {
                matched + 1
            } else {
                u8::from(b == b'\r')
            };
            if usize::from(matched) == END.len() {
                end = i + 1;
                break;
            }
        }
        let room = STATUS_101.len().saturating_sub(self.status.len());
        self.status.extend_from_slice(&got[..end.min(room)]);
        if usize::from(matched) == END.len() && !self.status.starts_with(STATUS_101) {
            // A refusal (401, 503, …): no frames follow, and its body is
            // the reason the caller reports, so it is handed on with the
            // head as the server sent it.
            buf.put_slice(got);
            self.head = None;
            return Poll::Ready(Ok(()));
        }
        buf.put_slice(&got[..end]);
        if usize::from(matched) == END.len() {
            self.head = None;
            self.early = got[end..].to_vec();
        } else {
            self.head = Some(matched);
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Inflate<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(matched) = this.head {
            return this.poll_head(matched, cx, buf);
        }
        let early = std::mem::take(&mut this.early);
        let Some(state) = this.state.as_deref_mut() else {
            if early.is_empty() {
                return Pin::new(&mut this.io).poll_read(cx, buf);
            }
            let n = early.len().min(buf.remaining());
            buf.put_slice(&early[..n]);
            this.early = early[n..].to_vec();
            return Poll::Ready(Ok(()));
        };
        state.feed(&early);
        loop {
            if state.out_at < state.out.len() {
                let n = (state.out.len() - state.out_at).min(buf.remaining());
                buf.put_slice(&state.out[state.out_at..state.out_at + n]);
                state.out_at += n;
                if state.out_at == state.out.len() {
                    // Nothing kept between reads.
                    state.out = Vec::new();
                    state.out_at = 0;
                }
                return Poll::Ready(Ok(()));
            }
            let mut raw = [0u8; READ];
            let mut rb = ReadBuf::new(&mut raw);
            ready!(Pin::new(&mut this.io).poll_read(cx, &mut rb))?;
            if rb.filled().is_empty() {
                // End of the connection.
                return Poll::Ready(Ok(()));
            }
            state.feed(rb.filled());
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Inflate<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const HEAD: &[u8] =
        b"HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n";

    /// A server's (unmasked) frame.
    fn server_frame(first: u8, payload: &[u8]) -> Vec<u8> {
        assert!(payload.len() < 126);
        [&[first, payload.len() as u8][..], payload].concat()
    }

    /// Reads what the layer hands on until `n` bytes came.
    async fn read_n<T: AsyncRead + Unpin>(layer: &mut Inflate<T>, n: usize) -> Vec<u8> {
        let mut out = vec![0; n];
        layer.read_exact(&mut out).await.expect("read");
        out
    }

    #[tokio::test]
    async fn a_refusal_is_handed_on_with_its_body() {
        let wire: &[u8] =
            b"HTTP/1.1 401 Unauthorized\r\ncontent-length: 17\r\n\r\n{\"error\":\"gone\"}";
        let (mut server, client) = tokio::io::duplex(64 * 1024);
        server.write_all(wire).await.expect("write");
        let mut layer = Inflate::client(client);
        let mut buf = vec![0u8; 4096];
        let n = layer.read(&mut buf).await.expect("read");
        assert_eq!(&buf[..n], wire, "the head and the body in one read");
    }

    #[tokio::test]
    async fn a_client_reads_the_head_alone_then_inflated_frames() {
        let text = b"{\"type\":\"message\",\"text\":\"hello hello hello hello\"}";
        let z = crate::compress(15, text);
        let mut wire = HEAD.to_vec();
        wire.extend(server_frame(0xC1, &z));
        wire.extend(server_frame(0x81, b"plain"));
        let (mut server, client) = tokio::io::duplex(64 * 1024);
        // All of it arrives at once: the head read must not take more.
        server.write_all(&wire).await.expect("write");
        let mut layer = Inflate::client(client);
        let mut buf = vec![0u8; 4096];
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let n = layer.read(&mut buf).await.expect("read");
            assert!(n > 0);
            head.extend_from_slice(&buf[..n]);
        }
        assert_eq!(head, HEAD, "nothing past the head");
        layer.agree(Some(false), 1 << 20);
        // The compressed message comes back as an unmasked data frame of
        // its text and an empty final frame.
        let got = read_n(&mut layer, 2 + text.len() + 2).await;
        assert_eq!(got[0], 0x01, "text, not final");
        assert_eq!(usize::from(got[1]), text.len(), "unmasked");
        assert_eq!(&got[2..2 + text.len()], text);
        assert_eq!(&got[2 + text.len()..], [0x80, 0x00]);
        assert!(!layer.holds_inflater(), "no inflater between messages");
        assert_eq!(read_n(&mut layer, 7).await, server_frame(0x81, b"plain"));
    }

    #[tokio::test]
    async fn a_head_split_anywhere_is_found_and_without_deflate_all_passes() {
        let mut wire = HEAD.to_vec();
        wire.extend(server_frame(0x81, b"after"));
        let (mut server, client) = tokio::io::duplex(64);
        let writer = tokio::spawn(async move {
            for b in wire {
                server.write_all(&[b]).await.expect("write");
            }
            server
        });
        let mut layer = Inflate::client(client);
        let head = read_n(&mut layer, HEAD.len()).await;
        assert_eq!(head, HEAD);
        layer.agree(None, 1 << 20);
        assert_eq!(read_n(&mut layer, 7).await, server_frame(0x81, b"after"));
        drop(writer.await.expect("writer"));
    }

    #[tokio::test]
    async fn with_server_context_takeover_the_inflater_keeps_the_history() {
        let msg = b"{\"type\":\"message\",\"text\":\"the same words again\"}";
        let mut c = crate::compressor(15);
        let first = crate::compress_with(&mut c, msg);
        let second = crate::compress_with(&mut c, msg);
        let mut wire = server_frame(0xC1, &first);
        wire.extend(server_frame(0xC1, &second));
        let (mut server, client) = tokio::io::duplex(64 * 1024);
        server.write_all(&wire).await.expect("write");
        let mut layer = Inflate::deflate(client, Peer::Server, true, 1 << 20);
        for _ in 0..2 {
            let got = read_n(&mut layer, 2 + msg.len() + 2).await;
            assert_eq!(&got[2..2 + msg.len()], msg);
        }
        assert!(layer.holds_inflater(), "the history is kept");
    }

    #[tokio::test]
    async fn a_masked_frame_from_a_server_passes_for_tungstenite_to_refuse() {
        // RSV1 and a mask: not what a server sends; left as it is.
        let frame = [0xC1, 0x81, 1, 2, 3, 4, 0x55];
        let (mut server, client) = tokio::io::duplex(64);
        server.write_all(&frame).await.expect("write");
        let mut layer = Inflate::deflate(client, Peer::Server, false, 1 << 20);
        assert_eq!(read_n(&mut layer, frame.len()).await, frame);
    }
}
