//! The vault's key file (`TUTELA_MASTER_KEY_FILE`, default `<data_dir>/master.key`): loading,
//! first-start generation (mode 0600), and `tutela keys status|rotate`.
//!
//! # Format
//! ```text
//! # comments
//! index-root <64 hex digits>   stable for ever: blind indexes and audit commitments
//! master <64 hex digits>       wraps the subject keys; replaced by `tutela keys rotate`
//! previous <64 hex digits>     only while a rotation is unfinished
//! ```
//! A file holding only 64 hex digits (e.g. made with `openssl rand -hex 32`) is accepted: that
//! one key is then both the index root and the master key; the first rotation writes the
//! format above, keeping it as the index root.

use std::fs::{File, OpenOptions};
use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::Subcommand;
use tutela_crypto::{Keyring, MasterKey, Zeroizing};
use tutela_store::Store;
use tutela_vault::{Actor, Vault, VaultKeys};

use crate::context::Context;
use crate::progress::Progress;

/// Key files larger than this are refused.
const MAX_KEY_FILE: u64 = 16 * 1024;

const HEADER: &str = "\
# Tutela vault keys. Keep this file secret (mode 0600) and back it up apart from the database:
# see README.md, \"Keys and backups\". Without it every personal record in the vault is
# unreadable and no subject can be found again. `index-root` never changes; `master` is
# replaced by `tutela keys rotate`.
";

pub const AFTER_HELP: &str = "Examples:
  cp -p /var/lib/tutela/master.key /backup/master.key.$(date +%F)   # before rotating
  tutela keys status
  tutela keys rotate
  TUTELA_MASTER_KEY_FILE=/etc/tutela/master.key tutela keys rotate

Rotation re-wraps every subject key under a new master key without re-encrypting any record,
then removes the old master key from the key file. Before rotating, back up the key file: that
copy is the only way to read database backups made before the rotation; keep it as long as you
keep those backups, then destroy it. After rotating, back up the new key file and copy it to
every node, and restart every node with it. A node still running with the old key file refuses
vault writes that need the master key (HTTP 503) until it is restarted: nothing is lost.";

#[derive(Subcommand, Debug)]
pub enum KeysCommand {
    /// Show the key file, the key ids and how many subject keys each master key wrapped.
    #[command(after_help = AFTER_HELP)]
    Status,
    /// Replace the master key and re-wrap every subject key under it (records are untouched).
    #[command(after_help = AFTER_HELP)]
    Rotate,
}

/// The keys of the key file.
pub struct KeyFile {
    pub index_root: MasterKey,
    pub master: MasterKey,
    pub previous: Vec<MasterKey>,
}

fn copy(k: &MasterKey) -> MasterKey {
    // MasterKey is deliberately not Clone; go through its (zeroized) text form.
    MasterKey::from_env_value(&k.to_file_text()).expect("a key's own text form parses")
}

impl KeyFile {
    pub fn parse(text: &str) -> anyhow::Result<KeyFile> {
        let trimmed = text.trim();
        if !trimmed.contains(char::is_whitespace) && !trimmed.starts_with('#') {
            let k = MasterKey::from_env_value(trimmed)
                .context("the key file holds neither 64 hex digits nor `name value` lines")?;
            return Ok(KeyFile {
                index_root: copy(&k),
                master: k,
                previous: Vec::new(),
            });
        }
        let (mut root, mut master, mut previous) = (None, None, Vec::new());
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (name, value) = line
                .split_once(char::is_whitespace)
                .with_context(|| format!("line {}: expected `name value`", n + 1))?;
            if !["index-root", "master", "previous"].contains(&name) {
                bail!(
                    "line {}: unknown entry `{}` (expected index-root, master or previous)",
                    n + 1,
                    name.chars().take(32).collect::<String>()
                );
            }
            let key = MasterKey::from_env_value(value.trim())
                .map_err(|e| anyhow::anyhow!("line {}: {e}", n + 1))?;
            match name {
                "index-root" if root.is_none() => root = Some(key),
                "master" if master.is_none() => master = Some(key),
                "previous" => previous.push(key),
                "index-root" | "master" => bail!("line {}: `{name}` is given twice", n + 1),
                other => bail!(
                    "line {}: unknown entry `{}` (expected index-root, master or previous)",
                    n + 1,
                    other.chars().take(32).collect::<String>()
                ),
            }
        }
        match (root, master) {
            (Some(index_root), Some(master)) => Ok(KeyFile {
                index_root,
                master,
                previous,
            }),
            _ => bail!("the key file needs an `index-root` and a `master` line"),
        }
    }

    pub fn to_text(&self) -> Zeroizing<String> {
        let mut s = Zeroizing::new(String::from(HEADER));
        let mut line = |name: &str, k: &MasterKey| {
            s.push_str(name);
            s.push(' ');
            s.push_str(&k.to_file_text());
        };
        line("index-root", &self.index_root);
        line("master", &self.master);
        for p in &self.previous {
            line("previous", p);
        }
        s
    }

    pub fn generate() -> anyhow::Result<KeyFile> {
        Ok(KeyFile {
            index_root: MasterKey::generate()?,
            master: MasterKey::generate()?,
            previous: Vec::new(),
        })
    }

    /// Reads a key file, refusing one that group or others may read.
    pub fn load(path: &Path) -> anyhow::Result<KeyFile> {
        let file = File::open(path)
            .with_context(|| format!("cannot open the key file {}", path.display()))?;
        let meta = file.metadata()?;
        if !meta.is_file() {
            bail!("the key file {} is not a regular file", path.display());
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                bail!(
                    "the key file {} is readable by group or others (mode {mode:04o}); restrict it with `chmod 600 {}`",
                    path.display(),
                    path.display()
                );
            }
        }
        let mut text = Zeroizing::new(String::new());
        file.take(MAX_KEY_FILE + 1)
            .read_to_string(&mut text)
            .with_context(|| format!("cannot read the key file {}", path.display()))?;
        if text.len() as u64 > MAX_KEY_FILE {
            bail!(
                "the key file {} is too large to be a key file",
                path.display()
            );
        }
        Self::parse(&text).with_context(|| format!("invalid key file {}", path.display()))
    }

    /// Writes the file atomically with mode 0600: a temporary file in the same directory is
    /// written and synced, then renamed over `path` (or linked, when `replace` is false, so
    /// that an existing file is never overwritten).
    pub fn write(&self, path: &Path, replace: bool) -> anyhow::Result<()> {
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        // `create_new` below refuses an existing name, so a collision fails instead of racing.
        let tmp = dir.join(format!(
            ".{}.{}.{nanos}.tmp",
            path.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            std::process::id()
        ));
        let result = (|| -> std::io::Result<()> {
            let mut options = OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                options.mode(0o600);
            }
            let mut f = options.open(&tmp)?;
            f.write_all(self.to_text().as_bytes())?;
            f.sync_all()?;
            drop(f);
            if replace {
                std::fs::rename(&tmp, path)?;
            } else {
                std::fs::hard_link(&tmp, path)?;
            }
            Ok(())
        })();
        let _ = std::fs::remove_file(&tmp);
        if let Ok(d) = File::open(&dir) {
            let _ = d.sync_all();
        }
        result.with_context(|| format!("cannot write the key file {}", path.display()))
    }

    pub fn vault_keys(&self) -> anyhow::Result<VaultKeys> {
        let ring = Keyring {
            current: copy(&self.master),
            previous: self.previous.iter().map(copy).collect(),
        };
        Ok(VaultKeys::new(ring, &self.index_root)?)
    }
}

/// Loads the key file, or creates it on first start. Refuses to create one when the vault
/// already holds subjects (their keys would be lost), and checks that every master key that
/// wrapped a subject key is in the file.
pub async fn load_or_create(path: &Path, store: &Store) -> anyhow::Result<KeyFile> {
    let counts = store.vault_key_counts().await?;
    let keys = if path.exists() {
        KeyFile::load(path)?
    } else {
        let held: u64 = counts.values().sum();
        if held > 0 {
            bail!(
                "the key file {} does not exist but the vault holds {held} subjects: restore the key \
                 file from your backup (or point TUTELA_MASTER_KEY_FILE at it); a new key could not \
                 read them",
                path.display()
            );
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            tutela_store::create_private_dir(dir)?;
        }
        let keys = KeyFile::generate()?;
        keys.write(path, false)?;
        tracing::warn!(
            path = %path.display(),
            master_key = %keys.master.id(),
            "generated the vault's key file: BACK IT UP NOW, apart from the database; without it \
             the vault's personal data cannot be read (see README, \"Keys and backups\")"
        );
        keys
    };
    let known: Vec<String> = std::iter::once(&keys.master)
        .chain(keys.previous.iter())
        .map(|k| k.id().to_hex())
        .collect();
    for (id, n) in &counts {
        if !known.contains(id) {
            bail!(
                "{n} subject keys were wrapped by master key {id}, which the key file {} does not hold: \
                 is it the right key file? (If another node ran `tutela keys rotate`, copy its new key \
                 file here.)",
                path.display()
            );
        }
    }
    check_wrapping_key(&keys, path, store).await?;
    Ok(keys)
}

/// Checks that the database wraps new subject keys with the key file's master key (recording
/// it when the database has none yet: first start after migration 0015). Refuses a key file
/// that a rotation left behind, and one whose rotation is unfinished.
async fn check_wrapping_key(keys: &KeyFile, path: &Path, store: &Store) -> anyhow::Result<()> {
    let master = keys.master.id().to_hex();
    let database = match store.vault_wrapping_key().await? {
        Some(k) => k,
        None => {
            let now = jiff::Timestamp::now().as_second();
            store.vault_switch_wrapping_key(&[], &master, now).await?
        }
    };
    if database == master {
        return Ok(());
    }
    if keys.previous.iter().any(|k| k.id().to_hex() == database) {
        bail!(
            "a rotation of the master key is unfinished: the key file {} holds the new master key \
             {master}, but the database still wraps subject keys with {database}. Run `tutela keys \
             rotate` to finish it, then start Tutela",
            path.display()
        );
    }
    bail!(
        "the database wraps subject keys with master key {database}, but the master key of the key \
         file {} is {master}: the key was rotated (`tutela keys rotate`, perhaps on another node) and \
         this key file is out of date. Copy the current key file to this node and start again",
        path.display()
    );
}

/// Opens the vault: the store, the register and the key file (created on first start).
pub async fn open_vault(ctx: &Context, store: &Store) -> anyhow::Result<Vault> {
    let register = crate::policy_cmd::load(&ctx.policy)?;
    let keys = load_or_create(&ctx.master_key_file, store).await?;
    Ok(Vault::new(
        store.clone(),
        std::sync::Arc::new(register),
        keys.vault_keys()?,
    ))
}

/// Who runs a CLI command, for the audit log.
pub fn operator() -> Actor {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".into());
    let user: String = user
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "._-".contains(*c))
        .take(64)
        .collect();
    Actor::new(format!("operator:{user}"))
}

pub fn run(cmd: KeysCommand, ctx: &Context) -> anyhow::Result<ExitCode> {
    Context::runtime()?.block_on(async {
        let store = ctx.open_store().await?;
        let path = &ctx.master_key_file;
        let result = match cmd {
            KeysCommand::Status => status(&store, path).await,
            KeysCommand::Rotate => rotate(ctx, &store, path).await,
        };
        store.close().await;
        result
    })
}

async fn status(store: &Store, path: &Path) -> anyhow::Result<ExitCode> {
    let counts = store.vault_key_counts().await?;
    let database = store.vault_wrapping_key().await?;
    if !path.exists() {
        let held: u64 = counts.values().sum();
        if held == 0 {
            println!(
                "key file: {} (absent: the vault is empty, so the first `tutela serve` creates it)",
                path.display()
            );
            return Ok(ExitCode::SUCCESS);
        }
        println!(
            "key file: {} is MISSING, but the vault holds {held} subjects (master keys: {}).\n\
             Tutela will not start without it and will not create a new one (it could not read \
             them): restore the key file from your backup, or point TUTELA_MASTER_KEY_FILE at it.",
            path.display(),
            counts.keys().cloned().collect::<Vec<_>>().join(", ")
        );
        return Ok(ExitCode::FAILURE);
    }
    let keys = KeyFile::load(path)?;
    println!("key file: {}", path.display());
    println!(
        "index root: {} (stable: blind indexes, audit commitments)",
        keys.index_root.id()
    );
    let show = |label: &str, k: &MasterKey| {
        let n = counts.get(&k.id().to_hex()).copied().unwrap_or(0);
        println!("{label}: {} ({n} subject keys)", k.id());
    };
    show("master", &keys.master);
    for p in &keys.previous {
        show("previous", p);
    }
    let master = keys.master.id().to_hex();
    match &database {
        None => println!(
            "database: no wrapping key recorded yet (the next `tutela serve` records {master})"
        ),
        Some(d) => println!("database: wraps new subject keys with master key {d}"),
    }
    if !keys.previous.is_empty() {
        println!("a rotation is unfinished: run `tutela keys rotate` to complete it");
    } else if database.as_ref().is_some_and(|d| *d != master) {
        println!(
            "this key file is OUT OF DATE: the database uses another master key (rotated elsewhere?); \
             copy the current key file here"
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

async fn rotate(ctx: &Context, store: &Store, path: &Path) -> anyhow::Result<ExitCode> {
    if !path.exists() {
        let held: u64 = store.vault_key_counts().await?.values().sum();
        if held > 0 {
            bail!(
                "there is no key file at {} but the vault holds {held} subjects: restore the key \
                 file from your backup (or point TUTELA_MASTER_KEY_FILE at it) before rotating",
                path.display()
            );
        }
        bail!(
            "there is no key file at {} to rotate (it is created on the first `tutela serve`)",
            path.display()
        );
    }
    let register = std::sync::Arc::new(crate::policy_cmd::load(&ctx.policy)?);
    let mut keys = KeyFile::load(path)?;
    let database = store.vault_wrapping_key().await?;
    if keys.previous.is_empty() {
        let old_id = keys.master.id().to_hex();
        if let Some(d) = database.as_ref().filter(|d| **d != old_id) {
            bail!(
                "the database wraps subject keys with master key {d}, not with this key file's \
                 {old_id}: the key was already rotated (perhaps on another node) and {} is out of \
                 date. Copy the current key file here instead of rotating",
                path.display()
            );
        }
        // Step 1: the new key goes into the file first, the old one kept as `previous`, so an
        // interruption loses nothing: running the command again finishes the job. Then the
        // database is switched to it: from then on it refuses new subjects wrapped by the old
        // key, which processes still running with the old file would otherwise write.
        let new = MasterKey::generate()?;
        eprintln!(
            "new master key {} replaces {old_id}\n\
             (the old key leaves {} at the end: make sure you backed the file up before, if you \
             keep database backups made before this rotation)",
            new.id(),
            path.display()
        );
        let old = std::mem::replace(&mut keys.master, new);
        keys.previous.push(old);
        keys.write(path, true)?;
        let vault = Vault::new(store.clone(), register.clone(), keys.vault_keys()?);
        if let Err(e) = vault.switch_wrapping_key().await {
            // Another rotation won the race (or the database failed): put the file back as it
            // was, since the new key wrapped nothing — unless the switch did commit (an error
            // after the commit): then the file must keep the new key, and running the command
            // again finishes the rotation.
            // The file goes back only when the database positively shows it was not switched;
            // when that cannot be told (the database is unreachable), the file keeps both keys,
            // which is always safe: running the command again finishes the rotation.
            let new_id = keys.master.id().to_hex();
            match store.vault_wrapping_key().await {
                Ok(current) if current.as_deref() != Some(new_id.as_str()) => {
                    let mut back = keys;
                    back.master = back.previous.pop().expect("pushed above");
                    back.write(path, true)?;
                    return Err(e)
                        .context("the rotation was not started; the key file is unchanged");
                }
                _ => {
                    return Err(e).context(
                        "the rotation stopped after the new master key was written to the key file \
                         (which still holds the old one): run `tutela keys rotate` again to finish it",
                    );
                }
            }
        }
    } else {
        eprintln!(
            "finishing the unfinished rotation to master key {}",
            keys.master.id()
        );
    }
    let vault = Vault::new(store.clone(), register, keys.vault_keys()?);
    // Step 2: re-wrap until no subject key is wrapped by an old key (the database is switched
    // first if step 1 was interrupted before it).
    let mut bar = Progress::new("re-wrapping subject keys", std::io::stderr().is_terminal());
    let n = vault
        .rewrap_subject_keys(&operator(), &mut |d, t| bar.update(d, t))
        .await?;
    bar.finish();
    // Step 3: the old keys are no longer needed by this database.
    let old: Vec<String> = keys.previous.iter().map(|k| k.id().to_hex()).collect();
    keys.previous.clear();
    keys.write(path, true)?;
    eprintln!(
        "re-wrapped {n} subject keys; {} now holds only master key {} (removed: {}).\n\
         Back up the new key file now, copy it to every node and restart them: a node still \
         running with the old key file answers vault writes with 503 until it is restarted.\n\
         Database backups made before this rotation can be read only with the old key file: keep \
         the copy you made before rotating as long as you keep those backups, then destroy it.",
        path.display(),
        keys.master.id(),
        old.join(", ")
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_round_trip_and_errors_are_clear() {
        let k = KeyFile::generate().unwrap();
        let text = k.to_text();
        let back = KeyFile::parse(&text).unwrap();
        assert!(back.index_root == k.index_root && back.master == k.master);
        assert!(back.previous.is_empty());
        assert!(text.contains("back it up"));

        let single = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n";
        let s = KeyFile::parse(single).unwrap();
        assert!(s.index_root == s.master);

        for (bad, why) in [
            ("master 00", "line 1"),
            ("index-root zz", "line 1"),
            ("color blue", "unknown entry `color`"),
            ("a\nb", "expected `name value`"),
            (&format!("{}master {}", "", single), "index-root"),
            (
                &format!("# c\nindex-root {single}master {single}master {single}"),
                "twice",
            ),
            (
                &format!("index-root {single}master {single}mystery {single}"),
                "unknown entry",
            ),
        ] {
            let err = format!("{:#}", KeyFile::parse(bad).err().unwrap());
            assert!(err.contains(why), "{bad:?}: {err}");
            assert!(!err.contains("0001020304"), "the error echoes a key: {err}");
        }
    }

    #[test]
    fn write_is_private_and_never_overwrites_unless_replacing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        let k = KeyFile::generate().unwrap();
        k.write(&path, false).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        assert!(KeyFile::generate().unwrap().write(&path, false).is_err());
        assert!(KeyFile::load(&path).unwrap().master == k.master);
        let k2 = KeyFile::generate().unwrap();
        k2.write(&path, true).unwrap();
        assert!(KeyFile::load(&path).unwrap().master == k2.master);
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temporary file left"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            let err = format!("{:#}", KeyFile::load(&path).err().unwrap());
            assert!(err.contains("chmod 600"), "{err}");
        }
    }
}
