//! Candidate 2: fastwebsockets 0.10 (`upgrade` + `unstable-split`) on a hyper upgrade.
//!
//! fastwebsockets' `read_frame` is an `async fn` that is not cancel-safe, so it cannot sit in
//! a `select!` next to an outbound queue; concurrent read + write needs the `unstable-split`
//! feature (`WebSocket::split` + `FragmentCollectorRead`), with pong/close-echo "obligated
//! sends" routed to the writer through a closure.

use std::sync::Arc;

use axum::{
    body::Body,
    extract::{Request, State},
    http::StatusCode,
    response::{IntoResponse, Response},
};
use bytes::Bytes;
use fastwebsockets::{
    FragmentCollectorRead, Frame, OpCode, Payload, WebSocket, WebSocketError, WebSocketWrite,
};
use tokio::{
    io::{AsyncRead, AsyncWrite, BufWriter},
    sync::mpsc,
};

use super::app::{AnyState, Flow, Inbound, Outbound};

/// Outbound item for the fastwebsockets writer task.
#[derive(Clone)]
pub enum Out {
    Text(Bytes),
    Close(u16, &'static str),
    /// Crate-obligated pong.
    Pong(Bytes),
    /// Crate-obligated echo of the peer's close payload.
    CloseEcho(Bytes),
}

impl Outbound for Out {
    fn text(s: String) -> Self {
        Out::Text(Bytes::from(s))
    }
    fn close(code: u16, reason: &'static str) -> Self {
        Out::Close(code, reason)
    }
    fn is_close(&self) -> bool {
        matches!(self, Out::Close(..) | Out::CloseEcho(_))
    }
}

/// `GET /ws`: `fastwebsockets::upgrade::upgrade` builds the 101 response from the hyper request.
pub async fn handler(State(st): State<Arc<AnyState>>, mut req: Request) -> Response {
    if !fastwebsockets::upgrade::is_upgrade_request(&req) {
        return StatusCode::BAD_REQUEST.into_response();
    }
    let (resp, fut) = match fastwebsockets::upgrade::upgrade(&mut req) {
        Ok(x) => x,
        Err(_) => return StatusCode::BAD_REQUEST.into_response(),
    };
    tokio::spawn(async move {
        let Ok(mut ws) = fut.await else { return };
        // NB: fastwebsockets rejects `payload_len >= max`, and only per *frame*; the
        // FragmentCollector does not cap the reassembled message.
        ws.set_max_message_size(st.opts.max_msg);
        ws.set_auto_close(true);
        ws.set_auto_pong(true);
        serve(ws, st).await;
    });
    resp.map(Body::new)
}

async fn serve<S>(ws: WebSocket<S>, st: Arc<AnyState>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let state = &st.fastws;
    let (rd, wr) = ws.split(|s| {
        let (r, w) = tokio::io::split(s);
        (r, BufWriter::new(w))
    });
    let mut rd = FragmentCollectorRead::new(rd);
    let (mut conn, rx) = state.connect();
    let obligated = conn.sender();
    let writer = tokio::spawn(writer(wr, rx));
    let mut send_fn = move |f: Frame<'static>| {
        let tx = obligated.clone();
        let out = match f.opcode {
            OpCode::Close => Out::CloseEcho(Bytes::copy_from_slice(&f.payload)),
            _ => Out::Pong(Bytes::copy_from_slice(&f.payload)),
        };
        async move { tx.send(out).await.map_err(|_| "writer gone") }
    };
    // Bounded by the connection's lifetime: every iteration consumes a frame or ends the loop.
    loop {
        let flow = match rd.read_frame(&mut send_fn).await {
            Ok(frame) => match frame.opcode {
                OpCode::Text => conn.on_inbound(Inbound::Text(&frame.payload)).await,
                OpCode::Binary => conn.on_inbound(Inbound::Binary).await,
                OpCode::Close => conn.on_inbound(Inbound::Close).await,
                _ => conn.on_inbound(Inbound::Control).await,
            },
            Err(e) => conn.on_inbound(classify(e)).await,
        };
        if matches!(flow, Flow::Stop) {
            break;
        }
    }
    drop(conn);
    drop(send_fn);
    let _ = writer.await;
}

fn classify(e: WebSocketError) -> Inbound<'static> {
    match e {
        WebSocketError::FrameTooLarge => Inbound::TooBig(e.to_string()),
        WebSocketError::InvalidUTF8 => Inbound::BadUtf8(e.to_string()),
        _ => Inbound::Fatal(e.to_string()),
    }
}

/// Writes queued frames into a `BufWriter` and flushes once per batch (fastwebsockets itself
/// issues one `write_all` per frame).
async fn writer<W>(mut wr: WebSocketWrite<BufWriter<W>>, mut rx: mpsc::Receiver<Out>)
where
    W: AsyncWrite + Unpin,
{
    'outer: while let Some(m) = rx.recv().await {
        let mut closing = m.is_close();
        if write_one(&mut wr, m).await.is_err() {
            break;
        }
        for _ in 0..64 {
            if closing {
                break;
            }
            match rx.try_recv() {
                Ok(m) => {
                    closing = m.is_close();
                    if write_one(&mut wr, m).await.is_err() {
                        break 'outer;
                    }
                }
                Err(_) => break,
            }
        }
        if wr.flush().await.is_err() || closing {
            break;
        }
    }
}

async fn write_one<W>(wr: &mut WebSocketWrite<W>, m: Out) -> Result<(), WebSocketError>
where
    W: AsyncWrite + Unpin,
{
    match m {
        Out::Text(b) => wr.write_frame(Frame::text(Payload::Borrowed(&b))).await,
        Out::Close(code, reason) => wr.write_frame(Frame::close(code, reason.as_bytes())).await,
        Out::Pong(b) => wr.write_frame(Frame::pong(Payload::Borrowed(&b))).await,
        Out::CloseEcho(b) => {
            wr.write_frame(Frame::close_raw(Payload::Borrowed(&b)))
                .await
        }
    }
}
