//! Shell completion scripts, manual pages and the configuration reference,
//! generated from the clap definitions in [`crate::cli`] so they can never
//! disagree with the flags the binary actually accepts. Completions and man
//! pages are generated at run time; the reference is checked in as
//! docs/CONFIGURATION.md and a test keeps it current.

use clap::CommandFactory;
use std::io::Write;
use std::path::Path;

use crate::cli::Cli;
use crate::settings::FILE_ROLES;

/// Writes the completion script for `shell` to `out`.
pub fn completions(shell: clap_complete::Shell, out: &mut dyn Write) {
    let mut cmd = Cli::command();
    clap_complete::generate(shell, &mut cmd, "wsring", out);
}

/// Writes the `wsring(1)` page (roff) to `out`.
pub fn man_page(out: &mut dyn Write) -> std::io::Result<()> {
    clap_mangen::Man::new(Cli::command()).render(out)
}

/// Writes `wsring.1` and one page per subcommand (`wsring-dev.1`, …) into
/// `dir`, creating it if needed. Returns the files written.
pub fn man_pages_to(dir: &Path) -> std::io::Result<Vec<std::path::PathBuf>> {
    std::fs::create_dir_all(dir)?;
    clap_mangen::generate_to(Cli::command(), dir)?;
    let mut written: Vec<_> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("wsring") && n.ends_with(".1"))
        })
        .collect();
    written.sort();
    Ok(written)
}

/// The tables of docs/CONFIGURATION.md (Markdown), generated from the same
/// declarations as the flags: one row per setting with its flag, `WSRING_*`
/// variable, TOML key, default, the roles that take it and its help text.
/// `crates/wsring/tests/configuration.rs` keeps the checked-in file equal to
/// this.
pub fn configuration_reference() -> String {
    // Built, so that clap has settled how many values each flag takes.
    let mut cli = Cli::command();
    cli.build();
    let mut out = String::new();
    out.push_str("| TOML key | flag | environment variable | default | roles | meaning |\n");
    out.push_str("|---|---|---|---|---|---|\n");
    // Global flags first (every role), then each role's settings in the
    // order `wsring <role> --help` lists them, each setting once.
    let mut rows: Vec<(&clap::Arg, Vec<&str>)> = cli
        .get_arguments()
        .filter(|a| documented(a))
        .map(|a| (a, vec!["all"]))
        .collect();
    for role in FILE_ROLES {
        let Some(sub) = cli.find_subcommand(role) else {
            continue;
        };
        for arg in sub
            .get_arguments()
            .filter(|a| documented(a) && !a.is_global_set())
        {
            match rows.iter_mut().find(|(a, _)| a.get_id() == arg.get_id()) {
                Some((_, roles)) => roles.push(role),
                None => rows.push((arg, vec![role])),
            }
        }
    }
    for (arg, roles) in rows {
        let key = if roles == ["all"] {
            "—".to_owned()
        } else {
            code(arg.get_id().as_str())
        };
        let env = arg
            .get_env()
            .map_or("—".to_owned(), |e| code(&e.to_string_lossy()));
        out.push_str(&format!(
            "| {key} | {} | {env} | {} | {} | {} |\n",
            code(&flag(arg)),
            default(arg),
            roles.join(", "),
            help(arg)
        ));
    }
    // `bench` and `token` are tools, not roles: flags only, no file keys.
    for (name, intro) in [
        (
            "bench",
            "`wsring bench` takes flags only (no file keys; the credentials also come from `WSRING_JWT_SECRET` and `WSRING_API_KEY`):",
        ),
        (
            "token",
            "`wsring token` takes flags only (no file keys; the secret also comes from `WSRING_JWT_SECRET`):",
        ),
    ] {
        let Some(sub) = cli.find_subcommand(name) else {
            continue;
        };
        out.push_str(&format!("\n{intro}\n\n"));
        out.push_str("| flag | default | meaning |\n|---|---|---|\n");
        for arg in sub
            .get_arguments()
            .filter(|a| documented(a) && !a.is_global_set())
        {
            out.push_str(&format!(
                "| {} | {} | {} |\n",
                code(&flag(arg)),
                default(arg),
                help(arg)
            ));
        }
    }
    out
}

/// Settings a user sets: not hidden, not clap's own `--help`/`--version`.
fn documented(arg: &clap::Arg) -> bool {
    use clap::ArgAction::{Help, HelpLong, HelpShort, Version};
    let clap_own = matches!(arg.get_action(), Help | HelpLong | HelpShort | Version);
    !arg.is_hide_set() && arg.get_long().is_some() && !clap_own
}

fn code(s: &str) -> String {
    format!("`{s}`")
}

/// `--flag <VALUE>` as `--help` shows it (`[<VALUE>]` for an optional one).
fn flag(arg: &clap::Arg) -> String {
    let long = arg.get_long().unwrap_or_default();
    let takes_value = arg.get_num_args().is_some_and(|n| n.takes_values());
    if !takes_value {
        return format!("--{long}");
    }
    let name = arg
        .get_value_names()
        .and_then(|v| v.first())
        .map_or_else(|| arg.get_id().as_str().to_uppercase(), |v| v.to_string());
    if arg.get_num_args().is_some_and(|n| n.min_values() == 0) {
        format!("--{long} [<{name}>]")
    } else {
        format!("--{long} <{name}>")
    }
}

fn default(arg: &clap::Arg) -> String {
    let values: Vec<String> = arg
        .get_default_values()
        .iter()
        .map(|v| v.to_string_lossy().into_owned())
        .collect();
    let takes_value = arg.get_num_args().is_some_and(|n| n.takes_values());
    if values.is_empty() || !takes_value {
        // A switch is off unless given; a setting without a default says
        // what happens instead in its help.
        return if takes_value {
            "—".into()
        } else {
            "off".into()
        };
    }
    code(&values.join(","))
}

/// The whole help text on one line, safe inside a table cell.
fn help(arg: &clap::Arg) -> String {
    arg.get_long_help()
        .or(arg.get_help())
        .map(|h| h.to_string())
        .unwrap_or_default()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace('|', "\\|")
}
