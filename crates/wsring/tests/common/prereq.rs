//! Installing a test's prerequisites from its own code (the browser tests'
//! npm packages and Chromium, the Autobahn runner): commands run to
//! completion under a time bound, and progress and skips reported where a
//! plain `cargo test` run shows them.

use std::io::Write;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use tokio::process::Command;

/// Writes `who: msg` to the real stderr, bypassing the test harness's output
/// capture, so that installs and skips show in a plain `cargo test` run.
pub fn say(who: &str, msg: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{who}: {msg}");
}

/// Runs `program args` in `dir` to completion within `limit`, without
/// prompts, with its output collected; `Err` says what failed, with the
/// tail of its output.
pub async fn run(program: &Path, args: &[&str], dir: &Path, limit: Duration) -> Result<(), String> {
    let shown = format!("{} {}", program.display(), args.join(" "));
    let out = tokio::time::timeout(
        limit,
        Command::new(program)
            .args(args)
            .current_dir(dir)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .env("PIP_DISABLE_PIP_VERSION_CHECK", "1")
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .map_err(|_| format!("`{shown}` took over {limit:?}"))?
    .map_err(|e| format!("cannot run `{shown}`: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    let text = String::from_utf8_lossy(&out.stderr);
    let tail: Vec<&str> = text.lines().rev().take(3).collect();
    Err(format!(
        "`{shown}` failed ({}): {}",
        out.status,
        tail.into_iter().rev().collect::<Vec<_>>().join(" / ")
    ))
}
