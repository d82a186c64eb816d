//! The `wsring` binary's library half: settings resolution, the dev launcher
//! and the glue that starts each role. `main.rs` only parses the command line
//! and calls [`run`].
//!
//! # Layout
//! * [`cli`] — clap definitions.
//! * [`settings`] — flag > env > file > default resolution.
//! * [`dev`] — `wsring dev`: in-process on the memory backend, or
//!   [`processes`] on a real one.
//! * [`roles`] — `wsring node` and `wsring gateway`.
//! * [`backends`] — URL scheme → backend crate.
//! * [`bench`] — `wsring bench`, splitting the load over worker processes.
//! * [`logging`] — tracing setup.

pub mod backends;
pub mod bench;
pub mod cli;
pub mod dev;
pub mod logging;
pub mod processes;
pub mod roles;
pub mod settings;

use anyhow::Context;
use cli::{Cli, Command, DevArgs};
use settings::{Common, FileConfig};

/// Runs the role selected on the command line until it is told to stop.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let file = FileConfig::load(cli.config.as_deref())?;
    if !matches!(cli.command, Command::Bench(_)) {
        // Install the metrics recorder before any backend connects: series
        // registered at connect time (the reconnect counters) would
        // otherwise go to no recorder and be missing from `/metrics`.
        let _ = wsring_node::api::prometheus_handle();
    }
    match cli.command {
        Command::Dev(args) => run_dev(args, &file).await,
        Command::Node(args) => roles::run_node(args, &file).await,
        Command::Gateway(args) => roles::run_gateway(args, &file).await,
        Command::Bench(args) => bench::run(args).await,
    }
}

async fn run_dev(args: DevArgs, file: &FileConfig) -> anyhow::Result<()> {
    let common = Common::resolve(&args.common, file)?;
    let opts = dev::DevOptions {
        host: args
            .host
            .or(file.host.clone())
            .unwrap_or_else(|| "127.0.0.1".into()),
        port: args.port.or(file.port).unwrap_or(7000),
        nodes: args.nodes.or(file.nodes).unwrap_or(3),
        common,
        exe: None,
    };
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
