//! The `wsring` binary: parses the command line, sets up logging, and runs
//! the chosen role. Everything else lives in the library crates.

use clap::Parser;

fn main() -> anyhow::Result<()> {
    let cli = wsring::cli::Cli::parse();
    wsring::logging::init(cli.log_json);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(wsring::run(cli))
}
