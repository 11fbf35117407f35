//! The delivery loop of one plugin instance.
//!
//! A worker reads the spool through its instance's cursor, forms batches
//! (`max_events`, `max_bytes`, `max_wait`), skips events its filter
//! excludes, and calls the plugin until each batch is acknowledged or set
//! aside as dead letters. Only then does the cursor move. Failures are
//! retried with backoff, forever by default; repeated failures open the
//! circuit. Batches go out strictly in spool order: a failing batch is
//! retried before anything after it is sent.

use std::sync::Arc;
use std::time::Instant;

use tokio_util::sync::CancellationToken;

use super::backoff::Backoff;
use super::circuit::{Circuit, CircuitState};
use super::dead_letter::DeadLetters;
use super::filter::EventFilter;
use super::status::{Health, RunState};
use crate::config::BatchSettings;
use crate::metrics::PluginMetrics;
use crate::runtime::{CallError, Delivery, Exporter, RejectedEvent};
use crate::spool::{ConsumerId, Record, Spool};

/// How a batch ended.
enum Handled {
    /// Delivered or set aside: move the cursor past it.
    Done,
    /// The relay stopped waiting (hard shutdown); the batch stays.
    Aborted,
}

/// What a worker needs besides its plugin instance.
pub struct WorkerParts {
    /// The instance name.
    pub instance: Arc<str>,
    /// The spool and this instance's cursor in it.
    pub spool: Arc<Spool>,
    /// The cursor.
    pub consumer: ConsumerId,
    /// Batch limits.
    pub batch: BatchSettings,
    /// Waits between retries.
    pub backoff: Backoff,
    /// The circuit breaker.
    pub circuit: Circuit,
    /// Which events to deliver.
    pub filter: EventFilter,
    /// Where refused events go.
    pub dead_letters: DeadLetters,
    /// This instance's metrics.
    pub metrics: PluginMetrics,
    /// This instance's status.
    pub health: Health,
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
}

impl<E: Exporter> Worker<E> {
    /// A worker driving `exporter`.
    pub fn new(exporter: E, parts: WorkerParts) -> Self {
        Worker {
            exporter,
            parts,
            dirty: false,
        }
    }

    /// Delivers until the spool is closed and drained, or until aborted.
    pub async fn run(mut self) {
        let mut aborted = false;
        while let Some(batch) = self.next_batch().await {
            let end = batch.last().map_or(0, |record| record.seq + 1);
            let selected: Vec<Arc<Record>> = if self.parts.filter.is_open() {
                batch
            } else {
                batch
                    .into_iter()
                    .filter(|r| self.parts.filter.matches(r))
                    .collect()
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
    /// the worker is aborted).
    async fn next_batch(&mut self) -> Option<Vec<Arc<Record>>> {
        let max_events = self.parts.batch.max_events;
        let max_bytes = usize::try_from(self.parts.batch.max_bytes.as_u64()).unwrap_or(usize::MAX);
        let max_wait = self.parts.batch.max_wait;
        let mut first_seen: Option<Instant> = None;
        loop {
            let spool = self.parts.spool.clone();
            let cursor = spool.cursor(self.parts.consumer);
            let records = spool.read(self.parts.consumer, max_events, max_bytes);
            let closed = spool.is_closed();
            if closed {
                self.parts.health.lock().state = RunState::Draining;
            }
            if records.is_empty() {
                if closed {
                    return None;
                }
                if self.dirty {
                    self.flush().await;
                }
                tokio::select! {
                    () = spool.wait_for(self.parts.consumer, cursor, u64::MAX) => continue,
                    () = self.parts.abort.cancelled() => return None,
                }
            }
            let next = cursor + records.len() as u64;
            let full = records.len() >= max_events || next < spool.next_seq();
            if full || closed || max_wait.is_zero() {
                return Some(records);
            }
            let first = *first_seen.get_or_insert_with(Instant::now);
            let remaining = (first + max_wait).saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Some(records);
            }
            // Sleep until the batch could be full or its time is up, not
            // at every append: waking here costs the emitter a syscall.
            let read_json: u64 = records.iter().map(|r| r.json().len() as u64).sum();
            let full_at = cursor + max_events as u64 - 1;
            let more_json = (max_bytes as u64).saturating_sub(read_json);
            tokio::select! {
                () = spool.wait_for(self.parts.consumer, full_at, more_json) => {}
                () = tokio::time::sleep(remaining) => {}
                () = self.parts.abort.cancelled() => return None,
            }
        }
    }

    /// Calls the plugin until `batch` is handled.
    async fn deliver(&mut self, batch: &[Arc<Record>]) -> Handled {
        loop {
            if let Some(aborted) = self.wait_for_circuit().await {
                return aborted;
            }
            let started = Instant::now();
            let outcome = tokio::select! {
                outcome = self.exporter.deliver(batch) => outcome,
                () = self.parts.abort.cancelled() => return Handled::Aborted,
            };
            self.parts
                .metrics
                .batch_duration(started.elapsed().as_secs_f64());
            let (message, retry_after) = match outcome {
                Ok(Delivery::Accepted) => {
                    self.succeeded(batch.len(), 0);
                    return Handled::Done;
                }
                Ok(Delivery::PartiallyRejected(rejected)) => {
                    match self.set_aside_rejected(batch, &rejected) {
                        Ok(set_aside) => {
                            self.succeeded(batch.len() - set_aside, set_aside);
                            return Handled::Done;
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
                    let events: Vec<(&Record, &str)> = batch
                        .iter()
                        .map(|r| (r.as_ref(), reason.as_str()))
                        .collect();
                    match self.put_dead_letters(&events) {
                        Ok(()) => {
                            self.succeeded(0, batch.len());
                            return Handled::Done;
                        }
                        Err(message) => (message, None),
                    }
                }
                Err(CallError::Retryable {
                    message,
                    retry_after,
                }) => {
                    self.parts.metrics.failure("retryable");
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
                    (fault.to_string(), None)
                }
            };
            if let Some(aborted) = self.back_off(&message, retry_after).await {
                return aborted;
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
    async fn back_off(
        &mut self,
        message: &str,
        retry_after: Option<std::time::Duration>,
    ) -> Option<Handled> {
        let p = &mut self.parts;
        let opened = p.circuit.failed(Instant::now());
        let failures = p.circuit.failures();
        {
            let mut health = p.health.lock();
            health.consecutive_failures = failures;
            health.last_error = Some(message.to_owned());
        }
        p.metrics.retry();
        if opened {
            p.metrics.circuit_state(
                CircuitState::Open {
                    until: Instant::now(),
                }
                .gauge(),
            );
            p.health.lock().circuit = "open";
            tracing::warn!(
                plugin = &*p.instance,
                failures,
                pause = %humantime::format_duration(p.circuit_pause()),
                "circuit opened: pausing deliveries to this plugin after repeated failures (last: {message})"
            );
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
        batch: &[Arc<Record>],
        rejected: &[RejectedEvent],
    ) -> Result<usize, String> {
        let mut seen = vec![false; batch.len()];
        let mut events = Vec::with_capacity(rejected.len());
        for r in rejected {
            match seen.get_mut(r.index as usize) {
                Some(flag) if !*flag => {
                    *flag = true;
                    events.push((batch[r.index as usize].as_ref(), r.reason.as_str()));
                }
                _ => tracing::warn!(
                    plugin = &*self.parts.instance,
                    index = r.index,
                    batch = batch.len(),
                    "plugin rejected an event index outside its batch (or twice); ignored"
                ),
            }
        }
        if !events.is_empty() {
            tracing::warn!(
                plugin = &*self.parts.instance,
                events = events.len(),
                first_reason = events[0].1,
                "the plugin refused some events for good; setting them aside as dead letters"
            );
        }
        self.put_dead_letters(&events)?;
        Ok(events.len())
    }

    fn put_dead_letters(&self, events: &[(&Record, &str)]) -> Result<(), String> {
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

impl WorkerParts {
    fn circuit_pause(&self) -> std::time::Duration {
        match self.circuit.clone().state(Instant::now()) {
            CircuitState::Open { until } => until.saturating_duration_since(Instant::now()),
            _ => std::time::Duration::ZERO,
        }
    }
}
