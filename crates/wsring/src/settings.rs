//! The settings every role shares, and the TOML file.
//!
//! Each setting is declared once, as a field of a clap-derived struct: its
//! doc comment is the help text, its `#[arg]` attribute names the flag, the
//! `WSRING_*` environment variable and the default, and its field name is
//! the TOML key. The structs are [`Common`] (here, with the groups
//! [`SessionArgs`] and [`AuthArgs`] flattened in), [`crate::dev::DevOptions`]
//! and the `node`/`gateway` arguments in [`crate::cli`]. Only this crate
//! knows clap: each group turns into a library's plain config value
//! ([`NodeConfig`], [`AuthSettings`]), whose constructor or `Default` is
//! where the group's defaults are declared.
//!
//! Precedence is flag > environment > file > built-in default, all resolved
//! by clap: the file's values become the defaults of the matching arguments
//! before the command line is parsed ([`FileConfig::apply`]). The file
//! rejects unknown keys, so a typo is an error rather than a silently ignored
//! line; one file may serve every role, each reading the keys it has.

use clap::{Arg, ArgAction, Args, Command};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Duration;
use thiserror::Error;
use wsring_auth::{AuthSettings, parse_duration};
use wsring_cluster::{MembershipConfig, Retention};
use wsring_gateway::GatewayConfig;
use wsring_node::NodeConfig;
use wsring_protocol::Routing;

mod auth;
mod session;

pub use auth::{AuthArgs, PusherArgs};
pub use session::SessionArgs;

/// The subcommands whose settings the TOML file holds (`bench` has flags
/// only; `completions` and `man` have none).
pub const FILE_ROLES: [&str; 3] = ["dev", "node", "gateway"];

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
    /// The config file is not valid TOML, or has a key no role knows.
    #[error("invalid config file {path}{at}: {reason} (see wsring.example.toml for every key)")]
    Parse {
        /// The file.
        path: String,
        /// ` at line N, column M`, when known.
        at: String,
        /// What is wrong, on one line.
        reason: String,
    },
    /// A value in the config file that its setting does not accept.
    #[error("invalid config file {path}{at}: invalid value {value} for `{key}`: {reason}")]
    Value {
        /// The file.
        path: String,
        /// ` at line N, column M`.
        at: String,
        /// The key.
        key: String,
        /// The value as written in the file.
        value: String,
        /// Why, as the setting's parser says it.
        reason: String,
    },
    /// A value outside its allowed range.
    #[error("invalid setting `{0}`: {1}")]
    Invalid(&'static str, String),
    /// A required setting is missing. Flag and variable follow from the key
    /// (a test holds every setting to that naming).
    #[error(
        "missing required setting `{0}` (flag --{flag}, env WSRING_{env}, or config file)",
        flag = .0.replace('_', "-"),
        env = .0.to_uppercase()
    )]
    Missing(&'static str),
    /// No backend URL for the registry or the broker: `--cluster` gives
    /// both at once, so the message names it first.
    #[error(
        "missing required setting `{0}`: give --cluster URL (registry and broker in one; env \
         WSRING_CLUSTER) or --{0} URL (env WSRING_{env}), or set either in the config file",
        env = .0.to_uppercase()
    )]
    MissingBackend(&'static str),
    /// The command line itself is wrong (or asks for help): clap's own
    /// report, printed by clap.
    #[error(transparent)]
    Usage(#[from] clap::Error),
}

/// Settings every role (dev, node, gateway) reads: the cluster, what a node
/// and a gateway serve alike (routing, message size, listener limits, TLS)
/// and authentication. `wsring gateway` takes these and no others.
#[derive(Debug, Clone, Args, Serialize)]
pub struct Shared {
    /// Prefix of every key, channel, subject, exchange and queue on the
    /// backend, so several clusters can share one Redis, NATS or RabbitMQ.
    #[arg(long, env = "WSRING_NAMESPACE", default_value = "wsring")]
    pub namespace: String,
    /// One URL used as both registry and broker: redis://…, nats://…, a
    /// Redis Cluster as redis-cluster://host:port,host:port,… (seed nodes) or
    /// a NATS cluster as nats://h1:4222,nats://h2:4222,….
    ///
    /// Without it `wsring dev` runs in-process on the embedded memory
    /// backend; `node` and `gateway` need it (or --registry and --broker).
    #[arg(long, env = "WSRING_CLUSTER", value_name = "URL")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// A node silent this long is removed from the ring; heartbeats are sent
    /// every heartbeat_ttl / 4 (at least 200ms).
    #[arg(long, env = "WSRING_HEARTBEAT_TTL", value_name = "DURATION", default_value = human_default(MembershipConfig::default().ttl), value_parser = wsring_auth::parse_duration)]
    #[serde(serialize_with = "human")]
    pub heartbeat_ttl: Duration,
    /// Routing mode: `hash` (each user lives on the node that owns its id on
    /// the consistent-hash ring) or `broadcast` (any node; direct messages fan
    /// out to every node).
    ///
    /// All nodes and gateways of one cluster must agree.
    #[arg(long, env = "WSRING_ROUTING", default_value = session::defaults().routing.as_str())]
    pub routing: Routing,
    /// Largest client message in bytes; a larger one closes the session with
    /// 1009 (at least 256).
    #[arg(long, env = "WSRING_MAX_MESSAGE_BYTES", default_value_t = session::defaults().max_message_bytes)]
    pub max_message_bytes: usize,
    /// Durable mode: append every direct and room message to a bounded stream
    /// before acknowledging it, so clients resume after a reconnect with no
    /// gap.
    // `--durable` alone means true; `--durable false` is accepted too, so a
    // generated command line can spell out either value.
    #[arg(long, env = "WSRING_DURABLE", default_value_t = session::defaults().durable, num_args = 0..=1, default_missing_value = "true", action = ArgAction::Set)]
    pub durable: bool,
    /// Open connections one process accepts (WebSockets, gateway tunnels and
    /// HTTP calls alike); one more is answered 503 `unavailable` before any
    /// upgrade. Keep it below the process's file descriptor limit.
    #[arg(long, env = "WSRING_MAX_CONNECTIONS", default_value_t = session::defaults().max_connections)]
    pub max_connections: usize,
    /// Time a client gets to send its complete HTTP request head (the
    /// WebSocket upgrade included); slower or silent connections are
    /// dropped.
    #[arg(long, env = "WSRING_HEADER_READ_TIMEOUT", value_name = "DURATION", default_value = human_default(session::defaults().header_read_timeout), value_parser = parse_duration)]
    #[serde(serialize_with = "human")]
    pub header_read_timeout: Duration,
    /// Time an HTTP request body (an API call's JSON) gets to arrive whole
    /// after its request head; a slower one is answered 408.
    #[arg(long, env = "WSRING_BODY_READ_TIMEOUT", value_name = "DURATION", default_value = human_default(session::defaults().body_read_timeout), value_parser = humantime::parse_duration)]
    #[serde(serialize_with = "human")]
    pub body_read_timeout: Duration,
    /// PEM certificate chain for this process's listener (with tls_key):
    /// clients then connect with wss:// and https://. Unset: plain ws://.
    #[arg(long, env = "WSRING_TLS_CERT", value_name = "FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of tls_cert.
    #[arg(long, env = "WSRING_TLS_KEY", value_name = "FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
    /// PEM CA certificates trusted, besides the system's, for wss:// and
    /// https:// connections to other nodes (a private CA).
    #[arg(long, env = "WSRING_TLS_CA", value_name = "FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_ca: Option<PathBuf>,
    /// Who may connect and call the API.
    #[command(flatten)]
    #[serde(flatten)]
    pub auth: AuthArgs,
}

/// Settings of the roles that run nodes (`dev`, `node`): [`Shared`] plus
/// durable history and the session settings ([`SessionArgs`]). Field access
/// reaches the shared settings through `Deref`.
#[derive(Debug, Clone, Args, Serialize)]
pub struct Common {
    /// The settings every role reads.
    #[command(flatten)]
    #[serde(flatten)]
    pub shared: Shared,
    /// Durable mode: messages kept per user or room stream (at least 1).
    #[arg(long, env = "WSRING_HISTORY_SIZE", default_value_t = Retention::default().max_len)]
    pub history_size: u64,
    /// Durable mode: age limit of stream entries; idle streams reset after
    /// it (at least 1s).
    #[arg(long, env = "WSRING_HISTORY_TTL", value_name = "DURATION", default_value = human_default(Retention::default().max_age), value_parser = wsring_auth::parse_duration)]
    #[serde(serialize_with = "human")]
    pub history_ttl: Duration,
    /// Durable mode: streams across the backend (for the memory backend:
    /// the process), counted from a stream's first position (a join or
    /// connect creates it, as does a first message); a message or join that
    /// would create one more is refused with `storage_full` (HTTP 507). 0:
    /// unlimited.
    #[arg(long, env = "WSRING_HISTORY_MAX_STREAMS", default_value_t = Retention::default().max_streams)]
    pub history_max_streams: u64,
    /// Durable mode: bytes the stream store holds across the backend (for
    /// the memory backend: the process): payloads, dedup ids and a fixed
    /// cost per message and per stream (see docs/PROTOCOL.md, "Store
    /// limits"); an append past it is refused with `storage_full` (HTTP
    /// 507) until old entries age out. 0: unlimited.
    #[arg(long, env = "WSRING_HISTORY_MAX_BYTES", value_name = "BYTES", default_value_t = Retention::default().max_bytes)]
    pub history_max_bytes: u64,
    /// Durable mode: the share of history_max_bytes, in percent, that one
    /// sender (a token's user, or an API key) may hold; past it only that
    /// sender is refused, with `quota_exceeded` (HTTP 507). 0: no per-sender
    /// quota.
    #[arg(long, env = "WSRING_HISTORY_MAX_USER_PERCENT", value_name = "PERCENT", default_value_t = wsring_cluster::stream::DEFAULT_USER_PERCENT, value_parser = clap::value_parser!(u64).range(0..=100))]
    pub history_max_user_percent: u64,
    /// The session settings.
    #[command(flatten)]
    #[serde(flatten)]
    pub node: SessionArgs,
}

impl std::ops::Deref for Common {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.shared
    }
}

impl std::ops::DerefMut for Common {
    fn deref_mut(&mut self) -> &mut Shared {
        &mut self.shared
    }
}

/// A duration default in flag syntax ("10m").
fn human_default(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// A duration in the syntax its flag accepts ("1s 200ms"), for
/// `#[serde(serialize_with)]`: a serialized settings struct is turned back
/// into command-line flags.
fn human<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&humantime::format_duration(*d))
}

/// The value of every setting of `T` when nothing is given: `T` parsed from
/// an empty command line with its environment variables ignored, so the
/// `default_value…` attributes on its fields are the only source of its
/// defaults.
pub fn declared_defaults<T: clap::Args + clap::FromArgMatches>() -> Result<T, clap::Error> {
    let cmd = T::augment_args(clap::Command::new("defaults").no_binary_name(true))
        .mut_args(|a| a.env(None::<&'static str>));
    T::from_arg_matches(&cmd.try_get_matches_from(std::iter::empty::<&str>())?)
}

impl Default for Common {
    /// The declared defaults (no flags, environment or file).
    fn default() -> Self {
        declared_defaults().expect("the declared defaults parse (a unit test checks)")
    }
}

impl Default for Shared {
    /// The declared defaults (no flags, environment or file).
    fn default() -> Self {
        declared_defaults().expect("the declared defaults parse (a unit test checks)")
    }
}

impl Shared {
    /// Rejects values that cannot work, with a one-line reason, before
    /// anything starts.
    pub fn validate(&self) -> Result<(), SettingsError> {
        let checks = [
            (
                self.heartbeat_ttl < Duration::from_millis(200),
                "heartbeat_ttl",
                "must be at least 200ms",
            ),
            (
                self.max_message_bytes < 256,
                "max_message_bytes",
                "must be at least 256",
            ),
        ];
        first_invalid(checks)
    }

    /// Membership timing, derived from the heartbeat TTL.
    pub fn membership(&self) -> MembershipConfig {
        MembershipConfig::with_ttl(self.heartbeat_ttl)
    }

    /// The authentication settings.
    pub fn auth_settings(&self) -> AuthSettings {
        self.auth.clone().into()
    }

    /// The accept loop's limits.
    fn serve_limits(&self) -> wsring_http::ServeLimits {
        wsring_http::ServeLimits {
            max_connections: self.max_connections,
            header_read_timeout: self.header_read_timeout,
            body_read_timeout: self.body_read_timeout,
        }
    }

    /// The gateway configuration these settings imply (`mode`: `"dev"` or
    /// `"gateway"`).
    pub fn gateway_config(&self, mode: &'static str) -> GatewayConfig {
        GatewayConfig {
            routing: self.routing,
            durable: self.durable,
            max_body_bytes: self.max_message_bytes,
            reroute_wait: GatewayConfig::reroute_wait_for(self.heartbeat_ttl),
            limits: self.serve_limits(),
            tls: wsring_http::tls::TlsFiles {
                cert: self.tls_cert.clone(),
                key: self.tls_key.clone(),
                ca: self.tls_ca.clone(),
            },
            mode,
            ..GatewayConfig::default()
        }
    }
}

/// The first failed check of `checks` (condition, key, reason) as an error.
fn first_invalid<const N: usize>(
    checks: [(bool, &'static str, &str); N],
) -> Result<(), SettingsError> {
    match checks.into_iter().find(|(bad, _, _)| *bad) {
        Some((_, key, why)) => Err(SettingsError::Invalid(key, why.to_owned())),
        None => Ok(()),
    }
}

impl Common {
    /// Rejects values that cannot work (zero-sized queues, zero periods),
    /// with a one-line reason, before anything starts.
    pub fn validate(&self) -> Result<(), SettingsError> {
        self.shared.validate()?;
        let n = &self.node;
        let checks = [
            (n.session_queue == 0, "session_queue", "must be at least 1"),
            (
                n.reconnect_rate == 0,
                "reconnect_rate",
                "must be at least 1",
            ),
            (
                n.session_queue_bytes < self.max_message_bytes,
                "session_queue_bytes",
                "must be at least max_message_bytes (one largest message must fit)",
            ),
            (
                n.ping_interval < Duration::from_millis(100),
                "ping_interval",
                "must be at least 100ms",
            ),
            (self.history_size == 0, "history_size", "must be at least 1"),
            (
                self.history_ttl < Duration::from_secs(1),
                "history_ttl",
                "must be at least 1s",
            ),
            (
                n.max_rooms_per_session == 0,
                "max_rooms_per_session",
                "must be at least 1",
            ),
            (
                n.max_server_rooms == 0,
                "max_server_rooms",
                "must be at least 1",
            ),
        ];
        first_invalid(checks)
    }

    /// Stream retention (durable mode).
    pub fn retention(&self) -> Retention {
        Retention {
            max_len: self.history_size,
            max_age: self.history_ttl,
            max_streams: self.history_max_streams,
            max_bytes: self.history_max_bytes,
            max_user_bytes: wsring_cluster::stream::user_quota(
                self.history_max_bytes,
                self.history_max_user_percent,
            ),
        }
    }

    /// A node configuration for node `id` with these settings.
    pub fn node_config(&self, id: &str) -> NodeConfig {
        self.node.node_config(&self.shared, id)
    }

    /// Flags that reproduce these settings on another command line (every
    /// field, so a setting added to the struct cannot be left out). A list
    /// becomes the flag repeated once per entry.
    pub fn to_args(&self) -> Vec<String> {
        let value = serde_json::to_value(self).expect("settings serialize to JSON");
        let mut args = Vec::new();
        for (key, value) in value.as_object().into_iter().flatten() {
            let flag = format!("--{}", key.replace('_', "-"));
            let values = match value {
                serde_json::Value::Array(items) => items.iter().collect(),
                other => vec![other],
            };
            for value in values {
                let value = match value {
                    serde_json::Value::Null => continue,
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                args.push(flag.clone());
                args.push(value);
            }
        }
        args
    }
}

/// A loaded config file: each key with its value in the syntax of its flag,
/// and where it stands in the file (for error messages).
#[derive(Debug, Default)]
pub struct FileConfig {
    entries: Vec<(String, Vec<String>)>,
}

impl FileConfig {
    /// Reads and checks the file against `cli` (the whole `wsring` command).
    pub fn load(path: &Path, cli: &Command) -> Result<FileConfig, SettingsError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| SettingsError::Read {
            path: shown.clone(),
            reason: io_reason(&e),
        })?;
        Self::parse(&text, cli).map_err(|e| match e {
            SettingsError::Parse { at, reason, .. } => SettingsError::Parse {
                path: shown,
                at,
                reason,
            },
            SettingsError::Value {
                at,
                key,
                value,
                reason,
                ..
            } => SettingsError::Value {
                path: shown,
                at,
                key,
                value,
                reason,
            },
            other => other,
        })
    }

    /// Parses TOML text (reporting errors for a file called `<text>`): every
    /// key must be a setting of some role, and every value one its flag
    /// would accept.
    pub fn parse(text: &str, cli: &Command) -> Result<FileConfig, SettingsError> {
        let at = |span: std::ops::Range<usize>| line_and_column(text, span.start);
        let parse_error = |at: String, reason: String| SettingsError::Parse {
            path: "<text>".into(),
            at,
            reason,
        };
        type Entries =
            std::collections::BTreeMap<toml::Spanned<String>, toml::Spanned<toml::Value>>;
        let table: Entries = toml::from_str(text).map_err(|e: toml::de::Error| {
            // toml's Display draws a multi-line snippet; keep the message
            // and turn the span into a line/column.
            parse_error(
                e.span().map(at).unwrap_or_default(),
                e.message().trim().replace('\n', " "),
            )
        })?;
        let keys = file_keys(cli);
        let mut entries = Vec::new();
        for (key, value) in table {
            let Some((role, arg)) = keys
                .iter()
                .find(|(_, a)| a.get_id() == key.get_ref().as_str())
            else {
                let hint = closest(key.get_ref(), keys.iter().map(|(_, a)| a.get_id().as_str()))
                    .map(|k| format!("; did you mean `{k}`?"))
                    .unwrap_or_default();
                return Err(parse_error(
                    at(key.span()),
                    format!("unknown key `{}`{hint}", key.get_ref()),
                ));
            };
            let value_error = |reason: String| SettingsError::Value {
                path: "<text>".into(),
                at: at(value.span()),
                key: key.get_ref().clone(),
                value: value.get_ref().to_string(),
                reason,
            };
            let scalar = |v: &toml::Value| match v {
                toml::Value::String(s) => Some(s.clone()),
                toml::Value::Integer(i) => Some(i.to_string()),
                toml::Value::Float(f) => Some(f.to_string()),
                toml::Value::Boolean(b) => Some(b.to_string()),
                _ => None,
            };
            // A list is allowed where the flag may be repeated.
            let repeatable = arg.get_num_args().is_some_and(|n| n.max_values() > 1)
                || matches!(arg.get_action(), clap::ArgAction::Append);
            let values: Vec<String> =
                match value.get_ref() {
                    toml::Value::Array(items) if repeatable => items
                        .iter()
                        .map(|v| scalar(v).ok_or(()))
                        .collect::<Result<_, ()>>()
                        .map_err(|()| value_error("expected a list of strings".into()))?,
                    v => vec![scalar(v).ok_or_else(|| {
                        value_error("expected a string, number or boolean".into())
                    })?],
                };
            for v in &values {
                check_value(role, arg, v).map_err(value_error)?;
            }
            entries.push((key.into_inner(), values));
        }
        Ok(FileConfig { entries })
    }

    /// `cli` with the file's values as the defaults of `role`'s arguments,
    /// below flags and environment variables; keys of other roles are
    /// ignored.
    pub fn apply(&self, cli: Command, role: &str) -> Command {
        cli.mut_subcommand(role, |mut sub| {
            for (key, values) in &self.entries {
                if sub.get_arguments().any(|a| a.get_id() == key.as_str()) {
                    sub = sub.mut_arg(key, |a| a.default_values(values.clone()));
                }
            }
            sub
        })
    }

    /// The keys the file sets.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|(k, _)| k.as_str())
    }
}

/// Every setting the file may hold, as `(role, argument)`: the visible
/// arguments of the [`FILE_ROLES`] subcommands (a setting shared by several
/// roles is listed once per role).
pub fn file_keys(cli: &Command) -> Vec<(String, Arg)> {
    cli.get_subcommands()
        .filter(|s| FILE_ROLES.contains(&s.get_name()))
        .flat_map(|s| {
            s.get_arguments()
                .filter(|a| !a.is_hide_set() && !a.is_global_set() && a.get_long().is_some())
                .map(|a| (s.get_name().to_owned(), a.clone()))
        })
        .collect()
}

/// Runs `value` through `arg`'s own parser (as if given as its flag), so a
/// bad file value is reported against the file, not against a flag the user
/// never typed.
fn check_value(role: &str, arg: &Arg, value: &str) -> Result<(), String> {
    let long = arg.get_long().unwrap_or_default();
    let probe = Command::new(role.to_owned())
        .no_binary_name(true)
        .arg(arg.clone().env(None::<&str>).default_value(None::<&str>));
    match probe.try_get_matches_from([format!("--{long}={value}")]) {
        Ok(_) => Ok(()),
        Err(e) => Err(match std::error::Error::source(&e) {
            Some(cause) => cause.to_string(),
            None => {
                let possible: Vec<String> = arg
                    .get_possible_values()
                    .iter()
                    .map(|p| p.get_name().to_owned())
                    .collect();
                if possible.is_empty() {
                    e.kind().to_string()
                } else {
                    format!("expected one of {}", possible.join(", "))
                }
            }
        }),
    }
}

/// ` at line N, column M` for byte offset `at` of `text`.
fn line_and_column(text: &str, at: usize) -> String {
    let before = &text[..at.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    format!(" at line {line}, column {column}")
}

/// The candidate nearest to `word` by edit distance, if it is a plausible
/// typo (at most 2 edits).
fn closest<'a>(word: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    fn distance(a: &str, b: &str) -> usize {
        let b: Vec<char> = b.chars().collect();
        let mut row: Vec<usize> = (0..=b.len()).collect();
        for (i, ca) in a.chars().enumerate() {
            let mut diagonal = row[0];
            row[0] = i + 1;
            for (j, cb) in b.iter().enumerate() {
                let next = (row[j + 1] + 1)
                    .min(row[j] + 1)
                    .min(diagonal + usize::from(ca != *cb));
                diagonal = row[j + 1];
                row[j + 1] = next;
            }
        }
        row[b.len()]
    }
    candidates
        .map(|c| (distance(word, c), c))
        .filter(|(d, _)| *d <= 2)
        .min()
        .map(|(_, c)| c)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command as Role};
    use clap::CommandFactory;
    use wsring_node::Routing;

    /// `wsring <args>` with `file` as the config file's text.
    fn load(file: &str, args: &str) -> Result<Cli, SettingsError> {
        let file = FileConfig::parse(file, &Cli::command())?;
        let argv: Vec<&str> = std::iter::once("wsring")
            .chain(args.split_whitespace())
            .collect();
        Cli::parse_with_file(&argv, Some(&file))
    }

    fn dev(file: &str, args: &str) -> crate::dev::DevOptions {
        match load(file, args).expect("parses").command {
            Role::Dev(d) => d,
            other => panic!("not dev: {other:?}"),
        }
    }

    #[test]
    fn precedence_flag_over_file_over_default() {
        let file = "routing = \"broadcast\"\nhistory_size = 5\nhistory_ttl = \"30s\"\nnamespace = \"fromfile\"\nnodes = 4";
        let d = dev(file, "dev --namespace fromflag --nodes 2");
        let c = &d.common;
        assert_eq!(c.namespace, "fromflag");
        assert_eq!(d.nodes, 2);
        assert_eq!(c.routing, Routing::Broadcast);
        assert_eq!(c.history_size, 5);
        assert_eq!(c.history_ttl, Duration::from_secs(30));
        assert_eq!(c.max_message_bytes, 65536);
        assert_eq!(c.heartbeat_ttl, Duration::from_secs(2));
        assert_eq!(d.port, 7000);
    }

    #[test]
    fn keys_of_other_roles_are_ignored() {
        // `nodes` is a dev setting; `id` a node one: one file serves both.
        let file = "nodes = 4\nid = \"n9\"\nlisten = \"127.0.0.1:7001\"";
        assert_eq!(dev(file, "dev").nodes, 4);
        match load(file, "node").expect("parses").command {
            Role::Node(n) => {
                assert_eq!(n.id.as_deref(), Some("n9"));
                assert_eq!(n.serve.listen.as_deref(), Some("127.0.0.1:7001"));
            }
            other => panic!("not node: {other:?}"),
        }
    }

    #[test]
    fn the_gateway_rejects_the_flags_only_nodes_read() {
        for flag in [
            "--session-queue 8",
            "--history-size 5",
            "--webhook-url http://a",
        ] {
            let Err(SettingsError::Usage(e)) = load("", &format!("gateway {flag}")) else {
                panic!("`wsring gateway {flag}` was accepted");
            };
            assert_eq!(e.kind(), clap::error::ErrorKind::UnknownArgument, "{flag}");
            assert!(load("", &format!("node {flag}")).is_ok(), "node {flag}");
            assert!(load("", &format!("dev {flag}")).is_ok(), "dev {flag}");
        }
        // What the gateway does read stays accepted, and a shared file with
        // node-only keys still serves it.
        match load(
            "session_queue = 8",
            "gateway --routing broadcast --max-message-bytes 1024",
        )
        .expect("parses")
        .command
        {
            Role::Gateway(g) => {
                assert_eq!(g.common.routing, Routing::Broadcast);
                assert_eq!(g.common.max_message_bytes, 1024);
            }
            other => panic!("not gateway: {other:?}"),
        }
    }

    #[test]
    fn defaults_are_the_declared_ones() {
        let c = Common::default();
        assert_eq!(c.namespace, "wsring");
        assert_eq!(c.cluster, None);
        assert_eq!(c.retention().max_len, Retention::default().max_len);
        assert_eq!(c.retention().max_age, Retention::default().max_age);
        assert_eq!(c.heartbeat_ttl, MembershipConfig::default().ttl);
        assert_eq!(
            format!("{:?}", c.node_config("n1")),
            format!("{:?}", NodeConfig::new("n1"))
        );
        assert_eq!(
            format!("{:?}", c.gateway_config("gateway")),
            format!("{:?}", GatewayConfig::default())
        );
        assert_eq!(
            format!("{:?}", c.auth_settings()),
            format!("{:?}", AuthSettings::default())
        );
        c.validate().expect("the defaults are valid");
    }

    #[test]
    fn unknown_keys_are_errors_naming_the_key() {
        let err = FileConfig::parse("routing = \"hash\"\nhistroy_size = 5", &Cli::command())
            .expect_err("typo");
        let msg = err.to_string();
        assert!(msg.contains("at line 2, column 1"), "{msg}");
        assert!(msg.contains("unknown key `histroy_size`"), "{msg}");
        assert!(msg.contains("did you mean `history_size`?"), "{msg}");
        assert!(!msg.contains('\n'), "one line: {msg}");
        // Global flags and bench flags are not file keys.
        for key in ["config = \"x\"", "log_json = true", "clients = 5"] {
            assert!(FileConfig::parse(key, &Cli::command()).is_err(), "{key}");
        }
    }

    #[test]
    fn bad_values_are_errors_against_the_file() {
        for (toml, needle) in [
            ("drain_window = \"soon\"", "`drain_window`"),
            ("routing = \"hsah\"", "unknown routing"),
            ("port = 70000", "`port`"),
            ("durable = \"yes\"", "expected one of true, false"),
            ("nodes = [1]", "expected a string, number or boolean"),
        ] {
            let err = FileConfig::parse(toml, &Cli::command()).expect_err(toml);
            let msg = err.to_string();
            assert!(matches!(err, SettingsError::Value { .. }), "{toml}: {msg}");
            assert!(msg.contains(needle), "{toml}: {msg}");
            assert!(msg.contains("at line 1"), "{toml}: {msg}");
        }
    }

    #[test]
    fn unusable_values_are_errors() {
        for toml in [
            "session_queue = 0",
            "reconnect_rate = 0",
            "ping_interval = \"0s\"",
            "heartbeat_ttl = \"10ms\"",
            "history_size = 0",
            "history_ttl = \"10ms\"",
            "max_rooms_per_session = 0",
            "max_server_rooms = 0",
            "max_message_bytes = 100",
            "session_queue_bytes = 1000",
        ] {
            let err = dev(toml, "dev").common.validate().expect_err(toml);
            assert!(matches!(err, SettingsError::Invalid(..)), "{toml}: {err}");
        }
    }

    #[test]
    fn child_args_reproduce_the_settings() {
        let mut c = Common::default();
        c.shared.routing = Routing::Broadcast;
        c.shared.durable = true;
        c.heartbeat_ttl = Duration::from_millis(1200);
        c.history_size = 7;
        c.cluster = Some("redis://127.0.0.1:6379/".into());
        let args = c.to_args();
        let mut argv = vec!["wsring".to_owned(), "node".to_owned()];
        argv.extend(args);
        let cli = Cli::parse_with_file(&argv, None).expect("node accepts them");
        let Role::Node(node) = cli.command else {
            panic!("not node")
        };
        assert_eq!(
            serde_json::to_value(&node.common).expect("json"),
            serde_json::to_value(&c).expect("json")
        );
    }
}
