//! Command-line interface. Every setting of `dev`, `node` and `gateway` can
//! also come from a `WSRING_*` environment variable and from the TOML file
//! given with `--config`; precedence is flag > environment > file > built-in
//! default, all applied by clap ([`Cli::load`], [`crate::settings`]). Only
//! settings without a default are `Option`s.

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use crate::dev::DevOptions;
use crate::settings::{Common, FILE_ROLES, FileConfig, SettingsError, Shared};

/// wsring: a clustered WebSocket server.
#[derive(Debug, Parser)]
#[command(
    name = "wsring",
    version,
    about = "a clustered WebSocket server: dev cluster, node, gateway and load generator in one binary",
    propagate_version = true
)]
pub struct Cli {
    /// What to run.
    #[command(subcommand)]
    pub command: Command,
    /// TOML file with settings (keys are the long flag names in snake_case).
    #[arg(long, global = true, env = "WSRING_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Log JSON lines instead of human-readable text.
    #[arg(long, global = true, env = "WSRING_LOG_JSON")]
    pub log_json: bool,
    /// Threads of the async runtime. Default: one per CPU core. Processes
    /// that share a machine (a node and a gateway, or one node per core)
    /// spend less CPU per message with fewer each: every extra worker adds
    /// wake-ups and hand-offs between threads.
    #[arg(long, global = true, env = "WSRING_WORKER_THREADS", value_name = "N",
          value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub worker_threads: Option<u16>,
}

impl Cli {
    /// Parses this process's command line with the config file applied.
    pub fn load() -> Result<Cli, SettingsError> {
        Self::load_from(std::env::args_os().collect::<Vec<_>>())
    }

    /// Parses `args` (program name first) with the config file applied: a
    /// first parse finds the role and `--config`, then the file's values
    /// become the roles' defaults and the command line is parsed again.
    /// `completions` and `man` never read the file, so a broken
    /// `WSRING_CONFIG` cannot stop them.
    pub fn load_from(args: Vec<OsString>) -> Result<Cli, SettingsError> {
        let first = Cli::command().try_get_matches_from(&args)?;
        if matches!(first.subcommand_name(), Some("completions" | "man")) {
            return Ok(Cli::from_arg_matches(&first)?);
        }
        let file = first
            .get_one::<PathBuf>("config")
            .map(|path| FileConfig::load(path, &Cli::command()))
            .transpose()?;
        Self::parse_with_file(&args, file.as_ref())
    }

    /// Parses `args` with `file`'s values as the defaults of every role.
    pub fn parse_with_file<T: Into<OsString> + Clone>(
        args: &[T],
        file: Option<&FileConfig>,
    ) -> Result<Cli, SettingsError> {
        let mut cmd = Cli::command();
        if let Some(file) = file {
            for role in FILE_ROLES {
                cmd = file.apply(cmd, role);
            }
        }
        let matches = cmd.try_get_matches_from(args.iter().cloned())?;
        Ok(Cli::from_arg_matches(&matches)?)
    }
}

/// The roles of the binary.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// A whole cluster (gateway + N nodes) in one command.
    Dev(DevOptions),
    /// One node, joined to a cluster through Redis or NATS.
    Node(NodeArgs),
    /// One gateway in front of a cluster's nodes.
    Gateway(GatewayArgs),
    /// Load generator: many WebSocket clients, latency histograms.
    Bench(BenchArgs),
    /// Print a connect token (JWT) that nodes and gateways started with the
    /// same --jwt-secret (or the public half of --private-key),
    /// --jwt-audience and --jwt-issuer accept.
    ///
    /// `wsring token --jwt-secret S --sub alice --rooms 'chat.*' --ttl 1h`.
    /// For first clients, scripts and load tests: in production the
    /// application mints its users' tokens.
    Token(TokenArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    ///
    /// Bash: `wsring completions bash > ~/.local/share/bash-completion/completions/wsring`;
    /// zsh: `wsring completions zsh > "${fpath[1]}/_wsring"`;
    /// fish: `wsring completions fish > ~/.config/fish/completions/wsring.fish`.
    Completions(CompletionsArgs),
    /// Print the manual page (roff), or write one page per subcommand.
    ///
    /// `wsring man | man -l -` reads it; `wsring man --out-dir DIR` writes
    /// wsring.1, wsring-dev.1, … for installing under a man1 directory.
    Man(ManArgs),
}

/// `wsring completions`.
#[derive(Debug, Clone, Args)]
pub struct CompletionsArgs {
    /// The shell to generate completions for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// `wsring man`.
#[derive(Debug, Clone, Args)]
pub struct ManArgs {
    /// Write wsring.1 and one page per subcommand into this directory
    /// instead of printing wsring.1 to stdout.
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<PathBuf>,
}

/// `wsring bench`.
#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// WebSocket URL of a gateway (or a node).
    #[arg(long, default_value = "ws://127.0.0.1:7000/ws")]
    pub url: String,
    /// Number of client connections.
    #[arg(long, default_value_t = 100)]
    pub clients: usize,
    /// Traffic: direct (client i → user i+1), room, or broadcast (via the API).
    #[arg(long, default_value = "direct")]
    pub mode: wsring_bench::Mode,
    /// Messages sent per second, all clients together: direct sends (each
    /// delivered to one client), room publishes (each delivered to the
    /// room's --room-size members) or API broadcasts (each delivered to
    /// every client). Deliveries per second are in the report. `--rate` is
    /// an alias.
    #[arg(
        long = "send-rate",
        visible_alias = "rate",
        value_name = "PER_SECOND",
        default_value_t = 1000.0
    )]
    pub rate: f64,
    /// How long to send (after all clients connected), e.g. 500ms, 10s, 2m.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = duration)]
    pub duration: Duration,
    /// Payload padding in bytes.
    #[arg(long, default_value_t = 64)]
    pub payload: usize,
    /// What the padding is made of: `repeat` (one character) or `chat`
    /// (chat words, different in every message, to measure compression).
    #[arg(long, value_name = "TEXT", default_value = "repeat")]
    pub text: wsring_bench::Text,
    /// Offer permessage-deflate on every connection (a connection the
    /// server does not agree to it on fails). The report's bytes on the
    /// wire then show what compression saved.
    #[arg(long)]
    pub deflate: bool,
    /// Members per room in room mode.
    #[arg(long, default_value_t = 10)]
    pub room_size: usize,
    /// New connections per second while ramping up (0: unlimited).
    #[arg(long, default_value_t = 0.0)]
    pub connect_rate: f64,
    /// Worker processes (one process holds about 20k sockets).
    #[arg(long, default_value_t = 1)]
    pub procs: usize,
    /// Comma-separated local source IPs (e.g. 127.0.0.1,127.0.0.2) to go past
    /// ~28k ephemeral ports per address.
    #[arg(long, value_delimiter = ',')]
    pub source_ips: Vec<std::net::IpAddr>,
    /// HMAC secret of a secured cluster (its --jwt-secret): the bench mints
    /// one connect token per client user.
    #[arg(
        long,
        env = "WSRING_JWT_SECRET",
        value_name = "SECRET",
        conflicts_with = "token_file"
    )]
    pub jwt_secret: Option<String>,
    /// Audience (`aud`) for the minted tokens, as the cluster's
    /// --jwt-audience.
    #[arg(long, value_name = "AUD")]
    pub jwt_audience: Vec<String>,
    /// Issuer (`iss`) for the minted tokens, as the cluster's --jwt-issuer.
    #[arg(long, value_name = "ISS")]
    pub jwt_issuer: Option<String>,
    /// File of connect tokens, one per line (blank lines and `#` comments
    /// skipped): client i connects as the `sub` of line i, so the file needs
    /// at least --clients tokens with distinct users.
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// API key for broadcast mode's `POST /api/broadcast` on a cluster
    /// started with --api-key.
    #[arg(long, env = "WSRING_API_KEY", value_name = "KEY")]
    pub api_key: Option<String>,
    /// Internal: run as a worker and print a JSON report.
    #[arg(long, hide = true)]
    pub worker: bool,
    /// Internal: index of this worker's first user.
    #[arg(long, hide = true, default_value_t = 0)]
    pub first: usize,
    /// Internal: users across all workers.
    #[arg(long, hide = true)]
    pub total: Option<usize>,
    /// Internal: user id prefix shared by all workers.
    #[arg(long, hide = true)]
    pub prefix: Option<String>,
}

fn duration(s: &str) -> Result<Duration, String> {
    wsring_auth::parse_duration(s)
}

/// `wsring token`.
#[derive(Debug, Clone, Args)]
pub struct TokenArgs {
    /// The user id (`sub`).
    #[arg(long, value_name = "USER")]
    pub sub: String,
    /// HMAC secret to sign with: the nodes' --jwt-secret.
    #[arg(
        long,
        visible_alias = "secret",
        env = "WSRING_JWT_SECRET",
        value_name = "SECRET",
        required_unless_present = "private_key",
        conflicts_with = "private_key"
    )]
    pub jwt_secret: Option<String>,
    /// PEM private key to sign with, whose public half the nodes have as
    /// --jwt-public-key: RSA (PKCS#1 or PKCS#8), EC P-256/P-384 (PKCS#8)
    /// or Ed25519 (PKCS#8).
    #[arg(long, value_name = "FILE")]
    pub private_key: Option<PathBuf>,
    /// Signing algorithm. Default: HS256 with a secret, RS256, ES256 or
    /// EdDSA after the private key's kind.
    #[arg(long, value_name = "ALG", value_parser = algorithm)]
    pub algorithm: Option<wsring_auth::Algorithm>,
    /// A room name or `*`-pattern the user may join and publish to
    /// (`rooms` claim); repeatable. Without it, every room.
    #[arg(long, value_name = "ROOM")]
    pub rooms: Vec<String>,
    /// `--send false` makes a receive-only token (`"send":false`: no direct
    /// messages or publishes).
    #[arg(long, value_name = "BOOL", action = clap::ArgAction::Set)]
    pub send: Option<bool>,
    /// A room name or `*`-pattern the user may publish to even with
    /// `--send false` (`publish` claim); repeatable. Without it, publishing
    /// follows --rooms and --send.
    #[arg(long, value_name = "ROOM")]
    pub publish: Vec<String>,
    /// Lifetime: `exp` is now plus this (e.g. 30m, 1h, 7d).
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = duration)]
    pub ttl: Duration,
    /// Audience (`aud`), as the nodes' --jwt-audience; repeatable.
    #[arg(long, visible_alias = "aud", value_name = "AUD")]
    pub jwt_audience: Vec<String>,
    /// Issuer (`iss`), as the nodes' --jwt-issuer.
    #[arg(long, visible_alias = "iss", value_name = "ISS")]
    pub jwt_issuer: Option<String>,
}

fn algorithm(s: &str) -> Result<wsring_auth::Algorithm, String> {
    s.parse().map_err(|_| {
        format!(
            "unknown algorithm {s:?}; use HS256, HS384, HS512, RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384 or EdDSA"
        )
    })
}

/// Where a `wsring node` or `wsring gateway` listens and finds the cluster.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on, as HOST:PORT (e.g. 0.0.0.0:7001). Required.
    #[arg(long, env = "WSRING_LISTEN", value_name = "HOST:PORT")]
    pub listen: Option<String>,
    /// Membership registry: redis://… or nats://…. Defaults to --cluster.
    #[arg(long, env = "WSRING_REGISTRY", value_name = "URL")]
    pub registry: Option<String>,
}

/// `wsring node`.
#[derive(Debug, Clone, Args)]
pub struct NodeArgs {
    /// Node id, unique among live nodes (1-64 of A-Z a-z 0-9 _ -). Required
    /// (with --autobahn-echo it defaults to `autobahn`).
    #[arg(long, env = "WSRING_ID")]
    pub id: Option<String>,
    /// Listener and registry.
    #[command(flatten)]
    pub serve: ServeArgs,
    /// URL clients and gateways use to reach this node's /ws. Defaults to
    /// `ws://<listen>/ws`; required when listening on a wildcard address.
    #[arg(long, env = "WSRING_ADVERTISE", value_name = "URL")]
    pub advertise: Option<String>,
    /// Message broker: redis://…, nats://… or amqp://…. Defaults to
    /// --cluster.
    #[arg(long, env = "WSRING_BROKER", value_name = "URL")]
    pub broker: Option<String>,
    /// Test mode for WebSocket conformance suites (Autobahn): every path
    /// echoes every text and binary message; no cluster, no authentication.
    ///
    /// The node runs alone on the in-memory backend with its production
    /// WebSocket handling and limits, except the message limit: raised to
    /// at least 16 MiB (Autobahn's largest message), and the outbound byte
    /// budget with it. Never expose it to real clients. Refuses --cluster,
    /// --registry, --broker, --durable and token keys
    // `--autobahn-echo` alone means true; `--autobahn-echo false` is accepted
    // too, like the other switches.
    #[arg(long, env = "WSRING_AUTOBAHN_ECHO", default_value_t = false, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub autobahn_echo: bool,
    /// Drain and exit when the parent process dies (set by `wsring dev
    /// --cluster` for its children, so a killed launcher leaves no orphans).
    #[arg(long, hide = true)]
    pub exit_with_parent: bool,
    /// Shared settings.
    #[command(flatten)]
    pub common: Common,
}

/// `wsring gateway`.
#[derive(Debug, Clone, Args)]
pub struct GatewayArgs {
    /// Listener and registry.
    #[command(flatten)]
    pub serve: ServeArgs,
    /// The settings a gateway reads; the node-only ones are not flags here.
    #[command(flatten)]
    pub common: Shared,
}
