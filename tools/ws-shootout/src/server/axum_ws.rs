//! Candidate 1 (baseline): `axum::extract::ws`, i.e. tokio-tungstenite 0.29 behind axum's API.

use std::sync::Arc;

use axum::{
    extract::{
        ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade},
        State,
    },
    response::Response,
};
use futures_util::StreamExt;
use tungstenite029::error::{CapacityError, Error as TsError};

use super::app::{sink_writer, AnyState, Flow, Inbound, Outbound};

impl Outbound for Message {
    fn text(s: String) -> Self {
        Message::Text(s.into())
    }
    fn close(code: u16, reason: &'static str) -> Self {
        Message::Close(Some(CloseFrame {
            code,
            reason: reason.into(),
        }))
    }
    fn is_close(&self) -> bool {
        matches!(self, Message::Close(_))
    }
}

/// Read buffer for the tuned variant. tungstenite zero-fills its whole read buffer (default
/// 128 KiB) before every `read` call, and keeps it allocated per connection.
const TUNED_READ_BUFFER: usize = 8 * 1024;

/// `GET /ws`: upgrade with axum's extractor; limits are set on the extractor.
pub async fn handler(ws: WebSocketUpgrade, State(st): State<Arc<AnyState>>) -> Response {
    upgrade(ws, st)
}

/// `GET /ws` with `read_buffer_size` lowered to [`TUNED_READ_BUFFER`].
pub async fn handler_tuned(ws: WebSocketUpgrade, State(st): State<Arc<AnyState>>) -> Response {
    upgrade(ws.read_buffer_size(TUNED_READ_BUFFER), st)
}

fn upgrade(ws: WebSocketUpgrade, st: Arc<AnyState>) -> Response {
    let max = st.opts.max_msg;
    // Both limits matter: tungstenite checks a frame against `max_frame_size` (default
    // 16 MiB) and only the assembled message against `max_message_size`.
    ws.max_message_size(max)
        .max_frame_size(max)
        .on_upgrade(move |socket| serve(socket, st))
}

async fn serve(socket: WebSocket, st: Arc<AnyState>) {
    let state = &st.axum;
    let (mut conn, rx) = state.connect();
    let (sink, mut stream) = socket.split();
    let writer = tokio::spawn(sink_writer(sink, rx));
    while let Some(item) = stream.next().await {
        let flow = match item {
            Ok(Message::Text(t)) => conn.on_inbound(Inbound::Text(t.as_str().as_bytes())).await,
            Ok(Message::Binary(_)) => conn.on_inbound(Inbound::Binary).await,
            Ok(Message::Close(_)) => conn.on_inbound(Inbound::Close).await,
            Ok(Message::Ping(_) | Message::Pong(_)) => Flow::Continue,
            Err(e) => conn.on_inbound(classify(e)).await,
        };
        if matches!(flow, Flow::Stop) {
            break;
        }
    }
    drop(conn);
    let _ = writer.await;
}

/// `axum::Error` is type-erased: the only way to tell "too big" from "bad UTF-8" is to
/// downcast `into_inner()` to the tungstenite version axum links.
fn classify(e: axum::Error) -> Inbound<'static> {
    let msg = e.to_string();
    match e.into_inner().downcast::<TsError>() {
        Ok(ts) => match *ts {
            TsError::Capacity(CapacityError::MessageTooLong { .. }) => Inbound::TooBig(msg),
            TsError::Utf8(_) => Inbound::BadUtf8(msg),
            _ => Inbound::Fatal(msg),
        },
        Err(_) => Inbound::Fatal(format!("(not a tungstenite 0.29 error) {msg}")),
    }
}
