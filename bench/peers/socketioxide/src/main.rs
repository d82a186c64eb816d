//! A socketioxide server scaled out with socketioxide-redis, one process per
//! port, every process on the same Redis: the Rust socket.io peer that
//! `scripts/compare-peers.sh` measures wsring against. It does the same job
//! as `bench/peers/socketio/server.mjs`:
//!
//! * a client names its user at the handshake (`auth: { user }`) and its
//!   socket joins the room named after that user id;
//! * a `send` event carrying `{ to, data }` is emitted, as event `message`
//!   with `{ from, data }`, to room `to`, wherever in the cluster its sockets
//!   are.
//!
//! Prints `listening on <port>` once the adapter is subscribed.

use anyhow::Context;
use clap::Parser;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use socketioxide::SocketIo;
use socketioxide::adapter::Adapter;
use socketioxide::extract::{Data, SocketRef};
use socketioxide_redis::{RedisAdapter, RedisAdapterConfig, RedisAdapterCtr};

#[derive(Parser)]
struct Args {
    /// Port to listen on (0: any free port).
    #[arg(long, default_value_t = 0)]
    port: u16,
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Redis URL; the drivers of socketioxide-redis speak RESP3.
    #[arg(long, default_value = "redis://127.0.0.1:6379/?protocol=resp3")]
    redis: String,
    /// Channel prefix, so several clusters share one Redis.
    #[arg(long, default_value = "socket.io")]
    key: String,
}

#[derive(Deserialize)]
struct Auth {
    user: String,
}

/// `data` stays raw: the server forwards it without looking inside, as the
/// JS peer and wsring do.
#[derive(Deserialize)]
struct Send {
    to: String,
    data: Box<RawValue>,
}

#[derive(Serialize)]
struct Message<'a> {
    from: &'a str,
    data: &'a RawValue,
}

/// The same user-id rule as wsring's, so both refuse the same handshakes.
fn valid_user(user: &str) -> bool {
    (1..=128).contains(&user.len())
        && user
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.:@-".contains(&b))
}

async fn on_connect<A: Adapter>(socket: SocketRef<A>, Data(auth): Data<Auth>) {
    if !valid_user(&auth.user) {
        let _ = socket.disconnect();
        return;
    }
    socket.join(auth.user.clone());
    let from = auth.user;
    socket.on(
        "send",
        async move |socket: SocketRef<A>, Data(msg): Data<Send>| {
            let out = Message {
                from: &from,
                data: &msg.data,
            };
            // A failed broadcast is a lost message; the load client counts it.
            let _ = socket.within(msg.to).emit("message", &out).await;
        },
    );
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let client = redis::Client::open(args.redis.as_str()).context("redis url")?;
    let config = RedisAdapterConfig::new().with_prefix(args.key);
    let adapter = RedisAdapterCtr::new_with_redis_config(&client, config)
        .await
        .context("connect to redis")?;
    let (layer, io) = SocketIo::builder()
        .with_adapter::<RedisAdapter<_>>(adapter)
        .build_layer();
    io.ns("/", on_connect)
        .await
        .map_err(|e| anyhow::anyhow!("adapter init: {e}"))?;
    let app = axum::Router::new().layer(layer);
    let listener = tokio::net::TcpListener::bind((args.host.as_str(), args.port))
        .await
        .context("bind")?;
    println!("listening on {}", listener.local_addr()?.port());
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
