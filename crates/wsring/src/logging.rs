//! Tracing setup: `RUST_LOG` wins; otherwise `info` for wsring and `warn`
//! for dependencies (lapin is silenced: it logs every connection loss at
//! ERROR, which the AMQP backend already reports once, with context).
//! `--log-json` switches to JSON lines for log shippers.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber (once; later calls are no-ops).
pub fn init(json: bool) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("warn,lapin=off,wsring=info,wsring_node=info,wsring_gateway=info,wsring_cluster=info,wsring_cluster_redis=info,wsring_cluster_nats=info,wsring_cluster_amqp=info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.compact().try_init()
    };
}
