//! What the relay records about one instance, in one place: its metrics,
//! the status `GET /v1/status` shows, and the circuit breaker both report.
//!
//! The supervisor and the worker record each event once, through one
//! method here, so the metrics and the status cannot disagree. The status's
//! circuit state and failure count are read from the breaker itself when a
//! snapshot is taken, never copied into it.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::circuit::{Circuit, CircuitState};
use super::status::{PluginStatus, RunState};
use crate::metrics::PluginMetrics;

/// One instance's metrics, status and circuit breaker; clones share them.
#[derive(Clone)]
pub struct Telemetry {
    metrics: PluginMetrics,
    shared: Arc<Mutex<Shared>>,
}

struct Shared {
    /// The status, but for what [`snapshot`](Telemetry::snapshot) derives.
    status: PluginStatus,
    circuit: Circuit,
    /// Failed start attempts in a row, while the instance is starting.
    start_failures: u32,
}

/// A failed attempt, once recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Failure {
    /// Failed calls since the last success.
    pub failures: u32,
    /// How long the circuit now pauses deliveries, if this failure opened it.
    pub opened_for: Option<Duration>,
}

impl Telemetry {
    /// An instance being started, reporting into `metrics`, with `circuit`
    /// as its breaker.
    pub fn new(instance: &str, metrics: PluginMetrics, circuit: Circuit) -> Self {
        Telemetry {
            metrics,
            shared: Arc::new(Mutex::new(Shared {
                status: PluginStatus::starting(instance),
                circuit,
                start_failures: 0,
            })),
        }
    }

    /// The instance's metrics, for what the plugin counts itself (host
    /// services) and what its runtime counts (restarts, suppressed logs).
    pub fn metrics(&self) -> &PluginMetrics {
        &self.metrics
    }

    fn lock(&self) -> MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The status now. The circuit gauge is set from the same reading, so
    /// metrics rendered with a status (as `GET /metrics` does) agree with
    /// it even while the worker is not looking (an elapsed pause reads as
    /// half-open in both).
    pub fn snapshot(&self) -> PluginStatus {
        let mut shared = self.lock();
        let state = shared.circuit.state(Instant::now());
        let failures = match shared.status.state {
            RunState::Starting => shared.start_failures,
            _ => shared.circuit.failures(),
        };
        let status = PluginStatus {
            circuit: state.name(),
            consecutive_failures: failures,
            ..shared.status.clone()
        };
        drop(shared);
        self.metrics.circuit_state(state.gauge());
        status
    }

    // The supervisor's events.

    /// A start attempt failed and will be tried again.
    pub fn start_failed(&self, error: String) {
        let mut shared = self.lock();
        shared.start_failures += 1;
        shared.status.state = RunState::Starting;
        shared.status.error = Some(error);
    }

    /// The instance cannot run as configured; not tried again.
    pub fn cannot_run(&self, error: String) {
        let mut shared = self.lock();
        shared.status.state = RunState::Failed;
        shared.status.error = Some(error);
    }

    /// The instance runs `plugin` `version` from `file`.
    pub fn running(&self, plugin: &str, version: &str, file: PathBuf) {
        let mut shared = self.lock();
        shared.start_failures = 0;
        let status = &mut shared.status;
        status.plugin = Some(plugin.to_owned());
        status.version = Some(version.to_owned());
        status.file = Some(file);
        status.state = RunState::Running;
        status.error = None;
    }

    /// The delivery loop stopped on a bug in the relay: failed, saying why.
    pub fn internal_error(&self, error: String) {
        self.cannot_run(error);
    }

    /// The relay is shutting down: the worker delivers what is left.
    pub fn draining(&self) {
        self.lock().status.state = RunState::Draining;
    }

    /// The worker has stopped.
    pub fn stopped(&self) {
        self.lock().status.state = RunState::Stopped;
    }

    // The worker's events.

    /// The circuit's state now (an elapsed pause reads as half-open).
    pub fn circuit(&self) -> CircuitState {
        let state = self.lock().circuit.state(Instant::now());
        self.metrics.circuit_state(state.gauge());
        state
    }

    /// A call into the plugin returned after `elapsed`.
    pub fn call_took(&self, elapsed: Duration) {
        self.metrics.batch_duration(elapsed.as_secs_f64());
    }

    /// A call answered `permanent`, `retryable` or crashed (`fault`, with
    /// the fault's cause label).
    pub fn call_failed(&self, kind: &'static str, fault: Option<&'static str>) {
        self.metrics.failure(kind);
        if let Some(cause) = fault {
            self.metrics.trap(cause);
        }
    }

    /// A batch could not be handled this time (`message` says why): counted
    /// in the circuit, shown as the last error.
    pub fn failed(&self, message: &str) -> Failure {
        let now = Instant::now();
        let mut shared = self.lock();
        let opened = shared.circuit.failed(now);
        shared.status.last_error = Some(message.to_owned());
        let failures = shared.circuit.failures();
        let opened_for = opened.then(|| match shared.circuit.state(now) {
            CircuitState::Open { until } => until.saturating_duration_since(now),
            _ => Duration::ZERO,
        });
        drop(shared);
        if opened {
            self.metrics
                .circuit_state(CircuitState::Open { until: now }.gauge());
        }
        Failure {
            failures,
            opened_for,
        }
    }

    /// The batch is about to be sent again.
    pub fn retrying(&self) {
        self.metrics.retry();
    }

    /// A batch was handled: `delivered` events acknowledged and
    /// `dead_lettered` set aside. Returns the failures it ended (0: none).
    pub fn succeeded(&self, delivered: usize, dead_lettered: usize) -> u32 {
        let mut shared = self.lock();
        let failures = shared.circuit.failures();
        shared.circuit.succeeded();
        let status = &mut shared.status;
        status.delivered += delivered as u64;
        status.dead_letters += dead_lettered as u64;
        status.last_error = None;
        if delivered > 0 {
            status.last_success = Some(jiff::Timestamp::now());
        }
        drop(shared);
        self.metrics.circuit_state(CircuitState::Closed.gauge());
        self.metrics.delivered(delivered as u64);
        failures
    }

    /// Events were stored as dead letters.
    pub fn dead_lettered(&self, events: usize) {
        self.metrics.dead_lettered(events as u64);
    }

    /// Events accepted but not yet handled by this instance.
    pub fn lag(&self, events: u64) {
        self.metrics.lag(events);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;

    fn telemetry(circuit_after: u32) -> (Arc<Metrics>, Telemetry) {
        let metrics = Arc::new(Metrics::new());
        let telemetry = Telemetry::new(
            "audit",
            metrics.plugin("audit"),
            Circuit::new(circuit_after, Duration::from_secs(30)),
        );
        (metrics, telemetry)
    }

    #[test]
    fn the_status_reads_the_circuit_and_the_metrics_agree() {
        let (metrics, telemetry) = telemetry(2);
        telemetry.running("file", "1.0.0", "file.wasm".into());
        assert_eq!(telemetry.failed("down").opened_for, None);
        let second = telemetry.failed("still down");
        assert!(second.opened_for.is_some(), "the second failure opens it");
        let status = telemetry.snapshot();
        assert_eq!((status.circuit, status.consecutive_failures), ("open", 2));
        assert_eq!(status.last_error.as_deref(), Some("still down"));
        assert!(
            metrics
                .render()
                .contains("auditrelay_plugin_circuit_state{plugin=\"audit\"} 1")
        );

        assert_eq!(
            telemetry.succeeded(3, 1),
            2,
            "the success ended two failures"
        );
        let status = telemetry.snapshot();
        assert_eq!((status.circuit, status.consecutive_failures), ("closed", 0));
        assert_eq!((status.delivered, status.dead_letters), (3, 1));
        assert_eq!(status.last_error, None);
        assert!(status.last_success.is_some());
        let rendered = metrics.render();
        assert!(rendered.contains("auditrelay_plugin_circuit_state{plugin=\"audit\"} 0"));
        assert!(
            rendered.contains("auditrelay_plugin_delivered_events_total{plugin=\"audit\"} 3"),
            "{rendered}"
        );
    }

    #[test]
    fn an_elapsed_pause_reads_half_open_in_the_status_and_the_gauge() {
        let metrics = Arc::new(Metrics::new());
        let telemetry = Telemetry::new(
            "audit",
            metrics.plugin("audit"),
            Circuit::new(1, Duration::from_millis(20)),
        );
        assert!(telemetry.failed("down").opened_for.is_some());
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(telemetry.snapshot().circuit, "half_open");
        assert!(
            metrics
                .render()
                .contains("auditrelay_plugin_circuit_state{plugin=\"audit\"} 2")
        );
    }

    #[test]
    fn while_starting_the_failures_shown_are_start_attempts() {
        let (_, telemetry) = telemetry(5);
        telemetry.start_failed("init refused".into());
        telemetry.start_failed("init refused again".into());
        let status = telemetry.snapshot();
        assert_eq!(status.state, RunState::Starting);
        assert_eq!(status.consecutive_failures, 2);
        assert_eq!(status.error.as_deref(), Some("init refused again"));
        telemetry.running("file", "1.0.0", "file.wasm".into());
        let status = telemetry.snapshot();
        assert_eq!(
            (status.state, status.consecutive_failures),
            (RunState::Running, 0)
        );
        assert_eq!(status.error, None);
    }
}
