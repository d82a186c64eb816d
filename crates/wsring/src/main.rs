//! The `wsring` binary: parses the command line, sets up logging, runs the
//! chosen role, and turns a start-up failure into one line on stderr and a
//! non-zero exit. Everything else lives in the library crates.

use std::process::ExitCode;
use wsring::settings::SettingsError;

fn main() -> ExitCode {
    let cli = match wsring::cli::Cli::load() {
        Ok(cli) => cli,
        // Usage errors, --help and --version: clap prints and exits (status
        // 2 for errors, 0 for help) exactly as a plain parse would.
        Err(SettingsError::Usage(e)) => e.exit(),
        Err(e) => {
            eprintln!("wsring: error: {e}");
            return ExitCode::FAILURE;
        }
    };
    wsring::logging::init(cli.log_json);
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    if let Some(n) = cli.worker_threads {
        builder.worker_threads(usize::from(n));
    }
    let runtime = match builder.build() {
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
