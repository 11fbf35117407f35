//! The granted directory in a native build: `std::fs`.

use std::io;
use std::path::Path;

/// The directory (named by its path).
#[derive(Debug)]
pub struct Dir;

/// A file opened in it.
#[derive(Debug)]
pub struct File(std::fs::File);

/// The directory at `path`, which must be one.
pub fn open_dir(path: &Path) -> io::Result<Dir> {
    if !std::fs::metadata(path)?.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::NotADirectory,
            format!("{} is not a directory", path.display()),
        ));
    }
    Ok(Dir)
}

impl Dir {
    pub fn file_names(&self, path: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(path)? {
            let entry = entry?;
            if entry.file_type()?.is_file()
                && let Ok(name) = entry.file_name().into_string()
            {
                names.push(name);
            }
        }
        Ok(names)
    }

    pub fn open(&self, path: &Path, name: &str, create_new: bool) -> io::Result<File> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(create_new)
            .open(path.join(name))?;
        Ok(File(file))
    }
}

impl File {
    pub fn len(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }

    #[cfg(unix)]
    pub fn write_at(&self, bytes: &[u8], offset: u64) -> io::Result<usize> {
        std::os::unix::fs::FileExt::write_at(&self.0, bytes, offset)
    }

    #[cfg(not(unix))]
    pub fn write_at(&self, bytes: &[u8], offset: u64) -> io::Result<usize> {
        use std::io::{Seek, SeekFrom, Write};
        let mut file = &self.0;
        file.seek(SeekFrom::Start(offset))?;
        file.write(bytes)
    }

    pub fn read_at(&self, len: usize, offset: u64) -> io::Result<Vec<u8>> {
        use std::io::{Read, Seek, SeekFrom};
        let mut file = &self.0;
        file.seek(SeekFrom::Start(offset))?;
        let mut out = Vec::with_capacity(len);
        file.take(len as u64).read_to_end(&mut out)?;
        Ok(out)
    }

    pub fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }

    pub fn sync_data(&self) -> io::Result<()> {
        self.0.sync_data()
    }
}
