//! `tutela policy …`: check, render and export the register.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Subcommand, ValueEnum};
use tutela_domain::notice::{self, NoticeContext};
use tutela_domain::{Register, ropa};

use crate::config::PolicySource;

#[derive(Subcommand, Debug)]
pub enum PolicyCommand {
    /// Validate a register and report every problem at once, with file, line and a hint.
    ///
    /// Exits 0 when the register is valid (warnings are printed but do not fail), 1 otherwise.
    #[command(
        after_help = "Examples:\n  tutela policy check policy.toml\n  tutela policy check          # the configured register"
    )]
    Check {
        /// The register to check [default: --policy, the config file's, or the built-in example].
        file: Option<PathBuf>,
    },
    /// Render the privacy notice from the register, as HTML or Markdown.
    ///
    /// The "last updated" date is the date of the register's newest revision.
    #[command(
        after_help = "Examples:\n  tutela policy render --format html --lang en > privacy.html\n  tutela policy render --format md --lang fr policy.toml"
    )]
    Render {
        #[arg(long, value_enum, default_value_t = NoticeFormat::Html)]
        format: NoticeFormat,
        /// Language of the notice (one of the register's languages) [default: the register's default].
        #[arg(long)]
        lang: Option<String>,
        /// Write to this file instead of standard output.
        #[arg(long, short)]
        output: Option<PathBuf>,
        file: Option<PathBuf>,
    },
    /// Export the record of processing activities (GDPR art. 30) as CSV or JSON.
    #[command(
        after_help = "Examples:\n  tutela policy ropa --format csv > ropa.csv\n  tutela policy ropa --format json --lang fr"
    )]
    Ropa {
        #[arg(long, value_enum, default_value_t = RopaFormat::Csv)]
        format: RopaFormat,
        /// Language of the CSV's texts [default: the register's default].
        #[arg(long)]
        lang: Option<String>,
        #[arg(long, short)]
        output: Option<PathBuf>,
        file: Option<PathBuf>,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum NoticeFormat {
    Html,
    Md,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum RopaFormat {
    Csv,
    Json,
}

pub fn run(cmd: PolicyCommand, configured: &PolicySource) -> anyhow::Result<ExitCode> {
    let source =
        |file: Option<PathBuf>| file.map_or_else(|| configured.clone(), PolicySource::File);
    match cmd {
        PolicyCommand::Check { file } => {
            let (text, name) = source(file).read()?;
            let (register, diagnostics) = tutela_domain::validate::check(&text, &name);
            eprint!("{diagnostics}");
            match register {
                Some(reg) if !diagnostics.has_errors() => {
                    println!(
                        "{name}: valid — {} purposes, {} categories of data, {} recipients, {} revisions",
                        reg.purposes.len(),
                        reg.categories.len(),
                        reg.recipients.len(),
                        reg.revisions.len()
                    );
                    Ok(ExitCode::SUCCESS)
                }
                _ => {
                    let errors = diagnostics.errors().count();
                    eprintln!(
                        "{name}: {errors} problem{} found",
                        if errors == 1 { "" } else { "s" }
                    );
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        PolicyCommand::Render {
            format,
            lang,
            output,
            file,
        } => {
            let reg = load(&source(file))?;
            let lang = pick_language(&reg, lang)?;
            let last_updated = last_updated(&reg);
            let ctx = NoticeContext {
                lang: &lang,
                last_updated,
                base_path: "",
                rights_form: None,
            };
            let body = match format {
                NoticeFormat::Html => notice::render_html(&reg, &ctx),
                NoticeFormat::Md => notice::render_markdown(&reg, &ctx),
            };
            write_output(output, body.as_bytes())
        }
        PolicyCommand::Ropa {
            format,
            lang,
            output,
            file,
        } => {
            let reg = load(&source(file))?;
            let lang = pick_language(&reg, lang)?;
            let body = match format {
                RopaFormat::Csv => ropa::ropa_csv(&reg, &lang),
                RopaFormat::Json => {
                    let mut s = serde_json::to_string_pretty(&ropa::ropa_json(&reg))?;
                    s.push('\n');
                    s
                }
            };
            write_output(output, body.as_bytes())
        }
    }
}

/// Loads and validates a register; on failure the error lists every problem.
pub fn load(source: &PolicySource) -> anyhow::Result<Register> {
    let (text, name) = source.read()?;
    tutela_domain::load(&text, &name).map_err(|d| {
        anyhow::anyhow!(
            "the register is not valid ({} problems):\n{d}run `tutela policy check` for details",
            d.errors().count()
        )
    })
}

/// Loads and validates the register, keeping its warnings (shown in the console).
pub fn load_with_warnings(
    source: &PolicySource,
) -> anyhow::Result<(Register, Vec<tutela_domain::Diagnostic>)> {
    let (text, name) = source.read()?;
    match tutela_domain::validate::check(&text, &name) {
        (Some(register), diagnostics) if !diagnostics.has_errors() => {
            Ok((register, diagnostics.warnings().cloned().collect()))
        }
        (_, d) => Err(anyhow::anyhow!(
            "the register is not valid ({} problems):\n{d}run `tutela policy check` for details",
            d.errors().count()
        )),
    }
}

fn pick_language(reg: &Register, lang: Option<String>) -> anyhow::Result<String> {
    let lang = lang.unwrap_or_else(|| reg.notice.default_language.clone());
    if !reg.notice.languages.contains(&lang) {
        anyhow::bail!(
            "the register is not published in {lang:?}; its languages are: {}",
            reg.notice.languages.join(", ")
        );
    }
    Ok(lang)
}

/// Outside the server there is no stored version history: the newest revision's date stands in.
fn last_updated(reg: &Register) -> jiff::civil::Date {
    reg.latest_revision()
        .and_then(|r| r.date.parse().ok())
        .unwrap_or_else(|| {
            jiff::Timestamp::now()
                .to_zoned_datetime(jiff::tz::TimeZone::UTC)
                .date()
        })
}

fn write_output(output: Option<PathBuf>, bytes: &[u8]) -> anyhow::Result<ExitCode> {
    match output {
        Some(path) => std::fs::write(&path, bytes)
            .with_context(|| format!("cannot write {}", path.display()))?,
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(bytes)?;
            out.flush()?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
