//! A bare WebSocket echo server: tokio-tungstenite's handshake, then every
//! text or binary message goes back as it came. It is the floor a wsring
//! node's per-message cost is compared with in `scripts/compare-peers.sh`
//! (a client sending direct messages to its own user): the same WebSocket
//! crate, runtime and read buffer size, without routing, JSON or limits.
//!
//! Usage: wsring-bare-echo [PORT]; prints `listening on <port>`.

use anyhow::Context;
use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tungstenite::protocol::WebSocketConfig;

/// The read buffer a wsring node uses: tungstenite's default (128 KiB) is
/// zero-filled before every read, which would make this floor slower than
/// the server it is a floor for.
const READ_BUFFER: usize = 8 * 1024;

/// Echoes until the peer leaves. Replies are fed as they come and flushed
/// once no further message is already buffered, so a burst costs one write.
async fn serve(stream: TcpStream) -> Result<(), tungstenite::Error> {
    stream.set_nodelay(true)?;
    let config = WebSocketConfig::default().read_buffer_size(READ_BUFFER);
    let ws = tokio_tungstenite::accept_async_with_config(stream, Some(config)).await?;
    let (mut tx, mut rx) = ws.split();
    while let Some(msg) = rx.next().await {
        let mut msg = msg?;
        loop {
            if msg.is_text() || msg.is_binary() {
                tx.feed(msg).await?;
            }
            // Take whatever else is already readable before flushing.
            match futures_util::FutureExt::now_or_never(rx.next()) {
                Some(Some(next)) => msg = next?,
                Some(None) => return tx.flush().await,
                None => break,
            }
        }
        tx.flush().await?;
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let port: u16 = match std::env::args().nth(1) {
        Some(p) => p.parse().context("PORT")?,
        None => 0,
    };
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    println!("listening on {}", listener.local_addr()?.port());
    loop {
        let (stream, _) = listener.accept().await?;
        tokio::spawn(async move {
            let _ = serve(stream).await;
        });
    }
}
