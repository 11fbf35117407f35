//! `file`: appends events as NDJSON (one canonical envelope per line) to
//! files in the one directory the operator granted.
//!
//! The plugin sees no other part of the filesystem: the relay opens the
//! instance's `grant_dir` and hands it in as a sandboxed directory. Files are
//! named `<prefix>-<UTC time>-<nn>.ndjson` (`nn` tells apart files started in
//! the same millisecond), so names sort by age; a new file is
//! started when the current one reaches `rotate_bytes` or `rotate_after`.
//! A batch is written with one write and, by default, synced to disk before
//! it is acknowledged; a failed write is cut back off, so files only ever
//! hold whole lines. On start the newest file is resumed if it has room,
//! after trimming a torn last line left by a crash (that batch is
//! redelivered, since it was never acknowledged).
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `prefix` | `"audit"` | File name prefix (letters, digits, `-`, `_`). |
//! | `rotate_bytes` | `"64MiB"` | Start a new file once the current one is this big. |
//! | `rotate_after` | `"1h"` | Start a new file once the current one is this old. |
//! | `fsync` | `true` | Sync each batch to disk before acknowledging it. |

use std::path::PathBuf;
use std::time::{Duration, Instant};

use auditrelay_plugin_api::fs::{DirFile, GrantedDir};
use auditrelay_plugin_api::prelude::*;
use bytesize::ByteSize;
use serde::Deserialize;

/// How far back from the end of a resumed file to look for the last newline.
const TAIL_SCAN_BYTES: u64 = 2 * 1024 * 1024;

/// The `config` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// File name prefix.
    #[serde(default = "default_prefix")]
    pub prefix: String,
    /// Size at which a new file is started.
    #[serde(default = "default_rotate_bytes")]
    pub rotate_bytes: ByteSize,
    /// Age at which a new file is started.
    #[serde(
        default = "default_rotate_after",
        deserialize_with = "settings::duration"
    )]
    pub rotate_after: Duration,
    /// Sync each batch to disk before acknowledging it.
    #[serde(default = "default_true")]
    pub fsync: bool,
}

fn default_prefix() -> String {
    "audit".into()
}

fn default_rotate_bytes() -> ByteSize {
    ByteSize::mib(64)
}

fn default_rotate_after() -> Duration {
    Duration::from_secs(3600)
}

fn default_true() -> bool {
    true
}

/// The exporter; see the crate docs.
pub struct FileExporter {
    dir: GrantedDir,
    prefix: String,
    rotate_bytes: u64,
    rotate_after: Duration,
    fsync: bool,
    current: Option<OpenFile>,
}

struct OpenFile {
    name: String,
    file: DirFile,
    len: u64,
    opened: Instant,
}

impl FileExporter {
    /// The path of the file being written, if any.
    pub fn current_path(&self) -> Option<PathBuf> {
        self.current.as_ref().map(|f| self.dir.path().join(&f.name))
    }

    fn file_name_ok(&self, name: &str) -> bool {
        name.starts_with(&format!("{}-", self.prefix)) && name.ends_with(".ndjson")
    }

    /// Reopens the newest file if it has room; trims a torn last line.
    fn resume_newest(&mut self) -> std::io::Result<()> {
        let newest = self
            .dir
            .file_names()?
            .into_iter()
            .filter(|name| self.file_name_ok(name))
            .max();
        let Some(name) = newest else { return Ok(()) };
        let file = self.dir.open_file(&name)?;
        let len = file.len()?;
        if len >= self.rotate_bytes {
            return Ok(());
        }
        let Some(whole) = whole_lines_len(&file, len)? else {
            host::warn(format!(
                "{name}: no line end in the last {TAIL_SCAN_BYTES} bytes; leaving it and starting a new file"
            ));
            return Ok(());
        };
        if whole < len {
            host::warn(format!(
                "{name}: trimmed a torn last line ({} bytes) left by an interrupted write; that batch will be redelivered",
                len - whole
            ));
            file.set_len(whole)?;
        }
        self.current = Some(OpenFile {
            name,
            file,
            len: whole,
            opened: Instant::now(),
        });
        Ok(())
    }

    fn rotate_if_due(&mut self) -> std::io::Result<()> {
        let due = match &self.current {
            None => true,
            Some(f) => f.len >= self.rotate_bytes || f.opened.elapsed() >= self.rotate_after,
        };
        if !due {
            return Ok(());
        }
        if let Some(old) = self.current.take() {
            old.file.sync_data()?;
        }
        let stamp = jiff::Timestamp::now()
            .strftime("%Y%m%dT%H%M%S%.3fZ")
            .to_string();
        for attempt in 0u32..100 {
            let name = format!("{}-{stamp}-{attempt:02}.ndjson", self.prefix);
            match self.dir.create_new(&name) {
                Ok(file) => {
                    self.current = Some(OpenFile {
                        name,
                        file,
                        len: 0,
                        opened: Instant::now(),
                    });
                    return Ok(());
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
        Err(std::io::Error::other(format!(
            "100 files named {}-{stamp}-*.ndjson exist already; is the clock stuck?",
            self.prefix
        )))
    }
}

/// The length of `file` up to and including its last newline, or `None`
/// if none lies within the last [`TAIL_SCAN_BYTES`].
fn whole_lines_len(file: &DirFile, len: u64) -> std::io::Result<Option<u64>> {
    if len == 0 {
        return Ok(Some(0));
    }
    let start = len.saturating_sub(TAIL_SCAN_BYTES);
    let tail = file.read_at((len - start) as usize, start)?;
    Ok(match tail.iter().rposition(|&b| b == b'\n') {
        Some(at) => Some(start + at as u64 + 1),
        None if start == 0 => Some(0),
        None => None,
    })
}

impl Plugin for FileExporter {
    type Config = Config;

    fn info() -> PluginInfo {
        PluginInfo::new(
            "file",
            env!("CARGO_PKG_VERSION"),
            "Appends events as NDJSON to rotating files in the granted directory",
        )
        .key(ConfigKey::optional(
            "prefix",
            "file name prefix (letters, digits, `-` and `_`): files are `<prefix>-<UTC time>-<nn>.ndjson`",
            "\"audit\"",
        ))
        .key(ConfigKey::optional(
            "rotate_bytes",
            "start a new file once the current one is this big",
            "\"64MiB\"",
        ))
        .key(ConfigKey::optional(
            "rotate_after",
            "start a new file once the current one is this old",
            "\"1h\"",
        ))
        .key(ConfigKey::optional(
            "fsync",
            "sync each batch to disk before acknowledging it (off: a power loss may lose what the relay already forgot)",
            "true",
        ))
    }

    fn init(config: Config, ctx: &InitContext) -> Result<Self, InitError> {
        let dir = GrantedDir::open(ctx).map_err(|e| InitError::new(e.to_string()))?;
        if config.prefix.is_empty()
            || !config
                .prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(InitError::new(
                "config.prefix: use letters, digits, '-' and '_' only",
            ));
        }
        if config.rotate_bytes.as_u64() == 0 || config.rotate_after.is_zero() {
            return Err(InitError::new(
                "config.rotate_bytes and config.rotate_after must be greater than zero",
            ));
        }
        let mut exporter = FileExporter {
            dir,
            prefix: config.prefix,
            rotate_bytes: config.rotate_bytes.as_u64(),
            rotate_after: config.rotate_after,
            fsync: config.fsync,
            current: None,
        };
        exporter.resume_newest().map_err(|e| {
            InitError::new(format!(
                "cannot use the granted directory {}: {e}",
                exporter.dir.path().display()
            ))
        })?;
        Ok(exporter)
    }

    fn deliver(&mut self, events: &[Event<'_>]) -> Result<Delivery, DeliverError> {
        let size: usize = events.iter().map(|e| e.envelope.len() + 1).sum();
        let mut batch = Vec::with_capacity(size);
        for event in events {
            batch.extend_from_slice(event.envelope);
            batch.push(b'\n');
        }
        self.rotate_if_due()?;
        let fsync = self.fsync;
        let current = self.current.as_mut().expect("rotate_if_due opens a file");
        let written = current
            .file
            .write_all_at(&batch, current.len)
            .and_then(|()| {
                if fsync {
                    current.file.sync_data()
                } else {
                    Ok(())
                }
            });
        if let Err(error) = written {
            // Cut the partial batch off so the file keeps whole lines; the
            // relay retries the batch.
            if let Err(trim) = current.file.set_len(current.len) {
                host::error(format!(
                    "{}: could not trim a partial write ({trim}); starting a new file",
                    current.name
                ));
                self.current = None;
            }
            return Err(error.into());
        }
        current.len += batch.len() as u64;
        host::counter_add("bytes_written", batch.len() as u64);
        Ok(Delivery::Accepted)
    }

    fn flush(&mut self) -> Result<(), DeliverError> {
        if let Some(current) = &self.current {
            current.file.sync_data()?;
        }
        Ok(())
    }

    fn shutdown(&mut self) {
        if let Err(error) = self.flush() {
            host::error(format!("flush on shutdown failed: {error}"));
        }
    }
}

export_plugin!(FileExporter);

#[cfg(test)]
mod tests {
    use std::fs::OpenOptions;
    use std::io::Write;
    use std::path::Path;

    use super::*;
    use auditrelay_plugin_api::testing::{Harness, sample_events};

    fn harness(dir: &Path, config: serde_json::Value) -> Harness<FileExporter> {
        Harness::<FileExporter>::builder()
            .granted_dir(dir)
            .config(config)
            .init()
            .unwrap()
    }

    fn ndjson_files(dir: &Path) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        files
    }

    #[test]
    fn writes_canonical_envelopes_one_per_line() {
        let dir = tempfile::tempdir().unwrap();
        let mut h = harness(dir.path(), serde_json::json!({}));
        let events = sample_events(10);
        assert_eq!(h.deliver(&events), Ok(Delivery::Accepted));
        let files = ndjson_files(dir.path());
        assert_eq!(files.len(), 1);
        let text = std::fs::read_to_string(&files[0]).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 10);
        for (line, event) in lines.iter().zip(&events) {
            assert_eq!(line.as_bytes(), event.envelope.as_slice());
        }
        assert_eq!(h.counter("bytes_written"), text.len() as u64);
    }

    #[test]
    fn rotates_by_size() {
        let dir = tempfile::tempdir().unwrap();
        let mut h = harness(dir.path(), serde_json::json!({"rotate_bytes": "1KiB"}));
        for chunk in sample_events(30).chunks(3) {
            h.deliver(chunk).unwrap();
        }
        let files = ndjson_files(dir.path());
        assert!(files.len() > 3, "expected several files, got {files:?}");
        let total: usize = files
            .iter()
            .map(|f| std::fs::read_to_string(f).unwrap().lines().count())
            .sum();
        assert_eq!(total, 30);
    }

    #[test]
    fn resumes_the_newest_file_and_trims_a_torn_line() {
        let dir = tempfile::tempdir().unwrap();
        let events = sample_events(4);
        let mut h = harness(dir.path(), serde_json::json!({}));
        h.deliver(&events[..2]).unwrap();
        let path = h.plugin().current_path().unwrap();
        drop(h);
        // A crash mid-write leaves half a line behind.
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(&events[2].envelope[..40]).unwrap();

        let mut h = harness(dir.path(), serde_json::json!({}));
        assert_eq!(h.plugin().current_path(), Some(path.clone()));
        assert!(
            h.logs()
                .iter()
                .any(|(_, m)| m.contains("trimmed a torn last line"))
        );
        h.deliver(&events[2..]).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&[u8]> = text.lines().map(str::as_bytes).collect();
        let expected: Vec<&[u8]> = events.iter().map(|e| e.envelope.as_slice()).collect();
        assert_eq!(lines, expected);
    }

    #[test]
    fn refuses_to_start_without_a_granted_directory() {
        let err = Harness::<FileExporter>::builder()
            .instance("archive")
            .init()
            .err()
            .unwrap();
        assert!(
            err.0.contains("set grant_dir in [plugins.archive]"),
            "{err}"
        );
    }

    #[test]
    fn bad_sizes_and_durations_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let err = Harness::<FileExporter>::builder()
            .granted_dir(dir.path())
            .config(serde_json::json!({"rotate_after": "soon"}))
            .init()
            .err()
            .unwrap();
        assert!(err.0.starts_with("config.rotate_after:"), "{err}");
        let err = Harness::<FileExporter>::builder()
            .granted_dir(dir.path())
            .config(serde_json::json!({"rotate_bytes": "lots"}))
            .init()
            .err()
            .unwrap();
        assert!(err.0.starts_with("config.rotate_bytes:"), "{err}");
    }
}
