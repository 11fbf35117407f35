//! What `verify` reads: export files as a destination left them — plain
//! NDJSON, gzip or zstd (told apart by their first bytes, since a bucket
//! mirrored to disk may have lost its names' extensions) — and
//! directories of them, walked in name order. Name order need not be write
//! order (S3 object keys carry their first event's time): `verify` judges
//! order only within a file.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

/// Files inside a directory that are read: what the exporters write.
const EXPORT_SUFFIXES: &[&str] = &[
    ".ndjson",
    ".jsonl",
    ".json",
    ".ndjson.gz",
    ".jsonl.gz",
    ".json.gz",
    ".ndjson.zst",
    ".jsonl.zst",
    ".json.zst",
    ".gz",
    ".zst",
];

/// A line longer than this is not an event (the relay refuses envelopes
/// far smaller); reading stops the file there instead of filling memory.
pub const MAX_LINE: usize = 16 << 20;

/// The files `paths` name: each file as given, each directory's export
/// files (recursively, hidden ones left out) in name order. Every path
/// that cannot be read is named, all at once.
pub fn expand(paths: &[PathBuf]) -> Result<Vec<PathBuf>, Vec<String>> {
    let mut files = Vec::new();
    let mut errors = Vec::new();
    for path in paths {
        match std::fs::metadata(path) {
            Ok(meta) if meta.is_dir() => walk(path, &mut files, &mut errors),
            Ok(meta) if meta.is_file() => files.push(path.clone()),
            Ok(_) => errors.push(format!(
                "{}: not a regular file (a device, pipe or socket is never an export)",
                path.display()
            )),
            Err(error) => errors.push(format!("{}: {error}", path.display())),
        }
    }
    if errors.is_empty() {
        Ok(files)
    } else {
        Err(errors)
    }
}

fn walk(dir: &Path, files: &mut Vec<PathBuf>, errors: &mut Vec<String>) {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) => return errors.push(format!("{}: {error}", dir.display())),
    };
    let mut found: Vec<(PathBuf, bool)> = Vec::new();
    for entry in entries {
        // Directories are walked only when they are directories, not
        // links to one (a link loop would never end); a link to a file is
        // read only if the file is a regular one (not /dev/urandom).
        match entry.and_then(|e| Ok((e.path(), e.file_type()?))) {
            Ok((path, kind)) => {
                let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
                let name = name.unwrap_or_default();
                if name.starts_with('.') {
                    continue;
                }
                let is_dir = kind.is_dir();
                let regular = kind.is_file()
                    || kind.is_symlink() && std::fs::metadata(&path).is_ok_and(|m| m.is_file());
                if is_dir || regular && EXPORT_SUFFIXES.iter().any(|s| name.ends_with(s)) {
                    found.push((path, is_dir));
                }
            }
            Err(error) => errors.push(format!("{}: {error}", dir.display())),
        }
    }
    found.sort();
    for (path, is_dir) in found {
        if is_dir {
            walk(&path, files, errors);
        } else {
            files.push(path);
        }
    }
}

/// Calls `each` with every line of `path` (1-based numbers, the newline
/// and a trailing `\r` cut off), decompressing as its first bytes say.
pub fn read_lines(path: &Path, mut each: impl FnMut(u32, &[u8])) -> std::io::Result<()> {
    let mut file = BufReader::with_capacity(1 << 20, File::open(path)?);
    let magic = file.fill_buf()?;
    let reader: Box<dyn Read> = if magic.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::bufread::MultiGzDecoder::new(file))
    } else if magic.starts_with(&ZSTD_MAGIC) || is_skippable(magic) {
        Box::new(ZstdFrames::new(file))
    } else {
        Box::new(file)
    };
    let mut reader = BufReader::with_capacity(1 << 20, reader);
    let mut line = Vec::with_capacity(4096);
    let mut number = 0u32;
    loop {
        line.clear();
        let read = (&mut reader)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut line)?;
        if read == 0 {
            return Ok(());
        }
        number = number.saturating_add(1);
        if line.len() > MAX_LINE {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("line {number} is longer than {} MiB", MAX_LINE >> 20),
            ));
        }
        let mut text = &line[..];
        if let Some(rest) = text.strip_suffix(b"\n") {
            text = rest;
        }
        if let Some(rest) = text.strip_suffix(b"\r") {
            text = rest;
        }
        each(number, text);
    }
}

/// What begins a zstd frame.
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// Whether `bytes` begin a zstd skippable frame (magic 0x184D2A50 to
/// 0x184D2A5F, little-endian: RFC 8878 §3.1.2), which `pzstd` and
/// seekable-format writers put between data frames.
fn is_skippable(bytes: &[u8]) -> bool {
    matches!(bytes, [first, 0x2a, 0x4d, 0x18, ..] if first & 0xf0 == 0x50)
}

/// Every frame of a zstd file, one after another, as `zstd -d` reads
/// them: a file of several frames is not cut at the first (what follows
/// would go unchecked), skippable frames are stepped over, and bytes after
/// the last frame that are not one are an error, not ignored.
struct ZstdFrames<R: Read> {
    frame: Option<ruzstd::decoding::StreamingDecoder<Lookahead<R>, ruzstd::decoding::FrameDecoder>>,
    source: Option<Lookahead<R>>,
}

impl<R: Read> ZstdFrames<R> {
    fn new(source: R) -> Self {
        ZstdFrames {
            frame: None,
            source: Some(Lookahead {
                head: Vec::new(),
                inner: source,
            }),
        }
    }
}

/// A reader that can look at the next bytes before they are read: the
/// magic of the next frame may straddle the end of a read buffer.
struct Lookahead<R> {
    head: Vec<u8>,
    inner: R,
}

impl<R: Read> Lookahead<R> {
    /// The next `n` bytes (fewer only at the end of the input), not consumed.
    fn peek(&mut self, n: usize) -> std::io::Result<&[u8]> {
        while self.head.len() < n {
            let mut byte = [0u8; 64];
            let want = (n - self.head.len()).min(byte.len());
            let read = self.inner.read(&mut byte[..want])?;
            if read == 0 {
                break;
            }
            self.head.extend_from_slice(&byte[..read]);
        }
        Ok(&self.head[..self.head.len().min(n)])
    }
}

impl<R: Read> Read for Lookahead<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.head.is_empty() {
            return self.inner.read(buf);
        }
        let n = self.head.len().min(buf.len());
        buf[..n].copy_from_slice(&self.head[..n]);
        self.head.drain(..n);
        Ok(n)
    }
}

impl<R: Read> Read for ZstdFrames<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let invalid = |e: String| std::io::Error::new(std::io::ErrorKind::InvalidData, e);
        loop {
            if let Some(frame) = &mut self.frame {
                let read = frame.read(buf)?;
                if read > 0 || buf.is_empty() {
                    return Ok(read);
                }
                let frame = self.frame.take().expect("checked above");
                self.source = Some(frame.into_inner());
            }
            let Some(mut source) = self.source.take() else {
                return Ok(0);
            };
            let next = source.peek(4)?;
            if next.is_empty() {
                return Ok(0);
            }
            if is_skippable(next) {
                let mut header = [0u8; 8];
                source.read_exact(&mut header)?;
                let size = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
                let skipped =
                    std::io::copy(&mut (&mut source).take(size.into()), &mut std::io::sink())?;
                if skipped < u64::from(size) {
                    return Err(invalid(format!(
                        "a zstd skippable frame of {size} bytes ends after {skipped}"
                    )));
                }
                self.source = Some(source);
                continue;
            }
            if !next.starts_with(&ZSTD_MAGIC) {
                return Err(invalid(
                    "bytes after the last zstd frame are not a zstd frame".into(),
                ));
            }
            let frame = ruzstd::decoding::StreamingDecoder::new(source)
                .map_err(|e| invalid(format!("a zstd frame: {e}")))?;
            self.frame = Some(frame);
        }
    }
}
