//! Delivering one batch: calls with retries, backoff and the circuit
//! breaker, refused events set aside as dead letters, and a batch the
//! plugin keeps crashing on taken apart to find the event that does it.

use std::time::{Duration, Instant};

use auditrelay_plugin_api::Event;

use super::poison::{Crash, PoisonSearch, Step};
use super::{Handled, Worker};
use crate::dispatch::circuit::CircuitState;
use crate::dispatch::telemetry::Failure;
use crate::runtime::{CallError, Delivery, Exporter, Fault, RejectedEvent};
use crate::spool::Batch;

impl<E: Exporter> Worker<E> {
    /// Calls the plugin until `batch` is handled. A batch the plugin keeps
    /// crashing on is taken apart to find the event that does it, which
    /// goes to the dead letters ([`PoisonSearch`] decides what to try
    /// next; this does the calls, the logging and the dead letters).
    pub(super) async fn deliver(&mut self, batch: &Batch) -> Handled {
        let mut search = PoisonSearch::new(batch.len(), self.parts.isolate_after);
        while let Some(Step { part, confirm }) = search.next() {
            // The whole batch (the usual case) goes as it is, uncopied.
            let slice;
            let events = if part.len() == batch.len() {
                batch
            } else {
                slice = batch.slice(part.clone());
                &slice
            };
            let fault = match self.deliver_once(events, confirm).await {
                Ok(Handled::Done) => {
                    search.delivered();
                    continue;
                }
                Ok(Handled::Aborted) => return Handled::Aborted,
                Err(fault) => fault,
            };
            match search.crashed(part.clone()) {
                Crash::Split => tracing::warn!(
                    plugin = &*self.parts.instance,
                    events = part.len(),
                    "the plugin keeps crashing on this batch ({fault}); delivering its halves separately to find the event that crashes it"
                ),
                Crash::Deferred => {}
                Crash::BrokenAsAWhole => tracing::warn!(
                    plugin = &*self.parts.instance,
                    "the plugin crashes on every part of this batch ({fault}); retrying it until the plugin recovers"
                ),
                Crash::Condemned => {
                    let reason = format!(
                        "the plugin crashed on this event {} times in a row while it delivered the rest of its batch: {fault}",
                        self.parts.isolate_after
                    );
                    tracing::error!(
                        plugin = &*self.parts.instance,
                        seq = events.seq(0),
                        "{reason}; setting it aside as a dead letter"
                    );
                    let dead = [(events.seq(0), events.event(0), reason.as_str())];
                    if self.put_dead_letters(&dead).is_err() {
                        // Cannot set it aside: keep trying to deliver it.
                        search.keep_trying(part);
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
                outcome = self.exporter.deliver(batch.encoded()) => outcome,
                () = self.parts.abort.cancelled() => return Ok(Handled::Aborted),
            };
            self.parts.telemetry.call_took(started.elapsed());
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
                    self.parts.telemetry.call_failed("permanent", None);
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
                    self.parts.telemetry.call_failed("retryable", None);
                    crashes = 0;
                    (message, retry_after)
                }
                Err(CallError::Fault(fault)) => {
                    self.parts
                        .telemetry
                        .call_failed("fault", Some(fault.kind.label()));
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
            let CircuitState::Open { until } = self.parts.telemetry.circuit() else {
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
        let Failure {
            failures,
            opened_for,
        } = self.record_failure(message);
        let p = &mut self.parts;
        p.telemetry.retrying();
        if opened_for.is_some() {
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

    /// Records a failed attempt (circuit, status, metrics) and says when
    /// it opened the circuit.
    fn record_failure(&mut self, message: &str) -> Failure {
        let failure = self.parts.telemetry.failed(message);
        if let Some(pause) = failure.opened_for {
            tracing::warn!(
                plugin = &*self.parts.instance,
                failures = failure.failures,
                pause = %humantime::format_duration(pause),
                "circuit opened: pausing deliveries to this plugin after repeated failures (last: {message})"
            );
        }
        failure
    }

    fn succeeded(&mut self, delivered: usize, dead_lettered: usize) {
        let failures = self.parts.telemetry.succeeded(delivered, dead_lettered);
        if failures > 0 {
            tracing::info!(
                plugin = &*self.parts.instance,
                failures,
                "plugin recovered; delivering again"
            );
        }
    }

    /// Sets aside the events a partly accepted batch refused (their
    /// indexes were checked when the answer was admitted); returns how
    /// many, or why they could not be stored.
    fn set_aside_rejected(
        &mut self,
        batch: &Batch,
        rejected: &[RejectedEvent],
    ) -> Result<usize, String> {
        let events: Vec<(u64, Event<'_>, &str)> = rejected
            .iter()
            .map(|r| {
                let i = r.index as usize;
                (batch.seq(i), batch.event(i), r.reason.as_str())
            })
            .collect();
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
        self.parts.telemetry.dead_lettered(events.len());
        Ok(())
    }
}
