//! Command-line interface. Every flag can also come from a `WSRING_*`
//! environment variable and from the TOML file given with `--config`;
//! precedence is flag > environment > file > built-in default (resolved in
//! [`crate::settings`]). Flags are `Option`s here precisely so that "not
//! given" can fall through to the file.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::time::Duration;
use wsring_node::Routing;

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
    #[arg(long, global = true, env = "WSRING_CONFIG")]
    pub config: Option<PathBuf>,
    /// Log JSON lines instead of human-readable text.
    #[arg(long, global = true, env = "WSRING_LOG_JSON")]
    pub log_json: bool,
}

/// The roles of the binary.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// A whole cluster (gateway + N nodes) in one command.
    Dev(DevArgs),
    /// One node, joined to a cluster through Redis or NATS.
    Node(NodeArgs),
    /// One gateway in front of a cluster's nodes.
    Gateway(GatewayArgs),
    /// Load generator: many WebSocket clients, latency histograms.
    Bench(BenchArgs),
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
    /// Messages per second, all clients together.
    #[arg(long, default_value_t = 1000.0)]
    pub rate: f64,
    /// How long to send (after all clients connected).
    #[arg(long, default_value = "10s", value_parser = duration)]
    pub duration: Duration,
    /// Payload padding in bytes.
    #[arg(long, default_value_t = 64)]
    pub payload: usize,
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
    humantime::parse_duration(s).map_err(|e| e.to_string())
}

/// Settings shared by every role.
#[derive(Debug, Clone, Default, Args)]
pub struct CommonArgs {
    /// Routing mode: `hash` (consistent hashing, default) or `broadcast`.
    #[arg(long, env = "WSRING_ROUTING")]
    pub routing: Option<Routing>,
    /// Prefix of every key, channel, subject, exchange and queue [default: wsring].
    #[arg(long, env = "WSRING_NAMESPACE")]
    pub namespace: Option<String>,
    /// One URL used as both registry and broker (redis://, nats://).
    #[arg(long, env = "WSRING_CLUSTER")]
    pub cluster: Option<String>,
    /// Durable mode: append messages to streams before acknowledging them.
    #[arg(long, env = "WSRING_DURABLE", num_args = 0..=1, default_missing_value = "true")]
    pub durable: Option<bool>,
    /// Messages kept per stream in durable mode [default: 1000].
    #[arg(long, env = "WSRING_HISTORY_SIZE")]
    pub history_size: Option<u64>,
    /// Age after which stream entries are dropped [default: 10m].
    #[arg(long, env = "WSRING_HISTORY_TTL", value_parser = duration)]
    pub history_ttl: Option<Duration>,
    /// A node silent this long is removed from the ring [default: 2s].
    #[arg(long, env = "WSRING_HEARTBEAT_TTL", value_parser = duration)]
    pub heartbeat_ttl: Option<Duration>,
    /// Largest client message; larger ones close the session with 1009 [default: 65536].
    #[arg(long, env = "WSRING_MAX_MESSAGE_BYTES")]
    pub max_message_bytes: Option<usize>,
    /// Spread rebalance/drain closes over this window [default: 0s, all at once].
    #[arg(long, env = "WSRING_DRAIN_WINDOW", value_parser = duration)]
    pub drain_window: Option<Duration>,
    /// Frames buffered per session before it is closed as too slow [default: 1024].
    #[arg(long, env = "WSRING_SESSION_QUEUE")]
    pub session_queue: Option<usize>,
    /// Outbound bytes buffered per session before it is closed as too slow (1008) [default: 1048576].
    #[arg(long, env = "WSRING_SESSION_QUEUE_BYTES")]
    pub session_queue_bytes: Option<usize>,
    /// Server ping period [default: 20s].
    #[arg(long, env = "WSRING_PING_INTERVAL", value_parser = duration)]
    pub ping_interval: Option<Duration>,
    /// Rooms one session may join at once [default: 256].
    #[arg(long, env = "WSRING_MAX_ROOMS_PER_SESSION")]
    pub max_rooms_per_session: Option<usize>,
}

/// `wsring dev`.
#[derive(Debug, Clone, Default, Args)]
pub struct DevArgs {
    /// Number of nodes to start [default: 3].
    #[arg(long, env = "WSRING_NODES")]
    pub nodes: Option<usize>,
    /// Gateway and API port [default: 7000].
    #[arg(long, env = "WSRING_PORT")]
    pub port: Option<u16>,
    /// Address to bind everything to [default: 127.0.0.1].
    #[arg(long, env = "WSRING_HOST")]
    pub host: Option<String>,
    /// Shared settings.
    #[command(flatten)]
    pub common: CommonArgs,
}

/// `wsring node`.
#[derive(Debug, Clone, Default, Args)]
pub struct NodeArgs {
    /// Node id, unique among live nodes (1-64 of A-Z a-z 0-9 _ -).
    #[arg(long, env = "WSRING_ID")]
    pub id: Option<String>,
    /// Address to listen on, e.g. 0.0.0.0:7001.
    #[arg(long, env = "WSRING_LISTEN")]
    pub listen: Option<String>,
    /// URL clients and gateways use to reach this node's /ws [default: ws://<listen>/ws].
    #[arg(long, env = "WSRING_ADVERTISE")]
    pub advertise: Option<String>,
    /// Registry URL: redis://… or nats://….
    #[arg(long, env = "WSRING_REGISTRY")]
    pub registry: Option<String>,
    /// Broker URL: redis://…, nats://… or amqp://….
    #[arg(long, env = "WSRING_BROKER")]
    pub broker: Option<String>,
    /// Drain and exit when the parent process dies (set by `wsring dev
    /// --cluster` for its children, so a killed launcher leaves no orphans).
    #[arg(long, hide = true)]
    pub exit_with_parent: bool,
    /// Shared settings.
    #[command(flatten)]
    pub common: CommonArgs,
}

/// `wsring gateway`.
#[derive(Debug, Clone, Default, Args)]
pub struct GatewayArgs {
    /// Address to listen on, e.g. 0.0.0.0:7000.
    #[arg(long, env = "WSRING_LISTEN")]
    pub listen: Option<String>,
    /// Registry URL: redis://… or nats://….
    #[arg(long, env = "WSRING_REGISTRY")]
    pub registry: Option<String>,
    /// Shared settings.
    #[command(flatten)]
    pub common: CommonArgs,
}
