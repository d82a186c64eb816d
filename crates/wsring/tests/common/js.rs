//! Running the repository's Node.js test scripts from `cargo test`: checking
//! for Node, installing a directory's locked npm packages and Debian's
//! Chromium when they are missing, running a script in its own process group
//! with a time limit, and skipping visibly when something cannot be had.
//!
//! So that the plain `cargo test --workspace` runs the JS tests on a fresh
//! machine, a missing prerequisite is installed: `npm ci` in the directory
//! (from its lock file), and, when running as root, `apt-get install
//! chromium` (never a browser build of playwright's own).
//! `WSRING_BROWSER_INSTALL=0` turns that off. What is still missing makes a
//! test print `SKIPPED: <why>` with the command that fixes it straight to the
//! terminal (past the harness's output capture) and pass, unless
//! `WSRING_REQUIRE_BROWSER=1` (CI), which makes a skip a failure.

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;
use tokio::process::Command;

/// Upper bound for installing a prerequisite (apt may wait for its lock).
const INSTALL_LIMIT: Duration = Duration::from_secs(900);

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Debian's Chromium, or `CHROMIUM_PATH`.
pub fn chromium() -> PathBuf {
    std::env::var_os("CHROMIUM_PATH")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"))
}

/// Writes to the real stderr, bypassing the test harness's output capture,
/// so that installs and skips show in a plain `cargo test` run.
pub fn say(msg: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{msg}");
}

/// Skips a test that cannot run here: prints `SKIPPED` with `why`, or
/// fails under `WSRING_REQUIRE_BROWSER=1`.
pub fn skip(what: &str, why: &str) {
    assert!(
        std::env::var("WSRING_REQUIRE_BROWSER").as_deref() != Ok("1"),
        "{what} required (WSRING_REQUIRE_BROWSER=1) but {why}"
    );
    say(&format!("SKIPPED {what}: {why}"));
}

/// Runs a command to completion with its output collected; `Err` says what
/// failed, with the tail of its output.
async fn run(program: &str, args: &[&str], dir: &Path) -> Result<(), String> {
    let out = tokio::time::timeout(
        INSTALL_LIMIT,
        Command::new(program)
            .args(args)
            .current_dir(dir)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .map_err(|_| format!("`{program} {}` took over {INSTALL_LIMIT:?}", args.join(" ")))?
    .map_err(|e| format!("cannot run {program}: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    let text = String::from_utf8_lossy(&out.stderr);
    let tail: Vec<&str> = text.lines().rev().take(3).collect();
    Err(format!(
        "`{program} {}` failed ({}): {}",
        args.join(" "),
        out.status,
        tail.into_iter().rev().collect::<Vec<_>>().join(" / ")
    ))
}

fn installing_allowed() -> bool {
    std::env::var("WSRING_BROWSER_INSTALL").as_deref() != Ok("0")
}

/// The major version of the installed Node.js, or why there is none.
pub async fn node_major() -> Result<u32, String> {
    let out = Command::new("node")
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .await;
    let out = match out {
        Ok(out) if out.status.success() => out,
        _ => {
            return Err(
                "Node.js is not installed; run `sudo apt-get install nodejs npm` (Node 20 or later)"
                    .into(),
            );
        }
    };
    // "v20.11.1"
    let version = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    version
        .strip_prefix('v')
        .and_then(|v| v.split('.').next())
        .and_then(|m| m.parse::<u32>().ok())
        .ok_or_else(|| format!("cannot read the Node.js version {version:?}"))
}

/// Installs Debian's chromium with apt (root only); `apt-get update` only
/// if the package cannot be found without it.
async fn install_chromium() -> Result<(), String> {
    const FIX: &str = "run `sudo apt-get install chromium` (Debian's package, /usr/bin/chromium)";
    if !installing_allowed() {
        return Err(format!("{} is missing; {FIX}", chromium().display()));
    }
    if std::env::var_os("CHROMIUM_PATH").is_some() {
        return Err(format!(
            "CHROMIUM_PATH={} does not exist",
            chromium().display()
        ));
    }
    // /proc/self belongs to the process's effective user.
    let root = std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false);
    if !root {
        return Err(format!("/usr/bin/chromium is missing; {FIX}"));
    }
    say("installing chromium (apt-get install chromium) for the browser tests…");
    let root = Path::new("/");
    let install = [
        "-o",
        "DPkg::Lock::Timeout=600",
        "install",
        "-y",
        "-qq",
        "chromium",
    ];
    if run("apt-get", &install, root).await.is_err() {
        run(
            "apt-get",
            &["-o", "DPkg::Lock::Timeout=600", "update", "-qq"],
            root,
        )
        .await?;
        run("apt-get", &install, root).await?;
    }
    say("chromium installed");
    Ok(())
}

/// Whether `dir/node_modules` holds every one of `packages` and is not
/// older than `dir/package-lock.json` (npm writes `.package-lock.json` there
/// on every install, so a lock file changed since asks for a new one).
fn npm_deps_present(dir: &Path, packages: &[&str]) -> bool {
    let modules = dir.join("node_modules");
    let mtime = |p: PathBuf| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let fresh = match (
        mtime(modules.join(".package-lock.json")),
        mtime(dir.join("package-lock.json")),
    ) {
        (Some(installed), Some(lock)) => installed >= lock,
        _ => false,
    };
    fresh && packages.iter().all(|p| modules.join(p).exists())
}

/// Installs `dir`'s locked npm packages (`npm ci`).
async fn install_npm_deps(dir: &Path, rel: &str) -> Result<(), String> {
    let fix = format!("run `npm ci --prefix {rel}`");
    if !installing_allowed() {
        return Err(format!("{rel}/node_modules is missing or stale; {fix}"));
    }
    say(&format!("installing {rel}'s npm packages (npm ci)…"));
    run(
        "npm",
        &["ci", "--no-audit", "--no-fund", "--loglevel=error"],
        dir,
    )
    .await
    .map_err(|e| format!("{e}; {fix}"))?;
    say(&format!("{rel}'s npm packages installed"));
    Ok(())
}

/// What a set of Node scripts needs.
pub struct Needs {
    /// Directory of the scripts and their `package.json`, from the repository root.
    pub dir: &'static str,
    /// npm packages that must be in its `node_modules` (none: no install).
    pub packages: &'static [&'static str],
    /// Whether they drive Chromium.
    pub chromium: bool,
}

/// Makes `needs` available here: returns why the scripts cannot run, if
/// they cannot. Each directory is installed once per test process, and
/// Chromium once, however many tests ask at the same time.
pub async fn prerequisites(needs: &Needs) -> Option<String> {
    // Held across the installs on purpose: a second test waits for the
    // first one's install instead of starting its own.
    static DONE: tokio::sync::Mutex<Option<HashMap<&'static str, Option<String>>>> =
        tokio::sync::Mutex::const_new(None);
    let mut done = DONE.lock().await;
    let done = done.get_or_insert_with(HashMap::new);

    if !done.contains_key("node") {
        let why = match node_major().await {
            Ok(m) if m >= 20 => None,
            Ok(m) => Some(format!("Node.js {m} is too old; 20 or later is needed")),
            Err(why) => Some(why),
        };
        done.insert("node", why);
    }
    if let Some(Some(why)) = done.get("node") {
        return Some(why.clone());
    }
    if !needs.packages.is_empty() && !done.contains_key(needs.dir) {
        let dir = repo_root().join(needs.dir);
        let why = if npm_deps_present(&dir, needs.packages) {
            None
        } else {
            install_npm_deps(&dir, needs.dir).await.err()
        };
        done.insert(needs.dir, why);
    }
    if needs.chromium && !done.contains_key("chromium") {
        let why = if chromium().exists() {
            None
        } else {
            install_chromium().await.err()
        };
        done.insert("chromium", why);
    }
    let mut wanted = vec![];
    if !needs.packages.is_empty() {
        wanted.push(needs.dir);
    }
    if needs.chromium {
        wanted.push("chromium");
    }
    wanted
        .into_iter()
        .find_map(|k| done.get(k).cloned().flatten())
}

/// Prints a script's output (shown by the harness when the test fails) and
/// fails the test if the script failed; `hint` says where to look next.
pub fn check_output(what: &str, out: Result<Output, String>, hint: &str) {
    let out = out.unwrap_or_else(|e| panic!("{what}: {e}"));
    println!("{}", String::from_utf8_lossy(&out.stdout));
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        out.status.success(),
        "{what} failed ({}); {hint}",
        out.status
    );
}

/// Runs `node args…` in `dir` (from the repository root) with `env`, in a
/// process group of its own, for at most `limit`. Whatever the outcome, the
/// group is then killed, so that no process a script started (a `wsring
/// dev`, a browser) outlives it. `Err` if it did not finish in time.
pub async fn run_node(
    dir: &str,
    args: &[&str],
    env: &[(&str, &str)],
    limit: Duration,
) -> Result<Output, String> {
    let child = Command::new("node")
        .args(args)
        .current_dir(repo_root().join(dir))
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot run node: {e}"))?;
    let group = child
        .id()
        .and_then(|p| i32::try_from(p).ok())
        .map(Pid::from_raw);
    let out = tokio::time::timeout(limit, child.wait_with_output()).await;
    if let Some(group) = group {
        // ESRCH (nothing left in the group) is the normal case.
        let _ = killpg(group, Signal::SIGKILL);
    }
    match out {
        Ok(out) => out.map_err(|e| format!("node: {e}")),
        Err(_) => Err(format!(
            "`node {}` did not finish within {limit:?}",
            args.join(" ")
        )),
    }
}
