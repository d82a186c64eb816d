//! Candidate 4 (optional): tokio-tungstenite 0.30 directly on a hyper upgrade (no axum ws).

use std::sync::Arc;

use axum::{
    extract::{Request, State},
    response::{IntoResponse, Response},
};
use futures_util::StreamExt;
use hyper_util::rt::TokioIo;
use tokio_tungstenite::{
    tungstenite::{
        error::{CapacityError, Error as TsError},
        protocol::{frame::coding::CloseCode, CloseFrame, Role, WebSocketConfig},
        Message,
    },
    WebSocketStream,
};

use super::app::{sink_writer, AnyState, Flow, Inbound, Outbound};

impl Outbound for Message {
    fn text(s: String) -> Self {
        Message::Text(s.into())
    }
    fn close(code: u16, reason: &'static str) -> Self {
        Message::Close(Some(CloseFrame {
            code: CloseCode::from(code),
            reason: reason.into(),
        }))
    }
    fn is_close(&self) -> bool {
        matches!(self, Message::Close(_))
    }
}

/// `GET /ws`: answer 101 ourselves, then run tungstenite on the upgraded connection.
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
        let max = st.opts.max_msg;
        let cfg = WebSocketConfig::default()
            .max_message_size(Some(max))
            .max_frame_size(Some(max));
        let ws =
            WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(cfg)).await;
        serve(ws, st).await;
    });
    resp
}

async fn serve<S>(ws: WebSocketStream<S>, st: Arc<AnyState>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let state = &st.tungstenite;
    let (mut conn, rx) = state.connect();
    let (sink, mut stream) = ws.split();
    let writer = tokio::spawn(sink_writer(sink, rx));
    while let Some(item) = stream.next().await {
        let flow = match item {
            Ok(Message::Text(t)) => conn.on_inbound(Inbound::Text(t.as_bytes())).await,
            Ok(Message::Binary(_)) => conn.on_inbound(Inbound::Binary).await,
            Ok(Message::Close(_)) => conn.on_inbound(Inbound::Close).await,
            Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)) => Flow::Continue,
            Err(e) => conn.on_inbound(classify(e)).await,
        };
        if matches!(flow, Flow::Stop) {
            break;
        }
    }
    drop(conn);
    let _ = writer.await;
}

fn classify(e: TsError) -> Inbound<'static> {
    match e {
        TsError::Capacity(CapacityError::MessageTooLong { .. }) => Inbound::TooBig(e.to_string()),
        TsError::Utf8(_) => Inbound::BadUtf8(e.to_string()),
        _ => Inbound::Fatal(e.to_string()),
    }
}
