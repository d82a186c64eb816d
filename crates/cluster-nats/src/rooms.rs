//! [`ServerRooms`] on JetStream: stream `{ns}_rooms`, one subject per
//! membership, `{ns}.sr.{user}.{room}` (both escaped into single tokens),
//! holding one message (`max_msgs_per_subject = 1`) whose payload is the
//! room name. Adding publishes it (expected last subject sequence 0: only
//! if absent), removing deletes that message, listing walks the user's
//! subjects (`{ns}.sr.{user}.>`) in stream order with "next message at or
//! after" gets from the stream leader.
//!
//! One subject per membership rather than one record per user: a change
//! never rewrites another room's membership, so two concurrent changes of
//! one user cannot lose each other, whatever the server does with
//! concurrent conditional writes (nats-server releases before 2.9.21 do not
//! serialize them in clustered streams). The per-user bound is checked
//! before an add and again after it: if concurrent adds took the user past
//! it, the memberships ordered first in the stream stay and the others are
//! deleted again and reported as [`RoomAdd::Full`], the same decision in
//! every adder. For that moment a listing can show more than the bound.

use async_nats::Client;
use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::message::{PublishMessage, StreamMessage};
use async_nats::jetstream::stream::{
    self, DeleteMessageErrorKind, DiscardPolicy, LastRawMessageError, LastRawMessageErrorKind,
    StorageType, Stream,
};
use async_nats::jetstream::{self, ErrorCode};
use async_trait::async_trait;
use bytes::Bytes;
use wsring_cluster::{ClusterError, RoomAdd, ServerRooms};

use crate::connect::fail;
use crate::names::{rooms_stream, subject_token};
use crate::setup::{context, ensure_stream};

/// Server-side rooms in a JetStream stream.
pub struct NatsServerRooms {
    client: Client,
    js: jetstream::Context,
    stream: Stream,
    namespace: String,
}

impl NatsServerRooms {
    /// Opens (creating or reconciling) the stream of `namespace`.
    pub(crate) async fn open(
        client: Client,
        namespace: &str,
        replicas: usize,
    ) -> Result<NatsServerRooms, ClusterError> {
        let js = context(&client);
        let cfg = stream::Config {
            name: rooms_stream(namespace),
            description: Some(format!("wsring server-side rooms per user ({namespace})")),
            subjects: vec![format!("{namespace}.sr.>")],
            max_messages_per_subject: 1,
            // Unused (no message ids here), but spelled out as the server's
            // default so that the configuration reads back unchanged.
            duplicate_window: std::time::Duration::from_secs(120),
            discard: DiscardPolicy::Old,
            storage: StorageType::File,
            num_replicas: replicas,
            ..Default::default()
        };
        let stream = ensure_stream(&js, &client, cfg).await?;
        Ok(NatsServerRooms {
            client,
            js,
            stream,
            namespace: namespace.to_owned(),
        })
    }

    fn user_filter(&self, user: &str) -> String {
        format!("{}.sr.{}.>", self.namespace, subject_token(user))
    }

    fn subject(&self, user: &str, room: &str) -> String {
        format!(
            "{}.sr.{}.{}",
            self.namespace,
            subject_token(user),
            subject_token(room)
        )
    }

    /// The user's memberships as (stream sequence, room), in stream order.
    async fn memberships(&self, user: &str) -> Result<Vec<(u64, String)>, ClusterError> {
        let filter = self.user_filter(user);
        let mut out = Vec::new();
        let mut from = 1;
        loop {
            let r = self
                .stream
                .get_first_raw_message_by_subject(&filter, from)
                .await;
            let Some(msg) = self.found(r, || format!("reading server rooms of {user}"))? else {
                return Ok(out);
            };
            let room = String::from_utf8(msg.payload.to_vec()).map_err(|_| {
                ClusterError::backend(format!("a server room of {user} is not UTF-8"))
            })?;
            out.push((msg.sequence, room));
            from = msg.sequence + 1;
        }
    }

    /// A message read from the stream leader; `None` when there is none.
    fn found(
        &self,
        r: Result<StreamMessage, LastRawMessageError>,
        what: impl FnOnce() -> String,
    ) -> Result<Option<StreamMessage>, ClusterError> {
        match r {
            Ok(m) => Ok(Some(m)),
            Err(e) => match e.kind() {
                LastRawMessageErrorKind::NoMessageFound => Ok(None),
                LastRawMessageErrorKind::JetStream(je)
                    if je.error_code() == ErrorCode::NO_MESSAGE_FOUND =>
                {
                    Ok(None)
                }
                // `Other` is a failed request: a timeout or no responder,
                // as while a replicated stream elects a new leader.
                kind => {
                    let timed_out = matches!(kind, LastRawMessageErrorKind::Other);
                    Err(fail(&self.client, what(), timed_out, e))
                }
            },
        }
    }

    /// Deletes the message at `seq`; whether it was there.
    async fn delete(&self, seq: u64, what: &str) -> Result<bool, ClusterError> {
        match self.stream.delete_message(seq).await {
            Ok(deleted) => Ok(deleted),
            Err(e) => match e.kind() {
                DeleteMessageErrorKind::JetStream(je)
                    if je.error_code() == ErrorCode::NO_MESSAGE_FOUND
                        || je.error_code() == ErrorCode::SEQUENCE_NOT_FOUND =>
                {
                    Ok(false)
                }
                kind => {
                    let timed_out = matches!(kind, DeleteMessageErrorKind::TimedOut);
                    Err(fail(&self.client, what.to_owned(), timed_out, e))
                }
            },
        }
    }
}

#[async_trait]
impl ServerRooms for NatsServerRooms {
    async fn add(&self, user: &str, room: &str, max: usize) -> Result<RoomAdd, ClusterError> {
        let held = self.memberships(user).await?;
        if held.iter().any(|(_, r)| r == room) {
            return Ok(RoomAdd::Present);
        }
        if held.len() >= max {
            return Ok(RoomAdd::Full);
        }
        let subject = self.subject(user, room);
        let msg = PublishMessage::build()
            .payload(Bytes::from(room.to_owned()))
            .expected_last_subject_sequence(0);
        let ack = match self.js.send_publish(subject.clone(), msg).await {
            Ok(ack) => ack.await,
            Err(e) => Err(e),
        };
        let seq = match ack {
            Ok(ack) => ack.sequence,
            // Added by someone else meanwhile.
            Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => {
                return Ok(RoomAdd::Present);
            }
            Err(e) => {
                let timed_out = matches!(
                    e.kind(),
                    PublishErrorKind::TimedOut | PublishErrorKind::BrokenPipe
                );
                return Err(fail(
                    &self.client,
                    format!("adding {subject}"),
                    timed_out,
                    e,
                ));
            }
        };
        // Concurrent adds may have passed the bound together: the first
        // `max` in stream order stay.
        let now = self.memberships(user).await?;
        let rank = now.iter().position(|(s, _)| *s == seq);
        if rank.is_some_and(|i| i >= max) {
            self.delete(seq, &format!("undoing {subject}")).await?;
            return Ok(RoomAdd::Full);
        }
        Ok(RoomAdd::Added)
    }

    async fn remove(&self, user: &str, room: &str) -> Result<bool, ClusterError> {
        let subject = self.subject(user, room);
        let last = self.stream.get_last_raw_message_by_subject(&subject).await;
        let Some(msg) = self.found(last, || format!("reading {subject}"))? else {
            return Ok(false);
        };
        let seq = msg.sequence;
        self.delete(seq, &format!("removing {subject}")).await
    }

    async fn list(&self, user: &str) -> Result<Vec<String>, ClusterError> {
        let mut rooms: Vec<String> = self
            .memberships(user)
            .await?
            .into_iter()
            .map(|(_, r)| r)
            .collect();
        rooms.sort();
        rooms.dedup();
        Ok(rooms)
    }
}
