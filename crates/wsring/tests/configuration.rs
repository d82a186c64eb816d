//! The configuration reference and the example file stay true to the code:
//!
//! * docs/CONFIGURATION.md's tables are what [`configuration_reference`]
//!   generates from the clap declarations (regenerate with
//!   `WSRING_BLESS=1 cargo test -p wsring --test configuration`);
//! * every setting is declared once: a setting several roles share has one
//!   flag, variable, default and help text, and flag, variable and TOML key
//!   follow from one name;
//! * `wsring.example.toml` loads, sets exactly the defaults, and lists every
//!   key with a comment;
//! * the README points at the reference.

use clap::CommandFactory;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use wsring::cli::Cli;
use wsring::manual::configuration_reference;
use wsring::settings::{FILE_ROLES, FileConfig, file_keys};

const BEGIN: &str = "<!-- BEGIN GENERATED";
const END: &str = "<!-- END GENERATED -->";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn configuration_md_is_generated_from_the_code() {
    let path = repo_root().join("docs/CONFIGURATION.md");
    let text = std::fs::read_to_string(&path).expect("docs/CONFIGURATION.md");
    let begin = text.find(BEGIN).expect("the BEGIN GENERATED marker");
    let body = begin
        + text[begin..]
            .find('\n')
            .expect("a line break after the marker")
        + 1;
    let end = text.find(END).expect("the END GENERATED marker");
    assert!(body <= end, "markers out of order");
    let generated = configuration_reference();
    if text[body..end] == generated {
        return;
    }
    if std::env::var_os("WSRING_BLESS").is_some() {
        let updated = format!("{}{generated}{}", &text[..body], &text[end..]);
        std::fs::write(&path, updated).expect("write docs/CONFIGURATION.md");
        return;
    }
    let first_difference = text[body..end]
        .lines()
        .zip(generated.lines())
        .find(|(a, b)| a != b)
        .map(|(a, b)| format!("\n  file: {a}\n  code: {b}"))
        .unwrap_or_else(|| "\n  (the number of lines differs)".into());
    panic!(
        "docs/CONFIGURATION.md is out of date; regenerate it with \
         `WSRING_BLESS=1 cargo test -p wsring --test configuration`{first_difference}"
    );
}

#[test]
fn every_setting_is_declared_once_and_named_consistently() {
    let cli = Cli::command();
    let keys = file_keys(&cli);
    for (role, arg) in &keys {
        let id = arg.get_id().as_str();
        assert_eq!(
            arg.get_long(),
            Some(id.replace('_', "-").as_str()),
            "{role}: the flag of `{id}` is its key in kebab-case"
        );
        let env = arg.get_env().map(|e| e.to_string_lossy().into_owned());
        assert_eq!(
            env,
            Some(format!("WSRING_{}", id.to_uppercase())),
            "{role}: the variable of `{id}` is WSRING_ and its key in capitals"
        );
        for (other_role, other) in keys.iter().filter(|(_, a)| a.get_id() == arg.get_id()) {
            let describe = |a: &clap::Arg| {
                (
                    a.get_default_values().to_vec(),
                    a.get_help().map(ToString::to_string),
                    a.get_long_help().map(ToString::to_string),
                )
            };
            assert_eq!(
                describe(arg),
                describe(other),
                "`{id}` is described differently in {role} and {other_role}"
            );
        }
    }
    // The settings every role has are there for each of them.
    for shared in [
        "namespace",
        "cluster",
        "routing",
        "heartbeat_ttl",
        "durable",
    ] {
        let roles: BTreeSet<&str> = keys
            .iter()
            .filter(|(_, a)| a.get_id() == shared)
            .map(|(r, _)| r.as_str())
            .collect();
        assert_eq!(roles, FILE_ROLES.into_iter().collect(), "{shared}");
    }
}

/// The roles' settings as parsed from `wsring <role>` with `file`.
fn settings(file: Option<&FileConfig>) -> Vec<String> {
    FILE_ROLES
        .iter()
        .map(|role| {
            let cli = Cli::parse_with_file(&["wsring", role], file).expect("parses");
            format!("{:?}", cli.command)
        })
        .collect()
}

#[test]
fn example_file_sets_every_key_to_its_default() {
    let path = repo_root().join("wsring.example.toml");
    let cli = Cli::command();

    // As shipped: loads, and every role gets the same settings as with no
    // file at all.
    let shipped = FileConfig::load(&path, &cli).expect("the example loads");
    assert_eq!(settings(Some(&shipped)), settings(None));

    // Keys without a default are present as `# key = value`: with those
    // uncommented the file still loads and sets every key there is, each
    // under a comment saying what it does.
    let text = std::fs::read_to_string(&path).expect("wsring.example.toml");
    let mut full = String::new();
    let mut previous = "";
    for line in text.lines() {
        let uncommented = line.strip_prefix("# ").filter(|rest| {
            rest.split_once(" = ").is_some_and(|(k, _)| {
                !k.is_empty() && k.chars().all(|c| c.is_ascii_lowercase() || c == '_')
            })
        });
        let setting = uncommented.unwrap_or(line);
        if setting.contains(" = ") && !setting.starts_with('#') {
            assert!(
                previous.starts_with('#'),
                "`{setting}` needs a comment line above it"
            );
        }
        full.push_str(setting);
        full.push('\n');
        previous = line;
    }
    let every = FileConfig::parse(&full, &cli).expect("the example with every key uncommented");
    let listed: BTreeSet<&str> = every.keys().collect();
    let keys = file_keys(&cli);
    let all: BTreeSet<&str> = keys.iter().map(|(_, a)| a.get_id().as_str()).collect();
    let missing: Vec<_> = all.difference(&listed).collect();
    assert!(
        missing.is_empty(),
        "keys missing from the example: {missing:?}"
    );
}

#[test]
fn readme_points_at_the_reference() {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).expect("README.md");
    assert!(
        readme.contains("(docs/CONFIGURATION.md)"),
        "README links it"
    );
}
