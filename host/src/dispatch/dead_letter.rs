//! Dead letters: events a plugin refused for good, kept for the operator.
//!
//! Each plugin instance has one append-only file,
//! `<data_dir>/dead-letters/<instance>.ndjson`, one JSON object per line:
//!
//! ```json
//! {"dead_lettered_at":"2026-11-23T10:00:00Z","plugin":"hec","reason":"...","seq":42,"event":{...}}
//! ```
//!
//! `event` is the canonical envelope exactly as it was accepted, so a dead
//! letter can be sent again unchanged. A line is synced to disk before the
//! plugin's cursor moves past the event: an event is always either
//! delivered, waiting in the spool, or here.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::spool::Record;

/// The dead-letter file of one plugin instance.
pub struct DeadLetters {
    path: PathBuf,
    instance: String,
    file: Mutex<Option<File>>,
}

impl DeadLetters {
    /// The store of `instance` under `dir` (created on first use).
    pub fn new(dir: &Path, instance: &str) -> Self {
        DeadLetters {
            path: dir.join(format!("{instance}.ndjson")),
            instance: instance.to_owned(),
            file: Mutex::new(None),
        }
    }

    /// Where the dead letters are.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `events` (each with its reason) and syncs them to disk.
    pub fn put(&self, events: &[(&Record, &str)]) -> std::io::Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        let now = jiff::Timestamp::now().to_string();
        let mut lines = Vec::with_capacity(events.iter().map(|(r, _)| r.json().len() + 256).sum());
        for (record, reason) in events {
            lines.extend_from_slice(b"{\"dead_lettered_at\":");
            serde_json::to_writer(&mut lines, &now)?;
            lines.extend_from_slice(b",\"plugin\":");
            serde_json::to_writer(&mut lines, &self.instance)?;
            lines.extend_from_slice(b",\"reason\":");
            serde_json::to_writer(&mut lines, reason)?;
            write!(lines, ",\"seq\":{},\"event\":", record.seq)?;
            lines.extend_from_slice(record.json());
            lines.extend_from_slice(b"}\n");
        }
        let mut slot = self.file.lock().unwrap_or_else(|e| e.into_inner());
        if slot.is_none() {
            if let Some(dir) = self.path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            *slot = Some(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&self.path)?,
            );
        }
        let file = slot.as_mut().expect("opened above");
        let written = file.write_all(&lines).and_then(|()| file.sync_data());
        if written.is_err() {
            // Reopen next time: a partial line may have been written, and
            // the next append must start on a fresh line.
            *slot = None;
            if let Ok(mut file) = OpenOptions::new().append(true).open(&self.path) {
                let _ = file.write_all(b"\n");
            }
        }
        written
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_keep_the_event_verbatim_with_its_reason() {
        let dir = tempfile::tempdir().unwrap();
        let store = DeadLetters::new(&dir.path().join("dl"), "hec");
        let mut record = Record::from_event(auditrelay_plugin_api::Event {
            id: "e1",
            source: "s",
            event_type: "t",
            time_unix_nanos: 0,
            tenant: None,
            envelope: br#"{"id":"e1","x":[1,2]}"#,
        });
        record.seq = 7;
        store.put(&[(&record, "HEC said \"no\"")]).unwrap();
        store.put(&[(&record, "again")]).unwrap();
        let text = std::fs::read_to_string(store.path()).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["reason"], "HEC said \"no\"");
        assert_eq!(lines[0]["plugin"], "hec");
        assert_eq!(lines[0]["seq"], 7);
        assert_eq!(
            lines[0]["event"],
            serde_json::json!({"id": "e1", "x": [1, 2]})
        );
        assert_eq!(lines[1]["reason"], "again");
    }
}
