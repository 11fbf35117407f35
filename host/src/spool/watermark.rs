//! The durable watermark: how far the spool had told anyone an event was
//! durable, kept beside the segments so that recovery can tell a torn
//! write of a record nobody was promised from the loss of records that
//! were acknowledged.
//!
//! The file `spool/durable` holds 24 bytes, overwritten in place after
//! every sync and before the sync is announced:
//!
//! | bytes | |
//! |---|---|
//! | 0..8 | magic `ARDURBL\0` |
//! | 8..16 | every record below this sequence number was durable (u64 LE) |
//! | 16..20 | CRC32C of bytes 0..16 |
//! | 20..24 | zero |
//!
//! It is written, not synced: it only ever trails the data it describes
//! (the data is synced first), so after a crash it may be a little behind
//! — recovery then calls a lost tail torn — but it never claims a record
//! that was not on disk.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::Path;

use super::writer::write_all_at;

const MAGIC: &[u8; 8] = b"ARDURBL\0";
const LEN: usize = 24;

/// The watermark file, open for updates.
pub struct Watermark {
    file: File,
    value: u64,
}

impl Watermark {
    /// Opens (or creates) the watermark at `path`, keeping its value.
    pub fn open(path: &Path) -> io::Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        let value = read(path).unwrap_or(0);
        Ok(Watermark { file, value })
    }

    /// Records that every record below `seq` is durable (never moves back).
    pub fn advance(&mut self, seq: u64) -> io::Result<()> {
        if seq <= self.value {
            return Ok(());
        }
        write_all_at(&self.file, &encode(seq), 0)?;
        self.value = seq;
        Ok(())
    }
}

fn encode(seq: u64) -> [u8; LEN] {
    let mut bytes = [0u8; LEN];
    bytes[0..8].copy_from_slice(MAGIC);
    bytes[8..16].copy_from_slice(&seq.to_le_bytes());
    let crc = crc32c::crc32c(&bytes[0..16]);
    bytes[16..20].copy_from_slice(&crc.to_le_bytes());
    bytes
}

/// The watermark at `path`: `Ok(0)` if there is none yet, `Err` saying why
/// if the file is there but unreadable or damaged.
pub fn read(path: &Path) -> Result<u64, String> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    if bytes.is_empty() {
        return Ok(0);
    }
    let damaged = || format!("{} is damaged", path.display());
    let bytes: &[u8; LEN] = bytes
        .get(..LEN)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(damaged)?;
    let crc = u32::from_le_bytes(bytes[16..20].try_into().expect("4 bytes"));
    if &bytes[0..8] != MAGIC || crc != crc32c::crc32c(&bytes[0..16]) {
        return Err(damaged());
    }
    Ok(u64::from_le_bytes(
        bytes[8..16].try_into().expect("8 bytes"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_never_moves_back_and_reports_damage() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("durable");
        assert_eq!(read(&path), Ok(0));
        let mut mark = Watermark::open(&path).unwrap();
        assert_eq!(read(&path), Ok(0), "an empty new file reads as 0");
        mark.advance(42).unwrap();
        mark.advance(7).unwrap();
        assert_eq!(read(&path), Ok(42));
        assert_eq!(Watermark::open(&path).unwrap().value, 42);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[9] ^= 1;
        std::fs::write(&path, bytes).unwrap();
        assert!(read(&path).unwrap_err().contains("damaged"));
    }
}
