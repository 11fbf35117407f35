//! Counting what the spool's dedup window found in each append
//! ([`crate::spool::Appended`]): copies, acknowledged and not spooled
//! again (`auditrelay_duplicate_events_total{content="same"}`), and
//! events whose `(source, id)` a recent event had with other content —
//! two events claiming one identity, a bug in the emitter or worse — which
//! are spooled and delivered (`content="different"`) and logged at most
//! once every [`WARN_EVERY`], with the number seen meanwhile.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::metrics::Metrics;
use crate::spool::{Appended, Record};

/// A conflicting duplicate is logged at most this often.
const WARN_EVERY: Duration = Duration::from_secs(60);

#[derive(Default)]
struct Warned {
    last: Option<Instant>,
    unreported: usize,
}

/// Counts and reports duplicates.
#[derive(Default)]
pub(super) struct Duplicates {
    warned: Mutex<Warned>,
}

impl Duplicates {
    /// Counts what `appended` found among `records`; warns of conflicts.
    pub(super) fn note(&self, records: &[Record], appended: &Appended, metrics: &Metrics) {
        metrics.duplicates("same", appended.copies as u64);
        if appended.conflicts == 0 {
            return;
        }
        metrics.duplicates("different", appended.conflicts as u64);
        let mut warned = self.warned.lock().unwrap_or_else(|e| e.into_inner());
        warned.unreported += appended.conflicts;
        if warned.last.is_some_and(|at| at.elapsed() < WARN_EVERY) {
            return;
        }
        let events = std::mem::take(&mut warned.unreported);
        warned.last = Some(Instant::now());
        drop(warned);
        let Some(event) = appended
            .first_conflict
            .and_then(|i| records.get(i))
            .map(Record::as_event)
        else {
            return;
        };
        tracing::warn!(
            source = crate::runtime::services::cut(event.source, 256),
            id = crate::runtime::services::cut(event.id, 128),
            events,
            "accepted an event whose (source, id) a recent event with different content already had; both are kept and delivered (count: auditrelay_duplicate_events_total{{content=\"different\"}})"
        );
    }
}
