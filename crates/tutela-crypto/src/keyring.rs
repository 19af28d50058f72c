//! Master keys, their ids, the rotation keyring and HKDF sub-keys.
//!
//! # Key file format
//! A master key file holds the 32-byte key as **64 hexadecimal characters** (either case;
//! [`MasterKey::generate_file`] writes lower case), optionally surrounded by ASCII whitespace,
//! normally one trailing newline. Nothing else. The same text is accepted from an environment
//! variable by [`MasterKey::from_env_value`]. Generate one by hand with
//! `openssl rand -hex 32 > master.key && chmod 600 master.key`.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use ctutils::CtEq;
use hkdf::Hkdf;
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, Zeroizing};

use crate::CryptoError;
use crate::encoding::{hex_decode_ct, hex_lower};

/// Length of every symmetric key in this crate.
pub(crate) const KEY_LEN: usize = 32;

/// Key files larger than this are refused without reading them all.
const MAX_KEY_FILE_LEN: u64 = 4096;

const KEY_ID_LABEL: &[u8] = b"tutela/master-key-id/v1\0";
const SUBKEY_INFO_PREFIX: &[u8] = b"tutela/v1/subkey/";

/// Public identifier of a master key: the first 8 bytes of
/// SHA-256(`"tutela/master-key-id/v1\0"` || key). Shown as 16 lower-case hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(pub [u8; 8]);

impl KeyId {
    /// Raw bytes.
    pub fn as_bytes(&self) -> &[u8; 8] {
        &self.0
    }

    /// 16 lower-case hex digits.
    pub fn to_hex(&self) -> String {
        hex_lower(&self.0)
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

/// A 32-byte master key. Heap-allocated (moves don't leave copies), zeroized on drop,
/// never printed. Compared in constant time.
pub struct MasterKey {
    bytes: Box<[u8; KEY_LEN]>,
    id: KeyId,
}

impl MasterKey {
    /// Wrap raw key bytes. The caller should zeroize its own copy.
    pub fn from_bytes(bytes: &[u8; KEY_LEN]) -> MasterKey {
        let mut boxed = Box::new([0u8; KEY_LEN]);
        boxed.copy_from_slice(bytes);
        Self::from_box(boxed)
    }

    fn from_box(bytes: Box<[u8; KEY_LEN]>) -> MasterKey {
        let mut h = Sha256::new();
        h.update(KEY_ID_LABEL);
        h.update(&bytes[..]);
        let digest = h.finalize();
        let mut id = [0u8; 8];
        id.copy_from_slice(&digest[..8]);
        MasterKey {
            bytes,
            id: KeyId(id),
        }
    }

    /// A new random key from the operating system's generator.
    pub fn generate() -> Result<MasterKey, CryptoError> {
        let mut bytes = Box::new([0u8; KEY_LEN]);
        getrandom::fill(&mut bytes[..])?;
        Ok(Self::from_box(bytes))
    }

    /// Parse the key-file text format (64 hex digits, surrounding whitespace allowed).
    pub fn from_env_value(value: &str) -> Result<MasterKey, CryptoError> {
        Self::parse(value.as_bytes())
    }

    fn parse(text: &[u8]) -> Result<MasterKey, CryptoError> {
        let mut bytes = Box::new([0u8; KEY_LEN]);
        if hex_decode_ct(text.trim_ascii(), &mut bytes) {
            Ok(Self::from_box(bytes))
        } else {
            Err(CryptoError::InvalidKeyEncoding)
        }
    }

    /// The key as it is written to a key file: 64 lower-case hex digits and a newline.
    pub fn to_file_text(&self) -> Zeroizing<String> {
        let mut s = Zeroizing::new(String::with_capacity(2 * KEY_LEN + 1));
        for b in self.bytes.iter() {
            for nibble in [b >> 4, b & 0xf] {
                // Branch-free nibble to lower-case hex digit.
                let n = i16::from(nibble);
                let c = n + 0x30 + (((9 - n) >> 8) & (0x61 - 0x3a));
                s.push(char::from(c.to_le_bytes()[0]));
            }
        }
        s.push('\n');
        s
    }

    /// Load a key file (see the module documentation for its format).
    ///
    /// On unix, refuses a file that group or others can access (any of the bits `0o077`), with
    /// an error telling to `chmod 600` it.
    pub fn load_file(path: &Path) -> Result<MasterKey, CryptoError> {
        let io = |source| CryptoError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = File::open(path).map_err(io)?;
        // Check the permissions of the file actually opened, not of whatever the path names now.
        let meta = file.metadata().map_err(io)?;
        if !meta.is_file() {
            return Err(io(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "not a regular file",
            )));
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = meta.permissions().mode() & 0o7777;
            if mode & 0o077 != 0 {
                return Err(CryptoError::InsecurePermissions {
                    path: path.to_path_buf(),
                    mode,
                });
            }
        }
        let mut text = Zeroizing::new(Vec::with_capacity(MAX_KEY_FILE_LEN as usize + 1));
        file.take(MAX_KEY_FILE_LEN + 1)
            .read_to_end(&mut text)
            .map_err(io)?;
        if text.len() as u64 > MAX_KEY_FILE_LEN {
            return Err(CryptoError::InvalidKeyEncoding);
        }
        Self::parse(&text)
    }

    /// Generate a new key and write it to `path` with mode 0600, atomically: the key is written
    /// and synced to a temporary file in the same directory, which is then hard-linked to `path`.
    /// A reader never sees a partial file, and an existing `path` is never overwritten
    /// ([`CryptoError::AlreadyExists`]).
    pub fn generate_file(path: &Path) -> Result<MasterKey, CryptoError> {
        let key = Self::generate()?;
        key.write_new_file(path)?;
        Ok(key)
    }

    /// Write this key to a new file at `path` (mode 0600, atomic, never overwrites); see
    /// [`MasterKey::generate_file`].
    pub fn write_new_file(&self, path: &Path) -> Result<(), CryptoError> {
        let io = |source| CryptoError::Io {
            path: path.to_path_buf(),
            source,
        };
        if path.symlink_metadata().is_ok() {
            return Err(CryptoError::AlreadyExists {
                path: path.to_path_buf(),
            });
        }
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let name = path
            .file_name()
            .ok_or_else(|| {
                io(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "key file path has no file name",
                ))
            })?
            .to_string_lossy()
            .into_owned();
        let mut suffix = [0u8; 8];
        getrandom::fill(&mut suffix)?;
        let tmp = dir.join(format!(".{name}.{}.tmp", hex_lower(&suffix)));

        let result = (|| -> std::io::Result<()> {
            let mut options = OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                options.mode(0o600);
            }
            let mut f = options.open(&tmp)?;
            f.write_all(self.to_file_text().as_bytes())?;
            f.sync_all()?;
            drop(f);
            // `hard_link` fails with AlreadyExists instead of replacing the target.
            std::fs::hard_link(&tmp, path)?;
            Ok(())
        })();
        let _ = std::fs::remove_file(&tmp);
        match result {
            Ok(()) => {
                // Make the new directory entry durable; best effort.
                if let Ok(d) = File::open(&dir) {
                    let _ = d.sync_all();
                }
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                Err(CryptoError::AlreadyExists {
                    path: path.to_path_buf(),
                })
            }
            Err(e) => Err(io(e)),
        }
    }

    /// This key's public id.
    pub fn id(&self) -> KeyId {
        self.id
    }

    /// Derive the sub-key for `purpose` with HKDF-SHA256 (no salt; the master key is uniformly
    /// random), info = `"tutela/v1/subkey/"` || purpose label.
    pub fn derive(&self, purpose: SubKeyPurpose) -> SubKey {
        let hk = Hkdf::<Sha256>::new(None, &self.bytes[..]);
        let mut bytes = Box::new([0u8; KEY_LEN]);
        // 32 bytes is far below HKDF-SHA256's 255 * 32 limit, so expand cannot fail.
        let _ = hk.expand_multi_info(
            &[SUBKEY_INFO_PREFIX, purpose.as_str().as_bytes()],
            &mut bytes[..],
        );
        SubKey {
            bytes,
            purpose,
            master_id: self.id,
        }
    }
}

impl PartialEq for MasterKey {
    fn eq(&self, other: &Self) -> bool {
        self.bytes.ct_eq(&other.bytes).to_bool()
    }
}
impl Eq for MasterKey {}

impl Drop for MasterKey {
    fn drop(&mut self) {
        let b: &mut [u8; KEY_LEN] = &mut self.bytes;
        b.zeroize();
    }
}

impl zeroize::ZeroizeOnDrop for MasterKey {}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MasterKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// What a sub-key is for. Each purpose has its own HKDF info label, so the keys are independent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SubKeyPurpose {
    /// Wrapping per-subject keys (XChaCha20-Poly1305 key-encryption key).
    KeyWrap,
    /// HMAC key of the blind indexes.
    BlindIndex,
    /// HMAC key of the audit log's subject commitments.
    AuditCommitment,
    /// Root from which the analytics pseudonymisation salts are derived
    /// (see [`SubKey::derive_bytes`]).
    AnalyticsSalt,
    /// Root of the rights-request keys (sealing requester details, their blind index, form
    /// tokens and verification-code hashes); see `tutela-rights`.
    RightsRequests,
    /// Encryption of console operators' second-factor secrets (see
    /// [`SubjectKey::for_operator_secrets`](crate::SubjectKey::for_operator_secrets)).
    OperatorSecrets,
}

impl SubKeyPurpose {
    /// The HKDF info label.
    pub fn as_str(self) -> &'static str {
        match self {
            SubKeyPurpose::KeyWrap => "key-wrap",
            SubKeyPurpose::BlindIndex => "blind-index",
            SubKeyPurpose::AuditCommitment => "audit-commitment",
            SubKeyPurpose::AnalyticsSalt => "analytics-salt",
            SubKeyPurpose::RightsRequests => "rights-requests",
            SubKeyPurpose::OperatorSecrets => "operator-secrets",
        }
    }
}

impl fmt::Display for SubKeyPurpose {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A 32-byte key derived from a master key for one [`SubKeyPurpose`]. Zeroized on drop.
pub struct SubKey {
    bytes: Box<[u8; KEY_LEN]>,
    purpose: SubKeyPurpose,
    master_id: KeyId,
}

impl SubKey {
    /// What this key is for.
    pub fn purpose(&self) -> SubKeyPurpose {
        self.purpose
    }

    /// Id of the master key it was derived from.
    pub fn master_id(&self) -> KeyId {
        self.master_id
    }

    /// 32 bytes derived from this key for `context` (HKDF-SHA256 expand with this key as PRK).
    /// For example the analytics salt of a day: `analytics_key.derive_bytes(b"day:2026-11-29")`.
    pub fn derive_bytes(&self, context: &[u8]) -> Zeroizing<[u8; KEY_LEN]> {
        let mut out = Zeroizing::new([0u8; KEY_LEN]);
        // A 32-byte PRK is long enough and 32 bytes of output is within limits: cannot fail.
        if let Ok(hk) = Hkdf::<Sha256>::from_prk(&self.bytes[..]) {
            let _ = hk.expand_multi_info(
                &[
                    b"tutela/v1/derive/",
                    self.purpose.as_str().as_bytes(),
                    b"\0",
                    context,
                ],
                &mut out[..],
            );
        }
        out
    }

    pub(crate) fn require(&self, purpose: SubKeyPurpose) -> Result<(), CryptoError> {
        if self.purpose == purpose {
            Ok(())
        } else {
            Err(CryptoError::WrongSubKey {
                expected: purpose,
                actual: self.purpose,
            })
        }
    }

    pub(crate) fn bytes(&self) -> &[u8; KEY_LEN] {
        &self.bytes
    }
}

impl Drop for SubKey {
    fn drop(&mut self) {
        let b: &mut [u8; KEY_LEN] = &mut self.bytes;
        b.zeroize();
    }
}

impl zeroize::ZeroizeOnDrop for SubKey {}

impl fmt::Debug for SubKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SubKey")
            .field("purpose", &self.purpose)
            .field("master_id", &self.master_id)
            .finish_non_exhaustive()
    }
}

/// The current master key and the previous ones still needed to unwrap old data.
///
/// New wraps use `current`; unwrapping picks the key whose id the wrapped blob records. To
/// rotate: generate a new key, make it current, move the old one to `previous`, [`rewrap`]
/// every wrapped subject key (cheap: only the 81-byte wrapped keys change), then drop the old
/// key.
///
/// [`rewrap`]: crate::rewrap
#[derive(Debug)]
pub struct Keyring {
    /// Key used for new wraps.
    pub current: MasterKey,
    /// Older keys, only used to unwrap.
    pub previous: Vec<MasterKey>,
}

impl Keyring {
    /// A keyring with only `current`.
    pub fn new(current: MasterKey) -> Keyring {
        Keyring {
            current,
            previous: Vec::new(),
        }
    }

    /// The master key with id `id`, current or previous.
    pub fn find(&self, id: KeyId) -> Option<&MasterKey> {
        std::iter::once(&self.current)
            .chain(self.previous.iter())
            .find(|k| k.id == id)
    }

    /// Sub-key of the current master key.
    pub fn derive(&self, purpose: SubKeyPurpose) -> SubKey {
        self.current.derive(purpose)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    fn raw() -> [u8; 32] {
        core::array::from_fn(|i| i as u8)
    }

    #[test]
    fn parse_formats() {
        let k = MasterKey::from_env_value(HEX).unwrap();
        assert_eq!(k, MasterKey::from_bytes(&raw()));
        for ok in [
            format!("{HEX}\n"),
            format!("{HEX}\r\n"),
            format!("  {}\n", HEX.to_uppercase()),
        ] {
            assert_eq!(MasterKey::from_env_value(&ok).unwrap(), k);
        }
        for bad in [
            "",
            "00",
            &HEX[..63],
            &format!("{HEX}00"),
            &format!("{}g", &HEX[..63]),
            &format!("{HEX}\nx"),
        ] {
            assert!(matches!(
                MasterKey::from_env_value(bad),
                Err(CryptoError::InvalidKeyEncoding)
            ));
        }
        assert_eq!(k.to_file_text().as_str(), format!("{HEX}\n"));
    }

    #[test]
    fn key_id_and_debug() {
        let k = MasterKey::from_bytes(&raw());
        let id = k.id();
        assert_eq!(id.to_hex().len(), 16);
        // Stable across versions: ids are stored in wrapped keys.
        let mut h = Sha256::new();
        h.update(b"tutela/master-key-id/v1\0");
        h.update(raw());
        assert_eq!(&h.finalize()[..8], id.as_bytes());
        let dbg = format!("{k:?} {:?}", k.derive(SubKeyPurpose::KeyWrap));
        assert!(dbg.contains(&id.to_hex()));
        assert!(!dbg.contains("0102") && !dbg.contains("[0, 1"), "{dbg}");
        let other = MasterKey::generate().unwrap();
        assert_ne!(other.id(), id);
        assert_ne!(other, k);
    }

    #[test]
    fn subkeys_are_distinct() {
        let k = MasterKey::from_bytes(&raw());
        let purposes = [
            SubKeyPurpose::KeyWrap,
            SubKeyPurpose::BlindIndex,
            SubKeyPurpose::AuditCommitment,
            SubKeyPurpose::AnalyticsSalt,
            SubKeyPurpose::RightsRequests,
            SubKeyPurpose::OperatorSecrets,
        ];
        let keys: Vec<[u8; 32]> = purposes.iter().map(|&p| *k.derive(p).bytes()).collect();
        for i in 0..keys.len() {
            assert_ne!(keys[i], raw());
            for j in i + 1..keys.len() {
                assert_ne!(keys[i], keys[j]);
            }
        }
        // Deterministic.
        assert_eq!(keys[0], *k.derive(SubKeyPurpose::KeyWrap).bytes());
        let a = k.derive(SubKeyPurpose::AnalyticsSalt);
        assert_eq!(*a.derive_bytes(b"day:1"), *a.derive_bytes(b"day:1"));
        assert_ne!(*a.derive_bytes(b"day:1"), *a.derive_bytes(b"day:2"));
    }

    #[test]
    fn keyring_find() {
        let old = MasterKey::generate().unwrap();
        let old_id = old.id();
        let mut ring = Keyring::new(MasterKey::generate().unwrap());
        assert!(ring.find(old_id).is_none());
        ring.previous.push(old);
        assert_eq!(ring.find(old_id).unwrap().id(), old_id);
        assert_eq!(
            ring.find(ring.current.id()).unwrap().id(),
            ring.current.id()
        );
    }

    #[test]
    fn file_generate_load_and_refusals() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        let k = MasterKey::generate_file(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.len(), 65);
        assert!(text.ends_with('\n'));
        assert_eq!(MasterKey::load_file(&path).unwrap(), k);
        // No temporary file left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);

        // Never overwrites.
        let err = MasterKey::generate_file(&path).unwrap_err();
        assert!(matches!(err, CryptoError::AlreadyExists { .. }), "{err}");
        assert_eq!(MasterKey::load_file(&path).unwrap(), k);

        // Missing file.
        let err = MasterKey::load_file(&dir.path().join("nope")).unwrap_err();
        assert!(matches!(err, CryptoError::Io { .. }), "{err}");
        // A directory.
        let err = MasterKey::load_file(dir.path()).unwrap_err();
        assert!(matches!(err, CryptoError::Io { .. }), "{err}");

        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
            for bad in [0o640, 0o604, 0o644, 0o660] {
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(bad)).unwrap();
                let err = MasterKey::load_file(&path).unwrap_err();
                assert!(
                    matches!(err, CryptoError::InsecurePermissions { .. }),
                    "{err}"
                );
                let msg = err.to_string();
                assert!(
                    msg.contains(&format!("chmod 600 {}", path.display())),
                    "{msg}"
                );
            }
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).unwrap();
            assert_eq!(MasterKey::load_file(&path).unwrap(), k);
        }

        // A hand-written file with upper-case hex and no newline.
        let p2 = dir.path().join("hand.key");
        std::fs::write(&p2, HEX.to_uppercase()).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&p2, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        assert_eq!(
            MasterKey::load_file(&p2).unwrap(),
            MasterKey::from_bytes(&raw())
        );

        // Garbage and oversized files.
        let p3 = dir.path().join("big.key");
        std::fs::write(&p3, vec![b'a'; 10_000]).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&p3, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        assert!(matches!(
            MasterKey::load_file(&p3),
            Err(CryptoError::InvalidKeyEncoding)
        ));
    }
}
