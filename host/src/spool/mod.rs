//! The spool: an ordered log of accepted events that every plugin reads
//! through its own cursor.
//!
//! `emit` appends and returns at once; each plugin's worker reads from its
//! cursor and moves it only after the plugin acknowledged a batch, so a slow
//! or broken plugin never holds back another and nothing is forgotten while
//! a destination is down. Records are dropped once every cursor has passed
//! them.
//!
//! This implementation keeps the log in memory, bounded by
//! `relay.max_buffered_bytes`: when it is full, appends are refused with
//! [`SpoolError::Full`] (never silently dropped). The durable on-disk log
//! replaces it behind the same interface.

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::{Arc, Mutex, MutexGuard};

use auditrelay_plugin_api::envelope::{AuditEventEnvelope, Limits, ValidationErrors};
use tokio::sync::Notify;

/// Bookkeeping bytes charged per record on top of its JSON.
const RECORD_OVERHEAD: usize = 160;

/// One accepted event: routing fields plus canonical JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Position in the log (starts at 0, never reused).
    pub seq: u64,
    /// The envelope's `id`.
    pub id: String,
    /// The envelope's `source`.
    pub source: String,
    /// The envelope's `type`.
    pub event_type: String,
    /// The envelope's `time`, nanoseconds since the epoch.
    pub time_unix_nanos: i64,
    /// The envelope's `tenant`.
    pub tenant: Option<String>,
    /// Canonical JSON of the envelope.
    pub json: Vec<u8>,
}

impl Record {
    /// Validates an envelope and turns it into a record (its `seq` is set
    /// on append). The envelope is encoded once, canonically.
    pub fn from_envelope(event: AuditEventEnvelope, limits: &Limits) -> Result<Self, ValidationErrors> {
        let json = event.to_validated_json(limits)?;
        Ok(Self::with_json(event, json))
    }

    /// A record of an envelope the caller already validated against the
    /// relay's limits (e.g. parsed with `AuditEventEnvelope::from_json_with`).
    pub fn from_validated(event: AuditEventEnvelope) -> Self {
        let json = event.to_canonical_json();
        Self::with_json(event, json)
    }

    fn with_json(event: AuditEventEnvelope, json: Vec<u8>) -> Self {
        let time_unix_nanos = event.time_unix_nanos();
        let AuditEventEnvelope {
            id,
            source,
            event_type,
            tenant,
            ..
        } = event;
        Record {
            seq: 0,
            id,
            source,
            event_type,
            time_unix_nanos,
            tenant,
            json,
        }
    }

    /// Memory charged against the spool's capacity.
    pub fn footprint(&self) -> usize {
        RECORD_OVERHEAD
            + self.json.len()
            + self.id.len()
            + self.source.len()
            + self.event_type.len()
            + self.tenant.as_ref().map_or(0, String::len)
    }
}

/// Why the spool refused records.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpoolError {
    /// The buffer is full: some destination is behind.
    #[error(
        "the relay's buffer is full ({buffered} of {capacity} bytes): a destination is not keeping up; retry later or raise relay.max_buffered_bytes"
    )]
    Full {
        /// Bytes held now.
        buffered: usize,
        /// The configured capacity.
        capacity: usize,
    },
    /// The relay is shutting down.
    #[error("the relay is shutting down and accepts no more events")]
    Closed,
}

/// A reader's handle: one per plugin instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConsumerId(usize);

/// Counters describing the spool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SpoolStats {
    /// Sequence number the next record will get.
    pub next_seq: u64,
    /// Records held.
    pub records: usize,
    /// Bytes charged.
    pub bytes: usize,
}

/// The log; see the [module docs](self).
pub struct Spool {
    state: Mutex<State>,
    appended: Notify,
    capacity: usize,
}

struct State {
    records: VecDeque<Arc<Record>>,
    next_seq: u64,
    bytes: usize,
    /// Next sequence number each consumer needs; `None` once removed.
    cursors: Vec<Option<u64>>,
    closed: bool,
}

impl State {
    fn first_seq(&self) -> u64 {
        self.next_seq - self.records.len() as u64
    }

    /// Drops records every cursor has passed.
    fn trim(&mut self) {
        let keep_from = self.cursors.iter().flatten().copied().min().unwrap_or(self.next_seq);
        while self.records.front().is_some_and(|r| r.seq < keep_from) {
            let record = self.records.pop_front().expect("front exists");
            self.bytes -= record.footprint();
        }
    }
}

impl Spool {
    /// An empty spool holding at most `capacity` bytes.
    pub fn new(capacity: usize) -> Self {
        Spool {
            state: Mutex::new(State {
                records: VecDeque::new(),
                next_seq: 0,
                bytes: 0,
                cursors: Vec::new(),
                closed: false,
            }),
            appended: Notify::new(),
            capacity,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves counters consistent (every
        // update is a single assignment), so poisoning is ignored.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a reader whose cursor starts after the last appended record.
    pub fn add_consumer(&self) -> ConsumerId {
        let mut state = self.lock();
        let cursor = state.next_seq;
        state.cursors.push(Some(cursor));
        ConsumerId(state.cursors.len() - 1)
    }

    /// Removes a reader; records only it still needed are dropped.
    pub fn remove_consumer(&self, consumer: ConsumerId) {
        let mut state = self.lock();
        state.cursors[consumer.0] = None;
        state.trim();
    }

    /// Appends records atomically (all or none) and assigns their sequence
    /// numbers. `records` carry placeholder `seq` values.
    pub fn append(&self, mut records: Vec<Record>) -> Result<Range<u64>, SpoolError> {
        let size: usize = records.iter().map(Record::footprint).sum();
        let range = {
            let mut state = self.lock();
            if state.closed {
                return Err(SpoolError::Closed);
            }
            if state.bytes + size > self.capacity {
                return Err(SpoolError::Full {
                    buffered: state.bytes,
                    capacity: self.capacity,
                });
            }
            let start = state.next_seq;
            for record in &mut records {
                record.seq = state.next_seq;
                state.next_seq += 1;
            }
            state.bytes += size;
            state.records.extend(records.into_iter().map(Arc::new));
            start..state.next_seq
        };
        self.appended.notify_waiters();
        Ok(range)
    }

    /// Up to `max_events` records from `consumer`'s cursor, stopping before
    /// `max_bytes` of JSON (but always at least one record).
    pub fn read(&self, consumer: ConsumerId, max_events: usize, max_bytes: usize) -> Vec<Arc<Record>> {
        let state = self.lock();
        let Some(cursor) = state.cursors[consumer.0] else {
            return Vec::new();
        };
        let skip = (cursor - state.first_seq()) as usize;
        let mut bytes = 0;
        let mut out = Vec::new();
        for record in state.records.iter().skip(skip).take(max_events) {
            if !out.is_empty() && bytes + record.json.len() > max_bytes {
                break;
            }
            bytes += record.json.len();
            out.push(record.clone());
        }
        out
    }

    /// Moves `consumer`'s cursor to `next_seq` (the record after the last
    /// one handled) and drops records nobody needs any more.
    pub fn commit(&self, consumer: ConsumerId, next_seq: u64) {
        let mut state = self.lock();
        let cursor = &mut state.cursors[consumer.0];
        if let Some(cursor) = cursor
            && next_seq > *cursor
        {
            *cursor = next_seq;
        }
        state.trim();
    }

    /// The sequence number `consumer` reads next.
    pub fn cursor(&self, consumer: ConsumerId) -> u64 {
        let state = self.lock();
        state.cursors[consumer.0].unwrap_or(state.next_seq)
    }

    /// Records and JSON bytes `consumer` has not handled yet.
    pub fn lag(&self, consumer: ConsumerId) -> (u64, u64) {
        let state = self.lock();
        let Some(cursor) = state.cursors[consumer.0] else {
            return (0, 0);
        };
        let skip = (cursor - state.first_seq()) as usize;
        let bytes = state.records.iter().skip(skip).map(|r| r.json.len() as u64).sum();
        (state.next_seq - cursor, bytes)
    }

    /// The sequence number the next appended record will get.
    pub fn next_seq(&self) -> u64 {
        self.lock().next_seq
    }

    /// Current counters.
    pub fn stats(&self) -> SpoolStats {
        let state = self.lock();
        SpoolStats {
            next_seq: state.next_seq,
            records: state.records.len(),
            bytes: state.bytes,
        }
    }

    /// Waits until a record with `seq >= next_seq` exists or the spool closes.
    pub async fn wait_for(&self, next_seq: u64) {
        loop {
            let notified = self.appended.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            {
                let state = self.lock();
                if state.next_seq > next_seq || state.closed {
                    return;
                }
            }
            notified.await;
        }
    }

    /// Refuses further appends and wakes every waiting reader.
    pub fn close(&self) {
        self.lock().closed = true;
        self.appended.notify_waiters();
    }

    /// Whether [`close`](Self::close) was called.
    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(json: &str) -> Record {
        Record {
            seq: 0,
            id: "id".into(),
            source: "src".into(),
            event_type: "t".into(),
            time_unix_nanos: 0,
            tenant: None,
            json: json.as_bytes().to_vec(),
        }
    }

    fn records(n: usize) -> Vec<Record> {
        (0..n).map(|i| record(&format!("{{\"n\":{i}}}"))).collect()
    }

    #[test]
    fn each_consumer_reads_everything_at_its_own_pace() {
        let spool = Spool::new(1 << 20);
        let fast = spool.add_consumer();
        let slow = spool.add_consumer();
        assert_eq!(spool.append(records(10)).unwrap(), 0..10);

        let batch = spool.read(fast, 4, usize::MAX);
        assert_eq!(batch.iter().map(|r| r.seq).collect::<Vec<_>>(), [0, 1, 2, 3]);
        spool.commit(fast, 4);
        assert_eq!(spool.read(fast, 100, usize::MAX).len(), 6);
        spool.commit(fast, 10);

        // The slow consumer still sees all ten: nothing was dropped for it.
        assert_eq!(spool.read(slow, 100, usize::MAX).len(), 10);
        assert_eq!(spool.stats().records, 10);
        assert_eq!(spool.lag(slow).0, 10);
        spool.commit(slow, 10);
        assert_eq!(spool.stats().records, 0);
        assert_eq!(spool.stats().bytes, 0);
    }

    #[test]
    fn full_spool_refuses_whole_batches() {
        let one = record("{}").footprint();
        let spool = Spool::new(one * 3);
        let consumer = spool.add_consumer();
        spool.append(records(2)).unwrap();
        let err = spool.append(records(2)).unwrap_err();
        assert!(matches!(err, SpoolError::Full { .. }));
        assert_eq!(spool.stats().records, 2, "nothing of the refused batch was kept");
        spool.commit(consumer, 2);
        spool.append(records(2)).unwrap();
    }

    #[test]
    fn reads_respect_byte_budget_but_always_return_one() {
        let spool = Spool::new(1 << 20);
        let consumer = spool.add_consumer();
        spool.append(records(5)).unwrap();
        assert_eq!(spool.read(consumer, 10, 1).len(), 1);
        assert_eq!(spool.read(consumer, 10, 16).len(), 2);
    }

    #[test]
    fn removed_consumers_do_not_pin_records() {
        let spool = Spool::new(1 << 20);
        let a = spool.add_consumer();
        let b = spool.add_consumer();
        spool.append(records(3)).unwrap();
        spool.commit(a, 3);
        assert_eq!(spool.stats().records, 3);
        spool.remove_consumer(b);
        assert_eq!(spool.stats().records, 0);
    }

    #[tokio::test]
    async fn waiters_wake_on_append_and_close() {
        let spool = Arc::new(Spool::new(1 << 20));
        spool.add_consumer();
        let waiter = tokio::spawn({
            let spool = spool.clone();
            async move { spool.wait_for(0).await }
        });
        tokio::task::yield_now().await;
        spool.append(records(1)).unwrap();
        waiter.await.unwrap();

        let waiter = tokio::spawn({
            let spool = spool.clone();
            async move { spool.wait_for(5).await }
        });
        spool.close();
        waiter.await.unwrap();
        assert_eq!(spool.append(records(1)), Err(SpoolError::Closed));
    }
}
