//! `tutela tokens …`: API tokens for the platform and for scripts.

use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::Subcommand;
use tutela_domain::register::Period;
use tutela_domain::scope::Scope;
use tutela_store::ApiToken;

use crate::context::Context;

pub const AFTER_HELP: &str = "Scopes: vault:read, vault:write, analytics:read, analytics:track, consent:read,
rights:read, rights:write, audit:read, admin (everything).

Examples:
  tutela tokens create --name billing-service --scope vault:read --scope vault:write --expires '90 days'
  tutela tokens list
  tutela tokens revoke 3f2a9c0d1e2b4a5c

The token is printed once, on standard output; only a hash of its secret is stored.";

/// What `tokens create --help` says of the scopes (a test checks it names every scope).
const SCOPES_HELP: &str = "Scopes (repeat --scope for several):
  vault:read       read a subject's records in the vault (every read is audited)
  vault:write      write, update and erase records, and report anchor events
  analytics:read   read analytics reports
  analytics:track  send hits with the overrides reserved to trusted senders (cip, cdt)
  consent:read     read consent records and export proof of consent
  rights:read      read rights requests
  rights:write     file and handle rights requests
  audit:read       read and verify the audit log
  admin            everything above

Example:
  tutela tokens create --name billing-service --scope vault:read --scope vault:write --expires '90 days'";

#[derive(Subcommand, Debug)]
pub enum TokensCommand {
    /// Create a token and print it once.
    #[command(after_help = SCOPES_HELP)]
    Create {
        /// What the token is for (shown in listings and audit entries).
        #[arg(long)]
        name: String,
        /// A permission to grant; repeat for several.
        #[arg(long = "scope", required = true, value_name = "SCOPE")]
        scopes: Vec<Scope>,
        /// Validity, e.g. "90 days" or "1 year" [default: no expiry].
        #[arg(long, value_name = "DURATION")]
        expires: Option<String>,
    },
    /// List tokens (never their secrets).
    List,
    /// Revoke a token by its id (the part after `tutela_`, before the second `_`).
    Revoke { id: String },
}

pub fn run(cmd: TokensCommand, ctx: &Context) -> anyhow::Result<ExitCode> {
    Context::runtime()?.block_on(async {
        let store = ctx.open_store().await?;
        let now = jiff::Timestamp::now();
        let code = match cmd {
            TokensCommand::Create {
                name,
                scopes,
                expires,
            } => {
                let name = name.trim().to_string();
                if name.is_empty() || name.len() > 200 {
                    bail!("--name must be 1 to 200 characters");
                }
                let expires_at = match expires {
                    None => None,
                    Some(text) => {
                        let period = Period::parse(&text);
                        if !period.is_valid() {
                            bail!("--expires {text:?} is not a duration: write e.g. \"90 days\" or \"1 year\"");
                        }
                        Some(tutela_domain::retention::add_period(now, &period)?.as_second())
                    }
                };
                let new = tutela_crypto::token::new_token()?;
                let mut scope_names: Vec<String> = scopes.iter().map(|s| s.to_string()).collect();
                scope_names.sort();
                scope_names.dedup();
                store
                    .insert_api_token(&ApiToken {
                        id: new.id.clone(),
                        name,
                        scopes: scope_names.clone(),
                        secret_hash: new.hash.to_vec(),
                        created_at: now.as_second(),
                        expires_at,
                        revoked_at: None,
                        last_used_at: None,
                    })
                    .await
                    .context("cannot store the token")?;
                eprintln!(
                    "created token {} with scopes {}; store it now, it is not shown again:",
                    new.id,
                    scope_names.join(" ")
                );
                println!("{}", new.token.as_str());
                ExitCode::SUCCESS
            }
            TokensCommand::List => {
                let tokens = store.api_tokens().await?;
                if tokens.is_empty() {
                    eprintln!("no tokens; create one with `tutela tokens create`");
                }
                println!("{:<16}  {:<8}  {:<20}  {:<20}  NAME / SCOPES", "ID", "STATE", "CREATED", "EXPIRES");
                for t in tokens {
                    let state = if t.revoked_at.is_some() {
                        "revoked"
                    } else if t.is_active(now.as_second()) {
                        "active"
                    } else {
                        "expired"
                    };
                    println!(
                        "{:<16}  {:<8}  {:<20}  {:<20}  {} [{}]",
                        t.id,
                        state,
                        fmt_time(Some(t.created_at)),
                        fmt_time(t.expires_at),
                        t.name,
                        t.scopes.join(" ")
                    );
                }
                ExitCode::SUCCESS
            }
            TokensCommand::Revoke { id } => {
                if store.revoke_api_token(&id, now.as_second()).await? {
                    eprintln!("revoked token {id}");
                    ExitCode::SUCCESS
                } else {
                    eprintln!("no active token has the id {id:?}");
                    ExitCode::FAILURE
                }
            }
        };
        store.close().await;
        Ok(code)
    })
}

fn fmt_time(t: Option<i64>) -> String {
    t.and_then(|s| jiff::Timestamp::from_second(s).ok())
        .map(|ts| ts.strftime("%Y-%m-%d %H:%M").to_string())
        .unwrap_or_else(|| "-".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_create_help_names_every_scope() {
        for scope in Scope::ALL {
            let line = format!("\n  {} ", scope.as_str());
            assert!(SCOPES_HELP.contains(&line), "{scope} is missing");
        }
        let listed = SCOPES_HELP
            .lines()
            .filter(|l| l.starts_with("  ") && !l.contains("tutela"))
            .count();
        assert_eq!(listed, Scope::ALL.len());
    }
}
