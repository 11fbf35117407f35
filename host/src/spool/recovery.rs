//! Reading the spool directory at start: what is intact, what was torn,
//! what is damaged or missing — and, from the spool's own records of what
//! it promised, which of it was lost.
//!
//! Nothing here stops the relay: a torn last record is cut off, damaged
//! bytes are skipped up to the next intact record, an unreadable or
//! missing segment is skipped, and each is reported with file, offsets and
//! the sequence numbers lost. Every intact record stays deliverable.
//!
//! Whether missing records were *lost* is judged on [`Evidence`], not
//! guessed from the bytes: the durable watermark (`spool/durable`) says
//! which records had been acknowledged, the saved cursors say which every
//! instance had already handled. So a torn write of a record nobody was
//! promised is harmless, the same cut through acknowledged records is
//! loss, and a gap every instance had already read past is neither.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::findings::Finding;
use super::format::{self, FrameKey, SEGMENT_HEADER_LEN};
use super::segment::{self, Damage, Segment};

/// What the spool's own files say must exist, whatever the segments hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Evidence {
    /// Every record below this was durable, so may have been acknowledged.
    pub durable: u64,
    /// Saved cursors by instance: every record below an instance's cursor
    /// was handled by it (and so existed).
    pub cursors: BTreeMap<String, u64>,
    /// What is wrong with these records themselves (a damaged watermark or
    /// cursors file): loss is then judged on less than there was.
    pub problems: Vec<String>,
}

impl Evidence {
    /// Records below this were handled by every instance the spool knows
    /// (0 when it knows none: then everything counts as still needed).
    pub fn handled_by_all(&self) -> u64 {
        self.cursors.values().copied().min().unwrap_or(0)
    }

    /// Records below this are known to have existed.
    pub fn existed_below(&self) -> u64 {
        self.cursors.values().copied().fold(self.durable, u64::max)
    }
}

/// What opening (or verifying) the spool found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Segment files read.
    pub segments: usize,
    /// Intact records found.
    pub records: u64,
    /// The sequence number after the last intact record.
    pub next_seq: u64,
    /// Bytes after the last intact record of the newest segment, cut off
    /// (segment, bytes). By itself a torn write of records never
    /// acknowledged; see [`lost_tail`](Self::lost_tail) for the rest.
    pub torn_tail: Option<(PathBuf, u64)>,
    /// Acknowledged records (below the durable watermark, or behind a
    /// saved cursor) that lie beyond the last intact record: lost at the
    /// end of the newest segment. Only those some instance still needed.
    pub lost_tail: Option<Range<u64>>,
    /// Damaged byte ranges, with the records lost in them that some
    /// instance still needed.
    pub damaged: Vec<Damage>,
    /// Sequence numbers no segment holds (a segment file is gone) that
    /// some instance still needed.
    pub missing: Vec<Range<u64>>,
    /// Segment files that could not be read, and why.
    pub unreadable: Vec<(PathBuf, String)>,
    /// What is wrong with the spool's own records of what it promised (the
    /// watermark, the cursors): loss may then be reported short.
    pub evidence: Vec<String>,
    /// Files named like segments that are not segments of this spool,
    /// and why; ignored (their bytes are not counted as records) and, when
    /// the spool is opened, moved to `spool/strays/`.
    pub strays: Vec<(PathBuf, String)>,
    /// Findings recorded when the spool was opened before (see
    /// `spool::findings`); filled in by `spool::inspect` only.
    pub earlier: Vec<Finding>,
    /// How long the scan took.
    pub elapsed: Duration,
}

impl RecoveryReport {
    /// Whether nothing is damaged, missing, unreadable or lost, the spool's
    /// own records are sound, and no earlier finding is on record. A torn
    /// write of records never acknowledged is the normal result of a crash
    /// and does not count; neither do stray files.
    pub fn is_clean(&self) -> bool {
        self.findings().is_empty() && self.earlier.is_empty()
    }

    /// Records known to be lost that some instance still needed: to
    /// damage, to missing segments, or cut off the end.
    pub fn lost_records(&self) -> u64 {
        let len = |r: &Range<u64>| r.end - r.start;
        let damaged: u64 = self
            .damaged
            .iter()
            .filter_map(|d| d.lost.as_ref())
            .map(len)
            .sum();
        let missing: u64 = self.missing.iter().map(len).sum();
        damaged + missing + self.lost_tail.as_ref().map_or(0, len)
    }

    /// Each thing found wrong by this scan, one sentence each: what is
    /// recorded in `spool/findings.ndjson` when the spool is opened.
    pub fn findings(&self) -> Vec<String> {
        let mut findings = Vec::new();
        if let Some(lost) = &self.lost_tail {
            findings.push(format!(
                "records {}..{} were acknowledged as durable but are gone from the end of the spool ({} lost)",
                lost.start,
                lost.end,
                lost.end - lost.start
            ));
        }
        for damage in &self.damaged {
            let mut finding = format!(
                "{}: bytes {}..{} damaged ({})",
                damage.segment.display(),
                damage.bytes.start,
                damage.bytes.end,
                damage.reason
            );
            if let Some(lost) = &damage.lost {
                finding.push_str(&format!(", records {}..{} lost", lost.start, lost.end));
            }
            findings.push(finding);
        }
        for missing in &self.missing {
            findings.push(format!(
                "no segment holds records {}..{} (a segment file is missing)",
                missing.start, missing.end
            ));
        }
        for (path, error) in &self.unreadable {
            findings.push(format!("{} cannot be read: {error}", path.display()));
        }
        findings.extend(self.evidence.iter().cloned());
        findings
    }
}

impl fmt::Display for RecoveryReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} segment(s), {} intact record(s), next sequence number {}",
            self.segments, self.records, self.next_seq
        )?;
        if let Some((segment, bytes)) = &self.torn_tail {
            write!(
                f,
                "; cut {bytes} byte(s) of an interrupted write off the end of {}",
                segment.display()
            )?;
        }
        for finding in self.findings() {
            write!(f, "; {finding}")?;
        }
        for (path, why) in &self.strays {
            write!(f, "; ignored {}: {why}", path.display())?;
        }
        if !self.earlier.is_empty() {
            write!(
                f,
                "; {} finding(s) recorded when the spool was opened before (spool/findings.ndjson; move it away once they are dealt with):",
                self.earlier.len()
            )?;
            for earlier in &self.earlier {
                write!(f, " [{}] {};", earlier.found, earlier.finding)?;
            }
        }
        Ok(())
    }
}

/// A file in the segments directory that holds (or may hold) records.
struct Candidate {
    first_seq: u64,
    path: PathBuf,
    /// Its header is not a sound header for its name.
    header_damaged: bool,
}

/// Scans every segment in `dir` in order and judges what is missing on
/// `evidence`; records are checked with the key in each segment's header
/// (`spool_key` for a segment whose header is damaged). With `repair`, a
/// torn end of the newest segment is cut off, an interrupted segment
/// creation removed and stray files moved to `strays/` beside `dir`;
/// without, nothing is changed (`spool verify`).
pub fn recover(
    dir: &Path,
    repair: bool,
    evidence: &Evidence,
    spool_key: FrameKey,
) -> std::io::Result<(Vec<Segment>, RecoveryReport)> {
    let started = Instant::now();
    let mut report = RecoveryReport::default();
    let mut names: Vec<(u64, PathBuf)> = Vec::new();
    let listing = match std::fs::read_dir(dir) {
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            if evidence.existed_below() > 0 {
                report
                    .unreadable
                    .push((dir.to_owned(), "the segments directory is missing".into()));
            }
            None
        }
        listing => Some(listing?),
    };
    for entry in listing.into_iter().flatten() {
        let entry = entry?;
        let name = entry.file_name();
        match name.to_str().and_then(Segment::parse_file_name) {
            Some(first_seq) => names.push((first_seq, entry.path())),
            None => {
                if name.to_str().is_some_and(|n| n.ends_with(".seg")) {
                    tracing::warn!(file = %entry.path().display(), "ignoring a file that is not named like a spool segment");
                }
            }
        }
    }
    names.sort();

    // Which files are segments of this spool, by their headers alone: the
    // newest of those is the one a crash may have torn.
    let mut candidates = Vec::with_capacity(names.len());
    let mut interrupted = Vec::new();
    for (first_seq, path) in names {
        let mut header = Vec::with_capacity(SEGMENT_HEADER_LEN);
        let read = std::fs::File::open(&path).and_then(|file| {
            use std::io::Read;
            file.take(SEGMENT_HEADER_LEN as u64)
                .read_to_end(&mut header)
        });
        match read {
            // Deleted since the listing (a running relay removes delivered
            // segments): what it held is judged like any missing segment.
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => continue,
            Err(error) => {
                report.unreadable.push((path, error.to_string()));
                continue;
            }
            Ok(_) => {}
        }
        match format::read_segment_header(&header) {
            Ok((declared, _)) if declared == first_seq => candidates.push(Candidate {
                first_seq,
                path,
                header_damaged: false,
            }),
            Ok((declared, _)) => report.strays.push((
                path,
                format!(
                    "its header says it starts at record {declared}, its name says {first_seq}: not a segment of this spool"
                ),
            )),
            // The relay died while creating the file: nothing was ever
            // written to it.
            Err(_) if header.len() < SEGMENT_HEADER_LEN && begins_header(&header, first_seq) => {
                interrupted.push((first_seq, path, header.len() as u64));
            }
            Err(_) => candidates.push(Candidate {
                first_seq,
                path,
                header_damaged: true,
            }),
        }
    }
    let newest = candidates.last().map(|c| c.first_seq);
    for (first_seq, path, len) in interrupted {
        if newest.is_none_or(|newest| first_seq > newest) {
            if repair {
                std::fs::remove_file(&path)?;
            }
            report.torn_tail = Some((path, len));
        } else {
            let why =
                format!("holds only {len} byte(s) of a segment header, and newer segments exist");
            report.strays.push((path, why));
        }
    }

    let mut segments: Vec<Segment> = Vec::new();
    let last = candidates.len().saturating_sub(1);
    for (i, candidate) in candidates.iter().enumerate() {
        let path = &candidate.path;
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => continue,
            Err(error) => {
                report.unreadable.push((path.clone(), error.to_string()));
                continue;
            }
        };
        let salvage = format::salvage_keys(&bytes, spool_key);
        let mut scan = segment::scan(path, &bytes, candidate.first_seq, &salvage);
        if candidate.header_damaged && scan.segment.records == 0 {
            // Junk, or a segment whose every record is gone with its
            // header: damage either way; what it held is judged on the
            // evidence like a missing segment.
            report.damaged.push(Damage {
                segment: path.clone(),
                bytes: 0..bytes.len() as u64,
                lost: None,
                reason: format!(
                    "{}; no record in it checks out",
                    scan.damage[0].reason.split(';').next().unwrap_or_default()
                ),
            });
            report.strays.push((
                path.clone(),
                "named like a segment, but holds nothing that reads as one".into(),
            ));
            continue;
        }
        report.segments += 1;
        if let Some(tail) = scan.tail.take() {
            let rest = &bytes[tail.start as usize..];
            let torn = i == last && !format::holds_a_frame(rest, scan.segment.key);
            if torn {
                report.torn_tail = Some((path.clone(), tail.end - tail.start));
                if repair {
                    cut(path, tail.start)?;
                }
            } else {
                // Never cut: what lies there is kept for inspection, and
                // nothing is appended after it.
                scan.segment.appendable = false;
                scan.damage.push(Damage {
                    segment: path.clone(),
                    bytes: tail,
                    lost: None,
                    reason: "the segment ends in bytes that hold no record in order".into(),
                });
            }
        }
        report.records += scan.segment.records;
        report.damaged.extend(scan.damage);
        segments.push(scan.segment);
    }
    if repair {
        for (path, why) in &mut report.strays {
            if path.exists() {
                move_to_strays(path)?;
                why.push_str(" (moved to spool/strays/)");
            }
        }
    }

    // Records before the first segment that a saved cursor still needed:
    // segments are deleted only after the cursors that passed them are
    // saved, so these were not deleted on purpose.
    if let (Some(first), Some(lowest)) = (segments.first(), evidence.cursors.values().min())
        && *lowest < first.first_seq
    {
        report.missing.push(*lowest..first.first_seq);
    }
    // Gaps between segments: records lost to trailing damage, or a
    // segment that is gone. A segment read from a damaged header may
    // overlap others: only what none holds is a gap.
    let mut covering: Option<&Segment> = None;
    for segment in &segments {
        if let Some(before) = covering
            && before.end_seq < segment.first_seq
        {
            let gap = before.end_seq..segment.first_seq;
            let tail_damage = report.damaged.iter_mut().rev().find(|d| {
                d.segment == before.path && d.lost.is_none() && d.bytes.end >= before.len
            });
            match tail_damage {
                Some(damage) => damage.lost = Some(gap),
                None => report.missing.push(gap),
            }
        }
        if covering.is_none_or(|c| segment.end_seq > c.end_seq) {
            covering = Some(segment);
        }
    }
    report.next_seq = covering.map_or(0, |s| s.end_seq);
    judge(&mut report, evidence);
    report.elapsed = started.elapsed();
    Ok((segments, report))
}

/// Whether `bytes` (shorter than a header) are how a segment header for
/// `first_seq` begins.
fn begins_header(bytes: &[u8], first_seq: u64) -> bool {
    // Bytes 20.. hold the checksum and the key, unknown here; the bytes
    // before do not depend on the key.
    let known = bytes.len().min(20);
    format::segment_header(first_seq, FrameKey::from_bytes([0; 8]))[..known] == bytes[..known]
}

/// Moves a file out of the segments directory into `spool/strays/` (it is
/// never deleted: it may be evidence), and says where it went.
pub(super) fn move_to_strays(path: &Path) -> std::io::Result<PathBuf> {
    let strays = path.parent().map_or_else(
        || PathBuf::from("strays"),
        |dir| dir.with_file_name("strays"),
    );
    std::fs::create_dir_all(&strays)?;
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let mut to = strays.join(&*name);
    let mut n = 1;
    while to.exists() {
        to = strays.join(format!("{name}.{n}"));
        n += 1;
    }
    std::fs::rename(path, &to)?;
    tracing::warn!(from = %path.display(), to = %to.display(), "moved a file that is not a segment of this spool out of the segments directory");
    Ok(to)
}

/// Keeps as lost only what some instance still needed, and adds what the
/// evidence says existed beyond the last intact record.
fn judge(report: &mut RecoveryReport, evidence: &Evidence) {
    report.lost_tail = Some(report.next_seq..evidence.existed_below());
    report.forget_handled(evidence.handled_by_all());
    report.evidence = evidence.problems.clone();
}

impl RecoveryReport {
    /// Keeps as lost only records at `handled_by_all` or later: those
    /// before had been handled by every instance, so losing them lost
    /// nothing (for a spool read while a relay runs, cursors read after
    /// the scan say this best).
    pub fn forget_handled(&mut self, handled_by_all: u64) {
        let still_needed = |range: &Range<u64>| {
            let start = range.start.max(handled_by_all);
            (start < range.end).then_some(start..range.end)
        };
        for damage in &mut self.damaged {
            if let Some(lost) = &damage.lost {
                damage.lost = still_needed(lost);
                if damage.lost.is_none() {
                    damage.reason.push_str(
                        "; every instance had handled its records already, so none is lost",
                    );
                }
            }
        }
        self.missing = self.missing.iter().filter_map(still_needed).collect();
        self.lost_tail = self.lost_tail.as_ref().and_then(still_needed);
    }
}

/// Cuts `path` to `len` bytes and syncs it.
fn cut(path: &Path, len: u64) -> std::io::Result<()> {
    let file = std::fs::OpenOptions::new().write(true).open(path)?;
    file.set_len(len)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::super::format;
    use super::*;

    const KEY: FrameKey = FrameKey::from_bytes(*b"recovery");

    fn write_segment(dir: &Path, first_seq: u64, count: u64) -> PathBuf {
        let mut bytes = format::segment_header(first_seq, KEY).to_vec();
        for seq in first_seq..first_seq + count {
            format::write_frame(&mut bytes, KEY, seq, format!("record {seq}").as_bytes());
        }
        let path = dir.join(Segment::file_name(first_seq));
        std::fs::write(&path, bytes).unwrap();
        path
    }

    #[test]
    fn a_clean_spool_reports_clean() {
        let dir = tempfile::tempdir().unwrap();
        write_segment(dir.path(), 0, 10);
        write_segment(dir.path(), 10, 5);
        let (segments, report) = recover(dir.path(), true, &Evidence::default(), KEY).unwrap();
        assert!(report.is_clean(), "{report}");
        assert_eq!(
            (segments.len(), report.records, report.next_seq),
            (2, 15, 15)
        );
    }

    #[test]
    fn a_torn_tail_is_cut_and_everything_before_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_segment(dir.path(), 0, 10);
        let len = std::fs::metadata(&path).unwrap().len();
        let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        file.set_len(len - 7).unwrap();
        let (_, report) = recover(dir.path(), true, &Evidence::default(), KEY).unwrap();
        assert!(report.is_clean());
        assert_eq!(report.records, 9);
        assert_eq!(report.next_seq, 9);
        assert!(report.torn_tail.is_some());
        // Cut off on disk: a second open finds nothing torn.
        let (_, again) = recover(dir.path(), true, &Evidence::default(), KEY).unwrap();
        assert_eq!(again.torn_tail, None);
    }

    #[test]
    fn a_missing_segment_is_reported_as_a_gap() {
        let dir = tempfile::tempdir().unwrap();
        write_segment(dir.path(), 0, 10);
        let middle = write_segment(dir.path(), 10, 10);
        write_segment(dir.path(), 20, 10);
        std::fs::remove_file(middle).unwrap();
        let (_, report) = recover(dir.path(), true, &Evidence::default(), KEY).unwrap();
        assert_eq!(report.missing, vec![Range { start: 10, end: 20 }]);
        assert_eq!(report.records, 20);
        assert_eq!(report.lost_records(), 10);
        assert!(
            report
                .to_string()
                .contains("no segment holds records 10..20"),
            "{report}"
        );
    }

    #[test]
    fn verify_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_segment(dir.path(), 0, 3);
        let len = std::fs::metadata(&path).unwrap().len();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(len - 1)
            .unwrap();
        let (_, report) = recover(dir.path(), false, &Evidence::default(), KEY).unwrap();
        assert!(report.torn_tail.is_some());
        assert_eq!(std::fs::metadata(&path).unwrap().len(), len - 1);
    }

    fn evidence(durable: u64, cursors: &[(&str, u64)]) -> Evidence {
        Evidence {
            durable,
            cursors: cursors.iter().map(|(n, c)| ((*n).to_owned(), *c)).collect(),
            problems: Vec::new(),
        }
    }

    fn append_bytes(path: &Path, bytes: &[u8]) {
        use std::io::Write;
        std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .unwrap()
            .write_all(bytes)
            .unwrap();
    }

    fn cut_last_bytes(path: &Path, bytes: u64) {
        let len = std::fs::metadata(path).unwrap().len();
        std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .unwrap()
            .set_len(len - bytes)
            .unwrap();
    }

    #[test]
    fn a_torn_write_of_an_unacknowledged_record_is_harmless() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_segment(dir.path(), 0, 10);
        let mut frame = Vec::new();
        format::write_frame(&mut frame, KEY, 10, b"record 10, never synced");
        append_bytes(&path, &frame[..frame.len() - 6]);
        let (_, report) = recover(dir.path(), true, &evidence(10, &[("p", 3)]), KEY).unwrap();
        assert!(report.is_clean(), "{report}");
        assert_eq!(report.lost_tail, None);
        assert_eq!(report.torn_tail.as_ref().unwrap().1, frame.len() as u64 - 6);
        assert_eq!((report.records, report.next_seq), (10, 10));
    }

    #[test]
    fn acknowledged_records_cut_off_the_end_are_lost_not_torn() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_segment(dir.path(), 0, 10);
        // Three acknowledged records cut off (and half of a fourth).
        cut_last_bytes(&path, 3 * (20 + 8) + 10);
        let (_, report) = recover(dir.path(), false, &evidence(10, &[("p", 2)]), KEY).unwrap();
        assert!(!report.is_clean(), "{report}");
        assert_eq!(report.lost_tail, Some(6..10), "{report}");
        assert_eq!(report.lost_records(), 4);
        assert!(
            report
                .to_string()
                .contains("acknowledged as durable but are gone"),
            "{report}"
        );
    }

    #[test]
    fn a_flipped_byte_in_the_last_acknowledged_record_is_loss() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_segment(dir.path(), 0, 10);
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 3;
        bytes[last] ^= 0x01;
        std::fs::write(&path, bytes).unwrap();
        let (_, report) = recover(dir.path(), false, &evidence(10, &[]), KEY).unwrap();
        assert_eq!(report.lost_tail, Some(9..10), "{report}");
        // Without a watermark, a cursor beyond the end proves the records
        // existed; they are lost for the instance still behind.
        let (_, report) = recover(
            dir.path(),
            false,
            &evidence(0, &[("ahead", 10), ("behind", 4)]),
            KEY,
        )
        .unwrap();
        assert_eq!(report.lost_tail, Some(9..10), "{report}");
        // ... and lost for nobody when every instance had them already.
        let (_, report) = recover(dir.path(), false, &evidence(10, &[("p", 10)]), KEY).unwrap();
        assert_eq!(report.lost_tail, None, "{report}");
        assert_eq!(report.lost_records(), 0);
    }

    #[test]
    fn gaps_every_instance_had_read_past_are_not_loss() {
        let dir = tempfile::tempdir().unwrap();
        write_segment(dir.path(), 0, 10);
        let middle = write_segment(dir.path(), 10, 10);
        write_segment(dir.path(), 20, 10);
        std::fs::remove_file(middle).unwrap();
        let (_, report) = recover(
            dir.path(),
            false,
            &evidence(30, &[("a", 25), ("b", 20)]),
            KEY,
        )
        .unwrap();
        assert!(report.missing.is_empty(), "{report}");
        assert_eq!(report.lost_records(), 0, "{report}");
        let (_, report) = recover(
            dir.path(),
            false,
            &evidence(30, &[("a", 25), ("b", 15)]),
            KEY,
        )
        .unwrap();
        assert_eq!(
            report.missing,
            vec![15..20],
            "only what b still needed: {report}"
        );
    }

    #[test]
    fn stray_files_named_like_segments_are_ignored_not_counted_and_moved_aside() {
        let dir = tempfile::tempdir().unwrap();
        let segments_dir = dir.path().join("segments");
        std::fs::create_dir(&segments_dir).unwrap();
        write_segment(&segments_dir, 100, 50);
        // An old segment copied in under another name.
        let old = write_segment(&segments_dir, 0, 65);
        std::fs::rename(&old, segments_dir.join(Segment::file_name(35))).unwrap();
        let evidence = evidence(150, &[("p", 120)]);
        let (segments, report) = recover(&segments_dir, false, &evidence, KEY).unwrap();
        assert!(report.is_clean(), "{report}");
        assert_eq!(report.strays.len(), 1, "{report}");
        assert_eq!((report.records, segments.len()), (50, 1), "{report}");
        assert!(
            report.to_string().contains("not a segment of this spool"),
            "{report}"
        );
        // Opening moves it out of the writer's way.
        recover(&segments_dir, true, &evidence, KEY).unwrap();
        assert!(!segments_dir.join(Segment::file_name(35)).exists());
        assert!(
            dir.path()
                .join("strays")
                .join(Segment::file_name(35))
                .exists()
        );
    }

    #[test]
    fn junk_named_like_a_segment_is_damage_that_loses_nothing_held_elsewhere() {
        let dir = tempfile::tempdir().unwrap();
        write_segment(dir.path(), 100, 50);
        std::fs::write(
            dir.path().join(Segment::file_name(120)),
            b"not a segment at all, 40 bytes long..",
        )
        .unwrap();
        let (segments, report) =
            recover(dir.path(), false, &evidence(150, &[("p", 120)]), KEY).unwrap();
        assert!(!report.is_clean(), "{report}");
        assert_eq!((report.records, segments.len()), (50, 1), "{report}");
        assert_eq!(report.lost_records(), 0, "{report}");
        assert!(
            report.to_string().contains("no record in it checks out"),
            "{report}"
        );
    }

    #[test]
    fn a_segment_with_a_destroyed_header_is_read_with_the_spool_key() {
        let dir = tempfile::tempdir().unwrap();
        write_segment(dir.path(), 0, 10);
        let newest = write_segment(dir.path(), 10, 5);
        let mut bytes = std::fs::read(&newest).unwrap();
        bytes[..SEGMENT_HEADER_LEN].fill(0);
        std::fs::write(&newest, bytes).unwrap();
        // No evidence at all (an empty watermark, no cursors): the records
        // are still found, and the header damage still reported.
        let (segments, report) = recover(dir.path(), true, &evidence(0, &[]), KEY).unwrap();
        assert!(!report.is_clean(), "{report}");
        assert_eq!((report.records, report.next_seq), (15, 15), "{report}");
        assert_eq!(report.lost_records(), 0);
        assert!(
            !segments[1].appendable,
            "nothing is appended behind a damaged header"
        );
        assert!(report.to_string().contains("header is damaged"), "{report}");
    }

    #[test]
    fn a_tail_that_holds_records_is_never_cut() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_segment(dir.path(), 0, 10);
        // Garbage, then a record that checks out but is out of order.
        let mut rest = vec![0x55; 7];
        format::write_frame(&mut rest, KEY, 3, b"record 3, again");
        append_bytes(&path, &rest);
        let len = std::fs::metadata(&path).unwrap().len();
        let (segments, report) = recover(dir.path(), true, &evidence(10, &[]), KEY).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), len, "nothing cut");
        assert!(report.torn_tail.is_none(), "{report}");
        assert!(!report.is_clean(), "{report}");
        assert!(!segments[0].appendable);
        assert_eq!((report.records, report.next_seq), (10, 10));
    }

    #[test]
    fn an_interrupted_segment_creation_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        write_segment(dir.path(), 0, 10);
        let header = format::segment_header(10, KEY);
        let newest = dir.path().join(Segment::file_name(10));
        std::fs::write(&newest, &header[..11]).unwrap();
        let (_, report) = recover(dir.path(), true, &evidence(10, &[]), KEY).unwrap();
        assert!(report.is_clean(), "{report}");
        assert!(report.strays.is_empty(), "{report}");
        assert!(!newest.exists());
    }
}
