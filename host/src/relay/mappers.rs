//! The mapper plugins of sources: found in the plugin directory like
//! exporters, started in the same sandbox, and run on the relay's plugin
//! threads (never on a thread serving HTTP).

use std::sync::Arc;

use auditrelay_plugin_api::mapper::Mapped;

use super::Relay;
use crate::config::MapperSettings;
use crate::runtime::catalog::{Catalog, LoadedPlugin, Wanted};
use crate::runtime::services::PluginServices;
use crate::runtime::wasm::{MapperInstance, RecordBatch, Sandbox};
use crate::runtime::{LaunchError, PluginKind};

/// A source's running mapper. Calls are taken one at a time.
pub(crate) struct SourceMapper {
    instance: Arc<tokio::sync::Mutex<MapperInstance>>,
    threads: tokio::runtime::Handle,
    services: PluginServices,
}

impl Relay {
    /// Starts the mapper `settings` name for `source` (its key prefix in
    /// messages, e.g. `ingest.webhook.shop`), labelled `label` in logs and
    /// metrics, on the plugin threads. The error names the key and the fix.
    pub(crate) async fn start_mapper(
        &self,
        source: &str,
        label: &str,
        settings: &MapperSettings,
    ) -> Result<SourceMapper, String> {
        let services = PluginServices::new(
            label,
            settings.secrets.clone(),
            Some(self.inner.metrics.plugin(label)),
        );
        let (catalog, threads) = (
            self.inner.catalog.clone(),
            self.inner.plugin_threads.clone(),
        );
        let (source_key, settings_owned, task_services) =
            (source.to_owned(), settings.clone(), services.clone());
        let instance = threads
            .spawn(async move {
                start_mapper_instance(&catalog, &source_key, &settings_owned, task_services).await
            })
            .await
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic.into_panic()))?;
        Ok(SourceMapper {
            instance: Arc::new(tokio::sync::Mutex::new(instance)),
            threads,
            services,
        })
    }
}

/// Finds the mapper `settings` name in `catalog` and starts an instance
/// served by `services`, as a source (`source`: its key prefix, e.g.
/// `ingest.webhook.shop`) would; `auditrelay check` runs exactly this. The
/// error names the key and the fix.
pub(crate) async fn start_mapper_instance(
    catalog: &Catalog,
    source: &str,
    settings: &MapperSettings,
    services: PluginServices,
) -> Result<MapperInstance, String> {
    let wanted = Wanted {
        plugin: Some(&settings.plugin),
        path: settings.path.as_deref(),
        kind: Some(PluginKind::Wasm),
    };
    let plugin = catalog
        .resolve(&format!("{source}.mapper"), wanted)
        .await
        .map_err(|e| e.replacen("plugins.", "", 1))?;
    let mapper = match &*plugin {
        LoadedPlugin::Mapper(mapper) => mapper.clone(),
        other => {
            return Err(format!(
                "{source}.mapper: {} is an exporter plugin, not a mapper; name a mapper (such as json-map) here",
                other.path().display()
            ));
        }
    };
    let sandbox = Sandbox {
        config_json: serde_json::to_string(&settings.config)
            .expect("a TOML table always converts to JSON"),
        memory_limit: settings.limits.memory.as_u64(),
        call_timeout: settings.limits.timeout,
        services: services.clone(),
        ..Sandbox::describe_only()
    };
    MapperInstance::start(mapper, sandbox)
        .await
        .map_err(|error: LaunchError| {
            format!(
                "{source}.mapper ({}): {}",
                plugin.path().display(),
                services.admit(&error.to_string())
            )
        })
}

impl SourceMapper {
    /// Maps `batch` on the plugin threads: one answer per record. The
    /// error (nothing mapped, nothing to keep) when the relay is shutting
    /// down or the host failed.
    pub(crate) async fn map(&self, batch: Arc<RecordBatch>) -> Result<Vec<Mapped>, String> {
        let instance = self.instance.clone();
        let mapped = self
            .threads
            .spawn(async move { instance.lock().await.map(&batch).await })
            .await;
        mapped.map_err(|error| {
            if error.is_panic() {
                tracing::error!("mapping crashed in the host: {error}");
                "mapping failed in the relay itself (a bug: see the relay's log); retry".to_owned()
            } else {
                "the relay is shutting down; retry".to_owned()
            }
        })
    }

    /// Text about the mapper's answers as the relay may show it: the
    /// mapper's secrets masked, capped.
    pub(crate) fn admit(&self, text: &str) -> String {
        self.services.admit(text)
    }

    /// Whether `text` holds one of the mapper's secrets.
    pub(crate) fn holds_secret(&self, text: &str) -> bool {
        self.services.holds_secret(text)
    }
}
