//! What every command shares: the merged configuration and how to open the store.

use std::path::PathBuf;

use anyhow::Context as _;
use tutela_store::Store;

use crate::config::{self, FileConfig, PolicySource};

/// Configuration after merging flags, environment and file.
pub struct Context {
    pub file: FileConfig,
    pub policy: PolicySource,
    pub data_dir: PathBuf,
    pub database_url: Option<String>,
    /// The vault's key file.
    pub master_key_file: PathBuf,
}

impl Context {
    pub fn new(
        mut file: FileConfig,
        policy: Option<PathBuf>,
        data_dir: Option<PathBuf>,
        database_url: Option<String>,
        master_key_file: Option<PathBuf>,
    ) -> Self {
        let policy = PolicySource::from_option(policy.or(file.policy.take()));
        let data_dir = data_dir
            .or(file.data_dir.take())
            .unwrap_or_else(|| PathBuf::from(config::DEFAULT_DATA_DIR));
        let database_url = database_url.or(file.database_url.take());
        let master_key_file = master_key_file
            .or(file.master_key_file.take())
            .unwrap_or_else(|| data_dir.join(config::DEFAULT_MASTER_KEY_FILE));
        Context {
            file,
            policy,
            data_dir,
            database_url,
            master_key_file,
        }
    }

    /// Opens the configured database (PostgreSQL when a URL is set, else SQLite in the data
    /// directory) and applies pending migrations.
    pub async fn open_store(&self) -> anyhow::Result<Store> {
        match &self.database_url {
            Some(url) => Store::open_url(url)
                .await
                .context("cannot open the database given by --database-url"),
            None => Store::open_data_dir(&self.data_dir).await.with_context(|| {
                format!("cannot open the database in {}", self.data_dir.display())
            }),
        }
    }

    /// A single-threaded runtime for short commands.
    pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")
    }
}
