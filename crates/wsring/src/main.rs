//! The `wsring` binary: parses the command line, sets up logging, runs the
//! chosen role, and turns a start-up failure into one line on stderr and a
//! non-zero exit. Everything else lives in the library crates.

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = wsring::cli::Cli::parse();
    wsring::logging::init(cli.log_json);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("wsring: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(wsring::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wsring: error: {}", wsring::one_line(&e));
            ExitCode::FAILURE
        }
    }
}
