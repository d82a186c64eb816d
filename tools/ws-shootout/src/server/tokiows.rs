//! Candidate 3: tokio-websockets 0.13 (`server` feature) on a hyper upgrade.

use std::sync::Arc;

use axum::{
    extract::{Request, State},
    response::{IntoResponse, Response},
};
use futures_util::StreamExt;
use hyper_util::rt::TokioIo;
use tokio_websockets::{proto::ProtocolError, CloseCode, Error, Limits, Message, ServerBuilder};

use super::app::{sink_writer, AnyState, Flow, Inbound, Outbound};

impl Outbound for Message {
    fn text(s: String) -> Self {
        Message::text(s)
    }
    fn close(code: u16, reason: &'static str) -> Self {
        Message::close(CloseCode::try_from(code).ok(), reason)
    }
    fn is_close(&self) -> bool {
        Message::is_close(self)
    }
}

/// `GET /ws`: tokio-websockets has no hyper integration and does not expose its accept-key
/// helper, so the 101 response is built by hand (shared with the raw tungstenite candidate).
pub async fn handler(State(st): State<Arc<AnyState>>, mut req: Request) -> Response {
    let resp = match super::switching_protocols(req.headers()) {
        Ok(r) => r,
        Err(code) => return code.into_response(),
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        let ws = ServerBuilder::new()
            .limits(Limits::default().max_payload_len(Some(st.opts.max_msg)))
            .serve(TokioIo::new(upgraded));
        serve(ws, st).await;
    });
    resp
}

async fn serve<S>(ws: tokio_websockets::WebSocketStream<S>, st: Arc<AnyState>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let state = &st.tokiows;
    let (mut conn, rx) = state.connect();
    let (sink, mut stream) = ws.split();
    let writer = tokio::spawn(sink_writer(sink, rx));
    while let Some(item) = stream.next().await {
        let flow = match item {
            Ok(m) => {
                if let Some(t) = m.as_text() {
                    conn.on_inbound(Inbound::Text(t.as_bytes())).await
                } else if m.is_binary() {
                    conn.on_inbound(Inbound::Binary).await
                } else if m.is_close() {
                    conn.on_inbound(Inbound::Close).await
                } else {
                    conn.on_inbound(Inbound::Control).await
                }
            }
            Err(e) => conn.on_inbound(classify(e)).await,
        };
        if matches!(flow, Flow::Stop) {
            break;
        }
    }
    drop(conn);
    let _ = writer.await;
}

/// Note: for a single oversized frame and for bad UTF-8, tokio-websockets has *already queued*
/// its own close frame (1009 / 1007) when it returns these errors; our explicit close is then
/// rejected by the sink (state no longer Active) and the crate's frame goes out on flush/close.
fn classify(e: Error) -> Inbound<'static> {
    match e {
        Error::PayloadTooLong { .. } => Inbound::TooBig(e.to_string()),
        Error::Protocol(ProtocolError::InvalidUtf8) => Inbound::BadUtf8(e.to_string()),
        _ => Inbound::Fatal(e.to_string()),
    }
}
