//! Bringing a relay up: the spool, the plugins, one worker per instance.

use std::sync::Arc;

use tokio::sync::Notify;

use crate::config::{
    Config, DurabilityMode, Isolation, PluginSettings, StartFromMode, WhenFullMode,
};
use crate::dispatch::{
    Backoff, Circuit, DeadLetters, Dispatcher, EventFilter, Health, PluginStatus, WorkerParts,
};
use crate::metrics::{Metrics, PluginMetrics};
use crate::runtime::AnyExporter;
use crate::runtime::catalog::{Catalog, LoadedPlugin};
use crate::runtime::native::{ChildInstance, InProcessInstance, NativeSettings};
use crate::runtime::wasm::{Sandbox, WasmInstance, WasmRuntime};
use crate::spool::{ConsumerId, Durability, SpoolOptions, StartFrom, WhenFull};

use super::StartError;

/// One enabled instance, running or not.
pub(super) struct Instance {
    pub name: String,
    pub consumer: ConsumerId,
    pub health: Health,
    pub dead_letters: Arc<DeadLetters>,
    /// Asks the worker to replay dead letters (none if not running).
    pub replay: Option<Arc<Notify>>,
}

/// The spool's options from the configuration.
pub(super) fn spool_options(config: &Config) -> SpoolOptions {
    let spool = &config.spool;
    SpoolOptions {
        dir: config.relay.data_dir.join("spool"),
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
    }
}

/// Where the dead letters of every instance are kept.
pub(crate) fn dead_letter_dir(config: &Config) -> std::path::PathBuf {
    config.relay.data_dir.join("dead-letters")
}

/// Starts every enabled instance. One that cannot start still registers
/// its cursor, so the spool keeps its events until it runs again.
pub(super) async fn start_instances(
    config: &Config,
    metrics: &Arc<Metrics>,
    spool: &Arc<crate::spool::Spool>,
    threads: &tokio::runtime::Handle,
) -> Result<(Dispatcher, Vec<Instance>), StartError> {
    let runtime = Arc::new(
        WasmRuntime::new(Some(config.cache_dir()))
            .map_err(|e| StartError::Runtime(format!("{e:#}")))?,
    );
    let catalog = Catalog::scan(&runtime, &config.relay.plugin_dir, |_| {})
        .await
        .map_err(StartError::PluginDir)?;
    let mut dispatcher = Dispatcher::new();
    let mut instances = Vec::new();
    for (name, settings) in config.enabled_plugins() {
        let start = match settings.start_from {
            StartFromMode::Now => StartFrom::Now,
            StartFromMode::Earliest => StartFrom::Earliest,
        };
        let consumer = spool.consumer(name, start, true);
        let dead_letters = Arc::new(DeadLetters::new(&dead_letter_dir(config), name));
        let plugin_metrics = metrics.plugin(name);
        let started = start_instance(&catalog, name, settings, plugin_metrics.clone()).await;
        let (plugin, exporter) = match started {
            Ok(started) => started,
            Err(error) => {
                tracing::error!(
                    plugin = name,
                    "cannot start: {error}; its events stay in the spool until it runs"
                );
                let health = Health::new(PluginStatus::failed(name, error));
                instances.push(Instance {
                    name: name.to_owned(),
                    consumer,
                    health,
                    dead_letters,
                    replay: None,
                });
                continue;
            }
        };
        let info = plugin.info();
        let health = Health::running(name, &info.name, &info.version, plugin.path().to_owned());
        let replay = Arc::new(Notify::new());
        let retry = &settings.retry;
        let parts = WorkerParts {
            instance: Arc::from(name),
            spool: spool.clone(),
            consumer,
            reader: spool.reader(consumer),
            batch: settings.batch.clone(),
            backoff: Backoff::new(retry.initial_backoff, retry.max_backoff),
            circuit: Circuit::new(retry.circuit_after, retry.circuit_open_for),
            filter: EventFilter::new(&settings.filter),
            dead_letters: dead_letters.clone(),
            replay: replay.clone(),
            metrics: plugin_metrics,
            health: health.clone(),
            isolate_after: retry.isolate_after,
            abort: dispatcher.abort_token(),
        };
        tracing::info!(
            plugin = name,
            name = info.name,
            version = info.version,
            kind = plugin.kind().as_str(),
            isolation = settings.isolation.map(|i| i.as_str()),
            file = %plugin.path().display(),
            cursor = spool.cursor(consumer),
            "plugin started"
        );
        dispatcher.spawn(threads, exporter, parts);
        instances.push(Instance {
            name: name.to_owned(),
            consumer,
            health,
            dead_letters,
            replay: Some(replay),
        });
    }
    Ok((dispatcher, instances))
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
) -> Result<(Arc<LoadedPlugin>, AnyExporter), String> {
    let plugin = catalog.resolve(instance, settings)?;
    if let Some(dir) = &settings.grant_dir {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create grant_dir {}: {e}", dir.display()))?;
    }
    let exporter = match &*plugin {
        LoadedPlugin::Wasm(wasm) => {
            if let Some(isolation) = settings.isolation {
                return Err(format!(
                    "plugins.{instance}.isolation = \"{}\" applies to native plugins only; {} is a WASM plugin, which always runs sandboxed (remove the key)",
                    isolation.as_str(),
                    wasm.path.display()
                ));
            }
            let sandbox = Sandbox::from_settings(instance, settings, metrics);
            AnyExporter::Wasm(
                WasmInstance::start(wasm.clone(), sandbox)
                    .await
                    .map_err(|e| format!("{}: {e}", wasm.path.display()))?,
            )
        }
        LoadedPlugin::Native(native) => {
            let settings = NativeSettings::from_settings(instance, settings, metrics);
            match settings.isolation {
                Isolation::Process => {
                    AnyExporter::Process(ChildInstance::start(&native.path, settings).await?)
                }
                Isolation::InProcess => {
                    AnyExporter::InProcess(InProcessInstance::start(&native.path, settings)?)
                }
            }
        }
    };
    Ok((plugin, exporter))
}
