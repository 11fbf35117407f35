//! [`Relay`]: the running relay, for in-process use and behind the CLI.

use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use auditrelay_plugin_api::envelope::{AuditEventEnvelope, Limits, ValidationErrors};
use serde::Serialize;

use crate::config::{Config, PluginSettings};
use crate::dispatch::{
    Backoff, Circuit, DeadLetters, Dispatcher, EventFilter, Health, PluginStatus, WorkerParts,
};
use crate::metrics::{Metrics, PluginMetrics, Via};
use crate::runtime::catalog::Catalog;
use crate::runtime::wasm::{LoadedPlugin, Sandbox, WasmInstance, WasmRuntime};
use crate::spool::{ConsumerId, Record, Spool, SpoolError, SpoolStats};

/// How often [`Relay::idle`] looks at the plugins' progress.
const IDLE_POLL: Duration = Duration::from_millis(5);

/// Why the relay could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The plugin runtime could not be set up.
    #[error("cannot start the plugin runtime: {0}")]
    Runtime(String),
    /// The plugin directory could not be read.
    #[error("{0}")]
    PluginDir(String),
    /// No enabled plugin could be started, so accepted events would have
    /// nowhere to go.
    #[error("no enabled plugin could be started:\n{}", list_failures(.0))]
    NoPlugins(Vec<PluginStatus>),
}

fn list_failures(failed: &[PluginStatus]) -> String {
    failed
        .iter()
        .map(|status| {
            format!(
                "  - {}: {}",
                status.instance,
                status.error.as_deref().unwrap_or("unknown error")
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Why events were not accepted. Nothing of a refused call was kept.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EmitError {
    /// An event breaks the envelope rules; `index` is its position in a
    /// batch (none for a single event).
    #[error("{}invalid event: {errors}", index.map(|i| format!("event {i}: ")).unwrap_or_default())]
    Invalid {
        /// Position in the batch.
        index: Option<usize>,
        /// Every violated rule.
        errors: ValidationErrors,
    },
    /// The spool refused the events (full, or shutting down).
    #[error(transparent)]
    Spool(#[from] SpoolError),
}

/// Proof that events were accepted: their positions in the spool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    seqs: Range<u64>,
}

impl Receipt {
    /// Spool positions of the accepted events.
    pub fn seqs(&self) -> Range<u64> {
        self.seqs.clone()
    }

    /// How many events were accepted.
    pub fn len(&self) -> usize {
        (self.seqs.end - self.seqs.start) as usize
    }

    /// Whether no events were accepted (an empty batch).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The relay's state as `GET /v1/status` reports it.
#[derive(Debug, Clone, Serialize)]
pub struct RelayStatus {
    /// Every configured, enabled instance.
    pub plugins: Vec<PluginStatus>,
    /// Events held by the spool.
    pub spool_events: u64,
    /// Bytes held by the spool.
    pub spool_bytes: u64,
}

impl RelayStatus {
    /// The status of one instance.
    pub fn plugin(&self, instance: &str) -> Option<&PluginStatus> {
        self.plugins.iter().find(|p| p.instance == instance)
    }
}

/// What a shutdown left behind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Instances that had not delivered everything by `shutdown_timeout`,
    /// with the events they still had.
    pub undelivered: Vec<(String, u64)>,
}

/// A running relay: accepts events and delivers them to plugins.
///
/// ```no_run
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// use auditrelay::{Config, Relay};
/// use auditrelay::envelope::{Actor, AuditEventEnvelope, Outcome};
///
/// let relay = Relay::start(Config::load("relay.toml".as_ref())?).await?;
/// // ... after the database transaction committed:
/// let event = AuditEventEnvelope::builder("billing-api", "invoice.approved")
///     .actor(Actor::user("u-42"))
///     .outcome(Outcome::Success)
///     .build()?;
/// relay.emit(event)?; // returns at once; plugins deliver in the background
/// relay.shutdown().await;
/// # Ok(()) }
/// ```
///
/// Cloning is cheap and every clone is the same relay. Plugin code runs on
/// the relay's own threads (`relay.plugin_threads`), never on the caller's.
#[derive(Clone)]
pub struct Relay {
    inner: Arc<Inner>,
}

struct Inner {
    spool: Arc<Spool>,
    metrics: Arc<Metrics>,
    limits: Limits,
    shutdown_timeout: Duration,
    /// Running instances and their cursors.
    running: Vec<(Health, ConsumerId)>,
    /// Instances that could not be started.
    failed: Vec<PluginStatus>,
    dispatcher: tokio::sync::Mutex<Option<Dispatcher>>,
    threads: Mutex<Option<tokio::runtime::Runtime>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Dropping a runtime blocks, which is not allowed inside async code.
        if let Some(threads) = self
            .threads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            threads.shutdown_background();
        }
    }
}

impl Relay {
    /// Loads the plugins, starts every enabled instance and begins
    /// delivering. An instance that cannot start is reported in
    /// [`status`](Self::status) (and logged) while the others run; it is an
    /// error only if none can.
    pub async fn start(config: Config) -> Result<Relay, StartError> {
        let threads = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(config.relay.plugin_threads)
            .thread_name("auditrelay-plugin")
            .enable_all()
            .build()
            .map_err(|e| StartError::Runtime(e.to_string()))?;
        let metrics = Arc::new(Metrics::new());
        let capacity =
            usize::try_from(config.relay.max_buffered_bytes.as_u64()).unwrap_or(usize::MAX);
        let spool = Arc::new(Spool::new(capacity));
        let limits = Limits {
            max_event_bytes: usize::try_from(config.relay.max_event_bytes.as_u64())
                .unwrap_or(usize::MAX),
            ..Limits::default()
        };

        // Plugins are loaded and started on the plugin threads, so anything
        // they spawn (HTTP connections) lives there too.
        let started = {
            let (config, metrics, spool) = (config.clone(), metrics.clone(), spool.clone());
            let handle = threads.handle().clone();
            threads
                .spawn(async move { start_instances(&config, &metrics, &spool, &handle).await })
                .await
                .map_err(|e| StartError::Runtime(e.to_string()))??
        };
        let (dispatcher, running, failed) = started;
        if running.is_empty() {
            threads.shutdown_background();
            return Err(StartError::NoPlugins(failed));
        }
        Ok(Relay {
            inner: Arc::new(Inner {
                spool,
                metrics,
                limits,
                shutdown_timeout: config.relay.shutdown_timeout,
                running,
                failed,
                dispatcher: tokio::sync::Mutex::new(Some(dispatcher)),
                threads: Mutex::new(Some(threads)),
            }),
        })
    }

    /// Accepts one event. Returns once it is in the spool; never waits for
    /// a plugin. Call it after your database transaction committed.
    pub fn emit(&self, event: AuditEventEnvelope) -> Result<Receipt, EmitError> {
        let record = Record::from_envelope(event, &self.inner.limits).map_err(|errors| {
            self.inner.metrics.rejected(Via::Api, "invalid", 1);
            EmitError::Invalid {
                index: None,
                errors,
            }
        })?;
        self.accept(vec![record], Via::Api)
    }

    /// Accepts a batch atomically: all events, or none if any is invalid
    /// or the spool is full.
    pub fn emit_batch(&self, events: Vec<AuditEventEnvelope>) -> Result<Receipt, EmitError> {
        let count = events.len() as u64;
        let records = events
            .into_iter()
            .enumerate()
            .map(|(index, event)| {
                Record::from_envelope(event, &self.inner.limits).map_err(|errors| {
                    EmitError::Invalid {
                        index: Some(index),
                        errors,
                    }
                })
            })
            .collect::<Result<Vec<_>, _>>()
            .inspect_err(|_| self.inner.metrics.rejected(Via::Api, "invalid", count))?;
        self.accept(records, Via::Api)
    }

    /// Appends already-normalized records (the ingest endpoints use this).
    pub(crate) fn accept(&self, records: Vec<Record>, via: Via) -> Result<Receipt, EmitError> {
        let count = records.len() as u64;
        match self.inner.spool.append(records) {
            Ok(seqs) => {
                self.inner.metrics.accepted(via, count);
                Ok(Receipt { seqs })
            }
            Err(error) => {
                let reason = match error {
                    SpoolError::Full { .. } => "full",
                    SpoolError::Closed => "closed",
                };
                self.inner.metrics.rejected(via, reason, count);
                Err(error.into())
            }
        }
    }

    /// Counts events refused before they reached [`accept`](Self::accept).
    pub(crate) fn count_rejected(&self, via: Via, reason: &'static str, events: u64) {
        self.inner.metrics.rejected(via, reason, events);
    }

    /// The envelope limits events are checked against.
    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    /// Resolves once every running plugin has handled every event accepted
    /// so far (delivered or set aside), or after `timeout`; returns whether
    /// all had.
    pub async fn idle(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let behind = self
                .inner
                .running
                .iter()
                .any(|(_, consumer)| self.inner.spool.lag(*consumer).0 > 0);
            if !behind {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(IDLE_POLL).await;
        }
    }

    /// Every enabled instance, running or not.
    pub fn status(&self) -> RelayStatus {
        let spool = self.inner.spool.stats();
        let mut plugins: Vec<PluginStatus> = self
            .inner
            .running
            .iter()
            .map(|(health, consumer)| {
                let mut status = health.snapshot();
                (status.lag_events, status.lag_bytes) = self.inner.spool.lag(*consumer);
                status
            })
            .collect();
        plugins.extend(self.inner.failed.iter().cloned());
        plugins.sort_by(|a, b| a.instance.cmp(&b.instance));
        RelayStatus {
            plugins,
            spool_events: spool.records as u64,
            spool_bytes: spool.bytes as u64,
        }
    }

    /// Every metric, in Prometheus text format.
    pub fn metrics_text(&self) -> String {
        let SpoolStats { records, bytes, .. } = self.inner.spool.stats();
        self.inner.metrics.set_spool(records as u64, bytes as u64);
        self.inner.metrics.render()
    }

    /// Stops accepting events, delivers what the spool holds (for up to
    /// `relay.shutdown_timeout`), flushes and shuts every plugin down.
    /// Calling it again does nothing.
    pub async fn shutdown(&self) -> ShutdownReport {
        self.inner.spool.close();
        let Some(dispatcher) = self.inner.dispatcher.lock().await.take() else {
            return ShutdownReport::default();
        };
        dispatcher.drain(self.inner.shutdown_timeout).await;
        let undelivered: Vec<(String, u64)> = self
            .inner
            .running
            .iter()
            .map(|(health, consumer)| {
                (
                    health.snapshot().instance,
                    self.inner.spool.lag(*consumer).0,
                )
            })
            .filter(|(_, lag)| *lag > 0)
            .collect();
        for (instance, events) in &undelivered {
            tracing::error!(
                plugin = instance,
                events,
                "shutdown timeout reached before these events were delivered; they are lost (raise relay.shutdown_timeout)"
            );
        }
        if let Some(threads) = self
            .inner
            .threads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            threads.shutdown_background();
        }
        ShutdownReport { undelivered }
    }
}

type Started = (Dispatcher, Vec<(Health, ConsumerId)>, Vec<PluginStatus>);

async fn start_instances(
    config: &Config,
    metrics: &Arc<Metrics>,
    spool: &Arc<Spool>,
    threads: &tokio::runtime::Handle,
) -> Result<Started, StartError> {
    let runtime = Arc::new(
        WasmRuntime::new(Some(config.cache_dir()))
            .map_err(|e| StartError::Runtime(format!("{e:#}")))?,
    );
    let catalog = Catalog::scan(&runtime, &config.relay.plugin_dir, |_| {})
        .await
        .map_err(StartError::PluginDir)?;
    let dead_letter_dir = config.relay.data_dir.join("dead-letters");
    let mut dispatcher = Dispatcher::new();
    let mut running = Vec::new();
    let mut failed = Vec::new();
    for (instance, settings) in config.enabled_plugins() {
        let plugin_metrics = metrics.plugin(instance);
        let (plugin, exporter) =
            match start_instance(&catalog, instance, settings, plugin_metrics.clone()).await {
                Ok(started) => started,
                Err(error) => {
                    tracing::error!(plugin = instance, "cannot start: {error}");
                    failed.push(PluginStatus::failed(instance, error));
                    continue;
                }
            };
        let health = Health::running(
            instance,
            &plugin.info.name,
            &plugin.info.version,
            plugin.path.clone(),
        );
        let consumer = spool.add_consumer();
        let retry = &settings.retry;
        let parts = WorkerParts {
            instance: Arc::from(instance),
            spool: spool.clone(),
            consumer,
            batch: settings.batch.clone(),
            backoff: Backoff::new(retry.initial_backoff, retry.max_backoff),
            circuit: Circuit::new(retry.circuit_after, retry.circuit_open_for),
            filter: EventFilter::new(&settings.filter),
            dead_letters: DeadLetters::new(&dead_letter_dir, instance),
            metrics: plugin_metrics,
            health: health.clone(),
            abort: dispatcher.abort_token(),
        };
        tracing::info!(
            plugin = instance,
            name = plugin.info.name,
            version = plugin.info.version,
            file = %plugin.path.display(),
            "plugin started"
        );
        dispatcher.spawn(threads, exporter, parts);
        running.push((health, consumer));
    }
    Ok((dispatcher, running, failed))
}

/// Starts one enabled instance: finds its plugin, prepares its granted
/// directory and calls `init`. `auditrelay check` runs exactly this.
pub(crate) async fn start_instance(
    catalog: &Catalog,
    instance: &str,
    settings: &PluginSettings,
    metrics: PluginMetrics,
) -> Result<(Arc<LoadedPlugin>, WasmInstance), String> {
    let plugin = catalog.resolve(instance, settings)?;
    if let Some(dir) = &settings.grant_dir {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create grant_dir {}: {e}", dir.display()))?;
    }
    let sandbox = Sandbox::from_settings(instance, settings, metrics);
    let exporter = WasmInstance::start(plugin.clone(), sandbox)
        .await
        .map_err(|e| format!("{}: {e}", plugin.path.display()))?;
    Ok((plugin, exporter))
}
