//! The dedup window: an event whose `(source, id)` and content the spool
//! accepted recently is not spooled again. A client retrying a `POST`
//! whose answer it lost, or an outbox row spooled again because the relay
//! died before deleting it, is then accepted once: the caller is told it
//! was accepted (its [`Appended::copies`](super::Appended::copies)), and
//! waits, if it waits, until the first copy is durable.
//!
//! - **What is remembered**: the last [`DedupWindow::ids`] identities
//!   accepted, each for at most [`DedupWindow::age`], as keyed 64-bit
//!   hashes of `(source, id)` and of the event's canonical JSON (SipHash,
//!   keyed with a random value per process: no emitter can make two
//!   events look alike on purpose).
//! - **Same identity, other content**: not a copy. It is spooled and
//!   delivered, counted apart (`content = "different"`), and from then on
//!   copies of it are the ones collapsed.
//! - **Persisted with the spool**: the spool keeps the segments holding
//!   the window's events until they leave the window (at most a quarter
//!   of `max_bytes`, [`DEDUP_SHARE`](super::DEDUP_SHARE)), and at start the window is
//!   read back from them. After a crash the window is what was written:
//!   an event accepted but never durable is forgotten with the event, so
//!   its retry is spooled. Remembered identities count their age from the
//!   start after a restart (the spool does not store when it accepted an
//!   event), so they are kept longer, never shorter.
//!
//! Lookups happen under the spool's lock, with the hashes computed before
//! it is taken ([`Recent::fingerprints`]), so two copies arriving at once
//! are told apart exactly: the first is spooled, the second collapsed.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};
use std::sync::Arc;
use std::time::{Duration, Instant};

use auditrelay_plugin_api::Event;

use super::{Reader, Record, Shared};

/// Events, and bytes of them, read at a time when the window is read back
/// at start.
const READ_BACK_EVENTS: usize = 4096;
const READ_BACK_BYTES: usize = 16 * 1024 * 1024;

/// How much the dedup window remembers (`spool.dedup_ids`,
/// `spool.dedup_age`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DedupWindow {
    /// Identities remembered at most (0: no window; every event is spooled).
    pub ids: usize,
    /// How long an identity is remembered at most.
    pub age: Duration,
}

impl DedupWindow {
    /// No window: every event is spooled, copies included.
    pub const OFF: DedupWindow = DedupWindow {
        ids: 0,
        age: Duration::ZERO,
    };
}

/// A record's identity and content, hashed.
#[derive(Debug, Clone, Copy)]
pub(super) struct Fingerprint {
    identity: u64,
    content: u64,
    /// Set by [`Recent::sort`]: the sequence number of the copy already
    /// spooled, if this record is one.
    copy_of: Option<u64>,
}

impl Fingerprint {
    /// The spooled record this one is a copy of, if it is one.
    pub fn copy_of(&self) -> Option<u64> {
        self.copy_of
    }
}

/// The keys are hashes already.
#[derive(Default)]
struct Prehashed(u64);

impl Hasher for Prehashed {
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

/// The newest spooled version of an identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Latest {
    content: u64,
    seq: u64,
}

/// One spooled record the window remembers, oldest first.
#[derive(Debug, Clone, Copy)]
struct Entry {
    identity: u64,
    seq: u64,
    /// Seconds after the window was made.
    at: u32,
}

/// What [`Recent::sort`] found in one append, and how to take it back.
#[derive(Debug, Default)]
pub(super) struct Sorted {
    /// Records that are no copy: to be spooled.
    pub new: usize,
    /// Records collapsed into a copy already spooled.
    pub copies: usize,
    /// The highest sequence number among the copies already spooled.
    pub newest_original: Option<u64>,
    /// Records spooled although their identity had other content.
    pub conflicts: usize,
    /// The index of the first of those.
    pub first_conflict: Option<usize>,
    /// What each remembered new record replaced, to undo a refused append.
    undo: Vec<(u64, Option<Latest>)>,
}

/// The recent identities; lives in the spool's state.
pub(super) struct Recent {
    window: DedupWindow,
    started: Instant,
    latest: HashMap<u64, Latest, BuildHasherDefault<Prehashed>>,
    order: VecDeque<Entry>,
}

impl Recent {
    pub fn new(window: DedupWindow) -> Self {
        Recent {
            window,
            started: Instant::now(),
            latest: HashMap::default(),
            order: VecDeque::new(),
        }
    }

    /// Identities remembered now.
    pub fn len(&self) -> usize {
        self.latest.len()
    }

    /// The hashes of `records` under the spool's `keys`, computed before
    /// its lock is taken and sorted under it.
    pub fn fingerprints(keys: &RandomState, records: &[Record]) -> Vec<Fingerprint> {
        records
            .iter()
            .map(|record| fingerprint(keys, &record.as_event()))
            .collect()
    }

    /// Marks each copy in `prints` and remembers the others as spooled at
    /// `first_seq` on, in order (a copy of an earlier record of the same
    /// append is a copy too). Undo with [`undo`](Self::undo) if the append
    /// is refused; confirm with [`forget_old`](Self::forget_old).
    pub fn sort(&mut self, prints: &mut [Fingerprint], first_seq: u64) -> Sorted {
        let mut sorted = Sorted::default();
        let at = self.now();
        for (index, print) in prints.iter_mut().enumerate() {
            print.copy_of = None;
            let seen = self.latest.get(&print.identity).copied();
            if let Some(earlier) = seen
                && earlier.content == print.content
            {
                print.copy_of = Some(earlier.seq);
                sorted.copies += 1;
                sorted.newest_original = sorted.newest_original.max(Some(earlier.seq));
                continue;
            }
            if seen.is_some() {
                sorted.conflicts += 1;
                sorted.first_conflict.get_or_insert(index);
            }
            let seq = first_seq + sorted.new as u64;
            sorted.new += 1;
            self.latest.insert(
                print.identity,
                Latest {
                    content: print.content,
                    seq,
                },
            );
            self.order.push_back(Entry {
                identity: print.identity,
                seq,
                at,
            });
            sorted.undo.push((print.identity, seen));
        }
        sorted
    }

    /// Remembers a record read back from disk at `seq` (a later one with
    /// the same identity replaces it).
    fn remember(&mut self, print: Fingerprint, seq: u64) {
        let latest = Latest {
            content: print.content,
            seq,
        };
        self.latest.insert(print.identity, latest);
        self.order.push_back(Entry {
            identity: print.identity,
            seq,
            at: self.now(),
        });
    }

    /// Takes back what [`sort`](Self::sort) remembered: its append was
    /// refused, so none of it was spooled.
    pub fn undo(&mut self, sorted: Sorted) {
        for (identity, before) in sorted.undo.into_iter().rev() {
            self.order.pop_back();
            match before {
                Some(before) => self.latest.insert(identity, before),
                None => self.latest.remove(&identity),
            };
        }
    }

    /// Forgets identities past the window's size or age, at most `most`
    /// of them (the rest at the next call); returns whether any went.
    pub fn forget_old(&mut self, most: usize) -> bool {
        let oldest_kept = self.now().saturating_sub(self.age_secs());
        let mut forgot = false;
        for _ in 0..most {
            let Some(entry) = self.order.front().copied() else {
                break;
            };
            if self.order.len() <= self.window.ids && entry.at >= oldest_kept {
                break;
            }
            self.order.pop_front();
            if self.latest.get(&entry.identity).map(|l| l.seq) == Some(entry.seq) {
                self.latest.remove(&entry.identity);
            }
            forgot = true;
        }
        forgot
    }

    /// Forgets every identity spooled below `seq` (its events are gone).
    pub fn forget_below(&mut self, seq: u64) {
        while let Some(entry) = self.order.front().copied() {
            if entry.seq >= seq {
                break;
            }
            self.order.pop_front();
            if self.latest.get(&entry.identity).map(|l| l.seq) == Some(entry.seq) {
                self.latest.remove(&entry.identity);
            }
        }
    }

    /// When the oldest remembered identity is due to be forgotten, if any is.
    pub fn next_expiry(&self) -> Option<Instant> {
        let entry = self.order.front()?;
        Some(self.started + Duration::from_secs(u64::from(entry.at) + self.age_secs() as u64 + 1))
    }

    /// The oldest sequence number the window needs kept on disk to be
    /// read back after a restart (`next_seq` when it remembers none).
    pub fn floor(&self, next_seq: u64) -> u64 {
        self.order.front().map_or(next_seq, |e| e.seq)
    }

    fn now(&self) -> u32 {
        u32::try_from(self.started.elapsed().as_secs()).unwrap_or(u32::MAX)
    }

    fn age_secs(&self) -> u32 {
        u32::try_from(self.window.age.as_secs()).unwrap_or(u32::MAX)
    }
}

/// The fingerprint of an arriving event (never sealed: sealing happens
/// on the way in).
fn fingerprint(keys: &RandomState, event: &Event<'_>) -> Fingerprint {
    fingerprint_of(keys, event, event.envelope, &[])
}

/// The fingerprint of a spooled event, as it arrived: without the seal the
/// spool added, which a copy arriving now does not carry.
fn fingerprint_spooled(keys: &RandomState, event: &Event<'_>) -> Fingerprint {
    let (before, after) = crate::integrity::chain::without_seal(event.envelope);
    fingerprint_of(keys, event, before, after)
}

/// `content` is the envelope in two pieces; hashing streams them, so the
/// pieces of a sealed event hash as the unsealed event did.
fn fingerprint_of(
    keys: &RandomState,
    event: &Event<'_>,
    before: &[u8],
    after: &[u8],
) -> Fingerprint {
    let mut content = keys.build_hasher();
    content.write(before);
    content.write(after);
    Fingerprint {
        identity: keys.hash_one((event.source, event.id)),
        content: content.finish(),
        copy_of: None,
    }
}

/// Fills the window of a spool just opened from the last `ids` records
/// on disk. A read that fails leaves the window short, which costs
/// duplicates (copies of older events are spooled again), never events.
pub(super) fn read_back(shared: &Arc<Shared>) {
    let window = shared.options.dedup;
    if window.ids == 0 {
        return;
    }
    let started = Instant::now();
    let from = {
        let state = shared.lock();
        state
            .next_seq
            .saturating_sub(window.ids as u64)
            .max(state.first_seq())
    };
    let mut reader = Reader::from_seq(shared.clone(), from);
    loop {
        let batch = match reader.read(READ_BACK_EVENTS, READ_BACK_BYTES, true) {
            Ok(batch) if batch.is_empty() => break,
            Ok(batch) => batch,
            Err(error) => {
                tracing::warn!(
                    %error,
                    from = reader.next_seq(),
                    "cannot read the spool back into the dedup window; copies of events accepted before this start may be spooled again (duplicates, never loss)"
                );
                break;
            }
        };
        let prints: Vec<(u64, Fingerprint)> = batch
            .events()
            .map(|(seq, event)| (seq, fingerprint_spooled(&shared.dedup_keys, &event)))
            .collect();
        let mut state = shared.lock();
        for (seq, print) in prints {
            state.recent.remember(print, seq);
        }
    }
    let mut state = shared.lock();
    state.recent.forget_old(usize::MAX);
    tracing::debug!(
        ids = state.recent.len(),
        elapsed = ?started.elapsed(),
        "dedup window read back from the spool"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use auditrelay_plugin_api::Event;

    fn record(id: &str, content: &str) -> Record {
        Record::from_event(Event {
            id,
            source: "test",
            event_type: "t.x",
            time_unix_nanos: 0,
            tenant: None,
            envelope: content.as_bytes(),
        })
    }

    thread_local! {
        static KEYS: RandomState = RandomState::new();
    }

    fn window(ids: usize) -> Recent {
        Recent::new(DedupWindow {
            ids,
            age: Duration::from_secs(600),
        })
    }

    fn sort(recent: &mut Recent, records: &[Record], first_seq: u64) -> (Sorted, Vec<Option<u64>>) {
        let mut prints = Recent::fingerprints(&KEYS.with(|k| k.clone()), records);
        let sorted = recent.sort(&mut prints, first_seq);
        (sorted, prints.iter().map(Fingerprint::copy_of).collect())
    }

    #[test]
    fn a_copy_points_at_the_spooled_one_and_other_content_is_no_copy() {
        let mut recent = window(100);
        let (sorted, copies) = sort(&mut recent, &[record("a", "1"), record("b", "1")], 10);
        assert_eq!((sorted.new, sorted.copies), (2, 0));
        assert_eq!(copies, [None, None]);
        let (sorted, copies) = sort(
            &mut recent,
            &[
                record("b", "1"),
                record("a", "2"),
                record("a", "2"),
                record("c", "1"),
            ],
            12,
        );
        assert_eq!(copies, [Some(11), None, Some(12), None]);
        assert_eq!((sorted.new, sorted.copies, sorted.conflicts), (2, 2, 1));
        assert_eq!(sorted.first_conflict, Some(1));
        assert_eq!(sorted.newest_original, Some(12));
        // "a" now means its newer content; the older content is a conflict.
        let (_, copies) = sort(&mut recent, &[record("a", "2"), record("a", "1")], 14);
        assert_eq!(copies, [Some(12), None]);
    }

    #[test]
    fn undo_takes_back_exactly_what_sort_remembered() {
        let mut recent = window(100);
        sort(&mut recent, &[record("a", "1")], 0);
        let (sorted, _) = sort(&mut recent, &[record("a", "2"), record("b", "1")], 1);
        recent.undo(sorted);
        assert_eq!(recent.len(), 1);
        assert_eq!(recent.floor(1), 0);
        let (_, copies) = sort(&mut recent, &[record("a", "1"), record("b", "1")], 1);
        assert_eq!(
            copies,
            [Some(0), None],
            "a is as before, b was never spooled"
        );
    }

    #[test]
    fn the_window_forgets_the_oldest_and_moves_its_floor() {
        let mut recent = window(3);
        let records: Vec<Record> = (0..5).map(|i| record(&i.to_string(), "x")).collect();
        sort(&mut recent, &records, 0);
        assert!(recent.forget_old(usize::MAX));
        assert_eq!(recent.len(), 3);
        assert_eq!(recent.floor(5), 2);
        let (_, copies) = sort(&mut recent, &records, 5);
        assert_eq!(copies, [None, None, Some(2), Some(3), Some(4)]);
    }

    #[test]
    fn a_forgotten_older_version_leaves_the_newer_remembered() {
        let mut recent = window(2);
        sort(&mut recent, &[record("a", "1"), record("a", "2")], 0);
        sort(&mut recent, &[record("b", "1")], 2);
        recent.forget_old(usize::MAX);
        let (_, copies) = sort(&mut recent, &[record("a", "2")], 3);
        assert_eq!(copies, [Some(1)]);
    }
}
