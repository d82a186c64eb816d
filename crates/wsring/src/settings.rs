//! Resolved settings: flag > environment (both via clap) > TOML file >
//! default. The file uses the long flag names in snake_case and rejects
//! unknown keys, so a typo is an error rather than a silently ignored line.

use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Duration;
use thiserror::Error;
use wsring_cluster::{MembershipConfig, Retention};
use wsring_node::{NodeConfig, Routing};

use crate::cli::CommonArgs;

/// A settings problem, reported before anything starts.
#[derive(Debug, Error)]
pub enum SettingsError {
    /// The config file could not be read.
    // The cause is part of the message and deliberately not a `source()`:
    // an error chain would print it twice.
    #[error("cannot read config file {path}: {reason}; check the --config path (or WSRING_CONFIG)")]
    Read {
        /// The file.
        path: String,
        /// Why, e.g. "no such file".
        reason: String,
    },
    /// The config file is not valid TOML of the expected shape.
    #[error("invalid config file {path}{at}: {reason} (see wsring.example.toml for every key)")]
    Parse {
        /// The file.
        path: String,
        /// ` at line N, column M`, when known.
        at: String,
        /// The parser's message, on one line.
        reason: String,
    },
    /// A duration in the file could not be parsed.
    #[error("invalid duration for `{key}`: {value:?} ({reason})")]
    Duration {
        /// The key.
        key: &'static str,
        /// The value.
        value: String,
        /// Why.
        reason: String,
    },
    /// A value outside its allowed range.
    #[error("invalid setting `{0}`: {1}")]
    Invalid(&'static str, String),
    /// A required setting is missing.
    #[error("missing required setting `{0}` (flag --{1}, env WSRING_{2}, or config file)")]
    Missing(&'static str, &'static str, &'static str),
}

/// The TOML file: every key optional. `wsring.example.toml` at the
/// repository root lists them all with their defaults (a test keeps it so).
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// See `--routing`.
    pub routing: Option<Routing>,
    /// See `--namespace`.
    pub namespace: Option<String>,
    /// See `--cluster`.
    pub cluster: Option<String>,
    /// See `--durable`.
    pub durable: Option<bool>,
    /// See `--history-size`.
    pub history_size: Option<u64>,
    /// See `--history-ttl` (e.g. "10m").
    pub history_ttl: Option<String>,
    /// See `--heartbeat-ttl` (e.g. "2s").
    pub heartbeat_ttl: Option<String>,
    /// See `--max-message-bytes`.
    pub max_message_bytes: Option<usize>,
    /// See `--drain-window`.
    pub drain_window: Option<String>,
    /// See `--session-queue`.
    pub session_queue: Option<usize>,
    /// See `--session-queue-bytes`.
    pub session_queue_bytes: Option<usize>,
    /// See `--ping-interval`.
    pub ping_interval: Option<String>,
    /// See `--max-rooms-per-session`.
    pub max_rooms_per_session: Option<usize>,
    /// See `--nodes` (dev).
    pub nodes: Option<usize>,
    /// See `--port` (dev).
    pub port: Option<u16>,
    /// See `--host` (dev).
    pub host: Option<String>,
    /// See `--id` (node).
    pub id: Option<String>,
    /// See `--listen` (node, gateway).
    pub listen: Option<String>,
    /// See `--advertise` (node).
    pub advertise: Option<String>,
    /// See `--registry`.
    pub registry: Option<String>,
    /// See `--broker`.
    pub broker: Option<String>,
}

impl FileConfig {
    /// Loads the file, or the empty config when no file is given.
    pub fn load(path: Option<&Path>) -> Result<FileConfig, SettingsError> {
        let Some(path) = path else {
            return Ok(FileConfig::default());
        };
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| SettingsError::Read {
            path: shown.clone(),
            reason: io_reason(&e),
        })?;
        Self::parse(&text).map_err(|e| match e {
            SettingsError::Parse { at, reason, .. } => SettingsError::Parse {
                path: shown,
                at,
                reason,
            },
            other => other,
        })
    }

    /// Parses TOML text (reporting errors for a file called `<text>`).
    pub fn parse(text: &str) -> Result<FileConfig, SettingsError> {
        toml::from_str(text).map_err(|e: toml::de::Error| {
            // toml's Display draws a multi-line snippet; keep the message
            // and turn the span into a line/column.
            let at = e
                .span()
                .map(|span| {
                    let before = &text[..span.start.min(text.len())];
                    let line = before.matches('\n').count() + 1;
                    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
                    format!(" at line {line}, column {column}")
                })
                .unwrap_or_default();
            SettingsError::Parse {
                path: "<text>".into(),
                at,
                reason: e.message().trim().replace('\n', " "),
            }
        })
    }
}

/// An I/O error in words, without the "(os error N)" suffix for the common
/// cases a user can act on.
fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        std::io::ErrorKind::IsADirectory => "it is a directory".into(),
        _ => e.to_string(),
    }
}

fn file_duration(key: &'static str, v: &Option<String>) -> Result<Option<Duration>, SettingsError> {
    v.as_deref()
        .map(|s| {
            humantime::parse_duration(s).map_err(|e| SettingsError::Duration {
                key,
                value: s.to_owned(),
                reason: e.to_string(),
            })
        })
        .transpose()
}

/// Settings every role shares, resolved.
#[derive(Debug, Clone)]
pub struct Common {
    /// Routing mode. Default: hash.
    pub routing: Routing,
    /// Key/channel/subject prefix. Default: `wsring`.
    pub namespace: String,
    /// `--cluster` URL, if any.
    pub cluster: Option<String>,
    /// Durable mode. Default: off.
    pub durable: bool,
    /// Stream retention. Default: 1000 entries, 10 minutes.
    pub retention: Retention,
    /// Membership timing. Default: 2 s TTL.
    pub membership: MembershipConfig,
    /// Largest client message. Default: 65536.
    pub max_message_bytes: usize,
    /// Rebalance spread. Default: 0.
    pub drain_window: Duration,
    /// Per-session queue. Default: 1024.
    pub session_queue: usize,
    /// Per-session queue in bytes. Default: 1 MiB.
    pub session_queue_bytes: usize,
    /// Server ping period. Default: 20 s.
    pub ping_interval: Duration,
    /// Rooms per session. Default: 256.
    pub max_rooms_per_session: usize,
}

impl Common {
    /// Merges flags/env with the file and defaults.
    pub fn resolve(a: &CommonArgs, f: &FileConfig) -> Result<Common, SettingsError> {
        let defaults = NodeConfig::new("");
        let retention_default = Retention::default();
        let ttl = a
            .heartbeat_ttl
            .or(file_duration("heartbeat_ttl", &f.heartbeat_ttl)?)
            .unwrap_or(Duration::from_secs(2));
        Common {
            routing: a.routing.or(f.routing).unwrap_or_default(),
            namespace: a
                .namespace
                .clone()
                .or(f.namespace.clone())
                .unwrap_or_else(|| "wsring".into()),
            cluster: a.cluster.clone().or(f.cluster.clone()),
            durable: a.durable.or(f.durable).unwrap_or(false),
            retention: Retention {
                max_len: a
                    .history_size
                    .or(f.history_size)
                    .unwrap_or(retention_default.max_len),
                max_age: a
                    .history_ttl
                    .or(file_duration("history_ttl", &f.history_ttl)?)
                    .unwrap_or(retention_default.max_age),
            },
            membership: MembershipConfig::with_ttl(ttl),
            max_message_bytes: a
                .max_message_bytes
                .or(f.max_message_bytes)
                .unwrap_or(defaults.max_message_bytes),
            drain_window: a
                .drain_window
                .or(file_duration("drain_window", &f.drain_window)?)
                .unwrap_or(defaults.drain_window),
            session_queue: a
                .session_queue
                .or(f.session_queue)
                .unwrap_or(defaults.session_queue),
            session_queue_bytes: a
                .session_queue_bytes
                .or(f.session_queue_bytes)
                .unwrap_or(defaults.session_queue_bytes),
            ping_interval: a
                .ping_interval
                .or(file_duration("ping_interval", &f.ping_interval)?)
                .unwrap_or(defaults.ping_interval),
            max_rooms_per_session: a
                .max_rooms_per_session
                .or(f.max_rooms_per_session)
                .unwrap_or(defaults.max_rooms_per_session),
        }
        .validated()
    }

    /// Rejects values that cannot work (zero-sized queues, zero periods),
    /// with a one-line reason, before anything starts.
    fn validated(self) -> Result<Common, SettingsError> {
        let bad = |k, why: &str| Err(SettingsError::Invalid(k, why.to_owned()));
        if self.session_queue == 0 {
            return bad("session_queue", "must be at least 1");
        }
        if self.session_queue_bytes < self.max_message_bytes {
            return bad(
                "session_queue_bytes",
                "must be at least max_message_bytes (one largest message must fit)",
            );
        }
        if self.ping_interval < Duration::from_millis(100) {
            return bad("ping_interval", "must be at least 100ms");
        }
        if self.membership.ttl < Duration::from_millis(200) {
            return bad("heartbeat_ttl", "must be at least 200ms");
        }
        if self.max_message_bytes < 256 {
            return bad("max_message_bytes", "must be at least 256");
        }
        if self.retention.max_len == 0 {
            return bad("history_size", "must be at least 1");
        }
        if self.retention.max_age < Duration::from_secs(1) {
            return bad("history_ttl", "must be at least 1s");
        }
        if self.max_rooms_per_session == 0 {
            return bad("max_rooms_per_session", "must be at least 1");
        }
        Ok(self)
    }

    /// How long the gateway holds a connect whose owner is unreachable:
    /// long enough for the owner's heartbeat to expire and be reaped.
    pub fn reroute_wait(&self) -> Duration {
        self.membership.ttl + self.membership.ttl / 2 + Duration::from_millis(500)
    }

    /// A node configuration for node `id` with these settings.
    pub fn node_config(&self, id: &str) -> NodeConfig {
        NodeConfig {
            routing: self.routing,
            max_message_bytes: self.max_message_bytes,
            drain_window: self.drain_window,
            session_queue: self.session_queue,
            session_queue_bytes: self.session_queue_bytes,
            ping_interval: self.ping_interval,
            durable: self.durable,
            max_rooms_per_session: self.max_rooms_per_session,
            ..NodeConfig::new(id)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precedence_flag_over_file_over_default() {
        let file: FileConfig = toml::from_str(
            "routing = \"broadcast\"\nhistory_size = 5\nhistory_ttl = \"30s\"\nnamespace = \"fromfile\"",
        )
        .expect("toml");
        let args = CommonArgs {
            namespace: Some("fromflag".into()),
            ..Default::default()
        };
        let c = Common::resolve(&args, &file).expect("resolve");
        assert_eq!(c.namespace, "fromflag");
        assert_eq!(c.routing, Routing::Broadcast);
        assert_eq!(c.retention.max_len, 5);
        assert_eq!(c.retention.max_age, Duration::from_secs(30));
        assert_eq!(c.max_message_bytes, 65536);
        assert_eq!(c.membership.ttl, Duration::from_secs(2));
    }

    #[test]
    fn unknown_keys_are_errors() {
        let err = FileConfig::parse("routing = \"hash\"\nhistroy_size = 5").expect_err("typo");
        let msg = err.to_string();
        assert!(msg.contains("at line 2, column 1"), "{msg}");
        assert!(msg.contains("histroy_size"), "{msg}");
        assert!(!msg.contains('\n'), "one line: {msg}");
    }

    #[test]
    fn unusable_values_are_errors() {
        for toml in [
            "session_queue = 0",
            "ping_interval = \"0s\"",
            "heartbeat_ttl = \"10ms\"",
            "history_size = 0",
            "max_rooms_per_session = 0",
        ] {
            let file: FileConfig = toml::from_str(toml).expect("toml");
            let err = Common::resolve(&CommonArgs::default(), &file).expect_err(toml);
            assert!(matches!(err, SettingsError::Invalid(..)), "{toml}: {err}");
        }
    }

    #[test]
    fn bad_durations_are_errors() {
        let file: FileConfig = toml::from_str("drain_window = \"soon\"").expect("toml");
        assert!(Common::resolve(&CommonArgs::default(), &file).is_err());
    }

    /// `wsring.example.toml` must list every key with a comment, and the keys
    /// it sets must be exactly the defaults.
    #[test]
    fn example_file_lists_every_key_with_its_default() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../wsring.example.toml");
        let text = std::fs::read_to_string(&path).expect("wsring.example.toml");

        // As shipped: loads, and resolves to the same settings as no file.
        let shipped = FileConfig::load(Some(&path)).expect("the example loads");
        let none = FileConfig::default();
        let resolved = Common::resolve(&CommonArgs::default(), &shipped).expect("resolves");
        let defaults = Common::resolve(&CommonArgs::default(), &none).expect("defaults");
        assert_eq!(format!("{resolved:?}"), format!("{defaults:?}"));
        let dev = crate::dev_options(Default::default(), &shipped).expect("dev options");
        let dev_defaults = crate::dev_options(Default::default(), &none).expect("dev defaults");
        assert_eq!(
            (dev.host, dev.port, dev.nodes),
            (dev_defaults.host, dev_defaults.port, dev_defaults.nodes)
        );

        // Keys without a default are present as `# key = value`: with those
        // uncommented the file still loads and sets every key there is.
        let mut full = String::new();
        let mut previous = "";
        for line in text.lines() {
            let uncommented = line.strip_prefix("# ").filter(|rest| {
                rest.split_once(" = ").is_some_and(|(k, _)| {
                    !k.is_empty() && k.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                })
            });
            let setting = uncommented.unwrap_or(line);
            if setting.contains(" = ") && !setting.starts_with('#') {
                assert!(
                    previous.starts_with('#'),
                    "`{setting}` needs a comment line above it"
                );
            }
            full.push_str(setting);
            full.push('\n');
            previous = line;
        }
        let every = FileConfig::parse(&full).expect("the example with every key uncommented");
        let json = serde_json::to_value(&every).expect("serialize");
        let fields = json.as_object().expect("an object");
        let missing: Vec<&String> = fields
            .iter()
            .filter(|(_, v)| v.is_null())
            .map(|(k, _)| k)
            .collect();
        assert!(
            missing.is_empty(),
            "keys missing from the example: {missing:?}"
        );
    }
}
