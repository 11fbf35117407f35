//! Files in the one directory the operator granted (`grant_dir`).
//!
//! ```no_run
//! # use auditrelay_plugin_api::{InitContext, fs::GrantedDir};
//! # fn f(ctx: &InitContext) -> std::io::Result<()> {
//! let dir = GrantedDir::open(ctx)?;
//! let file = dir.create_new("audit-1.ndjson")?;
//! file.write_all_at(b"{}\n", 0)?;
//! file.sync_data()?;
//! # Ok(()) }
//! ```
//!
//! Inside the sandbox this talks to `wasi:filesystem` directly, with
//! positional writes the relay performs in one step; Rust's `std::fs`
//! there goes through a stream interface that costs a thread handoff per
//! write (about 20 µs). Natively it is `std::fs`. Files are named by plain
//! names: the directory has no subdirectories for plugins, and nothing
//! outside it exists for them.

use std::io;
use std::path::{Path, PathBuf};

use crate::plugin::InitContext;

// One implementation per platform, behind the same private interface.
#[cfg(not(target_arch = "wasm32"))]
#[path = "native.rs"]
mod platform;
#[cfg(target_arch = "wasm32")]
#[path = "wasi.rs"]
mod platform;

/// The granted directory.
#[derive(Debug)]
pub struct GrantedDir {
    path: PathBuf,
    dir: platform::Dir,
}

/// A file in the granted directory, read and written at explicit offsets.
#[derive(Debug)]
pub struct DirFile {
    file: platform::File,
}

fn check_name(name: &str) -> io::Result<()> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') || name.contains('\\') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{name:?} is not a plain file name"),
        ));
    }
    Ok(())
}

impl GrantedDir {
    /// The directory granted to this instance, or an error saying to set
    /// `grant_dir`.
    pub fn open(ctx: &InitContext) -> io::Result<GrantedDir> {
        let path = ctx.granted_dir.clone().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "this plugin writes into a directory the relay grants it: set grant_dir in [plugins.{}]",
                    ctx.instance
                ),
            )
        })?;
        Self::at(&path)
    }

    /// The directory at `path` (the granted directory's path as the plugin
    /// sees it).
    pub fn at(path: &Path) -> io::Result<GrantedDir> {
        Ok(GrantedDir {
            dir: platform::open_dir(path)?,
            path: path.to_owned(),
        })
    }

    /// The directory's path as the plugin sees it (for messages).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The names of the regular files in the directory, in no order.
    pub fn file_names(&self) -> io::Result<Vec<String>> {
        self.dir.file_names(&self.path)
    }

    /// Creates a file that must not exist yet.
    pub fn create_new(&self, name: &str) -> io::Result<DirFile> {
        check_name(name)?;
        let file = self.dir.open(&self.path, name, true)?;
        Ok(DirFile { file })
    }

    /// Opens an existing file for reading and writing.
    pub fn open_file(&self, name: &str) -> io::Result<DirFile> {
        check_name(name)?;
        let file = self.dir.open(&self.path, name, false)?;
        Ok(DirFile { file })
    }
}

impl DirFile {
    /// The file's length in bytes.
    pub fn len(&self) -> io::Result<u64> {
        self.file.len()
    }

    /// Whether the file is empty.
    pub fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Writes all of `bytes` at `offset`.
    pub fn write_all_at(&self, mut bytes: &[u8], mut offset: u64) -> io::Result<()> {
        while !bytes.is_empty() {
            let written = self.file.write_at(bytes, offset)?;
            if written == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            bytes = &bytes[written..];
            offset += written as u64;
        }
        Ok(())
    }

    /// Reads up to `len` bytes at `offset` (fewer at the end of the file).
    pub fn read_at(&self, len: usize, offset: u64) -> io::Result<Vec<u8>> {
        self.file.read_at(len, offset)
    }

    /// Cuts the file to `len` bytes.
    pub fn set_len(&self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }

    /// Waits until the file's data is on disk.
    pub fn sync_data(&self) -> io::Result<()> {
        self.file.sync_data()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_written_and_read_at_offsets() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = GrantedDir::at(tmp.path()).unwrap();
        let file = dir.create_new("a.ndjson").unwrap();
        file.write_all_at(b"hello\nworld\n", 0).unwrap();
        file.write_all_at(b"WORLD", 6).unwrap();
        assert_eq!(file.len().unwrap(), 12);
        assert_eq!(file.read_at(100, 6).unwrap(), b"WORLD\n");
        file.set_len(6).unwrap();
        file.sync_data().unwrap();
        assert_eq!(dir.file_names().unwrap(), ["a.ndjson"]);
        assert_eq!(
            dir.create_new("a.ndjson").unwrap_err().kind(),
            io::ErrorKind::AlreadyExists
        );
        assert_eq!(dir.open_file("a.ndjson").unwrap().len().unwrap(), 6);
    }

    #[test]
    fn only_plain_names_are_accepted() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = GrantedDir::at(tmp.path()).unwrap();
        for bad in ["", "..", "../x", "a/b"] {
            assert_eq!(
                dir.create_new(bad).unwrap_err().kind(),
                io::ErrorKind::InvalidInput,
                "{bad}"
            );
        }
        let ctx = InitContext {
            instance: "archive".into(),
            granted_dir: None,
        };
        let err = GrantedDir::open(&ctx).unwrap_err();
        assert!(
            err.to_string()
                .contains("set grant_dir in [plugins.archive]"),
            "{err}"
        );
    }
}
