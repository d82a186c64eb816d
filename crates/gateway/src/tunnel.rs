//! The byte tunnel between a client and its node once both sides switched
//! protocols.
//!
//! Most tunnels are idle most of the time, so an idle tunnel must cost
//! little more than its two sockets. tokio's `copy_bidirectional` keeps an
//! 8 KiB buffer per direction for the whole life of a tunnel (16 KiB per
//! connection, most of a gateway's memory). Here a direction reads, when its
//! socket is readable, into a scratch buffer of the worker thread and writes
//! the bytes straight on; only what the receiving side cannot take at once
//! is copied into a buffer of the tunnel's own, freed once written. Reading
//! in that direction waits until then, so a tunnel never holds more than
//! one read ([`SCRATCH`] bytes) per direction.
//!
//! Plain TCP sides are taken out of hyper's upgrade wrapper first: bytes
//! hyper had already read past the handshake (typically the node's first
//! frames, which follow its 101 at once) go out before anything else. A TLS
//! side (a `wss://` node, or a gateway serving TLS) stays wrapped and is
//! copied the same way.
//!
//! Like `copy_bidirectional`, an end of stream in one direction shuts down
//! writing on the other side and the tunnel ends once both directions have
//! ended, or at the first error.

use bytes::{Buf, Bytes};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use std::cell::RefCell;
use std::future::{Future, poll_fn};
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// Bytes read at once in one direction: the scratch buffer of each thread,
/// and the most a tunnel holds per direction when its receiver is slow.
pub(crate) const SCRATCH: usize = 16 * 1024;

thread_local! {
    static SCRATCH_BUF: RefCell<Box<[u8]>> = RefCell::new(vec![0; SCRATCH].into_boxed_slice());
}

/// One side of a tunnel.
enum Side {
    /// A plain TCP connection, out of hyper's wrapper.
    Tcp(TcpStream),
    /// Anything else (TLS), still wrapped.
    Wrapped(TokioIo<Upgraded>),
}

impl Side {
    /// The side and the bytes hyper read past the handshake.
    fn new(upgraded: Upgraded) -> (Side, Bytes) {
        match upgraded.downcast::<TokioIo<TcpStream>>() {
            Ok(parts) => (Side::Tcp(parts.io.into_inner()), parts.read_buf),
            // The wrapper hands out what it read ahead itself.
            Err(upgraded) => (Side::Wrapped(TokioIo::new(upgraded)), Bytes::new()),
        }
    }

    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self {
            Side::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Side::Wrapped(s) => Pin::new(s).poll_read(cx, buf),
        }
    }

    fn poll_write(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self {
            Side::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Side::Wrapped(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Side::Tcp(s) => Pin::new(s).poll_flush(cx),
            Side::Wrapped(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Side::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Side::Wrapped(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// What one read-and-forward step did.
enum Step {
    /// Nothing to read now.
    Idle,
    /// The reading side ended.
    Eof,
    /// Everything read was written.
    Forwarded,
    /// These bytes were read but not (all) written yet.
    Left(Bytes),
}

/// Reads what `from` has into the thread's scratch buffer and writes it to
/// `to` at once; what `to` does not take is copied out of the scratch
/// buffer, which is borrowed only for the duration of this call.
fn forward(cx: &mut Context<'_>, from: &mut Side, to: &mut Side) -> io::Result<Step> {
    SCRATCH_BUF.with_borrow_mut(|scratch| {
        let mut buf = ReadBuf::new(scratch);
        match from.poll_read(cx, &mut buf) {
            Poll::Pending => return Ok(Step::Idle),
            Poll::Ready(r) => r?,
        }
        let data = buf.filled();
        if data.is_empty() {
            return Ok(Step::Eof);
        }
        match to.poll_write(cx, data) {
            Poll::Ready(Ok(0)) => Err(io::ErrorKind::WriteZero.into()),
            Poll::Ready(Ok(n)) if n >= data.len() => Ok(Step::Forwarded),
            Poll::Ready(Ok(n)) => Ok(Step::Left(Bytes::copy_from_slice(&data[n..]))),
            Poll::Pending => Ok(Step::Left(Bytes::copy_from_slice(data))),
            Poll::Ready(Err(e)) => Err(e),
        }
    })
}

/// One direction of a tunnel.
#[derive(Default)]
struct Direction {
    /// Read but not written yet: the receiving side was not ready.
    pending: Bytes,
    /// Written since the last flush.
    unflushed: bool,
    /// The reading side ended: shut down writing once `pending` is out.
    eof: bool,
    done: bool,
}

impl Direction {
    fn starting_with(early: Bytes) -> Direction {
        Direction {
            // Even empty, hyper's leftover holds its whole read buffer.
            pending: if early.is_empty() {
                Bytes::new()
            } else {
                early
            },
            ..Direction::default()
        }
    }

    /// Moves bytes from `from` to `to` until neither can go on; ready once
    /// `from` ended and `to` was shut down for writing.
    fn poll(
        &mut self,
        cx: &mut Context<'_>,
        from: &mut Side,
        to: &mut Side,
    ) -> Poll<io::Result<()>> {
        loop {
            if self.done {
                return Poll::Ready(Ok(()));
            }
            if !self.pending.is_empty() {
                while !self.pending.is_empty() {
                    let n = ready!(to.poll_write(cx, &self.pending))?;
                    if n == 0 {
                        return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                    }
                    self.pending.advance(n);
                    self.unflushed = true;
                }
                // An emptied `Bytes` may still hold its allocation.
                self.pending = Bytes::new();
            }
            if self.eof {
                ready!(to.poll_flush(cx))?;
                ready!(to.poll_shutdown(cx))?;
                self.done = true;
                continue;
            }
            match forward(cx, from, to)? {
                Step::Idle => {
                    // Flush before waiting: a buffering writer (TLS) must
                    // not sit on bytes the other end waits for.
                    if self.unflushed {
                        ready!(to.poll_flush(cx))?;
                        self.unflushed = false;
                    }
                    return Poll::Pending;
                }
                Step::Eof => self.eof = true,
                Step::Forwarded => self.unflushed = true,
                Step::Left(rest) => self.pending = rest,
            }
        }
    }
}

/// Copies bytes both ways between `client` and `node` until both directions
/// have ended, or either fails. `node_ended` is called the moment the node's
/// side ends first (a normal close, since a WebSocket server closes its
/// connection first; a drain; or a dead process), without waiting for the
/// client, which may take long to notice.
///
/// Not an `async fn`, which would keep both `Upgraded` arguments for the
/// tunnel's whole life next to the sides made of them; and `Unpin`, so the
/// caller can poll it where it is rather than move it into another future.
pub(crate) fn run(
    client: Upgraded,
    node: Upgraded,
    node_ended: impl FnOnce() + Send + Unpin + 'static,
) -> impl Future<Output = io::Result<()>> + Unpin {
    let (mut client, early_from_client) = Side::new(client);
    let (mut node, early_from_node) = Side::new(node);
    let mut up = Direction::starting_with(early_from_client);
    let mut down = Direction::starting_with(early_from_node);
    let mut node_ended = Some(node_ended);
    let mut client_ended = false;
    poll_fn(move |cx| {
        let up = up.poll(cx, &mut client, &mut node)?;
        let down = down.poll(cx, &mut node, &mut client)?;
        if down.is_ready()
            && !client_ended
            && let Some(f) = node_ended.take()
        {
            f();
        }
        client_ended |= up.is_ready();
        ready!(up);
        ready!(down);
        Poll::Ready(Ok(()))
    })
}
