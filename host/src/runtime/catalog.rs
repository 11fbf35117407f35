//! The plugins found in `plugin_dir`.
//!
//! Every `*.wasm` file in the directory (not its subdirectories) can be
//! compiled, linked and asked to `describe` itself; every `*.so` file
//! opened in a plugin runner process, its ABI version checked, and asked
//! the same. A plugin is known by the name it gives there, not by its file
//! name. A file that cannot be used is reported by name and skipped: the
//! others still run. Finding a plugin enables nothing; only a
//! `[plugins.<name>]` table does.
//!
//! Listing the directory costs one `stat` per file; a file is loaded only
//! when something needs it. [`Catalog::resolve`] loads the file an
//! instance names with `path`, or else the files in order of how likely
//! they are to hold the plugin (files named after it first) until one
//! does, so a relay compiles only what it runs. `auditrelay plugins` and
//! `auditrelay check` load everything ([`Catalog::load_all`]), and only
//! then can they tell that two files provide the same plugin. Loading is
//! bounded by [`LoadLimits`] (file size, compile time), and what a plugin
//! says about itself is bounded too ([`bounded_info`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::OnceCell;

use super::native::{self, NativePlugin};
use super::wasm::{WasmComponent, WasmMapper, WasmPlugin, WasmRuntime};
use super::{LoadError, LoadLimits, PluginInfo};
use crate::runtime::PluginKind;

/// Which plugin an instance asks for: its settings' `plugin`, `path` and
/// `kind`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Wanted<'a> {
    /// The `describe` name (default: the instance name).
    pub plugin: Option<&'a str>,
    /// A file in the plugin directory, which wins over `plugin`.
    pub path: Option<&'a Path>,
    /// Only a plugin of this kind will do.
    pub kind: Option<PluginKind>,
}

/// A usable plugin file of either kind.
#[derive(Debug)]
pub enum LoadedPlugin {
    /// A WebAssembly exporter component, compiled and linked.
    Wasm(Arc<WasmPlugin>),
    /// A WebAssembly mapper component (world `mapper-plugin`), compiled
    /// and linked: a source's mapper, never a `[plugins.<name>]` instance.
    Mapper(Arc<WasmMapper>),
    /// A native shared library that described itself.
    Native(NativePlugin),
}

impl LoadedPlugin {
    /// The file.
    pub fn path(&self) -> &Path {
        match self {
            LoadedPlugin::Wasm(p) => &p.path,
            LoadedPlugin::Mapper(p) => &p.path,
            LoadedPlugin::Native(p) => &p.path,
        }
    }

    /// SHA-256 of the file, in hex.
    pub fn sha256(&self) -> &str {
        match self {
            LoadedPlugin::Wasm(p) => &p.sha256,
            LoadedPlugin::Mapper(p) => &p.sha256,
            LoadedPlugin::Native(p) => &p.sha256,
        }
    }

    /// What the plugin says about itself.
    pub fn info(&self) -> &PluginInfo {
        match self {
            LoadedPlugin::Wasm(p) => &p.info,
            LoadedPlugin::Mapper(p) => &p.info,
            LoadedPlugin::Native(p) => &p.info,
        }
    }

    /// Which kind of plugin it is.
    pub fn kind(&self) -> PluginKind {
        match self {
            LoadedPlugin::Wasm(_) | LoadedPlugin::Mapper(_) => PluginKind::Wasm,
            LoadedPlugin::Native(_) => PluginKind::Native,
        }
    }

    /// The contract it implements: the WIT package and world, or the C
    /// ABI version.
    pub fn interface(&self) -> String {
        let wit = auditrelay_plugin_api::WIT_VERSION;
        match self {
            LoadedPlugin::Wasm(_) => {
                format!("auditrelay:plugin@{wit}, world exporter-plugin (WIT)")
            }
            LoadedPlugin::Mapper(_) => {
                format!("auditrelay:plugin@{wit}, world mapper-plugin (WIT)")
            }
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
pub struct Catalog {
    /// Where the files were found.
    pub dir: PathBuf,
    files: Vec<CatalogFile>,
    runtime: Arc<WasmRuntime>,
    limits: LoadLimits,
}

/// One plugin file, loaded when first needed.
struct CatalogFile {
    path: PathBuf,
    kind: PluginKind,
    entry: OnceCell<CatalogEntry>,
}

/// The plugin directory could not be read.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot read plugin_dir {}: {source} (set relay.plugin_dir, or AUDITRELAY_PLUGIN_DIR for the embedded default)",
    dir.display()
)]
pub struct PluginDirError {
    /// The directory.
    pub dir: PathBuf,
    /// The operating system's error.
    #[source]
    pub source: std::io::Error,
}

impl Catalog {
    /// The `.wasm` and `.so` files in `dir`, none of them loaded yet.
    pub fn open(
        runtime: &Arc<WasmRuntime>,
        dir: &Path,
        limits: LoadLimits,
    ) -> Result<Catalog, PluginDirError> {
        let mut files: Vec<PathBuf> = match std::fs::read_dir(dir) {
            Ok(entries) => entries
                .filter_map(|entry| entry.ok().map(|e| e.path()))
                .filter(|path| PluginKind::of_file(path).is_some() && path.is_file())
                .collect(),
            Err(source) => {
                return Err(PluginDirError {
                    dir: dir.to_owned(),
                    source,
                });
            }
        };
        files.sort();
        Ok(Catalog {
            dir: dir.to_owned(),
            files: files
                .into_iter()
                .map(|path| CatalogFile {
                    kind: PluginKind::of_file(&path).expect("filtered above"),
                    path,
                    entry: OnceCell::new(),
                })
                .collect(),
            runtime: runtime.clone(),
            limits,
        })
    }

    /// Opens `dir` and loads every file in it; `on_file` is called before
    /// each (for progress output).
    pub async fn scan(
        runtime: &Arc<WasmRuntime>,
        dir: &Path,
        limits: LoadLimits,
        on_file: impl FnMut(&Path),
    ) -> Result<Catalog, PluginDirError> {
        let catalog = Self::open(runtime, dir, limits)?;
        catalog.load_all(on_file).await;
        Ok(catalog)
    }

    /// Loads every file not loaded yet.
    pub async fn load_all(&self, mut on_file: impl FnMut(&Path)) {
        for file in &self.files {
            if file.entry.get().is_none() {
                on_file(&file.path);
            }
            self.load(file).await;
        }
    }

    async fn load<'a>(&'a self, file: &'a CatalogFile) -> &'a CatalogEntry {
        file.entry
            .get_or_init(|| async {
                let loaded = match file.kind {
                    PluginKind::Native => native::describe(&file.path, &self.limits)
                        .await
                        .and_then(|p| {
                            let info =
                                bounded_info(p.info).map_err(|r| LoadError::new(&p.path, r))?;
                            Ok(LoadedPlugin::Native(NativePlugin { info, ..p }))
                        }),
                    PluginKind::Wasm => {
                        let bounded = |info: &PluginInfo| {
                            bounded_info(info.clone()).map_err(|r| LoadError::new(&file.path, r))
                        };
                        match self.runtime.load_any(&file.path, &self.limits).await {
                            Ok(WasmComponent::Exporter(mut p)) => bounded(&p.info).map(|info| {
                                p.info = info;
                                LoadedPlugin::Wasm(Arc::new(p))
                            }),
                            Ok(WasmComponent::Mapper(mut p)) => bounded(&p.info).map(|info| {
                                p.info = info;
                                LoadedPlugin::Mapper(Arc::new(p))
                            }),
                            Err(error) => Err(error),
                        }
                    }
                };
                match loaded {
                    Ok(plugin) => CatalogEntry::Loaded(Arc::new(plugin)),
                    Err(error) => {
                        tracing::warn!("skipping a plugin file: {error}");
                        CatalogEntry::Broken(error)
                    }
                }
            })
            .await
    }

    /// The files loaded so far, in file name order (every file after
    /// [`load_all`](Self::load_all)).
    pub fn entries(&self) -> impl Iterator<Item = &CatalogEntry> {
        self.files.iter().filter_map(|file| file.entry.get())
    }

    /// The usable plugins loaded so far.
    pub fn loaded(&self) -> impl Iterator<Item = &Arc<LoadedPlugin>> {
        self.entries().filter_map(|entry| match entry {
            CatalogEntry::Loaded(plugin) => Some(plugin),
            CatalogEntry::Broken(_) => None,
        })
    }

    /// The plugin an instance runs: the file named by `path`, else the one
    /// whose `describe` name is `plugin` (default: the instance name) and,
    /// if `kind` is set, of that kind. Loads files as needed: files named
    /// after the plugin first, the rest in name order, until one provides
    /// it; then the files already loaded are checked for a second provider.
    pub async fn resolve(
        &self,
        instance: &str,
        wanted: Wanted<'_>,
    ) -> Result<Arc<LoadedPlugin>, String> {
        if let Some(path) = wanted.path {
            let path = self.dir.join(path);
            if let (Some(wanted), Some(found)) = (wanted.kind, PluginKind::of_file(&path))
                && wanted != found
            {
                return Err(format!(
                    "plugins.{instance}: kind = \"{}\" but path {} is a {} plugin; fix one of the two",
                    wanted.as_str(),
                    path.display(),
                    found.as_str()
                ));
            }
            let Some(file) = self.files.iter().find(|f| f.path == path) else {
                return Err(format!(
                    "plugins.{instance}.path: {} is not a .wasm or .so file in plugin_dir {}",
                    path.display(),
                    self.dir.display()
                ));
            };
            return match self.load(file).await {
                CatalogEntry::Loaded(plugin) => Ok(plugin.clone()),
                CatalogEntry::Broken(error) => Err(error.to_string()),
            };
        }
        let name = wanted.plugin.unwrap_or(instance);
        let provides =
            |p: &LoadedPlugin| p.info().name == name && wanted.kind.is_none_or(|k| k == p.kind());
        let mut order: Vec<&CatalogFile> = self
            .files
            .iter()
            .filter(|f| wanted.kind.is_none_or(|k| k == f.kind))
            .collect();
        order.sort_by_key(|f| !named_after(&f.path, name));
        for file in order {
            if let CatalogEntry::Loaded(plugin) = self.load(file).await
                && provides(plugin)
            {
                break;
            }
        }
        let matches: Vec<&Arc<LoadedPlugin>> = self.loaded().filter(|p| provides(p)).collect();
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
        let broken: Vec<String> = self
            .entries()
            .filter_map(|e| match e {
                CatalogEntry::Broken(error) => Some(error.to_string()),
                CatalogEntry::Loaded(_) => None,
            })
            .collect();
        let mut message = format!(
            "plugins.{instance}: no plugin named {name:?} in {}",
            self.dir.display()
        );
        if known.is_empty() {
            message.push_str(" (it holds no usable .wasm or .so file");
        } else {
            message.push_str(&format!(" (found: {}", known.join(", ")));
        }
        if !broken.is_empty() {
            message.push_str(&format!(
                "; {} file(s) could not be loaded: {}",
                broken.len(),
                broken.join("; ")
            ));
        }
        message
            .push_str("); build or copy the plugin there, or set `plugin` to one of those names");
        message
    }
}

/// Whether a file's stem names the plugin: `file.wasm` or
/// `libauditrelay_plugin_file.so` for `file`.
fn named_after(path: &Path, plugin: &str) -> bool {
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
    let stem = stem.replace('-', "_");
    let plugin = plugin.replace('-', "_");
    stem == plugin || stem.ends_with(&format!("_{plugin}"))
}

/// The most config keys a plugin may describe.
const MAX_CONFIG_KEYS: usize = 128;

/// What a plugin says about itself, within bounds: a name of at most 64
/// bytes and a version of at most 64 (refused otherwise: they label logs,
/// metrics and status), descriptions cut to 1 KiB, at most 128 config keys
/// (each name at most 64 bytes, its default cut to 256).
pub fn bounded_info(info: PluginInfo) -> Result<PluginInfo, String> {
    let short = |what: &str, text: &str| {
        if text.is_empty() || text.len() > 64 || text.chars().any(char::is_control) {
            Err(format!(
                "describe() returned a {what} of {} bytes; it must be 1 to 64 bytes without control characters",
                text.len()
            ))
        } else {
            Ok(())
        }
    };
    short("name", &info.name)?;
    short("version", &info.version)?;
    if info.config_keys.len() > MAX_CONFIG_KEYS {
        return Err(format!(
            "describe() listed {} config keys; at most {MAX_CONFIG_KEYS}",
            info.config_keys.len()
        ));
    }
    let cut = |text: String, max: usize| super::services::cut(&text, max).to_owned();
    let mut keys = Vec::with_capacity(info.config_keys.len());
    for key in info.config_keys {
        short("config key name", &key.name)?;
        keys.push(auditrelay_plugin_api::ConfigKey {
            description: cut(key.description, 1024),
            default_value: key.default_value.map(|d| cut(d, 256)),
            ..key
        });
    }
    Ok(PluginInfo {
        description: cut(info.description, 1024),
        config_keys: keys,
        ..info
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_named_after_a_plugin_are_tried_first() {
        assert!(named_after(Path::new("d/file.wasm"), "file"));
        assert!(named_after(
            Path::new("d/libauditrelay_plugin_splunk_hec.so"),
            "splunk-hec"
        ));
        assert!(!named_after(Path::new("d/profile.wasm"), "file"));
    }

    #[test]
    fn what_a_plugin_says_about_itself_is_bounded() {
        let mut info = PluginInfo::new("counter", "0.1.0", "x".repeat(100_000));
        info.config_keys.push(auditrelay_plugin_api::ConfigKey {
            name: "url".into(),
            description: "y".repeat(100_000),
            required: false,
            default_value: Some("z".repeat(100_000)),
        });
        let bounded = bounded_info(info.clone()).unwrap();
        assert_eq!(bounded.description.len(), 1024);
        assert_eq!(
            bounded.config_keys[0].default_value.as_ref().unwrap().len(),
            256
        );
        info.name = "n".repeat(65);
        assert!(bounded_info(info).unwrap_err().contains("name of 65 bytes"));
    }
}
