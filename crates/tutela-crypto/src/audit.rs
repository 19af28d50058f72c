//! The tamper-evident audit chain.
//!
//! Entry `n` is stored with `hash_n = chain_hash(hash_{n-1}, entry_n)`, starting from
//! [`GENESIS_HASH`], with sequence numbers `FIRST_SEQ, FIRST_SEQ + 1, …` without gaps.
//! Entries hold a keyed commitment to the data subject ([`commit_subject`]), never the subject
//! itself, so the personal data can be purged without breaking verification.
//!
//! Verification detects a modified entry, a deleted entry (a gap in the sequence) and
//! reordered entries. Deleting the *newest* entries (truncating the tail) and recomputing every
//! hash can only be detected against a chain head kept elsewhere (see [`ChainHead`]).

use ctutils::CtEq;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

use crate::CryptoError;
use crate::encoding::push_lp;
use crate::keyring::{SubKey, SubKeyPurpose};

/// The `prev_hash` of the first entry.
pub const GENESIS_HASH: [u8; 32] = [0; 32];

/// Sequence number of the first entry of a chain verified by [`verify_chain`].
pub const FIRST_SEQ: u64 = 1;

const CHAIN_LABEL: &[u8] = b"tutela/audit-chain/v1\0";
const COMMIT_LABEL: &[u8] = b"tutela/audit-subject/v1\0";

/// One audit-log entry, as provided by the caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditEntry {
    /// Position in the chain, consecutive from [`FIRST_SEQ`].
    pub seq: u64,
    /// Time of the action, Unix milliseconds.
    pub time_unix_ms: i64,
    /// Who acted (operator login, job name, …).
    pub actor: String,
    /// What was done.
    pub action: String,
    /// Under which purpose of the register.
    pub purpose: String,
    /// [`commit_subject`] of the data subject concerned, if any.
    pub subject_commitment: Option<[u8; 32]>,
    /// Further details as a JSON string (must hold no personal data).
    pub details_json: String,
}

/// SHA-256 of `"tutela/audit-chain/v1\0" | prev_hash | seq (u64 BE) | time (i64 BE) |
/// actor | action | purpose | 0x00 or 0x01 ‖ commitment | details`, each string preceded by
/// its length as a u64 BE.
pub fn chain_hash(prev_hash: &[u8; 32], entry: &AuditEntry) -> [u8; 32] {
    let mut buf = Vec::with_capacity(
        CHAIN_LABEL.len()
            + 32
            + 16
            + 24
            + entry.actor.len()
            + entry.action.len()
            + entry.purpose.len()
            + 33
            + 8
            + entry.details_json.len(),
    );
    buf.extend_from_slice(CHAIN_LABEL);
    buf.extend_from_slice(prev_hash);
    buf.extend_from_slice(&entry.seq.to_be_bytes());
    buf.extend_from_slice(&entry.time_unix_ms.to_be_bytes());
    push_lp(&mut buf, entry.actor.as_bytes());
    push_lp(&mut buf, entry.action.as_bytes());
    push_lp(&mut buf, entry.purpose.as_bytes());
    match &entry.subject_commitment {
        Some(c) => {
            buf.push(1);
            buf.extend_from_slice(c);
        }
        None => buf.push(0),
    }
    push_lp(&mut buf, entry.details_json.as_bytes());
    Sha256::digest(&buf).into()
}

/// Keyed commitment to a data subject: HMAC-SHA256 under the
/// [`SubKeyPurpose::AuditCommitment`] sub-key of `"tutela/audit-subject/v1\0" | subject_id`.
/// The log can be searched for a subject by whoever holds the key, and reveals nothing
/// without it.
pub fn commit_subject(audit_key: &SubKey, subject_id: &[u8]) -> Result<[u8; 32], CryptoError> {
    audit_key.require(SubKeyPurpose::AuditCommitment)?;
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&audit_key.bytes()[..])
        .map_err(|_| CryptoError::Malformed("audit key"))?;
    mac.update(COMMIT_LABEL);
    mac.update(subject_id);
    Ok(mac.finalize().into_bytes().into())
}

/// How the chain was found broken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChainErrorKind {
    /// An entry's content (or its stored hash) does not match the chain.
    Modified,
    /// A sequence number is missing: an entry was deleted.
    Missing,
    /// Entries are out of sequence order (or one appears twice).
    Reordered,
}

/// The first place where verification failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("audit chain broken at seq {first_bad_seq} (entry #{position}): {kind:?}")]
pub struct ChainError {
    /// The lowest sequence number at which the chain is broken (for `Missing`, the number
    /// that is absent).
    pub first_bad_seq: u64,
    /// Index into the entries given where the problem was found.
    pub position: usize,
    /// What is wrong.
    pub kind: ChainErrorKind,
}

/// The last verified entry: keep it (or publish it) to detect a later truncation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChainHead {
    /// Sequence number of the last entry, or `FIRST_SEQ - 1` for an empty chain.
    pub seq: u64,
    /// Its hash ([`GENESIS_HASH`] for an empty chain).
    pub hash: [u8; 32],
}

/// Verify a whole chain from [`GENESIS_HASH`] and [`FIRST_SEQ`]. `stored_hashes[i]` is the
/// hash stored with `entries[i]`; entries are in the order they were read (by storage
/// position, not sorted by `seq`, or reordering can't be seen).
pub fn verify_chain(
    entries: &[AuditEntry],
    stored_hashes: &[[u8; 32]],
) -> Result<ChainHead, ChainError> {
    verify_chain_from(
        ChainHead {
            seq: FIRST_SEQ - 1,
            hash: GENESIS_HASH,
        },
        entries,
        stored_hashes,
    )
}

/// Verify the part of a chain that follows `anchor` (a previously verified head).
pub fn verify_chain_from(
    anchor: ChainHead,
    entries: &[AuditEntry],
    stored_hashes: &[[u8; 32]],
) -> Result<ChainHead, ChainError> {
    let mut prev = anchor.hash;
    let mut last_seq = anchor.seq;
    for (i, entry) in entries.iter().enumerate() {
        let Some(expected) = last_seq.checked_add(1) else {
            return Err(ChainError {
                first_bad_seq: entry.seq,
                position: i,
                kind: ChainErrorKind::Reordered,
            });
        };
        if entry.seq != expected {
            let later_has_expected = entries[i..].iter().any(|e| e.seq == expected);
            let kind = if entry.seq > expected && !later_has_expected {
                ChainErrorKind::Missing
            } else {
                ChainErrorKind::Reordered
            };
            return Err(ChainError {
                first_bad_seq: expected.min(entry.seq),
                position: i,
                kind,
            });
        }
        let Some(stored) = stored_hashes.get(i) else {
            return Err(ChainError {
                first_bad_seq: entry.seq,
                position: i,
                kind: ChainErrorKind::Missing,
            });
        };
        let h = chain_hash(&prev, entry);
        if !h.ct_eq(stored).to_bool() {
            return Err(ChainError {
                first_bad_seq: entry.seq,
                position: i,
                kind: ChainErrorKind::Modified,
            });
        }
        prev = h;
        last_seq = entry.seq;
    }
    if stored_hashes.len() > entries.len() {
        // A hash without its entry: the entry was deleted.
        return Err(ChainError {
            first_bad_seq: last_seq.saturating_add(1),
            position: entries.len(),
            kind: ChainErrorKind::Missing,
        });
    }
    Ok(ChainHead {
        seq: last_seq,
        hash: prev,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keyring::MasterKey;

    fn entry(seq: u64, subject: Option<[u8; 32]>) -> AuditEntry {
        AuditEntry {
            seq,
            time_unix_ms: 1_764_000_000_000 + seq as i64,
            actor: "operator:jdoe".into(),
            action: if seq.is_multiple_of(2) {
                "read"
            } else {
                "purge"
            }
            .into(),
            purpose: "billing".into(),
            subject_commitment: subject,
            details_json: format!(r#"{{"n":{seq}}}"#),
        }
    }

    fn build(n: u64) -> (Vec<AuditEntry>, Vec<[u8; 32]>) {
        let key = MasterKey::from_bytes(&[1; 32]).derive(SubKeyPurpose::AuditCommitment);
        let c = commit_subject(&key, b"subject-1").unwrap();
        let entries: Vec<_> = (FIRST_SEQ..FIRST_SEQ + n)
            .map(|s| entry(s, s.is_multiple_of(3).then_some(c)))
            .collect();
        let mut prev = GENESIS_HASH;
        let hashes = entries
            .iter()
            .map(|e| {
                prev = chain_hash(&prev, e);
                prev
            })
            .collect();
        (entries, hashes)
    }

    fn err(kind: ChainErrorKind, seq: u64, position: usize) -> Result<ChainHead, ChainError> {
        Err(ChainError {
            first_bad_seq: seq,
            position,
            kind,
        })
    }

    #[test]
    fn valid_chain_and_head() {
        let (e, h) = build(10);
        let head = verify_chain(&e, &h).unwrap();
        assert_eq!(
            head,
            ChainHead {
                seq: 10,
                hash: h[9]
            }
        );
        assert_eq!(
            verify_chain(&[], &[]).unwrap(),
            ChainHead {
                seq: 0,
                hash: GENESIS_HASH
            }
        );
        // Verify incrementally from a head.
        let mid = verify_chain(&e[..4], &h[..4]).unwrap();
        assert_eq!(verify_chain_from(mid, &e[4..], &h[4..]).unwrap(), head);
    }

    #[test]
    fn modified_entry_detected() {
        let (e, h) = build(10);
        let edits: [fn(&mut AuditEntry); 7] = [
            |x| x.actor.push('x'),
            |x| x.action = "export".into(),
            |x| x.purpose = "support".into(),
            |x| x.time_unix_ms += 1,
            |x| x.details_json = "{}".into(),
            |x| x.subject_commitment = Some([9; 32]),
            |x| x.subject_commitment = None,
        ];
        for edit in edits {
            let mut e2 = e.clone();
            edit(&mut e2[5]);
            assert_eq!(verify_chain(&e2, &h), err(ChainErrorKind::Modified, 6, 5));
        }
        // Moving bytes between fields changes the hash (length prefixes).
        let mut e2 = e.clone();
        assert_eq!(e2[1].action, "read");
        e2[1].actor = "operator:jdoer".into();
        e2[1].action = "ead".into();
        assert_eq!(verify_chain(&e2, &h), err(ChainErrorKind::Modified, 2, 1));
        // A modified stored hash.
        let mut h2 = h.clone();
        h2[7][0] ^= 1;
        assert_eq!(verify_chain(&e, &h2), err(ChainErrorKind::Modified, 8, 7));
        // Modified entry whose hash was recomputed: the next link breaks.
        let mut e2 = e.clone();
        let mut h2 = h.clone();
        e2[3].action = "nothing".into();
        h2[3] = chain_hash(&h2[2], &e2[3]);
        assert_eq!(verify_chain(&e2, &h2), err(ChainErrorKind::Modified, 5, 4));
        // Renumbering the entries after a deletion doesn't help either.
        let (mut e2, mut h2) = build(10);
        e2.remove(4);
        h2.remove(4);
        for (i, x) in e2.iter_mut().enumerate().skip(4) {
            x.seq = i as u64 + FIRST_SEQ;
        }
        assert_eq!(verify_chain(&e2, &h2), err(ChainErrorKind::Modified, 5, 4));
    }

    #[test]
    fn deleted_entry_detected() {
        let (mut e, mut h) = build(10);
        e.remove(4);
        h.remove(4);
        assert_eq!(verify_chain(&e, &h), err(ChainErrorKind::Missing, 5, 4));
        // The first entry.
        let (mut e, mut h) = build(3);
        e.remove(0);
        h.remove(0);
        assert_eq!(verify_chain(&e, &h), err(ChainErrorKind::Missing, 1, 0));
        // Entry deleted but its hash kept.
        let (mut e, h) = build(3);
        e.pop();
        assert_eq!(verify_chain(&e, &h), err(ChainErrorKind::Missing, 3, 2));
        let (e, mut h) = build(3);
        h.pop();
        assert_eq!(verify_chain(&e, &h), err(ChainErrorKind::Missing, 3, 2));
    }

    #[test]
    fn reordered_entries_detected() {
        let (mut e, mut h) = build(10);
        e.swap(3, 4);
        h.swap(3, 4);
        assert_eq!(verify_chain(&e, &h), err(ChainErrorKind::Reordered, 4, 3));
        // Moved to the end.
        let (mut e, mut h) = build(6);
        let x = e.remove(1);
        e.push(x);
        let y = h.remove(1);
        h.push(y);
        assert_eq!(verify_chain(&e, &h), err(ChainErrorKind::Reordered, 2, 1));
        // Duplicated (replayed) entry.
        let (mut e, mut h) = build(4);
        e.push(e[1].clone());
        h.push(h[1]);
        assert_eq!(verify_chain(&e, &h), err(ChainErrorKind::Reordered, 2, 4));
        // Swapped contents but not seq numbers: the hashes break.
        let (mut e, h) = build(6);
        let (a, b) = (e[2].clone(), e[3].clone());
        e[2] = AuditEntry { seq: 3, ..b };
        e[3] = AuditEntry { seq: 4, ..a };
        assert_eq!(verify_chain(&e, &h), err(ChainErrorKind::Modified, 3, 2));
    }

    #[test]
    fn commitments() {
        let mk = MasterKey::from_bytes(&[1; 32]);
        let key = mk.derive(SubKeyPurpose::AuditCommitment);
        let a = commit_subject(&key, b"subject-1").unwrap();
        assert_eq!(a, commit_subject(&key, b"subject-1").unwrap());
        assert_ne!(a, commit_subject(&key, b"subject-2").unwrap());
        let other = MasterKey::from_bytes(&[2; 32]).derive(SubKeyPurpose::AuditCommitment);
        assert_ne!(a, commit_subject(&other, b"subject-1").unwrap());
        // Not the blind index of the same id, and the wrong sub-key is refused.
        assert!(matches!(
            commit_subject(&mk.derive(SubKeyPurpose::BlindIndex), b"subject-1"),
            Err(CryptoError::WrongSubKey { .. })
        ));
        // The entry carries no identity.
        let e = entry(1, Some(a));
        assert!(!format!("{e:?}").contains("subject-1"));
    }
}
