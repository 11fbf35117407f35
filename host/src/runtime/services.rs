//! The services the relay offers every plugin, whatever its kind: logging,
//! secrets and metrics — and the one gate every plugin's words pass on
//! their way into the host.
//!
//! WASM plugins reach them through their imports, native ones through the
//! C ABI's `ar_host` callbacks (in-process) or the plugin runner's frames
//! (process isolation). All three end here, so a plugin's log line is
//! masked, capped, rate-limited and attributed the same way and its metric
//! names obey the same rules whichever way it runs.
//!
//! | what a plugin hands the host | bound |
//! |---|---|
//! | a log line, a stdout or stderr line | secrets masked ([`mask`]), [`MAX_LINE`] bytes, [`LINES_PER_SECOND`] lines and [`BYTES_PER_SECOND`] a second (bursts of twice that), then suppressed and counted |
//! | an error message, a rejection reason, a panic message, an init error | secrets masked, [`MAX_TEXT`] bytes |
//! | a metric name | refused if it holds a secret; the usual name rules; a refused name is warned about once |

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use auditrelay_plugin_api::host::Level;

use super::mask::{self, SecretMask};
use crate::metrics::PluginMetrics;
use crate::secret::Secret;

/// Longest log line (or stdout/stderr line) taken from a plugin.
pub const MAX_LINE: usize = 16 * 1024;
/// Longest message, reason or description taken from a plugin: what goes
/// into dead letters, status and the log for one answer.
pub const MAX_TEXT: usize = 4 * 1024;
/// Log lines an instance may write a second, on average.
pub const LINES_PER_SECOND: f64 = 100.0;
/// Log bytes an instance may write a second, on average.
pub const BYTES_PER_SECOND: f64 = 64.0 * 1024.0;
/// Distinct refused metric names warned about; later ones are only counted.
const MAX_WARNED_METRICS: usize = 16;

/// One instance's logging, secrets and metrics.
#[derive(Clone)]
pub struct PluginServices {
    instance: Arc<str>,
    secrets: Arc<BTreeMap<String, Secret>>,
    metrics: Option<PluginMetrics>,
    mask: Arc<SecretMask>,
    budget: Arc<Mutex<LogBudget>>,
    refused_metrics: Arc<Mutex<HashSet<String>>>,
}

impl PluginServices {
    /// Services for `instance` with its granted `secrets`, reporting to
    /// `metrics`.
    pub fn new(
        instance: &str,
        secrets: BTreeMap<String, Secret>,
        metrics: Option<PluginMetrics>,
    ) -> Self {
        let mask = SecretMask::new(secrets.values().map(Secret::expose));
        PluginServices {
            instance: Arc::from(instance),
            secrets: Arc::new(secrets),
            metrics,
            mask: Arc::new(mask),
            budget: Arc::new(Mutex::new(LogBudget::new())),
            refused_metrics: Arc::default(),
        }
    }

    /// Services for an instance that is only being described: no secrets,
    /// no metrics.
    pub fn describe_only() -> Self {
        Self::new("(describe)", BTreeMap::new(), None)
    }

    /// The instance name, as in `[plugins.<name>]`; every log line and
    /// metric carries it.
    pub fn instance(&self) -> &Arc<str> {
        &self.instance
    }

    /// The secrets the plugin may read, by name.
    pub fn secrets(&self) -> &BTreeMap<String, Secret> {
        &self.secrets
    }

    /// Where the plugin's own metrics go (none when only describing it).
    pub fn metrics(&self) -> Option<&PluginMetrics> {
        self.metrics.as_ref()
    }

    /// Text from the plugin as the host may keep it: secrets masked, at
    /// most [`MAX_TEXT`] bytes.
    pub fn admit(&self, text: &str) -> String {
        self.mask.admit(text, MAX_TEXT)
    }

    /// Whether `text` holds (any form the mask knows of) one of the
    /// plugin's secrets.
    pub fn holds_secret(&self, text: &str) -> bool {
        matches!(self.mask.mask(text), std::borrow::Cow::Owned(_))
    }

    /// Logs `message` under the plugin's name: masked, cut to
    /// [`MAX_LINE`], within the instance's log budget.
    pub fn log(&self, level: Level, message: &str) {
        let Some(message) = self.within_budget(message) else {
            return;
        };
        let plugin = &*self.instance;
        match level {
            Level::Trace => tracing::trace!(target: "auditrelay::plugin", plugin, "{message}"),
            Level::Debug => tracing::debug!(target: "auditrelay::plugin", plugin, "{message}"),
            Level::Info => tracing::info!(target: "auditrelay::plugin", plugin, "{message}"),
            Level::Warn => tracing::warn!(target: "auditrelay::plugin", plugin, "{message}"),
            Level::Error => tracing::error!(target: "auditrelay::plugin", plugin, "{message}"),
        }
    }

    /// A line the plugin wrote to its stdout (`error = false`, logged at
    /// info) or stderr (logged at warn), masked, within the log budget.
    /// Returns the masked line, for fault reports, whether or not it was
    /// logged.
    pub fn output_line(&self, stream: &'static str, line: &str, stderr: bool) -> String {
        let masked = self.mask.admit(line, MAX_LINE);
        if self.take_budget(masked.len()) {
            let plugin = &*self.instance;
            if stderr {
                tracing::warn!(target: "auditrelay::plugin", plugin, stream, "{masked}");
            } else {
                tracing::info!(target: "auditrelay::plugin", plugin, stream, "{masked}");
            }
        }
        masked
    }

    /// The masked, cut message if the budget allows a line now.
    fn within_budget(&self, message: &str) -> Option<String> {
        let message = self.mask.admit(message, MAX_LINE);
        self.take_budget(message.len()).then_some(message)
    }

    /// Takes a line of `bytes` from the budget; logs how many lines were
    /// suppressed before, once lines flow again.
    fn take_budget(&self, bytes: usize) -> bool {
        let taken = self
            .budget
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take(bytes, Instant::now());
        match taken {
            Taken::Suppressed => {
                if let Some(metrics) = &self.metrics {
                    metrics.log_line_suppressed();
                }
                false
            }
            Taken::Allowed { suppressed: 0 } => true,
            Taken::Allowed { suppressed } => {
                tracing::warn!(
                    target: "auditrelay::plugin",
                    plugin = &*self.instance,
                    suppressed,
                    "suppressed {suppressed} log line(s) from this plugin: it logged more than {LINES_PER_SECOND} lines or {} KiB a second (auditrelay_plugin_log_lines_suppressed_total)",
                    BYTES_PER_SECOND / 1024.0
                );
                true
            }
        }
    }

    /// The secret called `name`, if the instance was granted it.
    pub fn secret(&self, name: &str) -> Option<&str> {
        let value = self.secrets.get(name).map(Secret::expose);
        if value.is_none() {
            tracing::debug!(
                plugin = &*self.instance,
                secret = self.mask.admit(name, 80),
                "plugin asked for a secret it was not granted"
            );
        }
        value
    }

    /// Adds to one of the plugin's counters.
    pub fn counter_add(&self, name: &str, delta: u64) {
        if let Some(metrics) = &self.metrics
            && !(self.clean_metric_name(name) && metrics.custom_counter_add(name, delta))
        {
            self.refuse_metric(name);
        }
    }

    /// Sets one of the plugin's gauges.
    pub fn gauge_set(&self, name: &str, value: f64) {
        if let Some(metrics) = &self.metrics
            && !(self.clean_metric_name(name) && metrics.custom_gauge_set(name, value))
        {
            self.refuse_metric(name);
        }
    }

    /// A name that holds none of the secrets: metric names are exported
    /// as they are, so a masked one is refused, not rewritten.
    fn clean_metric_name(&self, name: &str) -> bool {
        name.len() <= 64 && self.mask.mask(name) == name
    }

    /// Warns once per refused name, for the first few names.
    fn refuse_metric(&self, name: &str) {
        let name = self.mask.admit(name, 80);
        let mut warned = self
            .refused_metrics
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if warned.len() >= MAX_WARNED_METRICS || !warned.insert(name.clone()) {
            return;
        }
        let last = warned.len() == MAX_WARNED_METRICS;
        drop(warned);
        tracing::warn!(
            plugin = &*self.instance,
            metric = name,
            "ignored a plugin metric: names must match [a-z][a-z0-9_]* (at most 64 bytes) and hold no secret, and a plugin may define at most 64{}",
            if last {
                "; further refused names are not logged"
            } else {
                ""
            }
        );
    }
}

/// Two token buckets: lines and bytes.
struct LogBudget {
    lines: f64,
    bytes: f64,
    refilled: Instant,
    /// Lines suppressed and not yet summed up in a log line.
    suppressed: u64,
    /// When the last summary was logged: at most one a second.
    summed_up: Option<Instant>,
}

enum Taken {
    Allowed { suppressed: u64 },
    Suppressed,
}

impl LogBudget {
    fn new() -> Self {
        LogBudget {
            lines: 2.0 * LINES_PER_SECOND,
            bytes: 2.0 * BYTES_PER_SECOND,
            refilled: Instant::now(),
            suppressed: 0,
            summed_up: None,
        }
    }

    fn take(&mut self, bytes: usize, now: Instant) -> Taken {
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.refilled = now;
        self.lines = (self.lines + elapsed * LINES_PER_SECOND).min(2.0 * LINES_PER_SECOND);
        self.bytes = (self.bytes + elapsed * BYTES_PER_SECOND).min(2.0 * BYTES_PER_SECOND);
        let cost = bytes as f64;
        if self.lines >= 1.0 && self.bytes >= cost.min(2.0 * BYTES_PER_SECOND) {
            self.lines -= 1.0;
            self.bytes -= cost;
            let due = self
                .summed_up
                .is_none_or(|at| now.saturating_duration_since(at) >= Duration::from_secs(1));
            let suppressed = if due && self.suppressed > 0 {
                self.summed_up = Some(now);
                std::mem::take(&mut self.suppressed)
            } else {
                0
            };
            Taken::Allowed { suppressed }
        } else {
            self.suppressed += 1;
            Taken::Suppressed
        }
    }
}

/// `text` cut to at most `max` bytes on a character boundary.
pub(crate) fn cut(text: &str, max: usize) -> &str {
    mask::cut(text, max)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn services() -> PluginServices {
        PluginServices::new(
            "splunk",
            BTreeMap::from([
                ("token".to_owned(), Secret::new("s3cr3t-token")),
                ("pin".to_owned(), Secret::new("42")),
            ]),
            None,
        )
    }

    #[test]
    fn secrets_are_masked_and_short_ones_left_alone() {
        let services = services();
        assert_eq!(
            services.admit("sent s3cr3t-token twice: s3cr3t-token, pin 42"),
            "sent *** twice: ***, pin 42"
        );
        assert_eq!(services.secret("token"), Some("s3cr3t-token"));
        assert_eq!(services.secret("other"), None);
        let leaky = PluginServices::new(
            "p",
            BTreeMap::from([("key".to_owned(), Secret::new("k9x2m4q7w1z8"))]),
            None,
        );
        assert!(!leaky.clean_metric_name("k9x2m4q7w1z8_total"));
        assert!(
            !leaky.clean_metric_name("sent_k9x2m4q7"),
            "a fragment is enough"
        );
        assert!(services.clean_metric_name("bytes_sent"));
    }

    #[test]
    fn long_messages_are_cut_on_a_character_boundary() {
        assert_eq!(cut("héllo", 2), "h");
        assert_eq!(cut("héllo", 3), "hé");
        assert_eq!(cut("abc", 10), "abc");
        let long = services().admit(&"é".repeat(MAX_TEXT));
        assert!(long.len() < MAX_TEXT + 64, "{}", long.len());
    }

    #[test]
    fn suppressed_lines_are_summed_up_at_most_once_a_second() {
        let mut budget = LogBudget::new();
        let start = Instant::now();
        for _ in 0..1000 {
            budget.take(10, start);
        }
        let mut summaries = 0;
        for ms in (0..3000).step_by(5) {
            if let Taken::Allowed { suppressed: 1.. } =
                budget.take(10, start + Duration::from_millis(1000 + ms))
            {
                summaries += 1;
            }
            for _ in 0..3 {
                budget.take(10, start + Duration::from_millis(1000 + ms));
            }
        }
        assert!((3..=4).contains(&summaries), "{summaries} summaries in 3 s");
    }

    #[test]
    fn the_log_budget_lets_bursts_through_and_suppresses_floods() {
        let mut budget = LogBudget::new();
        let start = Instant::now();
        let allowed = (0..10_000)
            .filter(|_| matches!(budget.take(100, start), Taken::Allowed { .. }))
            .count();
        assert_eq!(allowed, 200, "a burst of twice the rate");
        // A second later, the count of suppressed lines comes with the next.
        match budget.take(100, start + Duration::from_secs(1)) {
            Taken::Allowed { suppressed } => assert_eq!(suppressed, 9_800),
            Taken::Suppressed => panic!("the budget refills"),
        }
        // Big lines run out of bytes first.
        let mut budget = LogBudget::new();
        let big = (0..100)
            .filter(|_| matches!(budget.take(16 * 1024, start), Taken::Allowed { .. }))
            .count();
        assert_eq!(big, 8);
    }
}
