//! How a batch travels between the relay and a plugin: every event in one
//! byte buffer, each a 28-byte header then its fields' bytes.
//!
//! | header bytes | meaning |
//! |---|---|
//! | 0..4 (u32 LE) | length of `id` |
//! | 4..8 (u32 LE) | length of `source` |
//! | 8..12 (u32 LE) | length of `type` |
//! | 12..16 (u32 LE) | length of `tenant`; `0xFFFFFFFF` when there is none |
//! | 16..20 (u32 LE) | length of `envelope` |
//! | 20..28 (i64 LE) | `time`, nanoseconds since the Unix epoch |
//!
//! Handing a batch over then costs one copy of the buffer, however many
//! events it holds. The relay keeps each accepted event in this encoding
//! ([`encode`]) and assembles batches with [`BatchBuilder`]; the export
//! glue decodes them with [`read_batch`] into [`Event`] views that borrow
//! from the buffer. Plugin authors never need this module.

use std::fmt;

use crate::event::Event;

/// Bytes of the fixed header in front of each event.
pub const HEADER_LEN: usize = 28;
/// The `tenant` length that means "no tenant".
pub const NO_TENANT: u32 = u32::MAX;

/// Appends the encoding of one event to `out`.
///
/// # Panics
///
/// If a field is 4 GiB or longer (the relay caps events far lower).
pub fn encode(event: Event<'_>, out: &mut Vec<u8>) {
    let len = |bytes: &[u8]| u32::try_from(bytes.len()).expect("an event field stays below 4 GiB");
    let tenant = event.tenant.unwrap_or("");
    out.reserve(
        HEADER_LEN
            + event.id.len()
            + event.source.len()
            + event.event_type.len()
            + tenant.len()
            + event.envelope.len(),
    );
    for field in [
        len(event.id.as_bytes()),
        len(event.source.as_bytes()),
        len(event.event_type.as_bytes()),
        event.tenant.map_or(NO_TENANT, |t| len(t.as_bytes())),
        len(event.envelope),
    ] {
        out.extend_from_slice(&field.to_le_bytes());
    }
    out.extend_from_slice(&event.time_unix_nanos.to_le_bytes());
    for field in [event.id, event.source, event.event_type, tenant] {
        out.extend_from_slice(field.as_bytes());
    }
    out.extend_from_slice(event.envelope);
}

/// Decodes the event at the start of `bytes`; returns it and the number
/// of bytes it took.
pub fn decode(bytes: &[u8]) -> Result<(Event<'_>, usize), &'static str> {
    let header = bytes.get(..HEADER_LEN).ok_or("the header is cut short")?;
    let u32_at =
        |at: usize| u32::from_le_bytes(header[at..at + 4].try_into().expect("4 bytes")) as usize;
    let time_unix_nanos = i64::from_le_bytes(header[20..28].try_into().expect("8 bytes"));
    let tenant_len = match u32_at(12) {
        len if len == NO_TENANT as usize => None,
        len => Some(len),
    };
    // id, source, type and tenant lie back to back: check them at once.
    let text_len = u32_at(0)
        .checked_add(u32_at(4))
        .and_then(|n| n.checked_add(u32_at(8)))
        .and_then(|n| n.checked_add(tenant_len.unwrap_or(0)))
        .ok_or("a field runs past the end of the batch")?;
    let end = HEADER_LEN
        .checked_add(text_len)
        .and_then(|n| n.checked_add(u32_at(16)))
        .ok_or("a field runs past the end of the batch")?;
    let body = bytes
        .get(HEADER_LEN..end)
        .ok_or("a field runs past the end of the batch")?;
    let (texts, envelope) = body.split_at(text_len);
    let ascii = texts.is_ascii();
    let mut rest = texts;
    let mut text = |len: usize| -> Result<&str, &'static str> {
        let (field, after) = rest.split_at(len);
        rest = after;
        if ascii {
            // SAFETY: ASCII is valid UTF-8, and every byte of `texts` is ASCII.
            Ok(unsafe { std::str::from_utf8_unchecked(field) })
        } else {
            std::str::from_utf8(field).map_err(|_| "a text field is not UTF-8")
        }
    };
    let event = Event {
        id: text(u32_at(0))?,
        source: text(u32_at(4))?,
        event_type: text(u32_at(8))?,
        time_unix_nanos,
        tenant: tenant_len.map(&mut text).transpose()?,
        envelope,
    };
    Ok((event, end))
}

/// The length of the envelope JSON of an encoded event, read from its
/// header alone (no validation).
pub fn envelope_len(encoded: &[u8]) -> Option<usize> {
    let bytes = encoded.get(16..20)?;
    Some(u32::from_le_bytes(bytes.try_into().expect("4 bytes")) as usize)
}

/// A batch in this format, borrowed from whatever holds it: `count` events
/// back to back in `data`. What the relay hands a plugin runtime (which
/// never needs to know whether the bytes came from the spool, a replay or
/// a test), and what a plugin decodes with [`read_batch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncodedBatch<'a> {
    /// How many events `data` holds.
    pub count: u32,
    /// The events, each encoded with [`encode`].
    pub data: &'a [u8],
}

impl EncodedBatch<'_> {
    /// How many events, as a `usize`.
    pub fn len(&self) -> usize {
        self.count as usize
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
}

/// Encodes events into a batch. Reuse one builder to keep its buffer.
#[derive(Debug, Default)]
pub struct BatchBuilder {
    data: Vec<u8>,
    count: u32,
}

impl BatchBuilder {
    /// Empties the builder, keeping its capacity.
    pub fn clear(&mut self) {
        self.data.clear();
        self.count = 0;
    }

    /// Appends one event.
    pub fn push(&mut self, event: Event<'_>) {
        encode(event, &mut self.data);
        self.count += 1;
    }

    /// Appends one event already encoded with [`encode`] (one copy).
    pub fn push_encoded(&mut self, encoded: &[u8]) {
        self.data.extend_from_slice(encoded);
        self.count += 1;
    }

    /// How many events the batch holds.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// The encoded events.
    pub fn data(&self) -> &[u8] {
        &self.data
    }

    /// The batch, borrowed.
    pub fn encoded(&self) -> EncodedBatch<'_> {
        EncodedBatch {
            count: self.count,
            data: &self.data,
        }
    }
}

impl<'a> FromIterator<Event<'a>> for BatchBuilder {
    /// A batch of these events, in order.
    fn from_iter<I: IntoIterator<Item = Event<'a>>>(events: I) -> Self {
        let mut builder = BatchBuilder::default();
        for event in events {
            builder.push(event);
        }
        builder
    }
}

/// A batch that does not decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchError {
    /// The event at fault.
    pub index: usize,
    /// What is wrong with it.
    pub problem: &'static str,
}

impl fmt::Display for BatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed batch: event {}: {}", self.index, self.problem)
    }
}

impl std::error::Error for BatchError {}

/// Decodes a batch of `count` events into views borrowing from `data`,
/// checking every length and that text fields are UTF-8.
pub fn read_batch(data: &[u8], count: u32) -> Result<Vec<Event<'_>>, BatchError> {
    let mut events = Vec::with_capacity(count as usize);
    let mut rest = data;
    for index in 0..count as usize {
        let (event, used) = decode(rest).map_err(|problem| BatchError { index, problem })?;
        events.push(event);
        rest = &rest[used..];
    }
    if !rest.is_empty() {
        return Err(BatchError {
            index: count as usize,
            problem: "bytes are left after the last event",
        });
    }
    Ok(events)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EventBuf;

    fn built(events: &[EventBuf]) -> BatchBuilder {
        events.iter().map(EventBuf::as_event).collect()
    }

    #[test]
    fn events_survive_the_round_trip() {
        let mut events = crate::testing::sample_events(3);
        events[1].tenant = None;
        let mut builder = built(&events);
        let read = read_batch(builder.data(), builder.count()).unwrap();
        let expected: Vec<Event<'_>> = events.iter().map(EventBuf::as_event).collect();
        assert_eq!(read, expected);

        builder.clear();
        assert_eq!(read_batch(builder.data(), builder.count()).unwrap(), []);
    }

    #[test]
    fn malformed_batches_are_refused() {
        let events = crate::testing::sample_events(2);
        let builder = built(&events);
        let data = builder.data();

        let err = read_batch(&data[..data.len() - 1], 2).unwrap_err();
        assert_eq!(
            (err.index, err.problem),
            (1, "a field runs past the end of the batch")
        );
        let err = read_batch(data, 3).unwrap_err();
        assert_eq!((err.index, err.problem), (2, "the header is cut short"));
        let err = read_batch(data, 1).unwrap_err();
        assert_eq!(err.problem, "bytes are left after the last event");

        let mut bad = data.to_vec();
        bad[HEADER_LEN] = 0xff; // first byte of the first id
        let err = read_batch(&bad, 2).unwrap_err();
        assert_eq!((err.index, err.problem), (0, "a text field is not UTF-8"));

        let mut huge = data.to_vec();
        huge[16..20].copy_from_slice(&u32::MAX.to_le_bytes()); // envelope length
        let err = read_batch(&huge, 2).unwrap_err();
        assert_eq!(err.problem, "a field runs past the end of the batch");
    }

    #[test]
    fn non_ascii_text_is_checked_field_by_field() {
        let mut event = crate::testing::sample_events(1).remove(0);
        event.tenant = Some("zürich".into());
        event.source = "façade".into();
        let mut encoded = Vec::new();
        encode(event.as_event(), &mut encoded);
        let (decoded, used) = decode(&encoded).unwrap();
        assert_eq!(decoded, event.as_event());
        assert_eq!(used, encoded.len());
    }
}
