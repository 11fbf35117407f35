//! Noticing events accepted twice: the same `(source, id)` again, with the
//! same content (a client retry, harmless at least-once) or with different
//! content (two events claim one identity — a bug in the emitter, or
//! worse; the dedup work needs the distinction).
//!
//! The relay remembers the last [`WINDOW`] accepted identities, as 64-bit
//! keyed hashes with a CRC32C of each event's canonical JSON. Both kinds
//! are counted (`auditrelay_duplicate_events_total{content}`); a different
//! content is also logged, at most once every [`WARN_EVERY`] with the
//! number seen meanwhile. Nothing is refused: at-least-once delivery means
//! copies are expected, and deciding is the dedup stage's job.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::metrics::Metrics;
use crate::spool::Record;

/// Identities remembered.
const WINDOW: usize = 65_536;
/// A conflicting duplicate is logged at most this often.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// The keys are hashes already.
#[derive(Default)]
struct Identity(u64);

impl Hasher for Identity {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, _: &[u8]) {
        unreachable!("only u64 keys are hashed")
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }
}

struct Seen {
    content: HashMap<u64, u32, BuildHasherDefault<Identity>>,
    order: VecDeque<u64>,
    last_warning: Option<Instant>,
    unreported: u64,
}

/// The recent identities.
pub(super) struct RecentIds {
    keys: RandomState,
    window: usize,
    seen: Mutex<Seen>,
}

impl RecentIds {
    pub(super) fn new() -> Self {
        Self::with_window(WINDOW)
    }

    fn with_window(window: usize) -> Self {
        RecentIds {
            keys: RandomState::new(),
            window,
            seen: Mutex::new(Seen {
                content: HashMap::with_capacity_and_hasher(window, BuildHasherDefault::default()),
                order: VecDeque::with_capacity(window),
                last_warning: None,
                unreported: 0,
            }),
        }
    }

    /// Notes accepted records; counts and reports those seen before.
    pub(super) fn note(&self, records: &[Record], metrics: &Metrics) {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let mut conflict: Option<(String, String)> = None;
        for record in records {
            let event = record.as_event();
            let key = self.keys.hash_one((event.source, event.id));
            let content = crc32c::crc32c(event.envelope);
            match seen.content.insert(key, content) {
                None => {
                    if seen.order.len() == self.window
                        && let Some(oldest) = seen.order.pop_front()
                    {
                        seen.content.remove(&oldest);
                    }
                    seen.order.push_back(key);
                }
                Some(earlier) if earlier == content => metrics.duplicate("same"),
                Some(_) => {
                    metrics.duplicate("different");
                    seen.unreported += 1;
                    conflict.get_or_insert_with(|| (event.source.to_owned(), event.id.to_owned()));
                }
            }
        }
        let Some((source, id)) = conflict else {
            return;
        };
        if seen
            .last_warning
            .is_some_and(|at| at.elapsed() < WARN_EVERY)
        {
            return;
        }
        let events = std::mem::take(&mut seen.unreported);
        seen.last_warning = Some(Instant::now());
        drop(seen);
        tracing::warn!(
            source = crate::runtime::services::cut(&source, 256),
            id = crate::runtime::services::cut(&id, 128),
            events,
            "accepted an event whose (source, id) an earlier event with different content already had; both are kept and delivered (count: auditrelay_duplicate_events_total{{content=\"different\"}})"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use auditrelay_plugin_api::testing::sample_envelope;

    fn record(i: usize, reason: &str) -> Record {
        let mut envelope = sample_envelope(i);
        envelope.id = format!("id-{i}");
        envelope.time = jiff::Timestamp::UNIX_EPOCH;
        envelope.reason = Some(reason.into());
        Record::from_envelope(&envelope, &Default::default()).unwrap()
    }

    #[test]
    fn repeats_are_counted_by_whether_their_content_differs() {
        let metrics = Metrics::new();
        let recent = RecentIds::new();
        recent.note(&[record(1, "a"), record(2, "a")], &metrics);
        recent.note(&[record(1, "a")], &metrics);
        recent.note(&[record(2, "b"), record(3, "a")], &metrics);
        let text = metrics.render();
        assert!(
            text.contains("auditrelay_duplicate_events_total{content=\"same\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("auditrelay_duplicate_events_total{content=\"different\"} 1"),
            "{text}"
        );
    }

    #[test]
    fn the_window_forgets_the_oldest() {
        let metrics = Metrics::new();
        let recent = RecentIds::with_window(100);
        let first: Vec<Record> = (0..101).map(|i| record(i, "a")).collect();
        recent.note(&first, &metrics);
        recent.note(&[record(0, "b"), record(100, "b")], &metrics);
        let text = metrics.render();
        assert!(
            text.contains("auditrelay_duplicate_events_total{content=\"different\"} 1"),
            "{text}"
        );
    }
}
