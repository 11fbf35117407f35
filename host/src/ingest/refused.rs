//! Records a source could not turn into events, kept with why: the
//! foreign-record counterpart of an exporter's dead letters.
//!
//! Each source has one append-only file,
//! `<data_dir>/sources/<name>/refused.ndjson`, one JSON object per record:
//!
//! ```json
//! {"refused_at":"2026-12-01T10:00:00Z","source":"shop","reason":"...","content_type":"application/json","metadata":[["x-event","order"]],"data":"{...}"}
//! ```
//!
//! `data` is the record's bytes as text when they are UTF-8, else
//! `data_base64` holds them. A line is synced to disk before the request
//! (or the cursor) that brought the record is acknowledged: a record is
//! always either in the spool as events, here, or not acknowledged.
//!
//! A record whose bytes were kept among the last [`RECENT`] is not kept
//! again (a sender retrying, or replaying a captured request, adds
//! nothing), and the file never grows past its cap: past it, a record is
//! not acknowledged (`503`; a file source stops where it is) until the operator
//! moves the file away: the next record starts a new one.

use std::collections::{HashSet, VecDeque};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use base64::Engine;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::lines::open_for_append;
use crate::runtime::wasm::ForeignRecord;

/// A refused record and why.
pub(crate) struct RefusedRecord<'a> {
    pub record: &'a ForeignRecord,
    pub reason: String,
}

#[derive(Serialize)]
struct Line<'a> {
    refused_at: String,
    source: &'a str,
    reason: &'a str,
    content_type: &'a str,
    metadata: &'a [(String, String)],
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data_base64: Option<String>,
}

/// Records remembered (by a digest of their bytes) as kept already.
pub const RECENT: usize = 10_000;

/// One source's refused records.
pub(crate) struct RefusedRecords {
    path: PathBuf,
    source: String,
    max_bytes: u64,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    file: Option<File>,
    /// Bytes in the file.
    bytes: u64,
    recent: HashSet<[u8; 32]>,
    order: VecDeque<[u8; 32]>,
}

/// The file is at its cap.
#[derive(Debug)]
pub(crate) enum KeepError {
    /// Writing or syncing failed.
    Io(std::io::Error),
    /// Keeping more would pass `max_bytes`.
    Full { max_bytes: u64 },
}

impl std::fmt::Display for KeepError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeepError::Io(error) => write!(f, "{error}"),
            KeepError::Full { max_bytes } => write!(
                f,
                "it holds {} (max_refused_bytes); move it away (and look at why its records are refused) to take more",
                bytesize::ByteSize(*max_bytes)
            ),
        }
    }
}

impl RefusedRecords {
    /// The store of `source` in `dir` (created on first use), at most
    /// `max_bytes` big.
    pub fn new(dir: &Path, source: &str, max_bytes: u64) -> Self {
        RefusedRecords {
            path: dir.join("refused.ndjson"),
            source: source.to_owned(),
            max_bytes,
            state: Mutex::new(State::default()),
        }
    }

    /// Where the records are kept.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `refused` (records of `content_type`) and syncs them to
    /// disk, but for records kept recently; how many were new.
    pub fn keep(
        &self,
        content_type: &str,
        refused: &[RefusedRecord<'_>],
    ) -> Result<usize, KeepError> {
        if refused.is_empty() {
            return Ok(0);
        }
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let digests: Vec<[u8; 32]> = refused
            .iter()
            .map(|r| Sha256::digest(&r.record.data).into())
            .collect();
        let refused_at = jiff::Timestamp::now().to_string();
        let mut text = Vec::new();
        let mut fresh = Vec::new();
        for (entry, digest) in refused.iter().zip(&digests) {
            if state.recent.contains(digest) || fresh.contains(digest) {
                continue;
            }
            fresh.push(*digest);
            let utf8 = std::str::from_utf8(&entry.record.data).ok();
            let line = Line {
                refused_at: refused_at.clone(),
                source: &self.source,
                reason: &entry.reason,
                content_type,
                metadata: &entry.record.metadata,
                data: utf8,
                data_base64: utf8
                    .is_none()
                    .then(|| base64::engine::general_purpose::STANDARD.encode(&entry.record.data)),
            };
            serde_json::to_writer(&mut text, &line).expect("writing to memory");
            text.push(b'\n');
        }
        if fresh.is_empty() {
            return Ok(0);
        }
        // The operator moves a full file away to make room: the next
        // record starts a new one, not the moved file.
        if state
            .file
            .as_ref()
            .is_some_and(|file| !is_at(file, &self.path))
        {
            state.file = None;
        }
        if state.file.is_none() {
            let file = open_for_append(&self.path).map_err(KeepError::Io)?;
            state.bytes = file.metadata().map_err(KeepError::Io)?.len();
            state.file = Some(file);
        }
        if state.bytes + text.len() as u64 > self.max_bytes {
            return Err(KeepError::Full {
                max_bytes: self.max_bytes,
            });
        }
        let handle = state.file.as_mut().expect("opened above");
        let written = handle.write_all(&text).and_then(|()| handle.sync_data());
        if let Err(error) = written {
            // A failed write may have left part of a line: the next one
            // starts on a fresh handle, which ends it first.
            state.file = None;
            return Err(KeepError::Io(error));
        }
        state.bytes += text.len() as u64;
        for digest in &fresh {
            state.recent.insert(*digest);
            state.order.push_back(*digest);
            if state.order.len() > RECENT
                && let Some(oldest) = state.order.pop_front()
            {
                state.recent.remove(&oldest);
            }
        }
        Ok(fresh.len())
    }
}

/// Whether `path` still names `file` (it was not moved away or replaced).
fn is_at(file: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(open), Ok(named)) => (open.dev(), open.ino()) == (named.dev(), named.ino()),
        _ => false,
    }
}
