//! The circuit breaker of one plugin instance.
//!
//! Closed: calls flow. After `circuit_after` consecutive failed calls the
//! circuit opens: no calls for a while. Then it is half-open: one trial
//! call; success closes it, failure opens it again, for twice as long.
//! The first pause is short ([`FIRST_PAUSE`], or `circuit_open_for` if
//! that is shorter), so a destination that was down for a moment is
//! probed again within a second; pauses grow up to `circuit_open_for`
//! while it stays down. Nothing is dropped while it is open: the batch
//! waits.

use std::time::{Duration, Instant};

/// How long the circuit stays open the first time.
pub const FIRST_PAUSE: Duration = Duration::from_secs(1);

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
/// calls (from one second, doubling up to `max_open` while trials
/// fail), then allows one trial call (half-open).
#[derive(Debug, Clone)]
pub struct Circuit {
    threshold: u32,
    max_open: Duration,
    failures: u32,
    /// Times it opened since the last success.
    trips: u32,
    state: CircuitState,
}

impl Circuit {
    /// A closed circuit that opens after `threshold` consecutive failures,
    /// for at most `max_open` at a time.
    pub fn new(threshold: u32, max_open: Duration) -> Self {
        Circuit {
            threshold: threshold.max(1),
            max_open,
            failures: 0,
            trips: 0,
            state: CircuitState::Closed,
        }
    }

    /// How long the next opening lasts.
    fn pause(&self) -> Duration {
        let doublings = self.trips.min(16);
        FIRST_PAUSE
            .saturating_mul(1 << doublings)
            .min(self.max_open)
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
        self.trips = 0;
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
                until: now + self.pause(),
            };
            self.trips = self.trips.saturating_add(1);
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
    fn the_first_pause_is_short_and_pauses_grow_while_trials_fail() {
        let mut now = Instant::now();
        let mut circuit = Circuit::new(1, Duration::from_secs(30));
        let mut pauses = Vec::new();
        for _ in 0..8 {
            assert!(circuit.failed(now));
            let CircuitState::Open { until } = circuit.state(now) else {
                panic!("open after a failure")
            };
            pauses.push((until - now).as_secs());
            now = until;
            assert_eq!(circuit.state(now), CircuitState::HalfOpen);
        }
        assert_eq!(pauses, [1, 2, 4, 8, 16, 30, 30, 30]);
        circuit.succeeded();
        assert!(circuit.failed(now));
        assert!(
            matches!(circuit.state(now), CircuitState::Open { until } if until - now == FIRST_PAUSE),
            "a success starts over"
        );
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
