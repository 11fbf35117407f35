//! The delivery loop of one plugin instance.
//!
//! A worker reads the spool through its instance's cursor, forms batches
//! (`max_events`, `max_bytes`, `max_wait`), skips events its filter
//! excludes, and calls the plugin until each batch is acknowledged or set
//! aside as dead letters. Only then does the cursor move. Failures are
//! retried with backoff, forever by default; repeated failures open the
//! circuit. Batches go out strictly in spool order: a failing batch is
//! retried before anything after it is sent. Dead letters the operator
//! asks to replay are delivered between batches.

use std::sync::Arc;
use std::time::{Duration, Instant};

use auditrelay_plugin_api::Event;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::backoff::Backoff;
use super::circuit::{Circuit, CircuitState};
use super::dead_letter::DeadLetters;
use super::filter::EventFilter;
use super::status::{Health, RunState};
use crate::config::BatchSettings;
use crate::metrics::PluginMetrics;
use crate::runtime::{CallError, Delivery, Exporter, Fault, RejectedEvent};
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
    /// The circuit breaker.
    pub circuit: Circuit,
    /// Which events to deliver.
    pub filter: EventFilter,
    /// Where refused events go.
    pub dead_letters: Arc<DeadLetters>,
    /// Signalled when the operator asks to replay dead letters.
    pub replay: Arc<Notify>,
    /// This instance's metrics.
    pub metrics: PluginMetrics,
    /// This instance's status.
    pub health: Health,
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
            p.metrics.lag(p.spool.lag(p.consumer).0);
        }
        if !aborted && !self.parts.abort.is_cancelled() {
            self.flush().await;
            self.exporter.shutdown().await;
        }
        self.parts.health.lock().state = RunState::Stopped;
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
                self.parts.health.lock().state = RunState::Draining;
            }
            let drained = closed && next >= spool.stats().next_seq;
            if batch.is_empty() {
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

    /// Calls the plugin until `batch` is handled.
    ///
    /// A batch the plugin keeps crashing on (`isolate_after` times) is split
    /// in halves, delivered in order, down to the single event that crashes
    /// it, which goes to the dead letters: one poison event must not stop an
    /// instance forever. An event is condemned only on evidence that the
    /// plugin works otherwise (another part of the batch went through);
    /// without it, the suspect is tried once more after the next part, and
    /// if that crashes too the plugin is taken to be broken as a whole and
    /// the suspect is retried until it passes, as any batch would be.
    async fn deliver(&mut self, batch: &Batch) -> Handled {
        // Parts still to deliver; the last is next.
        let mut pending = vec![batch.clone()];
        let mut evidence = false;
        let mut deferred = false;
        let mut forever: Option<u64> = None;
        while let Some(part) = pending.pop() {
            // The whole batch and a single suspect must crash
            // `isolate_after` times; a half crashing once is split again.
            let confirm = if forever == Some(part.seq(0)) {
                0
            } else if part.len() == 1 || part.len() == batch.len() {
                self.parts.isolate_after
            } else {
                1
            };
            match self.deliver_once(&part, confirm).await {
                Ok(Handled::Done) => evidence = true,
                Ok(Handled::Aborted) => return Handled::Aborted,
                Err(fault) if part.len() > 1 => {
                    tracing::warn!(
                        plugin = &*self.parts.instance,
                        events = part.len(),
                        "the plugin keeps crashing on this batch ({fault}); delivering its halves separately to find the event that crashes it"
                    );
                    let (first, second) = part.split_at(part.len() / 2);
                    pending.push(second);
                    pending.push(first);
                }
                Err(_) if !evidence && !deferred && !pending.is_empty() => {
                    // Is it this event, or the plugin? Try the next part first.
                    deferred = true;
                    let next = pending.pop().expect("not empty");
                    pending.push(part);
                    pending.push(next);
                }
                Err(fault) if !evidence => {
                    tracing::warn!(
                        plugin = &*self.parts.instance,
                        "the plugin crashes on every part of this batch ({fault}); retrying it until the plugin recovers"
                    );
                    forever = Some(part.seq(0));
                    pending.push(part);
                }
                Err(fault) => {
                    let reason = format!(
                        "the plugin crashed on this event {} times in a row while it delivered the rest of its batch: {fault}",
                        self.parts.isolate_after
                    );
                    tracing::error!(
                        plugin = &*self.parts.instance,
                        seq = part.seq(0),
                        "{reason}; setting it aside as a dead letter"
                    );
                    let (seq, event) = (part.seq(0), part.event(0));
                    if self
                        .put_dead_letters(&[(seq, event, reason.as_str())])
                        .is_err()
                    {
                        // Cannot set it aside: keep trying to deliver it.
                        forever = Some(seq);
                        pending.push(part);
                        continue;
                    }
                    self.succeeded(0, 1);
                }
            }
        }
        Handled::Done
    }

    /// Calls the plugin until `batch` is handled, or until it crashed on it
    /// `confirm` times in a row (0: never give up): then the last crash.
    async fn deliver_once(&mut self, batch: &Batch, confirm: u32) -> Result<Handled, Fault> {
        let mut crashes = 0;
        loop {
            if let Some(aborted) = self.wait_for_circuit().await {
                return Ok(aborted);
            }
            let started = Instant::now();
            let outcome = tokio::select! {
                outcome = self.exporter.deliver(batch) => outcome,
                () = self.parts.abort.cancelled() => return Ok(Handled::Aborted),
            };
            self.parts
                .metrics
                .batch_duration(started.elapsed().as_secs_f64());
            let (message, retry_after) = match outcome {
                Ok(Delivery::Accepted) => {
                    self.succeeded(batch.len(), 0);
                    return Ok(Handled::Done);
                }
                Ok(Delivery::PartiallyRejected(rejected)) => {
                    match self.set_aside_rejected(batch, &rejected) {
                        Ok(set_aside) => {
                            self.succeeded(batch.len() - set_aside, set_aside);
                            return Ok(Handled::Done);
                        }
                        Err(message) => (message, None),
                    }
                }
                Err(CallError::Permanent(reason)) => {
                    self.parts.metrics.failure("permanent");
                    tracing::warn!(
                        plugin = &*self.parts.instance,
                        events = batch.len(),
                        reason,
                        "the plugin refused a batch for good; setting it aside as dead letters"
                    );
                    let events: Vec<(u64, Event<'_>, &str)> = batch
                        .events()
                        .map(|(seq, event)| (seq, event, reason.as_str()))
                        .collect();
                    match self.put_dead_letters(&events) {
                        Ok(()) => {
                            self.succeeded(0, batch.len());
                            return Ok(Handled::Done);
                        }
                        Err(message) => (message, None),
                    }
                }
                Err(CallError::Retryable {
                    message,
                    retry_after,
                }) => {
                    self.parts.metrics.failure("retryable");
                    crashes = 0;
                    (message, retry_after)
                }
                Err(CallError::Fault(fault)) => {
                    self.parts.metrics.failure("fault");
                    self.parts.metrics.trap(fault.kind.label());
                    tracing::error!(
                        plugin = &*self.parts.instance,
                        cause = fault.kind.label(),
                        backtrace = fault.backtrace.as_deref().unwrap_or("(none)"),
                        events = batch.len(),
                        "plugin crashed: {}; replacing the instance and retrying the batch",
                        fault.message
                    );
                    crashes += 1;
                    if confirm > 0 && crashes >= confirm {
                        self.record_failure(&fault.to_string());
                        return Err(fault);
                    }
                    (fault.to_string(), None)
                }
            };
            if let Some(aborted) = self.back_off(&message, retry_after).await {
                return Ok(aborted);
            }
        }
    }

    /// Waits while the circuit is open; `Some` if aborted meanwhile.
    async fn wait_for_circuit(&mut self) -> Option<Handled> {
        loop {
            let state = self.parts.circuit.state(Instant::now());
            self.parts.metrics.circuit_state(state.gauge());
            self.parts.health.lock().circuit = state.name();
            let CircuitState::Open { until } = state else {
                return None;
            };
            tokio::select! {
                () = tokio::time::sleep_until(until.into()) => {}
                () = self.parts.abort.cancelled() => return Some(Handled::Aborted),
            }
        }
    }

    /// Records a failure and waits before the next attempt; `Some` if
    /// aborted meanwhile.
    async fn back_off(&mut self, message: &str, retry_after: Option<Duration>) -> Option<Handled> {
        let opened = self.record_failure(message);
        let p = &mut self.parts;
        let failures = p.circuit.failures();
        p.metrics.retry();
        if opened {
            return None;
        }
        let delay = p.backoff.delay(failures, retry_after);
        tracing::warn!(
            plugin = &*p.instance,
            failures,
            retry_in = %humantime::format_duration(delay),
            "delivery failed, will retry: {message}"
        );
        tokio::select! {
            () = tokio::time::sleep(delay) => None,
            () = p.abort.cancelled() => Some(Handled::Aborted),
        }
    }

    /// Counts a failed call in the circuit and the status; whether the
    /// circuit opened.
    fn record_failure(&mut self, message: &str) -> bool {
        let p = &mut self.parts;
        let opened = p.circuit.failed(Instant::now());
        let failures = p.circuit.failures();
        {
            let mut health = p.health.lock();
            health.consecutive_failures = failures;
            health.last_error = Some(message.to_owned());
        }
        if opened {
            let state = p.circuit.state(Instant::now());
            p.metrics.circuit_state(state.gauge());
            p.health.lock().circuit = state.name();
            let pause = match state {
                CircuitState::Open { until } => until.saturating_duration_since(Instant::now()),
                _ => Duration::ZERO,
            };
            tracing::warn!(
                plugin = &*p.instance,
                failures,
                pause = %humantime::format_duration(pause),
                "circuit opened: pausing deliveries to this plugin after repeated failures (last: {message})"
            );
        }
        opened
    }

    fn succeeded(&mut self, delivered: usize, dead_lettered: usize) {
        let p = &mut self.parts;
        let failures = p.circuit.failures();
        if p.circuit.succeeded() || failures > 0 {
            tracing::info!(
                plugin = &*p.instance,
                failures,
                "plugin recovered; delivering again"
            );
        }
        p.metrics.circuit_state(CircuitState::Closed.gauge());
        p.metrics.delivered(delivered as u64);
        let mut health = p.health.lock();
        health.circuit = "closed";
        health.consecutive_failures = 0;
        health.delivered += delivered as u64;
        health.dead_letters += dead_lettered as u64;
        health.last_error = None;
        if delivered > 0 {
            health.last_success = Some(jiff::Timestamp::now());
        }
    }

    /// Sets aside the events a partly accepted batch refused; returns how
    /// many, or why they could not be stored.
    fn set_aside_rejected(
        &mut self,
        batch: &Batch,
        rejected: &[RejectedEvent],
    ) -> Result<usize, String> {
        let mut seen = vec![false; batch.len()];
        let mut events = Vec::with_capacity(rejected.len());
        for r in rejected {
            match seen.get_mut(r.index as usize) {
                Some(flag) if !*flag => {
                    *flag = true;
                    let i = r.index as usize;
                    events.push((batch.seq(i), batch.event(i), r.reason.as_str()));
                }
                _ => tracing::warn!(
                    plugin = &*self.parts.instance,
                    index = r.index,
                    batch = batch.len(),
                    "plugin rejected an event index outside its batch (or twice); ignored"
                ),
            }
        }
        if let Some((_, _, first_reason)) = events.first() {
            tracing::warn!(
                plugin = &*self.parts.instance,
                events = events.len(),
                first_reason,
                "the plugin refused some events for good; setting them aside as dead letters"
            );
        }
        self.put_dead_letters(&events)?;
        Ok(events.len())
    }

    fn put_dead_letters(&self, events: &[(u64, Event<'_>, &str)]) -> Result<(), String> {
        self.parts.dead_letters.put(events).map_err(|error| {
            let message = format!(
                "cannot store dead letters in {}: {error}; the batch will be retried",
                self.parts.dead_letters.path().display()
            );
            tracing::error!(plugin = &*self.parts.instance, "{message}");
            message
        })?;
        self.parts.metrics.dead_lettered(events.len() as u64);
        Ok(())
    }

    async fn flush(&mut self) {
        self.dirty = false;
        let outcome = tokio::select! {
            outcome = self.exporter.flush() => outcome,
            () = self.parts.abort.cancelled() => return,
        };
        if let Err(error) = outcome {
            if let CallError::Fault(fault) = &error {
                self.parts.metrics.trap(fault.kind.label());
            }
            tracing::warn!(plugin = &*self.parts.instance, "flush failed: {error}");
        }
    }
}
