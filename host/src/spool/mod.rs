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

use auditrelay_plugin_api::Event;
use auditrelay_plugin_api::batch;
use auditrelay_plugin_api::envelope::{AuditEventEnvelope, Limits, ValidationErrors};
use tokio::sync::Notify;

/// Bookkeeping bytes charged per record on top of its encoding.
const RECORD_OVERHEAD: usize = 64;

/// One accepted event, kept in the encoding plugins receive it in
/// ([`auditrelay_plugin_api::batch`]), so handing it over is one copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Position in the log (starts at 0, never reused).
    pub seq: u64,
    /// The event, encoded by [`batch::encode`] (only ever built here, so
    /// it always decodes).
    encoded: Vec<u8>,
}

impl Record {
    /// Validates an envelope and turns it into a record (its `seq` is set
    /// on append). The envelope is encoded once, canonically.
    pub fn from_envelope(
        event: AuditEventEnvelope,
        limits: &Limits,
    ) -> Result<Self, ValidationErrors> {
        let json = event.to_validated_json(limits)?;
        Ok(Self::with_json(&event, &json))
    }

    /// A record of an envelope the caller already validated against the
    /// relay's limits (e.g. parsed with `AuditEventEnvelope::from_json_with`).
    pub fn from_validated(event: AuditEventEnvelope) -> Self {
        let json = event.to_canonical_json();
        Self::with_json(&event, &json)
    }

    /// A record of an event as a plugin would see it.
    pub fn from_event(event: Event<'_>) -> Self {
        let mut encoded = Vec::new();
        batch::encode(event, &mut encoded);
        Record { seq: 0, encoded }
    }

    fn with_json(event: &AuditEventEnvelope, json: &[u8]) -> Self {
        Self::from_event(Event {
            id: &event.id,
            source: &event.source,
            event_type: &event.event_type,
            time_unix_nanos: event.time_unix_nanos(),
            tenant: event.tenant.as_deref(),
            envelope: json,
        })
    }

    /// The record as a plugin sees it (borrowed).
    pub fn as_event(&self) -> Event<'_> {
        batch::decode(&self.encoded)
            .expect("a record's encoding is made by Record::from_event")
            .0
    }

    /// The canonical envelope JSON.
    pub fn json(&self) -> &[u8] {
        self.as_event().envelope
    }

    /// The encoded event, ready to go into a batch.
    pub fn encoded(&self) -> &[u8] {
        &self.encoded
    }

    /// Memory charged against the spool's capacity.
    pub fn footprint(&self) -> usize {
        RECORD_OVERHEAD + self.encoded.len()
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
    capacity: usize,
}

struct State {
    records: VecDeque<Arc<Record>>,
    next_seq: u64,
    bytes: usize,
    /// JSON bytes appended since the start, for byte-based wakeups.
    appended_json: u64,
    /// Per consumer: next sequence number it needs (`None` once removed),
    /// its wakeup signal and what it waits for.
    consumers: Vec<Consumer>,
    closed: bool,
}

struct Consumer {
    cursor: Option<u64>,
    signal: Arc<Notify>,
    waiting: Option<Wakeup>,
}

/// What a waiting consumer needs before it is worth waking: a record at
/// `seq` or later, or `json_bytes` appended in total. Waking a consumer
/// per append would cost the emitter a syscall per event.
#[derive(Debug, Clone, Copy)]
struct Wakeup {
    seq: u64,
    json_bytes: u64,
}

impl Wakeup {
    fn due(&self, state: &State) -> bool {
        state.next_seq > self.seq || state.appended_json >= self.json_bytes || state.closed
    }
}

impl State {
    /// Signals every waiting consumer whose wakeup is due.
    fn wake_due(&mut self) {
        let state = &*self;
        let due: Vec<usize> = state
            .consumers
            .iter()
            .enumerate()
            .filter(|(_, c)| c.waiting.is_some_and(|w| w.due(state)))
            .map(|(i, _)| i)
            .collect();
        for i in due {
            let consumer = &mut self.consumers[i];
            consumer.waiting = None;
            consumer.signal.notify_one();
        }
    }

    fn first_seq(&self) -> u64 {
        self.next_seq - self.records.len() as u64
    }

    /// Drops records every cursor has passed.
    fn trim(&mut self) {
        let keep_from = self
            .consumers
            .iter()
            .filter_map(|c| c.cursor)
            .min()
            .unwrap_or(self.next_seq);
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
                appended_json: 0,
                consumers: Vec::new(),
                closed: false,
            }),
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
        state.consumers.push(Consumer {
            cursor: Some(cursor),
            signal: Arc::new(Notify::new()),
            waiting: None,
        });
        ConsumerId(state.consumers.len() - 1)
    }

    /// Removes a reader; records only it still needed are dropped.
    pub fn remove_consumer(&self, consumer: ConsumerId) {
        let mut state = self.lock();
        state.consumers[consumer.0].cursor = None;
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
                state.appended_json += record.json().len() as u64;
            }
            state.bytes += size;
            state.records.extend(records.into_iter().map(Arc::new));
            state.wake_due();
            start..state.next_seq
        };
        Ok(range)
    }

    /// Up to `max_events` records from `consumer`'s cursor, stopping before
    /// `max_bytes` of JSON (but always at least one record).
    pub fn read(
        &self,
        consumer: ConsumerId,
        max_events: usize,
        max_bytes: usize,
    ) -> Vec<Arc<Record>> {
        let state = self.lock();
        let Some(cursor) = state.consumers[consumer.0].cursor else {
            return Vec::new();
        };
        let skip = (cursor - state.first_seq()) as usize;
        let mut bytes = 0;
        let mut out = Vec::new();
        for record in state.records.iter().skip(skip).take(max_events) {
            if !out.is_empty() && bytes + record.json().len() > max_bytes {
                break;
            }
            bytes += record.json().len();
            out.push(record.clone());
        }
        out
    }

    /// Moves `consumer`'s cursor to `next_seq` (the record after the last
    /// one handled) and drops records nobody needs any more.
    pub fn commit(&self, consumer: ConsumerId, next_seq: u64) {
        let mut state = self.lock();
        let cursor = &mut state.consumers[consumer.0].cursor;
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
        state.consumers[consumer.0].cursor.unwrap_or(state.next_seq)
    }

    /// Records and JSON bytes `consumer` has not handled yet.
    pub fn lag(&self, consumer: ConsumerId) -> (u64, u64) {
        let state = self.lock();
        let Some(cursor) = state.consumers[consumer.0].cursor else {
            return (0, 0);
        };
        let skip = (cursor - state.first_seq()) as usize;
        let bytes = state
            .records
            .iter()
            .skip(skip)
            .map(|r| r.json().len() as u64)
            .sum();
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

    /// Waits until a record with `seq >= next_seq` exists, or `more_json`
    /// more bytes of JSON have been appended, or the spool closes. Appends
    /// that do not meet this wake nobody.
    pub async fn wait_for(&self, consumer: ConsumerId, next_seq: u64, more_json: u64) {
        let (signal, wakeup) = {
            let mut state = self.lock();
            let wakeup = Wakeup {
                seq: next_seq,
                json_bytes: state.appended_json.saturating_add(more_json),
            };
            if wakeup.due(&state) {
                return;
            }
            let slot = &mut state.consumers[consumer.0];
            slot.waiting = Some(wakeup);
            (slot.signal.clone(), wakeup)
        };
        loop {
            signal.notified().await;
            let mut state = self.lock();
            if wakeup.due(&state) {
                state.consumers[consumer.0].waiting = None;
                return;
            }
            // A stale signal from an earlier wait: keep waiting.
            state.consumers[consumer.0].waiting = Some(wakeup);
        }
    }

    /// Refuses further appends and wakes every waiting reader.
    pub fn close(&self) {
        let mut state = self.lock();
        state.closed = true;
        state.wake_due();
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
        Record::from_event(Event {
            id: "id",
            source: "src",
            event_type: "t",
            time_unix_nanos: 0,
            tenant: None,
            envelope: json.as_bytes(),
        })
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
        assert_eq!(
            batch.iter().map(|r| r.seq).collect::<Vec<_>>(),
            [0, 1, 2, 3]
        );
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
        assert_eq!(
            spool.stats().records,
            2,
            "nothing of the refused batch was kept"
        );
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
            async move { spool.wait_for(ConsumerId(0), 0, u64::MAX).await }
        });
        tokio::task::yield_now().await;
        spool.append(records(1)).unwrap();
        waiter.await.unwrap();

        let waiter = tokio::spawn({
            let spool = spool.clone();
            async move { spool.wait_for(ConsumerId(0), 5, u64::MAX).await }
        });
        spool.close();
        waiter.await.unwrap();
        assert_eq!(spool.append(records(1)), Err(SpoolError::Closed));
    }
}
