//! Where a file source is in each of its files, kept in its
//! [`CursorFile`](crate::ingest::cursor::CursorFile) only once the events
//! of the lines before each position are durable in the spool.
//!
//! A file is known by its device and inode, which survive a rename, and by
//! a fingerprint of its first bytes ([`Head`]), which tells a reused inode
//! from the file that had it, and a copy (`copytruncate`) from a new file.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::ingest::cursor::CursorState;

/// Bytes of a file's beginning its fingerprint covers.
pub const HEAD_BYTES: u64 = 1024;

/// How many truncated generations are remembered to recognise their copy.
pub const GHOSTS: usize = 32;

/// The fingerprint of a file's first `len` bytes (up to [`HEAD_BYTES`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Head {
    /// Bytes covered (fewer than [`HEAD_BYTES`] while the file is shorter).
    pub len: u64,
    /// Hex SHA-256 of them.
    pub sha256: String,
}

impl Head {
    /// The fingerprint of `bytes` (the file's first ones).
    pub fn of(bytes: &[u8]) -> Head {
        Head {
            len: bytes.len() as u64,
            sha256: hex::encode(Sha256::digest(bytes)),
        }
    }

    /// Whether it covers nothing (an empty file), so tells nothing apart.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// How far one file was read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    /// Its device number.
    pub dev: u64,
    /// Its inode number.
    pub ino: u64,
    /// Where it was last seen (it may have been renamed since).
    pub path: PathBuf,
    /// Bytes read: every line before it is in the spool (or refused and
    /// kept).
    pub offset: u64,
    /// Its fingerprint when last read.
    pub head: Head,
    /// The fingerprint of the KiB before `offset`: a file truncated and
    /// written again past the position (same first bytes, other lines) is
    /// told by it, and so is a copy of another generation.
    #[serde(default, skip_serializing_if = "Head::is_empty")]
    pub before: Head,
    /// Reading is inside a line longer than `max_line_bytes`, refused
    /// already: the bytes up to its end are skipped.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub skipping: bool,
}

/// A generation of a file that was truncated in place (`copytruncate`):
/// its copy, when it shows up, is read from where the original was left.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ghost {
    /// The truncated generation's fingerprint.
    pub head: Head,
    /// How far it was read.
    pub offset: u64,
    /// The fingerprint of the KiB before `offset`.
    #[serde(default, skip_serializing_if = "Head::is_empty")]
    pub before: Head,
    /// Whether `offset` is inside a refused overlong line.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub skipping: bool,
    /// Where it was.
    pub path: PathBuf,
}

/// Everything a file source remembers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// The files being read.
    pub files: Vec<Position>,
    /// Truncated generations whose copy was not seen yet, newest last.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ghosts: Vec<Ghost>,
}

impl CursorState for Cursor {
    const VERSION: u32 = 1;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::cursor::{CursorFile, Loaded};

    fn position() -> Position {
        Position {
            dev: 1,
            ino: 2,
            path: "/var/log/a.log".into(),
            offset: 42,
            head: Head::of(b"{\"id\":1}\n"),
            before: Head::of(b"{\"id\":1}\n"),
            skipping: false,
        }
    }

    #[test]
    fn a_saved_cursor_is_read_back_whole() {
        let dir = tempfile::tempdir().unwrap();
        let file = CursorFile::new(&dir.path().join("sources/app"));
        assert!(matches!(file.load().unwrap(), Loaded::Fresh));
        let cursor = Cursor {
            files: vec![position()],
            ghosts: vec![Ghost {
                head: Head::of(b"x"),
                offset: 7,
                before: Head::default(),
                skipping: true,
                path: "/var/log/a.log".into(),
            }],
        };
        file.save(&cursor).unwrap();
        match file.load().unwrap() {
            Loaded::Cursor(read) => assert_eq!(read, cursor),
            _ => panic!("the cursor was not read back"),
        }
        assert!(!file.path().with_extension("json.tmp").exists());
    }

    /// A torn or foreign cursor is never trusted, and never deleted: it is
    /// moved aside and the files are read again (copies, not a loss).
    #[test]
    fn an_unreadable_cursor_is_moved_aside_not_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let file = CursorFile::<Cursor>::new(dir.path());
        for bad in [
            &b"{\"version\":1,\"files\":[{\"dev\":1"[..],
            b"{\"version\":99,\"files\":[]}",
            b"\xff\xfe",
        ] {
            std::fs::write(file.path(), bad).unwrap();
            match file.load().unwrap() {
                Loaded::Unreadable { aside, error } => {
                    assert_eq!(std::fs::read(&aside).unwrap(), bad, "{error}");
                    std::fs::remove_file(aside).unwrap();
                }
                _ => panic!("{:?} was trusted", String::from_utf8_lossy(bad)),
            }
            assert!(!file.path().exists());
        }
    }
}
