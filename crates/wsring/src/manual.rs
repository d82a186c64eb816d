//! Shell completion scripts and manual pages, generated from the clap
//! definitions in [`crate::cli`] at run time so they can never disagree with
//! the flags the binary actually accepts (nothing is generated at build time
//! or checked in).

use clap::CommandFactory;
use std::io::Write;
use std::path::Path;

use crate::cli::Cli;

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
