//! The spool's frame key, kept in `spool/frame-key` (and copied into every
//! segment header): what record checksums are keyed with, so that no
//! emitter can lay out bytes that pass for a record (see
//! [`format`](super::format)).
//!
//! | bytes | |
//! |---|---|
//! | 0..8 | magic `ARFRKEY\0` |
//! | 8..16 | the key |
//! | 16..20 | CRC32C of bytes 0..16 |
//!
//! The file is written once, when the spool is created, and synced.

use std::io;
use std::path::Path;

use super::format::FrameKey;

const MAGIC: &[u8; 8] = b"ARFRKEY\0";
const LEN: usize = 20;

/// The key at `path`: `Ok(None)` if there is no file, `Err` saying why if
/// it is there but unreadable or damaged.
pub fn read(path: &Path) -> Result<Option<FrameKey>, String> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let crc_ok = |b: &[u8]| {
        u32::from_le_bytes(b[16..20].try_into().expect("4 bytes")) == crc32c::crc32c(&b[0..16])
    };
    match bytes.get(..LEN) {
        Some(b) if bytes.len() == LEN && &b[0..8] == MAGIC && crc_ok(b) => Ok(Some(
            FrameKey::from_bytes(b[8..16].try_into().expect("8 bytes")),
        )),
        _ => Err(format!("{} is damaged", path.display())),
    }
}

/// Writes `key` to `path` (through a temporary file, synced, renamed, the
/// directory synced).
pub fn store(path: &Path, key: FrameKey) -> io::Result<()> {
    let Some(key) = key.to_bytes() else {
        return Ok(());
    };
    let mut bytes = [0u8; LEN];
    bytes[0..8].copy_from_slice(MAGIC);
    bytes[8..16].copy_from_slice(&key);
    let crc = crc32c::crc32c(&bytes[0..16]);
    bytes[16..20].copy_from_slice(&crc.to_le_bytes());
    super::files::replace_whole(path, &bytes, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_round_trips_and_damage_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("frame-key");
        assert_eq!(read(&path), Ok(None));
        let key = FrameKey::random();
        store(&path, key).unwrap();
        assert_eq!(read(&path), Ok(Some(key)));
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[10] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        assert!(read(&path).unwrap_err().contains("damaged"));
        std::fs::write(&path, &bytes[..7]).unwrap();
        assert!(read(&path).unwrap_err().contains("damaged"));
    }
}
