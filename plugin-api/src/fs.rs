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

/// The granted directory.
#[derive(Debug)]
pub struct GrantedDir {
    path: PathBuf,
    #[cfg(target_arch = "wasm32")]
    dir: wasi::Descriptor,
}

/// A file in the granted directory, read and written at explicit offsets.
#[derive(Debug)]
pub struct DirFile {
    #[cfg(target_arch = "wasm32")]
    file: wasi::Descriptor,
    #[cfg(not(target_arch = "wasm32"))]
    file: std::fs::File,
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
        #[cfg(target_arch = "wasm32")]
        {
            let dir = wasi::preopened(path)?;
            Ok(GrantedDir {
                path: path.to_owned(),
                dir,
            })
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            if !std::fs::metadata(path)?.is_dir() {
                return Err(io::Error::new(
                    io::ErrorKind::NotADirectory,
                    format!("{} is not a directory", path.display()),
                ));
            }
            Ok(GrantedDir {
                path: path.to_owned(),
            })
        }
    }

    /// The directory's path as the plugin sees it (for messages).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The names of the regular files in the directory, in no order.
    pub fn file_names(&self) -> io::Result<Vec<String>> {
        #[cfg(target_arch = "wasm32")]
        {
            wasi::file_names(&self.dir)
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            let mut names = Vec::new();
            for entry in std::fs::read_dir(&self.path)? {
                let entry = entry?;
                if entry.file_type()?.is_file()
                    && let Ok(name) = entry.file_name().into_string()
                {
                    names.push(name);
                }
            }
            Ok(names)
        }
    }

    /// Creates a file that must not exist yet.
    pub fn create_new(&self, name: &str) -> io::Result<DirFile> {
        check_name(name)?;
        #[cfg(target_arch = "wasm32")]
        {
            Ok(DirFile {
                file: wasi::open(&self.dir, name, true)?,
            })
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(self.path.join(name))?;
            Ok(DirFile { file })
        }
    }

    /// Opens an existing file for reading and writing.
    pub fn open_file(&self, name: &str) -> io::Result<DirFile> {
        check_name(name)?;
        #[cfg(target_arch = "wasm32")]
        {
            Ok(DirFile {
                file: wasi::open(&self.dir, name, false)?,
            })
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(self.path.join(name))?;
            Ok(DirFile { file })
        }
    }
}

impl DirFile {
    /// The file's length in bytes.
    pub fn len(&self) -> io::Result<u64> {
        #[cfg(target_arch = "wasm32")]
        {
            wasi::len(&self.file)
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            Ok(self.file.metadata()?.len())
        }
    }

    /// Whether the file is empty.
    pub fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Writes all of `bytes` at `offset`.
    pub fn write_all_at(&self, mut bytes: &[u8], mut offset: u64) -> io::Result<()> {
        while !bytes.is_empty() {
            let written = self.write_at(bytes, offset)?;
            if written == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            bytes = &bytes[written..];
            offset += written as u64;
        }
        Ok(())
    }

    fn write_at(&self, bytes: &[u8], offset: u64) -> io::Result<usize> {
        #[cfg(target_arch = "wasm32")]
        {
            wasi::write_at(&self.file, bytes, offset)
        }
        #[cfg(all(not(target_arch = "wasm32"), unix))]
        {
            std::os::unix::fs::FileExt::write_at(&self.file, bytes, offset)
        }
        #[cfg(all(not(target_arch = "wasm32"), not(unix)))]
        {
            use std::io::{Seek, SeekFrom, Write};
            let mut file = &self.file;
            file.seek(SeekFrom::Start(offset))?;
            file.write(bytes)
        }
    }

    /// Reads up to `len` bytes at `offset` (fewer at the end of the file).
    pub fn read_at(&self, len: usize, offset: u64) -> io::Result<Vec<u8>> {
        #[cfg(target_arch = "wasm32")]
        {
            wasi::read_at(&self.file, len, offset)
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            use std::io::{Read, Seek, SeekFrom};
            let mut file = &self.file;
            file.seek(SeekFrom::Start(offset))?;
            let mut out = Vec::with_capacity(len);
            file.take(len as u64).read_to_end(&mut out)?;
            Ok(out)
        }
    }

    /// Cuts the file to `len` bytes.
    pub fn set_len(&self, len: u64) -> io::Result<()> {
        #[cfg(target_arch = "wasm32")]
        {
            wasi::set_len(&self.file, len)
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            self.file.set_len(len)
        }
    }

    /// Waits until the file's data is on disk.
    pub fn sync_data(&self) -> io::Result<()> {
        #[cfg(target_arch = "wasm32")]
        {
            wasi::sync_data(&self.file)
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            self.file.sync_data()
        }
    }
}

#[cfg(target_arch = "wasm32")]
mod wasi {
    use std::io;
    use std::path::Path;

    pub use wasip2::filesystem::types::Descriptor;
    use wasip2::filesystem::types::{
        DescriptorFlags, DescriptorType, ErrorCode, OpenFlags, PathFlags,
    };

    pub fn preopened(path: &Path) -> io::Result<Descriptor> {
        let wanted = path.to_string_lossy();
        wasip2::filesystem::preopens::get_directories()
            .into_iter()
            .find(|(_, name)| *name == wanted)
            .map(|(dir, _)| dir)
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("{wanted} is not a directory the relay granted"),
                )
            })
    }

    pub fn file_names(dir: &Descriptor) -> io::Result<Vec<String>> {
        let stream = dir.read_directory().map_err(error)?;
        let mut names = Vec::new();
        while let Some(entry) = stream.read_directory_entry().map_err(error)? {
            if entry.type_ == DescriptorType::RegularFile {
                names.push(entry.name);
            }
        }
        Ok(names)
    }

    pub fn open(dir: &Descriptor, name: &str, create_new: bool) -> io::Result<Descriptor> {
        let open = if create_new {
            OpenFlags::CREATE | OpenFlags::EXCLUSIVE
        } else {
            OpenFlags::empty()
        };
        dir.open_at(
            PathFlags::empty(),
            name,
            open,
            DescriptorFlags::READ | DescriptorFlags::WRITE,
        )
        .map_err(error)
    }

    pub fn len(file: &Descriptor) -> io::Result<u64> {
        Ok(file.stat().map_err(error)?.size)
    }

    pub fn write_at(file: &Descriptor, bytes: &[u8], offset: u64) -> io::Result<usize> {
        Ok(file.write(bytes, offset).map_err(error)? as usize)
    }

    pub fn read_at(file: &Descriptor, len: usize, offset: u64) -> io::Result<Vec<u8>> {
        let mut out = Vec::with_capacity(len);
        while out.len() < len {
            let (chunk, end) = file
                .read((len - out.len()) as u64, offset + out.len() as u64)
                .map_err(error)?;
            out.extend_from_slice(&chunk);
            if end || chunk.is_empty() {
                break;
            }
        }
        Ok(out)
    }

    pub fn set_len(file: &Descriptor, len: u64) -> io::Result<()> {
        file.set_size(len).map_err(error)
    }

    pub fn sync_data(file: &Descriptor) -> io::Result<()> {
        file.sync_data().map_err(error)
    }

    fn error(code: ErrorCode) -> io::Error {
        use io::ErrorKind as K;
        let kind = match code {
            ErrorCode::NoEntry => K::NotFound,
            ErrorCode::Exist => K::AlreadyExists,
            ErrorCode::Access | ErrorCode::NotPermitted => K::PermissionDenied,
            ErrorCode::InsufficientSpace => K::StorageFull,
            ErrorCode::Quota => K::QuotaExceeded,
            ErrorCode::ReadOnly => K::ReadOnlyFilesystem,
            ErrorCode::IsDirectory => K::IsADirectory,
            ErrorCode::NotDirectory => K::NotADirectory,
            ErrorCode::Invalid | ErrorCode::NameTooLong => K::InvalidInput,
            ErrorCode::Interrupted => K::Interrupted,
            ErrorCode::FileTooLarge => K::FileTooLarge,
            _ => K::Other,
        };
        io::Error::new(kind, format!("{code:?}"))
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
