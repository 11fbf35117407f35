//! What goes into the spool ([`Record`]) and what comes out ([`Batch`]).

use std::ops::Range;

use auditrelay_plugin_api::Event;
use auditrelay_plugin_api::batch::{self, EncodedBatch};
use auditrelay_plugin_api::envelope::{AuditEventEnvelope, EnvelopeView, Limits, ValidationErrors};

/// One accepted event, already in the encoding plugins receive it in
/// ([`auditrelay_plugin_api::batch`]); the spool stores these bytes as they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The event, encoded by [`batch::encode`] (only ever built here, so
    /// it always decodes).
    encoded: Vec<u8>,
    /// Whether the spool seals it into its stream's hash chain (every
    /// event but the relay's own checkpoints, which their signature
    /// vouches for).
    sealable: bool,
}

impl Record {
    /// Validates an envelope and turns it into a record. The envelope is
    /// encoded once, canonically.
    pub fn from_envelope(
        event: &AuditEventEnvelope,
        limits: &Limits,
    ) -> Result<Self, ValidationErrors> {
        let json = event.to_validated_json(limits)?;
        Ok(Self::with_json(event, &json))
    }

    /// Validates an envelope read from JSON and turns it into a record,
    /// encoded once, canonically, straight from the view.
    pub fn from_view(event: &EnvelopeView<'_>, limits: &Limits) -> Result<Self, ValidationErrors> {
        let json = event.to_validated_json(limits)?;
        Ok(Self::with_view_json(event, &json))
    }

    /// A record of `event` whose validated canonical JSON is `json`.
    pub fn with_view_json(event: &EnvelopeView<'_>, json: &[u8]) -> Self {
        Self::from_event(Event {
            id: &event.id,
            source: &event.source,
            event_type: &event.event_type,
            time_unix_nanos: event.time_unix_nanos(),
            tenant: event.tenant.as_deref(),
            envelope: json,
        })
    }

    /// A record of an event as a plugin would see it.
    pub fn from_event(event: Event<'_>) -> Self {
        let mut encoded = Vec::new();
        batch::encode(event, &mut encoded);
        Record {
            encoded,
            sealable: true,
        }
    }

    /// A record from bytes that were encoded by [`batch::encode`] (e.g. read
    /// back from a dead-letter file), checked.
    pub fn from_encoded(encoded: Vec<u8>) -> Result<Self, &'static str> {
        let (_, used) = batch::decode(&encoded)?;
        if used != encoded.len() {
            return Err("bytes are left after the event");
        }
        Ok(Record {
            encoded,
            sealable: true,
        })
    }

    /// A record of `event` whose validated canonical JSON is `json`.
    pub fn with_json(event: &AuditEventEnvelope, json: &[u8]) -> Self {
        Self::from_event(Event {
            id: &event.id,
            source: &event.source,
            event_type: &event.event_type,
            time_unix_nanos: event.time_unix_nanos(),
            tenant: event.tenant.as_deref(),
            envelope: json,
        })
    }

    /// A record the spool does not seal (a signed checkpoint the relay
    /// writes about the chains), of `event` whose canonical JSON is `json`.
    pub fn unsealed(event: &AuditEventEnvelope, json: &[u8]) -> Self {
        Record {
            sealable: false,
            ..Self::with_json(event, json)
        }
    }

    /// Whether the spool seals it (see [`unsealed`](Self::unsealed)).
    pub fn is_sealable(&self) -> bool {
        self.sealable
    }

    /// The record as a plugin sees it (borrowed).
    pub fn as_event(&self) -> Event<'_> {
        decode_trusted(&self.encoded)
    }

    /// The canonical envelope JSON.
    pub fn json(&self) -> &[u8] {
        self.as_event().envelope
    }

    /// The encoded event.
    pub fn encoded(&self) -> &[u8] {
        &self.encoded
    }
}

fn decode_trusted(encoded: &[u8]) -> Event<'_> {
    batch::decode(encoded)
        .expect("spool records are encoded by batch::encode and checksummed")
        .0
}

/// Events read from the spool for one plugin instance, in order.
///
/// Their encodings lie back to back in one buffer, which is exactly the
/// batch format plugins receive, so [`data`](Batch::data) goes to a plugin
/// without another copy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Batch {
    data: Vec<u8>,
    entries: Vec<(u64, Range<usize>)>,
    end_seq: u64,
}

impl Batch {
    /// An empty batch whose reading ended before `end_seq`.
    pub fn empty(end_seq: u64) -> Self {
        Batch {
            end_seq,
            ..Batch::default()
        }
    }

    /// A batch of `records` numbered from `first_seq`, for tests and replays.
    pub fn of(first_seq: u64, records: &[Record]) -> Self {
        let mut batch = Batch::empty(first_seq);
        for (i, record) in records.iter().enumerate() {
            batch.push(first_seq + i as u64, record.encoded());
        }
        batch
    }

    /// A batch of `(seq, record)` pairs (replayed dead letters keep their
    /// original sequence numbers).
    pub fn from_seqs(records: &[(u64, Record)]) -> Self {
        let mut batch = Batch::default();
        for (seq, record) in records {
            batch.push(*seq, record.encoded());
        }
        batch
    }

    /// Appends the events of `more`, which was read right after this batch.
    pub fn extend(&mut self, more: Batch) {
        if self.data.is_empty() {
            *self = more;
            return;
        }
        let base = self.data.len();
        self.data.extend_from_slice(&more.data);
        self.entries.extend(
            more.entries
                .into_iter()
                .map(|(seq, r)| (seq, r.start + base..r.end + base)),
        );
        self.end_seq = self.end_seq.max(more.end_seq);
    }

    /// Appends an event (its encoding, checked) with its sequence number.
    pub(crate) fn push(&mut self, seq: u64, encoded: &[u8]) {
        let start = self.data.len();
        self.data.extend_from_slice(encoded);
        self.entries.push((seq, start..self.data.len()));
        self.end_seq = seq + 1;
    }

    /// Marks everything before `end_seq` as read (e.g. after skipped gaps).
    pub(crate) fn set_end_seq(&mut self, end_seq: u64) {
        self.end_seq = end_seq;
    }

    /// How many events.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes of canonical JSON in the batch.
    pub fn json_bytes(&self) -> usize {
        self.events().map(|(_, e)| e.envelope.len()).sum()
    }

    /// The sequence number after the last event read: where the cursor
    /// goes once the batch is handled.
    pub fn end_seq(&self) -> u64 {
        self.end_seq
    }

    /// The `i`-th event's sequence number.
    pub fn seq(&self, i: usize) -> u64 {
        self.entries[i].0
    }

    /// The `i`-th event.
    pub fn event(&self, i: usize) -> Event<'_> {
        decode_trusted(&self.data[self.entries[i].1.clone()])
    }

    /// Every event with its sequence number.
    pub fn events(&self) -> impl Iterator<Item = (u64, Event<'_>)> {
        self.entries
            .iter()
            .map(|(seq, range)| (*seq, decode_trusted(&self.data[range.clone()])))
    }

    /// The events in the plugin batch format.
    pub fn data(&self) -> &[u8] {
        &self.data
    }

    /// The batch as a plugin runtime takes it: the events, without their
    /// sequence numbers (those are the spool's and the dispatcher's).
    pub fn encoded(&self) -> EncodedBatch<'_> {
        EncodedBatch {
            count: u32::try_from(self.len())
                .expect("batches are capped far below 4 billion events"),
            data: &self.data,
        }
    }

    /// The events at positions `part`, as a batch of their own; one that
    /// reaches the end keeps this batch's end.
    pub fn slice(&self, part: std::ops::Range<usize>) -> Batch {
        let mut out = Batch::default();
        for (seq, range) in &self.entries[part.clone()] {
            out.push(*seq, &self.data[range.clone()]);
        }
        if part.end == self.entries.len() {
            out.end_seq = self.end_seq;
        }
        out
    }

    /// The events for which `keep` says yes, in a new batch with the same
    /// end.
    pub fn filtered(&self, mut keep: impl FnMut(&Event<'_>) -> bool) -> Batch {
        let mut out = Batch::empty(self.end_seq);
        for (seq, range) in &self.entries {
            let encoded = &self.data[range.clone()];
            if keep(&decode_trusted(encoded)) {
                out.push(*seq, encoded);
            }
        }
        out.end_seq = self.end_seq;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use auditrelay_plugin_api::testing::sample_events;

    #[test]
    fn a_batch_is_the_plugin_wire_format() {
        let records: Vec<Record> = sample_events(3)
            .iter()
            .map(|e| Record::from_event(e.as_event()))
            .collect();
        let batch = Batch::of(10, &records);
        assert_eq!(batch.len(), 3);
        assert_eq!(batch.end_seq(), 13);
        let decoded = batch::read_batch(batch.data(), 3).unwrap();
        assert_eq!(decoded[1], records[1].as_event());
        assert_eq!(batch.seq(2), 12);

        let odd = batch.filtered(|e| e.id == records[1].as_event().id);
        assert_eq!(odd.len(), 1);
        assert_eq!(odd.seq(0), 11);
        assert_eq!(odd.end_seq(), 13, "filtering keeps where reading ended");
    }

    #[test]
    fn encoded_bytes_are_checked() {
        let record = Record::from_event(sample_events(1)[0].as_event());
        assert_eq!(
            Record::from_encoded(record.encoded().to_vec()),
            Ok(record.clone())
        );
        let mut extra = record.encoded().to_vec();
        extra.push(0);
        assert!(Record::from_encoded(extra).is_err());
        assert!(Record::from_encoded(vec![1, 2, 3]).is_err());
    }
}
