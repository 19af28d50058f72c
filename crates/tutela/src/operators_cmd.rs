//! `tutela operators …`: the people who use the console.

use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::Subcommand;
use tutela_domain::operator::{self, Role};
use tutela_store::{Operator, Store};

use crate::config;
use crate::context::Context;

pub const AFTER_HELP: &str = "Roles (enforced by the server):
  admin    operators, API tokens, keys; no personal data
  dpo      all personal data, rights requests, audit log
  support  a subject's data for support purposes only
  analyst  aggregated analytics only, never personal data
admin and dpo must set up two-factor authentication (TOTP) before they reach anything.

Examples:
  tutela operators add --login dora --name 'Dora Martin' --role dpo
  tutela operators add --login sam --name 'Sam Roy' --role support --base-url https://privacy.example.com
  tutela operators list
  tutela operators disable sam
  tutela operators reset-2fa dora

`add` prints a one-time link (valid 7 days) on standard output: the new operator opens it to choose
a password. The first administrator is created through the link `tutela serve` prints at first start.";

#[derive(Subcommand, Debug)]
pub enum OperatorsCommand {
    /// Add an operator and print their one-time setup link.
    Add {
        /// Login name: 3 to 64 characters of a-z, 0-9, `.`, `_`, `-`.
        #[arg(long)]
        login: String,
        /// Full name, shown in the console.
        #[arg(long)]
        name: String,
        /// admin, dpo, support or analyst.
        #[arg(long)]
        role: Role,
        /// Address people use to reach Tutela [default: [console] public_url, or http://LISTEN].
        #[arg(long, env = "TUTELA_PUBLIC_URL", value_name = "URL")]
        base_url: Option<String>,
    },
    /// List operators (never their secrets).
    List,
    /// Disable an operator: their sessions end at once and they can no longer sign in.
    Disable { login: String },
    /// Remove an operator's second factor and recovery codes and end their sessions; they set it
    /// up again at their next sign-in (for a lost phone).
    #[command(name = "reset-2fa")]
    Reset2fa { login: String },
}

/// The base of links shown to people: the configured public URL, else `http://LISTEN` (with a
/// wildcard address replaced by `localhost`).
pub fn base_url(public_url: Option<&str>, listen: &str) -> String {
    if let Some(url) = public_url {
        return url.trim_end_matches('/').to_string();
    }
    let listen = listen
        .replace("0.0.0.0", "localhost")
        .replace("[::]", "localhost");
    format!("http://{listen}")
}

async fn find(store: &Store, login: &str) -> anyhow::Result<Operator> {
    let login = operator::normalise_login(login).map_err(|e| anyhow::anyhow!("{e}"))?;
    store.operator_by_login(&login).await?.with_context(|| {
        format!("no operator has the login {login:?}; see `tutela operators list`")
    })
}

pub fn run(cmd: OperatorsCommand, ctx: &Context) -> anyhow::Result<ExitCode> {
    Context::runtime()?.block_on(async {
        let store = ctx.open_store().await?;
        let now = jiff::Timestamp::now().as_second();
        let code = match cmd {
            OperatorsCommand::Add {
                login,
                name,
                role,
                base_url: url,
            } => {
                let login = operator::normalise_login(&login)
                    .map_err(|e| anyhow::anyhow!("--login: {e}"))?;
                let name = name.trim().to_string();
                if name.is_empty() || name.chars().count() > 100 {
                    bail!("--name must be 1 to 100 characters");
                }
                if store.operator_by_login(&login).await?.is_some() {
                    bail!("the login {login:?} is taken");
                }
                let id = tutela_crypto::session::new_id()?;
                store
                    .insert_operator(&Operator {
                        id: id.clone(),
                        login: login.clone(),
                        display_name: name,
                        role: role.as_str().to_string(),
                        password_hash: None,
                        totp_secret: None,
                        totp_last_step: None,
                        language: None,
                        created_at: now,
                        password_changed_at: None,
                        disabled_at: None,
                    })
                    .await
                    .context("cannot store the operator")?;
                let token = tutela_crypto::session::new_setup_token()?;
                store
                    .insert_setup_token(
                        &token.hash,
                        Some(&id),
                        now,
                        now + tutela_http::console::INVITATION_SECS,
                    )
                    .await?;
                let detail = format!("{} by the command line", role.as_str());
                store
                    .record_operator_event(now, Some(&id), "operator_created", Some(&detail))
                    .await?;
                let listen = ctx
                    .file
                    .listen
                    .clone()
                    .unwrap_or_else(|| config::DEFAULT_LISTEN.to_string());
                let base = base_url(url.as_deref().or(ctx.file.console.public_url.as_deref()), &listen);
                eprintln!(
                    "added {login} ({role}); send them this one-time link (valid 7 days, not shown again):"
                );
                println!("{base}/console/setup?token={}", token.secret.as_str());
                ExitCode::SUCCESS
            }
            OperatorsCommand::List => {
                let all = store.operators().await?;
                if all.is_empty() {
                    eprintln!(
                        "no operators; `tutela serve` prints a link that creates the first administrator"
                    );
                }
                println!(
                    "{:<24}  {:<8}  {:<4}  {:<9}  {:<16}  NAME",
                    "LOGIN", "ROLE", "2FA", "STATE", "CREATED"
                );
                for o in all {
                    let state = if o.is_disabled() {
                        "disabled"
                    } else if o.password_hash.is_none() {
                        "invited"
                    } else {
                        "active"
                    };
                    println!(
                        "{:<24}  {:<8}  {:<4}  {:<9}  {:<16}  {}",
                        o.login,
                        o.role,
                        if o.totp_secret.is_some() { "yes" } else { "no" },
                        state,
                        jiff::Timestamp::from_second(o.created_at)
                            .map(|t| t.strftime("%Y-%m-%d %H:%M").to_string())
                            .unwrap_or_default(),
                        o.display_name
                    );
                }
                ExitCode::SUCCESS
            }
            OperatorsCommand::Disable { login } => {
                let op = find(&store, &login).await?;
                if store.disable_operator(&op.id, now).await? {
                    store
                        .record_operator_event(now, Some(&op.id), "operator_disabled", Some("by the command line"))
                        .await?;
                    eprintln!("disabled {}; their sessions ended", op.login);
                    ExitCode::SUCCESS
                } else {
                    eprintln!("{} was already disabled", op.login);
                    ExitCode::FAILURE
                }
            }
            OperatorsCommand::Reset2fa { login } => {
                let op = find(&store, &login).await?;
                store.reset_operator_totp(&op.id).await?;
                store
                    .record_operator_event(now, Some(&op.id), "totp_reset", Some("by the command line"))
                    .await?;
                eprintln!(
                    "removed the second factor of {}; their sessions ended, and they set it up again at the next sign-in",
                    op.login
                );
                ExitCode::SUCCESS
            }
        };
        store.close().await;
        Ok(code)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls() {
        assert_eq!(
            base_url(Some("https://x.example/"), "0.0.0.0:1"),
            "https://x.example"
        );
        assert_eq!(base_url(None, "0.0.0.0:8080"), "http://localhost:8080");
        assert_eq!(base_url(None, "127.0.0.1:9"), "http://127.0.0.1:9");
    }
}
