//! Random damage to segment files (flipped bytes, cuts, deleted files,
//! garbage, strays): recovery never panics, never reports an intact record
//! lost, never misses an acknowledged record that is gone, and every
//! intact record an instance still needs is read back.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::Path;

use proptest::prelude::*;

use super::super::cursors;
use super::super::format;
use super::super::segment::Segment;
use super::super::watermark::Watermark;
use super::*;

/// One thing done to the spool's files.
#[derive(Debug, Clone)]
enum Harm {
    /// XOR `mask` into `len` bytes of file `file` at `at` (fractions of its length).
    Flip {
        file: usize,
        at: f64,
        len: usize,
        mask: u8,
    },
    /// Cut file `file` to a fraction of its length.
    Cut { file: usize, keep: f64 },
    /// Delete file `file`.
    Delete { file: usize },
    /// Append garbage to file `file`.
    Garbage { file: usize, bytes: Vec<u8> },
    /// A file named like a segment starting at `seq`, holding `bytes`.
    Stray { seq: u64, bytes: Vec<u8> },
}

fn harm() -> impl Strategy<Value = Harm> {
    prop_oneof![
        (0..8usize, 0.0..1.0f64, 1..64usize, 1..=255u8).prop_map(|(file, at, len, mask)| {
            Harm::Flip {
                file,
                at,
                len,
                mask,
            }
        }),
        (0..8usize, 0.0..1.0f64).prop_map(|(file, keep)| Harm::Cut { file, keep }),
        (0..8usize).prop_map(|file| Harm::Delete { file }),
        (0..8usize, proptest::collection::vec(any::<u8>(), 1..80))
            .prop_map(|(file, bytes)| Harm::Garbage { file, bytes }),
        (0..400u64, proptest::collection::vec(any::<u8>(), 0..120))
            .prop_map(|(seq, bytes)| Harm::Stray { seq, bytes }),
    ]
}

/// Where each record lives, to tell afterwards whether it survived.
struct Written {
    path: std::path::PathBuf,
    offset: usize,
    frame: Vec<u8>,
}

/// Record `seq`, or with `forged`, one whose event holds what an attacker
/// would put there: frames laid out for the records after it, unkeyed and
/// under a guessed key, and one far ahead.
fn content(seq: u64, forged: bool) -> Record {
    if !forged {
        return record(seq);
    }
    let mut bytes = Vec::new();
    for key in [format::FrameKey::UNKEYED, format::FrameKey::random()] {
        for target in [seq + 1, seq + 2, u64::MAX / 2] {
            let fake = Record::from_event(auditrelay_plugin_api::Event {
                id: "forged",
                source: "test",
                event_type: "t.x",
                time_unix_nanos: 0,
                tenant: None,
                envelope: b"{}",
            });
            format::write_frame(&mut bytes, key, target, fake.encoded());
        }
    }
    Record::from_event(auditrelay_plugin_api::Event {
        id: &format!("e{seq}"),
        source: "test",
        event_type: "t.x",
        time_unix_nanos: seq as i64,
        tenant: None,
        envelope: &bytes,
    })
}

/// Writes `count` records in segments of `per_segment`, the watermark and
/// the cursors; returns where each record is.
fn build(
    dir: &Path,
    count: u64,
    per_segment: u64,
    durable: u64,
    cursors: &BTreeMap<String, u64>,
    forged: bool,
) -> Vec<Written> {
    let segments = dir.join("segments");
    std::fs::create_dir_all(&segments).unwrap();
    let key = format::FrameKey::random();
    super::super::key::store(&dir.join(KEY_FILE), key).unwrap();
    let mut written = Vec::new();
    for first in (0..count).step_by(per_segment as usize) {
        let path = segments.join(Segment::file_name(first));
        let mut bytes = format::segment_header(first, key).to_vec();
        for seq in first..(first + per_segment).min(count) {
            let mut frame = Vec::new();
            format::write_frame(&mut frame, key, seq, content(seq, forged).encoded());
            written.push(Written {
                path: path.clone(),
                offset: bytes.len(),
                frame: frame.clone(),
            });
            bytes.extend_from_slice(&frame);
        }
        std::fs::write(&path, bytes).unwrap();
    }
    Watermark::open(&dir.join("durable"))
        .unwrap()
        .advance(durable)
        .unwrap();
    cursors::store(&dir.join("cursors.json"), cursors, false).unwrap();
    written
}

fn apply(dir: &Path, harm: &Harm) {
    let segments = dir.join("segments");
    let mut files: Vec<_> = std::fs::read_dir(&segments)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let pick = |i: usize| files.get(i % files.len().max(1)).cloned();
    match harm {
        Harm::Flip {
            file,
            at,
            len,
            mask,
        } => {
            if let Some(path) = pick(*file) {
                let mut bytes = std::fs::read(&path).unwrap();
                if !bytes.is_empty() {
                    let start = ((bytes.len() as f64) * at) as usize % bytes.len();
                    for byte in bytes.iter_mut().skip(start).take(*len) {
                        *byte ^= mask;
                    }
                    std::fs::write(&path, bytes).unwrap();
                }
            }
        }
        Harm::Cut { file, keep } => {
            if let Some(path) = pick(*file) {
                let len = std::fs::metadata(&path).unwrap().len();
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .unwrap()
                    .set_len(((len as f64) * keep) as u64)
                    .unwrap();
            }
        }
        Harm::Delete { file } => {
            if let Some(path) = pick(*file) {
                std::fs::remove_file(path).unwrap();
            }
        }
        Harm::Garbage { file, bytes } => {
            if let Some(path) = pick(*file) {
                let mut content = std::fs::read(&path).unwrap();
                content.extend_from_slice(bytes);
                std::fs::write(&path, content).unwrap();
            }
        }
        Harm::Stray { seq, bytes } => {
            let path = segments.join(Segment::file_name(*seq));
            if !path.exists() {
                std::fs::write(path, bytes).unwrap();
            }
        }
    }
}

/// Whether the record's frame is still on disk as written (its header
/// need not be: the spool's key reads it anyway).
fn intact(record: &Written) -> bool {
    let Ok(bytes) = std::fs::read(&record.path) else {
        return false;
    };
    bytes.get(record.offset..record.offset + record.frame.len()) == Some(&record.frame[..])
}

fn lost_ranges(report: &RecoveryReport) -> Vec<Range<u64>> {
    let mut lost: Vec<Range<u64>> = report
        .damaged
        .iter()
        .filter_map(|d| d.lost.clone())
        .collect();
    lost.extend(report.missing.iter().cloned());
    lost.extend(report.lost_tail.clone());
    lost
}

/// Cases to run: `PROPTEST_CASES` when set (for a longer hunt), else a
/// number that keeps the test suite quick.
fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|cases| cases.parse().ok())
        .unwrap_or(default)
}

/// Damages a spool built as said with `harms`, then checks what opening
/// it reports and reads back.
fn check(
    count: u64,
    per_segment: u64,
    durable_share: f64,
    behind: f64,
    ahead: f64,
    harms: &[Harm],
    forged: bool,
) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let durable = ((count as f64) * durable_share) as u64;
    // Cursors only ever lie below what was written.
    let behind = ((count as f64) * behind * durable_share) as u64;
    let cursors = BTreeMap::from([
        ("behind".to_owned(), behind),
        (
            "ahead".to_owned(),
            (((count as f64) * ahead) as u64).max(behind),
        ),
    ]);
    let needed_from = *cursors.values().min().unwrap();
    let written = build(dir.path(), count, per_segment, durable, &cursors, forged);
    for harm in harms {
        apply(dir.path(), harm);
    }
    let survived: Vec<bool> = written.iter().map(intact).collect();

    // Verifying changes nothing and reports what opening reports.
    let verified = inspect(dir.path()).unwrap().report;
    let (spool, opened) = Spool::open(options(dir.path())).unwrap();
    prop_assert_eq!(lost_ranges(&verified), lost_ranges(&opened));
    let lost = lost_ranges(&opened);
    let in_lost = |seq: u64| lost.iter().any(|r| r.contains(&seq));
    let existed_below = cursors.values().copied().fold(durable, u64::max);
    prop_assert!(
        opened.next_seq <= count.max(existed_below),
        "a sequence number nobody wrote: {}",
        opened
    );
    for (seq, survived) in survived.iter().enumerate() {
        let seq = seq as u64;
        if *survived {
            prop_assert!(
                !in_lost(seq),
                "intact record {} reported lost: {}",
                seq,
                opened
            );
        } else if seq >= needed_from && seq < existed_below {
            prop_assert!(
                in_lost(seq),
                "record {} is gone but not reported lost: {}",
                seq,
                opened
            );
        }
    }
    // Opening cut nothing that held an intact record.
    for (seq, record) in written.iter().enumerate() {
        prop_assert!(
            !survived[seq] || intact(record),
            "opening destroyed intact record {}: {}",
            seq,
            opened
        );
    }

    // Every intact record still needed is read back, in order, once, and
    // nothing else.
    let consumer = spool.consumer("behind", StartFrom::Earliest, true);
    let mut reader = spool.reader(consumer);
    let mut seen = Vec::new();
    loop {
        let batch = reader.read(64, usize::MAX, true).unwrap();
        if batch.is_empty() {
            break;
        }
        for (seq, event) in batch.events() {
            prop_assert!(seq < count, "a record nobody wrote: {}", seq);
            prop_assert_eq!(event.id, format!("e{seq}"));
            seen.push(seq);
        }
        spool.commit(consumer, batch.end_seq());
    }
    let expected: Vec<u64> = (needed_from..count)
        .filter(|&s| survived[s as usize])
        .collect();
    prop_assert!(seen.windows(2).all(|w| w[0] < w[1]));
    let missing: Vec<u64> = expected
        .iter()
        .copied()
        .filter(|s| seen.binary_search(s).is_err())
        .collect();
    prop_assert!(
        missing.is_empty(),
        "intact records not read back: {:?}: {}",
        missing,
        opened
    );
    // And the spool takes new events after whatever it found, never
    // under a number that was acknowledged or seen by a cursor.
    let next = spool.append(&[record(count)]).unwrap().seqs;
    prop_assert!(next.start >= existed_below && next.start >= seen.last().map_or(0, |s| s + 1));
    Ok(())
}

/// One flipped bit or one cut, anywhere.
fn small_harm() -> impl Strategy<Value = Harm> {
    prop_oneof![
        (0..8usize, 0.0..1.0f64, 0..8u8).prop_map(|(file, at, bit)| Harm::Flip {
            file,
            at,
            len: 1,
            mask: 1 << bit,
        }),
        (0..8usize, 0.0..1.0f64).prop_map(|(file, keep)| Harm::Cut { file, keep }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(160)))]

    #[test]
    fn recovery_reports_loss_exactly(
        count in 1..300u64,
        per_segment in 5..80u64,
        durable_share in 0.0..=1.0f64,
        behind in 0.0..=1.0f64,
        ahead in 0.0..=1.0f64,
        harms in proptest::collection::vec(harm(), 1..5),
    ) {
        check(count, per_segment, durable_share, behind, ahead, &harms, false)?;
    }

    #[test]
    fn frames_an_emitter_hid_in_its_events_never_pass_for_records(
        count in 1..120u64,
        per_segment in 5..40u64,
        durable_share in 0.0..=1.0f64,
        behind in 0.0..=1.0f64,
        harm in small_harm(),
    ) {
        check(count, per_segment, durable_share, behind, 1.0, &[harm], true)?;
    }
}
