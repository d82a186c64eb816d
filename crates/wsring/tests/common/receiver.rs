//! An SDK client that records the numbered messages (`data.n`) of one stream
//! (its direct messages, or one room's) with their arrival times, for the
//! zero-loss and chaos tests.

#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use tokio::time::Instant;
use wsring_client::{ClientConfig, Event};

/// Arrivals: `(n, when)`, in arrival order.
pub type Log = Arc<Mutex<Vec<(u64, Instant)>>>;

/// A connected receiver.
pub struct Receiver {
    pub user: String,
    pub log: Log,
    pub client: wsring_client::Client,
}

/// Connects with `cfg`, joins `room` if given, and records that stream.
pub async fn receiver(cfg: ClientConfig, room: Option<String>) -> Receiver {
    let user = cfg.user.clone();
    let (client, mut events) = wsring_client::connect_with(cfg).await.expect("connect");
    if let Some(r) = &room {
        client.join(r).await.expect("join");
    }
    let log: Log = Arc::default();
    let l = Arc::clone(&log);
    tokio::spawn(async move {
        while let Some(ev) = events.next().await {
            if let Event::Message(m) = ev
                && let Some(n) = m.data["n"].as_u64()
            {
                let mine = match &room {
                    Some(r) => m.room.as_deref() == Some(r.as_str()),
                    None => m.room.is_none(),
                };
                if mine {
                    l.lock().expect("log").push((n, Instant::now()));
                }
            }
        }
    });
    Receiver { user, log, client }
}
