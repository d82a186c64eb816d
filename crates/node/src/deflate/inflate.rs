//! The inbound half of permessage-deflate: [`Inflate`] sits between the
//! upgraded connection and the UTF-8 guard, follows the client's frames as
//! their bytes arrive, and rewrites every compressed message (RSV1 on its
//! first frame) into plain frames of its inflated bytes, which the guard
//! and tungstenite then read as if the client had sent them uncompressed.
//!
//! * Inflated bytes go out as they come, in non-final frames of at most
//!   [`CHUNK`] bytes with a zero mask (clients' frames must be masked), and
//!   an empty final frame ends the message. The whole message is never held
//!   here, and tungstenite's message limit applies to the inflated size as
//!   to any other (1009): once a message has inflated past the limit, the
//!   rest of its compressed bytes are dropped, bounding what a small
//!   compressed message can blow up into.
//! * Uncompressed frames, control frames and anything tungstenite will
//!   refuse itself (RSV1 on a control or continuation frame, reserved bits,
//!   unmasked frames) pass through unchanged, so its errors and close codes
//!   stand.
//! * Compressed bytes that do not inflate fail the connection: a frame with
//!   a reserved bit set is handed on in their place, which tungstenite
//!   answers with close 1002, and whatever follows is dropped.
//! * Without client context takeover the inflater exists only while a
//!   compressed message is being read; between messages this layer holds
//!   nothing but a few bytes of frame state.
//!
//! Writes pass through untouched.

use flate2::{Decompress, FlushDecompress, Status};
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::TAIL;

/// Inflated bytes per rewritten frame.
pub(crate) const CHUNK: usize = 16 * 1024;

/// Raw bytes read from the connection at a time.
const READ: usize = 4 * 1024;

/// A ping frame with RSV2 set: what tungstenite is handed in place of
/// bytes that do not inflate, so it fails the connection with 1002.
const BROKEN: [u8; 6] = [0xA9, 0x80, 0, 0, 0, 0];

/// The connection `T` with compressed client messages inflated (see the
/// module docs).
pub(crate) struct Inflate<T> {
    io: T,
    /// `None`: deflate was not negotiated; everything passes through.
    state: Option<Box<State>>,
}

/// Where the reader is in the client's frames.
struct State {
    /// Header bytes of the frame being read, until complete.
    header: [u8; 14],
    have: usize,
    /// Payload bytes of the current frame still to come.
    left: u64,
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
    pub(crate) fn plain(io: T) -> Inflate<T> {
        Inflate { io, state: None }
    }

    /// Compressed messages are inflated; the client keeps its context if
    /// `takeover`; messages past `limit` inflated bytes are cut short.
    pub(crate) fn deflate(io: T, takeover: bool, limit: usize) -> Inflate<T> {
        Inflate {
            io,
            state: Some(Box::new(State {
                header: [0; 14],
                have: 0,
                left: 0,
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
            })),
        }
    }

    /// Whether an inflater is held right now (for tests).
    #[cfg(test)]
    pub(crate) fn holds_inflater(&self) -> bool {
        self.state.as_ref().is_some_and(|s| s.inflater.is_some())
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

/// Appends a masked (zero mask) frame header for `len` payload bytes.
fn push_header(out: &mut Vec<u8>, fin: bool, opcode: u8, len: usize) {
    out.push(if fin { 0x80 } else { 0 } | opcode);
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if len <= 0xffff {
        out.push(0x80 | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(&[0; 4]);
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
                let mut plain = chunk.to_vec();
                for b in &mut plain {
                    *b ^= self.mask[self.mask_at];
                    self.mask_at = (self.mask_at + 1) % 4;
                }
                self.inflate(&plain);
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
        let inflate = masked
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
            self.mask.copy_from_slice(&h[h.len() - 4..]);
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
            push_header(&mut self.out, true, opcode, 0);
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
                push_header(&mut self.out, false, opcode, made);
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

impl<T: AsyncRead + Unpin> AsyncRead for Inflate<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let Some(state) = this.state.as_deref_mut() else {
            return Pin::new(&mut this.io).poll_read(cx, buf);
        };
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
