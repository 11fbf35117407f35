//! The durable watermark: how far the spool had told anyone an event was
//! durable, kept beside the segments so that recovery can tell a torn
//! write of a record nobody was promised from the loss of records that
//! were acknowledged.
//!
//! The file `spool/durable` holds two 24-byte copies of the same value,
//! both written (one after the other) after every sync and before the
//! sync is announced, so a torn or damaged copy leaves the other:
//!
//! | bytes (of each copy) | |
//! |---|---|
//! | 0..8 | magic `ARDURBL\0` |
//! | 8..16 | every record below this sequence number was durable (u64 LE) |
//! | 16..20 | CRC32C of bytes 0..16 |
//! | 20..24 | zero |
//!
//! It is written at once and synced within 100 ms (by the writer, off the
//! path of appends): it only ever trails the data it describes (the data
//! is synced first), so it never claims a record that was not on disk.
//! After a power loss it may trail by up to those 100 ms; records lost in
//! them to damage at the same time would be reported as a torn write.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::Path;

use super::writer::write_all_at;

const MAGIC: &[u8; 8] = b"ARDURBL\0";
const COPY: usize = 24;

/// The watermark file, open for updates.
pub struct Watermark {
    file: File,
    value: u64,
    /// Written since the last sync.
    unsynced: bool,
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
        let value = read(path).map_or(0, |(value, _)| value);
        Ok(Watermark {
            file,
            value,
            unsynced: false,
        })
    }

    /// Records that every record below `seq` is durable (never moves back).
    pub fn advance(&mut self, seq: u64) -> io::Result<()> {
        if seq <= self.value {
            return Ok(());
        }
        let copy = encode(seq);
        write_all_at(&self.file, &copy, 0)?;
        write_all_at(&self.file, &copy, COPY as u64)?;
        self.value = seq;
        self.unsynced = true;
        Ok(())
    }

    /// Whether an update waits to be synced.
    pub fn unsynced(&self) -> bool {
        self.unsynced
    }

    /// Syncs the last update to disk.
    pub fn sync(&mut self) -> io::Result<()> {
        self.file.sync_data()?;
        self.unsynced = false;
        Ok(())
    }
}

fn encode(seq: u64) -> [u8; COPY] {
    let mut bytes = [0u8; COPY];
    bytes[0..8].copy_from_slice(MAGIC);
    bytes[8..16].copy_from_slice(&seq.to_le_bytes());
    let crc = crc32c::crc32c(&bytes[0..16]);
    bytes[16..20].copy_from_slice(&crc.to_le_bytes());
    bytes
}

fn decode(bytes: &[u8]) -> Option<u64> {
    let crc = u32::from_le_bytes(bytes.get(16..20)?.try_into().ok()?);
    (bytes.len() == COPY && &bytes[0..8] == MAGIC && crc == crc32c::crc32c(&bytes[0..16]))
        .then(|| u64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes")))
}

/// The watermark at `path` (`0` if there is none yet), with a warning if
/// a copy is damaged; `Err` saying why if no copy can be read.
pub fn read(path: &Path) -> Result<(u64, Option<String>), String> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((0, None)),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    if bytes.is_empty() {
        return Ok((0, None));
    }
    let copies = [
        bytes.get(..COPY).and_then(decode),
        bytes.get(COPY..).and_then(decode),
    ];
    match copies {
        [Some(a), Some(b)] if bytes.len() == 2 * COPY => Ok((a.max(b), None)),
        // Written before there were two copies.
        [Some(a), None] if bytes.len() == COPY => Ok((a, None)),
        [None, None] => Err(format!("{} is damaged (both copies)", path.display())),
        [a, b] => Ok((
            a.max(b).expect("one copy reads"),
            Some(format!(
                "{} is damaged (one of its two copies; the other is used)",
                path.display()
            )),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_never_moves_back_and_survives_a_damaged_copy() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("durable");
        assert_eq!(read(&path), Ok((0, None)));
        let mut mark = Watermark::open(&path).unwrap();
        assert_eq!(read(&path), Ok((0, None)), "an empty new file reads as 0");
        mark.advance(42).unwrap();
        assert_eq!(read(&path), Ok((42, None)));
        mark.advance(7).unwrap();
        mark.advance(50).unwrap();
        assert!(mark.unsynced());
        mark.sync().unwrap();
        assert_eq!(read(&path), Ok((50, None)));
        assert_eq!(Watermark::open(&path).unwrap().value, 50);
        // One copy damaged: the other still reads, and the damage is said.
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[9] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let (value, warning) = read(&path).unwrap();
        assert_eq!(value, 50, "the other copy holds the same value");
        assert!(warning.unwrap().contains("one of its two copies"));
        bytes[COPY + 9] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        assert!(read(&path).unwrap_err().contains("both copies"));
    }
}
