//! Checks on raw Automerge change chunks before they reach automerge: magic bytes, chunk
//! type, declared length, and the checksum (automerge's own parser does not verify it).
//!
//! Chunk layout: 4 magic bytes `85 6f 4a 83`, 4 checksum bytes, 1 type byte (0 document,
//! 1 change, 2 compressed change), the data length as unsigned LEB128, then the data.
//! The change hash is SHA-256 over `type || LEB128(len) || data`; the checksum is its
//! first 4 bytes.

use sha2::{Digest, Sha256};

use crate::error::ChangeError;

pub const MAGIC: [u8; 4] = [0x85, 0x6f, 0x4a, 0x83];
const TYPE_DOCUMENT: u8 = 0;
const TYPE_CHANGE: u8 = 1;
const TYPE_COMPRESSED: u8 = 2;

/// Largest single change accepted, in bytes.
pub const MAX_CHANGE_BYTES: usize = 1024 * 1024;

/// Verifies one uncompressed change chunk and returns its hash (hex).
pub fn verify_change_chunk(bytes: &[u8]) -> Result<[u8; 32], ChangeError> {
    if bytes.len() > MAX_CHANGE_BYTES {
        return Err(ChangeError::TooLarge);
    }
    if bytes.len() < 10 || bytes[..4] != MAGIC {
        return Err(ChangeError::Malformed(
            "not an Automerge chunk (bad magic bytes)".into(),
        ));
    }
    let checksum = &bytes[4..8];
    let chunk_type = bytes[8];
    match chunk_type {
        TYPE_CHANGE => {}
        TYPE_COMPRESSED => return Err(ChangeError::Compressed),
        TYPE_DOCUMENT => return Err(ChangeError::NotAChange),
        other => {
            return Err(ChangeError::Malformed(format!(
                "unknown chunk type {other}"
            )));
        }
    }
    let (len, leb_len) = read_uleb128(&bytes[9..])
        .ok_or_else(|| ChangeError::Malformed("bad chunk length".into()))?;
    let header = 9 + leb_len;
    let available = (bytes.len() - header) as u64;
    if len > available {
        return Err(ChangeError::Truncated);
    }
    if len < available {
        return Err(ChangeError::Malformed(
            "bytes after the end of the change".into(),
        ));
    }
    let mut hasher = Sha256::new();
    hasher.update([chunk_type]);
    hasher.update(&bytes[9..header]);
    hasher.update(&bytes[header..]);
    let hash: [u8; 32] = hasher.finalize().into();
    if hash[..4] != *checksum {
        return Err(ChangeError::ChecksumMismatch);
    }
    Ok(hash)
}

/// Rewrites the checksum of a (possibly damaged) change chunk so that it matches its
/// contents. For fuzzers and hostile-input tests: a mutated change then reaches the
/// parser instead of stopping at the checksum check.
pub fn seal(bytes: &mut [u8]) {
    if bytes.len() < 10 {
        return;
    }
    let header_end = bytes[9..]
        .iter()
        .position(|b| b & 0x80 == 0)
        .map_or(bytes.len(), |i| 9 + i + 1);
    let mut h = Sha256::new();
    h.update([bytes[8]]);
    h.update(&bytes[9..header_end]);
    h.update(&bytes[header_end..]);
    let hash = h.finalize();
    bytes[4..8].copy_from_slice(&hash[..4]);
}

/// Cuts concatenated change chunks apart by their declared lengths (the last one takes
/// what is left) and seals each. Lets one fuzzer input carry a document's history.
pub fn split_and_seal(mut data: &[u8]) -> Vec<Vec<u8>> {
    let mut chunks = Vec::new();
    while !data.is_empty() {
        let end = if data.len() > 9 {
            read_uleb128(&data[9..])
                .and_then(|(len, leb)| usize::try_from(len).ok()?.checked_add(9 + leb))
                .map_or(data.len(), |e| e.clamp(1, data.len()))
        } else {
            data.len()
        };
        let mut chunk = data[..end].to_vec();
        seal(&mut chunk);
        chunks.push(chunk);
        data = &data[end..];
    }
    chunks
}

fn read_uleb128(bytes: &[u8]) -> Option<(u64, usize)> {
    let mut value: u64 = 0;
    for (i, byte) in bytes.iter().enumerate().take(10) {
        let part = u64::from(byte & 0x7f);
        value |= part.checked_shl(7 * i as u32)?;
        if byte & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use automerge::{AutoCommit, ROOT, transaction::Transactable};

    use super::*;

    fn real_change() -> Vec<u8> {
        let mut doc = AutoCommit::new();
        doc.put(ROOT, "type", "member").expect("put");
        doc.commit();
        let changes = doc.get_changes(&[]);
        changes[0].raw_bytes().to_vec()
    }

    #[test]
    fn split_and_seal_recovers_concatenated_changes_and_reseals_damage() {
        let mut doc = AutoCommit::new();
        for v in ["a", "b", "c"] {
            doc.put(ROOT, "village", v).expect("put");
            doc.commit();
        }
        let changes: Vec<Vec<u8>> = doc
            .get_changes(&[])
            .iter()
            .map(|c| c.raw_bytes().to_vec())
            .collect();
        assert_eq!(split_and_seal(&changes.concat()), changes);
        let mut damaged = changes[1].clone();
        let last = damaged.len() - 1;
        damaged[last] ^= 0x55;
        assert!(verify_change_chunk(&damaged).is_err());
        seal(&mut damaged);
        assert!(verify_change_chunk(&damaged).is_ok());
        assert_eq!(split_and_seal(&[]).len(), 0);
        assert_eq!(split_and_seal(b"\x85o").len(), 1);
    }

    #[test]
    fn accepts_a_real_change_and_returns_its_hash() {
        let bytes = real_change();
        let change = automerge::Change::try_from(&bytes[..]).expect("automerge parses");
        let hash = verify_change_chunk(&bytes).expect("valid");
        assert_eq!(hash, change.hash().0);
    }

    #[test]
    fn rejects_each_kind_of_damage_with_its_own_error() {
        let bytes = real_change();
        let mut bad_sum = bytes.clone();
        let last = bad_sum.len() - 1;
        bad_sum[last] ^= 0xff;
        assert!(matches!(
            verify_change_chunk(&bad_sum),
            Err(ChangeError::ChecksumMismatch)
        ));
        assert!(matches!(
            verify_change_chunk(&bytes[..bytes.len() - 3]),
            Err(ChangeError::Truncated)
        ));
        let mut compressed = bytes.clone();
        compressed[8] = 2;
        assert!(matches!(
            verify_change_chunk(&compressed),
            Err(ChangeError::Compressed)
        ));
        let mut doc = bytes.clone();
        doc[8] = 0;
        assert!(matches!(
            verify_change_chunk(&doc),
            Err(ChangeError::NotAChange)
        ));
        assert!(matches!(
            verify_change_chunk(b"hello world"),
            Err(ChangeError::Malformed(_))
        ));
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert!(matches!(
            verify_change_chunk(&trailing),
            Err(ChangeError::Malformed(_))
        ));
    }
}
