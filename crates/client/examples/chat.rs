//! A tiny chat participant: joins a room, publishes a line every second and
//! prints everything it receives. Reconnects and resumes by itself.
//!
//! Run with: cargo run -p wsring-client --example chat -- ws://127.0.0.1:7000/ws alice lobby

use std::time::Duration;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .unwrap_or_else(|| "ws://127.0.0.1:7000/ws".into());
    let user = args.next().unwrap_or_else(|| "alice".into());
    let room = args.next().unwrap_or_else(|| "lobby".into());
    let (client, mut events) = wsring_client::connect(&url, &user).await?;
    client.join(&room).await?;
    let sender = client.clone();
    let r = room.clone();
    tokio::spawn(async move {
        for i in 0.. {
            if let Err(e) = sender.publish(&r, serde_json::json!({ "line": i })).await {
                eprintln!("publish failed: {e}");
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
    while let Some(event) = events.next().await {
        println!("{event:?}");
    }
    Ok(())
}
