//! The circuit breaker of one plugin instance.
//!
//! Closed: calls flow. After `circuit_after` consecutive failed calls the
//! circuit opens: no calls for `circuit_open_for`. Then it is half-open:
//! one trial call; success closes it, failure opens it again. Nothing is
//! dropped while it is open: the batch waits.

use std::time::{Duration, Instant};

/// Where the breaker stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitState {
    /// Calls flow.
    Closed,
    /// No calls until the instant.
    Open {
        /// When a trial call is allowed.
        until: Instant,
    },
    /// The next call is a trial.
    HalfOpen,
}

impl CircuitState {
    /// The metric value: 0 closed, 1 open, 2 half-open.
    pub fn gauge(self) -> i64 {
        match self {
            CircuitState::Closed => 0,
            CircuitState::Open { .. } => 1,
            CircuitState::HalfOpen => 2,
        }
    }

    /// The name shown in status output.
    pub fn name(self) -> &'static str {
        match self {
            CircuitState::Closed => "closed",
            CircuitState::Open { .. } => "open",
            CircuitState::HalfOpen => "half_open",
        }
    }
}

/// A circuit breaker: opens after `threshold` consecutive failures, pauses
/// calls for `open_for`, then allows one trial call (half-open).
#[derive(Debug, Clone)]
pub struct Circuit {
    threshold: u32,
    open_for: Duration,
    failures: u32,
    state: CircuitState,
}

impl Circuit {
    /// A closed circuit that opens after `threshold` consecutive failures.
    pub fn new(threshold: u32, open_for: Duration) -> Self {
        Circuit {
            threshold: threshold.max(1),
            open_for,
            failures: 0,
            state: CircuitState::Closed,
        }
    }

    /// The current state (an elapsed open period reads as half-open).
    pub fn state(&mut self, now: Instant) -> CircuitState {
        if let CircuitState::Open { until } = self.state
            && now >= until
        {
            self.state = CircuitState::HalfOpen;
        }
        self.state
    }

    /// Consecutive failures so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Records a successful call; returns `true` if that closed the circuit.
    pub fn succeeded(&mut self) -> bool {
        self.failures = 0;
        let was_open = self.state != CircuitState::Closed;
        self.state = CircuitState::Closed;
        was_open
    }

    /// Records a failed call; returns `true` if that opened the circuit.
    pub fn failed(&mut self, now: Instant) -> bool {
        self.failures = self.failures.saturating_add(1);
        let trip = match self.state(now) {
            CircuitState::HalfOpen => true,
            CircuitState::Closed => self.failures >= self.threshold,
            CircuitState::Open { .. } => false,
        };
        if trip {
            self.state = CircuitState::Open {
                until: now + self.open_for,
            };
        }
        trip
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_threshold_then_half_opens_then_closes() {
        let start = Instant::now();
        let mut circuit = Circuit::new(3, Duration::from_secs(30));
        assert!(!circuit.failed(start));
        assert!(!circuit.failed(start));
        assert!(circuit.failed(start), "third failure opens");
        assert!(matches!(circuit.state(start), CircuitState::Open { .. }));
        let later = start + Duration::from_secs(31);
        assert_eq!(circuit.state(later), CircuitState::HalfOpen);
        assert!(circuit.failed(later), "a failed trial reopens");
        let much_later = later + Duration::from_secs(31);
        assert_eq!(circuit.state(much_later), CircuitState::HalfOpen);
        assert!(circuit.succeeded(), "a good trial closes");
        assert_eq!(circuit.state(much_later), CircuitState::Closed);
        assert_eq!(circuit.failures(), 0);
    }

    #[test]
    fn success_resets_the_count() {
        let now = Instant::now();
        let mut circuit = Circuit::new(2, Duration::from_secs(1));
        circuit.failed(now);
        assert!(!circuit.succeeded());
        assert!(!circuit.failed(now), "count restarted after the success");
    }
}
