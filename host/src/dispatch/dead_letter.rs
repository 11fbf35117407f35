//! Dead letters: events a plugin refused for good, kept for the operator.
//!
//! Each plugin instance has one append-only file,
//! `<data_dir>/dead-letters/<instance>.ndjson`, one JSON object per line,
//! each holding the events refused for one reason:
//!
//! ```json
//! {"dead_lettered_at":"2026-11-23T10:00:00Z","plugin":"hec","reason":"...","events":[{"seq":42,"event":{...}},{"seq":43,"event":{...}}]}
//! ```
//!
//! A reason the plugin gave for a whole batch is stored once, not once per
//! event (it is capped at 4 KiB when the plugin gives it). Lines written by
//! earlier versions, one event each (`"seq"` and `"event"` in place of
//! `"events"`), are read the same way. `event` is the canonical envelope
//! exactly as it was accepted, so a dead letter can be sent again
//! unchanged. A line is synced to disk before the plugin's cursor moves
//! past its events: an event is always either delivered, waiting in the
//! spool, or here. Listings show one entry per event.
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
pub(crate) struct Replay {
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
}

/// A page of dead letters, as `auditrelay dlq show` and the API show them.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Listing {
    /// The instance.
    pub instance: String,
    /// Dead letters in the file.
    pub total: usize,
    /// Lines that are damaged (not valid JSON of either layout).
    pub damaged: usize,
    /// Whether a replay is under way (or waiting for the next start).
    pub replaying: bool,
    /// The page asked for: one entry per event, `{dead_lettered_at,
    /// plugin, reason, seq, event}`.
    pub events: Vec<serde_json::Value>,
}

/// One line of the file, in either layout.
#[derive(Deserialize)]
struct Line<'a> {
    #[serde(borrow, default)]
    dead_lettered_at: Option<&'a RawValue>,
    #[serde(borrow, default)]
    plugin: Option<&'a RawValue>,
    #[serde(borrow, default)]
    reason: Option<&'a RawValue>,
    /// A line of one event (earlier versions).
    #[serde(default)]
    seq: Option<u64>,
    #[serde(borrow, default)]
    event: Option<&'a RawValue>,
    /// A line of the events refused for one reason.
    #[serde(borrow, default)]
    events: Option<Vec<Entry<'a>>>,
}

#[derive(Deserialize)]
struct Entry<'a> {
    seq: u64,
    #[serde(borrow)]
    event: &'a RawValue,
}

impl<'a> Line<'a> {
    /// The line's events, whichever layout it has; `None` if damaged.
    fn entries(self) -> Option<(LineHead<'a>, Vec<Entry<'a>>)> {
        let head = LineHead {
            dead_lettered_at: self.dead_lettered_at,
            plugin: self.plugin,
            reason: self.reason,
        };
        match (self.events, self.seq, self.event) {
            (Some(events), None, None) => Some((head, events)),
            (None, Some(seq), Some(event)) => Some((head, vec![Entry { seq, event }])),
            _ => None,
        }
    }
}

/// What a line says of all its events.
struct LineHead<'a> {
    dead_lettered_at: Option<&'a RawValue>,
    plugin: Option<&'a RawValue>,
    reason: Option<&'a RawValue>,
}

/// Every line of `text` with its events; damaged lines as `None`.
fn lines(text: &[u8]) -> impl Iterator<Item = Option<(LineHead<'_>, Vec<Entry<'_>>)>> {
    text.split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|line| serde_json::from_slice::<Line<'_>>(line).ok()?.entries())
}

/// The dead-letter file of one plugin instance.
pub struct DeadLetters {
    path: PathBuf,
    instance: String,
    file: Mutex<Option<File>>,
}

impl DeadLetters {
    /// The store of `instance` under `dir` (created on first use).
    pub(crate) fn new(dir: &Path, instance: &str) -> Self {
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
    pub(crate) fn replay_pending(&self) -> bool {
        self.replay_path().exists()
    }

    /// Takes the dead letters out for replay (or resumes an unfinished
    /// replay); `None` if there are none.
    pub(crate) fn begin_replay(&self) -> std::io::Result<Option<Replay>> {
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
        for line in lines(&text) {
            let Some((_, entries)) = line else {
                replay.unreadable += 1;
                continue;
            };
            for entry in entries {
                let record = AuditEventEnvelope::read_json(entry.event.get().as_bytes())
                    .ok()
                    .and_then(|envelope| Record::from_envelope(&envelope, &accepted).ok());
                match record {
                    Some(record) => replay.events.push((entry.seq, record)),
                    None => replay.unreadable += 1,
                }
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
        for line in lines(&text) {
            let Some((head, entries)) = line else {
                listing.damaged += 1;
                continue;
            };
            for entry in entries {
                if listing.total >= offset && listing.events.len() < limit {
                    listing.events.push(serde_json::json!({
                        "dead_lettered_at": head.dead_lettered_at,
                        "plugin": head.plugin,
                        "reason": head.reason,
                        "seq": entry.seq,
                        "event": entry.event,
                    }));
                }
                listing.total += 1;
            }
        }
        Ok(listing)
    }

    /// Deletes every dead letter; returns how many there were.
    pub fn purge(&self) -> std::io::Result<usize> {
        let mut slot = self.file.lock().unwrap_or_else(|e| e.into_inner());
        let count = match std::fs::read(&self.path) {
            Ok(text) => lines(&text)
                .map(|line| line.map_or(0, |(_, entries)| entries.len()))
                .sum(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(e),
        };
        *slot = None;
        std::fs::remove_file(&self.path)?;
        Ok(count)
    }

    /// Removes a finished replay's file (kept if some lines were damaged,
    /// renamed so they are not replayed again).
    pub(crate) fn end_replay(&self, replay: &Replay) -> std::io::Result<()> {
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
    /// and syncs them to disk. Consecutive events with the same reason
    /// share one line, so a batch-wide reason is stored once.
    pub(crate) fn put(&self, events: &[(u64, Event<'_>, &str)]) -> std::io::Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        let now = jiff::Timestamp::now().to_string();
        let mut lines =
            Vec::with_capacity(events.iter().map(|(_, e, _)| e.envelope.len() + 32).sum());
        for group in events.chunk_by(|a, b| a.2 == b.2) {
            lines.extend_from_slice(b"{\"dead_lettered_at\":");
            serde_json::to_writer(&mut lines, &now)?;
            lines.extend_from_slice(b",\"plugin\":");
            serde_json::to_writer(&mut lines, &self.instance)?;
            lines.extend_from_slice(b",\"reason\":");
            serde_json::to_writer(&mut lines, group[0].2)?;
            lines.extend_from_slice(b",\"events\":[");
            for (i, (seq, event, _)) in group.iter().enumerate() {
                if i > 0 {
                    lines.push(b',');
                }
                write!(lines, "{{\"seq\":{seq},\"event\":")?;
                lines.extend_from_slice(event.envelope);
                lines.push(b'}');
            }
            lines.extend_from_slice(b"]}\n");
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
    fn lines_keep_the_event_verbatim_and_a_shared_reason_once() {
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
        let reason = format!("HEC said \"no\" {}", "x".repeat(4000));
        let batch: Vec<_> = (0..100).map(|seq| (seq, event, reason.as_str())).collect();
        store.put(&batch).unwrap();
        store
            .put(&[(7, event, "again"), (8, event, "other")])
            .unwrap();
        let text = std::fs::read_to_string(store.path()).unwrap();
        assert_eq!(
            text.matches("HEC said").count(),
            1,
            "a batch-wide reason is stored once"
        );
        assert!(
            text.len() < 9_000,
            "{} bytes for 100 events of one reason",
            text.len()
        );
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0]["plugin"], "hec");
        assert_eq!(lines[0]["events"][99]["seq"], 99);
        assert_eq!(
            lines[0]["events"][0]["event"],
            serde_json::json!({"id": "e1", "x": [1, 2]})
        );
        // Listed one entry per event, each with its reason.
        let listing = store.list(99, 3).unwrap();
        assert_eq!(listing.total, 102);
        assert_eq!(listing.events.len(), 3);
        assert_eq!(listing.events[0]["seq"], 99);
        assert_eq!(listing.events[1]["reason"], "again");
        assert_eq!(listing.events[2]["reason"], "other");
        assert_eq!(listing.events[2]["event"]["id"], "e1");
    }

    #[test]
    fn lines_of_one_event_from_earlier_versions_are_read_too() {
        let dir = tempfile::tempdir().unwrap();
        let store = DeadLetters::new(dir.path(), "p");
        let event = auditrelay_plugin_api::testing::sample_events(1).remove(0);
        let old = format!(
            "{{\"dead_lettered_at\":\"2026-11-23T10:00:00Z\",\"plugin\":\"p\",\"reason\":\"no\",\"seq\":5,\"event\":{}}}\nnot json\n",
            String::from_utf8(event.envelope.clone()).unwrap()
        );
        std::fs::write(store.path(), old).unwrap();
        let listing = store.list(0, 10).unwrap();
        assert_eq!((listing.total, listing.damaged), (1, 1));
        assert_eq!(listing.events[0]["seq"], 5);
        let replay = store.begin_replay().unwrap().unwrap();
        assert_eq!((replay.len(), replay.unreadable), (1, 1));
        assert_eq!(replay.events[0].1.json(), event.envelope.as_slice());
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
