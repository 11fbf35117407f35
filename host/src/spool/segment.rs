//! One segment file: what the spool knows about it, and scanning it.

use std::ops::Range;
use std::path::{Path, PathBuf};

use super::format::{self, FrameKey, Parsed, SEGMENT_HEADER_LEN};

/// A sparse index entry every this many records.
const INDEX_EVERY: u64 = 64;

/// What the spool knows about one segment file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// Sequence number of its first record (also its file name).
    pub first_seq: u64,
    /// The file.
    pub path: PathBuf,
    /// Bytes in the file that hold intact data (header included).
    pub len: u64,
    /// Sequence number after its last record.
    pub end_seq: u64,
    /// Intact records in it.
    pub records: u64,
    /// The key its records are written with.
    pub key: FrameKey,
    /// Whether new records may be appended to it: its header is intact and
    /// its file ends with its last intact record. A segment with damage at
    /// its end or in its header is left as it is, for inspection.
    pub appendable: bool,
    /// `(seq, offset)` of every 64th record, for finding a cursor.
    index: Vec<(u64, u64)>,
}

impl Segment {
    /// The file name of a segment starting at `first_seq`.
    pub fn file_name(first_seq: u64) -> String {
        format!("{first_seq:020}.seg")
    }

    /// The first sequence number a segment file name declares.
    pub fn parse_file_name(name: &str) -> Option<u64> {
        let digits = name.strip_suffix(".seg")?;
        (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()))
            .then(|| digits.parse().ok())
            .flatten()
    }

    /// A new, empty segment in `dir`, written with `key`.
    pub fn new(dir: &Path, first_seq: u64, key: FrameKey) -> Self {
        Self::at(dir.join(Self::file_name(first_seq)), first_seq, key)
    }

    fn at(path: PathBuf, first_seq: u64, key: FrameKey) -> Self {
        Segment {
            first_seq,
            path,
            len: SEGMENT_HEADER_LEN as u64,
            end_seq: first_seq,
            records: 0,
            key,
            appendable: true,
            index: Vec::new(),
        }
    }

    /// Notes `records` more records ending before `end_seq`, the file now
    /// `len` bytes, with their index entries (the writer computes them).
    pub fn extend(&mut self, records: u64, end_seq: u64, len: u64, index: &[(u64, u64)]) {
        self.records += records;
        self.end_seq = end_seq;
        self.len = len;
        self.index.extend_from_slice(index);
    }

    /// Notes a record written (or found) at `offset`, `frame_len` bytes long.
    pub fn note(&mut self, seq: u64, offset: u64, frame_len: u64) {
        if self.records.is_multiple_of(INDEX_EVERY) {
            self.index.push((seq, offset));
        }
        self.records += 1;
        self.end_seq = seq + 1;
        self.len = offset + frame_len;
    }

    /// Where to start reading to find `seq`: the offset of the nearest
    /// indexed record at or before it.
    pub fn offset_before(&self, seq: u64) -> u64 {
        match self.index.partition_point(|(s, _)| *s <= seq) {
            0 => SEGMENT_HEADER_LEN as u64,
            i => self.index[i - 1].1,
        }
    }
}

/// Bytes of a segment that held no intact record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    /// The segment file.
    pub segment: PathBuf,
    /// The damaged byte range.
    pub bytes: Range<u64>,
    /// The sequence numbers lost with them, when known.
    pub lost: Option<Range<u64>>,
    /// What was wrong.
    pub reason: String,
}

/// What scanning one segment found.
#[derive(Debug, Clone)]
pub struct Scan {
    /// The segment as far as it is intact.
    pub segment: Segment,
    /// Damaged ranges followed by intact records.
    pub damage: Vec<Damage>,
    /// Bytes after the last intact record that are followed by nothing
    /// intact (a torn write, or damage at the end).
    pub tail: Option<Range<u64>>,
}

/// Scans a segment file's bytes; `named_first_seq` comes from its name.
/// Its records are checked with the key its header holds; if the header
/// is damaged, with each of `salvage` in turn (the one that finds the most
/// records wins), and the damage is reported.
pub fn scan(path: &Path, bytes: &[u8], named_first_seq: u64, salvage: &[FrameKey]) -> Scan {
    let header_damage = |reason: &str| Damage {
        segment: path.to_owned(),
        bytes: 0..SEGMENT_HEADER_LEN.min(bytes.len()) as u64,
        lost: None,
        reason: format!(
            "the segment header is damaged ({reason}); its records are read with the spool's key"
        ),
    };
    match format::read_segment_header(bytes) {
        Ok((first_seq, key)) if first_seq == named_first_seq => {
            scan_records(path, bytes, named_first_seq, key)
        }
        header => {
            let reason = match header {
                Ok(_) => "it names another first sequence number than the file name",
                Err(reason) => reason,
            };
            let mut best = salvage
                .iter()
                .map(|key| scan_records(path, bytes, named_first_seq, *key))
                .max_by_key(|scan| scan.segment.records)
                .unwrap_or_else(|| scan_records(path, bytes, named_first_seq, FrameKey::UNKEYED));
            best.damage.insert(0, header_damage(reason));
            best.segment.appendable = false;
            best
        }
    }
}

fn scan_records(path: &Path, bytes: &[u8], named_first_seq: u64, key: FrameKey) -> Scan {
    let mut segment = Segment::at(path.to_owned(), named_first_seq, key);
    let mut damage = Vec::new();
    let damaged = |bytes: Range<u64>, lost: Option<Range<u64>>, reason: &str| Damage {
        segment: path.to_owned(),
        bytes,
        lost,
        reason: reason.to_owned(),
    };
    let mut offset = SEGMENT_HEADER_LEN.min(bytes.len());
    let mut expected = named_first_seq;
    while offset < bytes.len() {
        match format::parse_frame(&bytes[offset..], key) {
            // Only a record of this spool checks out under its key, so one
            // further on than expected means records were cut out cleanly.
            // (Unkeyed, it may be bytes an emitter laid out: resync.)
            Parsed::Frame(frame)
                if frame.seq == expected || (frame.seq > expected && key != FrameKey::UNKEYED) =>
            {
                if frame.seq > expected {
                    damage.push(damaged(
                        offset as u64..offset as u64,
                        Some(expected..frame.seq),
                        "records are missing between two intact ones",
                    ));
                }
                segment.note(frame.seq, offset as u64, frame.len as u64);
                expected = frame.seq + 1;
                offset += frame.len;
            }
            parsed => {
                let reason = match parsed {
                    Parsed::Frame(_) => "a record is out of order",
                    Parsed::Incomplete => "a record is cut short",
                    Parsed::Damaged => "a record's checksum or framing does not match",
                };
                match format::resync(&bytes[offset..], key, expected) {
                    Some(skip) => {
                        let next = offset + skip;
                        let lost = match format::parse_frame(&bytes[next..], key) {
                            Parsed::Frame(f) if f.seq > expected => {
                                let lost = expected..f.seq;
                                expected = f.seq;
                                Some(lost)
                            }
                            _ => None,
                        };
                        damage.push(damaged(offset as u64..next as u64, lost, reason));
                        offset = next;
                    }
                    None => {
                        return Scan {
                            segment,
                            damage,
                            tail: Some(offset as u64..bytes.len() as u64),
                        };
                    }
                }
            }
        }
    }
    Scan {
        segment,
        damage,
        tail: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: FrameKey = FrameKey::UNKEYED;

    fn segment_bytes(first_seq: u64, payloads: &[&[u8]]) -> Vec<u8> {
        let key = FrameKey::from_bytes(*b"segment!");
        let mut bytes = format::segment_header(first_seq, key).to_vec();
        for (i, payload) in payloads.iter().enumerate() {
            format::write_frame(&mut bytes, key, first_seq + i as u64, payload);
        }
        bytes
    }

    #[test]
    fn names_round_trip() {
        assert_eq!(Segment::file_name(42), "00000000000000000042.seg");
        assert_eq!(
            Segment::parse_file_name("00000000000000000042.seg"),
            Some(42)
        );
        assert_eq!(Segment::parse_file_name("42.seg"), None);
        assert_eq!(
            Segment::parse_file_name("00000000000000000042.seg.tmp"),
            None
        );
    }

    #[test]
    fn an_intact_segment_scans_clean() {
        let payloads: Vec<Vec<u8>> = (0..200)
            .map(|i| format!("event {i}").into_bytes())
            .collect();
        let refs: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
        let bytes = segment_bytes(1000, &refs);
        let scan = scan(Path::new("s"), &bytes, 1000, &[KEY]);
        assert!(scan.damage.is_empty() && scan.tail.is_none());
        assert_eq!(scan.segment.records, 200);
        assert_eq!(scan.segment.end_seq, 1200);
        assert_eq!(scan.segment.len, bytes.len() as u64);
        let offset = scan.segment.offset_before(1130);
        let Parsed::Frame(frame) = format::parse_frame(&bytes[offset as usize..], scan.segment.key)
        else {
            panic!("the index points at a frame")
        };
        assert_eq!(frame.seq, 1128, "the 64-record index entry before 1130");
    }

    #[test]
    fn damage_in_the_middle_costs_only_the_damaged_records() {
        let bytes = segment_bytes(0, &[b"zero", b"one", b"two", b"three"]);
        let mut damaged = bytes.clone();
        // The second frame's payload: header 32 + frame 0 (20 + 4) + 20.
        damaged[32 + 24 + 21] ^= 0xff;
        let scan = scan(Path::new("s"), &damaged, 0, &[KEY]);
        assert_eq!(scan.segment.records, 3);
        assert_eq!(scan.damage.len(), 1);
        assert_eq!(scan.damage[0].lost, Some(1..2));
        assert!(scan.tail.is_none());
        assert_eq!(scan.segment.end_seq, 4);
    }

    #[test]
    fn a_torn_last_record_is_a_tail() {
        let bytes = segment_bytes(0, &[b"zero", b"one"]);
        let torn = &bytes[..bytes.len() - 2];
        let scan = scan(Path::new("s"), torn, 0, &[KEY]);
        assert_eq!(scan.segment.records, 1);
        assert_eq!(scan.tail, Some(scan.segment.len..torn.len() as u64));
    }

    #[test]
    fn a_damaged_header_costs_no_record_the_spool_key_can_read() {
        let key = FrameKey::from_bytes(*b"segment!");
        let mut bytes = segment_bytes(500, &[b"zero", b"one", b"two"]);
        bytes[..SEGMENT_HEADER_LEN].fill(0);
        let scan = scan(Path::new("s"), &bytes, 500, &[KEY, key]);
        assert_eq!((scan.segment.records, scan.segment.end_seq), (3, 503));
        assert!(!scan.segment.appendable, "left as it is");
        assert_eq!(scan.damage.len(), 1);
        assert!(scan.damage[0].reason.contains("header is damaged"));
        // Without the key nothing checks out: all of it is damage.
        let scan = scan_records(Path::new("s"), &bytes, 500, KEY);
        assert_eq!(scan.segment.records, 0);
    }
}
