//! `auditrelay check`

use std::process::ExitCode;
use std::sync::Arc;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::relay::{start_instance, start_mapper_instance};
use crate::runtime::Exporter;
use crate::runtime::catalog::{Catalog, CatalogEntry};
use crate::runtime::services::PluginServices;
use crate::runtime::wasm::WasmRuntime;

/// Checks the config (already loaded, so valid), loads every plugin file
/// and starts each enabled instance and each webhook source's mapper once,
/// exactly as `run` would.
pub async fn check(config: Config) -> anyhow::Result<ExitCode> {
    println!("config {}: valid", config.origin);
    let runtime = Arc::new(WasmRuntime::new(Some(config.cache_dir()))?);
    let spinner = super::spinner("loading plugins");
    let catalog = Catalog::scan(
        &runtime,
        &config.relay.plugin_dir,
        config.load_limits(),
        |path| spinner.set_message(format!("compiling {}", path.display())),
    )
    .await;
    spinner.finish_and_clear();
    let catalog = catalog?;
    for entry in catalog.entries() {
        match entry {
            CatalogEntry::Loaded(plugin) => println!(
                "plugin file {}: {} {} ({})",
                plugin.path().display(),
                plugin.info().name,
                plugin.info().version,
                plugin.kind().as_str()
            ),
            CatalogEntry::Broken(error) => println!("plugin file {error} (skipped)"),
        }
    }

    let metrics = Arc::new(Metrics::new());
    let mut failures = 0;
    for (instance, settings) in config.enabled_plugins() {
        let started = start_instance(
            &catalog,
            instance,
            settings,
            metrics.plugin(instance),
            config.relay.disk_reserve.as_u64(),
        );
        match started.await {
            Ok((plugin, mut exporter)) => {
                exporter.shutdown().await;
                println!(
                    "ok   [plugins.{instance}]: {} {} starts",
                    plugin.info().name,
                    plugin.info().version
                );
            }
            Err(error) => {
                failures += 1;
                println!("FAIL [plugins.{instance}]: {error}");
            }
        }
    }
    let webhooks = config
        .ingest
        .webhook
        .iter()
        .filter(|(_, w)| w.enabled)
        .map(|(name, w)| ("webhook", name, &w.mapper));
    let files = config
        .ingest
        .file
        .iter()
        .filter(|(_, f)| f.enabled)
        .map(|(name, f)| ("file", name, &f.mapper));
    let polls = config
        .ingest
        .poll
        .iter()
        .filter(|(_, p)| p.enabled)
        .map(|(name, p)| ("poll", name, &p.mapper));
    for (kind, name, mapper) in webhooks.chain(files).chain(polls) {
        let Some(mapper) = mapper else {
            continue;
        };
        let source = format!("ingest.{kind}.{name}");
        let services = PluginServices::new(&format!("{kind}.{name}"), mapper.secrets.clone(), None);
        match start_mapper_instance(&catalog, &source, mapper, services).await {
            Ok(mut instance) => {
                instance.shutdown().await;
                println!("ok   [{source}.mapper]: {} starts", mapper.plugin);
            }
            Err(error) => {
                failures += 1;
                println!("FAIL [{source}.mapper]: {error}");
            }
        }
    }
    if failures > 0 {
        println!("{failures} enabled plugin instance(s) or source mapper(s) cannot start");
        return Ok(ExitCode::FAILURE);
    }
    println!("everything checks out");
    Ok(ExitCode::SUCCESS)
}
