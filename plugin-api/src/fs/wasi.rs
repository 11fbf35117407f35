//! The granted directory inside the sandbox: `wasi:filesystem` directly,
//! with positional reads and writes the relay performs in one step.

use std::io;
use std::path::Path;

use wasip2::filesystem::types::{
    Descriptor, DescriptorFlags, DescriptorType, ErrorCode, OpenFlags, PathFlags,
};

/// A preopened directory.
#[derive(Debug)]
pub struct Dir(Descriptor);

/// A file opened in it.
#[derive(Debug)]
pub struct File(Descriptor);

/// The directory the relay preopened at `path`.
pub fn open_dir(path: &Path) -> io::Result<Dir> {
    let wanted = path.to_string_lossy();
    wasip2::filesystem::preopens::get_directories()
        .into_iter()
        .find(|(_, name)| *name == wanted)
        .map(|(dir, _)| Dir(dir))
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("{wanted} is not a directory the relay granted"),
            )
        })
}

impl Dir {
    pub fn file_names(&self, _path: &Path) -> io::Result<Vec<String>> {
        let stream = self.0.read_directory().map_err(error)?;
        let mut names = Vec::new();
        while let Some(entry) = stream.read_directory_entry().map_err(error)? {
            if entry.type_ == DescriptorType::RegularFile {
                names.push(entry.name);
            }
        }
        Ok(names)
    }

    pub fn open(&self, _path: &Path, name: &str, create_new: bool) -> io::Result<File> {
        let open = if create_new {
            OpenFlags::CREATE | OpenFlags::EXCLUSIVE
        } else {
            OpenFlags::empty()
        };
        self.0
            .open_at(
                PathFlags::empty(),
                name,
                open,
                DescriptorFlags::READ | DescriptorFlags::WRITE,
            )
            .map(File)
            .map_err(error)
    }
}

impl File {
    pub fn len(&self) -> io::Result<u64> {
        Ok(self.0.stat().map_err(error)?.size)
    }

    pub fn write_at(&self, bytes: &[u8], offset: u64) -> io::Result<usize> {
        Ok(self.0.write(bytes, offset).map_err(error)? as usize)
    }

    pub fn read_at(&self, len: usize, offset: u64) -> io::Result<Vec<u8>> {
        let mut out = Vec::with_capacity(len);
        while out.len() < len {
            let (chunk, end) = self
                .0
                .read((len - out.len()) as u64, offset + out.len() as u64)
                .map_err(error)?;
            out.extend_from_slice(&chunk);
            if end || chunk.is_empty() {
                break;
            }
        }
        Ok(out)
    }

    pub fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_size(len).map_err(error)
    }

    pub fn sync_data(&self) -> io::Result<()> {
        self.0.sync_data().map_err(error)
    }
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
