//! Reading the spool directory at start: what is intact, what was torn,
//! what is damaged or missing.
//!
//! Nothing here stops the relay: a torn last record (the normal result of
//! a crash mid-write) is cut off, damaged bytes are skipped up to the next
//! intact record, an unreadable or missing segment is skipped, and each is
//! reported with file, offsets and the sequence numbers lost. Every intact
//! record stays deliverable.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::segment::{self, Damage, Segment};

/// What opening (or verifying) the spool found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Segment files read.
    pub segments: usize,
    /// Intact records found.
    pub records: u64,
    /// The sequence number the next appended record gets.
    pub next_seq: u64,
    /// A torn last record cut off (segment, bytes removed).
    pub torn_tail: Option<(PathBuf, u64)>,
    /// Damaged byte ranges, with the records lost in them.
    pub damaged: Vec<Damage>,
    /// Sequence numbers with no segment at all (a segment file is gone).
    pub missing: Vec<Range<u64>>,
    /// Segment files that could not be read, and why.
    pub unreadable: Vec<(PathBuf, String)>,
    /// How long the scan took.
    pub elapsed: Duration,
}

impl RecoveryReport {
    /// Whether nothing was damaged, missing or unreadable (a torn tail
    /// after a crash is normal and does not count).
    pub fn is_clean(&self) -> bool {
        self.damaged.is_empty() && self.missing.is_empty() && self.unreadable.is_empty()
    }

    /// Records known to be lost to damage or missing segments.
    pub fn lost_records(&self) -> u64 {
        let damaged: u64 = self
            .damaged
            .iter()
            .filter_map(|d| d.lost.as_ref())
            .map(|r| r.end - r.start)
            .sum();
        let missing: u64 = self.missing.iter().map(|r| r.end - r.start).sum();
        damaged + missing
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
                "; cut a torn last record ({bytes} bytes) off {}",
                segment.display()
            )?;
        }
        for damage in &self.damaged {
            write!(
                f,
                "; {}: bytes {}..{} damaged ({})",
                damage.segment.display(),
                damage.bytes.start,
                damage.bytes.end,
                damage.reason
            )?;
            if let Some(lost) = &damage.lost {
                write!(f, ", records {}..{} lost", lost.start, lost.end)?;
            }
        }
        for missing in &self.missing {
            write!(
                f,
                "; no segment holds records {}..{} (a segment file is missing)",
                missing.start, missing.end
            )?;
        }
        for (path, error) in &self.unreadable {
            write!(f, "; {} cannot be read: {error}", path.display())?;
        }
        Ok(())
    }
}

/// Scans every segment in `dir` in order. With `repair`, a torn last
/// record is cut off the file (it was never acknowledged as durable);
/// without, nothing is changed (`spool verify`).
pub fn recover(dir: &Path, repair: bool) -> std::io::Result<(Vec<Segment>, RecoveryReport)> {
    let started = Instant::now();
    let mut names: Vec<(u64, PathBuf)> = Vec::new();
    for entry in std::fs::read_dir(dir)? {
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

    let mut report = RecoveryReport::default();
    let mut segments: Vec<Segment> = Vec::new();
    let last = names.len().saturating_sub(1);
    for (i, (first_seq, path)) in names.iter().enumerate() {
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(error) => {
                report.unreadable.push((path.clone(), error.to_string()));
                continue;
            }
        };
        report.segments += 1;
        let mut scan = segment::scan(path, &bytes, *first_seq);
        if let Some(tail) = scan.tail.take() {
            if i == last {
                report.torn_tail = Some((path.clone(), tail.end - tail.start));
                if repair {
                    cut(path, tail.start)?;
                }
            } else {
                scan.damage.push(Damage {
                    segment: path.clone(),
                    bytes: tail,
                    lost: None,
                    reason: "the segment ends in bytes that hold no intact record".into(),
                });
            }
        }
        report.records += scan.segment.records;
        report.damaged.extend(scan.damage);
        segments.push(scan.segment);
    }

    // Gaps between segments: records lost to trailing damage, or a
    // segment that is gone.
    for pair in segments.windows(2) {
        let (before, after) = (&pair[0], &pair[1]);
        if before.end_seq < after.first_seq {
            let gap = before.end_seq..after.first_seq;
            let tail_damage = report.damaged.iter_mut().rev().find(|d| {
                d.segment == before.path && d.lost.is_none() && d.bytes.end >= before.len
            });
            match tail_damage {
                Some(damage) => damage.lost = Some(gap),
                None => report.missing.push(gap),
            }
        }
    }
    report.next_seq = segments.last().map_or(0, |s| s.end_seq);
    report.elapsed = started.elapsed();
    Ok((segments, report))
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

    fn write_segment(dir: &Path, first_seq: u64, count: u64) -> PathBuf {
        let mut bytes = format::segment_header(first_seq).to_vec();
        for seq in first_seq..first_seq + count {
            format::write_frame(&mut bytes, seq, format!("record {seq}").as_bytes());
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
        let (segments, report) = recover(dir.path(), true).unwrap();
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
        let (_, report) = recover(dir.path(), true).unwrap();
        assert!(report.is_clean());
        assert_eq!(report.records, 9);
        assert_eq!(report.next_seq, 9);
        assert!(report.torn_tail.is_some());
        // Cut off on disk: a second open finds nothing torn.
        let (_, again) = recover(dir.path(), true).unwrap();
        assert_eq!(again.torn_tail, None);
    }

    #[test]
    fn a_missing_segment_is_reported_as_a_gap() {
        let dir = tempfile::tempdir().unwrap();
        write_segment(dir.path(), 0, 10);
        let middle = write_segment(dir.path(), 10, 10);
        write_segment(dir.path(), 20, 10);
        std::fs::remove_file(middle).unwrap();
        let (_, report) = recover(dir.path(), true).unwrap();
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
        let (_, report) = recover(dir.path(), false).unwrap();
        assert!(report.torn_tail.is_some());
        assert_eq!(std::fs::metadata(&path).unwrap().len(), len - 1);
    }
}
