//! A fleet of raw WebSocket clients that send numbered direct and room
//! messages and record exactly what each one received, for the soak and
//! stall tests. Every client keeps one connection for the whole run: any
//! close, error or reconnect is recorded, never papered over.

#![allow(dead_code)]

use futures::{SinkExt, StreamExt};
use rand::Rng;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_tungstenite::connect_async;
use tokio_tungstenite::tungstenite::Message;

/// What one client saw.
#[derive(Default, Debug)]
pub struct Seen {
    /// Ids of the client's own frames the server acknowledged.
    pub acked: HashSet<String>,
    /// Ids the server answered with an `error` frame, with its code.
    pub errors: Vec<(String, String)>,
    /// Deliveries by message key (`data.k`): how often each arrived.
    pub got: HashMap<String, u32>,
    /// How the connection ended, if it did.
    pub ended: Option<String>,
}

/// One connected client.
pub struct FleetClient {
    pub user: String,
    pub node: String,
    pub seen: Arc<Mutex<Seen>>,
    out: mpsc::UnboundedSender<String>,
}

impl FleetClient {
    /// Queues a raw text frame.
    pub fn send(&self, frame: Value) {
        let _ = self.out.send(frame.to_string());
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Connects `user` at `ws_url` (`?user=` is appended, or `?token=` when the
/// cluster wants tokens signed with `secret`) and starts its reader and
/// writer tasks.
pub async fn connect(ws_url: &str, user: &str, secret: Option<&str>) -> FleetClient {
    let url = match secret {
        Some(s) => format!("{ws_url}?token={}", super::token_with(s, user, json!({}))),
        None => format!("{ws_url}?user={user}"),
    };
    let (ws, _) = tokio::time::timeout(Duration::from_secs(20), connect_async(url.as_str()))
        .await
        .unwrap_or_else(|_| panic!("connect {user}: timed out"))
        .unwrap_or_else(|e| panic!("connect {user}: {e}"));
    let (mut sink, mut stream) = ws.split();
    let welcome = loop {
        match stream.next().await {
            Some(Ok(Message::Text(t))) => {
                break serde_json::from_str::<Value>(t.as_str()).expect("json");
            }
            Some(Ok(_)) => continue,
            other => panic!("{user}: no welcome: {other:?}"),
        }
    };
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    let node = welcome["node"].as_str().unwrap_or_default().to_owned();
    let seen: Arc<Mutex<Seen>> = Arc::default();
    let (out, mut rx) = mpsc::unbounded_channel::<String>();
    tokio::spawn(async move {
        while let Some(frame) = rx.recv().await {
            if sink.send(Message::text(frame)).await.is_err() {
                return;
            }
        }
    });
    tokio::spawn({
        let seen = Arc::clone(&seen);
        async move {
            let end = loop {
                match stream.next().await {
                    Some(Ok(Message::Text(t))) => {
                        let v: Value = match serde_json::from_str(t.as_str()) {
                            Ok(v) => v,
                            Err(e) => break format!("bad json from server: {e}"),
                        };
                        let mut s = seen.lock().unwrap_or_else(|e| e.into_inner());
                        match v["type"].as_str() {
                            Some("ack") => {
                                s.acked
                                    .insert(v["id"].as_str().unwrap_or_default().to_owned());
                            }
                            Some("error") => s.errors.push((
                                v["id"].as_str().unwrap_or_default().to_owned(),
                                v["code"].as_str().unwrap_or_default().to_owned(),
                            )),
                            Some("message") => {
                                let k = v["data"]["k"].as_str().unwrap_or_default().to_owned();
                                *s.got.entry(k).or_default() += 1;
                            }
                            _ => {}
                        }
                    }
                    Some(Ok(Message::Close(f))) => break format!("closed by server: {f:?}"),
                    Some(Ok(_)) => {}
                    Some(Err(e)) => break format!("websocket error: {e}"),
                    None => break "connection ended".to_owned(),
                }
            };
            seen.lock().unwrap_or_else(|e| e.into_inner()).ended = Some(end);
        }
    });
    FleetClient {
        user: user.to_owned(),
        node,
        seen,
        out,
    }
}

/// A fleet of users, each in one room.
pub struct Fleet {
    pub clients: Vec<FleetClient>,
    /// Room of each client (by index).
    pub room_of: Vec<String>,
    /// Message key → the client indexes that must receive it, for every
    /// message sent; `acked_by` says which of them the sender saw acked.
    expected: BTreeMap<String, Vec<usize>>,
    sender_of: BTreeMap<String, usize>,
    next: u64,
}

impl Fleet {
    /// Connects `users` clients named `{prefix}{i}` at `ws_url`, a few at a
    /// time, and joins client `i` to room `{prefix}room{i % rooms}`.
    pub async fn connect(ws_url: &str, prefix: &str, users: usize, rooms: usize) -> Fleet {
        Self::connect_with(ws_url, prefix, users, rooms, None).await
    }

    /// [`Fleet::connect`] with tokens signed with `secret`, if given.
    pub async fn connect_with(
        ws_url: &str,
        prefix: &str,
        users: usize,
        rooms: usize,
        secret: Option<&str>,
    ) -> Fleet {
        let mut clients = Vec::with_capacity(users);
        for chunk in (0..users).collect::<Vec<_>>().chunks(20) {
            let batch = futures::future::join_all(chunk.iter().map(|i| {
                let user = format!("{prefix}{i}");
                async move { connect(ws_url, &user, secret).await }
            }))
            .await;
            clients.extend(batch);
        }
        let room_of: Vec<String> = (0..users)
            .map(|i| format!("{prefix}room{}", i % rooms.max(1)))
            .collect();
        for (i, c) in clients.iter().enumerate() {
            c.send(json!({"type":"join","room":room_of[i],"id":format!("join-{i}")}));
        }
        let fleet = Fleet {
            clients,
            room_of,
            expected: BTreeMap::new(),
            sender_of: BTreeMap::new(),
            next: 0,
        };
        fleet
            .wait_for("every join acked", Duration::from_secs(20), |f| {
                f.clients
                    .iter()
                    .enumerate()
                    .all(|(i, c)| c.lock().acked.contains(&format!("join-{i}")))
            })
            .await;
        fleet
    }

    /// Sends one direct message between two random distinct users.
    pub fn send_direct(&mut self, rng: &mut impl Rng) {
        let n = self.clients.len();
        let from = rng.random_range(0..n);
        let to = (from + rng.random_range(1..n)) % n;
        self.next += 1;
        let k = format!("d{}", self.next);
        self.clients[from].send(json!({
            "type":"send","to":self.clients[to].user,"data":{"k":k},"id":k
        }));
        self.expected.insert(k.clone(), vec![to]);
        self.sender_of.insert(k, from);
    }

    /// Publishes one message to a random user's room.
    pub fn send_room(&mut self, rng: &mut impl Rng) {
        let from = rng.random_range(0..self.clients.len());
        let room = self.room_of[from].clone();
        self.next += 1;
        let k = format!("r{}", self.next);
        self.clients[from].send(json!({
            "type":"publish","room":room,"data":{"k":k},"id":k
        }));
        let members = (0..self.clients.len())
            .filter(|i| self.room_of[*i] == room)
            .collect();
        self.expected.insert(k.clone(), members);
        self.sender_of.insert(k, from);
    }

    /// Polls `cond` every 50 ms until it holds, panicking after `limit`.
    pub async fn wait_for(&self, what: &str, limit: Duration, cond: impl Fn(&Fleet) -> bool) {
        let deadline = tokio::time::Instant::now() + limit;
        while !cond(self) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn acked(&self, k: &str) -> bool {
        self.sender_of
            .get(k)
            .is_some_and(|s| self.clients[*s].lock().acked.contains(k))
    }

    fn delivered_everywhere(&self, k: &str) -> bool {
        self.expected[k]
            .iter()
            .all(|r| self.clients[*r].lock().got.get(k).copied().unwrap_or(0) >= 1)
    }

    /// Waits (up to `limit`) until every message is acknowledged and
    /// delivered to each of its recipients, then checks the books.
    pub async fn settle(&self, limit: Duration) -> Tally {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let done = self
                .expected
                .keys()
                .all(|k| self.acked(k) && self.delivered_everywhere(k));
            if done || tokio::time::Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.tally()
    }

    /// Counts what arrived against what was sent.
    pub fn tally(&self) -> Tally {
        let mut t = Tally::default();
        for (k, recipients) in &self.expected {
            t.sent += 1;
            if self.acked(k) {
                t.acked += 1;
            }
            for r in recipients {
                t.expected_deliveries += 1;
                match self.clients[*r].lock().got.get(k).copied().unwrap_or(0) {
                    0 => {
                        t.missing += 1;
                        if t.examples.len() < 5 {
                            t.examples
                                .push(format!("{k} never reached {}", self.clients[*r].user));
                        }
                    }
                    1 => t.delivered += 1,
                    n => {
                        t.delivered += 1;
                        t.duplicates += u64::from(n - 1);
                        if t.examples.len() < 5 {
                            t.examples
                                .push(format!("{k} reached {} {n} times", self.clients[*r].user));
                        }
                    }
                }
            }
        }
        for (i, c) in self.clients.iter().enumerate() {
            let s = c.lock();
            for k in s.got.keys() {
                let wanted = self.expected.get(k).is_some_and(|r| r.contains(&i));
                if !wanted {
                    t.unexpected += 1;
                }
            }
            if let Some(end) = &s.ended {
                t.ended.push(format!("{}: {end}", c.user));
            }
            t.errors += s.errors.len() as u64;
        }
        t
    }
}

/// The books of a run.
#[derive(Debug, Default)]
pub struct Tally {
    pub sent: u64,
    pub acked: u64,
    pub expected_deliveries: u64,
    pub delivered: u64,
    pub missing: u64,
    pub duplicates: u64,
    pub unexpected: u64,
    pub errors: u64,
    /// Connections that ended during the run (a reconnect would follow).
    pub ended: Vec<String>,
    pub examples: Vec<String>,
}
