//! Bringing a relay's instances up: each registered with the spool at
//! once (so the spool keeps its events from the first moment), then loaded
//! and started in the background, and started again with backoff while
//! its start fails — a destination that is down when the relay starts, a
//! granted directory not mounted yet. Only an instance that cannot run as
//! configured (no such plugin, a broken file, a setting that does not
//! apply) is given up on, until the next start.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::sync::{Mutex, Notify, watch};
use tokio_util::sync::CancellationToken;

use crate::config::{
    AllowList, Config, DurabilityMode, Isolation, PluginSettings, StartFromMode, WhenFullMode,
};
use crate::dispatch::{
    Backoff, Circuit, DeadLetters, Dispatcher, EventFilter, Telemetry, WorkerParts,
};
use crate::metrics::{Metrics, PluginMetrics};
use crate::runtime::catalog::{Catalog, LoadedPlugin, Wanted};
use crate::runtime::native::{ChildInstance, InProcessInstance, NativeSettings};
use crate::runtime::services::PluginServices;
use crate::runtime::wasm::{GrantQuota, Sandbox, WasmInstance, WasmRuntime};
use crate::runtime::{AnyExporter, LaunchError};
use crate::spool::{ConsumerId, DedupWindow, Durability, Spool, SpoolOptions, StartFrom, WhenFull};

/// The shortest wait before starting a failed instance again.
const FIRST_RESTART: Duration = Duration::from_secs(1);

/// One enabled instance, running or not.
pub(super) struct Instance {
    pub name: String,
    pub settings: PluginSettings,
    pub consumer: ConsumerId,
    pub telemetry: Telemetry,
    pub dead_letters: Arc<DeadLetters>,
    /// Asks the worker to replay dead letters; set once it runs.
    pub replay: OnceLock<Arc<Notify>>,
}

impl Instance {
    /// Whether its worker runs.
    pub fn running(&self) -> bool {
        self.replay.get().is_some()
    }
}

/// Why an instance could not be started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StartFailure {
    /// It cannot run as configured (no such plugin, a broken file, a
    /// setting that does not apply to it): not tried again.
    Permanent(String),
    /// Starting failed this time (init refused, crashed or timed out, the
    /// granted directory cannot be opened): tried again with backoff.
    Retryable(String),
}

impl std::fmt::Display for StartFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartFailure::Permanent(why) | StartFailure::Retryable(why) => f.write_str(why),
        }
    }
}

/// The spool's options from the configuration.
pub(super) fn spool_options(config: &Config) -> SpoolOptions {
    let spool = &config.spool;
    SpoolOptions {
        dir: config.relay.data_dir.spool(),
        durability: match spool.durability {
            DurabilityMode::Always => Durability::Always,
            DurabilityMode::Group => Durability::Group(spool.group_commit),
            DurabilityMode::None => Durability::None,
        },
        segment_bytes: spool.segment_size.as_u64(),
        max_bytes: spool.max_size.as_u64(),
        when_full: match spool.when_full {
            WhenFullMode::Reject => WhenFull::Reject,
            WhenFullMode::Block => WhenFull::Block,
            WhenFullMode::DropOldest => WhenFull::DropOldest,
        },
        block_timeout: spool.block_timeout,
        max_pending_bytes: usize::try_from(config.relay.max_buffered_bytes.as_u64())
            .unwrap_or(usize::MAX),
        files: Default::default(),
        chain: config.integrity.chain.then_some(config.integrity.stream),
        dedup: DedupWindow {
            ids: usize::try_from(spool.dedup_ids).unwrap_or(usize::MAX),
            age: spool.dedup_age,
        },
    }
}

/// Where the dead letters of every instance are kept.
pub(crate) fn dead_letter_dir(config: &Config) -> std::path::PathBuf {
    config.relay.data_dir.dead_letters()
}

/// Registers every enabled instance with the spool, none running yet.
pub(super) fn register(
    config: &Config,
    spool: &Spool,
    metrics: &Arc<Metrics>,
) -> Vec<Arc<Instance>> {
    config
        .enabled_plugins()
        .map(|(name, settings)| {
            let start = match settings.start_from {
                StartFromMode::Now => StartFrom::Now,
                StartFromMode::Earliest => StartFrom::Earliest,
            };
            Arc::new(Instance {
                name: name.to_owned(),
                settings: settings.clone(),
                consumer: spool.consumer(name, start, true),
                telemetry: Telemetry::new(
                    name,
                    metrics.plugin(name),
                    Circuit::new(
                        settings.retry.circuit_after,
                        settings.retry.circuit_open_for,
                    ),
                ),
                dead_letters: Arc::new(DeadLetters::new(&dead_letter_dir(config), name)),
                replay: OnceLock::new(),
            })
        })
        .collect()
}

/// What starting instances in the background needs.
pub(super) struct Starter {
    pub catalog: Arc<Catalog>,
    pub spool: Arc<Spool>,
    pub dispatcher: Arc<Mutex<Option<Dispatcher>>>,
    pub threads: tokio::runtime::Handle,
    /// Cancelled when the relay shuts down: no more (re)starts.
    pub stopping: CancellationToken,
    /// Counts instances whose first start attempt has finished.
    pub tried: watch::Sender<usize>,
    /// Free space WASM plugins' writes never take (`relay.disk_reserve`).
    pub disk_reserve: u64,
}

impl Starter {
    /// Starts `instance`, again and again with backoff while its start
    /// fails in a way that may pass.
    pub async fn bring_up(self: Arc<Self>, instance: Arc<Instance>) {
        let name = instance.name.as_str();
        let retry = &instance.settings.retry;
        let backoff = Backoff::new(retry.initial_backoff.max(FIRST_RESTART), retry.max_backoff);
        let metrics = instance.telemetry.metrics().clone();
        let mut failures = 0u32;
        loop {
            let started = start_instance(
                &self.catalog,
                name,
                &instance.settings,
                metrics.clone(),
                self.disk_reserve,
            )
            .await;
            let retry_in = match started {
                Ok((plugin, exporter)) => {
                    self.run(&instance, &plugin, exporter).await;
                    self.tried.send_modify(|n| *n += 1);
                    return;
                }
                Err(StartFailure::Permanent(error)) => {
                    tracing::error!(
                        plugin = name,
                        "cannot start: {error}; its events stay in the spool until it runs"
                    );
                    instance.telemetry.cannot_run(error);
                    self.tried.send_modify(|n| *n += 1);
                    return;
                }
                Err(StartFailure::Retryable(error)) => {
                    failures += 1;
                    let retry_in = backoff.delay(failures, None);
                    tracing::warn!(
                        plugin = name,
                        attempts = failures,
                        retry_in = %humantime::format_duration(retry_in),
                        "cannot start: {error}; trying again (its events stay in the spool)"
                    );
                    instance.telemetry.start_failed(error);
                    if failures == 1 {
                        self.tried.send_modify(|n| *n += 1);
                    }
                    retry_in
                }
            };
            tokio::select! {
                () = tokio::time::sleep(retry_in) => {}
                () = self.stopping.cancelled() => return,
            }
        }
    }

    /// Hands a started instance to its worker, unless the relay is
    /// stopping meanwhile.
    async fn run(&self, instance: &Instance, plugin: &LoadedPlugin, mut exporter: AnyExporter) {
        let name = instance.name.as_str();
        let mut dispatcher = self.dispatcher.lock().await;
        let Some(dispatcher) = dispatcher
            .as_mut()
            .filter(|_| !self.stopping.is_cancelled())
        else {
            crate::runtime::Exporter::shutdown(&mut exporter).await;
            return;
        };
        let info = plugin.info();
        instance
            .telemetry
            .running(&info.name, &info.version, plugin.path().to_owned());
        let replay = Arc::new(Notify::new());
        let retry = &instance.settings.retry;
        let parts = WorkerParts {
            instance: Arc::from(name),
            spool: self.spool.clone(),
            consumer: instance.consumer,
            reader: self.spool.reader(instance.consumer),
            batch: instance.settings.batch.clone(),
            backoff: Backoff::new(retry.initial_backoff, retry.max_backoff),
            filter: EventFilter::new(&instance.settings.filter),
            dead_letters: instance.dead_letters.clone(),
            replay: replay.clone(),
            telemetry: instance.telemetry.clone(),
            isolate_after: retry.isolate_after,
            abort: dispatcher.abort_token(),
        };
        tracing::info!(
            plugin = name,
            name = info.name,
            version = info.version,
            kind = plugin.kind().as_str(),
            isolation = instance.settings.isolation.map(|i| i.as_str()),
            file = %plugin.path().display(),
            sha256 = plugin.sha256(),
            cursor = self.spool.cursor(instance.consumer),
            "plugin started"
        );
        dispatcher.spawn(&self.threads, exporter, parts);
        let _ = instance.replay.set(replay);
    }
}

/// Opens the plugin directory and a WASM runtime for `config`.
pub(super) fn catalog(config: &Config) -> Result<Catalog, super::StartError> {
    let runtime = Arc::new(
        WasmRuntime::new(Some(config.cache_dir()))
            .map_err(|e| super::StartError::Runtime(format!("{e:#}")))?,
    );
    Catalog::open(&runtime, &config.relay.plugin_dir, config.load_limits())
        .map_err(super::StartError::from)
}

/// Starts one enabled instance: finds its plugin, prepares its granted
/// directory and calls `init` (in the sandbox, a runner process or the
/// relay's own, as the plugin's kind and `isolation` say).
/// `auditrelay check` runs exactly this.
pub(crate) async fn start_instance(
    catalog: &Catalog,
    instance: &str,
    settings: &PluginSettings,
    metrics: PluginMetrics,
    disk_reserve: u64,
) -> Result<(Arc<LoadedPlugin>, AnyExporter), StartFailure> {
    let plugin = catalog
        .resolve(
            instance,
            Wanted {
                plugin: settings.plugin.as_deref(),
                path: settings.path.as_deref(),
                kind: settings.kind,
            },
        )
        .await
        .map_err(StartFailure::Permanent)?;
    if let LoadedPlugin::Mapper(mapper) = &*plugin {
        return Err(StartFailure::Permanent(format!(
            "plugins.{instance}: {} is a mapper plugin (world mapper-plugin), which maps a source's records and delivers nothing; name it as a source's mapper, and enable an exporter here",
            mapper.path.display()
        )));
    }
    if let (LoadedPlugin::Wasm(wasm), Some(isolation)) = (&*plugin, settings.isolation) {
        return Err(StartFailure::Permanent(format!(
            "plugins.{instance}.isolation = \"{}\" applies to native plugins only; {} is a WASM plugin, which always runs sandboxed (remove the key)",
            isolation.as_str(),
            wasm.path.display()
        )));
    }
    if let Some(dir) = &settings.grant_dir {
        std::fs::create_dir_all(dir).map_err(|e| {
            StartFailure::Retryable(format!("cannot create grant_dir {}: {e}", dir.display()))
        })?;
    }
    let services = PluginServices::new(instance, settings.secrets.clone(), Some(metrics));
    // What init said comes from the plugin: masked and capped like the rest.
    let exporter = start_exporter(&plugin, settings, services.clone(), disk_reserve)
        .await
        .map_err(|error| StartFailure::Retryable(services.admit(&error)))?;
    Ok((plugin, exporter))
}

/// Starts an instance of `plugin`, whatever its kind; a failure names the
/// plugin's file.
async fn start_exporter(
    plugin: &LoadedPlugin,
    settings: &PluginSettings,
    services: PluginServices,
    disk_reserve: u64,
) -> Result<AnyExporter, String> {
    let (path, started) = match plugin {
        LoadedPlugin::Wasm(wasm) => {
            let started = match sandbox(settings, services, disk_reserve) {
                Ok(sandbox) => WasmInstance::start(wasm.clone(), sandbox).await,
                Err(error) => Err(error),
            };
            (&wasm.path, started.map(AnyExporter::Wasm))
        }
        LoadedPlugin::Mapper(mapper) => {
            return Err(format!(
                "{}: is a mapper plugin, not an exporter",
                mapper.path.display()
            ));
        }
        LoadedPlugin::Native(native) => {
            let settings = native_settings(settings, services);
            let started = match settings.isolation {
                Isolation::Process => ChildInstance::start(&native.path, settings)
                    .await
                    .map(AnyExporter::Process),
                Isolation::InProcess => {
                    InProcessInstance::start(&native.path, settings).map(AnyExporter::InProcess)
                }
            };
            (&native.path, started)
        }
    };
    started.map_err(|error| format!("{}: {error}", path.display()))
}

/// The sandbox an instance's settings describe, served by `services`; its
/// writes never leave less than `disk_reserve` bytes free. The runtime gets
/// grants and limits, never the configuration itself. (`allowed_hosts` were
/// checked when the configuration was loaded; settings edited since are
/// refused here, not trusted.)
pub fn sandbox(
    settings: &PluginSettings,
    services: PluginServices,
    disk_reserve: u64,
) -> Result<Sandbox, LaunchError> {
    let config_json =
        serde_json::to_string(&settings.config).expect("a TOML table always converts to JSON");
    let allowed_hosts = AllowList::parse(&settings.allowed_hosts).map_err(|(i, problem)| {
        LaunchError::Setup(format!(
            "plugins.{}.allowed_hosts[{i}]: {problem}",
            services.instance()
        ))
    })?;
    Ok(Sandbox {
        services,
        config_json,
        allowed_hosts: Arc::new(allowed_hosts),
        quota: settings.grant_dir.as_ref().map(|dir| {
            Arc::new(GrantQuota::new(
                dir,
                settings.grant_quota.as_u64(),
                disk_reserve,
            ))
        }),
        grant_dir: settings.grant_dir.clone(),
        memory_limit: settings.limits.memory.as_u64(),
        call_timeout: settings.limits.timeout,
        http_requests: settings.limits.http_requests,
    })
}

/// What a native instance's settings give it and hold it to, served by
/// `services`.
pub fn native_settings(settings: &PluginSettings, services: PluginServices) -> NativeSettings {
    NativeSettings {
        services,
        config: serde_json::to_value(&settings.config)
            .expect("a TOML table always converts to JSON"),
        grant_dir: settings.grant_dir.clone(),
        memory_limit: settings.limits.memory.as_u64(),
        call_timeout: settings.limits.timeout,
        isolation: settings.isolation.unwrap_or_default(),
    }
}
