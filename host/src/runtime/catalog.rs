//! The plugins found in `plugin_dir`.
//!
//! Every `*.wasm` file in the directory (not its subdirectories) is
//! compiled, linked and asked to `describe` itself; every `*.so` file is
//! opened in a plugin runner process, its ABI version checked, and asked
//! the same. A plugin is known by the name it gives there, not by its file
//! name. A file that cannot be used is reported by name and skipped: the
//! others still run. Finding a plugin enables nothing; only a
//! `[plugins.<name>]` table does.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::native::{self, NativePlugin};
use super::wasm::{WasmPlugin, WasmRuntime};
use super::{LoadError, PluginInfo};
use crate::config::{PluginKind, PluginSettings};

/// A usable plugin file of either kind.
#[derive(Debug)]
pub enum LoadedPlugin {
    /// A WebAssembly component, compiled and linked.
    Wasm(Arc<WasmPlugin>),
    /// A native shared library that described itself.
    Native(NativePlugin),
}

impl LoadedPlugin {
    /// The file.
    pub fn path(&self) -> &Path {
        match self {
            LoadedPlugin::Wasm(p) => &p.path,
            LoadedPlugin::Native(p) => &p.path,
        }
    }

    /// SHA-256 of the file, in hex.
    pub fn sha256(&self) -> &str {
        match self {
            LoadedPlugin::Wasm(p) => &p.sha256,
            LoadedPlugin::Native(p) => &p.sha256,
        }
    }

    /// What the plugin says about itself.
    pub fn info(&self) -> &PluginInfo {
        match self {
            LoadedPlugin::Wasm(p) => &p.info,
            LoadedPlugin::Native(p) => &p.info,
        }
    }

    /// Which kind of plugin it is.
    pub fn kind(&self) -> PluginKind {
        match self {
            LoadedPlugin::Wasm(_) => PluginKind::Wasm,
            LoadedPlugin::Native(_) => PluginKind::Native,
        }
    }

    /// The contract it implements: the WIT package or the C ABI version.
    pub fn interface(&self) -> String {
        match self {
            LoadedPlugin::Wasm(_) => format!(
                "auditrelay:plugin@{} (WIT)",
                auditrelay_plugin_api::WIT_VERSION
            ),
            LoadedPlugin::Native(_) => format!(
                "native ABI {} (include/auditrelay_plugin.h)",
                native::ABI_VERSION
            ),
        }
    }
}

/// One file of the plugin directory.
#[derive(Debug, Clone)]
pub enum CatalogEntry {
    /// A usable plugin.
    Loaded(Arc<LoadedPlugin>),
    /// A file that cannot be used, and why.
    Broken(LoadError),
}

/// Everything found in one plugin directory.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    /// Where the files were found.
    pub dir: PathBuf,
    /// One entry per `.wasm` or `.so` file, in file name order.
    pub entries: Vec<CatalogEntry>,
}

impl Catalog {
    /// Loads every `.wasm` and `.so` file in `dir`; `on_file` is called
    /// before each (for progress output).
    pub async fn scan(
        runtime: &Arc<WasmRuntime>,
        dir: &Path,
        mut on_file: impl FnMut(&Path),
    ) -> Result<Catalog, String> {
        let mut files: Vec<PathBuf> = match std::fs::read_dir(dir) {
            Ok(entries) => entries
                .filter_map(|entry| entry.ok().map(|e| e.path()))
                .filter(|path| PluginKind::of_file(path).is_some() && path.is_file())
                .collect(),
            Err(error) => {
                return Err(format!(
                    "cannot read plugin_dir {}: {error} (set relay.plugin_dir, or AUDITRELAY_PLUGIN_DIR for the embedded default)",
                    dir.display()
                ));
            }
        };
        files.sort();
        let mut entries = Vec::with_capacity(files.len());
        for file in files {
            on_file(&file);
            let loaded = match PluginKind::of_file(&file) {
                Some(PluginKind::Native) => native::describe(&file).await.map(LoadedPlugin::Native),
                _ => runtime
                    .load(&file)
                    .await
                    .map(|p| LoadedPlugin::Wasm(Arc::new(p))),
            };
            entries.push(match loaded {
                Ok(plugin) => CatalogEntry::Loaded(Arc::new(plugin)),
                Err(error) => {
                    tracing::warn!("skipping a plugin file: {error}");
                    CatalogEntry::Broken(error)
                }
            });
        }
        Ok(Catalog {
            dir: dir.to_owned(),
            entries,
        })
    }

    /// The usable plugins.
    pub fn loaded(&self) -> impl Iterator<Item = &Arc<LoadedPlugin>> {
        self.entries.iter().filter_map(|entry| match entry {
            CatalogEntry::Loaded(plugin) => Some(plugin),
            CatalogEntry::Broken(_) => None,
        })
    }

    /// The plugin an instance runs: the file named by `path`, else the one
    /// whose `describe` name is `plugin` (default: the instance name) and,
    /// if `kind` is set, of that kind.
    pub fn resolve(
        &self,
        instance: &str,
        settings: &PluginSettings,
    ) -> Result<Arc<LoadedPlugin>, String> {
        if let Some(path) = &settings.path {
            let path = self.dir.join(path);
            if let (Some(wanted), Some(found)) = (settings.kind, PluginKind::of_file(&path))
                && wanted != found
            {
                return Err(format!(
                    "plugins.{instance}: kind = \"{}\" but path {} is a {} plugin; fix one of the two",
                    wanted.as_str(),
                    path.display(),
                    found.as_str()
                ));
            }
            return self
                .entries
                .iter()
                .find_map(|entry| match entry {
                    CatalogEntry::Loaded(p) if p.path() == path => Some(Ok(p.clone())),
                    CatalogEntry::Broken(e) if e.path == path => Some(Err(e.to_string())),
                    _ => None,
                })
                .unwrap_or_else(|| {
                    Err(format!(
                        "plugins.{instance}.path: {} is not a .wasm or .so file in plugin_dir {}",
                        path.display(),
                        self.dir.display()
                    ))
                });
        }
        let name = settings.plugin.as_deref().unwrap_or(instance);
        let matches: Vec<&Arc<LoadedPlugin>> = self
            .loaded()
            .filter(|p| p.info().name == name && settings.kind.is_none_or(|k| k == p.kind()))
            .collect();
        match matches.as_slice() {
            [plugin] => Ok((*plugin).clone()),
            [] => Err(self.not_found(instance, name)),
            several => Err(format!(
                "plugins.{instance}: {} files provide plugin {name:?} ({}); remove all but one, or choose with `path` (or `kind`)",
                several.len(),
                several
                    .iter()
                    .map(|p| p.path().display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        }
    }

    fn not_found(&self, instance: &str, name: &str) -> String {
        let known: Vec<String> = self
            .loaded()
            .map(|p| format!("{} ({})", p.info().name, p.kind().as_str()))
            .collect();
        let broken = self
            .entries
            .iter()
            .filter(|e| matches!(e, CatalogEntry::Broken(_)))
            .count();
        let mut message = format!(
            "plugins.{instance}: no plugin named {name:?} in {}",
            self.dir.display()
        );
        if known.is_empty() {
            message.push_str(" (it holds no usable .wasm or .so file");
        } else {
            message.push_str(&format!(" (found: {}", known.join(", ")));
        }
        if broken > 0 {
            message.push_str(&format!(
                "; {broken} file(s) could not be loaded, see above"
            ));
        }
        message
            .push_str("); build or copy the plugin there, or set `plugin` to one of those names");
        message
    }
}
