//! Provisioning: creates the KV buckets and the JetStream stream a namespace
//! needs, or reconciles them when they already exist with other limits.
//!
//! Every node runs this at start-up, concurrently. Creation with an identical
//! configuration is idempotent on the server, so the only races are "someone
//! else created it first" (re-check and carry on) and "it exists with other
//! limits" (a different TTL or retention was configured). In the latter case
//! the configuration of the node starting now wins and a warning is logged:
//! silently keeping the old TTL would make the failure detector disagree with
//! the configuration the operator just gave.

use async_nats::Client;
use async_nats::jetstream::context::GetStreamErrorKind;
use async_nats::jetstream::stream::{self, DiscardPolicy, StorageType, Stream};
use async_nats::jetstream::{self, ErrorCode, kv};
use std::time::Duration;
use tracing::{debug, warn};
use wsring_cluster::ClusterError;

use crate::connect::{JS_TIMEOUT, fail};
use crate::names::kv_stream;

/// Attempts at the get / create / re-check cycle before giving up.
const ATTEMPTS: usize = 4;

/// A JetStream context with wsring's request timeout.
pub(crate) fn context(client: &Client) -> jetstream::Context {
    jetstream::ContextBuilder::new()
        .timeout(JS_TIMEOUT)
        .build(client.clone())
}

/// Looks up a stream; `Ok(None)` when it does not exist.
async fn lookup(
    js: &jetstream::Context,
    client: &Client,
    name: &str,
) -> Result<Option<Stream>, ClusterError> {
    match js.get_stream(name).await {
        Ok(s) => Ok(Some(s)),
        Err(e) => match e.kind() {
            GetStreamErrorKind::JetStream(je) if je.error_code() == ErrorCode::STREAM_NOT_FOUND => {
                Ok(None)
            }
            // "no responders" here almost always means JetStream is off.
            _ => Err(fail(
                client,
                format!("looking up JetStream stream {name} (is JetStream enabled?)"),
                false,
                e,
            )),
        },
    }
}

/// The stream configuration behind a KV bucket, as the KV protocol lays it
/// out (the same as async-nats' `create_key_value`). Built here because that
/// helper first queries the account, and async-nats 0.51 cannot decode the
/// account info of nats-server 2.9 (it lacks `reserved_memory`).
fn kv_stream_config(
    bucket: &str,
    description: String,
    max_age: Duration,
    max_bytes: i64,
    replicas: usize,
) -> stream::Config {
    stream::Config {
        name: kv_stream(bucket),
        max_bytes,
        description: Some(description),
        subjects: vec![format!("$KV.{bucket}.>")],
        max_messages_per_subject: 1,
        max_age,
        storage: StorageType::File,
        num_replicas: replicas,
        allow_rollup: true,
        deny_delete: true,
        deny_purge: false,
        // Direct gets are served by any replica, so on a replicated bucket
        // a read could miss the latest compare-and-set; there, reads go to
        // the stream leader instead.
        allow_direct: replicas <= 1,
        discard: DiscardPolicy::New,
        ..Default::default()
    }
}

/// Whether an existing KV stream has the history and TTL wsring relies on.
fn same_kv_limits(have: &stream::Config, want: &stream::Config) -> bool {
    have.subjects == want.subjects
        && have.max_messages_per_subject == want.max_messages_per_subject
        && have.max_age == want.max_age
        && byte_limit(have.max_bytes) == byte_limit(want.max_bytes)
        && have.allow_direct == want.allow_direct
        && have.num_replicas == want.num_replicas
}

/// Opens KV bucket `bucket` (history 1, entries expire after `max_age`, zero
/// meaning never, at most `max_bytes` stored, -1 meaning no limit,
/// `replicas` copies), creating it, or updating it when its limits differ.
pub(crate) async fn ensure_kv(
    js: &jetstream::Context,
    client: &Client,
    bucket: &str,
    description: String,
    max_age: Duration,
    max_bytes: i64,
    replicas: usize,
) -> Result<kv::Store, ClusterError> {
    let cfg = kv_stream_config(bucket, description, max_age, max_bytes, replicas);
    ensure_stream_with(js, client, cfg, same_kv_limits).await?;
    js.get_key_value(bucket)
        .await
        .map_err(|e| fail(client, format!("opening KV bucket {bucket}"), false, e))
}

/// Whether an existing stream already has the limits wsring relies on.
/// A stream's byte limit with "none" in one spelling: JetStream reports -1,
/// a configuration left at its default says 0.
fn byte_limit(max_bytes: i64) -> i64 {
    if max_bytes <= 0 { -1 } else { max_bytes }
}

fn same_limits(have: &stream::Config, want: &stream::Config) -> bool {
    have.subjects == want.subjects
        && have.max_messages_per_subject == want.max_messages_per_subject
        && have.max_age == want.max_age
        && byte_limit(have.max_bytes) == byte_limit(want.max_bytes)
        && have.duplicate_window == want.duplicate_window
        && have.allow_direct == want.allow_direct
        && have.discard == want.discard
        && have.num_replicas == want.num_replicas
}

/// Opens stream `cfg.name`, creating it, or updating it when its limits
/// differ from `cfg`.
pub(crate) async fn ensure_stream(
    js: &jetstream::Context,
    client: &Client,
    cfg: stream::Config,
) -> Result<Stream, ClusterError> {
    ensure_stream_with(js, client, cfg, same_limits).await
}

async fn ensure_stream_with(
    js: &jetstream::Context,
    client: &Client,
    cfg: stream::Config,
    same: fn(&stream::Config, &stream::Config) -> bool,
) -> Result<Stream, ClusterError> {
    let mut last_err = None;
    for _ in 0..ATTEMPTS {
        match lookup(js, client, &cfg.name).await? {
            Some(s) => {
                let have = &s.cached_info().config;
                if same(have, &cfg) {
                    return Ok(s);
                }
                warn!(
                    stream = %cfg.name,
                    old_max_age = ?have.max_age,
                    new_max_age = ?cfg.max_age,
                    old_max_per_subject = have.max_messages_per_subject,
                    new_max_per_subject = cfg.max_messages_per_subject,
                    old_max_bytes = have.max_bytes,
                    new_max_bytes = cfg.max_bytes,
                    old_replicas = have.num_replicas,
                    new_replicas = cfg.num_replicas,
                    "stream exists with other limits; updating it to this node's configuration"
                );
                js.update_stream(&cfg)
                    .await
                    .map_err(|e| fail(client, format!("updating stream {}", cfg.name), false, e))?;
                // Re-read so the handle carries the configuration in force
                // (not compared again: the server may normalise fields).
                if let Some(s) = lookup(js, client, &cfg.name).await? {
                    return Ok(s);
                }
            }
            None => match js.create_stream(cfg.clone()).await {
                Ok(s) => {
                    debug!(stream = %cfg.name, "created stream");
                    return Ok(s);
                }
                Err(e) => {
                    debug!(stream = %cfg.name, error = %e, "stream creation failed; re-checking");
                    last_err = Some(e);
                }
            },
        }
    }
    Err(match last_err {
        Some(e) => fail(client, format!("creating stream {}", cfg.name), false, e),
        None => ClusterError::backend(format!(
            "stream {} kept disappearing while being set up",
            cfg.name
        )),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_byte_limit_is_the_same_whichever_way_it_is_spelled() {
        let want = stream::Config {
            name: "s".into(),
            ..Default::default()
        };
        let have = stream::Config {
            max_bytes: -1,
            ..want.clone()
        };
        assert!(same_limits(&have, &want));
        let limited = stream::Config {
            max_bytes: 1024,
            ..want.clone()
        };
        assert!(!same_limits(&limited, &want));
    }
}
