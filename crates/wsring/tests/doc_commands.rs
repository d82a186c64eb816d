//! The shell commands of README.md and docs/*.md, run as written (the way
//! `crates/protocol/tests/protocol_doc.rs` checks PROTOCOL.md's frames).
//!
//! Every fenced block without a language, or in `sh`/`bash`/`shell`, must
//! say what it is in its info string:
//!
//! * ```` ```sh dev ````: run with bash against a fresh three-node `wsring
//!   dev` that this test starts, with `bob` and `alice` connected as in the
//!   README's short session;
//! * ```` ```sh run ````: run alone with bash (it starts what it needs);
//! * ```` ```sh no-run ````: shown, not run (it runs until stopped, installs
//!   something, or is a test command itself);
//! * ```` ```text ````: not a command (a diagram, a URL shape).
//!
//! Runnable blocks run with the `wsring` this build produced first on `PATH`,
//! every port 7000-7099 they name moved to a free ephemeral one, and
//! `WSRING_NAMESPACE` set to a fresh value (so Redis is shared safely); jobs
//! they start in the background are killed when the block ends. A command
//! with a trailing comment that starts with `{` or `[` must print that
//! output, `…` standing for any text.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::process::Command;

/// Upper bound for one block.
const LIMIT: Duration = Duration::from_secs(180);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Dev,
    Run,
    NoRun,
}

#[derive(Debug)]
struct Block {
    file: String,
    line: usize,
    kind: Kind,
    text: String,
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The documents whose shell blocks are checked.
fn documents() -> Vec<PathBuf> {
    let root = repo_root();
    let mut docs = vec![root.join("README.md")];
    let mut more: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .expect("docs/")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    more.sort();
    docs.extend(more);
    docs
}

/// Every shell block of every document; unmarked ones are reported in
/// `unmarked`.
fn blocks(unmarked: &mut Vec<String>) -> Vec<Block> {
    let mut out = Vec::new();
    for path in documents() {
        let text = std::fs::read_to_string(&path).expect("read doc");
        let file = path
            .strip_prefix(repo_root())
            .unwrap_or(&path)
            .display()
            .to_string();
        let mut lines = text.lines().enumerate();
        while let Some((n, line)) = lines.next() {
            let Some(info) = line.strip_prefix("```") else {
                continue;
            };
            let words: Vec<&str> = info.split_whitespace().collect();
            let mut body = Vec::new();
            for (_, l) in lines.by_ref() {
                if l.starts_with("```") {
                    break;
                }
                body.push(l);
            }
            let kind = match words.as_slice() {
                ["sh", "dev"] => Some(Kind::Dev),
                ["sh", "run"] => Some(Kind::Run),
                ["sh", "no-run"] => Some(Kind::NoRun),
                [] | ["sh" | "bash" | "shell" | "console", ..] => {
                    unmarked.push(format!("{file}:{}: ```{info}", n + 1));
                    None
                }
                _ => None,
            };
            if let Some(kind) = kind {
                out.push(Block {
                    file: file.clone(),
                    line: n + 1,
                    kind,
                    text: body.join("\n"),
                });
            }
        }
    }
    out
}

/// A command's expected output, from its trailing `# {…}` or `# […]`
/// comment (the command without it, and the expectation).
fn expectation(line: &str) -> Option<(&str, &str)> {
    let at = line.find("  # ").or_else(|| line.find(" # "))?;
    let comment = line[at..].trim_start().trim_start_matches('#').trim();
    (comment.starts_with('{') || comment.starts_with('[')).then(|| (&line[..at], comment))
}

/// Whether `output` matches `pattern`, `…` standing for any text.
fn matches(output: &str, pattern: &str) -> bool {
    let pieces: Vec<&str> = pattern.split('…').collect();
    let output = output.trim();
    if pieces.len() == 1 {
        return output == pattern;
    }
    let (first, last) = (pieces[0], pieces[pieces.len() - 1]);
    if !output.starts_with(first) || !output.ends_with(last) {
        return false;
    }
    let mut rest = &output[first.len()..];
    for piece in &pieces[1..pieces.len() - 1] {
        match rest.find(piece) {
            Some(i) => rest = &rest[i + piece.len()..],
            None => return false,
        }
    }
    rest.ends_with(last)
}

/// The bash script for a block: its commands with the expected outputs
/// framed by markers, background jobs killed on exit.
fn script(block: &str) -> (String, Vec<String>) {
    let mut out = String::from(
        "set -euo pipefail\ntrap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true' EXIT\n",
    );
    let mut wanted = Vec::new();
    let mut logical = String::new();
    for line in block.lines() {
        if let Some(head) = line.strip_suffix('\\') {
            logical.push_str(head);
            continue;
        }
        logical.push_str(line);
        let full = std::mem::take(&mut logical);
        match expectation(&full) {
            Some((cmd, want)) => {
                let n = wanted.len();
                out.push_str(&format!(
                    "printf '\\n@@begin {n}\\n'\n{cmd}\nprintf '\\n@@end {n}\\n'\n"
                ));
                wanted.push(want.to_owned());
            }
            None => {
                out.push_str(&full);
                out.push('\n');
            }
        }
    }
    (out, wanted)
}

/// `text` with every port 7000-7099 it names replaced by a free one (the
/// same port for the same number), and `gateway` (7000) also by `dev_port`.
fn move_ports(text: &str, dev_port: Option<u16>) -> String {
    let mut map: BTreeMap<String, String> = BTreeMap::new();
    let bytes = text.as_bytes();
    let mut out = String::new();
    let mut i = 0;
    while i < text.len() {
        let is_port = i + 4 <= text.len()
            && bytes[i] == b'7'
            && bytes[i + 1] == b'0'
            && bytes[i + 2].is_ascii_digit()
            && bytes[i + 3].is_ascii_digit()
            && (i == 0 || !bytes[i - 1].is_ascii_alphanumeric())
            && (i + 4 == text.len() || !bytes[i + 4].is_ascii_alphanumeric());
        if is_port {
            let port = &text[i..i + 4];
            let moved = map.entry(port.to_owned()).or_insert_with(|| {
                match dev_port {
                    Some(p) if port == "7000" => p,
                    _ => free_port(),
                }
                .to_string()
            });
            out.push_str(moved);
            i += 4;
        } else {
            let c = text[i..].chars().next().expect("a char");
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A directory holding `wsring` (this build's binary), for `PATH`.
fn bin_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("wsring-doc-bin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("bin dir");
    let link = dir.join("wsring");
    if !link.exists() {
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_wsring"), &link).expect("symlink");
    }
    dir
}

/// Runs one block with bash; the failures it had, if any.
async fn run(b: &Block, dev_port: Option<u16>) -> Result<(), String> {
    let text = move_ports(&b.text, dev_port);
    let (script, wanted) = script(&text);
    let path = format!(
        "{}:{}",
        bin_dir().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let ns = format!("doc{}{}", std::process::id(), b.line);
    let mut cmd = Command::new("bash");
    cmd.arg("-c")
        .arg(&script)
        .current_dir(repo_root())
        .env("PATH", path)
        .env("WSRING_NAMESPACE", &ns)
        .env("RUST_LOG", "warn")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    for var in ["WSRING_CONFIG", "WSRING_JWT_SECRET", "WSRING_API_KEY"] {
        cmd.env_remove(var);
    }
    let out = tokio::time::timeout(LIMIT, cmd.output())
        .await
        .map_err(|_| format!("did not finish within {LIMIT:?}"))?
        .map_err(|e| format!("cannot run bash: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let report = |why: String| {
        format!("{why}\n--- script\n{script}--- stdout\n{stdout}--- stderr\n{stderr}")
    };
    if !out.status.success() {
        return Err(report(format!("exit status {:?}", out.status.code())));
    }
    for (n, want) in wanted.iter().enumerate() {
        let begin = format!("@@begin {n}\n");
        let end = format!("\n@@end {n}");
        let got = stdout
            .find(&begin)
            .map(|i| &stdout[i + begin.len()..])
            .and_then(|rest| rest.find(&end).map(|j| &rest[..j]))
            .ok_or_else(|| report(format!("no output framed for expectation {n}")))?;
        let want = move_ports(want, dev_port);
        if !matches(got, &want) {
            return Err(report(format!("output {got:?} does not match {want:?}")));
        }
    }
    Ok(())
}

#[test]
fn every_shell_block_says_whether_it_is_run() {
    let mut unmarked = Vec::new();
    let all = blocks(&mut unmarked);
    assert!(
        unmarked.is_empty(),
        "shell blocks must be marked `sh dev`, `sh run` or `sh no-run` (or be `text`):\n{}",
        unmarked.join("\n")
    );
    assert!(all.iter().any(|b| b.kind == Kind::Dev), "no `sh dev` block");
    assert!(all.iter().any(|b| b.kind == Kind::Run), "no `sh run` block");
}

#[test]
fn expectations_match_with_ellipses() {
    assert!(matches("{\"ok\":true}\n", "{\"ok\":true}"));
    assert!(matches("{\"a\":1,\"b\":2}", "{\"a\":…}"));
    assert!(matches("{\"a\":1,\"b\":2}", "{…\"b\":2}"));
    assert!(!matches("{\"ok\":false}", "{\"ok\":true}"));
    assert!(!matches("{\"a\":1}", "{\"a\":…,\"c\":…}"));
    assert_eq!(
        expectation("curl -s x  # {\"ok\":true}"),
        Some(("curl -s x", "{\"ok\":true}"))
    );
    assert_eq!(expectation("curl -s x  # add a node"), None);
    let moved = move_ports("a:7000 b:7001 c:7000 d:17000 e:70001", Some(1234));
    assert!(moved.starts_with("a:1234 b:"), "{moved}");
    assert!(moved.contains("c:1234 d:17000 e:70001"), "{moved}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_blocks_run_against_a_fresh_dev_cluster() {
    let mut unmarked = Vec::new();
    let mut failures = Vec::new();
    for b in blocks(&mut unmarked)
        .into_iter()
        .filter(|b| b.kind == Kind::Dev)
    {
        // A fresh cluster per block: each expects the state the README's
        // short session leaves.
        let (dev, ws, base) = common::procs::dev_process(&["--nodes", "3"]).await;
        let port: u16 = base
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("gateway port");
        let _bob = common::Client::connect(&ws, "bob").await;
        let _alice = common::Client::connect(&ws, "alice").await;
        if let Err(e) = run(&b, Some(port)).await {
            failures.push(format!("{}:{}: {e}", b.file, b.line));
        }
        // A block may crash a node on purpose (`?mode=crash`), which the
        // dev cluster logs as a warning; nothing else may warn.
        let warnings: Vec<String> = dev
            .warnings()
            .into_iter()
            .filter(|w| !w.contains("crashing (simulated)"))
            .collect();
        if !warnings.is_empty() {
            failures.push(format!("{}:{}: warnings: {warnings:#?}", b.file, b.line));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_blocks_run_as_written() {
    if common::procs::redis().await.is_none() {
        // The runnable blocks start clusters on the local Redis.
        return;
    }
    let mut unmarked = Vec::new();
    let mut failures = Vec::new();
    for b in blocks(&mut unmarked)
        .into_iter()
        .filter(|b| b.kind == Kind::Run)
    {
        if let Err(e) = run(&b, None).await {
            failures.push(format!("{}:{}: {e}", b.file, b.line));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n\n"));
}

/// The chat backend of docs/INTEGRATION.md, as the page gives it: the
/// commands of its block (the example backend, then `wsring dev` with the
/// page's flags; the backend's port moved to a free one), the two client
/// frames of its `json client` block, and the three answers its next
/// paragraph promises, compared as JSON.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chat_backend_of_integration_md_answers_as_documented() {
    use common::Client;
    use serde_json::Value;
    if let Err(why) = common::js::node_major().await {
        common::js::skip("the chat backend example", &why);
        return;
    }
    let page = std::fs::read_to_string(repo_root().join("docs/INTEGRATION.md")).expect("page");
    let section = &page[page.find("## A chat backend").expect("the section")..];
    let section = &section[..section[3..].find("\n## ").expect("the next section") + 3];
    let fenced = |info: &str| -> String {
        let open = format!("```{info}\n");
        let start = section.find(&open).expect("the block") + open.len();
        section[start..start + section[start..].find("```").expect("its end")].to_owned()
    };
    // The commands, continuation lines joined.
    let commands: Vec<String> = fenced("sh no-run")
        .replace("\\\n", " ")
        .lines()
        .map(|l| l.trim().trim_end_matches('&').trim().to_owned())
        .filter(|l| !l.is_empty())
        .collect();
    let backend_port = free_port().to_string();
    let backend_cmd = commands
        .iter()
        .find(|c| c.starts_with("node "))
        .expect("the backend command");
    let dev_cmd = commands
        .iter()
        .find_map(|c| c.strip_prefix("cargo run --release -- dev"))
        .expect("the wsring dev command")
        .replace("8080", &backend_port);
    let dev_args: Vec<&str> = dev_cmd.split_whitespace().collect();
    let frames: Vec<Value> = fenced("json client")
        .lines()
        .map(|l| serde_json::from_str(l).expect("a client frame"))
        .collect();
    // The promised answers: the JSON in backticks after the frames.
    let after = &section[section.find("```json client").expect("frames")..];
    let after = after[after[3..].find("```").expect("end") + 6..].trim_start();
    let paragraph = &after[..after.find("\n\n").unwrap_or(after.len())];
    let promised: Vec<Value> = paragraph
        .split('`')
        .skip(1)
        .step_by(2)
        .filter_map(|s| serde_json::from_str::<Value>(s).ok())
        .filter(Value::is_object)
        .collect();
    assert_eq!(promised.len(), 3, "ack, reply and error in {paragraph:?}");

    let (_dev, ws, base) = common::procs::dev_process(&dev_args).await;
    let mut parts = backend_cmd.split_whitespace();
    let mut backend = Command::new(parts.next().expect("node"))
        .args(parts)
        .current_dir(repo_root())
        .env("PORT", &backend_port)
        .env("WSRING_API", &base)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the backend starts");
    // Ready once it says where it listens.
    let stdout = backend.stdout.take().expect("stdout");
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
    let ready = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .expect("the backend is ready in time")
        .expect("its stdout");
    assert!(ready.is_some_and(|l| l.contains(&backend_port)));
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });

    let mut alice = Client::connect(&ws, "alice").await;
    alice.send(frames[0].clone()).await;
    // The ack and the backend's answer (a direct message through the API),
    // in whichever order they arrive.
    let (a, b) = (alice.next().await, alice.next().await);
    let (ack, reply) = if a["type"] == "ack" { (a, b) } else { (b, a) };
    assert_eq!(ack, promised[0], "the ack");
    assert_eq!(reply["type"], "message", "{reply}");
    assert_eq!(reply["data"], promised[1], "the backend's answer");
    alice.send(frames[1].clone()).await;
    assert_eq!(alice.next().await, promised[2], "the refusal");
}
