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
    #[serde(default)]
    pub log: LogConfig,
    /// Web analytics settings (`[analytics]`).
    #[serde(default)]
    pub analytics: tutela_analytics::AnalyticsSettings,
    /// Sites that may send analytics hits (`[[sites]]`); default: site 1, `localhost`.
    #[serde(default)]
    pub sites: Option<Vec<tutela_analytics::SiteConfig>>,
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
