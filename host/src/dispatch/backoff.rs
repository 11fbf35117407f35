//! How long to wait before sending a failed batch again.

use std::time::Duration;

use rand::Rng;

/// Exponential backoff with "equal jitter": after the n-th consecutive
/// failure the wait is drawn from `[d/2, d]` with `d = initial × 2ⁿ⁻¹`
/// capped at `max`, so relays that failed together do not retry together.
/// A destination's own `Retry-After` is honoured, capped at `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
}

impl Backoff {
    /// Backoff from `initial` up to `max`.
    pub const fn new(initial: Duration, max: Duration) -> Self {
        let max = if max.as_nanos() < initial.as_nanos() {
            initial
        } else {
            max
        };
        Backoff { initial, max }
    }

    /// The wait after `failures` consecutive failures (at least 1).
    pub fn delay(&self, failures: u32, retry_after: Option<Duration>) -> Duration {
        let doublings = failures.saturating_sub(1).min(32);
        let ceiling = self
            .initial
            .saturating_mul(1u32 << doublings.min(31))
            .min(self.max);
        let half = ceiling / 2;
        let jittered = half + rand::rng().random_range(Duration::ZERO..=ceiling - half);
        jittered.max(retry_after.unwrap_or_default()).min(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_exponentially_within_jitter_and_caps() {
        let backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        for _ in 0..100 {
            let first = backoff.delay(1, None);
            assert!((Duration::from_millis(50)..=Duration::from_millis(100)).contains(&first));
            let fourth = backoff.delay(4, None);
            assert!((Duration::from_millis(400)..=Duration::from_millis(800)).contains(&fourth));
            let late = backoff.delay(40, None);
            assert!((Duration::from_millis(2500)..=Duration::from_secs(5)).contains(&late));
        }
    }

    #[test]
    fn honours_retry_after_up_to_the_cap() {
        let backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        assert_eq!(
            backoff.delay(1, Some(Duration::from_secs(2))),
            Duration::from_secs(2)
        );
        assert_eq!(
            backoff.delay(1, Some(Duration::from_secs(60))),
            Duration::from_secs(5)
        );
    }
}
