//! The files a file source reads: found by its globs, followed by identity
//! (device and inode) through renames, recognised after truncation and
//! when copied, and read line by line from their committed position.
//!
//! Nothing here moves a position forward by itself: [`Files::read`] says
//! which lines follow each position and where each file would then be
//! ([`Read::advances`]); only [`Files::commit`], called once those lines'
//! events are durable, moves the positions. A failure in between reads
//! the same lines again.
//!
//! Rotation, as logrotate does it:
//!
//! - **rename + create**: the renamed file keeps its inode, so it is the
//!   same file under a new name. If the new name still matches, it is
//!   simply read on; if not, it is read until it has stopped growing for
//!   `rotate_wait` (a writer may append until it reopens), then let go. A
//!   file renamed while the relay was down is looked for, by inode, in its
//!   directory.
//! - **copytruncate**: the file shrinks below its position, or its first
//!   bytes change: it is read again from its beginning. What was not read
//!   of the old generation is in the copy: a new file whose first bytes
//!   are a known generation's is read from where that generation was left,
//!   not from its beginning.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use super::cursor::{Cursor, GHOSTS, Ghost, HEAD_BYTES, Head, Position};
use crate::config::StartAt;

/// The files of one source.
pub struct Files {
    patterns: Vec<String>,
    tracked: Vec<Tracked>,
    ghosts: Vec<Ghost>,
    rotate_wait: Duration,
    max_line: usize,
    /// Where to begin in files found by the very first scan (no cursor).
    start_at: Option<StartAt>,
    /// The relay's own state: never read, whatever a glob matches.
    exclude: Option<PathBuf>,
    /// Files not read: compressed rotations, told once.
    ignored: HashSet<(u64, u64)>,
    /// New files that may be a copy still being written, since when.
    deferred: HashMap<(u64, u64), Instant>,
    /// Whether the positions changed since the last commit in a way a
    /// scan made (a file found, rotated, truncated or let go).
    dirty: bool,
}

struct Tracked {
    /// The committed position.
    pos: Position,
    file: Option<File>,
    /// Whether a glob matched it in the last scan.
    matched: bool,
    size: u64,
    modified: SystemTime,
    grew_at: Instant,
    /// Since when no glob matches it.
    unmatched_since: Option<Instant>,
}

impl Tracked {
    /// Whether it is no longer matched and has not grown for `wait` since
    /// it stopped matching: what is left of it will never be a whole line.
    fn is_done_growing(&self, wait: Duration) -> bool {
        !self.matched
            && self.grew_at.elapsed() >= wait
            && self
                .unmatched_since
                .is_some_and(|since| since.elapsed() >= wait)
    }
}

/// One line of a file, as a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// The file's path when read.
    pub path: PathBuf,
    /// Where the line begins.
    pub offset: u64,
    /// Its bytes, without the line end (a `\r\n` end too).
    pub data: Vec<u8>,
    /// Whether it is whole.
    pub kind: LineKind,
}

/// What kind of line a [`Line`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineKind {
    /// Ended by a newline.
    Whole,
    /// The last bytes of a file let go of, never ended by a newline.
    Unterminated,
    /// Longer than `max_line_bytes`: `data` holds its first bytes only; it
    /// is refused, and the rest of it skipped.
    Overlong,
}

/// Lines read past the committed positions, and where each file would be
/// once they are durable.
#[derive(Debug, Default)]
pub struct Read {
    /// In order: a file's lines in file order, older files first.
    pub lines: Vec<Line>,
    /// `(file, offset, skipping)` for [`Files::commit`].
    pub advances: Vec<Advance>,
}

/// Where one file is once a [`Read`] is committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Advance {
    dev: u64,
    ino: u64,
    offset: u64,
    skipping: bool,
}

/// Something worth telling the operator that a scan found.
pub type Note = String;

/// How much of a refused overlong line is kept.
const OVERLONG_KEPT: usize = 4096;

impl Files {
    /// The files matching `patterns`, positioned as `cursor` says (none:
    /// a first start, beginning as `start_at` says).
    #[cfg(test)]
    pub fn new(
        patterns: Vec<String>,
        cursor: Option<Cursor>,
        start_at: StartAt,
        rotate_wait: Duration,
        max_line: usize,
    ) -> Files {
        Self::excluding(patterns, cursor, start_at, rotate_wait, max_line, None)
    }

    /// [`new`](Self::new), never reading a file under `exclude` (the
    /// relay's data directory: a glob matching its cursor would feed on
    /// itself).
    pub fn excluding(
        patterns: Vec<String>,
        cursor: Option<Cursor>,
        start_at: StartAt,
        rotate_wait: Duration,
        max_line: usize,
        exclude: Option<&Path>,
    ) -> Files {
        let now = Instant::now();
        let (positions, ghosts, start_at) = match cursor {
            Some(cursor) => (cursor.files, cursor.ghosts, None),
            None => (Vec::new(), Vec::new(), Some(start_at)),
        };
        Files {
            patterns,
            tracked: positions
                .into_iter()
                .map(|pos| Tracked {
                    pos,
                    file: None,
                    matched: false,
                    size: 0,
                    modified: SystemTime::UNIX_EPOCH,
                    grew_at: now,
                    unmatched_since: None,
                })
                .collect(),
            ghosts,
            rotate_wait,
            max_line,
            start_at,
            exclude: exclude.map(|dir| dir.canonicalize().unwrap_or_else(|_| dir.to_owned())),
            ignored: HashSet::new(),
            deferred: HashMap::new(),
            dirty: start_at.is_some(),
        }
    }

    /// What to save: every file's committed position.
    pub fn cursor(&self) -> Cursor {
        Cursor {
            files: self.tracked.iter().map(|t| t.pos.clone()).collect(),
            ghosts: self.ghosts.clone(),
        }
    }

    /// Bytes not read yet, in the files as last scanned.
    pub fn pending_bytes(&self) -> u64 {
        self.tracked
            .iter()
            .map(|t| t.size.saturating_sub(t.pos.offset))
            .sum()
    }

    /// How many files are being read.
    pub fn len(&self) -> usize {
        self.tracked.len()
    }

    /// Looks at the files: finds new ones, follows renamed ones, notices
    /// truncation. What it finds worth telling, it returns.
    pub fn scan(&mut self) -> Vec<Note> {
        let mut notes = Vec::new();
        let found = self.expand(&mut notes);
        for tracked in &mut self.tracked {
            tracked.matched = false;
        }
        let ghosts = self.ghosts.len();
        for path in found {
            if let Err(error) = self.look_at(&path, &mut notes) {
                notes.push(format!("cannot read {}: {error}", path.display()));
            }
        }
        self.start_at = None;
        let now = Instant::now();
        for tracked in &mut self.tracked {
            if tracked.matched {
                tracked.unmatched_since = None;
            } else if tracked.unmatched_since.is_none() {
                tracked.unmatched_since = Some(now);
            }
        }
        self.follow_unmatched(&mut notes);
        self.find_copies(ghosts, &mut notes);
        // Capped once every copy of this scan was looked for.
        if self.ghosts.len() > GHOSTS {
            let over = self.ghosts.len() - GHOSTS;
            self.ghosts.drain(..over);
        }
        self.deferred
            .retain(|_, since| since.elapsed() < Duration::from_secs(3600));
        notes
    }

    /// For the generations truncated in this scan (from `since` on) whose
    /// copy no glob matched: looks for it in the file's directory, where
    /// logrotate's `copytruncate` puts it, and reads it from where the
    /// generation was left, so the lines not read before the truncation
    /// are not lost even when `paths` names the live file only.
    fn find_copies(&mut self, since: usize, notes: &mut Vec<Note>) {
        let mut at = since;
        while at < self.ghosts.len() {
            let ghost = &self.ghosts[at];
            let Some((file, path, first)) = self.find_copy(ghost) else {
                at += 1;
                continue;
            };
            let ghost = self.ghosts.remove(at);
            self.dirty = true;
            let meta = match file.metadata() {
                Ok(meta) => meta,
                Err(_) => continue,
            };
            notes.push(format!(
                "{} begins as {} did before it was truncated: its copy (copytruncate); reading it from byte {}, where that was left",
                path.display(),
                ghost.path.display(),
                ghost.offset
            ));
            self.tracked.push(Tracked {
                pos: Position {
                    dev: meta.dev(),
                    ino: meta.ino(),
                    path,
                    offset: ghost.offset,
                    head: Head::of(&first),
                    before: ghost.before,
                    skipping: ghost.skipping,
                },
                file: Some(file),
                matched: false,
                size: meta.len(),
                modified: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                grew_at: Instant::now(),
                unmatched_since: Some(Instant::now()),
            });
        }
    }

    /// A file in `ghost`'s directory, read by no one here, that begins as
    /// `ghost` did and is at least as long as it was read.
    fn find_copy(&self, ghost: &Ghost) -> Option<(File, PathBuf, Vec<u8>)> {
        let dir = ghost.path.parent()?;
        std::fs::read_dir(dir).ok()?.flatten().find_map(|entry| {
            let meta = entry.metadata().ok()?;
            let known = self.find(meta.dev(), meta.ino()).is_some();
            if !meta.is_file() || known || meta.len() < ghost.offset {
                return None;
            }
            let file = open_regular(&entry.path()).ok()?;
            let first = read_first(&file, meta.len()).ok()?;
            copies(
                &file,
                &first,
                meta.len(),
                &ghost.head,
                &ghost.before,
                ghost.offset,
            )
            .then(|| (file, entry.path(), first))
        })
    }

    /// The paths the globs match now, each once, in name order.
    fn expand(&self, notes: &mut Vec<Note>) -> Vec<PathBuf> {
        let mut found = Vec::new();
        for pattern in &self.patterns {
            // `**` follows symlinked directories: a loop never ends (the
            // configuration refuses it; this guards a hand-built source).
            if pattern.contains("**") {
                notes.push(format!("{pattern:?}: recursive globs are not followed"));
                continue;
            }
            match glob::glob(pattern) {
                Ok(paths) => {
                    for path in paths {
                        match path {
                            Ok(path) => found.push(path),
                            Err(error) => notes.push(format!("cannot look at {error}")),
                        }
                    }
                }
                Err(error) => notes.push(format!("{pattern:?} is not a glob: {error}")),
            }
        }
        if let Some(exclude) = &self.exclude {
            found.retain(|path| {
                let real = path.canonicalize().unwrap_or_else(|_| path.clone());
                !real.starts_with(exclude)
            });
        }
        found.sort();
        found.dedup();
        found
    }

    /// Takes in what `path` is now.
    fn look_at(&mut self, path: &Path, notes: &mut Vec<Note>) -> std::io::Result<()> {
        let meta = std::fs::metadata(path)?;
        if !meta.is_file() {
            return Ok(());
        }
        let (dev, ino) = (meta.dev(), meta.ino());
        if let Some(at) = self.find(dev, ino) {
            let tracked = &mut self.tracked[at];
            tracked.matched = true;
            if tracked.pos.path != path {
                tracked.pos.path = path.to_owned();
            }
            return self.refresh(at, notes);
        }
        if self.ignored.contains(&(dev, ino)) {
            return Ok(());
        }
        // A file not read before (or not since the cursor was saved).
        let file = open_regular(path)?;
        let meta = file.metadata()?;
        if (meta.dev(), meta.ino()) != (dev, ino) {
            // Replaced between the two looks: the next scan sees it.
            return Ok(());
        }
        let size = meta.len();
        if size == 0 && self.start_at.is_none() {
            // Nothing to read yet; a copy being made starts empty too.
            return Ok(());
        }
        let first = read_first(&file, size)?;
        if is_compressed(&first) {
            notes.push(format!(
                "{} is compressed (a rotated file, compressed by logrotate?); it is not read: keep the first rotation uncompressed (delaycompress)",
                path.display()
            ));
            self.ignored.insert((dev, ino));
            return Ok(());
        }
        if self.may_be_a_copy_in_progress(&first, size, (dev, ino)) {
            return Ok(());
        }
        self.deferred.remove(&(dev, ino));
        let head = Head::of(&first);
        let (offset, before, skipping) = match self.generation_of(&file, &first, size) {
            Some((offset, from, before, skipping)) => {
                notes.push(format!(
                    "{} begins as {} did: a copy of it (copytruncate); reading it from byte {offset}, where that was left",
                    path.display(),
                    from.display()
                ));
                (offset, before, skipping)
            }
            None if self.start_at == Some(StartAt::End) => (size, read_before(&file, size)?, false),
            None => (0, Head::default(), false),
        };
        self.dirty = true;
        self.tracked.push(Tracked {
            pos: Position {
                dev,
                ino,
                path: path.to_owned(),
                offset,
                head,
                before,
                skipping,
            },
            file: Some(file),
            matched: true,
            size,
            modified: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            grew_at: Instant::now(),
            unmatched_since: None,
        });
        Ok(())
    }

    /// Whether a new file's bytes so far are the beginning of a known
    /// generation, short of where it was read: a copy `cp` is still
    /// writing. It is looked at again until it is not, or until it has
    /// stayed so for `rotate_wait` (at least a second).
    fn may_be_a_copy_in_progress(&mut self, first: &[u8], size: u64, id: (u64, u64)) -> bool {
        if first.is_empty() {
            return false;
        }
        let of_live = self.tracked.iter().any(|t| {
            size < t.pos.offset
                && t.file
                    .as_ref()
                    .is_some_and(|f| read_first(f, first.len() as u64).is_ok_and(|b| b == first))
        });
        let of_truncated = self
            .ghosts
            .iter()
            .any(|g| size < g.offset && !g.head.is_empty() && starts_as(first, &g.head));
        if !of_live && !of_truncated {
            return false;
        }
        let since = *self.deferred.entry(id).or_insert_with(Instant::now);
        since.elapsed() < self.rotate_wait.max(Duration::from_secs(1))
    }

    fn find(&self, dev: u64, ino: u64) -> Option<usize> {
        self.tracked
            .iter()
            .position(|t| t.pos.dev == dev && t.pos.ino == ino)
    }

    /// Brings a tracked file's size up to date through its open handle
    /// (opening it by path if need be), and notices truncation or a
    /// reused inode by its first bytes.
    fn refresh(&mut self, at: usize, notes: &mut Vec<Note>) -> std::io::Result<()> {
        let tracked = &mut self.tracked[at];
        if tracked.file.is_none() {
            let file = open_regular(&tracked.pos.path)?;
            let meta = file.metadata()?;
            if (meta.dev(), meta.ino()) != (tracked.pos.dev, tracked.pos.ino) {
                return Ok(());
            }
            tracked.file = Some(file);
        }
        let file = tracked.file.as_ref().expect("opened above");
        let meta = file.metadata()?;
        let size = meta.len();
        if size > tracked.size {
            tracked.grew_at = Instant::now();
        }
        tracked.size = size;
        tracked.modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
        // Compared at every look, not only when the size changed: a file
        // truncated and written again to the same size has moved on too.
        let first = read_first(file, size)?;
        let head = &tracked.pos.head;
        let same_start = starts_as(&first, head);
        let same_before =
            size >= tracked.pos.offset && holds_at(file, &tracked.pos.before, tracked.pos.offset);
        if same_start && same_before {
            if head.len < HEAD_BYTES && first.len() as u64 > head.len {
                tracked.pos.head = Head::of(&first);
            }
            return Ok(());
        }
        let why = if size < tracked.pos.offset {
            format!(
                "shrank to {size} bytes, below the {} read",
                tracked.pos.offset
            )
        } else if !same_start {
            "begins with other bytes than it did".to_owned()
        } else {
            "holds other bytes before the position read".to_owned()
        };
        notes.push(format!(
            "{} {why}: truncated or replaced; reading it again from its beginning",
            tracked.pos.path.display()
        ));
        let fresh = Position {
            offset: 0,
            skipping: false,
            head: Head::of(&first),
            before: Head::default(),
            ..tracked.pos.clone()
        };
        let old = std::mem::replace(&mut tracked.pos, fresh);
        self.dirty = true;
        if !old.head.is_empty() {
            self.ghosts.push(Ghost {
                head: old.head,
                offset: old.offset,
                before: old.before,
                skipping: old.skipping,
                path: old.path,
            });
        }
        Ok(())
    }

    /// For a new file whose first bytes are `first`: the position of the
    /// generation it is a copy of — same first bytes, and the same bytes
    /// before where that generation was read — where that was, and its
    /// fingerprint there. A truncated generation's copy is preferred to a
    /// live file's (a copy taken before the truncation was seen).
    #[allow(clippy::type_complexity)]
    fn generation_of(
        &mut self,
        file: &File,
        first: &[u8],
        size: u64,
    ) -> Option<(u64, PathBuf, Head, bool)> {
        let copies = |head: &Head, before: &Head, offset: u64| {
            copies(file, first, size, head, before, offset)
        };
        let ghost = self
            .ghosts
            .iter()
            .enumerate()
            .filter(|(_, g)| copies(&g.head, &g.before, g.offset))
            .max_by_key(|(_, g)| g.offset)
            .map(|(at, _)| at);
        if let Some(at) = ghost {
            let ghost = self.ghosts.remove(at);
            return Some((ghost.offset, ghost.path, ghost.before, ghost.skipping));
        }
        self.tracked
            .iter()
            .filter(|t| t.pos.offset > 0 && copies(&t.pos.head, &t.pos.before, t.pos.offset))
            .max_by_key(|t| t.pos.offset)
            .map(|t| {
                (
                    t.pos.offset,
                    t.pos.path.clone(),
                    t.pos.before.clone(),
                    t.pos.skipping,
                )
            })
    }

    /// Files no glob matched: read on through their handle; without one
    /// (after a restart), looked for by inode in their directory; let go of
    /// when gone.
    fn follow_unmatched(&mut self, notes: &mut Vec<Note>) {
        let mut gone = Vec::new();
        for at in 0..self.tracked.len() {
            if self.tracked[at].matched {
                continue;
            }
            if self.tracked[at].file.is_none() {
                let tracked = &self.tracked[at];
                match find_by_inode(&tracked.pos.path, tracked.pos.dev, tracked.pos.ino) {
                    Some(path) => {
                        notes.push(format!(
                            "{} was renamed to {} (rotated) while the relay was not reading it; reading it on from byte {}",
                            tracked.pos.path.display(),
                            path.display(),
                            tracked.pos.offset
                        ));
                        self.tracked[at].pos.path = path;
                        self.dirty = true;
                    }
                    None => {
                        notes.push(format!(
                            "{} is gone (removed, or rotated out of its directory) and was read up to byte {}; what was written to it after that is not read",
                            tracked.pos.path.display(),
                            tracked.pos.offset
                        ));
                        gone.push(at);
                        continue;
                    }
                }
            }
            if let Err(error) = self.refresh(at, notes) {
                notes.push(format!(
                    "cannot read {}: {error}",
                    self.tracked[at].pos.path.display()
                ));
            }
        }
        for at in gone.into_iter().rev() {
            self.tracked.remove(at);
            self.dirty = true;
        }
    }

    /// Reads up to `max_lines` lines and about `max_bytes` bytes past the
    /// committed positions. Files no longer matched come first (they hold
    /// the oldest lines), then by modification time.
    pub fn read(&mut self, max_lines: usize, max_bytes: usize) -> std::io::Result<Read> {
        let mut order: Vec<usize> = (0..self.tracked.len()).collect();
        order.sort_by_key(|&at| {
            let t = &self.tracked[at];
            (t.matched, t.modified, t.pos.path.clone())
        });
        let mut read = Read::default();
        let mut bytes = 0usize;
        for at in order {
            if read.lines.len() >= max_lines || bytes >= max_bytes {
                break;
            }
            let letting_go = self.tracked[at].is_done_growing(self.rotate_wait);
            let max_line = self.max_line;
            let tracked = &mut self.tracked[at];
            let Some(file) = tracked.file.as_ref() else {
                continue;
            };
            if tracked.pos.offset >= tracked.size {
                continue;
            }
            // A line of `max_line` bytes and its `\r\n` always fit.
            let room = (max_bytes - bytes).max(max_line + 2);
            let want = (tracked.size - tracked.pos.offset).min(room as u64) as usize;
            let mut buffer = vec![0u8; want];
            let got = read_at_most(file, &mut buffer, tracked.pos.offset)?;
            buffer.truncate(got);
            // Truncated and written again since the scan: what was read
            // may begin mid-line. The next scan sees it.
            if !holds_at(file, &tracked.pos.before, tracked.pos.offset) {
                continue;
            }
            let at_end = tracked.pos.offset + got as u64 >= tracked.size;
            let advance = split_lines(
                &tracked.pos,
                &buffer,
                SplitLimits {
                    max_lines: max_lines - read.lines.len(),
                    max_line,
                    final_bytes: at_end && letting_go,
                },
                &mut read.lines,
            );
            bytes += (advance.offset - tracked.pos.offset) as usize;
            if advance.offset != tracked.pos.offset || advance.skipping != tracked.pos.skipping {
                read.advances.push(advance);
            }
        }
        Ok(read)
    }

    /// Moves the positions as `advances` say (their lines' events are
    /// durable), and lets go of the files no longer matched that are read
    /// to their end and done growing. Whether anything changed.
    pub fn commit(&mut self, advances: &[Advance]) -> bool {
        for advance in advances {
            if let Some(at) = self.find(advance.dev, advance.ino) {
                let tracked = &mut self.tracked[at];
                tracked.pos.offset = advance.offset;
                tracked.pos.skipping = advance.skipping;
                if let Some(file) = &tracked.file {
                    // Unreadable now: no check (the head still guards).
                    tracked.pos.before = read_before(file, advance.offset).unwrap_or_default();
                }
            }
        }
        let count = self.tracked.len();
        let wait = self.rotate_wait;
        self.tracked
            .retain(|t| !(t.is_done_growing(wait) && t.pos.offset >= t.size));
        let changed = !advances.is_empty() || self.tracked.len() != count || self.dirty;
        self.dirty = false;
        changed
    }
}

struct SplitLimits {
    max_lines: usize,
    max_line: usize,
    /// The bytes end the file for good: an unended last line is a line.
    final_bytes: bool,
}

/// Splits `bytes` (read from `pos.offset`) into lines, appended to
/// `lines`; where the file's position would be after them.
fn split_lines(
    pos: &Position,
    bytes: &[u8],
    limits: SplitLimits,
    lines: &mut Vec<Line>,
) -> Advance {
    let mut advance = Advance {
        dev: pos.dev,
        ino: pos.ino,
        offset: pos.offset,
        skipping: pos.skipping,
    };
    let mut rest = bytes;
    let mut taken = 0usize;
    while taken < limits.max_lines && !rest.is_empty() {
        let Some(end) = memchr::memchr(b'\n', rest) else {
            // No line end in what was read.
            if advance.skipping {
                advance.offset += rest.len() as u64;
            } else if rest.len() > limits.max_line {
                lines.push(overlong(pos, advance.offset, rest));
                advance.offset += rest.len() as u64;
                advance.skipping = true;
            } else if limits.final_bytes {
                lines.push(Line {
                    path: pos.path.clone(),
                    offset: advance.offset,
                    data: rest.to_vec(),
                    kind: LineKind::Unterminated,
                });
                advance.offset += rest.len() as u64;
            }
            break;
        };
        let line = &rest[..end];
        let start = advance.offset;
        advance.offset += end as u64 + 1;
        rest = &rest[end + 1..];
        if advance.skipping {
            // The end of a line refused already.
            advance.skipping = false;
            continue;
        }
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        taken += 1;
        if line.len() > limits.max_line {
            lines.push(overlong(pos, start, line));
        } else {
            lines.push(Line {
                path: pos.path.clone(),
                offset: start,
                data: line.to_vec(),
                kind: LineKind::Whole,
            });
        }
    }
    advance
}

fn overlong(pos: &Position, offset: u64, bytes: &[u8]) -> Line {
    Line {
        path: pos.path.clone(),
        offset,
        data: bytes[..bytes.len().min(OVERLONG_KEPT)].to_vec(),
        kind: LineKind::Overlong,
    }
}

/// Opens `path` for reading if it is a regular file, without blocking
/// (a FIFO swapped in after the look would otherwise block the open).
fn open_regular(path: &Path) -> std::io::Result<File> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    Ok(file)
}

/// Whether `file` (`size` bytes, beginning with `first`) is a copy of the
/// generation fingerprinted by `head`, read up to `offset` where its
/// bytes were `before`.
fn copies(file: &File, first: &[u8], size: u64, head: &Head, before: &Head, offset: u64) -> bool {
    !head.is_empty() && offset <= size && starts_as(first, head) && holds_at(file, before, offset)
}

/// Whether `first` (a file's first bytes) begins as `head` says.
fn starts_as(first: &[u8], head: &Head) -> bool {
    (head.len as usize) <= first.len() && Head::of(&first[..head.len as usize]) == *head
}

/// Whether the bytes of `file` before `offset` are the ones `before`
/// fingerprints (nothing to check when it is empty).
fn holds_at(file: &File, before: &Head, offset: u64) -> bool {
    if before.is_empty() {
        return true;
    }
    let Some(start) = offset.checked_sub(before.len) else {
        return false;
    };
    let mut bytes = vec![0u8; before.len as usize];
    matches!(read_at_most(file, &mut bytes, start), Ok(n) if n == bytes.len())
        && Head::of(&bytes) == *before
}

/// The fingerprint of the KiB (at most) before `offset`.
fn read_before(file: &File, offset: u64) -> std::io::Result<Head> {
    let start = offset.saturating_sub(HEAD_BYTES);
    let mut bytes = vec![0u8; (offset - start) as usize];
    let got = read_at_most(file, &mut bytes, start)?;
    bytes.truncate(got);
    Ok(Head::of(&bytes))
}

/// Whether a file's first bytes are those of a compressed file (gzip,
/// zstd, bzip2, xz): a rotated file logrotate compressed, not lines.
fn is_compressed(first: &[u8]) -> bool {
    const MAGIC: [&[u8]; 4] = [b"\x1f\x8b", b"\x28\xb5\x2f\xfd", b"BZh", b"\xfd7zXZ\x00"];
    MAGIC.iter().any(|magic| first.starts_with(magic))
}

/// The file's first bytes, up to [`HEAD_BYTES`].
fn read_first(file: &File, size: u64) -> std::io::Result<Vec<u8>> {
    let mut first = vec![0u8; size.min(HEAD_BYTES) as usize];
    let got = read_at_most(file, &mut first, 0)?;
    first.truncate(got);
    Ok(first)
}

/// Fills `buffer` from `offset` as far as the file goes.
fn read_at_most(file: &File, buffer: &mut [u8], offset: u64) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buffer.len() {
        match file.read_at(&mut buffer[got..], offset + got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(got)
}

/// The file with inode `ino` on `dev` in the directory of `was`, if any.
fn find_by_inode(was: &Path, dev: u64, ino: u64) -> Option<PathBuf> {
    let dir = was.parent()?;
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .find(|entry| {
            entry
                .metadata()
                .is_ok_and(|m| m.is_file() && m.dev() == dev && m.ino() == ino)
        })
        .map(|entry| entry.path())
}

#[cfg(test)]
#[path = "files/tests.rs"]
mod tests;

#[cfg(test)]
#[path = "files/attacks.rs"]
mod attacks;
