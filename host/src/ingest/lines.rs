//! Append-only files of lines that a source keeps (its refused records,
//! its used signatures): opened so that a line torn by a failed write is
//! ended first, and the next line starts on its own.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

/// `path` opened for appending (created, with its directory, if missing),
/// a torn last line ended with a newline.
pub(crate) fn open_for_append(path: &Path) -> std::io::Result<File> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .read(true)
        .open(path)?;
    if ends_mid_line(&mut file)? {
        file.write_all(b"\n")?;
    }
    Ok(file)
}

/// Whether `file` is non-empty and its last byte is not a newline.
fn ends_mid_line(file: &mut File) -> std::io::Result<bool> {
    if file.metadata()?.len() == 0 {
        return Ok(false);
    }
    file.seek(SeekFrom::End(-1))?;
    let mut last = [0u8; 1];
    file.read_exact(&mut last)?;
    Ok(last[0] != b'\n')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_torn_last_line_is_ended_before_the_next_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/lines");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, b"one\ntw").unwrap();
        open_for_append(&path)
            .unwrap()
            .write_all(b"three\n")
            .unwrap();
        open_for_append(&path)
            .unwrap()
            .write_all(b"four\n")
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "one\ntw\nthree\nfour\n"
        );
        open_for_append(&dir.path().join("new/lines")).unwrap();
    }
}
