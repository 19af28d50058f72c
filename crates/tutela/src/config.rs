//! Server configuration: `tutela.toml`, overridden by `TUTELA_…` environment variables, overridden
//! by command-line flags (clap reads the variables and flags; this module reads the file and merges).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::Deserialize;

/// The configuration file's contents. Every key is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Address to listen on, e.g. "127.0.0.1:8080".
    pub listen: Option<String>,
    /// Data directory (SQLite database, keys). Relative paths are relative to the config file.
    pub data_dir: Option<PathBuf>,
    /// `postgres://…` to use PostgreSQL instead of the embedded SQLite database.
    pub database_url: Option<String>,
    /// The register (`policy.toml`). Relative paths are relative to the config file.
    pub policy: Option<PathBuf>,
    /// The vault's key file [default: `<data_dir>/master.key`]. Relative paths are relative
    /// to the config file.
    pub master_key_file: Option<PathBuf>,
    #[serde(default)]
    pub log: LogConfig,
    /// Web analytics settings (`[analytics]`).
    #[serde(default)]
    pub analytics: tutela_analytics::AnalyticsSettings,
    /// Sites that may send analytics hits (`[[sites]]`); default: site 1, `localhost`.
    #[serde(default)]
    pub sites: Option<Vec<tutela_analytics::SiteConfig>>,
    #[serde(default)]
    pub retention: RetentionConfig,
    #[serde(default)]
    pub mail: MailConfig,
    #[serde(default)]
    pub rights: RightsFileConfig,
    #[serde(default)]
    pub connectors: ConnectorsConfig,
    #[serde(default)]
    pub consent: ConsentConfig,
    #[serde(default)]
    pub console: ConsoleFileConfig,
    /// HTTP connection limits (`[server]`).
    #[serde(default)]
    pub server: ServerConfig,
}

/// The `[server]` table: HTTP connection limits (see `tutela serve --help`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Time to receive a whole request head once its first byte arrived [default: "10 seconds"].
    pub header_read_timeout: Option<String>,
    /// How long an idle keep-alive connection stays open [default: "60 seconds"].
    pub keep_alive_timeout: Option<String>,
    /// Time to receive a request body [default: "60 seconds"].
    pub body_read_timeout: Option<String>,
    /// Most connections open at once [default: 4096].
    pub max_connections: Option<usize>,
}

/// The `[console]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleFileConfig {
    /// Mark console cookies `Secure` (default true). Turn off only for plain-HTTP development.
    pub secure_cookies: Option<bool>,
    /// Take the client address from `X-Forwarded-For` (default false; only behind a proxy that
    /// sets it).
    pub trust_forwarded_for: Option<bool>,
    /// The address people use to reach Tutela, e.g. "https://privacy.example.com": the base of
    /// the setup links printed by `serve` and `operators add`.
    pub public_url: Option<String>,
    /// The register purposes whose data the support role may read [default: support, hotline].
    pub support_purposes: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionConfig {
    /// How often the retention job runs, e.g. "10 minutes", "1 hour", or "off".
    pub interval: Option<String>,
}

/// The key file's name in the data directory when none is configured.
pub const DEFAULT_MASTER_KEY_FILE: &str = "master.key";
pub const DEFAULT_RETENTION_INTERVAL: &str = "10 minutes";

/// Parses an interval such as "10 minutes", "30 seconds" or "1 hour"; "off" gives None.
pub fn parse_interval(text: &str) -> anyhow::Result<Option<std::time::Duration>> {
    let t = text.trim().to_ascii_lowercase();
    if t == "off" {
        return Ok(None);
    }
    let hint = || {
        anyhow::anyhow!(
            "invalid interval {text:?}: write e.g. \"10 minutes\", \"30 seconds\", \"1 hour\" or \"off\""
        )
    };
    let mut parts = t.split_whitespace();
    let n: u64 = parts.next().and_then(|n| n.parse().ok()).ok_or_else(hint)?;
    let unit = match parts.next().ok_or_else(hint)? {
        "second" | "seconds" | "s" => 1,
        "minute" | "minutes" | "min" => 60,
        "hour" | "hours" | "h" => 3600,
        _ => return Err(hint()),
    };
    if parts.next().is_some() || n == 0 || n.saturating_mul(unit) > 7 * 24 * 3600 {
        return Err(hint());
    }
    Ok(Some(std::time::Duration::from_secs(n * unit)))
}

/// Parses a timeout such as "10 seconds", "2 minutes" or "1 hour" (not "off": every timeout
/// of the server is bounded).
pub fn parse_duration(text: &str) -> anyhow::Result<std::time::Duration> {
    match parse_interval(text) {
        Ok(Some(d)) => Ok(d),
        _ => bail!(
            "invalid duration {text:?}: write e.g. \"10 seconds\", \"2 minutes\" or \"1 hour\""
        ),
    }
}

/// `[[connectors.sql]]` and `[[connectors.webhook]]`: the systems rights requests reach.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectorsConfig {
    #[serde(default)]
    pub sql: Vec<tutela_rights::connectors::sql::SqlConfig>,
    #[serde(default)]
    pub webhook: Vec<tutela_rights::connectors::webhook::WebhookConfig>,
}

/// `[mail]`: how Tutela sends e-mail (verification codes, notices to requesters).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MailConfig {
    /// Sender address, e.g. "Nimbus DPO <dpo@nimbus.example>" [default: the register's rights e-mail].
    pub from: Option<String>,
    /// `smtp://user:pass@host:587` (STARTTLS), `smtps://…:465`, or `file:<dir>` (writes .eml
    /// files) [default: file:<data_dir>/outbox]. Prefer `TUTELA_MAIL_TRANSPORT` for passwords.
    pub transport: Option<String>,
}

/// `[rights]`: the rights engine.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RightsFileConfig {
    /// File holding the secret the platform signs identity assertions with (HMAC-SHA256).
    /// `TUTELA_RIGHTS_PLATFORM_SECRET` overrides it. Relative to the config file.
    pub platform_secret_file: Option<PathBuf>,
    /// Lifetime of an e-mailed code and link, in minutes [default: 1440].
    pub challenge_minutes: Option<i64>,
    /// Tries allowed per code [default: 5].
    pub max_attempts: Option<i64>,
    /// The register purpose under which the rights engine reads and erases vault records
    /// [default: rights_requests].
    pub vault_purpose: Option<String>,
}

/// `[consent]`: who may post consent records, and how fast.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsentConfig {
    /// Origins of the sites whose pages post choices to Tutela (`https://www.example.com`);
    /// Tutela's own origin always may. `"*"` allows any origin.
    pub allowed_origins: Option<Vec<String>>,
    /// Records accepted per minute from one client address (0: no limit) [default: 60].
    pub rate_limit: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// "text" (default) or "json".
    pub format: Option<String>,
    /// A tracing filter such as "info" or "tutela=debug,info".
    pub level: Option<String>,
}

pub const DEFAULT_CONFIG_FILE: &str = "tutela.toml";
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_DATA_DIR: &str = "./tutela-data";
const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

/// Reads the configuration file. An explicitly named file must exist; the default
/// `./tutela.toml` is optional.
pub fn read_file(explicit: Option<&Path>) -> anyhow::Result<(FileConfig, Option<PathBuf>)> {
    let (path, required) = match explicit {
        Some(p) => (p.to_path_buf(), true),
        None => (PathBuf::from(DEFAULT_CONFIG_FILE), false),
    };
    if !path.exists() {
        if required {
            bail!("the configuration file {} does not exist", path.display());
        }
        return Ok((FileConfig::default(), None));
    }
    let len = std::fs::metadata(&path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .len();
    if len > MAX_CONFIG_BYTES {
        bail!(
            "{} is larger than 1 MiB; is it the right file?",
            path.display()
        );
    }
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let mut cfg: FileConfig =
        toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    // Paths in the file are relative to the file, not to wherever tutela was started.
    let base = path.parent().unwrap_or(Path::new("."));
    cfg.data_dir = cfg.data_dir.map(|p| base.join(p));
    cfg.policy = cfg.policy.map(|p| base.join(p));
    cfg.rights.platform_secret_file = cfg.rights.platform_secret_file.map(|p| base.join(p));
    cfg.master_key_file = cfg.master_key_file.map(|p| base.join(p));
    Ok((cfg, Some(path)))
}

/// Where the register comes from.
#[derive(Debug, Clone)]
pub enum PolicySource {
    File(PathBuf),
    /// The example register compiled into the binary.
    BuiltInExample,
}

impl PolicySource {
    pub fn from_option(path: Option<PathBuf>) -> Self {
        path.map_or(PolicySource::BuiltInExample, PolicySource::File)
    }

    /// The register's text and the name used in diagnostics.
    pub fn read(&self) -> anyhow::Result<(String, String)> {
        match self {
            PolicySource::BuiltInExample => Ok((
                tutela_domain::EXAMPLE_REGISTER.to_string(),
                "examples/policy.toml (built in)".to_string(),
            )),
            PolicySource::File(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read the register {}", path.display()))?;
                Ok((text, path.display().to_string()))
            }
        }
    }
}

/// Parses a listen address, with a hint for the common mistakes.
pub fn parse_listen(text: &str) -> anyhow::Result<SocketAddr> {
    text.parse().with_context(|| {
        format!("invalid listen address {text:?}: write it as IP:PORT, e.g. 127.0.0.1:8080 or [::1]:8080")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals() {
        use std::time::Duration;
        assert_eq!(
            parse_interval("10 minutes").unwrap(),
            Some(Duration::from_secs(600))
        );
        assert_eq!(
            parse_interval(" 1 Hour ").unwrap(),
            Some(Duration::from_secs(3600))
        );
        assert_eq!(
            parse_interval("30 s").unwrap(),
            Some(Duration::from_secs(30))
        );
        assert_eq!(parse_interval("off").unwrap(), None);
        for bad in [
            "",
            "10",
            "ten minutes",
            "0 minutes",
            "10 days",
            "1 minute later",
            "9999 hours",
        ] {
            let err = parse_interval(bad).unwrap_err().to_string();
            assert!(err.contains("10 minutes"), "{bad:?}: {err}");
        }
    }
}
