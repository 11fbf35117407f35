//! The delivery loop of one plugin instance.
//!
//! A worker reads the spool through its instance's cursor, forms batches
//! (`max_events`, `max_bytes`, `max_wait`), skips events its filter
//! excludes, and calls the plugin until each batch is acknowledged or set
//! aside as dead letters. Only then does the cursor move. Failures are
//! retried with backoff, forever by default; repeated failures open the
//! circuit. Batches go out strictly in spool order: a failing batch is
//! retried before anything after it is sent. Dead letters the operator
//! asks to replay are delivered between batches. How one batch is
//! delivered (retries, circuit, dead letters, poison isolation) is in
//! [`deliver`].

mod deliver;
mod poison;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::backoff::Backoff;
use super::dead_letter::DeadLetters;
use super::filter::EventFilter;
use super::telemetry::Telemetry;
use crate::config::BatchSettings;
use crate::runtime::{CallError, Exporter};
use crate::spool::{Batch, ConsumerId, Reader, Spool};

/// How long to wait before reading again after the spool failed to read.
const READ_RETRY: Duration = Duration::from_secs(1);
/// Dead letters replayed per batch.
const REPLAY_BATCH: usize = 500;

/// How a batch ended.
enum Handled {
    /// Delivered or set aside: move on.
    Done,
    /// The relay stopped waiting (hard shutdown); the batch stays.
    Aborted,
}

/// What a worker needs besides its plugin instance.
pub struct WorkerParts {
    /// The instance name.
    pub instance: Arc<str>,
    /// The spool, this instance's cursor and its reader.
    pub spool: Arc<Spool>,
    /// The cursor.
    pub consumer: ConsumerId,
    /// Reads from the cursor.
    pub reader: Reader,
    /// Batch limits.
    pub batch: BatchSettings,
    /// Waits between retries.
    pub backoff: Backoff,
    /// Which events to deliver.
    pub filter: EventFilter,
    /// Where refused events go.
    pub dead_letters: Arc<DeadLetters>,
    /// Signalled when the operator asks to replay dead letters.
    pub replay: Arc<Notify>,
    /// This instance's metrics, status and circuit breaker.
    pub telemetry: Telemetry,
    /// Consecutive crashes on one batch before it is split (0: never).
    pub isolate_after: u32,
    /// Cancelled when the relay stops waiting for deliveries.
    pub abort: CancellationToken,
}

/// One instance's delivery loop: reads its cursor, batches, delivers with
/// retries, sets refused events aside, and only then moves the cursor.
pub struct Worker<E: Exporter> {
    exporter: E,
    parts: WorkerParts,
    /// Delivered since the last flush.
    dirty: bool,
    /// A replay was asked for (or left unfinished by a previous run).
    replay_due: bool,
}

impl<E: Exporter> Worker<E> {
    /// A worker driving `exporter`.
    pub fn new(exporter: E, parts: WorkerParts) -> Self {
        let replay_due = parts.dead_letters.replay_pending();
        Worker {
            exporter,
            parts,
            dirty: false,
            replay_due,
        }
    }

    /// Delivers until the spool is closed and drained, or until aborted.
    pub async fn run(mut self) {
        let mut aborted = false;
        loop {
            if self.replay_due && matches!(self.replay().await, Handled::Aborted) {
                aborted = true;
                break;
            }
            let Some(batch) = self.next_batch().await else {
                break;
            };
            let end = batch.end_seq();
            let selected = if self.parts.filter.is_open() {
                batch
            } else {
                batch.filtered(|event| self.parts.filter.matches(event))
            };
            if !selected.is_empty() {
                match self.deliver(&selected).await {
                    Handled::Done => self.dirty = true,
                    Handled::Aborted => {
                        aborted = true;
                        break;
                    }
                }
            }
            let p = &self.parts;
            p.spool.commit(p.consumer, end);
            p.telemetry.lag(p.spool.lag(p.consumer).0);
        }
        if !aborted && !self.parts.abort.is_cancelled() {
            self.flush().await;
            // Within relay.shutdown_timeout whatever the plugin does: a
            // shutdown() that loops is abandoned with the instance.
            let abort = self.parts.abort.clone();
            tokio::select! {
                () = self.exporter.shutdown() => {}
                () = abort.cancelled() => {
                    tracing::warn!(plugin = &*self.parts.instance, "the plugin did not shut down within relay.shutdown_timeout; abandoned");
                }
            }
        }
        self.parts.telemetry.stopped();
    }

    /// The next batch, or `None` once the spool is closed and drained (or
    /// the worker is aborted). A batch that is not full is kept and topped
    /// up until it is full or `max_wait` has passed since it started.
    async fn next_batch(&mut self) -> Option<Batch> {
        let max_events = self.parts.batch.max_events;
        let max_bytes = usize::try_from(self.parts.batch.max_bytes.as_u64()).unwrap_or(usize::MAX);
        let max_wait = self.parts.batch.max_wait;
        let mut batch = Batch::empty(self.parts.reader.next_seq());
        let mut json = 0;
        let mut started: Option<Instant> = None;
        loop {
            let read = self.parts.reader.read(
                max_events - batch.len(),
                max_bytes.saturating_sub(json),
                batch.is_empty(),
            );
            match read {
                Ok(more) => {
                    json += more.json_bytes();
                    batch.extend(more);
                }
                Err(error) => {
                    tracing::error!(plugin = &*self.parts.instance, %error, "cannot read the spool; will try again");
                    tokio::select! {
                        () = tokio::time::sleep(READ_RETRY) => continue,
                        () = self.parts.abort.cancelled() => return None,
                    }
                }
            }
            let spool = self.parts.spool.clone();
            let next = self.parts.reader.next_seq();
            let closed = spool.is_closed();
            if closed {
                self.parts.telemetry.draining();
            }
            let drained = closed && next >= spool.stats().next_seq;
            if batch.is_empty() {
                // The reader may have gone past records no segment holds
                // (lost, and reported at start): the cursor follows it.
                if next > spool.cursor(self.parts.consumer) {
                    spool.commit(self.parts.consumer, next);
                }
                if drained {
                    return None;
                }
                if self.dirty {
                    self.flush().await;
                }
                tokio::select! {
                    () = spool.wait_readable(self.parts.consumer, next, u64::MAX) => {}
                    () = self.parts.replay.notified() => {
                        self.replay_due = true;
                        return Some(batch);
                    }
                    () = self.parts.abort.cancelled() => return None,
                }
                continue;
            }
            let full =
                batch.len() >= max_events || json >= max_bytes || !self.parts.reader.caught_up();
            if full || closed || max_wait.is_zero() {
                return Some(batch);
            }
            let started = *started.get_or_insert_with(Instant::now);
            let remaining = (started + max_wait).saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Some(batch);
            }
            // Sleep until the batch could be full or its time is up, not
            // at every event: waking costs the emitter a syscall.
            let full_at = next + (max_events - batch.len()) as u64 - 1;
            let more_json = (max_bytes - json) as u64;
            tokio::select! {
                () = spool.wait_readable(self.parts.consumer, full_at, more_json) => {}
                () = tokio::time::sleep(remaining) => {}
                () = self.parts.abort.cancelled() => return None,
            }
        }
    }

    /// Delivers the dead letters the operator asked to replay; those
    /// refused again go back to the dead letters.
    async fn replay(&mut self) -> Handled {
        self.replay_due = false;
        let replay = match self.parts.dead_letters.begin_replay() {
            Ok(Some(replay)) => replay,
            Ok(None) => return Handled::Done,
            Err(error) => {
                tracing::error!(plugin = &*self.parts.instance, %error, "cannot start replaying dead letters");
                return Handled::Done;
            }
        };
        tracing::info!(
            plugin = &*self.parts.instance,
            events = replay.len(),
            skipped = replay.unreadable,
            "replaying dead letters"
        );
        for chunk in replay.events.chunks(REPLAY_BATCH) {
            let batch = Batch::from_seqs(chunk);
            if let Handled::Aborted = self.deliver(&batch).await {
                return Handled::Aborted;
            }
        }
        if let Err(error) = self.parts.dead_letters.end_replay(&replay) {
            tracing::warn!(plugin = &*self.parts.instance, %error, "replayed dead letters could not be cleared; they may be replayed again");
        }
        self.dirty = true;
        Handled::Done
    }

    async fn flush(&mut self) {
        self.dirty = false;
        let outcome = tokio::select! {
            outcome = self.exporter.flush() => outcome,
            () = self.parts.abort.cancelled() => return,
        };
        if let Err(error) = outcome {
            if let CallError::Fault(fault) = &error {
                self.parts.telemetry.metrics().trap(fault.kind.label());
            }
            tracing::warn!(plugin = &*self.parts.instance, "flush failed: {error}");
        }
    }
}
