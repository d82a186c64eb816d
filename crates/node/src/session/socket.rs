//! A session's WebSocket: tungstenite's protocol engine over the guarded
//! upgraded connection ([`TextGuard`]), read and written by the session task
//! alone, as one [`Stream`] of messages and one [`Sink`] for them.
//!
//! What it does differently from `tokio_tungstenite::WebSocketStream` is
//! all about idle connections, which are most of them:
//!
//! * The engine — tungstenite's state with its read buffer (8 KiB, filled
//!   on every read) and write buffer — exists only while the connection is
//!   in use. Once a read finds nothing more to read and nothing is buffered
//!   either way, the engine is dropped and the socket holds just the
//!   connection; the next byte from the client, or the next frame to send,
//!   builds a fresh one. A fresh engine is indistinguishable from one that
//!   has just finished a message: between messages tungstenite keeps
//!   nothing but its (empty) buffers, and a close handshake, once begun,
//!   keeps the engine. That nothing is buffered on the read side is known
//!   from the [`TextGuard`], which follows the client's frames as their
//!   bytes pass: they end on a message boundary, and tungstenite asked for
//!   more, so it parsed them all. On the write side a flush that completes
//!   leaves nothing behind.
//! * There is no `split` and no lock between the halves: the session task
//!   is the only user, so reads and writes run with its waker directly.
//! * With permessage-deflate negotiated, compressed client messages are
//!   inflated below the guard ([`Inflate`]) and outbound messages from the
//!   threshold up are written as compressed frames (RSV1 set), the
//!   compressed form shared with every session delivering the same message;
//!   with server context takeover agreed, by the session's own compressor
//!   instead, created with the first message it compresses.

use futures::{Sink, Stream};
use std::io::{self, Read, Write};
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tungstenite::protocol::{Role, WebSocketConfig, WebSocketContext};
use tungstenite::{Error, Message};

use super::ReadError;
use crate::deflate::{self, Agreed};
use crate::text_guard::TextGuard;
use tungstenite::protocol::frame::Frame;
use tungstenite::protocol::frame::coding::{Data, OpCode};
use wsring_deflate::{Inflate, Peer};

/// A WebSocket over `T` (see the module docs).
pub(crate) struct Socket<T> {
    io: TextGuard<Inflate<T>>,
    /// What permessage-deflate agreed on, if it was negotiated.
    deflate: Option<Agreed>,
    /// The session's own compressor, with server context takeover agreed,
    /// once it compressed a message (its context must last as long as the
    /// connection: the client's inflater holds the same history).
    compressor: Option<Box<flate2::Compress>>,
    /// tungstenite's engine, while the connection is in use.
    engine: Option<Box<WebSocketContext>>,
    config: WebSocketConfig,
    /// The stream of messages ended (closed, or failed once).
    ended: bool,
    /// The last frame was queued but not taken by the connection yet.
    blocked: bool,
    /// A close frame was queued by `poll_close`.
    closing: bool,
}

/// The connection as the blocking `Read + Write` tungstenite wants, for the
/// length of one call: `Pending` becomes `WouldBlock`, and the task's waker
/// is registered by the poll that returned it.
struct Blocking<'a, 'b, T> {
    io: &'a mut TextGuard<Inflate<T>>,
    cx: &'a mut Context<'b>,
}

impl<T: AsyncRead + Unpin> Read for Blocking<'_, '_, T> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut buf = ReadBuf::new(buf);
        match Pin::new(&mut *self.io).poll_read(self.cx, &mut buf) {
            Poll::Ready(Ok(())) => Ok(buf.filled().len()),
            Poll::Ready(Err(e)) => Err(e),
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }
}

impl<T: AsyncWrite + Unpin> Write for Blocking<'_, '_, T> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match Pin::new(&mut *self.io).poll_write(self.cx, buf) {
            Poll::Ready(r) => r,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match Pin::new(&mut *self.io).poll_flush(self.cx) {
            Poll::Ready(r) => r,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }
}

fn would_block(e: &Error) -> bool {
    matches!(e, Error::Io(e) if e.kind() == io::ErrorKind::WouldBlock)
}

impl<T: AsyncRead + AsyncWrite + Unpin> Socket<T> {
    /// A WebSocket with `config` on a connection whose handshake is done.
    #[cfg(test)]
    pub(crate) fn new(io: T, config: WebSocketConfig) -> Socket<T> {
        Socket::with_deflate(io, config, None)
    }

    /// A WebSocket with `config` and, if `deflate`, permessage-deflate as
    /// agreed in the handshake.
    pub(crate) fn with_deflate(
        io: T,
        config: WebSocketConfig,
        deflate: Option<Agreed>,
    ) -> Socket<T> {
        let io = match deflate {
            Some(a) => Inflate::deflate(
                io,
                Peer::Client,
                a.client_context_takeover,
                config.max_message_size.unwrap_or(usize::MAX),
            ),
            None => Inflate::plain(io),
        };
        Socket {
            io: TextGuard::new(io, &config),
            deflate,
            compressor: None,
            engine: None,
            config,
            ended: false,
            blocked: false,
            closing: false,
        }
    }

    /// Runs `f` on the engine (built if there is none) and the connection.
    fn with<R>(
        &mut self,
        cx: &mut Context<'_>,
        f: impl FnOnce(&mut WebSocketContext, &mut Blocking<'_, '_, T>) -> R,
    ) -> R {
        let config = self.config;
        let engine = self
            .engine
            .get_or_insert_with(|| Box::new(WebSocketContext::new(Role::Server, Some(config))));
        f(
            engine,
            &mut Blocking {
                io: &mut self.io,
                cx,
            },
        )
    }

    /// Drops the engine if it holds nothing that a fresh one would not:
    /// called when a read found nothing more to read.
    fn park(&mut self, cx: &mut Context<'_>) {
        if self.closing || self.blocked || !self.io.between_messages() {
            return;
        }
        let Some(engine) = self.engine.as_deref_mut() else {
            return;
        };
        if !engine.can_write() {
            // A close handshake is under way.
            return;
        }
        // Also sends a pong tungstenite may still hold; if the connection
        // does not take everything, the engine stays.
        if engine
            .flush(&mut Blocking {
                io: &mut self.io,
                cx,
            })
            .is_ok()
        {
            self.engine = None;
        }
    }

    /// Whether the engine is dropped right now (for tests).
    #[cfg(test)]
    pub(crate) fn is_parked(&self) -> bool {
        self.engine.is_none()
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> Stream for Socket<T> {
    type Item = Result<Message, ReadError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.ended {
            return Poll::Ready(None);
        }
        match this.with(cx, |engine, io| engine.read(io)) {
            Ok(msg) => Poll::Ready(Some(Ok(msg))),
            Err(e) if would_block(&e) => {
                this.park(cx);
                Poll::Pending
            }
            Err(Error::ConnectionClosed | Error::AlreadyClosed) => {
                this.ended = true;
                Poll::Ready(None)
            }
            Err(e) => {
                this.ended = true;
                Poll::Ready(Some(Err(ReadError::of(e))))
            }
        }
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> Socket<T> {
    /// Writes out whatever the engine holds.
    fn poll_flush_engine(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        if self.engine.is_none() {
            // Nothing is buffered without an engine.
            return Poll::Ready(Ok(()));
        }
        match self.with(cx, |engine, io| engine.flush(io)) {
            Err(e) if would_block(&e) => Poll::Pending,
            r => {
                self.blocked = false;
                Poll::Ready(r)
            }
        }
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> Sink<Message> for Socket<T> {
    type Error = Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let this = self.get_mut();
        if !this.blocked {
            return Poll::Ready(Ok(()));
        }
        this.poll_flush_engine(cx)
    }

    fn start_send(self: Pin<&mut Self>, item: Message) -> Result<(), Error> {
        let this = self.get_mut();
        // No waker here: a write the connection cannot take now stays in
        // the engine's buffer, and the next `poll_ready` or `poll_flush`
        // retries it with the task's waker.
        let mut cx = Context::from_waker(Waker::noop());
        let item = match this.deflate {
            Some(agreed) => compressed(agreed, &mut this.compressor, item),
            None => item,
        };
        match this.with(&mut cx, |engine, io| engine.write(io, item)) {
            Ok(()) => {
                this.blocked = false;
                Ok(())
            }
            Err(e) if would_block(&e) => {
                this.blocked = true;
                Ok(())
            }
            Err(e) => {
                this.blocked = false;
                Err(e)
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        match self.get_mut().poll_flush_engine(cx) {
            // The close handshake just completed: flushing is done.
            Poll::Ready(Err(Error::ConnectionClosed)) => Poll::Ready(Ok(())),
            other => other,
        }
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let this = self.get_mut();
        this.blocked = false;
        let closing = this.closing;
        let r = this.with(cx, |engine, io| {
            if closing {
                engine.flush(io)
            } else {
                engine.close(io, None)
            }
        });
        match r {
            Ok(()) | Err(Error::ConnectionClosed) => Poll::Ready(Ok(())),
            Err(e) if would_block(&e) => {
                this.closing = true;
                Poll::Pending
            }
            Err(e) => Poll::Ready(Err(e)),
        }
    }
}

/// `item` as a compressed frame, if it is a data message from the
/// threshold up. Without context takeover the compressed form is shared
/// with the fan-out and used only if smaller; with it, `own` compresses
/// (created on first use) and its output is always sent, as the client's
/// inflater must see every message the compressor did.
fn compressed(agreed: Agreed, own: &mut Option<Box<flate2::Compress>>, item: Message) -> Message {
    let (payload, data) = match &item {
        Message::Text(t) if t.len() >= agreed.threshold => {
            (bytes::Bytes::from(t.clone()), Data::Text)
        }
        Message::Binary(b) if b.len() >= agreed.threshold => (b.clone(), Data::Binary),
        _ => return item,
    };
    let z = if agreed.server_context_takeover {
        let c = own
            .get_or_insert_with(|| Box::new(wsring_deflate::compressor(agreed.server_window_bits)));
        bytes::Bytes::from(wsring_deflate::compress_with(c, &payload))
    } else {
        let z = deflate::compress_shared(agreed.server_window_bits, &payload);
        if z.len() >= payload.len() {
            return item;
        }
        z
    };
    let mut frame = Frame::message(z, OpCode::Data(data), true);
    frame.header_mut().rsv1 = true;
    Message::Frame(frame)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text_guard::tests::frame as client_frame;
    use futures::{SinkExt, StreamExt};
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

    fn config() -> WebSocketConfig {
        crate::upgrade::config(64 * 1024)
    }

    fn pair() -> (Socket<DuplexStream>, DuplexStream) {
        let (server, client) = tokio::io::duplex(256 * 1024);
        (Socket::new(server, config()), client)
    }

    /// Polls the socket's stream once.
    fn poll_once(s: &mut Socket<DuplexStream>) -> Poll<Option<Result<Message, ReadError>>> {
        let mut cx = Context::from_waker(Waker::noop());
        Pin::new(s).poll_next(&mut cx)
    }

    /// Reads exactly `n` bytes the server wrote.
    async fn server_bytes(client: &mut DuplexStream, n: usize) -> Vec<u8> {
        let mut buf = vec![0; n];
        client.read_exact(&mut buf).await.expect("server bytes");
        buf
    }

    #[tokio::test]
    async fn an_idle_socket_holds_no_engine_and_a_busy_one_keeps_its_place() {
        let (mut s, mut client) = pair();
        assert!(s.is_parked(), "no engine before any traffic");
        // A message split mid-frame: the engine holds the first half and
        // must not be dropped while waiting for the rest.
        let frame = client_frame(true, 0x1, b"hello there");
        client.write_all(&frame[..5]).await.expect("write");
        assert!(poll_once(&mut s).is_pending());
        assert!(!s.is_parked(), "half a frame is buffered");
        client.write_all(&frame[5..]).await.expect("write");
        match poll_once(&mut s) {
            Poll::Ready(Some(Ok(Message::Text(t)))) => assert_eq!(t.as_str(), "hello there"),
            other => panic!("expected the text, got {other:?}"),
        }
        assert!(poll_once(&mut s).is_pending());
        assert!(s.is_parked(), "dropped between messages");
        // A fragmented message with a ping between its fragments, then a
        // second message in the same read.
        let mut bytes = client_frame(false, 0x1, b"frag");
        bytes.extend(client_frame(true, 0x9, b"p"));
        client.write_all(&bytes).await.expect("write");
        match poll_once(&mut s) {
            Poll::Ready(Some(Ok(Message::Ping(p)))) => assert_eq!(&p[..], b"p"),
            other => panic!("expected the ping, got {other:?}"),
        }
        assert!(poll_once(&mut s).is_pending());
        assert!(!s.is_parked(), "a fragmented message is open");
        // The pong went out.
        assert_eq!(server_bytes(&mut client, 3).await, vec![0x8A, 1, b'p']);
        let mut bytes = client_frame(true, 0x0, b"mented");
        bytes.extend(client_frame(true, 0x2, &[7; 300]));
        client.write_all(&bytes).await.expect("write");
        match poll_once(&mut s) {
            Poll::Ready(Some(Ok(Message::Text(t)))) => assert_eq!(t.as_str(), "fragmented"),
            other => panic!("expected the text, got {other:?}"),
        }
        assert!(!s.is_parked(), "the binary message is still buffered");
        match poll_once(&mut s) {
            Poll::Ready(Some(Ok(Message::Binary(b)))) => assert_eq!(&b[..], &[7; 300][..]),
            other => panic!("expected the binary message, got {other:?}"),
        }
        assert!(poll_once(&mut s).is_pending());
        assert!(s.is_parked());
    }

    #[tokio::test]
    async fn writes_build_an_engine_that_goes_once_flushed() {
        let (mut s, mut client) = pair();
        s.send(Message::Text("hi".into())).await.expect("send");
        assert_eq!(
            server_bytes(&mut client, 4).await,
            vec![0x81, 2, b'h', b'i']
        );
        assert!(!s.is_parked(), "kept until the next read finds nothing");
        assert!(poll_once(&mut s).is_pending());
        assert!(s.is_parked());
        // A close handshake keeps the engine to the end.
        s.send(Message::Close(None)).await.expect("close");
        assert_eq!(server_bytes(&mut client, 2).await, vec![0x88, 0]);
        assert!(poll_once(&mut s).is_pending());
        assert!(!s.is_parked(), "closing");
        client
            .write_all(&client_frame(true, 0x8, &[]))
            .await
            .expect("write");
        assert!(matches!(s.next().await, Some(Ok(Message::Close(None)))));
        assert!(s.next().await.is_none(), "the handshake completed");
    }

    #[tokio::test]
    async fn a_write_the_peer_does_not_take_keeps_the_engine() {
        let (server, mut client) = tokio::io::duplex(64);
        let mut s = Socket::new(server, config());
        let big = "x".repeat(1000);
        let mut cx = Context::from_waker(Waker::noop());
        assert!(Pin::new(&mut s).poll_ready(&mut cx).is_ready());
        Pin::new(&mut s)
            .start_send(Message::Text(big.clone().into()))
            .expect("queued");
        assert!(Pin::new(&mut s).poll_flush(&mut cx).is_pending());
        assert!(poll_once(&mut s).is_pending());
        assert!(!s.is_parked(), "unsent bytes are buffered");
        let reader = tokio::spawn(async move { server_bytes(&mut client, 4 + 1000).await });
        s.flush().await.expect("flushed");
        let got = reader.await.expect("reader");
        assert_eq!(&got[4..], big.as_bytes());
    }

    fn deflate_pair(takeover: bool) -> (Socket<DuplexStream>, DuplexStream) {
        deflate_pair_with(takeover, false)
    }

    fn deflate_pair_with(
        client_takeover: bool,
        server_takeover: bool,
    ) -> (Socket<DuplexStream>, DuplexStream) {
        let (server, client) = tokio::io::duplex(256 * 1024);
        let agreed = Agreed {
            server_window_bits: 15,
            server_context_takeover: server_takeover,
            client_context_takeover: client_takeover,
            threshold: 256,
        };
        (Socket::with_deflate(server, config(), Some(agreed)), client)
    }

    /// A client frame with RSV1 set if `rsv1`.
    fn rsv1_frame(rsv1: bool, fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut f = client_frame(fin, opcode, payload);
        if rsv1 {
            f[0] |= 0x40;
        }
        f
    }

    /// A message compressed as a client would, without context.
    fn client_deflate(msg: &[u8]) -> Vec<u8> {
        crate::deflate::compress(15, msg)
    }

    #[tokio::test]
    async fn compressed_client_messages_are_inflated_whole_or_fragmented() {
        let (mut s, mut client) = deflate_pair(false);
        let text = "{\"type\":\"send\",\"text\":\"hello\"}".repeat(40);
        let z = client_deflate(text.as_bytes());
        client
            .write_all(&rsv1_frame(true, true, 0x1, &z))
            .await
            .expect("write");
        match s.next().await {
            Some(Ok(Message::Text(t))) => assert_eq!(t.as_str(), text),
            other => panic!("expected the text, got {other:?}"),
        }
        assert!(
            !s.io.get_ref().holds_inflater(),
            "no inflater between messages"
        );
        // Split over three fragments with a ping between, then a plain
        // message: both arrive as sent.
        let (a, rest) = z.split_at(10);
        let (b, c) = rest.split_at(rest.len() / 2);
        let mut bytes = rsv1_frame(true, false, 0x1, a);
        bytes.extend(client_frame(false, 0x0, b));
        bytes.extend(client_frame(true, 0x9, b"p"));
        bytes.extend(client_frame(true, 0x0, c));
        bytes.extend(client_frame(true, 0x1, b"plain"));
        client.write_all(&bytes).await.expect("write");
        assert!(matches!(s.next().await, Some(Ok(Message::Ping(_)))));
        match s.next().await {
            Some(Ok(Message::Text(t))) => assert_eq!(t.as_str(), text),
            other => panic!("expected the text, got {other:?}"),
        }
        match s.next().await {
            Some(Ok(Message::Text(t))) => assert_eq!(t.as_str(), "plain"),
            other => panic!("expected the text, got {other:?}"),
        }
        // An empty compressed message and a binary one.
        let mut bytes = rsv1_frame(true, true, 0x1, &client_deflate(b""));
        bytes.extend(rsv1_frame(true, true, 0x2, &client_deflate(&[9; 3000])));
        client.write_all(&bytes).await.expect("write");
        match s.next().await {
            Some(Ok(Message::Text(t))) => assert_eq!(t.as_str(), ""),
            other => panic!("expected the empty text, got {other:?}"),
        }
        match s.next().await {
            Some(Ok(Message::Binary(b))) => assert_eq!(&b[..], &[9; 3000][..]),
            other => panic!("expected the binary message, got {other:?}"),
        }
        assert!(poll_once(&mut s).is_pending());
        assert!(s.is_parked());
    }

    #[tokio::test]
    async fn a_client_keeping_its_context_is_inflated_with_it() {
        use flate2::{Compress, Compression, FlushCompress};
        let (mut s, mut client) = deflate_pair(true);
        let mut z = Compress::new(Compression::default(), false);
        let msg = b"{\"text\":\"the same words again and again\"}".repeat(10);
        for _ in 0..3 {
            let mut out = Vec::with_capacity(msg.len() + 64);
            z.compress_vec(&msg, &mut out, FlushCompress::Sync)
                .expect("deflate");
            out.truncate(out.len() - 4);
            client
                .write_all(&rsv1_frame(true, true, 0x1, &out))
                .await
                .expect("write");
            match s.next().await {
                Some(Ok(Message::Text(t))) => assert_eq!(t.as_bytes(), &msg[..]),
                other => panic!("expected the text, got {other:?}"),
            }
        }
        assert!(s.io.get_ref().holds_inflater());
    }

    #[tokio::test]
    async fn bad_compressed_data_and_misplaced_rsv1_fail_the_connection() {
        for bytes in [
            // Not deflate at all.
            rsv1_frame(true, true, 0x1, &[0xff; 20]),
            // RSV1 on a control frame, and on a continuation frame.
            rsv1_frame(true, true, 0x9, b""),
            [
                rsv1_frame(true, false, 0x1, &client_deflate(b"ab")[..1]),
                rsv1_frame(true, true, 0x0, b"x"),
            ]
            .concat(),
        ] {
            let (mut s, mut client) = deflate_pair(false);
            client.write_all(&bytes).await.expect("write");
            assert_eq!(s.next().await, Some(Err(ReadError::Protocol)), "{bytes:?}");
        }
    }

    #[tokio::test]
    async fn a_message_inflating_past_the_limit_is_refused() {
        let (mut s, mut client) = deflate_pair(false);
        let bomb = client_deflate(&vec![b'a'; 1024 * 1024]);
        assert!(bomb.len() < 2048);
        client
            .write_all(&rsv1_frame(true, true, 0x1, &bomb))
            .await
            .expect("write");
        assert_eq!(s.next().await, Some(Err(ReadError::TooBig)));
    }

    #[tokio::test]
    async fn outbound_messages_from_the_threshold_up_are_compressed() {
        let (mut s, mut client) = deflate_pair(false);
        s.send(Message::Text("short".into())).await.expect("send");
        assert_eq!(
            server_bytes(&mut client, 7).await,
            [&[0x81, 5][..], b"short"].concat()
        );
        let long = "{\"type\":\"message\",\"text\":\"hello\"}".repeat(20);
        s.send(Message::Text(long.clone().into()))
            .await
            .expect("send");
        let head = server_bytes(&mut client, 2).await;
        assert_eq!(head[0], 0xC1, "FIN, RSV1, text");
        let len = usize::from(head[1]);
        assert!(len < 126 && len < long.len() / 4, "{len}");
        let z = server_bytes(&mut client, len).await;
        assert_eq!(crate::deflate::tests::inflate(&z), long.as_bytes());
    }

    #[tokio::test]
    async fn a_message_fanned_out_to_a_room_is_compressed_once() {
        let shared = tungstenite::Utf8Bytes::from(
            "{\"type\":\"message\",\"room\":\"lobby\",\"text\":\"hi all\"}".repeat(30),
        );
        let before = crate::deflate::compressions();
        let mut clients = Vec::new();
        for _ in 0..100 {
            let (mut s, mut client) = deflate_pair(false);
            s.send(Message::Text(shared.clone())).await.expect("send");
            let head = server_bytes(&mut client, 2).await;
            assert_eq!(head[0], 0xC1, "compressed");
            let z = server_bytes(&mut client, usize::from(head[1])).await;
            assert_eq!(crate::deflate::tests::inflate(&z), shared.as_bytes());
            clients.push((s, client));
        }
        assert_eq!(
            crate::deflate::compressions() - before,
            1,
            "one deflate for 100 sessions"
        );
    }

    #[tokio::test]
    async fn with_server_context_takeover_each_session_compresses_with_its_history() {
        use flate2::{Decompress, FlushDecompress};
        let msg = tungstenite::Utf8Bytes::from(
            "{\"type\":\"message\",\"room\":\"lobby\",\"text\":\"hi all, again\"}".repeat(8),
        );
        let (mut s, mut client) = deflate_pair_with(false, true);
        assert!(
            s.compressor.is_none(),
            "no compressor before the first message"
        );
        let before = crate::deflate::compressions();
        let mut inflater = Decompress::new(false);
        let mut sizes = Vec::new();
        for _ in 0..3 {
            s.send(Message::Text(msg.clone())).await.expect("send");
            let head = server_bytes(&mut client, 2).await;
            assert_eq!(head[0], 0xC1, "compressed");
            let mut z = server_bytes(&mut client, usize::from(head[1])).await;
            sizes.push(z.len());
            z.extend_from_slice(&wsring_deflate::TAIL);
            let mut out = Vec::with_capacity(4096);
            inflater
                .decompress_vec(&z, &mut out, FlushDecompress::Sync)
                .expect("inflates with the history");
            assert_eq!(out, msg.as_bytes());
        }
        assert!(s.compressor.is_some(), "the compressor stays");
        assert!(sizes[1] * 2 < sizes[0], "{sizes:?}: the repeat refers back");
        assert_eq!(
            crate::deflate::compressions() - before,
            3,
            "no shared cache"
        );
    }

    #[tokio::test]
    async fn the_end_of_the_connection_ends_the_stream() {
        let (mut s, client) = pair();
        drop(client);
        // tungstenite's verdict on a connection gone without a close frame.
        assert_eq!(s.next().await, Some(Err(ReadError::Protocol)));
        assert!(s.next().await.is_none());
    }
}
