//! Runs `clients/js/test/protocol.test.mjs` under `cargo test`: the JS client module
//! (`clients/js/src/wsring-client.js`) is fed every server frame
//! documented in `docs/PROTOCOL.md` and must handle each one, and the frames
//! it sends must match the documented client frames — the JS counterpart of
//! `protocol_doc.rs`.
//!
//! It needs only Node.js 20 or later (no browser, no npm packages, no
//! cluster). Without it the test prints `SKIPPED: <why>` straight to the
//! terminal (past the harness's output capture, so the skip is visible) and
//! passes, unless `WSRING_REQUIRE_BROWSER=1` (set in CI for every JS test),
//! which makes a skip a failure.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

const SCRIPT: &str = "clients/js/test/protocol.test.mjs";

/// Why the script cannot run here, if it cannot.
fn missing_node() -> Option<String> {
    let out = match Command::new("node")
        .arg("--version")
        .stdin(Stdio::null())
        .output()
    {
        Ok(out) if out.status.success() => out,
        _ => {
            return Some(
                "Node.js is not installed; run `sudo apt-get install nodejs` (Node 20 or later)"
                    .into(),
            );
        }
    };
    // "v20.11.1"
    let version = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let major = version
        .strip_prefix('v')
        .and_then(|v| v.split('.').next())
        .and_then(|m| m.parse::<u32>().ok());
    match major {
        Some(m) if m >= 20 => None,
        _ => Some(format!(
            "Node.js {version} is too old; 20 or later is needed"
        )),
    }
}

#[test]
fn js_client_handles_every_documented_frame() {
    if let Some(why) = missing_node() {
        assert!(
            std::env::var("WSRING_REQUIRE_BROWSER").as_deref() != Ok("1"),
            "JS tests required (WSRING_REQUIRE_BROWSER=1) but {why}"
        );
        let _ = writeln!(
            std::io::stderr().lock(),
            "js_client: SKIPPED {SCRIPT}: {why}"
        );
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    // The script bounds itself (it exits non-zero after 30 s), so waiting
    // for it cannot hang the test run.
    let out = Command::new("node")
        .arg(SCRIPT)
        .current_dir(&root)
        .stdin(Stdio::null())
        .output()
        .expect("run node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        out.status.success(),
        "{SCRIPT} failed ({}); the failing frames are listed above",
        out.status
    );
}
