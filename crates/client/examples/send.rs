//! Sends one direct message and exits once the cluster acknowledged it.
//!
//! Run with: cargo run -p wsring-client --example send -- ws://127.0.0.1:7000/ws alice bob "hello"

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .unwrap_or_else(|| "ws://127.0.0.1:7000/ws".into());
    let from = args.next().unwrap_or_else(|| "alice".into());
    let to = args.next().unwrap_or_else(|| "bob".into());
    let text = args.next().unwrap_or_else(|| "hello".into());
    let (client, _events) = wsring_client::connect(&url, &from).await?;
    client
        .send(&to, serde_json::json!({ "text": text }))
        .await?;
    println!("acknowledged");
    client.close();
    Ok(())
}
