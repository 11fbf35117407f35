//! The spool's bytes on disk.
//!
//! A segment file `<first seq, 20 digits>.seg` is a 32-byte header then
//! framed records back to back:
//!
//! | segment header | |
//! |---|---|
//! | 0..8 | magic `ARSPOOL\0` |
//! | 8..12 | format version (u32 LE), 1 |
//! | 12..20 | sequence number of the first record (u64 LE) |
//! | 20..24 | CRC32C of bytes 0..20 |
//! | 24..32 | zero |
//!
//! | record frame | |
//! |---|---|
//! | 0..4 | sync marker `0xA5 'R' 'E' 'C'`, to find the next record after damage |
//! | 4..8 | payload length (u32 LE) |
//! | 8..16 | sequence number (u64 LE) |
//! | 16..20 | CRC32C of the payload, then the sequence number, then the length |
//! | 20.. | payload: the event as [`batch::encode`](auditrelay_plugin_api::batch::encode) lays it out |
//!
//! Every record's checksum covers its payload, position and length, so a
//! torn write, a flipped bit or a misplaced block is detected; the sync
//! marker lets a scan skip damaged bytes and resume at the next intact
//! record, so damage costs only the records it touched.

/// Bytes of a segment header.
pub const SEGMENT_HEADER_LEN: usize = 32;
/// Bytes in front of each record's payload.
pub const FRAME_HEADER_LEN: usize = 20;
/// Marks the start of every record.
pub const SYNC: [u8; 4] = [0xA5, b'R', b'E', b'C'];
/// Largest payload a frame may claim; anything larger is damage.
pub const MAX_PAYLOAD: usize = 64 * 1024 * 1024;

const SEGMENT_MAGIC: &[u8; 8] = b"ARSPOOL\0";
const FORMAT_VERSION: u32 = 1;

/// The header of a segment that starts at `first_seq`.
pub fn segment_header(first_seq: u64) -> [u8; SEGMENT_HEADER_LEN] {
    let mut header = [0u8; SEGMENT_HEADER_LEN];
    header[0..8].copy_from_slice(SEGMENT_MAGIC);
    header[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    header[12..20].copy_from_slice(&first_seq.to_le_bytes());
    let crc = crc32c::crc32c(&header[0..20]);
    header[20..24].copy_from_slice(&crc.to_le_bytes());
    header
}

/// The first sequence number a segment header declares.
pub fn read_segment_header(bytes: &[u8]) -> Result<u64, &'static str> {
    let header = bytes
        .get(..SEGMENT_HEADER_LEN)
        .ok_or("the segment header is cut short")?;
    if &header[0..8] != SEGMENT_MAGIC {
        return Err("not a spool segment (bad magic)");
    }
    let crc = u32::from_le_bytes(header[20..24].try_into().expect("4 bytes"));
    if crc != crc32c::crc32c(&header[0..20]) {
        return Err("the segment header's checksum does not match");
    }
    let version = u32::from_le_bytes(header[8..12].try_into().expect("4 bytes"));
    if version != FORMAT_VERSION {
        return Err("the segment was written by an incompatible spool format version");
    }
    Ok(u64::from_le_bytes(
        header[12..20].try_into().expect("8 bytes"),
    ))
}

fn checksum(payload: &[u8], seq: u64, len: u32) -> u32 {
    let crc = crc32c::crc32c(payload);
    let crc = crc32c::crc32c_append(crc, &seq.to_le_bytes());
    crc32c::crc32c_append(crc, &len.to_le_bytes())
}

/// Appends the frame of one record to `out`.
pub fn write_frame(out: &mut Vec<u8>, seq: u64, payload: &[u8]) {
    let len = u32::try_from(payload.len()).expect("payloads are capped far below 4 GiB");
    out.reserve(FRAME_HEADER_LEN + payload.len());
    out.extend_from_slice(&SYNC);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&checksum(payload, seq, len).to_le_bytes());
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

/// Parses the frame at the start of `bytes`.
pub fn parse_frame(bytes: &[u8]) -> Parsed<'_> {
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
    if checksum(payload, seq, len) != crc {
        return Parsed::Damaged;
    }
    Parsed::Frame(Frame {
        seq,
        payload,
        len: end,
    })
}

/// The offset of the next intact frame in `bytes` after a damaged one at
/// offset 0, if there is one.
pub fn resync(bytes: &[u8]) -> Option<usize> {
    let mut from = 1;
    while from < bytes.len() {
        let at = from + bytes[from..].windows(SYNC.len()).position(|w| w == SYNC)?;
        if let Parsed::Frame(_) = parse_frame(&bytes[at..]) {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_detect_every_flipped_bit() {
        let mut buffer = Vec::new();
        write_frame(&mut buffer, 42, b"hello");
        let Parsed::Frame(frame) = parse_frame(&buffer) else {
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
                    !matches!(parse_frame(&damaged), Parsed::Frame(f) if f == frame),
                    "flipping bit {bit} of byte {byte} went unnoticed"
                );
            }
        }
    }

    #[test]
    fn short_input_is_incomplete_not_damaged() {
        let mut buffer = Vec::new();
        write_frame(&mut buffer, 1, b"payload");
        for cut in 0..buffer.len() {
            assert_eq!(
                parse_frame(&buffer[..cut]),
                Parsed::Incomplete,
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn resync_finds_the_next_intact_frame() {
        let mut buffer = Vec::new();
        write_frame(&mut buffer, 1, b"first");
        let second = buffer.len();
        write_frame(&mut buffer, 2, b"second");
        buffer[10] ^= 0xff; // damage the first frame
        assert_eq!(parse_frame(&buffer), Parsed::Damaged);
        assert_eq!(resync(&buffer), Some(second));
        // A sync marker inside damaged bytes is not enough: the frame must check out.
        let mut fake = SYNC.to_vec();
        fake.extend_from_slice(&[0; 30]);
        assert_eq!(resync(&[&[0u8][..], &fake].concat()), None);
    }

    #[test]
    fn segment_headers_are_checked() {
        let header = segment_header(1_000);
        assert_eq!(read_segment_header(&header), Ok(1_000));
        let mut bad = header;
        bad[13] ^= 1;
        assert!(read_segment_header(&bad).unwrap_err().contains("checksum"));
        assert!(read_segment_header(&header[..10]).is_err());
        assert!(read_segment_header(&[0; 32]).unwrap_err().contains("magic"));
    }
}
