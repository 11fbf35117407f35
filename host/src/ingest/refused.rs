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

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use base64::Engine;
use serde::Serialize;

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

/// One source's refused records.
pub(crate) struct RefusedRecords {
    path: PathBuf,
    source: String,
    file: Mutex<Option<File>>,
}

impl RefusedRecords {
    /// The store of `source` in `dir` (created on first use).
    pub fn new(dir: &Path, source: &str) -> Self {
        RefusedRecords {
            path: dir.join("refused.ndjson"),
            source: source.to_owned(),
            file: Mutex::new(None),
        }
    }

    /// Where the records are kept.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `refused` (records of `content_type`) and syncs them to disk.
    pub fn keep(&self, content_type: &str, refused: &[RefusedRecord<'_>]) -> std::io::Result<()> {
        if refused.is_empty() {
            return Ok(());
        }
        let refused_at = jiff::Timestamp::now().to_string();
        let mut text = Vec::new();
        for entry in refused {
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
        let mut file = self.file.lock().unwrap_or_else(|e| e.into_inner());
        if file.is_none() {
            if let Some(dir) = self.path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let mut opened = OpenOptions::new().create(true).append(true).read(true).open(&self.path)?;
            // A write that failed half way left a partial line: end it, so
            // the next record starts a line of its own.
            if ends_mid_line(&mut opened)? {
                opened.write_all(b"\n")?;
            }
            *file = Some(opened);
        }
        let handle = file.as_mut().expect("opened above");
        let written = handle.write_all(&text).and_then(|()| handle.sync_data());
        if written.is_err() {
            // A failed write may have left part of a line: the next one
            // starts on a fresh handle, and readers skip the damaged line.
            *file = None;
        }
        written
    }
}

/// Whether `file` is non-empty and its last byte is not a newline.
fn ends_mid_line(file: &mut File) -> std::io::Result<bool> {
    use std::io::{Read, Seek, SeekFrom};
    if file.metadata()?.len() == 0 {
        return Ok(false);
    }
    file.seek(SeekFrom::End(-1))?;
    let mut last = [0u8; 1];
    file.read_exact(&mut last)?;
    Ok(last[0] != b'\n')
}
