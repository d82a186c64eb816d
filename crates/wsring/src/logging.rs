//! Tracing setup: `RUST_LOG` wins; otherwise `info` for wsring and `warn`
//! for dependencies (lapin is silenced: it logs every connection loss at
//! ERROR, which the AMQP backend already reports once, with context).
//! `--log-json` switches to JSON lines for log shippers.
//!
//! Colour (ANSI escape codes) is used only when stderr is a terminal and
//! `NO_COLOR` is unset or empty (<https://no-color.org>): logs written to a
//! file, a pipe or a log collector stay plain text.

use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;

/// Whether log lines get ANSI colours: only on a terminal, and never when
/// `NO_COLOR` is set to a non-empty value.
pub fn use_color(stderr_is_terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    stderr_is_terminal && no_color.is_none_or(|v| v.is_empty())
}

/// Installs the global subscriber (once; later calls are no-ops).
pub fn init(json: bool) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("warn,lapin=off,wsring=info,wsring_node=info,wsring_gateway=info,wsring_cluster=info,wsring_cluster_redis=info,wsring_cluster_nats=info,wsring_cluster_amqp=info"));
    let color = use_color(
        std::io::stderr().is_terminal(),
        std::env::var_os("NO_COLOR").as_deref(),
    );
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(color);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.compact().try_init()
    };
}

#[cfg(test)]
mod tests {
    use super::use_color;
    use std::ffi::OsStr;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(use_color(true, None));
        assert!(use_color(true, Some(OsStr::new(""))));
        assert!(!use_color(true, Some(OsStr::new("1"))));
        assert!(!use_color(false, None));
        assert!(!use_color(false, Some(OsStr::new("1"))));
    }
}
