//! Fail-fast UTF-8 checking of incoming text messages, below tungstenite.
//!
//! RFC 6455 §8.1: an endpoint that receives text that is not valid UTF-8
//! must fail the connection, and should do so as soon as the invalid bytes
//! arrive. tungstenite checks text when a frame is complete, so a client
//! that sends the start of a long frame with invalid UTF-8 early on would
//! keep the session busy until the rest (up to the frame limit) arrived.
//! [`TextGuard`] sits between the upgraded connection and tungstenite,
//! follows the client's frames as their bytes are read, unmasks the payload
//! of text messages (across fragments, and past the message limit, which
//! tungstenite enforces only at the end of a frame) and checks it
//! incrementally. On the
//! first byte that cannot start or continue valid UTF-8 it hands tungstenite
//! what came before, then fails the next read with [`InvalidText`], which
//! the session answers with close 1007. From then on it reads and discards
//! whatever the client still sends, so the close frame is not destroyed by a
//! reset caused by unread data.
//!
//! It only ever *adds* this earlier failure: on anything tungstenite will
//! refuse itself (reserved bits or opcodes, unmasked frames, fragments out
//! of order, control frames too long or fragmented, frames or messages over
//! the frame limit, data after a close frame) it stops looking and passes bytes
//! through unchanged, so tungstenite's own error and close code stand. An
//! incomplete character at the end of a message is tungstenite's to report
//! too. Writes pass through untouched.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tungstenite::protocol::WebSocketConfig;

/// The error a read fails with once a text message was found not to be
/// UTF-8 (inside an `io::Error` of kind `InvalidData`).
#[derive(Debug, thiserror::Error)]
#[error("a text message is not valid UTF-8")]
pub(crate) struct InvalidText;

impl InvalidText {
    /// Whether `e` is the guard's verdict.
    pub(crate) fn is(e: &io::Error) -> bool {
        e.get_ref().is_some_and(|inner| inner.is::<InvalidText>())
    }
}

/// Incremental UTF-8 validation: bytes may arrive in any pieces.
#[derive(Debug, Default, Clone)]
struct Utf8Stream {
    /// The start of a character whose remaining bytes have not arrived.
    pending: [u8; 4],
    pending_len: usize,
}

impl Utf8Stream {
    /// Takes the next bytes of the text; `false` once they cannot be valid
    /// UTF-8 whatever follows.
    fn feed(&mut self, mut bytes: &[u8]) -> bool {
        // Complete a character split by the previous piece, byte by byte
        // (at most three more).
        while self.pending_len > 0 {
            let Some((&b, rest)) = bytes.split_first() else {
                return true;
            };
            bytes = rest;
            self.pending[self.pending_len] = b;
            self.pending_len += 1;
            match std::str::from_utf8(&self.pending[..self.pending_len]) {
                Ok(_) => self.pending_len = 0,
                Err(e) if e.error_len().is_some() => return false,
                // Still a valid beginning (four bytes always decide).
                Err(_) => {}
            }
        }
        match std::str::from_utf8(bytes) {
            Ok(_) => true,
            // `error_len() == None`: the input ended inside a character
            // that may still be completed.
            Err(e) if e.error_len().is_none() => {
                let tail = &bytes[e.valid_up_to()..];
                self.pending[..tail.len()].copy_from_slice(tail);
                self.pending_len = tail.len();
                true
            }
            Err(_) => false,
        }
    }

    fn reset(&mut self) {
        self.pending_len = 0;
    }
}

/// Where the scanner stands in the client's byte stream.
#[derive(Debug, Clone)]
enum Stage {
    /// Collecting a frame header (2 to 14 bytes).
    Header { buf: [u8; 14], have: usize },
    /// Inside a frame's payload.
    Payload {
        /// Payload bytes still to come.
        remaining: u64,
        /// Payload bytes seen (for the masking key's phase).
        seen: u64,
        mask: [u8; 4],
        /// Part of a text message: check it.
        text: bool,
        /// The last frame of its message.
        last: bool,
    },
    /// Something tungstenite will refuse (or a close frame was seen):
    /// nothing more is checked.
    Passive,
}

/// Follows the client's frames and checks the text in them.
#[derive(Debug, Clone)]
struct Scanner {
    stage: Stage,
    /// A fragmented message is open (its first frame had FIN clear).
    in_message: bool,
    /// That message is text.
    in_text: bool,
    utf8: Utf8Stream,
    max_frame: u64,
}

const HEADER_START: Stage = Stage::Header {
    buf: [0; 14],
    have: 0,
};

impl Scanner {
    fn new(max_frame: Option<usize>) -> Scanner {
        Scanner {
            stage: HEADER_START,
            in_message: false,
            in_text: false,
            utf8: Utf8Stream::default(),
            max_frame: max_frame.map_or(u64::MAX, |l| l as u64),
        }
    }

    /// Scans the next bytes read from the client. `Err(at)`: the text is
    /// invalid; `at` is where the offending frame's bytes in this piece
    /// begin, and nothing from there on may reach tungstenite.
    fn feed(&mut self, bytes: &[u8]) -> Result<(), usize> {
        let mut at = 0;
        while at < bytes.len() {
            match &mut self.stage {
                Stage::Passive => return Ok(()),
                Stage::Header { buf, have } => {
                    let need = header_len(&buf[..*have]);
                    let take = (need - *have).min(bytes.len() - at);
                    buf[*have..*have + take].copy_from_slice(&bytes[at..at + take]);
                    *have += take;
                    at += take;
                    // The first two bytes may reveal a longer header.
                    if *have == header_len(&buf[..*have]) {
                        let header = *buf;
                        let len = *have;
                        self.stage = self.on_header(&header[..len]);
                    }
                }
                Stage::Payload {
                    remaining,
                    seen,
                    mask,
                    text,
                    last,
                } => {
                    let n = (*remaining).min((bytes.len() - at) as u64) as usize;
                    if *text && !check_masked(&mut self.utf8, &bytes[at..at + n], mask, *seen) {
                        return Err(at);
                    }
                    *remaining -= n as u64;
                    *seen += n as u64;
                    at += n;
                    if *remaining == 0 {
                        let last = *last;
                        self.end_of_frame(last);
                    }
                }
            }
        }
        Ok(())
    }

    /// The stage after a complete header.
    fn on_header(&mut self, h: &[u8]) -> Stage {
        let fin = h[0] & 0x80 != 0;
        let reserved = h[0] & 0x70 != 0;
        let opcode = h[0] & 0x0F;
        let masked = h[1] & 0x80 != 0;
        let len = match h[1] & 0x7F {
            126 => u64::from(u16::from_be_bytes([h[2], h[3]])),
            127 => u64::from_be_bytes([h[2], h[3], h[4], h[5], h[6], h[7], h[8], h[9]]),
            short => u64::from(short),
        };
        // Extensions are never negotiated, and clients must mask.
        if reserved || !masked || len > self.max_frame {
            return Stage::Passive;
        }
        let mut mask = [0u8; 4];
        mask.copy_from_slice(&h[h.len() - 4..]);
        let text = match opcode {
            // Continuation of the open message.
            0x0 => {
                if !self.in_message {
                    return Stage::Passive;
                }
                self.in_text
            }
            // A new text or binary message.
            0x1 | 0x2 => {
                if self.in_message {
                    return Stage::Passive;
                }
                self.in_message = true;
                self.in_text = opcode == 0x1;
                self.utf8.reset();
                self.in_text
            }
            // Close: tungstenite reads nothing after it.
            0x8 => return Stage::Passive,
            // Ping and pong may come between fragments; they are not text.
            0x9 | 0xA => {
                if !fin || len > 125 {
                    return Stage::Passive;
                }
                return self.payload(len, mask, false, false);
            }
            _ => return Stage::Passive,
        };
        // A text message over the message limit is still checked: tungstenite
        // refuses it (1009) only once its frame is complete, and invalid
        // text in it fails the connection (1007) as soon as it arrives.
        self.payload(len, mask, text, fin)
    }

    /// The payload stage of a frame of `len` bytes (none: the frame ends
    /// here).
    fn payload(&mut self, len: u64, mask: [u8; 4], text: bool, last: bool) -> Stage {
        if len == 0 {
            self.stage = HEADER_START;
            self.end_of_frame(last);
            return self.stage.clone();
        }
        Stage::Payload {
            remaining: len,
            seen: 0,
            mask,
            text,
            last,
        }
    }

    /// A data frame (or a control frame, `last` false) ended.
    fn end_of_frame(&mut self, last: bool) {
        self.stage = HEADER_START;
        if last {
            self.in_message = false;
            self.in_text = false;
            self.utf8.reset();
        }
    }
}

/// The length of the header that starts with `have` (2 until the first two
/// bytes are known).
fn header_len(have: &[u8]) -> usize {
    if have.len() < 2 {
        return 2;
    }
    let extended = match have[1] & 0x7F {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    let mask = if have[1] & 0x80 != 0 { 4 } else { 0 };
    2 + extended + mask
}

/// Unmasks `payload` (which starts `seen` bytes into its frame) block by
/// block and feeds it to `utf8`.
fn check_masked(utf8: &mut Utf8Stream, payload: &[u8], mask: &[u8; 4], seen: u64) -> bool {
    let mut block = [0u8; 512];
    let mut phase = (seen % 4) as usize;
    for chunk in payload.chunks(block.len()) {
        for (out, b) in block.iter_mut().zip(chunk) {
            *out = b ^ mask[phase];
            phase = (phase + 1) % 4;
        }
        if !utf8.feed(&block[..chunk.len()]) {
            return false;
        }
    }
    true
}

/// What the guard has found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// Nothing wrong so far.
    Clean,
    /// Invalid text found; the next read fails.
    Found,
    /// The failure was reported; input is discarded until the end.
    Reported,
}

/// An upgraded connection whose incoming text is checked as it arrives
/// (see the module docs).
pub(crate) struct TextGuard<T> {
    io: T,
    scanner: Scanner,
    verdict: Verdict,
}

impl<T> TextGuard<T> {
    /// Guards `io`, read by a WebSocket with `config`'s frame and message
    /// limits.
    pub(crate) fn new(io: T, config: &WebSocketConfig) -> TextGuard<T> {
        TextGuard {
            io,
            scanner: Scanner::new(config.max_frame_size),
            verdict: Verdict::Clean,
        }
    }
}

impl<T> TextGuard<T> {
    /// The connection below (for tests).
    #[cfg(test)]
    pub(crate) fn get_ref(&self) -> &T {
        &self.io
    }
}

impl<T> TextGuard<T> {
    /// Whether the bytes handed on so far end exactly where a message ends
    /// (no frame and no fragmented message is open) and nothing was found
    /// wrong: whoever parsed them all holds nothing of the client's.
    pub(crate) fn between_messages(&self) -> bool {
        self.verdict == Verdict::Clean
            && !self.scanner.in_message
            && matches!(self.scanner.stage, Stage::Header { have: 0, .. })
    }
}

fn invalid() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, InvalidText)
}

impl<T: AsyncRead + Unpin> AsyncRead for TextGuard<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match this.verdict {
            Verdict::Clean => {}
            Verdict::Found => {
                this.verdict = Verdict::Reported;
                return Poll::Ready(Err(invalid()));
            }
            Verdict::Reported => {
                // Drain until the client closes; the caller sees only the
                // end of the stream.
                let mut sink = [0u8; 1024];
                loop {
                    let mut scratch = ReadBuf::new(&mut sink);
                    ready!(Pin::new(&mut this.io).poll_read(cx, &mut scratch))?;
                    if scratch.filled().is_empty() {
                        return Poll::Ready(Ok(()));
                    }
                }
            }
        }
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.io).poll_read(cx, buf))?;
        if let Err(at) = this.scanner.feed(&buf.filled()[before..]) {
            buf.set_filled(before + at);
            if at == 0 {
                this.verdict = Verdict::Reported;
                return Poll::Ready(Err(invalid()));
            }
            this.verdict = Verdict::Found;
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for TextGuard<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
pub(crate) mod tests;
