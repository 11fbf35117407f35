//! What the sources that run beside the relay (outbox readers, webhooks,
//! file tails) report
//! about themselves, for `GET /v1/status`. A source registers once and
//! updates its entry; the relay only reads it.

use std::sync::{Arc, Mutex};

use serde::Serialize;

/// One source's state as `GET /v1/status` shows it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SourceStatus {
    /// `outbox.<name>`, `webhook.<name>` or `file.<name>`.
    pub name: String,
    /// `connecting`, `reading`, `standby` (another relay holds the table)
    /// or `failing` (see `error`; retried with backoff).
    pub state: &'static str,
    /// Why the last attempt failed, while it keeps failing. Names the
    /// setting or the row, never a secret.
    pub error: Option<String>,
    /// Rows waiting in the table (counted up to 100,000), when last looked.
    pub pending_rows: Option<u64>,
    /// File sources: bytes in the files not read yet, when last looked.
    pub pending_bytes: Option<u64>,
    /// File sources: how many files are being read.
    pub files: Option<u64>,
    /// Age of the oldest waiting row, in seconds, when last looked.
    pub oldest_pending_seconds: Option<f64>,
    /// Events this source put in the spool since the relay started.
    pub spooled_events: u64,
    /// Rows it moved aside because their envelope was refused.
    pub rejected_rows: u64,
    /// Records its mapper refused (or mapped to invalid envelopes), kept
    /// in `<data_dir>/sources/<name>/refused.ndjson`.
    pub refused_records: u64,
    /// Records its mapper mapped to no event, on purpose (not allowlisted).
    pub dropped_records: u64,
}

/// A source's handle on its entry.
#[derive(Clone)]
pub struct SourceReport(Arc<Mutex<SourceStatus>>);

impl SourceReport {
    /// Changes the entry.
    pub fn update(&self, change: impl FnOnce(&mut SourceStatus)) {
        change(&mut self.0.lock().expect("never poisoned"));
    }

    /// The entry now.
    pub fn snapshot(&self) -> SourceStatus {
        self.0.lock().expect("never poisoned").clone()
    }
}

/// Every registered source.
#[derive(Default)]
pub(super) struct Sources(Mutex<Vec<SourceReport>>);

impl Sources {
    pub fn register(&self, name: String) -> SourceReport {
        let report = SourceReport(Arc::new(Mutex::new(SourceStatus {
            name,
            state: "connecting",
            ..SourceStatus::default()
        })));
        self.0.lock().expect("never poisoned").push(report.clone());
        report
    }

    pub fn snapshot(&self) -> Vec<SourceStatus> {
        let mut all: Vec<_> = self
            .0
            .lock()
            .expect("never poisoned")
            .iter()
            .map(SourceReport::snapshot)
            .collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }
}
