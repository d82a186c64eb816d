//! ws-shootout: measures server-side WebSocket crates for wsring nodes (see RESULTS.md).

mod bench;
mod client;
mod probe;
mod server;
mod stats;

use std::{net::SocketAddr, time::Duration};

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use crate::{client::Mode, server::Impl};

#[derive(Parser)]
#[command(about = "WebSocket server crate shootout for wsring")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Args, Clone)]
struct ServerArgs {
    /// Largest accepted message (frame and whole message), bytes.
    #[arg(long, default_value_t = 65536)]
    max_msg: usize,
    /// Per-connection outbound queue capacity (fan-out frames beyond it are dropped).
    #[arg(long, default_value_t = 1024)]
    queue: usize,
    /// Do not send close 1009/1007 from the application (shows the crate's own behaviour).
    #[arg(long)]
    no_app_close: bool,
}

impl ServerArgs {
    fn opts(&self) -> server::ServerOpts {
        server::ServerOpts {
            max_msg: self.max_msg,
            queue: self.queue,
            app_close: !self.no_app_close,
        }
    }
}

#[derive(Args, Clone)]
struct LoadArgs {
    /// Measured window, seconds.
    #[arg(long, default_value_t = 4.0)]
    secs: f64,
    /// Warm-up before the window, seconds.
    #[arg(long, default_value_t = 0.5)]
    warmup: f64,
    /// RPC client connections.
    #[arg(long, default_value_t = 256)]
    rpc_conns: usize,
    /// RPC connections for the `rpc-light` (latency) workload.
    #[arg(long, default_value_t = 8)]
    light_conns: usize,
    /// Requests outstanding per RPC connection.
    #[arg(long, default_value_t = 1)]
    inflight: usize,
    /// Fan-out subscriber connections.
    #[arg(long, default_value_t = 1000)]
    fanout_conns: usize,
    /// Fan-out rounds allowed outstanding.
    #[arg(long, default_value_t = 4)]
    window: usize,
}

#[derive(Subcommand)]
enum Cmd {
    /// Serve `/ws` on 127.0.0.1 with one candidate; prints `LISTENING <addr>`.
    Server {
        #[arg(long = "impl", value_enum)]
        imp: Impl,
        /// 0 = ephemeral.
        #[arg(long, default_value_t = 0)]
        port: u16,
        /// Hard lifetime limit, seconds.
        #[arg(long, default_value_t = 300)]
        max_secs: u64,
        /// Also exit when stdin reaches EOF (used by `bench`, which holds the pipe open).
        #[arg(long)]
        exit_on_stdin_eof: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Run one workload against a running server.
    Client {
        #[arg(long)]
        addr: SocketAddr,
        #[arg(long, value_enum, default_value = "rpc")]
        mode: Mode,
        /// Server pid, for CPU accounting via /proc.
        #[arg(long)]
        server_pid: Option<u32>,
        #[command(flatten)]
        load: LoadArgs,
    },
    /// Behaviour probes (1009/1007/binary/deflate) against a running server.
    Probe {
        #[arg(long)]
        addr: SocketAddr,
        #[arg(long)]
        server_pid: u32,
        #[arg(long, default_value_t = 65536)]
        max_msg: usize,
    },
    /// Full shootout: probes + interleaved repeated runs; prints a markdown report.
    Bench {
        /// Repetitions per (workload, impl).
        #[arg(long, default_value_t = 3)]
        reps: usize,
        /// Candidates (baseline `axum` is always included first).
        #[arg(long = "impl", value_enum, num_args = 1.., default_values_t = Impl::ALL.to_vec())]
        impls: Vec<Impl>,
        /// Workloads.
        #[arg(long = "mode", value_enum, num_args = 1.., default_values_t = vec![Mode::Rpc, Mode::RpcLight, Mode::Fanout])]
        modes: Vec<Mode>,
        /// Skip the behaviour probes.
        #[arg(long)]
        no_probes: bool,
        #[command(flatten)]
        load: LoadArgs,
        #[command(flatten)]
        server: ServerArgs,
    },
}

fn secs(x: f64) -> Duration {
    Duration::from_secs_f64(x.clamp(0.0, 600.0))
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().cmd {
        Cmd::Server {
            imp,
            port,
            max_secs,
            exit_on_stdin_eof,
            server,
        } => server::run(imp, port, server.opts(), max_secs, exit_on_stdin_eof),
        Cmd::Client {
            addr,
            mode,
            server_pid,
            load,
        } => {
            let cfg = client::LoadCfg {
                addr,
                mode,
                conns: match mode {
                    Mode::Rpc => load.rpc_conns,
                    Mode::RpcLight => load.light_conns,
                    Mode::Fanout => load.fanout_conns,
                },
                inflight: load.inflight,
                window: load.window,
                warmup: secs(load.warmup),
                secs: secs(load.secs),
                server_pid,
            };
            let rt = tokio::runtime::Runtime::new()?;
            let r = rt.block_on(client::run(&cfg)).context("client run")?;
            println!("{r:#?}");
            Ok(())
        }
        Cmd::Probe {
            addr,
            server_pid,
            max_msg,
        } => {
            let rt = tokio::runtime::Runtime::new()?;
            for p in rt.block_on(probe::run_probes(addr, server_pid, max_msg)) {
                println!("{:48} want {:12} got {}", p.name, p.want, p.got);
            }
            Ok(())
        }
        Cmd::Bench {
            reps,
            mut impls,
            modes,
            no_probes,
            load,
            server,
        } => {
            impls.retain(|&i| i != Impl::Axum);
            impls.insert(0, Impl::Axum);
            let cfg = bench::BenchCfg {
                impls,
                modes,
                reps: reps.max(1),
                secs: secs(load.secs),
                warmup: secs(load.warmup),
                rpc_conns: load.rpc_conns,
                light_conns: load.light_conns,
                inflight: load.inflight,
                fanout_conns: load.fanout_conns,
                window: load.window,
                opts: server.opts(),
                probes: !no_probes,
            };
            let md = bench::run(&cfg)?;
            println!("{md}");
            Ok(())
        }
    }
}
