//! Hidden `generate-docs`: shell completions and man pages from the clap tree, so the shipped
//! copies in `completions/` and `man/` can never describe another command line.

use std::path::Path;

use clap::CommandFactory;
use clap_complete::Shell;
use serde::Serialize;

use super::Report;
use crate::cli::{Cli, GenerateDocsArgs};
use crate::error::{AppError, Result};
use crate::exit::ExitStatus;
use crate::output::Outcome;

#[derive(Debug, Serialize)]
pub struct DocsReport {
    pub files: Vec<String>,
}

impl DocsReport {
    pub fn table(&self) -> String {
        self.files.iter().map(|f| format!("wrote {f}\n")).collect()
    }
}

pub fn run(args: &GenerateDocsArgs) -> Result<Outcome> {
    let files =
        generate(&args.out_dir).map_err(|e| AppError::config("cannot write the documentation").caused_by(&e))?;
    Ok(Outcome::new(Report::Docs(DocsReport { files }), ExitStatus::Ok))
}

/// Every generated file as (relative path, contents).
pub fn render() -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    let mut cmd = Cli::command();
    cmd.build();
    for (shell, name) in [
        (Shell::Bash, "ausi.bash"),
        (Shell::Zsh, "_ausi"),
        (Shell::Fish, "ausi.fish"),
        (Shell::PowerShell, "_ausi.ps1"),
    ] {
        let mut buf = Vec::new();
        clap_complete::generate(shell, &mut cmd.clone(), "ausi", &mut buf);
        files.push((format!("completions/{name}"), buf));
    }
    files.push(("man/ausi.1".to_owned(), man_page(&cmd, "ausi")));
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set() && s.get_name() != "help") {
        let name = format!("ausi-{}", sub.get_name());
        let sub = sub.clone().name(name.clone()).bin_name(name.clone()).version(env!("CARGO_PKG_VERSION"));
        files.push((format!("man/{name}.1"), man_page(&sub, &name)));
    }
    files
}

fn generate(out_dir: &Path) -> std::io::Result<Vec<String>> {
    let mut written = Vec::new();
    for (path, contents) in render() {
        let target = out_dir.join(&path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&target, contents)?;
        written.push(path);
    }
    Ok(written)
}

fn man_page(cmd: &clap::Command, name: &str) -> Vec<u8> {
    let man = clap_mangen::Man::new(cmd.clone()).title(name.to_uppercase()).section("1").manual("ausi manual");
    let mut buf = Vec::new();
    // Writing into a Vec cannot fail.
    let _ = man.render_title(&mut buf);
    let _ = man.render_name_section(&mut buf);
    let _ = man.render_synopsis_section(&mut buf);
    let _ = man.render_description_section(&mut buf);
    let _ = man.render_options_section(&mut buf);
    if cmd.has_subcommands() {
        let _ = man.render_subcommands_section(&mut buf);
    }
    buf.extend_from_slice(extra_sections().as_bytes());
    if cmd.get_version().is_some() {
        let _ = man.render_version_section(&mut buf);
    }
    buf
}

fn extra_sections() -> String {
    let mut out = String::from(".SH \"EXIT STATUS\"\n");
    for status in ExitStatus::ALL {
        out.push_str(&format!(".TP\n\\fB{}\\fR\n{}\n", status.code(), roff_escape(status.meaning())));
    }
    out.push_str(
        ".SH ENVIRONMENT\n\
         .TP\n\\fBAUSI_CONFIG\\fR\nPath of the agent configuration file (same as \\fB\\-\\-config\\fR).\n\
         .TP\n\\fBAUSI_OUTPUT\\fR\nReport format: json, table or jsonl (same as \\fB\\-\\-output\\fR).\n\
         .TP\n\\fBAUSI_SOURCE\\fR\nDirectory source for commands that read the directory (same as \\fB\\-\\-source\\fR).\n\
         .TP\n\\fBAUSI_LOG\\fR\nLog filter for stderr, e.g. \\fBausi=debug\\fR (overrides \\fB\\-v\\fR).\n\
         .TP\n\\fBAUSI_LOG_FILE\\fR\nAlso log to this file, rotated daily and above 10 MiB (same as \\fB\\-\\-log\\-file\\fR).\n\
         .SH FILES\n\
         .TP\n\\fB/etc/ausi/agent.toml\\fR\nThe agent configuration on Linux (\\fB%ProgramData%\\\\ausi\\\\agent.toml\\fR on Windows). \
         Secrets are referenced from it (\\fBkeyring:\\fR, \\fBfile:\\fR, \\fBenv:\\fR), never stored in it.\n",
    );
    out
}

fn roff_escape(text: &str) -> String {
    text.replace('\\', "\\\\").replace('-', "\\-")
}
