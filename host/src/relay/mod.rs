//! [`Relay`]: the running relay, for in-process use and behind the CLI.

pub mod checkpoints;
mod duplicates;
pub(crate) mod intake;
mod mappers;
mod sources;
pub(crate) mod start;

use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use auditrelay_plugin_api::envelope::{AuditEventEnvelope, Limits, ValidationErrors};
use serde::Serialize;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::dispatch::{DeadLetters, Dispatcher, PluginStatus, RunState};
use crate::metrics::{Metrics, Via};
use crate::runtime::catalog::PluginDirError;
use crate::spool::{
    Appended, Confirmation, Record, RecoveryReport, Spool, SpoolError, SpoolOpenError, SpoolStats,
};

pub(crate) use intake::{Arrivals, Refusals, Refused, Rules};
pub(crate) use mappers::{SourceMapper, start_mapper_instance};
pub use sources::{SourceReport, SourceStatus};
use start::{Instance, Starter, spool_options};
#[cfg(feature = "cli")]
pub(crate) use start::{dead_letter_dir, start_instance};

/// How often [`Relay::idle`] looks at the plugins' progress.
const IDLE_POLL: Duration = Duration::from_millis(5);

/// Why the relay could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The spool could not be opened (another relay uses it, or its
    /// directory cannot be written).
    #[error(transparent)]
    Spool(#[from] SpoolOpenError),
    /// The plugin runtime could not be set up.
    #[error("cannot start the plugin runtime: {0}")]
    Runtime(String),
    /// The plugin directory could not be read.
    #[error(transparent)]
    PluginDir(#[from] PluginDirError),
    /// The redaction rules cannot be compiled (`auditrelay check` says
    /// the same).
    #[error("the redaction rules are invalid:\n  - {}", .0.join("\n  - "))]
    Redaction(Vec<String>),
    /// The checkpoint signing key or log cannot be used (the reason).
    #[error("tamper evidence cannot start: {0}")]
    Integrity(String),
    /// No enabled plugin can run as configured (no such plugin, a broken
    /// file, a setting that does not apply), so accepted events would have
    /// nowhere to go.
    #[error("no enabled plugin can run as configured:\n{}", list_failures(.0))]
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
    /// The events were taken in but are not durable: the spool cannot
    /// write (`reason`), so they are held in memory only and a crash would
    /// lose them. Retry; if the disk recovers first they are delivered as
    /// well, and `(source, id)` tells the copies apart.
    #[error(
        "the events are not durable: the spool cannot write to disk ({reason}); they are held in memory only, so retry (a retry may deliver them twice if the disk recovers first)"
    )]
    NotDurable {
        /// Why the spool cannot write.
        reason: String,
    },
    /// The events were appended but are not durable after `waited` (the
    /// bound `setting` set): the disk is slow. They are held in memory
    /// only, so retry, as for [`NotDurable`](Self::NotDurable).
    #[error(
        "the events are not durable after {} ({setting}): the disk is slow; they are held in memory only, so retry (a retry may deliver them twice if they are written first)",
        humantime::format_duration(*.waited)
    )]
    SlowDisk {
        /// How long the caller waited.
        waited: Duration,
        /// The setting that bounds the wait.
        setting: &'static str,
    },
}

/// Proof that events were accepted: their positions in the spool, and
/// how many were copies of events it already had.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    seqs: Range<u64>,
    copies: usize,
    /// Every accepted event is durable once the events below this are.
    durable_end: u64,
}

impl Receipt {
    /// Spool positions of the events this call spooled (copies left out).
    pub fn seqs(&self) -> Range<u64> {
        self.seqs.clone()
    }

    /// Events accepted as copies of events the relay accepted recently
    /// (same `(source, id)`, same content): not spooled again, and durable
    /// when the first copy is (`spool.dedup_ids`, `spool.dedup_age`).
    pub fn copies(&self) -> usize {
        self.copies
    }

    /// How many events were accepted, copies included.
    pub fn len(&self) -> usize {
        (self.seqs.end - self.seqs.start) as usize + self.copies
    }

    /// Whether no events were accepted (an empty batch).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Descriptors kept for the spool (segments being written and read, the
/// directory, cursors, watermark), logs and the runtime itself (epoll,
/// eventfds, pipes).
const RESERVED_DESCRIPTORS: u64 = 64;
/// Descriptors kept per plugin instance besides its HTTP requests: its
/// reader and dead letters, its granted directory and the files it opens,
/// a runner's pipes.
const DESCRIPTORS_PER_INSTANCE: u64 = 24;

fn reserved_descriptors(config: &Config) -> u64 {
    RESERVED_DESCRIPTORS
        + config
            .enabled_plugins()
            .map(|(_, p)| DESCRIPTORS_PER_INSTANCE + p.limits.http_requests as u64)
            .sum::<u64>()
}

/// The relay's state as `GET /v1/status` reports it.
#[derive(Debug, Clone, Serialize)]
pub struct RelayStatus {
    /// Every configured, enabled instance.
    pub plugins: Vec<PluginStatus>,
    /// Events in the spool that some instance has not handled yet.
    pub spool_events: u64,
    /// Bytes the spool holds on disk.
    pub spool_bytes: u64,
    /// Events pushed out of a full spool (`spool.when_full = "drop_oldest"`).
    pub spool_dropped_events: u64,
    /// Why the spool cannot write now, if it cannot.
    pub spool_write_error: Option<String>,
    /// Sources beside the relay (outbox readers), by name.
    pub sources: Vec<SourceStatus>,
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
    /// with the events left for them in the spool (delivered after the
    /// next start, not lost).
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
    reserved_descriptors: u64,
    spool: Arc<Spool>,
    metrics: Arc<Metrics>,
    duplicates: duplicates::Duplicates,
    sources: sources::Sources,
    rules: Arc<intake::Rules>,
    shutdown_timeout: Duration,
    recovery: RecoveryReport,
    instances: Vec<Arc<Instance>>,
    dispatcher: Arc<tokio::sync::Mutex<Option<Dispatcher>>>,
    /// Cancelled at shutdown: no instance is started after it.
    stopping: CancellationToken,
    /// Instances whose first start attempt has finished.
    tried: watch::Receiver<usize>,
    threads: Mutex<PluginThreads>,
    /// Signs each stream's tree every interval (`None`: no chains).
    checkpoints: Option<Arc<checkpoints::Checkpointer>>,
    /// The plugin directory, for sources' mappers.
    catalog: Arc<crate::runtime::catalog::Catalog>,
    /// Where plugin code runs.
    plugin_threads: tokio::runtime::Handle,
}

/// The relay's own runtime for plugin code. Dropping a runtime blocks,
/// which is not allowed inside async code, so it is always shut down in
/// the background instead — also when starting fails half way.
struct PluginThreads(Option<tokio::runtime::Runtime>);

impl PluginThreads {
    fn stop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

impl Drop for PluginThreads {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Relay {
    /// Opens the spool (recovering what a crash left), loads the plugins,
    /// starts every enabled instance and begins delivering; returns once
    /// every instance has been tried once ([`open`](Self::open), then
    /// [`ready`](Self::ready)). An instance whose start fails is started
    /// again with backoff, reported in [`status`](Self::status) meanwhile,
    /// while the others run; its events wait in the spool. It is an error
    /// only if no instance can run as configured at all.
    pub async fn start(config: Config) -> Result<Relay, StartError> {
        let relay = Self::open(config).await?;
        relay.ready().await?;
        Ok(relay)
    }

    /// Opens the spool and returns at once: events are accepted (and held
    /// in the spool) while the plugins load and start in the background.
    /// `auditrelay run` serves HTTP from here on, so a plugin that is slow
    /// to compile never keeps events out.
    pub async fn open(config: Config) -> Result<Relay, StartError> {
        let threads = PluginThreads(Some(
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(config.relay.plugin_threads)
                .thread_name("auditrelay-plugin")
                .enable_all()
                .build()
                .map_err(|e| StartError::Runtime(e.to_string()))?,
        ));
        let handle = threads.0.as_ref().expect("just built").handle().clone();
        let metrics = Arc::new(Metrics::new());
        let options = spool_options(&config);
        let (spool, recovery) = tokio::task::spawn_blocking(move || Spool::open(options))
            .await
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic.into_panic()))?;
        if recovery.is_clean() {
            tracing::info!(spool = %spool.dir().display(), "spool opened: {recovery}");
        } else {
            tracing::error!(
                spool = %spool.dir().display(),
                lost = recovery.lost_records(),
                "spool opened with damage (undamaged events are kept and delivered): {recovery}"
            );
        }
        let spool = Arc::new(spool);
        let rules = Arc::new(intake::Rules::of(&config).map_err(|problems| {
            StartError::Redaction(
                problems
                    .into_iter()
                    .map(|(k, m)| format!("{k}: {m}"))
                    .collect(),
            )
        })?);
        let catalog = {
            let config = config.clone();
            handle
                .spawn(async move { start::catalog(&config) })
                .await
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic.into_panic()))?
        };
        let checkpoints = checkpoints::Checkpointer::open(&config, spool.clone())?.map(Arc::new);
        let instances = start::register(&config, &spool, &metrics);
        let (tried, tried_rx) = watch::channel(0);
        let catalog = Arc::new(catalog);
        let starter = Arc::new(Starter {
            catalog: catalog.clone(),
            spool: spool.clone(),
            dispatcher: Arc::new(tokio::sync::Mutex::new(Some(Dispatcher::new()))),
            threads: handle.clone(),
            stopping: CancellationToken::new(),
            tried,
            disk_reserve: config.relay.disk_reserve.as_u64(),
        });
        // Plugins are loaded and started on the plugin threads, so anything
        // they spawn (HTTP connections) lives there too.
        for instance in &instances {
            handle.spawn(starter.clone().bring_up(instance.clone()));
        }
        if let Some(checkpoints) = &checkpoints {
            checkpoints.spawn(&handle, starter.stopping.clone());
        }
        Ok(Relay {
            inner: Arc::new(Inner {
                reserved_descriptors: reserved_descriptors(&config),
                spool,
                metrics,
                duplicates: duplicates::Duplicates::default(),
                sources: sources::Sources::default(),
                rules,
                shutdown_timeout: config.relay.shutdown_timeout,
                recovery,
                instances,
                dispatcher: starter.dispatcher.clone(),
                stopping: starter.stopping.clone(),
                tried: tried_rx,
                threads: Mutex::new(threads),
                checkpoints,
                catalog,
                plugin_threads: handle,
            }),
        })
    }

    /// Resolves once every instance has been tried once: running, given
    /// up on (it cannot run as configured), or being started again after a
    /// failed start. An error only if every instance was given up on.
    pub async fn ready(&self) -> Result<(), StartError> {
        let all = self.inner.instances.len();
        let mut tried = self.inner.tried.clone();
        let _ = tried.wait_for(|n| *n >= all).await;
        let statuses: Vec<PluginStatus> = self
            .inner
            .instances
            .iter()
            .map(|i| i.telemetry.snapshot())
            .collect();
        if !statuses.is_empty() && statuses.iter().all(|s| s.state == RunState::Failed) {
            return Err(StartError::NoPlugins(statuses));
        }
        Ok(())
    }

    /// Accepts one event. Returns once it is in the spool's log, in
    /// memory on its way to disk; never waits for a plugin or the disk.
    /// Call it after your database transaction committed. To wait until it
    /// is durable, use [`emit_durable`](Self::emit_durable) or
    /// [`durable`](Self::durable).
    pub fn emit(&self, event: AuditEventEnvelope) -> Result<Receipt, EmitError> {
        let arrivals = Arrivals::one(self.rules(), event);
        Ok(self.admit(arrivals, Via::Api, Refusals::RefuseAll)?.receipt)
    }

    /// Accepts a batch atomically: all events, or none if any is invalid
    /// or the spool is full.
    pub fn emit_batch(&self, events: Vec<AuditEventEnvelope>) -> Result<Receipt, EmitError> {
        let mut arrivals = Arrivals::new(self.rules());
        for (index, event) in events.into_iter().enumerate() {
            arrivals.push(index, event);
        }
        Ok(self.admit(arrivals, Via::Api, Refusals::RefuseAll)?.receipt)
    }

    /// Accepts one event and waits until it is durable under
    /// `spool.durability`. Refused at once while the spool cannot write;
    /// [`EmitError::NotDurable`] if it starts failing before the event is
    /// safe.
    pub async fn emit_durable(&self, event: AuditEventEnvelope) -> Result<Receipt, EmitError> {
        let arrivals = Arrivals::one(self.rules(), event);
        let admitted = self
            .admit_durable(arrivals, Via::Api, Refusals::RefuseAll, None)
            .await?;
        Ok(admitted.receipt)
    }

    /// Waits until the events of `receipt` are durable under
    /// `spool.durability`; [`EmitError::NotDurable`] as soon as the spool
    /// cannot write (the events would wait in memory for as long as the
    /// disk fails).
    pub async fn durable(&self, receipt: &Receipt) -> Result<(), EmitError> {
        if receipt.durable_end == 0 {
            return Ok(());
        }
        match self.inner.spool.durable(receipt.durable_end - 1).await {
            Confirmation::Durable => Ok(()),
            Confirmation::Failing(reason) => Err(EmitError::NotDurable { reason }),
            Confirmation::Stopped => Err(EmitError::NotDurable {
                reason: self
                    .inner
                    .spool
                    .write_error()
                    .unwrap_or_else(|| "the relay shut down before writing them".into()),
            }),
        }
    }

    /// Counts what appending `records` came to.
    fn appended(
        &self,
        records: &[Record],
        appended: Result<Appended, SpoolError>,
        via: Via,
    ) -> Result<Receipt, EmitError> {
        let count = records.len() as u64;
        match appended {
            Ok(appended) => {
                self.inner.metrics.accepted(via, count);
                self.inner
                    .duplicates
                    .note(records, &appended, &self.inner.metrics);
                Ok(Receipt {
                    seqs: appended.seqs,
                    copies: appended.copies,
                    durable_end: appended.durable_end,
                })
            }
            Err(error) => {
                let reason = match error {
                    SpoolError::Full { .. } => "full",
                    SpoolError::Unwritable(_) => "unwritable",
                    SpoolError::Closed => "closed",
                };
                self.inner.metrics.rejected(via, reason, count);
                Err(error.into())
            }
        }
    }

    /// File descriptors the relay keeps for itself: the HTTP ingest takes no
    /// more connections than the open-file limit leaves after these.
    pub fn reserved_descriptors(&self) -> u64 {
        self.inner.reserved_descriptors
    }

    /// The relay's metrics (the ingest endpoints add theirs).
    pub(crate) fn metrics(&self) -> &Arc<Metrics> {
        &self.inner.metrics
    }

    /// The envelope limits events are checked against.
    pub fn limits(&self) -> &Limits {
        &self.inner.rules.limits
    }

    /// What every arriving event is held to (limits, redaction): each door
    /// gathers its [`Arrivals`] under them.
    pub(crate) fn rules(&self) -> Arc<intake::Rules> {
        self.inner.rules.clone()
    }

    /// Resolves once every running plugin has handled every event accepted
    /// so far (delivered or set aside), or after `timeout`; returns whether
    /// all had.
    pub async fn idle(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let behind = self
                .running()
                .any(|instance| self.inner.spool.lag(instance.consumer).0 > 0);
            if !behind {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(IDLE_POLL).await;
        }
    }

    fn running(&self) -> impl Iterator<Item = &Arc<Instance>> {
        self.inner.instances.iter().filter(|i| i.running())
    }

    /// What opening the spool found (a torn tail cut, damage, gaps).
    pub fn recovery(&self) -> &RecoveryReport {
        &self.inner.recovery
    }

    /// Every enabled instance, running or not.
    pub fn status(&self) -> RelayStatus {
        let stats = self.inner.spool.stats();
        let mut plugins: Vec<PluginStatus> = self
            .inner
            .instances
            .iter()
            .map(|instance| {
                let mut status = instance.telemetry.snapshot();
                (status.lag_events, status.lag_bytes) = self.inner.spool.lag(instance.consumer);
                status
            })
            .collect();
        plugins.sort_by(|a, b| a.instance.cmp(&b.instance));
        let oldest_cursor = self
            .inner
            .instances
            .iter()
            .map(|i| self.inner.spool.cursor(i.consumer))
            .min()
            .unwrap_or(stats.next_seq);
        RelayStatus {
            plugins,
            spool_events: stats.next_seq.saturating_sub(oldest_cursor),
            spool_bytes: stats.disk_bytes,
            spool_dropped_events: stats.dropped_events,
            spool_write_error: self.inner.spool.write_error(),
            sources: self.inner.sources.snapshot(),
        }
    }

    /// The most bytes of events one call may bring
    /// (`relay.max_buffered_bytes`); sources that gather events in batches
    /// keep each batch below it.
    /// The spool, for the readers that follow no instance (live streams).
    pub(crate) fn spool(&self) -> &Spool {
        &self.inner.spool
    }

    pub(crate) fn max_batch_bytes(&self) -> usize {
        self.inner.spool.max_append_bytes()
    }

    /// Registers a source that runs beside the relay; it reports its
    /// state in [`RelayStatus::sources`] through the handle.
    pub(crate) fn register_source(&self, name: String) -> SourceReport {
        self.inner.sources.register(name)
    }

    /// The dead letters of an enabled instance.
    pub fn dead_letters(&self, instance: &str) -> Option<&DeadLetters> {
        self.instance(instance).map(|i| &*i.dead_letters)
    }

    /// Asks a running instance to replay its dead letters between batches;
    /// `false` if no such instance is running.
    pub fn replay_dead_letters(&self, instance: &str) -> bool {
        match self.instance(instance).and_then(|i| i.replay.get()) {
            Some(replay) => {
                replay.notify_one();
                true
            }
            None => false,
        }
    }

    fn instance(&self, name: &str) -> Option<&Arc<Instance>> {
        self.inner.instances.iter().find(|i| i.name == name)
    }

    /// Every metric, in Prometheus text format.
    pub fn metrics_text(&self) -> String {
        let SpoolStats {
            disk_bytes,
            pending_bytes,
            segments,
            dropped_events,
            dedup_ids,
            ..
        } = self.inner.spool.stats();
        let status = self.status();
        self.inner.metrics.set_spool(
            status.spool_events,
            disk_bytes,
            pending_bytes,
            segments as u64,
            dropped_events,
            dedup_ids as u64,
        );
        self.inner.metrics.render()
    }

    /// Stops accepting events, delivers what the spool holds (for up to
    /// `relay.shutdown_timeout`), flushes and shuts every plugin down, then
    /// syncs the spool and saves every cursor. What is not delivered by
    /// then stays in the spool for the next start. Calling it again does
    /// nothing.
    pub async fn shutdown(&self) -> ShutdownReport {
        self.inner.stopping.cancel();
        if let Some(checkpoints) = self
            .inner
            .checkpoints
            .as_ref()
            .filter(|_| !self.inner.spool.is_closed())
        {
            // The last checkpoint covers every event written: wait (briefly)
            // for what is still in memory to be written first.
            let next = self.inner.spool.stats().next_seq;
            if next > 0 {
                let _ = tokio::time::timeout(
                    Duration::from_secs(2),
                    self.inner.spool.durable(next - 1),
                )
                .await;
            }
            checkpoints.round().await;
        }
        self.inner.spool.close();
        let Some(dispatcher) = self.inner.dispatcher.lock().await.take() else {
            return ShutdownReport::default();
        };
        dispatcher.drain(self.inner.shutdown_timeout).await;
        let spool = self.inner.spool.clone();
        let _ = tokio::task::spawn_blocking(move || spool.finish()).await;
        let stats = self.inner.spool.stats();
        if stats.written_seq < stats.next_seq {
            // Held in memory while the disk failed: nobody was told they
            // were durable (a 503, or emit's NotDurable), and they go now.
            tracing::error!(
                events = stats.next_seq - stats.written_seq,
                error = self.inner.spool.write_error().unwrap_or_default(),
                "accepted events could not be written to disk before shutdown and are lost; none of them was acknowledged as durable"
            );
        }
        let undelivered: Vec<(String, u64)> = self
            .inner
            .instances
            .iter()
            .map(|i| (i.name.clone(), self.inner.spool.lag(i.consumer).0))
            .filter(|(_, lag)| *lag > 0)
            .collect();
        for (instance, events) in &undelivered {
            tracing::warn!(
                plugin = instance,
                events,
                "not delivered before shutdown; they stay in the spool and go out after the next start"
            );
        }
        self.inner
            .threads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .stop();
        ShutdownReport { undelivered }
    }
}
