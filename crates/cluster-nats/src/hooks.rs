//! [`HookQueue`] on JetStream: stream `{ns}_hooks`, one subject per queue,
//! `{ns}.hq.{queue}` (queue names are valid subject tokens as they are).
//! An event's number is its stream sequence, so numbers ascend across
//! removals; reading walks the queue's subject with "first message at or
//! after" gets from the stream leader, removing purges the subject below a
//! sequence, forgetting purges the whole subject, and listing asks the
//! stream for its subjects. The stream has no limits of its own: each owner
//! bounds its queue in bytes, and a dead owner's queue is forgotten once
//! delivered.

use async_nats::Client;
use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::stream::{
    self, DiscardPolicy, LastRawMessageErrorKind, PurgeErrorKind, StorageType, Stream,
};
use async_nats::jetstream::{self, ErrorCode};
use async_trait::async_trait;
use bytes::Bytes;
use futures::TryStreamExt;
use wsring_cluster::{ClusterError, HookQueue, Queued};

use crate::connect::fail;
use crate::names::hooks_stream;
use crate::setup::{context, ensure_stream};

/// Durable webhook queues in a JetStream stream.
pub struct NatsHookQueue {
    client: Client,
    js: jetstream::Context,
    stream: Stream,
    namespace: String,
}

impl NatsHookQueue {
    /// Opens (creating or reconciling) the stream of `namespace`.
    pub(crate) async fn open(
        client: Client,
        namespace: &str,
        replicas: usize,
    ) -> Result<NatsHookQueue, ClusterError> {
        let js = context(&client);
        let cfg = stream::Config {
            name: hooks_stream(namespace),
            description: Some(format!("wsring durable webhook queues ({namespace})")),
            subjects: vec![format!("{namespace}.hq.>")],
            // Unlimited, as the server reports it back.
            max_messages_per_subject: -1,
            // Unused (no message ids here), but spelled out as the server's
            // default so that the configuration reads back unchanged.
            duplicate_window: std::time::Duration::from_secs(120),
            discard: DiscardPolicy::Old,
            storage: StorageType::File,
            num_replicas: replicas,
            ..Default::default()
        };
        let stream = ensure_stream(&js, &client, cfg).await?;
        Ok(NatsHookQueue {
            client,
            js,
            stream,
            namespace: namespace.to_owned(),
        })
    }

    fn subject(&self, queue: &str) -> Result<String, ClusterError> {
        if wsring_cluster::hook_queue::valid_queue_name(queue) {
            Ok(format!("{}.hq.{queue}", self.namespace))
        } else {
            Err(ClusterError::backend(format!(
                "invalid webhook queue name {queue:?}"
            )))
        }
    }

    /// Purges `subject`, below `below` when given.
    async fn purge(&self, subject: String, below: Option<u64>) -> Result<(), ClusterError> {
        let purge = self.stream.purge().filter(subject.clone());
        let r = match below {
            Some(seq) => purge.sequence(seq).await,
            None => purge.await,
        };
        match r {
            Ok(_) => Ok(()),
            Err(e) => {
                let timed_out = matches!(e.kind(), PurgeErrorKind::TimedOut);
                Err(fail(
                    &self.client,
                    format!("purging {subject}"),
                    timed_out,
                    e,
                ))
            }
        }
    }
}

#[async_trait]
impl HookQueue for NatsHookQueue {
    async fn append(&self, queue: &str, events: &[Bytes]) -> Result<(), ClusterError> {
        let subject = self.subject(queue)?;
        // Sent back to back, then the acknowledgements awaited: one round
        // trip's wait for the whole batch, the order kept by the connection.
        let mut acks = Vec::with_capacity(events.len());
        for e in events {
            let sent = self.js.publish(subject.clone(), e.clone()).await;
            acks.push(sent);
        }
        for ack in acks {
            let r = match ack {
                Ok(ack) => ack.await.map(|_| ()),
                Err(e) => Err(e),
            };
            if let Err(e) = r {
                let timed_out = matches!(
                    e.kind(),
                    PublishErrorKind::TimedOut | PublishErrorKind::BrokenPipe
                );
                return Err(fail(
                    &self.client,
                    format!("appending to {subject}"),
                    timed_out,
                    e,
                ));
            }
        }
        Ok(())
    }

    async fn read(&self, queue: &str, after: u64, max: usize) -> Result<Vec<Queued>, ClusterError> {
        let subject = self.subject(queue)?;
        let mut out = Vec::new();
        let mut from = after.saturating_add(1);
        while out.len() < max {
            let r = self
                .stream
                .get_first_raw_message_by_subject(&subject, from)
                .await;
            let msg = match r {
                Ok(m) => m,
                Err(e) => match e.kind() {
                    LastRawMessageErrorKind::NoMessageFound => break,
                    LastRawMessageErrorKind::JetStream(je)
                        if je.error_code() == ErrorCode::NO_MESSAGE_FOUND =>
                    {
                        break;
                    }
                    kind => {
                        let timed_out = matches!(kind, LastRawMessageErrorKind::Other);
                        return Err(fail(
                            &self.client,
                            format!("reading {subject}"),
                            timed_out,
                            e,
                        ));
                    }
                },
            };
            from = msg.sequence + 1;
            out.push(Queued {
                seq: msg.sequence,
                body: msg.payload,
            });
        }
        Ok(out)
    }

    async fn remove(&self, queue: &str, upto: u64) -> Result<(), ClusterError> {
        let subject = self.subject(queue)?;
        self.purge(subject, Some(upto.saturating_add(1))).await
    }

    async fn forget(&self, queue: &str) -> Result<(), ClusterError> {
        let subject = self.subject(queue)?;
        self.purge(subject, None).await
    }

    async fn queues(&self) -> Result<Vec<String>, ClusterError> {
        let prefix = format!("{}.hq.", self.namespace);
        let filter = format!("{prefix}>");
        let listing = async {
            let mut info = self.stream.info_with_subjects(&filter).await?;
            let mut names = Vec::new();
            while let Some((subject, count)) = info.try_next().await? {
                if count > 0
                    && let Some(q) = subject.strip_prefix(&prefix)
                {
                    names.push(q.to_owned());
                }
            }
            Ok::<_, async_nats::Error>(names)
        };
        let mut names = listing
            .await
            .map_err(|e| fail(&self.client, format!("listing {filter}"), false, e))?;
        names.sort();
        Ok(names)
    }
}
