//! The writer thread: moves framed events from the spool's buffer into
//! segment files and syncs them as the [`Durability`] mode says.
//!
//! Appends only touch memory; this thread does every write and sync, so
//! an emitter never waits on the disk. It sleeps when there is nothing to
//! do and is woken by the first append; while a group commit is due it is
//! not woken at all (the events wait for the sync anyway), so steady load
//! costs no syscall per event. A failed write (a full disk) is cut back
//! off the file and retried with backoff; the events stay in the buffer.

use std::fs::{File, OpenOptions};
use std::io;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::files::FileOp;
use super::format::{self, FRAME_HEADER_LEN};
use super::segment::Segment;
use super::watermark::Watermark;
use super::{Durability, Shared, cursors};

/// How often changed cursors are saved, and the durable watermark synced.
const CURSOR_SAVE_INTERVAL: Duration = Duration::from_millis(100);
/// First wait after a failed write; doubles up to [`MAX_RETRY_DELAY`].
const FIRST_RETRY_DELAY: Duration = Duration::from_millis(100);
const MAX_RETRY_DELAY: Duration = Duration::from_secs(5);
/// A failing write is logged again after this long.
const ERROR_LOG_INTERVAL: Duration = Duration::from_secs(30);
/// After a write (without group commit), appends do not wake the writer for
/// this long: events gather into bigger writes, and emitters make no
/// syscall each. An append wakes it at once when [`WAKE_AT_PENDING`] waits.
const LINGER: Duration = Duration::from_micros(200);
/// Pending bytes that wake the writer even while it lingers.
pub(super) const WAKE_AT_PENDING: usize = 1024 * 1024;
/// Identities the writer forgets at a time when they age out.
const FORGET_STEP: usize = 10_000;

pub(super) fn spawn(shared: Arc<Shared>, watermark: Watermark) -> io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("auditrelay-spool".into())
        .spawn(move || Writer::new(shared, watermark).run())
}

/// The segment being written.
struct Active {
    file: File,
    first_seq: u64,
    len: u64,
    records: u64,
    /// Bytes of it known to be on disk (synced).
    synced_len: u64,
    /// A sync of it failed since: the kernel may have dropped the pages it
    /// could not write, so the bytes after `synced_len` are written again
    /// (from what the file reads back, checked) before the next sync.
    suspect: bool,
}

impl Active {
    /// Syncs the segment's data; after a failed sync, first writes what
    /// was written since the last good one again.
    fn sync(
        &mut self,
        files: &super::SegmentFiles,
        path: &std::path::Path,
        key: format::FrameKey,
    ) -> io::Result<()> {
        let synced = files.injected(FileOp::Sync, path).and_then(|()| {
            if self.suspect {
                self.rewrite_unsynced(key)?;
            }
            self.file.sync_data()
        });
        match synced {
            Ok(()) => {
                self.synced_len = self.len;
                self.suspect = false;
                Ok(())
            }
            Err(error) => {
                self.suspect = true;
                Err(error)
            }
        }
    }

    /// Reads back the bytes after `synced_len`, checks that they are the
    /// intact records written, and writes them again (so that the next
    /// sync writes them, whatever the failed one left behind).
    fn rewrite_unsynced(&mut self, key: format::FrameKey) -> io::Result<()> {
        let mut bytes = vec![0u8; (self.len - self.synced_len) as usize];
        std::os::unix::fs::FileExt::read_exact_at(&self.file, &mut bytes, self.synced_len)?;
        let mut offset = 0;
        while offset < bytes.len() {
            match format::parse_frame(&bytes[offset..], key) {
                format::Parsed::Frame(frame) => offset += frame.len,
                _ => {
                    return Err(io::Error::other(
                        "records written since the last good sync were lost after a failed sync (the kernel dropped them): they are not durable and never will be; restart the relay, whose recovery reports them",
                    ));
                }
            }
        }
        write_all_at(&self.file, &bytes, self.synced_len)
    }
}

/// Frames written into one segment, to publish.
struct Run {
    first_seq: u64,
    records: u64,
    end_seq: u64,
    len: u64,
    index: Vec<(u64, u64)>,
    payload_bytes: u64,
    new_segment: bool,
}

/// What to do next.
enum Task {
    Write(Vec<u8>, u64),
    Sync,
    SaveCursors,
    SyncWatermark,
    /// Start a new segment so the read-out one can be deleted.
    Retire,
    Finish,
}

struct Writer {
    shared: Arc<Shared>,
    /// Records how far durability was announced, for recovery.
    watermark: Watermark,
    active: Option<Active>,
    spare: Vec<u8>,
    unsynced: bool,
    /// The last sync failed (and reported it as the spool's write error).
    sync_failed: bool,
    last_sync: Instant,
    last_cursor_save: Instant,
    /// When the watermark was first updated after its last sync.
    watermark_unsynced_since: Option<Instant>,
    retry_at: Option<Instant>,
    retry_delay: Duration,
    last_error_log: Option<Instant>,
    linger_until: Option<Instant>,
}

impl Writer {
    fn new(shared: Arc<Shared>, watermark: Watermark) -> Self {
        Writer {
            shared,
            watermark,
            active: None,
            spare: Vec::new(),
            unsynced: false,
            sync_failed: false,
            last_sync: Instant::now(),
            last_cursor_save: Instant::now(),
            watermark_unsynced_since: None,
            retry_at: None,
            retry_delay: FIRST_RETRY_DELAY,
            last_error_log: None,
            linger_until: None,
        }
    }

    fn group_interval(&self) -> Option<Duration> {
        match self.shared.options.durability {
            Durability::Group(interval) => Some(interval),
            _ => None,
        }
    }

    fn run(mut self) {
        if let Err(error) = self.resume() {
            tracing::error!(%error, "cannot reopen the last spool segment; writing a new one");
        }
        loop {
            match self.next_task() {
                Task::Write(chunk, first_seq) => self.write(chunk, first_seq),
                Task::Sync => self.sync(),
                Task::SaveCursors => self.save_cursors(),
                Task::SyncWatermark => self.sync_watermark(),
                Task::Retire => self.retire(),
                Task::Finish => break,
            }
        }
        if self.unsynced {
            self.sync();
        }
        self.save_cursors();
        self.sync_watermark();
        self.shared.durable.send_modify(|p| p.finished = true);
    }

    /// Waits for something to do.
    fn next_task(&mut self) -> Task {
        let mut state = self.shared.lock();
        loop {
            let now = Instant::now();
            let lingering = self.linger_until.is_some_and(|until| now < until)
                && state.pending.len() < WAKE_AT_PENDING
                && !state.finishing;
            let may_write = self.retry_at.is_none_or(|at| now >= at) && !lingering;
            if !state.pending.is_empty() && may_write {
                self.linger_until = None;
                std::mem::swap(&mut state.pending, &mut self.spare);
                state.writing = self.spare.len() as u64;
                let first_seq = state.pending_first;
                state.pending_first = state.next_seq;
                return Task::Write(std::mem::take(&mut self.spare), first_seq);
            }
            // A failed sync is retried on its own, whatever the mode: until
            // it succeeds nothing written since can be called durable.
            let sync_at = match self.group_interval() {
                _ if self.sync_failed => Some(self.last_sync + FIRST_RETRY_DELAY),
                Some(interval) if self.unsynced => Some(self.last_sync + interval),
                _ => None,
            };
            if sync_at.is_some_and(|at| now >= at) {
                return Task::Sync;
            }
            let save_at = state
                .cursors_dirty
                .then(|| self.last_cursor_save + CURSOR_SAVE_INTERVAL);
            if state.deletion_due || save_at.is_some_and(|at| now >= at) {
                return Task::SaveCursors;
            }
            let mark_at = self
                .watermark_unsynced_since
                .map(|since| since + CURSOR_SAVE_INTERVAL);
            if mark_at.is_some_and(|at| now >= at) {
                return Task::SyncWatermark;
            }
            if state.finishing && (state.pending.is_empty() || !may_write) {
                return Task::Finish;
            }
            if state.retire_due && !self.unsynced {
                state.retire_due = false;
                return Task::Retire;
            }
            // Identities age out of the dedup window with no event coming:
            // the segments that held only them can go.
            let expiry = state.recent.next_expiry();
            if expiry.is_some_and(|at| now >= at) {
                // In steps, letting appends in between: after a restart
                // the whole window may expire at once.
                if state.recent.forget_old(FORGET_STEP) {
                    state.note_deletable(&self.shared);
                }
                drop(state);
                state = self.shared.lock();
                continue;
            }
            let wake_at = [
                expiry,
                sync_at,
                save_at,
                mark_at,
                self.retry_at.filter(|_| !state.pending.is_empty()),
                // Lingering ends at its deadline even with nothing pending:
                // after it, appends must be able to wake us again.
                self.linger_until.filter(|_| lingering),
            ]
            .into_iter()
            .flatten()
            .min();
            // While a group commit is due or we linger, appends need not
            // wake us (unless a lot is pending).
            state.writer_idle = sync_at.is_none() && !lingering;
            state = match wake_at {
                Some(at) => {
                    self.shared
                        .writer_wake
                        .wait_timeout(state, at.saturating_duration_since(now))
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
                None => self
                    .shared
                    .writer_wake
                    .wait(state)
                    .unwrap_or_else(|e| e.into_inner()),
            };
            state.writer_idle = false;
        }
    }

    /// Writes `chunk` (framed events from `first_seq` on) and publishes it.
    fn write(&mut self, chunk: Vec<u8>, first_seq: u64) {
        match self.write_runs(&chunk) {
            Ok(runs) => {
                self.wrote(&runs);
                if self.retry_at.take().is_some() {
                    tracing::info!("the spool writes to disk again");
                    self.shared.set_write_error(None);
                }
                self.retry_delay = FIRST_RETRY_DELAY;
                let mut spare = chunk;
                spare.clear();
                self.spare = spare;
            }
            Err((error, runs)) => {
                // Publish what did get written; keep the rest for a retry.
                let written: usize = runs
                    .iter()
                    .map(|r| (r.payload_bytes + r.records * FRAME_HEADER_LEN as u64) as usize)
                    .sum();
                let written_records: u64 = runs.iter().map(|r| r.records).sum();
                self.wrote(&runs);
                self.failed(&error, &chunk[written..], first_seq + written_records);
            }
        }
    }

    /// Writes the chunk's frames, segment by segment. On error, returns
    /// what was written before it.
    fn write_runs(&mut self, chunk: &[u8]) -> Result<Vec<Run>, (io::Error, Vec<Run>)> {
        let segment_bytes = self.shared.options.segment_bytes;
        let mut runs = Vec::new();
        let mut offset = 0;
        while offset < chunk.len() {
            let (seq, frame_len) = frame_at(chunk, offset);
            let new_segment = match &self.active {
                None => true,
                Some(active) => active.records > 0 && active.len + frame_len as u64 > segment_bytes,
            };
            if new_segment && let Err(error) = self.roll(seq) {
                return Err((error, runs));
            }
            let active = self.active.as_mut().expect("rolled above");
            let mut run = Run {
                first_seq: active.first_seq,
                records: 0,
                end_seq: seq,
                len: active.len,
                index: Vec::new(),
                payload_bytes: 0,
                new_segment,
            };
            // Take frames while they fit this segment.
            let start = offset;
            let mut len = active.len;
            let mut records = active.records;
            while offset < chunk.len() {
                let (seq, frame_len) = frame_at(chunk, offset);
                if records > 0 && len + frame_len as u64 > segment_bytes {
                    break;
                }
                if records.is_multiple_of(64) {
                    run.index.push((seq, len));
                }
                records += 1;
                len += frame_len as u64;
                run.records += 1;
                run.end_seq = seq + 1;
                run.payload_bytes += (frame_len - FRAME_HEADER_LEN) as u64;
                offset += frame_len;
            }
            let path = self
                .shared
                .segments_dir()
                .join(Segment::file_name(active.first_seq));
            let written = self
                .shared
                .options
                .files
                .injected(FileOp::Write, &path)
                .and_then(|()| write_all_at(&active.file, &chunk[start..offset], active.len));
            if let Err(error) = written {
                // Cut off whatever part of the run got written.
                let _ = active.file.set_len(active.len);
                return Err((error, runs));
            }
            active.len = len;
            active.records = records;
            run.len = len;
            runs.push(run);
        }
        Ok(runs)
    }

    /// Starts a new segment at `first_seq`, syncing the one before. A
    /// failure leaves no new file behind, so the retry can create it.
    fn roll(&mut self, first_seq: u64) -> io::Result<()> {
        let durable = self.shared.options.durability != Durability::None;
        let path = |seq| self.shared.segments_dir().join(Segment::file_name(seq));
        if let Some(old) = &mut self.active
            && durable
        {
            old.sync(
                &self.shared.options.files,
                &path(old.first_seq),
                self.shared.key,
            )?;
        }
        let dir = self.shared.segments_dir();
        let path = dir.join(Segment::file_name(first_seq));
        let file = match create_segment(&path) {
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {
                // Not one of ours (recovery moves strays aside), or left by
                // a roll that failed before it could be removed.
                set_aside(&path)?;
                create_segment(&path)?
            }
            created => created?,
        };
        let header = format::segment_header(first_seq, self.shared.key);
        let made = write_all_at(&file, &header, 0).and_then(|()| {
            if durable {
                file.sync_all()?;
                self.shared.options.files.injected(FileOp::SyncDir, &dir)?;
                File::open(&dir)?.sync_all()?;
            }
            Ok(())
        });
        if let Err(error) = made {
            let _ = std::fs::remove_file(&path);
            return Err(error);
        }
        self.active = Some(Active {
            file,
            first_seq,
            len: format::SEGMENT_HEADER_LEN as u64,
            records: 0,
            synced_len: if durable {
                format::SEGMENT_HEADER_LEN as u64
            } else {
                0
            },
            suspect: false,
        });
        Ok(())
    }

    /// Publishes written runs: readers may read them; with no syncing they
    /// are also durable.
    fn wrote(&mut self, runs: &[Run]) {
        if runs.is_empty() {
            return;
        }
        let mut state = self.shared.lock();
        for run in runs {
            if run.new_segment {
                state.start_segment(&self.shared.segments_dir(), run.first_seq, self.shared.key);
            }
            let segment = state
                .segments
                .back_mut()
                .expect("a segment is being written");
            let grown = run.len - segment.len;
            segment.extend(run.records, run.end_seq, run.len, &run.index);
            state.disk_bytes += grown;
            state.writing = state.writing.saturating_sub(grown);
            state.written_seq = run.end_seq;
            state.written_json += run.payload_bytes;
        }
        let written_seq = state.written_seq;
        state.chains.wrote(written_seq);
        state.wake_readers();
        let written = state.written_seq;
        drop(state);
        match self.shared.options.durability {
            Durability::None => {
                self.publish_durable(written);
                self.linger_until = Some(Instant::now() + LINGER);
            }
            Durability::Always => {
                self.sync();
                self.linger_until = Some(Instant::now() + LINGER);
            }
            Durability::Group(_) => {
                if !self.unsynced {
                    // The window opens with the first unsynced write.
                    self.last_sync = Instant::now();
                }
                self.unsynced = true;
            }
        }
    }

    fn sync(&mut self) {
        let written = self.shared.lock().written_seq;
        let dir = self.shared.segments_dir();
        if let Some(active) = &mut self.active
            && let Err(error) = active.sync(
                &self.shared.options.files,
                &dir.join(Segment::file_name(active.first_seq)),
                self.shared.key,
            )
        {
            let now = Instant::now();
            if !self.sync_failed
                || self
                    .last_error_log
                    .is_none_or(|at| now - at >= ERROR_LOG_INTERVAL)
            {
                tracing::error!(%error, "cannot sync the spool to disk; will try again");
                self.last_error_log = Some(now);
            }
            // Nobody waiting on these events may be told they are safe.
            self.shared
                .set_write_error(Some(format!("cannot sync to disk: {error}")));
            self.sync_failed = true;
            self.last_sync = Instant::now();
            return;
        }
        if std::mem::take(&mut self.sync_failed) && self.retry_at.is_none() {
            tracing::info!("the spool syncs to disk again");
            self.shared.set_write_error(None);
        }
        self.unsynced = false;
        self.last_sync = Instant::now();
        self.publish_durable(written);
    }

    /// Announces that every record below `written` is durable — after
    /// noting it in the watermark, so that recovery knows these records
    /// were promised.
    fn publish_durable(&mut self, written: u64) {
        if let Err(error) = self.watermark.advance(written) {
            tracing::warn!(%error, "cannot update the spool's durable watermark; a crash now could make lost records look like a torn write");
        }
        if self.watermark.unsynced()
            && self.watermark_unsynced_since.is_none()
            && self.shared.options.durability != Durability::None
        {
            self.watermark_unsynced_since = Some(Instant::now());
        }
        self.shared.lock().durable_seq = written;
        self.shared.durable.send_if_modified(|p| {
            let moved = p.durable < written;
            p.durable = p.durable.max(written);
            moved
        });
    }

    /// Syncs the durable watermark, so that after a power loss it trails
    /// what was acknowledged by [`CURSOR_SAVE_INTERVAL`] at most.
    fn sync_watermark(&mut self) {
        if self.watermark_unsynced_since.take().is_some()
            && let Err(error) = self.watermark.sync()
        {
            tracing::warn!(%error, "cannot sync the spool's durable watermark; will try again");
            self.watermark_unsynced_since = Some(Instant::now());
        }
    }

    /// A write failed: keeps `rest` (events from `rest_first` on) for a retry.
    fn failed(&mut self, error: &io::Error, rest: &[u8], rest_first: u64) {
        let now = Instant::now();
        let message = error.to_string();
        let mut state = self.shared.lock();
        let newer = std::mem::take(&mut state.pending);
        state.writing = 0;
        state.pending.extend_from_slice(rest);
        state.pending.extend_from_slice(&newer);
        state.pending_first = rest_first;
        let first_time = state.write_error.as_deref() != Some(&message);
        let waiting = state.pending.len();
        drop(state);
        self.shared.set_write_error(Some(message.clone()));
        if first_time
            || self
                .last_error_log
                .is_none_or(|at| now - at >= ERROR_LOG_INTERVAL)
        {
            tracing::error!(
                error = message,
                waiting_bytes = waiting,
                retry_in = ?self.retry_delay,
                "the spool cannot write to disk; accepted events wait in memory and are retried"
            );
            self.last_error_log = Some(now);
        }
        self.retry_at = Some(now + self.retry_delay);
        self.retry_delay = (self.retry_delay * 2).min(MAX_RETRY_DELAY);
        // A segment created here but never written to is not known to
        // anyone yet: remove it, so the retry can create it again.
        if self.active.as_ref().is_some_and(|a| a.records == 0)
            && let Some(empty) = self.active.take()
            && !self
                .shared
                .lock()
                .segments
                .iter()
                .any(|s| s.first_seq == empty.first_seq)
        {
            let _ = std::fs::remove_file(
                self.shared
                    .segments_dir()
                    .join(Segment::file_name(empty.first_seq)),
            );
        }
    }

    /// Starts a new segment at the next sequence number and deletes the
    /// previous one if every instance has read it all.
    fn retire(&mut self) {
        let next = {
            let state = self.shared.lock();
            if !state.pending.is_empty() || state.written_seq != state.next_seq {
                return;
            }
            state.next_seq
        };
        if self.active.as_ref().is_none_or(|a| a.records == 0) {
            return;
        }
        if let Err(error) = self.roll(next) {
            tracing::warn!(%error, "cannot start a new spool segment; the delivered one stays for now");
            return;
        }
        let mut state = self.shared.lock();
        state.start_segment(&self.shared.segments_dir(), next, self.shared.key);
        // Deleted once the cursors that passed it are saved.
        state.deletion_due = true;
    }

    /// Saves the cursors, then deletes the segments every instance had
    /// read by then: a crash between the two leaves a segment too many,
    /// never a saved cursor pointing at records already deleted.
    fn save_cursors(&mut self) {
        let (snapshot, delete_before) = {
            let mut state = self.shared.lock();
            state.cursors_dirty = false;
            let due = std::mem::take(&mut state.deletion_due);
            let delete_before = if due {
                state.deletable_before(state.keep_from(self.shared.options.max_bytes))
            } else {
                None
            };
            state.reclaim_due = false;
            if let Some(end) = delete_before {
                // Instances not running now lose what they had not read.
                let mut passed = Vec::new();
                for (name, cursor) in &mut state.dormant_cursors {
                    if *cursor < end {
                        passed.push((name.clone(), end - *cursor));
                        *cursor = end;
                    }
                }
                for (name, events) in passed {
                    tracing::warn!(
                        plugin = name,
                        events,
                        "this instance is not running, and every running one has delivered these events: deleting them; it will not receive them"
                    );
                }
            }
            (state.cursor_snapshot(), delete_before)
        };
        self.last_cursor_save = Instant::now();
        let sync = self.shared.options.durability != Durability::None;
        if let Err(error) = cursors::store(&self.shared.cursors_path(), &snapshot, sync) {
            tracing::warn!(%error, "cannot save plugin cursors; will try again (a restart may redeliver events)");
            self.shared.lock().cursors_dirty = true;
            return;
        }
        let saved_floor = snapshot.values().copied().min().unwrap_or(0);
        let rose = {
            let mut state = self.shared.lock();
            std::mem::replace(&mut state.saved_floor, saved_floor) < saved_floor
        };
        if rose {
            // An append waiting for room may find it now (see `refusal`).
            self.shared.room_freed();
        }
        if let Some(end) = delete_before {
            let mut state = self.shared.lock();
            if state.delete_segments_before(end) {
                self.shared.room_freed();
            }
        }
    }
}

/// The sequence number and length of the frame at `offset` of a chunk the
/// spool itself framed.
fn frame_at(chunk: &[u8], offset: usize) -> (u64, usize) {
    let header = &chunk[offset..offset + FRAME_HEADER_LEN];
    let len = u32::from_le_bytes(header[4..8].try_into().expect("4 bytes")) as usize;
    let seq = u64::from_le_bytes(header[8..16].try_into().expect("8 bytes"));
    (seq, FRAME_HEADER_LEN + len)
}

/// Writes all of `bytes` at `offset` of `file`.
pub(super) fn write_all_at(file: &File, bytes: &[u8], offset: u64) -> io::Result<()> {
    #[cfg(unix)]
    {
        std::os::unix::fs::FileExt::write_all_at(file, bytes, offset)
    }
    #[cfg(not(unix))]
    {
        use std::io::{Seek, SeekFrom, Write};
        let mut file = file;
        file.seek(SeekFrom::Start(offset))?;
        file.write_all(bytes)
    }
}

/// Creates a new segment file at `path`; fails if one is there.
fn create_segment(path: &std::path::Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(path)
}

/// Gets a file out of the way of the segment the writer must create at
/// `path`: removed if it holds no more than a header (a roll that failed
/// half way), else moved to `spool/strays/`.
fn set_aside(path: &std::path::Path) -> io::Result<()> {
    if std::fs::metadata(path)?.len() <= format::SEGMENT_HEADER_LEN as u64 {
        return std::fs::remove_file(path);
    }
    super::recovery::move_to_strays(path).map(drop)
}

impl Writer {
    /// Resumes writing the last segment found at start, if there is one,
    /// the next record follows its last (after lost records it does not: a
    /// new segment starts, so the gap stays visible between files), and it
    /// may be appended to (intact header, the spool's key, nothing after
    /// its last record). Otherwise the first write starts a new segment.
    fn resume(&mut self) -> io::Result<()> {
        let state = self.shared.lock();
        let Some(last) = state.segments.back() else {
            return Ok(());
        };
        if last.end_seq != state.next_seq || !last.appendable || last.key != self.shared.key {
            return Ok(());
        }
        let file = OpenOptions::new().read(true).write(true).open(&last.path)?;
        if file.metadata()?.len() != last.len {
            return Ok(());
        }
        self.active = Some(Active {
            file,
            first_seq: last.first_seq,
            len: last.len,
            records: last.records,
            // Recovery read it from disk; it may not all be synced, but a
            // crash, not a failed sync, left it so.
            synced_len: last.len,
            suspect: false,
        });
        Ok(())
    }
}
