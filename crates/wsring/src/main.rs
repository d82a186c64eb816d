//! The `wsring` binary: parses the command line, sets up logging, runs the
//! chosen role, and turns a start-up failure into one line on stderr and a
//! non-zero exit. Everything else lives in the library crates.

use std::process::ExitCode;
use wsring::settings::SettingsError;

// jemalloc instead of the system allocator. glibc malloc keeps the
// high-water mark of a connection burst in its per-thread arenas for as long
// as the process lives, so a node or gateway that once accepted a burst of
// connections stays at that size while they sit idle; jemalloc returns dirty
// pages to the kernel after its decay time (10 s by default). The purge runs
// on jemalloc's background thread (the `background_threads` feature):
// without it, jemalloc purges only when the program allocates, and an idle
// server may not allocate for a long time. Not on MSVC, where jemalloc does
// not build; there the system allocator stays.
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

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
