//! The command line as a user meets it, through the real `wsring` binary:
//!
//! * every start-up error a newcomer is likely to hit is one line on stderr
//!   that names the thing, says what to do, does not repeat its cause, and
//!   exits with status 1 (one table, one row per message);
//! * log lines carry colour only on a terminal, and not with `NO_COLOR`;
//! * `wsring completions` and `wsring man` produce usable output;
//! * `wsring.example.toml` is accepted by the binary.
//!
//! * `wsring token` mints tokens a secured cluster accepts, and `wsring
//!   bench` runs against one with `--jwt-secret` or `--token-file`.
//!
//! Nothing here needs Redis, NATS or RabbitMQ: the "unreachable" and "not a
//! Redis server" rows point at a closed port and at a small HTTP responder
//! this file runs itself.

mod common;

use common::Client;
use common::procs::{Proc, dev_process};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::process::Command;

const LIMIT: Duration = Duration::from_secs(30);

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs `wsring <args>` with `env` to completion, logging off so that stderr
/// holds only what the binary itself prints.
async fn wsring(args: &[String], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wsring"));
    cmd.args(args)
        .env("RUST_LOG", "off")
        .env_remove("WSRING_CONFIG")
        .current_dir(repo_root())
        .stdin(Stdio::null())
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    tokio::time::timeout(LIMIT, cmd.output())
        .await
        .unwrap_or_else(|_| panic!("wsring {args:?} did not exit within {LIMIT:?}"))
        .expect("run wsring")
}

fn words(s: &str) -> Vec<String> {
    s.split_whitespace().map(str::to_owned).collect()
}

/// The secret of the secured dev cluster these tests start.
const SECRET: &str = "cli-test-secret";

/// `wsring token <args>`: the token it printed (asserting it succeeded).
async fn mint(args: &[&str]) -> String {
    let mut all = vec!["token".to_owned()];
    all.extend(args.iter().map(|a| a.to_string()));
    let out = wsring(&all, &[]).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "wsring {all:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout.lines().count(), 1, "one line: {stdout:?}");
    stdout.trim().to_owned()
}

/// A secured two-node `wsring dev` (tokens signed with [`SECRET`] for
/// audience `cli`), and its gateway's WebSocket URL.
async fn secured_dev() -> (Proc, String) {
    let (p, ws, _) = dev_process(&[
        "--nodes",
        "2",
        "--jwt-secret",
        SECRET,
        "--jwt-audience",
        "cli",
    ])
    .await;
    (p, ws)
}

/// A TCP server that answers anything with an HTTP 400, like a web server
/// someone pointed `--cluster` at by mistake.
async fn http_responder() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 256];
                let _ = sock.read(&mut buf).await;
                let _ = sock
                    .write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
                    .await;
            });
        }
    });
    port
}

/// A port on which nothing listens (bound, then released).
async fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    l.local_addr().expect("addr").port()
}

struct Case {
    name: &'static str,
    args: Vec<String>,
    /// Substrings the one error line must contain, each exactly once.
    want: Vec<String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_up_errors_are_one_actionable_line() {
    // Held for the whole test: the "port in use" row binds the same port.
    let busy = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let busy_port = busy.local_addr().expect("addr").port();
    let not_redis = http_responder().await;
    let dead = closed_port().await;
    let tmp = std::env::temp_dir().join(format!("wsring-cli-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).expect("tmp dir");
    let typo = tmp.join("typo.toml");
    std::fs::write(&typo, "routing = \"hash\"\nhistroy_size = 5\n").expect("write");
    let zero_nodes = tmp.join("zero.toml");
    std::fs::write(&zero_nodes, "nodes = 0\n").expect("write");
    let missing = tmp.join("missing.toml");
    let short_tokens = tmp.join("tokens.txt");
    std::fs::write(
        &short_tokens,
        format!(
            "# one token\n{}\n",
            mint(&["--jwt-secret", "s", "--sub", "u1"]).await
        ),
    )
    .expect("write");
    let (_secured_proc, secured) = secured_dev().await;
    let bad_duration = tmp.join("duration.toml");
    std::fs::write(&bad_duration, "heartbeat_ttl = \"2x\"\n").expect("write");

    let s = |v: &str| v.to_owned();
    let cases = [
        Case {
            name: "port in use",
            args: words(&format!("dev --nodes 1 --port {busy_port}")),
            want: vec![
                format!("cannot listen on 127.0.0.1:{busy_port}"),
                s("address already in use"),
                s("--port"),
            ],
        },
        Case {
            name: "missing --config file",
            args: vec![s("--config"), missing.display().to_string(), s("dev")],
            want: vec![
                format!("cannot read config file {}", missing.display()),
                s("no such file"),
                s("--config"),
            ],
        },
        Case {
            name: "config file with an unknown key",
            args: vec![s("--config"), typo.display().to_string(), s("dev")],
            want: vec![
                format!("invalid config file {} at line 2", typo.display()),
                s("histroy_size"),
            ],
        },
        Case {
            name: "unreachable Redis names its URL",
            args: words(&format!(
                "gateway --insecure-no-auth --listen 127.0.0.1:0 --registry redis://127.0.0.1:{dead}/"
            )),
            want: vec![
                format!("cannot connect to Redis at redis://127.0.0.1:{dead}/"),
                s("--registry"),
            ],
        },
        Case {
            name: "--cluster at a port that is not Redis (node)",
            args: words(&format!(
                "node --id x1 --insecure-no-auth --listen 127.0.0.1:0 --cluster redis://127.0.0.1:{not_redis}/"
            )),
            want: vec![
                format!("not a Redis server at redis://127.0.0.1:{not_redis}/"),
                s("--cluster"),
            ],
        },
        Case {
            name: "--cluster at a port that is not Redis (dev)",
            args: words(&format!(
                "dev --port 0 --cluster redis://127.0.0.1:{not_redis}/"
            )),
            want: vec![
                format!("not a Redis server at redis://127.0.0.1:{not_redis}/"),
                s("--cluster"),
            ],
        },
        Case {
            name: "node without authentication",
            args: words(&format!(
                "node --id x1 --listen 127.0.0.1:0 --cluster redis://127.0.0.1:{dead}/"
            )),
            want: vec![
                s("no authentication configured"),
                s("--jwt-secret"),
                s("--insecure-no-auth"),
            ],
        },
        Case {
            name: "gateway without authentication",
            args: words(&format!(
                "gateway --listen 127.0.0.1:0 --registry redis://127.0.0.1:{dead}/"
            )),
            want: vec![s("no authentication configured"), s("--jwt-public-key")],
        },
        Case {
            name: "a token key and --insecure-no-auth",
            args: words(&format!(
                "gateway --listen 127.0.0.1:0 --registry redis://127.0.0.1:{dead}/ --jwt-secret s --insecure-no-auth"
            )),
            want: vec![s("contradicts")],
        },
        Case {
            name: "an unreadable public key file",
            args: words(&format!(
                "gateway --listen 127.0.0.1:0 --registry redis://127.0.0.1:{dead}/ --jwt-public-key /nonexistent/key.pem"
            )),
            want: vec![s("/nonexistent/key.pem")],
        },
        Case {
            name: "the echo test mode with a cluster",
            args: words(&format!(
                "node --autobahn-echo --listen 127.0.0.1:0 --cluster redis://127.0.0.1:{dead}/"
            )),
            want: vec![
                s("--autobahn-echo runs one node alone"),
                s("remove --cluster"),
            ],
        },
        Case {
            name: "--listen without a port",
            args: words(&format!(
                "gateway --listen localhost --registry redis://127.0.0.1:{dead}/"
            )),
            want: vec![s("`listen`"), s("\"localhost\" is not HOST:PORT")],
        },
        Case {
            name: "bench against a dead URL",
            args: words(&format!(
                "bench --url ws://127.0.0.1:{dead}/ws --clients 2 --duration 1s"
            )),
            want: vec![
                s("only 0 of 2 clients connected"),
                s("first failure: connecting to"),
                s("Connection refused"),
                format!("ws://127.0.0.1:{dead}/ws"),
            ],
        },
        Case {
            name: "bench refused by a secured node names the server's reason",
            args: words(&format!("bench --url {secured} --clients 2 --duration 1s")),
            want: vec![
                s("only 0 of 2 clients connected"),
                s("refused the connect with HTTP 401: unauthorized: "),
                s("give the bench the cluster's --jwt-secret"),
                s("--token-file"),
            ],
        },
        Case {
            name: "gateway without a registry names --cluster",
            args: words("gateway --listen 127.0.0.1:0 --insecure-no-auth"),
            want: vec![
                s("missing required setting `registry`"),
                s("--cluster URL"),
                s("--registry URL"),
            ],
        },
        Case {
            name: "a bad duration in the config file names the format",
            args: vec![s("--config"), bad_duration.display().to_string(), s("dev")],
            want: vec![
                s("`heartbeat_ttl`"),
                s("invalid duration \"2x\""),
                s("500ms, 2s"),
            ],
        },
        Case {
            name: "token for an invalid user id",
            args: words("token --jwt-secret s --sub a/b"),
            want: vec![s("cannot mint the token"), s("not a valid user id")],
        },
        Case {
            name: "token with an algorithm that does not fit the key",
            args: words("token --jwt-secret s --sub alice --algorithm ES256"),
            want: vec![s("does not fit an HMAC secret"), s("HS256, HS384 or HS512")],
        },
        Case {
            name: "bench with a token file too short",
            args: vec![
                s("bench"),
                s("--clients"),
                s("3"),
                s("--token-file"),
                short_tokens.display().to_string(),
            ],
            want: vec![s("has 1 tokens"), s("--clients 3 needs one per client")],
        },
        Case {
            name: "dev --nodes 0",
            args: words("dev --nodes 0 --port 0"),
            want: vec![s("invalid setting `nodes`"), s("at least 1")],
        },
        Case {
            name: "nodes = 0 in the config file",
            args: vec![
                s("--config"),
                zero_nodes.display().to_string(),
                s("dev"),
                s("--port"),
                s("0"),
            ],
            want: vec![s("invalid setting `nodes`"), s("at least 1")],
        },
    ];

    let mut failures = Vec::new();
    for case in &cases {
        let out = wsring(&case.args, &[]).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        let line = stderr.trim_end();
        let mut problems = Vec::new();
        if out.status.code() != Some(1) {
            problems.push(format!("exit status {:?}, want 1", out.status.code()));
        }
        if line.lines().count() != 1 {
            problems.push("not exactly one line".into());
        }
        if !line.starts_with("wsring: error: ") {
            problems.push("does not start with `wsring: error: `".into());
        }
        for want in &case.want {
            match line.matches(want.as_str()).count() {
                1 => {}
                0 => problems.push(format!("missing {want:?}")),
                n => problems.push(format!("{want:?} appears {n} times")),
            }
        }
        if !problems.is_empty() {
            failures.push(format!(
                "{} (wsring {}): {}\n    stderr: {stderr:?}",
                case.name,
                case.args.join(" "),
                problems.join("; ")
            ));
        }
    }
    drop(busy);
    let _ = std::fs::remove_dir_all(&tmp);
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

/// Runs `cmd` under a pseudo-terminal (util-linux `script`), returning what
/// it wrote there, or `None` when `script` is not installed.
async fn on_a_terminal(cmd: &str, env: &[(&str, &str)]) -> Option<String> {
    let mut c = Command::new("script");
    c.args(["-qec", cmd, "/dev/null"])
        .env_remove("NO_COLOR")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    for (k, v) in env {
        c.env(k, v);
    }
    let out = tokio::time::timeout(LIMIT, c.output()).await.ok()?.ok()?;
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_colour_only_on_a_terminal_and_never_with_no_color() {
    // A NATS registry on a closed port logs a WARN line before failing.
    let dead = closed_port().await;
    let args = words(&format!(
        "gateway --insecure-no-auth --listen 127.0.0.1:0 --registry nats://127.0.0.1:{dead}"
    ));
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wsring"));
    cmd.args(&args)
        .env("RUST_LOG", "warn")
        .env_remove("NO_COLOR")
        .stdin(Stdio::null());
    let out = tokio::time::timeout(LIMIT, cmd.output())
        .await
        .expect("exits")
        .expect("runs");
    let piped = String::from_utf8_lossy(&out.stderr);
    assert!(piped.contains("WARN"), "a log line was written: {piped}");
    assert!(
        !piped.contains('\u{1b}'),
        "no ANSI codes in a pipe: {piped:?}"
    );

    let line = format!("{} {}", env!("CARGO_BIN_EXE_wsring"), args.join(" "));
    let Some(tty) = on_a_terminal(&line, &[]).await else {
        // Visible in the normal test output (not captured by the harness).
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED (terminal half): util-linux `script` is not installed"
        );
        return;
    };
    assert!(tty.contains("WARN"), "{tty}");
    assert!(tty.contains('\u{1b}'), "colour on a terminal: {tty:?}");
    let no_color = on_a_terminal(&line, &[("NO_COLOR", "1")])
        .await
        .expect("script ran once already");
    assert!(no_color.contains("WARN"), "{no_color}");
    assert!(
        !no_color.contains('\u{1b}'),
        "NO_COLOR turns colour off: {no_color:?}"
    );
}

#[tokio::test]
async fn completions_for_bash_zsh_and_fish() {
    let gen_for = |shell: &str| vec!["completions".to_owned(), shell.to_owned()];
    // Completions describe the command line only: a broken WSRING_CONFIG
    // must not stop them.
    let bad_config = [("WSRING_CONFIG", "/nonexistent/wsring.toml")];

    let bash = wsring(&gen_for("bash"), &bad_config).await;
    assert!(bash.status.success(), "{bash:?}");
    let script = String::from_utf8_lossy(&bash.stdout);
    for needle in [
        "_wsring()",
        "complete -F _wsring",
        "--heartbeat-ttl",
        "gateway",
    ] {
        assert!(script.contains(needle), "bash script lacks {needle:?}");
    }
    // The script is valid bash.
    let path = std::env::temp_dir().join(format!("wsring-completion-{}.bash", std::process::id()));
    std::fs::write(&path, script.as_bytes()).expect("write");
    let check = Command::new("bash")
        .arg("-n")
        .arg(&path)
        .output()
        .await
        .expect("run bash -n");
    let _ = std::fs::remove_file(&path);
    assert!(
        check.status.success(),
        "bash -n: {}",
        String::from_utf8_lossy(&check.stderr)
    );

    let zsh = wsring(&gen_for("zsh"), &[]).await;
    assert!(zsh.status.success());
    let zsh = String::from_utf8_lossy(&zsh.stdout);
    assert!(
        zsh.starts_with("#compdef wsring"),
        "{}",
        &zsh[..zsh.len().min(80)]
    );
    assert!(zsh.contains("--drain-window"));

    let fish = wsring(&gen_for("fish"), &[]).await;
    assert!(fish.status.success());
    let fish = String::from_utf8_lossy(&fish.stdout);
    assert!(fish.contains("complete -c wsring"));
    assert!(fish.contains("max-rooms-per-session"));

    let bad = wsring(&gen_for("tcsh"), &[]).await;
    assert_eq!(bad.status.code(), Some(2), "clap rejects an unknown shell");
}

#[tokio::test]
async fn man_page_renders() {
    let out = wsring(&["man".to_owned()], &[]).await;
    assert!(out.status.success(), "{out:?}");
    let roff = String::from_utf8_lossy(&out.stdout);
    assert!(roff.contains(".TH wsring 1"));
    for sub in ["dev", "node", "gateway", "bench", "completions"] {
        assert!(roff.contains(sub), "man page lists `{sub}`");
    }
    // Render it the way `man` does, when groff is installed (Debian's
    // man-db depends on it), and insist on no warnings.
    let path = std::env::temp_dir().join(format!("wsring-{}.1", std::process::id()));
    std::fs::write(&path, roff.as_bytes()).expect("write");
    match Command::new("groff")
        .args(["-man", "-Tutf8", "-ww", "-z"])
        .arg(&path)
        .output()
        .await
    {
        Ok(r) => {
            assert!(r.status.success(), "groff failed: {r:?}");
            let warnings = String::from_utf8_lossy(&r.stderr);
            assert!(warnings.trim().is_empty(), "groff warnings: {warnings}");
        }
        Err(e) => {
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED (rendering half): groff is not installed ({e})"
            );
        }
    }
    let _ = std::fs::remove_file(&path);

    // One page per subcommand with --out-dir.
    let dir = std::env::temp_dir().join(format!("wsring-man-{}", std::process::id()));
    let out = wsring(
        &[
            "man".to_owned(),
            "--out-dir".to_owned(),
            dir.display().to_string(),
        ],
        &[],
    )
    .await;
    assert!(out.status.success(), "{out:?}");
    for page in [
        "wsring.1",
        "wsring-dev.1",
        "wsring-node.1",
        "wsring-gateway.1",
        "wsring-bench.1",
    ] {
        assert!(dir.join(page).exists(), "{page} written");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn example_config_is_accepted_by_the_binary() {
    // The file loads; `node` then stops at the first required key the
    // example leaves commented out.
    let out = wsring(&words("--config wsring.example.toml node"), &[]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("missing required setting `id`"),
        "the example loaded: {stderr}"
    );
}

/// Flag > `WSRING_*` variable > config file > default, through the real
/// binary. `--cluster` with an `amqp://` URL fails at once with the URL in
/// the message, which shows which source won; `nodes = 0` in the file fails
/// validation only if the file's value is the one used.
#[tokio::test]
async fn precedence_is_flag_then_environment_then_file_then_default() {
    let tmp = std::env::temp_dir().join(format!("wsring-precedence-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).expect("tmp dir");
    let file = tmp.join("settings.toml");
    std::fs::write(&file, "cluster = \"amqp://file/\"\nnodes = 0\n").expect("write");
    let config = file.display().to_string();
    let run = |extra: &'static str, env: Vec<(&'static str, &'static str)>| {
        let config = config.clone();
        async move {
            let args = words(&format!("--config {config} dev --port 0 {extra}"));
            let out = wsring(&args, &env).await;
            String::from_utf8_lossy(&out.stderr).trim_end().to_owned()
        }
    };
    let env = || vec![("WSRING_CLUSTER", "amqp://env/"), ("WSRING_NODES", "1")];
    let cases = [
        (
            run("--nodes 1 --cluster amqp://flag/", env()).await,
            "\"amqp://flag/\"",
        ),
        (run("", env()).await, "\"amqp://env/\""),
        (run("--nodes 1", vec![]).await, "\"amqp://file/\""),
        (run("", vec![]).await, "invalid setting `nodes`"),
        (
            run("", vec![("WSRING_NODES", "2")]).await,
            "\"amqp://file/\"",
        ),
        (
            run("--nodes 2", vec![("WSRING_NODES", "0")]).await,
            "\"amqp://file/\"",
        ),
    ];
    let _ = std::fs::remove_dir_all(&tmp);
    for (stderr, want) in cases {
        assert!(stderr.contains(want), "want {want:?} in {stderr:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minted_tokens_connect_to_a_secured_cluster_with_their_claims() {
    let (_dev, ws) = secured_dev().await;
    // A full token: alice, every room, may send.
    let alice = mint(&["--jwt-secret", SECRET, "--sub", "alice", "--aud", "cli"]).await;
    let mut a = Client::try_connect(&format!("{ws}?token={alice}"))
        .await
        .unwrap_or_else(|r| panic!("alice refused: {r:?}"));
    assert_eq!(a.welcome["user"], "alice", "{}", a.welcome);
    // Receive-only and limited to `chat.*`, through the long flag names
    // the nodes use, with the secret from the environment.
    let out = wsring(
        &words("token --sub bob --rooms chat.* --send false --ttl 10m --jwt-audience cli"),
        &[("WSRING_JWT_SECRET", SECRET)],
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bob = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let mut b = Client::try_connect(&format!("{ws}?token={bob}"))
        .await
        .unwrap_or_else(|r| panic!("bob refused: {r:?}"));
    b.send(json!({"type":"send","to":"alice","data":1,"id":"s1"}))
        .await;
    let v = b.next().await;
    assert_eq!(
        (v["type"].as_str(), v["code"].as_str()),
        (Some("error"), Some("forbidden")),
        "{v}"
    );
    b.send(json!({"type":"join","room":"news","id":"j1"})).await;
    let v = b.next().await;
    assert_eq!(v["code"], "forbidden", "{v}");
    b.send(json!({"type":"join","room":"chat.lobby","id":"j2"}))
        .await;
    let v = b.next().await;
    assert_ne!(v["type"], "error", "{v}");
    a.roundtrip("alive").await;
    // The wrong secret, or no audience, is refused with the reason.
    for (args, reason) in [
        (
            vec!["--jwt-secret", "other", "--sub", "carol", "--aud", "cli"],
            "token signature does not verify",
        ),
        (vec!["--jwt-secret", SECRET, "--sub", "carol"], "aud"),
    ] {
        let t = mint(&args).await;
        match Client::try_connect(&format!("{ws}?token={t}")).await {
            Ok(c) => panic!("{args:?}: accepted as {}", c.welcome),
            Err(r) => {
                assert_eq!(r.status, 401, "{:?}", r.body);
                let msg = r.body["error"]["message"].as_str().unwrap_or_default();
                assert!(msg.contains(reason), "{args:?}: {msg}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_runs_against_a_secured_cluster_with_a_secret_or_a_token_file() {
    let (_dev, ws) = secured_dev().await;
    let tmp = std::env::temp_dir().join(format!("wsring-cli-bench-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).expect("tmp dir");
    let file = tmp.join("tokens.txt");
    let mut lines = vec!["# tokens for the bench".to_owned()];
    for i in 0..4 {
        lines.push(
            mint(&[
                "--jwt-secret",
                SECRET,
                "--aud",
                "cli",
                "--sub",
                &format!("tf-{i}"),
            ])
            .await,
        );
    }
    std::fs::write(&file, lines.join("\n")).expect("write tokens");
    let file = file.display().to_string();
    for creds in [
        vec![
            "--jwt-secret",
            SECRET,
            "--jwt-audience",
            "cli",
            "--clients",
            "6",
        ],
        vec!["--token-file", file.as_str(), "--clients", "4"],
        // Split over worker processes: credentials reach each worker.
        vec![
            "--jwt-secret",
            SECRET,
            "--jwt-audience",
            "cli",
            "--clients",
            "6",
            "--procs",
            "2",
        ],
    ] {
        let mut args = vec![
            "bench",
            "--url",
            ws.as_str(),
            "--send-rate",
            "40",
            "--duration",
            "1s",
        ];
        args.extend(creds.iter().copied());
        let (status, out) = Proc::run_stdout(&args, Duration::from_secs(60)).await;
        assert!(status.success(), "{creds:?}: {out}");
        let clients = creds[creds
            .iter()
            .position(|a| *a == "--clients")
            .expect("clients")
            + 1];
        assert!(
            out.contains(&format!("| clients connected | {clients} (0 failed) |")),
            "{creds:?}: {out}"
        );
        assert!(
            out.contains("| received | 40"),
            "{creds:?}: every message arrived: {out}"
        );
    }
    let _ = std::fs::remove_dir_all(&tmp);
}

#[tokio::test]
async fn token_needs_a_key_and_says_which() {
    let out = wsring(&words("token --sub alice"), &[]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--jwt-secret"), "{stderr}");
    // The help names both kinds of key and the claims' flags.
    let help = wsring(&words("token --help"), &[]).await;
    let help = String::from_utf8_lossy(&help.stdout);
    for flag in [
        "--jwt-secret",
        "--private-key",
        "--rooms",
        "--send",
        "--ttl",
        "--jwt-audience",
        "--jwt-issuer",
    ] {
        assert!(help.contains(flag), "{flag}: {help}");
    }
}
