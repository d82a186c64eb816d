//! `wsring bench`: runs the load generator in this process, or splits it over
//! `--procs` worker processes (each prints a JSON report; histograms merge
//! exactly) when one process's file-descriptor limit is not enough.

use anyhow::Context;
use std::process::Stdio;
use std::sync::Arc;
use tokio::process::Command;
use wsring_auth::{Grant, SigningKey};
use wsring_bench::{BenchConfig, MintFn, Report, Tokens};

use crate::cli::BenchArgs;

fn config(
    a: &BenchArgs,
    tokens: &Tokens,
    clients: usize,
    first: usize,
    total: usize,
    prefix: &str,
) -> BenchConfig {
    BenchConfig {
        url: a.url.clone(),
        clients,
        first,
        total,
        prefix: prefix.to_owned(),
        mode: a.mode,
        rate: a.rate * clients as f64 / total.max(1) as f64,
        duration: a.duration,
        payload: a.payload,
        text: a.text,
        deflate: a.deflate,
        room_size: a.room_size,
        connect_rate: a.connect_rate * clients as f64 / total.max(1) as f64,
        source_ips: a.source_ips.clone(),
        tokens: tokens.clone(),
        api_key: a.api_key.clone(),
    }
}

/// The clients' credentials: minted per user from `--jwt-secret`, read
/// from `--token-file`, or none.
fn tokens(a: &BenchArgs) -> anyhow::Result<Tokens> {
    if let Some(path) = &a.token_file {
        let list = crate::token::read_token_file(path)?;
        anyhow::ensure!(
            list.len() >= a.clients,
            "the token file {} has {} tokens; --clients {} needs one per client",
            path.display(),
            list.len(),
            a.clients
        );
        return Ok(Tokens::List(Arc::new(list)));
    }
    let Some(secret) = a.jwt_secret.clone() else {
        return Ok(Tokens::None);
    };
    let key = SigningKey::Secret(secret);
    let (audience, issuer) = (a.jwt_audience.clone(), a.jwt_issuer.clone());
    // Long enough for any run; the token is checked at connect only.
    let ttl = a.duration + std::time::Duration::from_secs(3600);
    let mint: MintFn = Arc::new(move |user: &str| {
        let grant = Grant {
            sub: user.to_owned(),
            audience: audience.clone(),
            issuer: issuer.clone(),
            ttl,
            ..Grant::default()
        };
        wsring_auth::mint(&key, None, &grant).map_err(|e| e.to_string())
    });
    Ok(Tokens::Mint(mint))
}

/// Runs the bench and prints the report.
pub async fn run(a: BenchArgs) -> anyhow::Result<()> {
    let total = a.total.unwrap_or(a.clients);
    let prefix = a
        .prefix
        .clone()
        .unwrap_or_else(|| format!("bench{:06x}", rand_suffix()));
    let tokens = tokens(&a)?;
    if a.worker || a.procs <= 1 {
        let report =
            wsring_bench::run(config(&a, &tokens, a.clients, a.first, total, &prefix)).await?;
        if a.worker {
            println!("{}", report.to_json());
        } else {
            print_report(&a, &report);
        }
        return Ok(());
    }
    let exe = std::env::current_exe().context("locating the wsring executable")?;
    let per = a.clients.div_ceil(a.procs);
    let mut children = Vec::new();
    for w in 0..a.procs {
        let first = w * per;
        let clients = per.min(a.clients.saturating_sub(first));
        if clients == 0 {
            break;
        }
        let mut cmd = Command::new(&exe);
        cmd.args(["bench", "--worker", "--url", &a.url])
            .args(["--clients", &clients.to_string()])
            .args([
                "--first",
                &first.to_string(),
                "--total",
                &a.clients.to_string(),
            ])
            .args(["--prefix", &prefix, "--mode", mode_name(a.mode)])
            .args(["--send-rate", &a.rate.to_string()])
            .args([
                "--duration",
                &humantime::format_duration(a.duration).to_string(),
            ])
            .args(["--payload", &a.payload.to_string()])
            .args(["--room-size", &a.room_size.to_string()])
            .args(["--text", text_name(a.text)])
            .args(["--connect-rate", &a.connect_rate.to_string()])
            .stdout(Stdio::piped())
            .kill_on_drop(true);
        // Credentials reach the workers through the environment, never
        // their command line (which other local users can read).
        if let Some(secret) = &a.jwt_secret {
            cmd.env("WSRING_JWT_SECRET", secret);
        }
        if let Some(key) = &a.api_key {
            cmd.env("WSRING_API_KEY", key);
        }
        if let Some(path) = &a.token_file {
            cmd.arg("--token-file").arg(path);
        }
        for aud in &a.jwt_audience {
            cmd.args(["--jwt-audience", aud]);
        }
        if let Some(iss) = &a.jwt_issuer {
            cmd.args(["--jwt-issuer", iss]);
        }
        if !a.source_ips.is_empty() {
            let ips: Vec<String> = a.source_ips.iter().map(ToString::to_string).collect();
            cmd.args(["--source-ips", &ips.join(",")]);
        }
        if a.deflate {
            cmd.arg("--deflate");
        }
        children.push(cmd.spawn().context("starting a bench worker")?);
    }
    let mut merged = Report::default();
    for child in children {
        let out = child.wait_with_output().await?;
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text.lines().last().unwrap_or_default();
        let r = Report::from_json(line)
            .with_context(|| format!("a bench worker failed ({})", out.status))?;
        merged.merge(&r);
    }
    print_report(&a, &merged);
    Ok(())
}

fn mode_name(m: wsring_bench::Mode) -> &'static str {
    match m {
        wsring_bench::Mode::Direct => "direct",
        wsring_bench::Mode::Room => "room",
        wsring_bench::Mode::Broadcast => "broadcast",
    }
}

fn text_name(t: wsring_bench::Text) -> &'static str {
    match t {
        wsring_bench::Text::Repeat => "repeat",
        wsring_bench::Text::Chat => "chat",
    }
}

fn print_report(a: &BenchArgs, r: &Report) {
    println!(
        "wsring bench: {} clients, mode={}, send rate={}/s, {:?}, payload={} B ({}), deflate={}, procs={}\n",
        a.clients,
        mode_name(a.mode),
        a.rate,
        a.duration,
        a.payload,
        text_name(a.text),
        if a.deflate { "offered" } else { "off" },
        a.procs.max(1)
    );
    print!("{}", r.render());
}

fn rand_suffix() -> u32 {
    std::process::id()
        ^ (std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0))
}
