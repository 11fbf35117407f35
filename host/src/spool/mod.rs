//! The spool: a durable, ordered log of accepted events on local disk,
//! which every plugin instance reads through its own cursor.
//!
//! - **Appending** ([`Spool::append`]) frames the events into a buffer and
//!   returns: the events are in the log. A writer thread writes the buffer
//!   to segment files and syncs them according to the [`Durability`] mode;
//!   [`Spool::durable`] waits until an event is as safe as the mode makes it.
//! - **Reading**: each instance reads with its own [`Reader`] from its
//!   cursor, which moves ([`Spool::commit`]) only after the instance
//!   handled a batch. Cursors are saved to disk. A segment is deleted once
//!   every instance has passed it and the dedup window no longer needs it.
//! - **Copies** (the `dedup` module): an event the spool accepted recently (same
//!   `(source, id)`, same content) is acknowledged again without being
//!   spooled again ([`Appended::copies`]); the window is read back from
//!   the segments at start, so it holds across a crash.
//! - **When full** (`spool.max_size`), appends wait, are refused, or push out
//!   the oldest events, as [`WhenFull`] says; the default refuses, so nothing
//!   is lost without the emitter knowing.
//! - **On start** the directory is scanned ([`recovery`]): a torn last
//!   record is cut off, damage costs only the records it touched, and the
//!   [`RecoveryReport`] says what was found.
//!
//! The bytes on disk are described in [`format`](mod@format).

mod chains;
mod cursors;
mod dedup;
pub mod files;
pub mod findings;
pub mod format;
mod key;
mod reader;
mod record;
pub mod recovery;
mod segment;
mod watermark;
mod writer;

use std::collections::{BTreeMap, VecDeque};
use std::fs::File;
use std::hash::RandomState;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::{Notify, watch};

pub use chains::StreamTree;
pub use dedup::DedupWindow;
pub use files::SegmentFiles;
pub use findings::Finding;
pub use reader::Reader;
pub use record::{Batch, Record};
pub use recovery::{Evidence, RecoveryReport};
pub use segment::{Damage, Segment};

/// How safe an appended event is before [`Spool::durable`] says so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Synced to disk after every write: survives power loss; slowest.
    Always,
    /// Synced at most this long after it was written (group commit):
    /// survives a crash of the relay at once, power loss after the window.
    Group(Duration),
    /// Written to the operating system, never synced by the relay:
    /// survives a crash of the relay, not of the machine.
    None,
}

/// What an append does when the spool is at `max_bytes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenFull {
    /// Wait up to `block_timeout` for room, then refuse.
    Block,
    /// Refuse at once with [`SpoolError::Full`].
    Reject,
    /// Delete the oldest segment, skipping its events for every instance
    /// (counted in `auditrelay_spool_dropped_events_total` and logged).
    DropOldest,
}

/// Where a new instance starts reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartFrom {
    /// With the next event appended.
    Now,
    /// With the oldest event still spooled.
    Earliest,
}

/// How the spool is set up.
#[derive(Debug, Clone)]
pub struct SpoolOptions {
    /// The spool's directory (segments, cursors, lock).
    pub dir: PathBuf,
    /// How safe an event is before it counts as durable.
    pub durability: Durability,
    /// Size at which a new segment file is started.
    pub segment_bytes: u64,
    /// Most bytes the spool may hold on disk (and in its write buffer).
    pub max_bytes: u64,
    /// What appends do when the spool is full.
    pub when_full: WhenFull,
    /// How long [`WhenFull::Block`] waits.
    pub block_timeout: Duration,
    /// Most bytes waiting to be written (they pile up only while the disk
    /// fails or is slow).
    pub max_pending_bytes: usize,
    /// How readers reach segment files (the operating system, unless a
    /// test installs a `files::FaultPlan`).
    pub files: SegmentFiles,
    /// Which recent events a copy of is not spooled again.
    pub dedup: DedupWindow,
    /// How events are sealed into hash chains as they are appended
    /// ([`crate::integrity::chain`]): by which stream; `None`, not at all.
    pub chain: Option<crate::integrity::chain::StreamKey>,
}

/// What an append did: the events it spooled, and those it did not
/// because the spool had them already (see [`DedupWindow`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    /// Sequence numbers of the events spooled, in order (copies left out).
    pub seqs: Range<u64>,
    /// Events not spooled: copies (same `(source, id)`, same content) of
    /// events the spool accepted recently.
    pub copies: usize,
    /// Events spooled although an event the spool accepted recently had
    /// their `(source, id)` with other content.
    pub conflicts: usize,
    /// The index of the first of those in the append.
    pub first_conflict: Option<usize>,
    /// Every event of this append, copies included, is durable once the
    /// events below this are ([`Spool::durable`] of one less; 0 for an
    /// empty append).
    pub durable_end: u64,
}

/// The dedup window keeps the segments holding its events on disk only up
/// to this share of `max_bytes` (one quarter): it may never be what fills
/// the spool.
pub const DEDUP_SHARE: u64 = 4;

/// Why the spool refused events. Nothing of a refused append was kept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpoolError {
    /// The spool is at its size limit.
    #[error(
        "the spool is full ({used} of {capacity} bytes): a destination is not keeping up; retry later, raise spool.max_size, or see spool.when_full"
    )]
    Full {
        /// Bytes held.
        used: u64,
        /// The limit.
        capacity: u64,
    },
    /// The spool cannot write (e.g. the disk is full) and its buffer is full.
    #[error("the spool cannot write to disk ({0}); events are refused until it can")]
    Unwritable(String),
    /// The relay is shutting down.
    #[error("the relay is shutting down and accepts no more events")]
    Closed,
}

/// Why an append cannot go ahead now.
enum Refusal {
    /// It is refused.
    Now(SpoolError),
    /// The spool is full and `when_full = "block"`: it may wait for room.
    WaitForRoom(SpoolError),
}

/// Who appends, which decides what an append does while it cannot write
/// or finds no room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Caller {
    /// [`Spool::append`]: its events may wait in memory while the disk
    /// fails, and with [`WhenFull::Block`] it waits for room on the
    /// condition variable, holding its thread.
    Thread,
    /// [`Spool::append_when_room`]: refused at once while the disk cannot
    /// write (it would wait for durability that does not come), and told
    /// the spool is full at once so that it waits for room itself, without
    /// holding an async thread.
    Async,
}

/// Why the spool could not be opened. Nothing in it was changed.
#[derive(Debug, thiserror::Error)]
pub enum SpoolOpenError {
    /// A file or directory of the spool could not be created, read or
    /// written.
    #[error("{what} {}: {source}", dir.display())]
    Io {
        /// What was being done ("cannot create the lock in").
        what: &'static str,
        /// The spool directory.
        dir: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// Another process holds the spool's lock.
    #[error(
        "another relay is using the spool in {} (stop it, or give this one another relay.data_dir)",
        dir.display()
    )]
    Locked {
        /// The spool directory.
        dir: PathBuf,
    },
    /// The writer thread could not be started.
    #[error("cannot start the spool writer: {0}")]
    Writer(#[source] std::io::Error),
}

/// A reader's handle: one per plugin instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConsumerId(usize);

/// Counters describing the spool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SpoolStats {
    /// Sequence number the next appended event gets.
    pub next_seq: u64,
    /// Events below this are in segment files (readable).
    pub written_seq: u64,
    /// Events below this are durable under the configured mode.
    pub durable_seq: u64,
    /// The oldest sequence number still spooled.
    pub first_seq: u64,
    /// Bytes in segment files.
    pub disk_bytes: u64,
    /// Bytes waiting to be written.
    pub pending_bytes: u64,
    /// Segment files.
    pub segments: usize,
    /// Events pushed out by [`WhenFull::DropOldest`] since start.
    pub dropped_events: u64,
    /// Identities the dedup window remembers now.
    pub dedup_ids: usize,
}

/// A segment every instance has read is replaced by a new one, and
/// deleted, once it is bigger than this: disk use falls back near zero after
/// an outage, without a new file per event when events trickle.
const RETIRE_ABOVE: u64 = 1024 * 1024;

/// What the writer has made durable, whether it can write now, and
/// whether it has stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Progress {
    /// Events below this are durable.
    durable: u64,
    /// The last write or sync failed: events waiting now may stay in
    /// memory for as long as the disk fails.
    failing: bool,
    /// The writer has stopped; nothing more will become durable.
    finished: bool,
}

/// What became of appended events that someone waits on to be durable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Confirmation {
    /// They are durable under the configured [`Durability`].
    Durable,
    /// The spool cannot write (the reason): they are held in memory only,
    /// and a crash now would lose them. They are written if the disk
    /// recovers first.
    Failing(String),
    /// The writer stopped before they became durable (the relay is
    /// shutting down and could not write them).
    Stopped,
}

/// What a waiting reader needs before it is worth waking: a record at
/// `seq` or later, or `json_bytes` written in total. Waking a reader per
/// event would cost a syscall per event.
#[derive(Debug, Clone, Copy)]
struct Wakeup {
    seq: u64,
    json_bytes: u64,
}

struct Consumer {
    name: String,
    /// Next sequence number it needs.
    cursor: u64,
    /// Whether it keeps segments from being deleted.
    pins: bool,
    signal: Arc<Notify>,
    waiting: Option<Wakeup>,
}

struct State {
    next_seq: u64,
    /// Framed events not yet written, and their sequence numbers.
    pending: Vec<u8>,
    pending_first: u64,
    /// Framed events the writer took from `pending` and has not yet
    /// added to `disk_bytes`: counted toward `max_bytes` meanwhile, or
    /// the cap could be overshot by one write.
    writing: u64,
    /// Oldest first; the last is the one being written.
    segments: VecDeque<Segment>,
    written_seq: u64,
    durable_seq: u64,
    disk_bytes: u64,
    /// Payload bytes written since start, for byte-based reader wakeups.
    written_json: u64,
    consumers: Vec<Consumer>,
    /// Cursors of instances that are not running now, kept as they were.
    dormant_cursors: BTreeMap<String, u64>,
    cursors_dirty: bool,
    /// Segments every instance has read are waiting to be deleted: the
    /// writer saves the cursors first, then deletes them, so no saved
    /// cursor ever points before the first segment unless records were
    /// lost.
    deletion_due: bool,
    /// Every instance has read all of the segment being written, and it is
    /// big: the writer may start a new one and delete it.
    retire_due: bool,
    closed: bool,
    finishing: bool,
    writer_idle: bool,
    write_error: Option<String>,
    /// The identities of recent events.
    recent: dedup::Recent,
    /// The lowest cursor in the cursors file as last saved: segments
    /// before it may go at any moment without a saved cursor ever
    /// pointing at deleted records.
    saved_floor: u64,
    /// The spool is full and the dedup window keeps delivered segments:
    /// the writer deletes them at its next save, whatever the window.
    reclaim_due: bool,
    /// Every stream's hash chain and tree.
    chains: chains::Chains,
}

impl State {
    /// Records that a new (empty) segment file starts at `first_seq`. A
    /// segment already listed there holds no record (its file was not one
    /// the writer could go on with, and the roll set it aside): the new
    /// one takes its place, so two entries never name one file — deleting
    /// the stale one would delete the live one.
    fn start_segment(&mut self, dir: &Path, first_seq: u64, key: format::FrameKey) {
        if let Some(stale) = self.segments.back()
            && stale.first_seq == first_seq
        {
            debug_assert_eq!(
                stale.records, 0,
                "a segment holding records is never rolled over"
            );
            self.disk_bytes -= stale.len;
            self.segments.pop_back();
        }
        let mut segment = Segment::new(dir, first_seq, key);
        segment.end_seq = first_seq;
        self.disk_bytes += format::SEGMENT_HEADER_LEN as u64;
        self.segments.push_back(segment);
    }

    fn first_seq(&self) -> u64 {
        self.segments
            .front()
            .map_or(self.written_seq, |s| s.first_seq)
    }

    fn wakeup_due(&self, w: &Wakeup) -> bool {
        self.written_seq > w.seq || self.written_json >= w.json_bytes || self.closed
    }

    /// Signals every waiting reader whose wakeup is due.
    fn wake_readers(&mut self) {
        for i in 0..self.consumers.len() {
            if let Some(wakeup) = self.consumers[i].waiting
                && self.wakeup_due(&wakeup)
            {
                self.consumers[i].waiting = None;
                self.consumers[i].signal.notify_one();
            }
        }
    }

    /// The end of the segments every instance has read (all but the last
    /// segment whose records lie before `keep_from`), if there are any.
    fn deletable_before(&self, keep_from: u64) -> Option<u64> {
        let last = self.segments.len().checked_sub(1)?;
        self.segments
            .iter()
            .take(last)
            .take_while(|s| s.end_seq <= keep_from)
            .last()
            .map(|s| s.end_seq)
    }

    /// Deletes every segment but the last whose records all lie before
    /// `keep_from`; returns whether any went. Only after the cursors that
    /// passed them are saved (see `deletion_due`).
    fn delete_segments_before(&mut self, keep_from: u64) -> bool {
        let last = self.segments.len().saturating_sub(1);
        let Some(end) = self
            .segments
            .iter()
            .take(last)
            .take_while(|s| s.end_seq <= keep_from)
            .last()
            .map(|s| s.end_seq)
        else {
            return false;
        };
        if !self.chains_saved_before_deleting(end) {
            return false;
        }
        let mut freed = false;
        while self.segments.len() > 1 && self.segments[0].end_seq <= keep_from {
            let done = self.segments.pop_front().expect("checked above");
            self.disk_bytes -= done.len;
            freed = true;
            if let Err(error) = std::fs::remove_file(&done.path) {
                tracing::warn!(segment = %done.path.display(), %error, "cannot delete a delivered segment");
            }
        }
        freed
    }

    /// Saves the hash chains before records below `end` are deleted, which
    /// a restart could then not replay; `false` (and a warning): they
    /// cannot go yet.
    fn chains_saved_before_deleting(&mut self, end: u64) -> bool {
        match self.chains.save_before_deleting(end, self.written_seq) {
            Ok(()) => true,
            Err(error) => {
                tracing::warn!(%error, "cannot save the hash chains ({}); delivered segments stay until it works", chains::CHAINS_FILE);
                false
            }
        }
    }

    /// The oldest cursor that keeps segments, or the written end if none.
    fn handled_by_all(&self) -> u64 {
        self.consumers
            .iter()
            .filter(|c| c.pins)
            .map(|c| c.cursor)
            .min()
            .unwrap_or(self.written_seq)
    }

    /// Segments ending at or before this may be deleted: every instance
    /// has handled them, and the dedup window does not need them — or
    /// needs more than its share of `max_bytes`, and gets the newest
    /// segments within it.
    fn keep_from(&self, max_bytes: u64) -> u64 {
        let handled = self.handled_by_all();
        let floor = self.recent.floor(self.next_seq);
        if floor >= handled || self.reclaim_due {
            return handled;
        }
        let budget = max_bytes / DEDUP_SHARE;
        let mut kept = 0;
        for segment in self.segments.iter().rev() {
            if segment.end_seq > handled {
                continue;
            }
            if segment.end_seq <= floor {
                break;
            }
            kept += segment.len;
            if kept > budget {
                return segment.end_seq;
            }
        }
        floor
    }

    /// Asks the writer to delete what the window or the instances no
    /// longer need, if anything.
    fn note_deletable(&mut self, shared: &Shared) {
        if !self.deletion_due
            && self
                .deletable_before(self.keep_from(shared.options.max_bytes))
                .is_some()
        {
            self.deletion_due = true;
            if self.writer_idle {
                shared.writer_wake.notify_one();
            }
        }
    }

    fn used_bytes(&self) -> u64 {
        self.disk_bytes + self.writing + self.pending.len() as u64
    }

    fn cursor_snapshot(&self) -> BTreeMap<String, u64> {
        let mut all = self.dormant_cursors.clone();
        for c in &self.consumers {
            all.insert(c.name.clone(), c.cursor);
        }
        all
    }
}

struct Shared {
    state: Mutex<State>,
    /// The writer waits here for work.
    writer_wake: Condvar,
    /// Blocked appends wait here for room ([`Spool::append`])...
    room: Condvar,
    /// ...and async ones here ([`Spool::append_when_room`]).
    room_async: tokio::sync::Notify,
    durable: watch::Sender<Progress>,
    options: SpoolOptions,
    /// What record checksums are keyed with ([`format::FrameKey`]).
    key: format::FrameKey,
    dropped_events: AtomicU64,
    /// What the dedup window hashes identities and contents with.
    dedup_keys: RandomState,
}

impl Shared {
    /// Wakes every append waiting for room (or for the spool to close).
    fn room_freed(&self) {
        self.room.notify_all();
        self.room_async.notify_waiters();
    }

    /// Records whether the spool can write now (`None`: it can), for
    /// appends and for everyone waiting on durability.
    fn set_write_error(&self, error: Option<String>) {
        let failing = error.is_some();
        self.lock().write_error = error;
        self.durable.send_if_modified(|p| {
            let changed = p.failing != failing;
            p.failing = failing;
            changed
        });
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every update is a few assignments; a panic cannot leave a
        // half-made change that matters, so poisoning is ignored.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn segments_dir(&self) -> PathBuf {
        self.options.dir.join(SEGMENTS_DIR)
    }

    fn cursors_path(&self) -> PathBuf {
        self.options.dir.join(CURSORS_FILE)
    }
}

/// The spool; see the `spool` module docs.
pub struct Spool {
    shared: Arc<Shared>,
    writer: Mutex<Option<JoinHandle<()>>>,
    /// Held while the spool is open; released by [`finish`](Spool::finish).
    lock: Mutex<Option<File>>,
}

impl Spool {
    /// Opens (or creates) the spool in `options.dir`: takes its lock,
    /// scans what is there, and starts the writer.
    pub fn open(options: SpoolOptions) -> Result<(Spool, RecoveryReport), SpoolOpenError> {
        let describe = |what: &'static str, source: std::io::Error| SpoolOpenError::Io {
            what,
            dir: options.dir.clone(),
            source,
        };
        std::fs::create_dir_all(options.dir.join(SEGMENTS_DIR))
            .map_err(|e| describe("cannot create the spool directory", e))?;
        let lock = File::create(options.dir.join(LOCK_FILE))
            .map_err(|e| describe("cannot create the lock in", e))?;
        lock.try_lock().map_err(|_| SpoolOpenError::Locked {
            dir: options.dir.clone(),
        })?;
        let (key, key_problem, store_key) = frame_key(&options.dir);
        let mut evidence = evidence(&options.dir);
        evidence.problems.extend(key_problem);
        let (segments, report) =
            recovery::recover(&options.dir.join(SEGMENTS_DIR), true, &evidence, key)
                .map_err(|e| describe("cannot read the spool in", e))?;
        // What a crash left written but not synced is in the page cache: it
        // reads back (the dedup window remembers it) and counts as durable
        // from here on, so it is made durable before it counts.
        if options.durability != Durability::None {
            let unsynced = segments
                .iter()
                .filter(|s| s.records > 0 && s.end_seq > evidence.durable);
            for segment in unsynced {
                options
                    .files
                    .injected(files::FileOp::Sync, &segment.path)
                    .and_then(|()| File::open(&segment.path)?.sync_data())
                    .and_then(|()| File::open(options.dir.join(SEGMENTS_DIR))?.sync_all())
                    .map_err(|e| describe("cannot sync what the last run left unsynced in", e))?;
            }
        }
        if store_key {
            key::store(&options.dir.join(KEY_FILE), key)
                .map_err(|e| describe("cannot store the spool's frame key in", e))?;
        }
        let findings = report.findings();
        if !findings.is_empty()
            && let Err(error) = findings::record(&options.dir.join(FINDINGS_FILE), &findings)
        {
            tracing::error!(%error, "cannot record what the spool's recovery found in {FINDINGS_FILE}; `auditrelay spool verify` will not report it once the relay moves on");
        }
        let watermark = watermark::Watermark::open(&options.dir.join(WATERMARK_FILE))
            .map_err(|e| describe("cannot open the durable watermark in", e))?;
        let (chains, chains_problem) = chains::Chains::load(
            &options.dir,
            options.chain,
            options.durability != Durability::None,
        );
        if let Some(problem) = chains_problem {
            tracing::error!(
                problem,
                "the hash chains restart from what the spool holds; `auditrelay verify` will report the break"
            );
        }
        let cursors = evidence.cursors.clone();
        let saved_floor = cursors.values().copied().min().unwrap_or(0);
        // Never reuse a sequence number that was acknowledged or that a
        // cursor has seen, even if the records behind it were lost.
        let next_seq = report.next_seq.max(evidence.existed_below());
        let disk_bytes = segments.iter().map(|s| s.len).sum();
        let (durable, _) = watch::channel(Progress {
            durable: next_seq,
            failing: false,
            finished: false,
        });
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                next_seq,
                pending: Vec::new(),
                writing: 0,
                pending_first: next_seq,
                segments: segments.into(),
                written_seq: next_seq,
                durable_seq: next_seq,
                disk_bytes,
                written_json: 0,
                consumers: Vec::new(),
                dormant_cursors: cursors,
                cursors_dirty: false,
                deletion_due: false,
                retire_due: false,
                closed: false,
                finishing: false,
                writer_idle: false,
                write_error: None,
                recent: dedup::Recent::new(options.dedup),
                saved_floor,
                reclaim_due: false,
                chains,
            }),
            writer_wake: Condvar::new(),
            room: Condvar::new(),
            room_async: tokio::sync::Notify::new(),
            durable,
            options,
            key,
            dropped_events: AtomicU64::new(0),
            dedup_keys: RandomState::new(),
        });
        dedup::read_back(&shared);
        chains::read_back(&shared).map_err(|source| SpoolOpenError::Io {
            what: "cannot read the hash chains back from the spool in",
            dir: shared.options.dir.clone(),
            source,
        })?;
        let writer = writer::spawn(shared.clone(), watermark).map_err(SpoolOpenError::Writer)?;
        Ok((
            Spool {
                shared,
                writer: Mutex::new(Some(writer)),
                lock: Mutex::new(Some(lock)),
            },
            report,
        ))
    }

    /// Appends events; returns their sequence numbers once they are in the
    /// log (not yet necessarily on disk: see [`durable`](Self::durable)).
    /// All or none: a refused append keeps nothing. While the disk fails,
    /// events wait in memory (up to `max_pending_bytes`). Copies of events
    /// spooled recently are not spooled again ([`Appended::copies`]): an
    /// append of copies only needs neither room nor a working disk.
    pub fn append(&self, records: &[Record]) -> Result<Appended, SpoolError> {
        self.append_with(records, Caller::Thread)
    }

    /// Appends events as [`append`](Self::append) does, but refuses them at
    /// once while the spool cannot write (for callers that will wait for
    /// the events to be durable, which they would not become), and waits
    /// for room ([`WhenFull::Block`]) without blocking the thread: for
    /// callers on an async runtime's I/O threads.
    pub async fn append_when_room(&self, records: &[Record]) -> Result<Appended, SpoolError> {
        let deadline = tokio::time::Instant::now() + self.shared.options.block_timeout;
        loop {
            // Registered before looking, so room freed in between is seen.
            let room = self.shared.room_async.notified();
            let mut room = std::pin::pin!(room);
            room.as_mut().enable();
            match self.append_with(records, Caller::Async) {
                Err(SpoolError::Full { .. })
                    if self.shared.options.when_full == WhenFull::Block
                        && tokio::time::Instant::now() < deadline =>
                {
                    let _ = tokio::time::timeout_at(deadline, room).await;
                }
                appended => return appended,
            }
        }
    }

    fn append_with(&self, records: &[Record], caller: Caller) -> Result<Appended, SpoolError> {
        let frame_len = |r: &Record| (format::FRAME_HEADER_LEN + r.encoded().len()) as u64;
        let growth = |state: &State, r: &Record| state.chains.growth(r) as u64;
        let dedup = self.shared.options.dedup.ids > 0;
        let mut prints = if dedup {
            dedup::Recent::fingerprints(&self.shared.dedup_keys, records)
        } else {
            Vec::new()
        };
        let mut state = self.shared.lock();
        let deadline = Instant::now() + self.shared.options.block_timeout;
        let sorted = loop {
            if state.closed {
                return Err(SpoolError::Closed);
            }
            let first_seq = state.next_seq;
            let sorted = state.recent.sort(&mut prints, first_seq);
            let size: u64 = match dedup {
                true => records
                    .iter()
                    .zip(&prints)
                    .filter(|(_, p)| p.copy_of().is_none())
                    .map(|(r, _)| frame_len(r) + growth(&state, r))
                    .sum(),
                false => records
                    .iter()
                    .map(|r| frame_len(r) + growth(&state, r))
                    .sum(),
            };
            let refusal = if size == 0 && !records.is_empty() {
                // Copies only: nothing to write, nothing to wait for.
                None
            } else {
                self.refusal(&mut state, size, caller)
            };
            match refusal {
                None => break sorted,
                Some(refusal) => {
                    state.recent.undo(sorted);
                    match refusal {
                        Refusal::Now(error) => return Err(error),
                        Refusal::WaitForRoom(full) => {
                            let now = Instant::now();
                            if now >= deadline || caller == Caller::Async {
                                return Err(full);
                            }
                            state = self
                                .shared
                                .room
                                .wait_timeout(state, deadline - now)
                                .unwrap_or_else(|e| e.into_inner())
                                .0;
                        }
                    }
                }
            }
        };
        let start = state.next_seq;
        for (i, record) in records.iter().enumerate() {
            if prints.get(i).is_some_and(|p| p.copy_of().is_some()) {
                continue;
            }
            let seq = state.next_seq;
            match state.chains.seal(record, seq) {
                Some(sealed) => {
                    format::write_frame(&mut state.pending, self.shared.key, seq, sealed.encoded())
                }
                None => {
                    format::write_frame(&mut state.pending, self.shared.key, seq, record.encoded())
                }
            }
            state.next_seq += 1;
        }
        if state.next_seq > start
            && (state.writer_idle || state.pending.len() >= writer::WAKE_AT_PENDING)
        {
            state.writer_idle = false;
            self.shared.writer_wake.notify_one();
        }
        // As many as came in, and a few more: what has aged out all at
        // once goes in the writer's steps, not on an append's time.
        if state.recent.forget_old(records.len() + 64) {
            state.note_deletable(&self.shared);
        }
        let durable_end = match sorted.newest_original {
            Some(original) if state.next_seq == start => original + 1,
            _ => state.next_seq,
        };
        Ok(Appended {
            seqs: start..state.next_seq,
            copies: sorted.copies,
            conflicts: sorted.conflicts,
            first_conflict: sorted.first_conflict,
            durable_end: if records.is_empty() { 0 } else { durable_end },
        })
    }

    /// Why `size` more bytes cannot be appended now, if they cannot; makes
    /// room first if `when_full = "drop_oldest"` says so.
    fn refusal(&self, state: &mut State, size: u64, caller: Caller) -> Option<Refusal> {
        if caller == Caller::Async
            && let Some(error) = &state.write_error
        {
            return Some(Refusal::Now(SpoolError::Unwritable(error.clone())));
        }
        if state.pending.len() + size as usize > self.shared.options.max_pending_bytes {
            let reason = state
                .write_error
                .clone()
                .unwrap_or_else(|| "the disk is not keeping up".into());
            return Some(Refusal::Now(SpoolError::Unwritable(reason)));
        }
        let capacity = self.shared.options.max_bytes;
        loop {
            if state.used_bytes() + size <= capacity {
                return None;
            }
            // Room for an event comes before remembering one: what only
            // the dedup window keeps goes first — at once, what every saved
            // cursor is past; the rest at the writer's next save (a saved
            // cursor must never point at deleted records).
            if state.delete_segments_before(state.saved_floor.min(state.handled_by_all())) {
                tracing::info!(
                    "the spool is full: deleted delivered segments the dedup window kept (after a restart, copies of their events are spooled again)"
                );
                continue;
            }
            if !state.reclaim_due && state.deletable_before(state.handled_by_all()).is_some() {
                state.reclaim_due = true;
                state.deletion_due = true;
                self.shared.writer_wake.notify_one();
            }
            let full = SpoolError::Full {
                used: state.used_bytes(),
                capacity,
            };
            match self.shared.options.when_full {
                WhenFull::Reject => return Some(Refusal::Now(full)),
                WhenFull::DropOldest => {
                    if !self.drop_oldest(state) {
                        return Some(Refusal::Now(full));
                    }
                }
                WhenFull::Block => return Some(Refusal::WaitForRoom(full)),
            }
        }
    }

    /// Deletes the oldest segment for room; `false` if only the one being
    /// written is left.
    fn drop_oldest(&self, state: &mut State) -> bool {
        if state.segments.len() < 2
            || !state.chains_saved_before_deleting(state.segments[0].end_seq)
        {
            return false;
        }
        let oldest = state.segments.pop_front().expect("two or more segments");
        state.disk_bytes -= oldest.len;
        // A copy of a dropped event is no copy: it must be spooled again.
        state.recent.forget_below(oldest.end_seq);
        let mut dropped = 0;
        for consumer in &mut state.consumers {
            if consumer.cursor < oldest.end_seq {
                dropped = dropped.max(oldest.end_seq - consumer.cursor.max(oldest.first_seq));
                consumer.cursor = oldest.end_seq;
            }
        }
        for cursor in state.dormant_cursors.values_mut() {
            *cursor = (*cursor).max(oldest.end_seq);
        }
        state.cursors_dirty = true;
        self.shared
            .dropped_events
            .fetch_add(dropped, Ordering::Relaxed);
        if dropped > 0 {
            tracing::error!(
                segment = %oldest.path.display(),
                events = dropped,
                "the spool is full and spool.when_full = \"drop_oldest\": dropped undelivered events"
            );
        }
        if let Err(error) = std::fs::remove_file(&oldest.path) {
            tracing::warn!(segment = %oldest.path.display(), %error, "cannot delete a dropped segment");
        }
        true
    }

    /// Registers a reader named `name` (an instance): it resumes at its
    /// saved cursor, or starts as `start` says. `pins`: its cursor keeps
    /// segments from being deleted.
    pub fn consumer(&self, name: &str, start: StartFrom, pins: bool) -> ConsumerId {
        let mut state = self.shared.lock();
        let first = state.first_seq();
        let cursor = match state.dormant_cursors.remove(name) {
            Some(saved) if saved < first => {
                tracing::warn!(
                    plugin = name,
                    skipped = first - saved,
                    "events this instance had not read were deleted while it was not running; it resumes with the oldest spooled event"
                );
                first
            }
            Some(saved) => saved,
            None => match start {
                StartFrom::Now => state.next_seq,
                StartFrom::Earliest => first,
            },
        };
        state.consumers.push(Consumer {
            name: name.to_owned(),
            cursor,
            pins,
            signal: Arc::new(Notify::new()),
            waiting: None,
        });
        state.cursors_dirty = true;
        ConsumerId(state.consumers.len() - 1)
    }

    /// A reader from `from_seq` that follows no instance (a live stream's
    /// own, ephemeral cursor). It keeps no segment from being deleted: one
    /// that falls behind finds the events it had not read gone, and goes on
    /// after them (its sequence numbers jump).
    pub fn follower(&self, from_seq: u64) -> Reader {
        Reader::from_seq(self.shared.clone(), from_seq)
    }

    /// A reader for `consumer`, starting at its cursor.
    pub fn reader(&self, consumer: ConsumerId) -> Reader {
        Reader::new(self.shared.clone(), consumer)
    }

    /// Moves `consumer`'s cursor to `next_seq` (after the last event it
    /// handled) and deletes segments nobody needs any more.
    pub fn commit(&self, consumer: ConsumerId, next_seq: u64) {
        let mut state = self.shared.lock();
        let cursor = &mut state.consumers[consumer.0].cursor;
        if next_seq <= *cursor {
            return;
        }
        *cursor = next_seq;
        // The first change since the last save wakes the writer, which
        // saves within CURSOR_SAVE_INTERVAL even if no event comes.
        if !std::mem::replace(&mut state.cursors_dirty, true) && state.writer_idle {
            self.shared.writer_wake.notify_one();
        }
        state.note_deletable(&self.shared);
        let caught_up = state.handled_by_all() >= state.next_seq;
        if caught_up
            && state.segments.back().is_some_and(|s| s.len > RETIRE_ABOVE)
            && !state.retire_due
        {
            state.retire_due = true;
            if state.writer_idle {
                self.shared.writer_wake.notify_one();
            }
        }
    }

    /// The sequence number `consumer` reads next.
    pub fn cursor(&self, consumer: ConsumerId) -> u64 {
        self.shared.lock().consumers[consumer.0].cursor
    }

    /// Events and bytes (on disk, approximately) `consumer` has not handled.
    pub fn lag(&self, consumer: ConsumerId) -> (u64, u64) {
        let state = self.shared.lock();
        let cursor = state.consumers[consumer.0].cursor;
        let events = state.next_seq.saturating_sub(cursor);
        let bytes = state
            .segments
            .iter()
            .filter(|s| s.end_seq > cursor)
            .map(|s| {
                if s.first_seq <= cursor {
                    s.len - s.offset_before(cursor)
                } else {
                    s.len
                }
            })
            .sum::<u64>()
            + state.writing
            + state.pending.len() as u64;
        (events, bytes)
    }

    /// Waits until an event at `seq` or later is readable, or `more_json`
    /// more payload bytes have been written, or the spool closes.
    pub async fn wait_readable(&self, consumer: ConsumerId, seq: u64, more_json: u64) {
        let (signal, wakeup) = {
            let mut state = self.shared.lock();
            let wakeup = Wakeup {
                seq,
                json_bytes: state.written_json.saturating_add(more_json),
            };
            if state.wakeup_due(&wakeup) {
                return;
            }
            let slot = &mut state.consumers[consumer.0];
            slot.waiting = Some(wakeup);
            (slot.signal.clone(), wakeup)
        };
        loop {
            signal.notified().await;
            let mut state = self.shared.lock();
            if state.wakeup_due(&wakeup) {
                state.consumers[consumer.0].waiting = None;
                return;
            }
            // A stale signal from an earlier wait: keep waiting.
            state.consumers[consumer.0].waiting = Some(wakeup);
        }
    }

    /// Resolves once the event at `seq` is durable under the configured
    /// [`Durability`] — or at once when the spool cannot write (its events
    /// would wait in memory for as long as the disk fails), or when the
    /// writer stopped without making it so.
    pub async fn durable(&self, seq: u64) -> Confirmation {
        let mut progress = self.shared.durable.subscribe();
        let outcome = progress
            .wait_for(|p| p.durable > seq || p.failing || p.finished)
            .await
            .map(|p| *p);
        match outcome {
            Ok(p) if p.durable > seq => Confirmation::Durable,
            Ok(p) if p.failing => Confirmation::Failing(
                self.write_error()
                    .unwrap_or_else(|| "the disk is failing".into()),
            ),
            _ => Confirmation::Stopped,
        }
    }

    /// Refuses further appends and wakes every waiting reader; the writer
    /// goes on writing what it has.
    pub fn close(&self) {
        let mut state = self.shared.lock();
        state.closed = true;
        state.wake_readers();
        self.shared.writer_wake.notify_one();
        self.shared.room_freed();
    }

    /// Whether [`close`](Self::close) was called.
    pub fn is_closed(&self) -> bool {
        self.shared.lock().closed
    }

    /// Closes the spool, writes and syncs what is pending, saves cursors,
    /// stops the writer and releases the spool's lock (another relay may
    /// open it then). Blocks; call it last.
    pub fn finish(&self) {
        {
            let mut state = self.shared.lock();
            state.closed = true;
            state.finishing = true;
            state.wake_readers();
            self.shared.writer_wake.notify_one();
        }
        if let Some(writer) = self.writer.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = writer.join();
        }
        self.lock.lock().unwrap_or_else(|e| e.into_inner()).take();
    }

    /// The most one append may bring (`max_pending_bytes`): a larger one
    /// is refused even when nothing else waits.
    pub fn max_append_bytes(&self) -> usize {
        self.shared.options.max_pending_bytes
    }

    /// Current counters.
    pub fn stats(&self) -> SpoolStats {
        let state = self.shared.lock();
        SpoolStats {
            next_seq: state.next_seq,
            written_seq: state.written_seq,
            durable_seq: state.durable_seq,
            first_seq: state.first_seq(),
            disk_bytes: state.disk_bytes,
            pending_bytes: state.pending.len() as u64,
            segments: state.segments.len(),
            dropped_events: self.shared.dropped_events.load(Ordering::Relaxed),
            dedup_ids: state.recent.len(),
        }
    }

    /// The last write error, if the spool cannot write now.
    pub fn write_error(&self) -> Option<String> {
        self.shared.lock().write_error.clone()
    }

    /// The spool's directory.
    pub fn dir(&self) -> &Path {
        &self.shared.options.dir
    }

    /// Every stream's Merkle tree over its written events: what a signed
    /// checkpoint commits to.
    pub fn chain_trees(&self) -> Vec<StreamTree> {
        self.shared.lock().chains.trees()
    }
}

/// The file holding the durable watermark, in the spool's directory.
const WATERMARK_FILE: &str = "durable";
/// The file holding every instance's saved cursor, in the spool's directory.
const CURSORS_FILE: &str = "cursors.json";
/// The file holding the frame key, in the spool's directory.
const KEY_FILE: &str = "frame-key";
/// The file recording what recovery found, in the spool's directory.
const FINDINGS_FILE: &str = "findings.ndjson";
/// The file whose lock says a relay has the spool open.
const LOCK_FILE: &str = "LOCK";
/// Where the segment files are.
const SEGMENTS_DIR: &str = "segments";

/// Whether a relay has the spool in `dir` open (holds its lock).
pub fn in_use(dir: &Path) -> bool {
    match File::open(dir.join(LOCK_FILE)) {
        Ok(file) => file.try_lock().is_err(),
        Err(_) => false,
    }
}

/// What the spool's own files in `dir` say must exist: the durable
/// watermark and the saved cursors. What is wrong with them is logged and
/// kept as [`Evidence::problems`]: recovery is then less sure what was
/// lost, never more.
fn evidence(dir: &Path) -> Evidence {
    let mut problems = Vec::new();
    let (cursors, warning) = cursors::load(&dir.join(CURSORS_FILE));
    if let Some(warning) = warning {
        tracing::warn!(
            "{warning}; plugins will start from the earliest spooled event (duplicates, not loss)"
        );
        problems.push(format!(
            "{warning}: records lost before the oldest segment cannot be told"
        ));
    }
    let durable = match watermark::read(&dir.join(WATERMARK_FILE)) {
        Ok((durable, warning)) => {
            problems.extend(warning);
            durable
        }
        Err(warning) => {
            tracing::warn!(
                "{warning}; records lost at the end of the spool may be reported as a torn write"
            );
            problems.push(format!(
                "{warning}: records lost at the end of the spool cannot be told from a torn write"
            ));
            0
        }
    };
    Evidence {
        durable,
        cursors,
        problems,
    }
}

/// The spool's frame key: from its file in `dir`, else from the newest
/// segment header holding one, else a new one. Also says what is wrong
/// with the file, if that matters, and whether the file is to be written.
fn frame_key(dir: &Path) -> (format::FrameKey, Option<String>, bool) {
    let problem = match key::read(&dir.join(KEY_FILE)) {
        Ok(Some(key)) => return (key, None, false),
        Ok(None) => None,
        Err(problem) => Some(problem),
    };
    let newest_keyed = std::fs::read_dir(dir.join(SEGMENTS_DIR))
        .into_iter()
        .flatten()
        .filter_map(|entry| {
            let path = entry.ok()?.path();
            let seq = Segment::parse_file_name(path.file_name()?.to_str()?)?;
            Some((seq, path))
        })
        .collect::<BTreeMap<_, _>>()
        .into_values()
        .rev()
        .find_map(|path| {
            use std::io::Read;
            let mut header = Vec::new();
            File::open(&path)
                .ok()?
                .take(format::SEGMENT_HEADER_LEN as u64)
                .read_to_end(&mut header)
                .ok()?;
            let (_, key) = format::read_segment_header(&header).ok()?;
            (key != format::FrameKey::UNKEYED).then_some((key, path))
        });
    match newest_keyed {
        Some((key, path)) => {
            let problem = problem.unwrap_or_else(|| format!("{KEY_FILE} is missing"));
            let problem = format!(
                "{problem}; the key in the header of {} is used",
                path.display()
            );
            (key, Some(problem), true)
        }
        // A new spool, or one written before records were keyed.
        None => (format::FrameKey::random(), problem, true),
    }
}

/// A stopped spool, read without changing anything.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// What scanning every segment found, with the findings recorded when
    /// the spool was opened before.
    pub report: RecoveryReport,
    /// Saved cursors by instance name.
    pub cursors: BTreeMap<String, u64>,
    /// Bytes of segment files.
    pub disk_bytes: u64,
}

/// Reads the spool in `dir` without opening it for writing (for
/// `auditrelay status` and `auditrelay spool verify`; safe while a relay
/// runs, whose last segment may then look torn at its end).
pub fn inspect(dir: &Path) -> std::io::Result<Snapshot> {
    let files = ["segments", WATERMARK_FILE, CURSORS_FILE, KEY_FILE];
    if !files.iter().any(|f| dir.join(f).exists()) {
        // Never opened: an empty spool.
        return Ok(Snapshot {
            report: RecoveryReport::default(),
            cursors: BTreeMap::new(),
            disk_bytes: 0,
        });
    }
    // The evidence first: it only ever trails what the segments hold, so a
    // relay writing meanwhile cannot make records look lost.
    let (key, key_problem, _) = frame_key(dir);
    let mut evidence = evidence(dir);
    evidence.problems.extend(key_problem);
    let (segments, mut report) = recovery::recover(&dir.join(SEGMENTS_DIR), false, &evidence, key)?;
    let cursors = evidence.cursors;
    // A running relay deletes a delivered segment only after saving the
    // cursors that passed it, so a segment that vanished during the scan
    // (judged missing) is covered by the cursors saved since: handled,
    // not lost.
    let (after, _) = cursors::load(&dir.join(CURSORS_FILE));
    if let Some(handled_by_all) = after.values().copied().min() {
        report.forget_handled(handled_by_all);
    }
    let current = report.findings();
    report.earlier = findings::read(&dir.join(FINDINGS_FILE))
        .unwrap_or_else(|problem| {
            vec![Finding {
                found: String::new(),
                finding: problem,
            }]
        })
        .into_iter()
        .filter(|earlier| !current.contains(&earlier.finding))
        .collect();
    Ok(Snapshot {
        report,
        cursors,
        disk_bytes: segments.iter().map(|s| s.len).sum(),
    })
}

impl Drop for Spool {
    fn drop(&mut self) {
        self.finish();
    }
}

#[cfg(test)]
mod tests;
