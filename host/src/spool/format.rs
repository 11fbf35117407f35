//! The spool's bytes on disk.
//!
//! A segment file `<first seq, 20 digits>.seg` is a 32-byte header then
//! framed records back to back:
//!
//! | segment header | |
//! |---|---|
//! | 0..8 | magic `ARSPOOL\0` |
//! | 8..12 | format version (u32 LE), 2 |
//! | 12..20 | sequence number of the first record (u64 LE) |
//! | 20..24 | CRC32C of bytes 0..20, then 24..32 |
//! | 24..32 | the spool's [frame key](FrameKey) |
//!
//! | record frame | |
//! |---|---|
//! | 0..4 | sync marker `0xA5 'R' 'E' 'C'`, to find the next record after damage |
//! | 4..8 | payload length (u32 LE) |
//! | 8..16 | sequence number (u64 LE) |
//! | 16..20 | CRC32C of the frame key, the payload, the sequence number, the length |
//! | 20.. | payload: the event as [`batch::encode`](auditrelay_plugin_api::batch::encode) lays it out |
//!
//! Every record's checksum covers its payload, position and length, so a
//! torn write, a flipped bit or a misplaced block is detected; the sync
//! marker lets a scan skip damaged bytes and resume at the next intact
//! record, so damage costs only the records it touched.
//!
//! A payload holds bytes an emitter chose, so it can hold something laid
//! out like a frame. The checksum is keyed with a random value of the
//! spool's, which no emitter sees: a frame inside a payload does not check
//! out, and a scan after damage never mistakes one for a record. A scan
//! also accepts only a sequence number the skipped bytes could have held.
//! Format 1 segments (unkeyed, bytes 24..32 zero) are still read.

/// Bytes of a segment header.
pub const SEGMENT_HEADER_LEN: usize = 32;
/// Bytes in front of each record's payload.
pub const FRAME_HEADER_LEN: usize = 20;
/// Marks the start of every record.
pub const SYNC: [u8; 4] = [0xA5, b'R', b'E', b'C'];
/// Largest payload a frame may claim; anything larger is damage.
pub const MAX_PAYLOAD: usize = 64 * 1024 * 1024;

const SEGMENT_MAGIC: &[u8; 8] = b"ARSPOOL\0";
/// The version written.
const FORMAT_VERSION: u32 = 2;
/// The unkeyed format, still read.
const UNKEYED_VERSION: u32 = 1;

/// What a spool's record checksums are keyed with: a random value drawn
/// when the spool is created, kept in `spool/frame-key` and in every
/// segment header, and never shown to anyone (its `Debug` hides it).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct FrameKey(Option<[u8; 8]>);

impl FrameKey {
    /// The key of format 1 segments, which had none.
    pub const UNKEYED: FrameKey = FrameKey(None);

    /// A new random key.
    pub fn random() -> Self {
        FrameKey(Some(rand::random()))
    }

    /// The key stored as `bytes`.
    pub const fn from_bytes(bytes: [u8; 8]) -> Self {
        FrameKey(Some(bytes))
    }

    /// The key's bytes, to store (`None` for [`UNKEYED`](Self::UNKEYED)).
    pub fn to_bytes(self) -> Option<[u8; 8]> {
        self.0
    }
}

impl std::fmt::Debug for FrameKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.0 {
            Some(_) => "FrameKey(..)",
            None => "FrameKey::UNKEYED",
        })
    }
}

/// The header of a segment that starts at `first_seq`, written with `key`.
pub fn segment_header(first_seq: u64, key: FrameKey) -> [u8; SEGMENT_HEADER_LEN] {
    let mut header = [0u8; SEGMENT_HEADER_LEN];
    header[0..8].copy_from_slice(SEGMENT_MAGIC);
    let version = match key.0 {
        Some(bytes) => {
            header[24..32].copy_from_slice(&bytes);
            FORMAT_VERSION
        }
        None => UNKEYED_VERSION,
    };
    header[8..12].copy_from_slice(&version.to_le_bytes());
    header[12..20].copy_from_slice(&first_seq.to_le_bytes());
    let crc = header_checksum(&header, version);
    header[20..24].copy_from_slice(&crc.to_le_bytes());
    header
}

fn header_checksum(header: &[u8], version: u32) -> u32 {
    let crc = crc32c::crc32c(&header[0..20]);
    match version {
        UNKEYED_VERSION => crc,
        _ => crc32c::crc32c_append(crc, &header[24..32]),
    }
}

/// The first sequence number a segment header declares, and the key its
/// records are written with.
pub fn read_segment_header(bytes: &[u8]) -> Result<(u64, FrameKey), &'static str> {
    let header = bytes
        .get(..SEGMENT_HEADER_LEN)
        .ok_or("the segment header is cut short")?;
    if &header[0..8] != SEGMENT_MAGIC {
        return Err("not a spool segment (bad magic)");
    }
    let version = u32::from_le_bytes(header[8..12].try_into().expect("4 bytes"));
    let crc = u32::from_le_bytes(header[20..24].try_into().expect("4 bytes"));
    if crc != header_checksum(header, version) {
        return Err("the segment header's checksum does not match");
    }
    let key = match version {
        FORMAT_VERSION => FrameKey(Some(header[24..32].try_into().expect("8 bytes"))),
        UNKEYED_VERSION => FrameKey::UNKEYED,
        _ => return Err("the segment was written by an incompatible spool format version"),
    };
    let first_seq = u64::from_le_bytes(header[12..20].try_into().expect("8 bytes"));
    Ok((first_seq, key))
}

/// The keys a segment whose header is damaged may have been written with,
/// most likely first: what its header's key bytes say (unless its version
/// field says format 1), then `spool_key`.
pub fn salvage_keys(header: &[u8], spool_key: FrameKey) -> Vec<FrameKey> {
    let mut keys = Vec::new();
    if header.get(8..12) == Some(&UNKEYED_VERSION.to_le_bytes()[..]) {
        keys.push(FrameKey::UNKEYED);
    } else if let Some(bytes) = header.get(24..32) {
        keys.push(FrameKey(Some(bytes.try_into().expect("8 bytes"))));
    }
    if !keys.contains(&spool_key) {
        keys.push(spool_key);
    }
    keys
}

fn checksum(key: FrameKey, payload: &[u8], seq: u64, len: u32) -> u32 {
    let crc = match key.0 {
        Some(bytes) => crc32c::crc32c_append(crc32c::crc32c(&bytes), payload),
        None => crc32c::crc32c(payload),
    };
    let crc = crc32c::crc32c_append(crc, &seq.to_le_bytes());
    crc32c::crc32c_append(crc, &len.to_le_bytes())
}

/// Appends the frame of one record to `out`, its checksum keyed with `key`.
pub fn write_frame(out: &mut Vec<u8>, key: FrameKey, seq: u64, payload: &[u8]) {
    let len = u32::try_from(payload.len()).expect("payloads are capped far below 4 GiB");
    out.reserve(FRAME_HEADER_LEN + payload.len());
    out.extend_from_slice(&SYNC);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&checksum(key, payload, seq, len).to_le_bytes());
    out.extend_from_slice(payload);
}

/// One record found in a byte buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    /// Its sequence number.
    pub seq: u64,
    /// The encoded event.
    pub payload: &'a [u8],
    /// Bytes the whole frame takes.
    pub len: usize,
}

/// What is at the start of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed<'a> {
    /// An intact record.
    Frame(Frame<'a>),
    /// Too few bytes to tell (the end of what was written so far, or a
    /// torn write at the end of a file).
    Incomplete,
    /// Not an intact record: damage.
    Damaged,
}

/// Parses the frame at the start of `bytes`, written with `key`.
pub fn parse_frame(bytes: &[u8], key: FrameKey) -> Parsed<'_> {
    let Some(header) = bytes.get(..FRAME_HEADER_LEN) else {
        return if SYNC.starts_with(&bytes[..bytes.len().min(4)]) {
            Parsed::Incomplete
        } else {
            Parsed::Damaged
        };
    };
    if header[0..4] != SYNC {
        return Parsed::Damaged;
    }
    let len = u32::from_le_bytes(header[4..8].try_into().expect("4 bytes"));
    let seq = u64::from_le_bytes(header[8..16].try_into().expect("8 bytes"));
    let crc = u32::from_le_bytes(header[16..20].try_into().expect("4 bytes"));
    if len as usize > MAX_PAYLOAD {
        return Parsed::Damaged;
    }
    let end = FRAME_HEADER_LEN + len as usize;
    let Some(payload) = bytes.get(FRAME_HEADER_LEN..end) else {
        return Parsed::Incomplete;
    };
    if checksum(key, payload, seq, len) != crc {
        return Parsed::Damaged;
    }
    Parsed::Frame(Frame {
        seq,
        payload,
        len: end,
    })
}

/// The offset of the next intact frame in `bytes` after a damaged one at
/// offset 0, where record `expected` was due, if there is one.
///
/// A frame counts only if its sequence number is one the skipped bytes
/// could have held: not below `expected` (records come in order), and at
/// most one more per [`FRAME_HEADER_LEN`] bytes skipped (no record is
/// shorter). So even a frame that checks out cannot make a scan jump to a
/// sequence number nobody wrote.
pub fn resync(bytes: &[u8], key: FrameKey, expected: u64) -> Option<usize> {
    let mut from = 1;
    while from < bytes.len() {
        let at = from + bytes[from..].windows(SYNC.len()).position(|w| w == SYNC)?;
        if let Parsed::Frame(frame) = parse_frame(&bytes[at..], key)
            && frame.seq >= expected
            && frame.seq - expected <= (at / FRAME_HEADER_LEN) as u64
        {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

/// Whether any intact frame lies anywhere in `bytes`, whatever its
/// sequence number: such bytes are never cut off as a torn write.
pub fn holds_a_frame(bytes: &[u8], key: FrameKey) -> bool {
    let mut from = 0;
    while from < bytes.len() {
        let Some(at) = bytes[from..].windows(SYNC.len()).position(|w| w == SYNC) else {
            return false;
        };
        if let Parsed::Frame(_) = parse_frame(&bytes[from + at..], key) {
            return true;
        }
        from += at + 1;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: FrameKey = FrameKey(Some(*b"testkey!"));

    #[test]
    fn frames_round_trip_and_detect_every_flipped_bit() {
        let mut buffer = Vec::new();
        write_frame(&mut buffer, KEY, 42, b"hello");
        let Parsed::Frame(frame) = parse_frame(&buffer, KEY) else {
            panic!("an intact frame")
        };
        assert_eq!(
            (frame.seq, frame.payload, frame.len),
            (42, &b"hello"[..], buffer.len())
        );
        for byte in 0..buffer.len() {
            for bit in 0..8 {
                let mut damaged = buffer.clone();
                damaged[byte] ^= 1 << bit;
                assert!(
                    !matches!(parse_frame(&damaged, KEY), Parsed::Frame(f) if f == frame),
                    "flipping bit {bit} of byte {byte} went unnoticed"
                );
            }
        }
    }

    #[test]
    fn short_input_is_incomplete_not_damaged() {
        let mut buffer = Vec::new();
        write_frame(&mut buffer, KEY, 1, b"payload");
        for cut in 0..buffer.len() {
            assert_eq!(
                parse_frame(&buffer[..cut], KEY),
                Parsed::Incomplete,
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn resync_finds_the_next_intact_frame() {
        let mut buffer = Vec::new();
        write_frame(&mut buffer, KEY, 1, b"first");
        let second = buffer.len();
        write_frame(&mut buffer, KEY, 2, b"second");
        buffer[10] ^= 0xff; // damage the first frame
        assert_eq!(parse_frame(&buffer, KEY), Parsed::Damaged);
        assert_eq!(resync(&buffer, KEY, 1), Some(second));
        // A sync marker inside damaged bytes is not enough: the frame must check out.
        let mut fake = SYNC.to_vec();
        fake.extend_from_slice(&[0; 30]);
        assert_eq!(resync(&[&[0u8][..], &fake].concat(), KEY, 0), None);
    }

    #[test]
    fn a_frame_inside_a_payload_is_never_taken_for_a_record() {
        // An emitter lays a perfect frame out inside its event: with the
        // spool's key unknown to it, the frame cannot check out.
        let mut forged = Vec::new();
        write_frame(&mut forged, FrameKey::UNKEYED, 2, b"forged");
        let mut guessed = Vec::new();
        write_frame(
            &mut guessed,
            FrameKey::from_bytes(*b"guessed!"),
            2,
            b"forged",
        );
        let mut buffer = Vec::new();
        write_frame(&mut buffer, KEY, 1, &[&forged[..], &guessed[..]].concat());
        let after = buffer.len();
        write_frame(&mut buffer, KEY, 2, b"real");
        buffer[30] ^= 1; // damage the record holding the forgery
        assert_eq!(resync(&buffer, KEY, 1), Some(after), "only the real record");
        assert!(!holds_a_frame(&forged, KEY) && !holds_a_frame(&guessed, KEY));
    }

    #[test]
    fn resync_accepts_only_sequence_numbers_the_skipped_bytes_could_hold() {
        let mut buffer = vec![0xee; 60];
        let at = buffer.len();
        write_frame(&mut buffer, KEY, 1_000, b"far ahead");
        // 60 damaged bytes hold three records at most: 10..=13 after 10.
        assert_eq!(resync(&buffer, KEY, 10), None);
        assert_eq!(resync(&buffer, KEY, 997), Some(at));
        assert_eq!(resync(&buffer, KEY, 1_001), None, "never backwards");
        assert!(holds_a_frame(&buffer, KEY));
    }

    #[test]
    fn segment_headers_are_checked() {
        let header = segment_header(1_000, KEY);
        assert_eq!(read_segment_header(&header), Ok((1_000, KEY)));
        for byte in [13, 27] {
            let mut bad = header;
            bad[byte] ^= 1;
            assert!(read_segment_header(&bad).unwrap_err().contains("checksum"));
        }
        assert!(read_segment_header(&header[..10]).is_err());
        assert!(read_segment_header(&[0; 32]).unwrap_err().contains("magic"));
        // Format 1: unkeyed, still read.
        let old = segment_header(7, FrameKey::UNKEYED);
        assert_eq!(read_segment_header(&old), Ok((7, FrameKey::UNKEYED)));
        assert_eq!(salvage_keys(&old, KEY), [FrameKey::UNKEYED, KEY]);
        assert_eq!(salvage_keys(&header, KEY), [KEY]);
        assert_eq!(format!("{KEY:?}"), "FrameKey(..)", "the key is never shown");
    }
}
