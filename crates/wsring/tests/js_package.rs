//! The npm package `wsring-client` (`clients/js/`), tested by `cargo test
//! --workspace`: its Node test scripts run against the `wsring` binary this
//! build produced (passed as `WSRING_BIN`; the scripts start their own
//! `wsring dev` clusters on ephemeral ports):
//!
//! * `test/protocol.test.mjs` — every frame documented in `docs/PROTOCOL.md`
//!   fed to the client, and the frames it sends compared with the documented
//!   ones (the JS counterpart of `crates/protocol/tests/protocol_doc.rs`; no
//!   server, no npm package needed);
//! * `test/node.test.mjs` — every scenario of `test/scenarios.mjs` (connect
//!   with and without a token, direct messages, rooms, errors, `moved` +
//!   1012, durable resume after a crash, a drain and a join) under Node,
//!   once with the `ws` package and once with Node's built-in WebSocket
//!   (Node 22+, or `--experimental-websocket` on 20 and 21);
//! * `test/browser.test.mjs` — the same scenarios in headless Chromium
//!   (one of the slow suites: with `--features slow-tests` only);
//! * `test/types/usage.ts` through `tsc`, `test/surface.test.mjs` (the
//!   hand-written declarations against the code) and `test/readme.test.mjs`
//!   (the README's examples type-checked against the declarations);
//! * `test/pack.test.mjs` — `npm pack`, installed offline into a fresh
//!   project, imported, type-checked and used there.
//!
//! Prerequisites (Node 20+, the package's locked dev dependencies,
//! Chromium) are installed when missing, or the tests print `SKIPPED` — see
//! `common::js`.

mod common;

use common::js::{self, Needs};
use std::time::Duration;

/// Upper bound for one script (each bounds its own steps well below this).
const LIMIT: Duration = Duration::from_secs(420);

const PACKAGE: Needs = Needs {
    dir: "clients/js",
    packages: &["ws", "typescript", "playwright-core", "@types/ws"],
    chromium: false,
};

/// Node alone: the protocol check imports only the module and Node's own.
const NODE_ONLY: Needs = Needs {
    packages: &[],
    ..PACKAGE
};

// The browser run is one of the slow suites (`--features slow-tests`).
#[cfg(feature = "slow-tests")]
const PACKAGE_IN_BROWSER: Needs = Needs {
    chromium: true,
    ..PACKAGE
};

/// One cluster-starting script at a time: on a 2-core machine parallel
/// clusters and browsers would only slow each other into timeouts.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Runs `node <args>` in `clients/js` and fails the test with its output if
/// it fails; skips (visibly) when `needs` cannot be met.
async fn run(what: &str, needs: &Needs, args: &[&str], env: &[(&str, &str)]) {
    if let Some(why) = js::prerequisites(needs).await {
        js::skip(what, &why);
        return;
    }
    let _one = ONE_AT_A_TIME.lock().await;
    let mut env = env.to_vec();
    env.push(("WSRING_BIN", env!("CARGO_BIN_EXE_wsring")));
    let out = js::run_node(PACKAGE.dir, args, &env, LIMIT).await;
    js::check_output(what, out, "its report is above");
}

/// The node flag that gives this Node a global WebSocket (`""`: none
/// needed), or why it has none.
async fn builtin_websocket_flag() -> Result<&'static str, String> {
    for flag in ["", "--experimental-websocket"] {
        let mut args = vec![];
        if !flag.is_empty() {
            args.push(flag);
        }
        args.extend([
            "-e",
            "process.exit(typeof WebSocket === 'function' ? 0 : 1)",
        ]);
        let ok = tokio::process::Command::new("node")
            .args(&args)
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .is_ok_and(|o| o.status.success());
        if ok {
            return Ok(flag);
        }
    }
    Err("this Node.js has no built-in WebSocket (Node 22+, or 20.10+ with --experimental-websocket)".into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn js_client_handles_every_documented_frame() {
    run(
        "clients/js/test/protocol.test.mjs",
        &NODE_ONLY,
        &["--test", "--test-reporter=spec", "test/protocol.test.mjs"],
        &[],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn js_client_under_node_with_the_ws_package() {
    run(
        "clients/js/test/node.test.mjs (ws)",
        &PACKAGE,
        &["--test", "--test-reporter=spec", "test/node.test.mjs"],
        &[("WSRING_TEST_WEBSOCKET", "ws")],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn js_client_under_node_with_its_builtin_websocket() {
    const WHAT: &str = "clients/js/test/node.test.mjs (built-in WebSocket)";
    let flag = match builtin_websocket_flag().await {
        Ok(flag) => flag,
        Err(why) => {
            // Without Node itself, `run` reports that instead.
            if js::node_major().await.is_ok() {
                js::skip(WHAT, &why);
                return;
            }
            ""
        }
    };
    let mut args = vec![];
    if !flag.is_empty() {
        args.push(flag);
    }
    args.extend(["--test", "--test-reporter=spec", "test/node.test.mjs"]);
    run(
        WHAT,
        &PACKAGE,
        &args,
        &[("WSRING_TEST_WEBSOCKET", "builtin")],
    )
    .await;
}

#[cfg(feature = "slow-tests")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn js_client_in_headless_chromium() {
    run(
        "clients/js/test/browser.test.mjs",
        &PACKAGE_IN_BROWSER,
        &["--test", "--test-reporter=spec", "test/browser.test.mjs"],
        &[],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn js_client_declarations_match_the_code() {
    run(
        "clients/js: tsc -p test/types",
        &PACKAGE,
        &["node_modules/typescript/bin/tsc", "-p", "test/types"],
        &[],
    )
    .await;
    run(
        "clients/js/test/{surface,readme}.test.mjs",
        &PACKAGE,
        &[
            "--test",
            "--test-reporter=spec",
            "test/surface.test.mjs",
            "test/readme.test.mjs",
        ],
        &[],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn js_client_npm_pack_installs_and_works() {
    run(
        "clients/js/test/pack.test.mjs",
        &PACKAGE,
        &["--test", "--test-reporter=spec", "test/pack.test.mjs"],
        &[],
    )
    .await;
}
