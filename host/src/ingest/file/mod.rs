//! File sources (`[ingest.file.<name>]`): files other systems write their
//! audit lines to, tailed through rotation.
//!
//! One cycle: look at the files ([`files`]: new ones, renamed ones,
//! truncated ones), read the lines past each file's committed position,
//! make them events the way every source does
//! ([`Door`](crate::ingest::foreign::Door): mapped, sorted out, refused
//! lines kept with why in `refused.ndjson`), **wait until the events are
//! durable**, and only then move the positions and save them
//! ([`cursor`]). A crash anywhere before the save reads the same lines
//! again: nothing written to a file is lost, and at worst a line's events
//! are spooled twice, which the spool's `(source, id)` window drops (give
//! the events stable ids: an id in the line, or a mapper's content digest).
//!
//! A partial last line (a writer in the middle of a line) waits for its
//! end; a line longer than `max_line_bytes` is refused and skipped. The
//! source wakes on the OS's change events (inotify, through `notify`) and
//! looks every `poll_interval` whatever it heard, for filesystems that send
//! none (network and some bind mounts).

pub mod cursor;
pub mod files;

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use self::cursor::Cursor;
use self::files::{Files, LineKind};
use crate::config::FileSettings;
use crate::dispatch::backoff::Backoff;
use crate::ingest::cursor::{CursorFile, Loaded};
use crate::ingest::foreign::{Door, start_mapper};
use crate::ingest::refused::RefusedRecords;
use crate::metrics::Via;
use crate::relay::{Relay, SourceMapper, SourceReport};
use crate::runtime::wasm::{ForeignRecord, RecordBatch};

/// Waits between attempts after a failure: 0.1 s doubling to 10 s.
const BACKOFF: Backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
/// The longest a cycle waits for its events to be durable (the positions
/// stay; the next cycle reads the same lines again).
const DURABLE_WITHIN: Duration = Duration::from_secs(30);
/// The longest a cycle waits on the mapper (each call has its own
/// deadline, `mapper.limits.timeout`; a batch that faults is mapped again
/// record by record, which this bounds).
const MAP_WITHIN: Duration = Duration::from_secs(300);

/// One configured file source, read until stopped.
pub struct FileIngest {
    relay: Relay,
    name: String,
    label: String,
    settings: FileSettings,
    /// The relay's data directory: never read, whatever a glob matches
    /// (a glob matching the cursor would feed on itself).
    data_dir: Option<PathBuf>,
    cursor: CursorFile<Cursor>,
    refused: RefusedRecords,
    report: SourceReport,
}

/// Why a cycle did not finish; its lines are read again.
#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error("{0}")]
    Store(#[from] crate::ingest::foreign::StoreFailure),
    #[error("cannot read the files: {0}")]
    Read(std::io::Error),
    #[error("cannot save the cursor {path}: {error} (the lines are read again)")]
    Save { path: String, error: std::io::Error },
}

impl FileIngest {
    /// The source `name`, its state in `<data_dir>/sources/<name>`;
    /// registers it in the relay's status.
    pub fn new(relay: Relay, name: &str, settings: &FileSettings, state_dir: &Path) -> FileIngest {
        let dir = state_dir.join(name);
        let label = format!("file.{name}");
        let report = relay.register_source(label.clone());
        FileIngest {
            relay,
            name: name.to_owned(),
            label,
            settings: settings.clone(),
            data_dir: state_dir.parent().map(Path::to_owned),
            cursor: CursorFile::new(&dir),
            refused: RefusedRecords::new(&dir, name, settings.max_refused_bytes.as_u64()),
            report,
        }
    }

    /// Reads the files until `stop`; the cycle under way when it comes is
    /// finished first (its positions saved).
    pub async fn run(self, stop: CancellationToken) {
        let key = format!("ingest.file.{}", self.name);
        let Ok(mapper) = start_mapper(
            &self.relay,
            &key,
            &self.label,
            self.settings.mapper.as_ref(),
            &self.report,
            "the files are not read",
        )
        .await
        else {
            return;
        };
        let Some(mut files) = self.open().await else {
            return;
        };
        let wake = Arc::new(Notify::new());
        let _watcher = self.settings.watch.then(|| self.watch(&wake)).flatten();
        self.report.update(|s| {
            s.state = "reading";
            s.error = None;
        });
        let mut failures = 0u32;
        while !stop.is_cancelled() {
            let Some((back, cycle)) = self.cycle(files, mapper.as_ref()).await else {
                return;
            };
            files = back;
            self.report.update(|s| {
                s.pending_bytes = Some(files.pending_bytes());
                s.files = Some(files.len() as u64);
            });
            if cycle.is_ok() && failures > 0 {
                failures = 0;
                tracing::info!(source = self.label, "reading again");
                self.report.update(|s| {
                    s.state = "reading";
                    s.error = None;
                });
            }
            let pause = match cycle {
                Ok(Cycle::Full) => continue,
                Ok(Cycle::Idle) => self.settings.poll_interval,
                Err(error) => {
                    failures += 1;
                    tracing::warn!(source = self.label, "{error}; trying again");
                    let error = error.to_string();
                    self.report.update(|s| {
                        s.state = "failing";
                        s.error = Some(error);
                    });
                    BACKOFF.delay(failures, None)
                }
            };
            tokio::select! {
                () = wake.notified() => {}
                () = tokio::time::sleep(pause) => {}
                () = stop.cancelled() => {}
            }
        }
    }

    /// The files, positioned as the saved cursor says.
    async fn open(&self) -> Option<Files> {
        let cursor = self.cursor.load();
        let cursor = match cursor {
            Ok(Loaded::Fresh) => None,
            Ok(Loaded::Cursor(cursor)) => Some(cursor),
            Ok(Loaded::Unreadable { error, aside }) => {
                tracing::error!(
                    source = self.label,
                    "the cursor cannot be read ({error}); it was moved to {} and every file is read again from its beginning (copies, not a loss)",
                    aside.display()
                );
                Some(Default::default())
            }
            Err(error) => {
                let error = format!(
                    "cannot read the cursor {}: {error}; the files are not read until it can be",
                    self.cursor.path().display()
                );
                tracing::error!(source = self.label, "{error}");
                self.report.update(|s| {
                    s.state = "failing";
                    s.error = Some(error);
                });
                return None;
            }
        };
        let patterns = self
            .settings
            .paths
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        Some(Files::excluding(
            patterns,
            cursor,
            self.settings.start_at,
            self.settings.rotate_wait,
            self.settings.max_line_bytes.as_u64() as usize,
            self.data_dir.as_deref(),
        ))
    }

    /// Asks the OS to say when the files' directories change; none where
    /// it cannot (then polling alone finds the changes).
    fn watch(&self, wake: &Arc<Notify>) -> Option<notify::RecommendedWatcher> {
        use notify::Watcher;
        let notified = wake.clone();
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            if event.is_ok() {
                notified.notify_one();
            }
        });
        let mut watcher = match watcher {
            Ok(watcher) => watcher,
            Err(error) => {
                tracing::warn!(
                    source = self.label,
                    "no change events ({error}); looking at the files every {}",
                    humantime::format_duration(self.settings.poll_interval)
                );
                return None;
            }
        };
        for dir in watched_dirs(&self.settings.paths) {
            if let Err(error) = watcher.watch(&dir, notify::RecursiveMode::NonRecursive) {
                tracing::warn!(
                    source = self.label,
                    "no change events for {} ({error}); looking at it every {}",
                    dir.display(),
                    humantime::format_duration(self.settings.poll_interval)
                );
            }
        }
        Some(watcher)
    }

    /// Scans, reads and stores one batch of lines, then commits and saves
    /// the positions. The files come back whatever happened; `None` only
    /// when the runtime is shutting down (nothing was committed).
    async fn cycle(
        &self,
        files: Files,
        mapper: Option<&SourceMapper>,
    ) -> Option<(Files, Result<Cycle, Failure>)> {
        let (max_lines, max_bytes) = (
            self.settings.batch,
            // Canonical JSON can be longer than the line (an exponent
            // written out): at most 21/4 of it, so a sixth of the spool's
            // limit always fits.
            self.relay.max_batch_bytes() / 6,
        );
        let label = self.label.clone();
        let (mut files, read) = blocking(move || {
            let mut files = files;
            for note in files.scan() {
                tracing::info!(source = label, "{note}");
            }
            let read = files.read(max_lines, max_bytes);
            (files, read)
        })
        .await?;
        let read = match read {
            Ok(read) => read,
            Err(error) => return Some((files, Err(Failure::Read(error)))),
        };
        let full = read.lines.len() >= max_lines;
        let stored = if read.lines.is_empty() {
            Ok(())
        } else {
            self.store(read.lines, mapper).await
        };
        if let Err(error) = stored {
            return Some((files, Err(error)));
        }
        if !files.commit(&read.advances) {
            return Some((files, Ok(Cycle::Idle)));
        }
        let cursor = files.cursor();
        let file = self.cursor.clone();
        let saved = blocking(move || file.save(&cursor)).await?;
        if let Err(error) = saved {
            // The positions moved in memory: this process does not read the
            // lines again, a restart would (copies, not a loss).
            return Some((
                files,
                Err(Failure::Save {
                    path: self.cursor.path().display().to_string(),
                    error,
                }),
            ));
        }
        let busy = full || !read.advances.is_empty();
        Some((files, Ok(if busy { Cycle::Full } else { Cycle::Idle })))
    }

    /// Makes events of `lines`, keeps what is refused, waits until the
    /// events are durable.
    async fn store(
        &self,
        lines: Vec<files::Line>,
        mapper: Option<&SourceMapper>,
    ) -> Result<(), Failure> {
        let max_line = self.settings.max_line_bytes;
        let refused_before: Vec<(usize, String)> = lines
            .iter()
            .enumerate()
            .filter(|(_, line)| line.kind == LineKind::Overlong)
            .map(|(at, line)| {
                (
                    at,
                    format!(
                        "the line is longer than max_line_bytes ({max_line}); its first {} bytes are kept, the rest skipped",
                        line.data.len()
                    ),
                )
            })
            .collect();
        let batch = Arc::new(RecordBatch {
            source: self.name.clone(),
            content_type: self.settings.format.content_type().to_owned(),
            records: lines
                .into_iter()
                .map(|line| ForeignRecord {
                    data: line.data,
                    metadata: vec![
                        (
                            "file.path".to_owned(),
                            line.path.to_string_lossy().into_owned(),
                        ),
                        ("file.offset".to_owned(), line.offset.to_string()),
                    ],
                })
                .collect(),
        });
        let door = Door {
            name: &self.name,
            label: &self.label,
            mapper,
            refused: &self.refused,
            via: Via::File,
        };
        let stored = door
            .store(
                &self.relay,
                batch,
                refused_before,
                MAP_WITHIN,
                (DURABLE_WITHIN, "the file source's wait for the spool (30s)"),
            )
            .await?;
        self.report.update(|s| {
            s.spooled_events += (stored.accepted - stored.copies) as u64;
            s.refused_records += stored.newly_kept as u64;
            s.dropped_records += stored.dropped as u64;
        });
        Ok(())
    }
}

/// What a cycle found.
enum Cycle {
    /// It moved on: more may be waiting, look again at once.
    Full,
    /// Nothing more to read now.
    Idle,
}

/// Runs `work` on the blocking threads (file reads and syncs); `None`
/// when the runtime is shutting down and did not run it.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    match tokio::task::spawn_blocking(work).await {
        Ok(done) => Some(done),
        Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
        Err(_) => None,
    }
}

/// The directories change events are asked for: each glob's longest
/// directory without a wildcard.
fn watched_dirs(paths: &[PathBuf]) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = paths
        .iter()
        .map(|path| {
            let mut dir = PathBuf::new();
            let components: Vec<Component<'_>> = path.components().collect();
            for component in &components[..components.len().saturating_sub(1)] {
                let text = component.as_os_str().to_string_lossy();
                if text.contains(['*', '?', '[']) {
                    break;
                }
                dir.push(component);
            }
            dir
        })
        .filter(|dir| !dir.as_os_str().is_empty())
        .collect();
    dirs.sort();
    dirs.dedup();
    dirs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn change_events_are_asked_for_the_directories_without_wildcards() {
        let dirs = watched_dirs(&[
            "/var/log/app/audit.log*".into(),
            "/var/log/app/audit.log".into(),
            "/srv/*/logs/a.log".into(),
        ]);
        assert_eq!(dirs, [PathBuf::from("/srv"), PathBuf::from("/var/log/app")]);
    }
}
