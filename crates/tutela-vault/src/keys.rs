//! The vault's keys: a rotating keyring that wraps subject keys, and a stable *index root* from
//! which the blind-index and audit-commitment keys are derived.
//!
//! Why two roots: identifiers are never stored in clear, so blind indexes cannot be recomputed
//! after a rotation; and audit commitments must keep matching old entries. Both therefore come
//! from the index root, which never rotates. Rotation only changes the key-wrapping key, and
//! re-wrapping the 81-byte wrapped keys is enough: sealed records are untouched.

use std::fmt;

use tutela_crypto::{
    BlindIndexer, KeyId, Keyring, MasterKey, SubKey, SubKeyPurpose, SubjectKey, Zeroizing,
    commit_subject, wrap_subject_key,
};

use crate::Result;

/// Key material of the vault. Zeroized on drop (every part is), never printed.
pub struct VaultKeys {
    ring: Keyring,
    /// Key-wrapping sub-keys of the keyring's keys, current first.
    keks: Vec<SubKey>,
    indexer: BlindIndexer,
    audit_key: SubKey,
    /// Seals the console operators' TOTP secrets. From the index root, like the blind-index
    /// key, so a master-key rotation does not make the secrets unreadable.
    operator_key: SubjectKey,
    index_root_id: KeyId,
}

const OPERATOR_SECRET_AAD: &[u8] = b"tutela/operator-secret/v1\0";

fn operator_aad(operator_id: &str) -> Vec<u8> {
    let mut aad = OPERATOR_SECRET_AAD.to_vec();
    aad.extend_from_slice(operator_id.as_bytes());
    aad
}

impl VaultKeys {
    /// Keys from a keyring (current master key plus those still needed to unwrap) and the
    /// stable index root.
    pub fn new(ring: Keyring, index_root: &MasterKey) -> Result<Self> {
        let keks = std::iter::once(&ring.current)
            .chain(ring.previous.iter())
            .map(|k| k.derive(SubKeyPurpose::KeyWrap))
            .collect();
        let indexer = BlindIndexer::new(&index_root.derive(SubKeyPurpose::BlindIndex))?;
        Ok(VaultKeys {
            ring,
            keks,
            indexer,
            audit_key: index_root.derive(SubKeyPurpose::AuditCommitment),
            operator_key: SubjectKey::for_operator_secrets(
                &index_root.derive(SubKeyPurpose::OperatorSecrets),
            )?,
            index_root_id: index_root.id(),
        })
    }

    /// Encrypts a console operator's secret (XChaCha20-Poly1305, bound to the operator id).
    pub fn seal_operator_secret(&self, operator_id: &str, secret: &[u8]) -> Result<Vec<u8>> {
        Ok(tutela_crypto::seal(
            &self.operator_key,
            secret,
            &operator_aad(operator_id),
        )?)
    }

    /// Decrypts what [`VaultKeys::seal_operator_secret`] sealed for the same operator.
    pub fn open_operator_secret(
        &self,
        operator_id: &str,
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>> {
        Ok(tutela_crypto::open(
            &self.operator_key,
            sealed,
            &operator_aad(operator_id),
        )?)
    }

    /// Random keys, for tests and benchmarks.
    pub fn generate() -> Result<Self> {
        let root = MasterKey::generate()?;
        Self::new(Keyring::new(MasterKey::generate()?), &root)
    }

    /// Id of the master key new subject keys are wrapped with.
    pub fn current_key_id(&self) -> KeyId {
        self.ring.current.id()
    }

    /// Id of the index root (stable for the life of the installation).
    pub fn index_root_id(&self) -> KeyId {
        self.index_root_id
    }

    pub fn indexer(&self) -> &BlindIndexer {
        &self.indexer
    }

    /// The keyed commitment to a subject that audit entries hold.
    pub fn commitment(&self, subject_id: &str) -> Result<[u8; 32]> {
        Ok(commit_subject(&self.audit_key, subject_id.as_bytes())?)
    }

    /// Wraps a subject key under the current master key.
    pub fn wrap(&self, subject_id: &str, key: &SubjectKey) -> Result<Vec<u8>> {
        Ok(wrap_subject_key(&self.keks[0], subject_id.as_bytes(), key)?)
    }

    /// Unwraps a subject key with whichever master key of the keyring wrapped it.
    pub fn unwrap(&self, subject_id: &str, blob: &[u8]) -> Result<SubjectKey> {
        let id = tutela_crypto::wrapped_key_id(blob)?;
        let kek = self
            .keks
            .iter()
            .find(|k| k.master_id() == id)
            .ok_or_else(|| crate::VaultError::UnknownMasterKey(id.to_hex()))?;
        Ok(tutela_crypto::unwrap_subject_key(
            kek,
            subject_id.as_bytes(),
            blob,
        )?)
    }
}

impl fmt::Debug for VaultKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VaultKeys")
            .field("current", &self.ring.current.id())
            .field(
                "previous",
                &self
                    .ring
                    .previous
                    .iter()
                    .map(|k| k.id())
                    .collect::<Vec<_>>(),
            )
            .field("index_root", &self.index_root_id)
            .finish_non_exhaustive()
    }
}

impl crate::Vault {
    /// Makes the keyring's current master key the one the database wraps new subject keys with
    /// (step 1 of a rotation, after the new key file is written), if the database's is unset,
    /// this key already, or one of the keyring's previous keys. From then on the database
    /// refuses a new subject wrapped by any other key: a process still running with an old key
    /// file gets [`crate::VaultError::MasterKeyRotated`] instead of writing a subject that
    /// would become unreadable. Fails with [`crate::VaultError::WrappingKeyMismatch`] when the
    /// database already uses another key.
    pub async fn switch_wrapping_key(&self) -> Result<()> {
        let current = self.keys.current_key_id().to_hex();
        let from: Vec<String> = self
            .keys
            .ring
            .previous
            .iter()
            .map(|k| k.id().to_hex())
            .collect();
        let now = self.now().as_second();
        let database = self
            .store
            .vault_switch_wrapping_key(&from, &current, now)
            .await?;
        if database == current {
            Ok(())
        } else {
            Err(crate::VaultError::WrappingKeyMismatch { database })
        }
    }

    /// A master-key rotation's step 2 (the keyring's current key is the new one, the old ones
    /// are in `previous`): switches the database to the current key if that was not done yet
    /// ([`Self::switch_wrapping_key`]), then re-wraps every subject key that another key
    /// wrapped, in batches, with a compare-and-set so a concurrent change is never lost, until
    /// none is left. Sealed records are not touched. Appends one `keys_rotated` audit entry.
    /// Returns the number of keys re-wrapped.
    ///
    /// Once this returns, no subject key is wrapped by another key and none can be any more
    /// (the database refuses it), so the old keys may leave the key file.
    pub async fn rewrap_subject_keys(
        &self,
        actor: &crate::Actor,
        progress: &mut (dyn FnMut(u64, u64) + Send),
    ) -> Result<u64> {
        self.switch_wrapping_key().await?;
        let current = self.keys.current_key_id().to_hex();
        let counts = self.store.vault_key_counts().await?;
        let total: u64 = counts
            .iter()
            .filter(|(k, _)| **k != current)
            .map(|(_, n)| *n)
            .sum();
        let mut done = 0u64;
        progress(0, total);
        loop {
            let batch = self.store.vault_subjects_to_rewrap(&current, 1000).await?;
            if batch.is_empty() {
                break;
            }
            let mut progressed = false;
            for s in &batch {
                let key = self.keys.unwrap(&s.id, &s.wrapped_key)?;
                let new = self.keys.wrap(&s.id, &key)?;
                if self
                    .store
                    .vault_rewrap_subject(&s.id, &s.wrapped_key, &new, &current)
                    .await?
                {
                    done += 1;
                    progressed = true;
                }
            }
            progress(done, total.max(done));
            if !progressed {
                return Err(crate::VaultError::InvalidInput(
                    "no subject key could be re-wrapped: another process keeps changing them; \
                     stop the servers and run the rotation again"
                        .into(),
                ));
            }
        }
        // The listing above ran after the switch, and nothing can be wrapped by another key
        // since: this is a check, not a wait.
        let left: u64 = self
            .store
            .vault_key_counts()
            .await?
            .iter()
            .filter(|(k, _)| **k != current)
            .map(|(_, n)| *n)
            .sum();
        if left > 0 {
            return Err(crate::VaultError::InvalidInput(format!(
                "{left} subject keys are still wrapped by an old master key; run the rotation again"
            )));
        }
        let now = self.now();
        let from: Vec<String> = counts.keys().filter(|k| **k != current).cloned().collect();
        let entry = tutela_store::NewAuditEntry {
            time_ms: now.as_millisecond(),
            actor: actor.0.clone(),
            action: "keys_rotated".into(),
            purpose: String::new(),
            subject_commitment: None,
            details: serde_json::json!({ "to": current, "from": from, "subject_keys": done })
                .to_string(),
        };
        self.store
            .append_audit(&[entry], crate::audit::hasher)
            .await?;
        Ok(done)
    }
}
