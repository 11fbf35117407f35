//! Where a file source is in each of its files, kept in
//! `<data_dir>/sources/<name>/cursor.json` and replaced whole (write a
//! temporary file, sync it, rename it over, sync the directory) only once
//! the events of the lines before each position are durable in the spool.
//!
//! A file is known by its device and inode, which survive a rename, and by
//! a fingerprint of its first bytes ([`Head`]), which tells a reused inode
//! from the file that had it, and a copy (`copytruncate`) from a new file.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Bytes of a file's beginning its fingerprint covers.
pub const HEAD_BYTES: u64 = 1024;

/// The format written; a cursor of another version is not read.
const VERSION: u32 = 1;

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
    /// The format.
    pub version: u32,
    /// The files being read.
    pub files: Vec<Position>,
    /// Truncated generations whose copy was not seen yet, newest last.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ghosts: Vec<Ghost>,
}

/// What was found where the cursor is kept.
pub enum Loaded {
    /// No cursor: the source has never read (or its cursor was moved away).
    Fresh,
    /// The cursor.
    Cursor(Cursor),
    /// It could not be read; it was moved aside to `aside` so that the
    /// files are read again from their beginning (copies, never a loss).
    Unreadable {
        /// Why.
        error: String,
        /// Where it is now.
        aside: PathBuf,
    },
}

/// The cursor file of a source whose state lives in `dir`.
#[derive(Clone)]
pub struct CursorFile {
    path: PathBuf,
}

impl CursorFile {
    /// The cursor in `dir` (`cursor.json`).
    pub fn new(dir: &Path) -> Self {
        CursorFile {
            path: dir.join("cursor.json"),
        }
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads it. A cursor that cannot be parsed (or is of another version)
    /// is moved aside, never trusted: reading again from the beginning
    /// makes copies, which `(source, id)` tells apart; skipping would lose.
    pub fn load(&self) -> std::io::Result<Loaded> {
        let text = match std::fs::read(&self.path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Loaded::Fresh),
            Err(error) => return Err(error),
        };
        let error = match serde_json::from_slice::<Cursor>(&text) {
            Ok(cursor) if cursor.version == VERSION => return Ok(Loaded::Cursor(cursor)),
            Ok(cursor) => format!(
                "it is of version {}, this relay reads version {VERSION}",
                cursor.version
            ),
            Err(error) => error.to_string(),
        };
        let aside = self.path.with_extension(format!(
            "json.unreadable-{}",
            jiff::Timestamp::now().as_second()
        ));
        std::fs::rename(&self.path, &aside)?;
        Ok(Loaded::Unreadable { error, aside })
    }

    /// Replaces it with `cursor`, durably: after a crash the file is the
    /// old cursor or the new one, whole.
    pub fn save(&self, cursor: &Cursor) -> std::io::Result<()> {
        let dir = self.path.parent().expect("the cursor is in a directory");
        std::fs::create_dir_all(dir)?;
        let temporary = self.path.with_extension("json.tmp");
        let mut text = serde_json::to_vec(&Cursor {
            version: VERSION,
            ..cursor.clone()
        })
        .expect("a cursor serializes");
        text.push(b'\n');
        let mut file = std::fs::File::create(&temporary)?;
        file.write_all(&text)?;
        file.sync_data()?;
        drop(file);
        std::fs::rename(&temporary, &self.path)?;
        std::fs::File::open(dir)?.sync_all()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
            version: VERSION,
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
        let file = CursorFile::new(dir.path());
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
