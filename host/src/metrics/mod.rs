//! The relay's metrics, exported in Prometheus text format at `GET /metrics`.
//!
//! | metric | labels | meaning |
//! |---|---|---|
//! | `auditrelay_events_accepted_total` | `via` | events taken into the spool (`api`, `http`, `outbox`, `webhook` or `file`) |
//! | `auditrelay_events_rejected_total` | `via`, `reason` | events refused at the door (`invalid`, `full`, `closed`) |
//! | `auditrelay_events_set_aside_total` | `via` | events taken with optional fields that broke a rule set aside into `metadata["auditrelay.invalid"]` (`relay.invalid_optional`) |
//! | `auditrelay_spool_events` | | events some plugin instance has not handled yet |
//! | `auditrelay_spool_bytes` | | bytes the spool's segment files take on disk |
//! | `auditrelay_spool_pending_bytes` | | bytes accepted but not yet written (grows only while the disk fails) |
//! | `auditrelay_spool_segments` | | segment files |
//! | `auditrelay_spool_dropped_events_total` | | events pushed out of a full spool (`when_full = "drop_oldest"`) |
//! | `auditrelay_duplicate_events_total` | `content` | accepted events whose `(source, id)` an event in the dedup window already had: `same` content (a copy: acknowledged, not spooled again) or `different` (spooled) |
//! | `auditrelay_dedup_window_ids` | | identities the dedup window remembers now (`spool.dedup_ids` at most) |
//! | `auditrelay_http_connections` | | HTTP connections open now |
//! | `auditrelay_http_connections_closed_total` | `reason` | connections the relay closed or turned away: `evicted_idle` (the longest-idle one, to make room), `refused_full` (every connection busy) |
//! | `auditrelay_streams` | | live streams (`GET /v1/stream`) open now |
//! | `auditrelay_streams_ended_total` | `reason` | live streams the relay ended: `slow` (the client read too slowly), `stopping` (the relay stopped) |
//! | `auditrelay_outbox_pending_rows` | `outbox` | rows committed to the outbox table and not yet spooled (counted up to 100,000) |
//! | `auditrelay_outbox_oldest_pending_seconds` | `outbox` | age of the oldest such row (0 when none) |
//! | `auditrelay_outbox_rejected_rows_total` | `outbox` | rows moved to the rejected table (their envelope was refused) |
//! | `auditrelay_outbox_errors_total` | `outbox` | failed reads of the outbox (database down, connection lost, spool refusing) |
//! | `auditrelay_plugin_delivered_events_total` | `plugin` | events the plugin acknowledged |
//! | `auditrelay_plugin_dead_letter_events_total` | `plugin` | events set aside as dead letters |
//! | `auditrelay_plugin_failures_total` | `plugin`, `kind` | failed calls (`retryable`, `permanent`, `fault`) |
//! | `auditrelay_plugin_retries_total` | `plugin` | batches sent again after a failure |
//! | `auditrelay_plugin_traps_total` | `plugin`, `kind` | traps by cause (`panic`, `deadline`, `out_of_memory`, `stack_overflow`, `memory_fault`, `other`) |
//! | `auditrelay_plugin_restarts_total` | `plugin` | instances replaced after a fault |
//! | `auditrelay_plugin_circuit_state` | `plugin` | 0 closed, 1 open, 2 half-open |
//! | `auditrelay_plugin_lag_events` | `plugin` | events accepted but not yet handled by the plugin |
//! | `auditrelay_plugin_batch_duration_seconds` | `plugin` | time per `deliver` call |
//! | `auditrelay_plugin_log_lines_suppressed_total` | `plugin` | log, stdout and stderr lines of a plugin not logged because it went over its log budget |
//! | `auditrelay_plugin_custom_total` | `plugin`, `name` | counters a plugin reports itself |
//! | `auditrelay_plugin_custom_gauge` | `plugin`, `name` | gauges a plugin reports itself |

use std::collections::HashSet;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Most distinct custom metric names one plugin instance may create; more
/// would let a plugin blow up the scrape size.
const MAX_CUSTOM_METRICS: usize = 64;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ViaLabels {
    via: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RejectLabels {
    via: &'static str,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ContentLabels {
    content: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutboxLabels {
    outbox: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PluginLabels {
    plugin: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PluginKindLabels {
    plugin: String,
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PluginNameLabels {
    plugin: String,
    name: String,
}

type FloatGauge = Gauge<f64, AtomicU64>;
type HistogramFamily = Family<PluginLabels, Histogram, fn() -> Histogram>;

/// Where an event came in, for the `via` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// [`Relay::emit`](crate::Relay::emit) in-process.
    Api,
    /// `POST /v1/events`.
    Http,
    /// An outbox table (`[ingest.outbox.<name>]`).
    Outbox,
    /// A webhook source (`[ingest.webhook.<name>]`).
    Webhook,
    /// A file source (`[ingest.file.<name>]`).
    File,
    /// A poller (`[ingest.poll.<name>]`).
    Poll,
}

impl Via {
    fn label(self) -> &'static str {
        match self {
            Via::Api => "api",
            Via::Http => "http",
            Via::Outbox => "outbox",
            Via::Webhook => "webhook",
            Via::File => "file",
            Via::Poll => "poll",
        }
    }
}

/// Every metric the relay exports; cheap to share (`Arc`).
pub struct Metrics {
    registry: Registry,
    accepted: Family<ViaLabels, Counter>,
    rejected: Family<RejectLabels, Counter>,
    set_aside: Family<ViaLabels, Counter>,
    spool_events: Gauge,
    spool_bytes: Gauge,
    spool_pending: Gauge,
    spool_segments: Gauge,
    dedup_window_ids: Gauge,
    spool_dropped: Counter,
    spool_dropped_seen: AtomicU64,
    duplicates: Family<ContentLabels, Counter>,
    http_connections: Gauge,
    http_closed: Family<ReasonLabels, Counter>,
    streams: Gauge,
    streams_ended: Family<ReasonLabels, Counter>,
    outbox_pending: Family<OutboxLabels, Gauge>,
    outbox_oldest: Family<OutboxLabels, FloatGauge>,
    outbox_rejected: Family<OutboxLabels, Counter>,
    outbox_errors: Family<OutboxLabels, Counter>,
    delivered: Family<PluginLabels, Counter>,
    dead_letters: Family<PluginLabels, Counter>,
    failures: Family<PluginKindLabels, Counter>,
    retries: Family<PluginLabels, Counter>,
    traps: Family<PluginKindLabels, Counter>,
    restarts: Family<PluginLabels, Counter>,
    log_suppressed: Family<PluginLabels, Counter>,
    circuit: Family<PluginLabels, Gauge>,
    lag: Family<PluginLabels, Gauge>,
    batch_seconds: HistogramFamily,
    custom_counters: Family<PluginNameLabels, Counter>,
    custom_gauges: Family<PluginNameLabels, FloatGauge>,
}

fn batch_histogram() -> Histogram {
    // 50 µs .. ~26 s
    Histogram::new(exponential_buckets(0.000_05, 2.0, 20))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let mut metrics = Metrics {
            registry: Registry::with_prefix("auditrelay"),
            accepted: Family::default(),
            rejected: Family::default(),
            set_aside: Family::default(),
            spool_events: Gauge::default(),
            spool_bytes: Gauge::default(),
            spool_pending: Gauge::default(),
            spool_segments: Gauge::default(),
            dedup_window_ids: Gauge::default(),
            spool_dropped: Counter::default(),
            spool_dropped_seen: AtomicU64::new(0),
            duplicates: Family::default(),
            http_connections: Gauge::default(),
            http_closed: Family::default(),
            streams: Gauge::default(),
            streams_ended: Family::default(),
            outbox_pending: Family::default(),
            outbox_oldest: Family::default(),
            outbox_rejected: Family::default(),
            outbox_errors: Family::default(),
            delivered: Family::default(),
            dead_letters: Family::default(),
            failures: Family::default(),
            retries: Family::default(),
            traps: Family::default(),
            restarts: Family::default(),
            log_suppressed: Family::default(),
            circuit: Family::default(),
            lag: Family::default(),
            batch_seconds: Family::new_with_constructor(batch_histogram),
            custom_counters: Family::default(),
            custom_gauges: Family::default(),
        };
        let r = &mut metrics.registry;
        r.register(
            "events_accepted",
            "Events taken into the spool",
            metrics.accepted.clone(),
        );
        r.register(
            "events_rejected",
            "Events refused at the door",
            metrics.rejected.clone(),
        );
        r.register(
            "events_set_aside",
            "Events taken with invalid optional fields set aside into their metadata",
            metrics.set_aside.clone(),
        );
        r.register(
            "spool_events",
            "Events held for at least one plugin",
            metrics.spool_events.clone(),
        );
        r.register(
            "spool_bytes",
            "Bytes held for at least one plugin",
            metrics.spool_bytes.clone(),
        );
        r.register(
            "spool_pending_bytes",
            "Bytes accepted but not yet written to the spool's files",
            metrics.spool_pending.clone(),
        );
        r.register(
            "spool_segments",
            "Spool segment files",
            metrics.spool_segments.clone(),
        );
        r.register(
            "dedup_window_ids",
            "Identities the dedup window remembers now",
            metrics.dedup_window_ids.clone(),
        );
        r.register(
            "spool_dropped_events",
            "Events pushed out of a full spool (when_full = drop_oldest)",
            metrics.spool_dropped.clone(),
        );
        r.register(
            "duplicate_events",
            "Accepted events whose (source, id) a recent one already had, by whether the content differs",
            metrics.duplicates.clone(),
        );
        r.register(
            "http_connections",
            "HTTP connections open now",
            metrics.http_connections.clone(),
        );
        r.register(
            "http_connections_closed",
            "HTTP connections closed to make room (evicted_idle) or turned away (refused_full)",
            metrics.http_closed.clone(),
        );
        r.register(
            "streams",
            "Live streams (GET /v1/stream) open now",
            metrics.streams.clone(),
        );
        r.register(
            "streams_ended",
            "Live streams the relay ended, by why: slow (the client read too slowly), stopping",
            metrics.streams_ended.clone(),
        );
        r.register(
            "outbox_pending_rows",
            "Rows committed to the outbox and not yet spooled (counted up to 100000)",
            metrics.outbox_pending.clone(),
        );
        r.register(
            "outbox_oldest_pending_seconds",
            "Age of the oldest row not yet spooled",
            metrics.outbox_oldest.clone(),
        );
        r.register(
            "outbox_rejected_rows",
            "Outbox rows moved to the rejected table",
            metrics.outbox_rejected.clone(),
        );
        r.register(
            "outbox_errors",
            "Failed reads of the outbox",
            metrics.outbox_errors.clone(),
        );
        r.register(
            "plugin_delivered_events",
            "Events the plugin acknowledged",
            metrics.delivered.clone(),
        );
        r.register(
            "plugin_dead_letter_events",
            "Events set aside as dead letters",
            metrics.dead_letters.clone(),
        );
        r.register(
            "plugin_failures",
            "Failed plugin calls by kind",
            metrics.failures.clone(),
        );
        r.register(
            "plugin_retries",
            "Batches sent again after a failure",
            metrics.retries.clone(),
        );
        r.register(
            "plugin_traps",
            "Plugin traps by cause",
            metrics.traps.clone(),
        );
        r.register(
            "plugin_restarts",
            "Plugin instances replaced after a fault",
            metrics.restarts.clone(),
        );
        r.register(
            "plugin_log_lines_suppressed",
            "Plugin log lines not logged: over the instance's log budget",
            metrics.log_suppressed.clone(),
        );
        r.register(
            "plugin_circuit_state",
            "Circuit breaker: 0 closed, 1 open, 2 half-open",
            metrics.circuit.clone(),
        );
        r.register(
            "plugin_lag_events",
            "Events accepted but not yet handled by the plugin",
            metrics.lag.clone(),
        );
        r.register(
            "plugin_batch_duration_seconds",
            "Time per deliver call",
            metrics.batch_seconds.clone(),
        );
        r.register(
            "plugin_custom",
            "Counters reported by plugins",
            metrics.custom_counters.clone(),
        );
        r.register(
            "plugin_custom_gauge",
            "Gauges reported by plugins",
            metrics.custom_gauges.clone(),
        );
        metrics
    }

    /// Counts events accepted into the spool.
    pub fn accepted(&self, via: Via, events: u64) {
        self.accepted
            .get_or_create(&ViaLabels { via: via.label() })
            .inc_by(events);
    }

    /// Counts events taken with optional fields set aside.
    pub fn set_aside(&self, via: Via, events: u64) {
        if events > 0 {
            self.set_aside
                .get_or_create(&ViaLabels { via: via.label() })
                .inc_by(events);
        }
    }

    /// Counts events refused at the door; `reason` is a short label.
    pub fn rejected(&self, via: Via, reason: &'static str, events: u64) {
        self.rejected
            .get_or_create(&RejectLabels {
                via: via.label(),
                reason,
            })
            .inc_by(events);
    }

    /// Counts accepted events whose identity a recent one had; `content`
    /// is `same` (a copy, not spooled again) or `different` (spooled).
    pub fn duplicates(&self, content: &'static str, events: u64) {
        if events > 0 {
            self.duplicates
                .get_or_create(&ContentLabels { content })
                .inc_by(events);
        }
    }

    /// Sets how many HTTP connections are open.
    pub fn http_connections(&self, open: i64) {
        self.http_connections.set(open);
    }

    /// Counts a live stream opened (`1`) or closed (`-1`).
    pub fn stream_opened(&self, change: i64) {
        self.streams.inc_by(change);
    }

    /// Counts a live stream the relay ended, by why.
    pub fn stream_ended(&self, reason: &'static str) {
        self.streams_ended
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    /// Counts an HTTP connection closed or turned away for room.
    pub fn http_connection_closed(&self, reason: &'static str) {
        self.http_closed
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    /// Sets the spool gauges from current figures (`dropped` counts since
    /// start).
    pub fn set_spool(
        &self,
        events: u64,
        disk_bytes: u64,
        pending_bytes: u64,
        segments: u64,
        dropped: u64,
        dedup_ids: u64,
    ) {
        self.dedup_window_ids.set(dedup_ids as i64);
        self.spool_events.set(events as i64);
        self.spool_bytes.set(disk_bytes as i64);
        self.spool_pending.set(pending_bytes as i64);
        self.spool_segments.set(segments as i64);
        let seen = self
            .spool_dropped_seen
            .swap(dropped, std::sync::atomic::Ordering::Relaxed);
        self.spool_dropped.inc_by(dropped.saturating_sub(seen));
    }

    /// The handles of one plugin instance, resolved once so the delivery
    /// path never looks labels up.
    pub fn plugin(self: &Arc<Self>, instance: &str) -> PluginMetrics {
        let labels = PluginLabels {
            plugin: instance.to_owned(),
        };
        PluginMetrics {
            instance: instance.to_owned(),
            delivered: self.delivered.get_or_create_owned(&labels),
            dead_letters: self.dead_letters.get_or_create_owned(&labels),
            retries: self.retries.get_or_create_owned(&labels),
            restarts: self.restarts.get_or_create_owned(&labels),
            log_suppressed: self.log_suppressed.get_or_create_owned(&labels),
            circuit: self.circuit.get_or_create_owned(&labels),
            lag: self.lag.get_or_create_owned(&labels),
            batch_seconds: self.batch_seconds.get_or_create_owned(&labels),
            custom_names: Arc::new(Mutex::new(HashSet::new())),
            all: self.clone(),
        }
    }

    /// The handles of one outbox, resolved once.
    pub fn outbox(&self, name: &str) -> OutboxMetrics {
        let labels = OutboxLabels {
            outbox: name.to_owned(),
        };
        OutboxMetrics {
            pending: self.outbox_pending.get_or_create_owned(&labels),
            oldest: self.outbox_oldest.get_or_create_owned(&labels),
            rejected: self.outbox_rejected.get_or_create_owned(&labels),
            errors: self.outbox_errors.get_or_create_owned(&labels),
        }
    }

    /// The whole registry in Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(8 * 1024);
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

/// The metrics of one outbox. Clones share the same series.
#[derive(Clone)]
pub struct OutboxMetrics {
    pending: Gauge,
    oldest: FloatGauge,
    rejected: Counter,
    errors: Counter,
}

impl OutboxMetrics {
    /// What waits in the table: rows, and the oldest one's age.
    pub fn backlog(&self, rows: u64, oldest_seconds: f64) {
        self.pending.set(rows as i64);
        self.oldest.set(oldest_seconds);
    }

    /// Counts rows moved to the rejected table.
    pub fn rejected(&self, rows: u64) {
        self.rejected.inc_by(rows);
    }

    /// Counts a failed read.
    pub fn error(&self) {
        self.errors.inc();
    }
}

/// The metrics of one plugin instance. Clones share the same series.
#[derive(Clone)]
pub struct PluginMetrics {
    instance: String,
    delivered: Counter,
    dead_letters: Counter,
    retries: Counter,
    restarts: Counter,
    log_suppressed: Counter,
    circuit: Gauge,
    lag: Gauge,
    batch_seconds: Histogram,
    custom_names: Arc<Mutex<HashSet<String>>>,
    all: Arc<Metrics>,
}

impl PluginMetrics {
    /// Counts acknowledged events.
    pub fn delivered(&self, events: u64) {
        self.delivered.inc_by(events);
    }

    /// Counts events set aside as dead letters.
    pub fn dead_lettered(&self, events: u64) {
        self.dead_letters.inc_by(events);
    }

    /// Counts a failed call; `kind` is `retryable`, `permanent` or `fault`.
    pub fn failure(&self, kind: &'static str) {
        self.all
            .failures
            .get_or_create(&PluginKindLabels {
                plugin: self.instance.clone(),
                kind,
            })
            .inc();
    }

    /// Counts a batch sent again.
    pub fn retry(&self) {
        self.retries.inc();
    }

    /// Counts a trap by its cause label.
    pub fn trap(&self, kind: &'static str) {
        self.all
            .traps
            .get_or_create(&PluginKindLabels {
                plugin: self.instance.clone(),
                kind,
            })
            .inc();
    }

    /// Counts a log line suppressed by the instance's log budget.
    pub fn log_line_suppressed(&self) {
        self.log_suppressed.inc();
    }

    /// Counts an instance replaced after a fault.
    pub fn restart(&self) {
        self.restarts.inc();
    }

    /// Sets the circuit state gauge (0 closed, 1 open, 2 half-open).
    pub fn circuit_state(&self, state: i64) {
        self.circuit.set(state);
    }

    /// Sets the lag gauge.
    pub fn lag(&self, events: u64) {
        self.lag.set(events as i64);
    }

    /// Records the duration of one `deliver` call.
    pub fn batch_duration(&self, seconds: f64) {
        self.batch_seconds.observe(seconds);
    }

    /// Adds to a plugin-defined counter. Returns `false` (and changes
    /// nothing) if the name is invalid or the plugin has too many metrics.
    pub fn custom_counter_add(&self, name: &str, delta: u64) -> bool {
        if !self.admit_custom(name) {
            return false;
        }
        self.all
            .custom_counters
            .get_or_create(&self.custom_labels(name))
            .inc_by(delta);
        true
    }

    /// Sets a plugin-defined gauge; see [`custom_counter_add`](Self::custom_counter_add).
    pub fn custom_gauge_set(&self, name: &str, value: f64) -> bool {
        if !self.admit_custom(name) {
            return false;
        }
        self.all
            .custom_gauges
            .get_or_create(&self.custom_labels(name))
            .set(value);
        true
    }

    fn custom_labels(&self, name: &str) -> PluginNameLabels {
        PluginNameLabels {
            plugin: self.instance.clone(),
            name: name.to_owned(),
        }
    }

    fn admit_custom(&self, name: &str) -> bool {
        if !is_metric_name(name) {
            return false;
        }
        let mut names = self.custom_names.lock().unwrap_or_else(|e| e.into_inner());
        if names.contains(name) {
            return true;
        }
        if names.len() >= MAX_CUSTOM_METRICS {
            return false;
        }
        names.insert(name.to_owned());
        true
    }
}

/// `[a-z][a-z0-9_]*`, at most 64 bytes (the WIT contract).
fn is_metric_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    name.len() <= 64
        && bytes.next().is_some_and(|b| b.is_ascii_lowercase())
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_plugin_series_with_labels() {
        let metrics = Arc::new(Metrics::new());
        let file = metrics.plugin("file");
        file.delivered(3);
        file.trap("panic");
        file.circuit_state(1);
        metrics.accepted(Via::Http, 5);
        let text = metrics.render();
        assert!(
            text.contains("auditrelay_plugin_delivered_events_total{plugin=\"file\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("auditrelay_plugin_traps_total{plugin=\"file\",kind=\"panic\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("auditrelay_plugin_circuit_state{plugin=\"file\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("auditrelay_events_accepted_total{via=\"http\"} 5"),
            "{text}"
        );
    }

    #[test]
    fn custom_metrics_are_checked_and_capped() {
        let metrics = Arc::new(Metrics::new());
        let plugin = metrics.plugin("p");
        assert!(plugin.custom_counter_add("bytes_written", 10));
        assert!(!plugin.custom_counter_add("Bad-Name", 1));
        assert!(!plugin.custom_counter_add("", 1));
        for i in 1..MAX_CUSTOM_METRICS {
            assert!(plugin.custom_gauge_set(&format!("g{i}"), 1.0));
        }
        assert!(!plugin.custom_gauge_set("one_too_many", 1.0));
        assert!(
            plugin.custom_counter_add("bytes_written", 1),
            "known names still count"
        );
        let text = metrics.render();
        assert!(
            text.contains("auditrelay_plugin_custom_total{plugin=\"p\",name=\"bytes_written\"} 11"),
            "{text}"
        );
    }
}
