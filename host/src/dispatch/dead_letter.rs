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
//!
//! **Replay** (`auditrelay dlq replay`): the file is renamed to
//! `<instance>.replaying.ndjson` and its events are delivered again; those
//! refused again are written to a new dead-letter file. The replaying file
//! is removed once done; if the relay stops first, the replay resumes at
//! the next start (redelivering, never losing).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use auditrelay_plugin_api::Event;
use auditrelay_plugin_api::envelope::{AuditEventEnvelope, Limits};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::spool::Record;

/// Dead letters taken out for replay.
pub struct Replay {
    path: PathBuf,
    /// The events, with the sequence numbers they had in the spool.
    pub events: Vec<(u64, Record)>,
    /// Lines that could not be read back (damaged), left out.
    pub unreadable: usize,
}

impl Replay {
    /// How many events will be replayed.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// Whether there is nothing to replay.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }
}

/// A page of dead letters, as `auditrelay dlq show` and the API show them.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Listing {
    /// The instance.
    pub instance: String,
    /// Dead letters in the file.
    pub total: usize,
    /// Lines that are damaged (not valid JSON).
    pub damaged: usize,
    /// Whether a replay is under way (or waiting for the next start).
    pub replaying: bool,
    /// The page asked for: each line as it is in the file.
    pub events: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
struct Line<'a> {
    seq: u64,
    #[serde(borrow)]
    event: &'a RawValue,
}

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

    fn replay_path(&self) -> PathBuf {
        self.path.with_extension("replaying.ndjson")
    }

    /// Whether a replay was left unfinished (or asked for while stopped).
    pub fn replay_pending(&self) -> bool {
        self.replay_path().exists()
    }

    /// Takes the dead letters out for replay (or resumes an unfinished
    /// replay); `None` if there are none.
    pub fn begin_replay(&self) -> std::io::Result<Option<Replay>> {
        let path = self.replay_path();
        if !path.exists() {
            // Close our handle: new dead letters go to a new file.
            *self.file.lock().unwrap_or_else(|e| e.into_inner()) = None;
            match std::fs::rename(&self.path, &path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(e),
            }
        }
        let text = std::fs::read(&path)?;
        let accepted = Limits {
            max_event_bytes: usize::MAX,
            ..Limits::default()
        };
        let mut replay = Replay {
            path,
            events: Vec::new(),
            unreadable: 0,
        };
        for line in text.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let event = serde_json::from_slice::<Line<'_>>(line)
                .ok()
                .and_then(|line| {
                    let envelope =
                        AuditEventEnvelope::from_json_with(line.event.get().as_bytes(), &accepted)
                            .ok()?;
                    Some((line.seq, Record::from_validated(envelope)))
                });
            match event {
                Some(event) => replay.events.push(event),
                None => replay.unreadable += 1,
            }
        }
        if replay.unreadable > 0 {
            tracing::warn!(
                file = %replay.path.display(),
                lines = replay.unreadable,
                "some dead-letter lines are damaged and cannot be replayed; they stay in the file"
            );
        }
        Ok(Some(replay))
    }

    /// The dead letters from `offset`, at most `limit` of them.
    pub fn list(&self, offset: usize, limit: usize) -> std::io::Result<Listing> {
        let text = match std::fs::read(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
        };
        let mut listing = Listing {
            instance: self.instance.clone(),
            total: 0,
            damaged: 0,
            replaying: self.replay_pending(),
            events: Vec::new(),
        };
        for line in text.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            match serde_json::from_slice::<serde_json::Value>(line) {
                Ok(value) => {
                    if listing.total >= offset && listing.events.len() < limit {
                        listing.events.push(value);
                    }
                    listing.total += 1;
                }
                Err(_) => listing.damaged += 1,
            }
        }
        Ok(listing)
    }

    /// Deletes every dead letter; returns how many there were.
    pub fn purge(&self) -> std::io::Result<usize> {
        let mut slot = self.file.lock().unwrap_or_else(|e| e.into_inner());
        let count = match std::fs::read(&self.path) {
            Ok(text) => text
                .split(|&b| b == b'\n')
                .filter(|l| !l.is_empty())
                .count(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(e),
        };
        *slot = None;
        std::fs::remove_file(&self.path)?;
        Ok(count)
    }

    /// Removes a finished replay's file (kept if some lines were damaged,
    /// renamed so they are not replayed again).
    pub fn end_replay(&self, replay: &Replay) -> std::io::Result<()> {
        if replay.unreadable > 0 {
            let kept = self.path.with_extension(format!(
                "damaged-{}.ndjson",
                jiff::Timestamp::now().as_second()
            ));
            return std::fs::rename(&replay.path, kept);
        }
        std::fs::remove_file(&replay.path)
    }

    /// Appends `events` (each with its spool sequence number and reason)
    /// and syncs them to disk.
    pub fn put(&self, events: &[(u64, Event<'_>, &str)]) -> std::io::Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        let now = jiff::Timestamp::now().to_string();
        let mut lines =
            Vec::with_capacity(events.iter().map(|(_, e, _)| e.envelope.len() + 256).sum());
        for (seq, event, reason) in events {
            lines.extend_from_slice(b"{\"dead_lettered_at\":");
            serde_json::to_writer(&mut lines, &now)?;
            lines.extend_from_slice(b",\"plugin\":");
            serde_json::to_writer(&mut lines, &self.instance)?;
            lines.extend_from_slice(b",\"reason\":");
            serde_json::to_writer(&mut lines, reason)?;
            write!(lines, ",\"seq\":{seq},\"event\":")?;
            lines.extend_from_slice(event.envelope);
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
        let event = Event {
            id: "e1",
            source: "s",
            event_type: "t",
            time_unix_nanos: 0,
            tenant: None,
            envelope: br#"{"id":"e1","x":[1,2]}"#,
        };
        store.put(&[(7, event, "HEC said \"no\"")]).unwrap();
        store.put(&[(7, event, "again")]).unwrap();
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

    #[test]
    fn replay_takes_the_dead_letters_out_and_new_ones_start_a_new_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = DeadLetters::new(dir.path(), "p");
        assert!(store.begin_replay().unwrap().is_none(), "nothing to replay");
        let events = auditrelay_plugin_api::testing::sample_events(2);
        store
            .put(&[
                (1, events[0].as_event(), "no"),
                (2, events[1].as_event(), "no"),
            ])
            .unwrap();
        let replay = store.begin_replay().unwrap().unwrap();
        assert_eq!(replay.len(), 2);
        assert_eq!(replay.events[1].0, 2);
        assert_eq!(replay.events[1].1.json(), events[1].envelope.as_slice());
        assert!(store.replay_pending());
        store
            .put(&[(3, events[0].as_event(), "refused again")])
            .unwrap();
        store.end_replay(&replay).unwrap();
        assert!(!store.replay_pending());
        let listing = store.list(0, 10).unwrap();
        assert_eq!((listing.total, listing.events.len()), (1, 1));
        assert_eq!(listing.events[0]["reason"], "refused again");
        assert_eq!(store.purge().unwrap(), 1);
        assert_eq!(store.list(0, 10).unwrap().total, 0);
        store
            .put(&[(4, events[1].as_event(), "after purge")])
            .unwrap();
        assert_eq!(store.list(0, 10).unwrap().total, 1);
    }
}
