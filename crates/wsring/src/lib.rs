//! The `wsring` binary's library half: settings resolution, the dev launcher
//! and the glue that starts each role. `main.rs` only parses the command line
//! and calls [`run`].
//!
//! # Layout
//! * [`cli`] — clap definitions and parsing with the config file.
//! * [`settings`] — the shared settings, the TOML file, validation.
//! * [`dev`] — `wsring dev`: in-process on the memory backend, or
//!   [`processes`] on a real one.
//! * [`roles`] — `wsring node` and `wsring gateway`.
//! * [`backends`] — URL scheme → backend crate.
//! * [`bench`] — `wsring bench`, splitting the load over worker processes.
//! * [`token`] — `wsring token`: connect tokens for first clients.
//! * [`logging`] — tracing setup.
//! * [`manual`] — shell completions, manual pages and the configuration
//!   reference (docs/CONFIGURATION.md).

pub mod backends;
pub mod bench;
pub mod cli;
pub mod dev;
pub mod logging;
pub mod manual;
pub mod processes;
pub mod roles;
pub mod settings;
pub mod token;

use anyhow::Context;
use cli::{Cli, Command};

/// Runs the role selected on the command line (see [`Cli::load`]) until it
/// is told to stop.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    // These two only describe the command line (and `Cli::load` does not
    // read the config file for them).
    match &cli.command {
        Command::Completions(args) => {
            manual::completions(args.shell, &mut std::io::stdout().lock());
            return Ok(());
        }
        Command::Man(args) => {
            match &args.out_dir {
                Some(dir) => {
                    let written = manual::man_pages_to(dir).with_context(|| {
                        format!("cannot write manual pages into {}", dir.display())
                    })?;
                    for path in written {
                        println!("{}", path.display());
                    }
                }
                None => manual::man_page(&mut std::io::stdout().lock())
                    .context("cannot write the manual page to stdout")?,
            }
            return Ok(());
        }
        Command::Token(args) => return token::run(args),
        _ => {}
    }
    if !matches!(cli.command, Command::Bench(_)) {
        // Install the metrics recorder before any backend connects: series
        // registered at connect time (the reconnect counters) would
        // otherwise go to no recorder and be missing from `/metrics`.
        let _ = wsring_node::api::prometheus_handle();
    }
    match cli.command {
        Command::Dev(opts) => run_dev(opts).await,
        Command::Node(args) => roles::run_node(args).await,
        Command::Gateway(args) => roles::run_gateway(args).await,
        Command::Bench(args) => bench::run(args).await,
        Command::Completions(_) | Command::Man(_) | Command::Token(_) => Ok(()),
    }
}

/// An error chain as the one line `main` prints: causes joined with `: `,
/// a cause already contained in the text before it dropped (some library
/// errors repeat their source in their own message), and line breaks inside
/// a cause folded so the result is always one line.
pub fn one_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause
            .to_string()
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join(" / ");
        if text.is_empty() || line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

async fn run_dev(opts: dev::DevOptions) -> anyhow::Result<()> {
    opts.validate()?;
    let cluster = dev::DevCluster::start(opts.clone())
        .await
        .context("starting the dev cluster")?;
    println!(
        "wsring dev: {} nodes, routing={}, durable={}, backend={}",
        opts.nodes,
        opts.common.routing.as_str(),
        opts.common.durable,
        opts.common.cluster.as_deref().unwrap_or("memory")
    );
    println!(
        "  gateway    {}   (dashboard {}/)",
        cluster.gateway_url(),
        cluster.http_url()
    );
    for (id, url) in cluster.members() {
        println!("  node {id:<5} {url}");
    }
    println!("Ctrl-C to stop.");
    shutdown_signal().await;
    println!("stopping…");
    cluster.shutdown().await;
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_drops_repeated_causes_and_folds_lines() {
        let io = std::io::Error::new(std::io::ErrorKind::AddrInUse, "Address already in use");
        let e = anyhow::Error::new(io)
            .context("cannot listen on 127.0.0.1:7000: Address already in use");
        assert_eq!(
            one_line(&e),
            "cannot listen on 127.0.0.1:7000: Address already in use"
        );
        let e = anyhow::anyhow!("Parse error at 1\nUnexpected `84`\n").context("registry");
        assert_eq!(one_line(&e), "registry: Parse error at 1 / Unexpected `84`");
    }
}
