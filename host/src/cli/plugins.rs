//! `auditrelay plugins`

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use serde_json::json;

use crate::config::Config;
use crate::config::PluginKind;
use crate::runtime::catalog::{Catalog, CatalogEntry, LoadedPlugin};
use crate::runtime::wasm::WasmRuntime;

/// Options of `auditrelay plugins`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Directory to list instead of the configuration's plugin_dir
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Print JSON instead of text
    #[arg(long)]
    json: bool,
}

/// Lists every `.wasm` and `.so` file: what it describes, its kind,
/// interface and hash, or why it cannot be used.
pub async fn plugins(config: Config, args: Args) -> anyhow::Result<ExitCode> {
    let dir = args.dir.unwrap_or_else(|| config.relay.plugin_dir.clone());
    let runtime = Arc::new(WasmRuntime::new(Some(config.cache_dir()))?);
    let spinner = super::spinner("loading plugins");
    let catalog = Catalog::scan(&runtime, &dir, config.load_limits(), |path| {
        spinner.set_message(format!("compiling {}", path.display()))
    })
    .await;
    spinner.finish_and_clear();
    let catalog = catalog?;

    // Which configured instances use each plugin, and how.
    let users = |plugin: &LoadedPlugin| -> Vec<String> {
        let info = plugin.info();
        config
            .plugins
            .iter()
            .filter(|(instance, settings)| {
                settings.plugin.as_deref().unwrap_or(instance) == info.name
                    && settings.kind.is_none_or(|kind| kind == plugin.kind())
            })
            .map(|(instance, settings)| {
                let state = if settings.enabled {
                    "enabled"
                } else {
                    "disabled"
                };
                match plugin.kind() {
                    PluginKind::Native => format!(
                        "[plugins.{instance}] ({state}, isolation {})",
                        settings.isolation.unwrap_or_default().as_str()
                    ),
                    PluginKind::Wasm => format!("[plugins.{instance}] ({state})"),
                }
            })
            .collect()
    };

    if args.json {
        let entries: Vec<serde_json::Value> = catalog
            .entries()
            .map(|entry| match entry {
                CatalogEntry::Loaded(p) => json!({
                    "file": p.path(),
                    "sha256": p.sha256(),
                    "kind": p.kind().as_str(),
                    "trusted": p.kind() == PluginKind::Native,
                    "interface": p.interface(),
                    "name": p.info().name,
                    "version": p.info().version,
                    "description": p.info().description,
                    "config_keys": p.info().config_keys.iter().map(|k| json!({
                        "name": k.name,
                        "description": k.description,
                        "required": k.required,
                        "default": k.default_value,
                    })).collect::<Vec<_>>(),
                    "used_by": users(p),
                }),
                CatalogEntry::Broken(e) => json!({"file": e.path, "error": e.reason}),
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&entries)?);
        return Ok(ExitCode::SUCCESS);
    }

    if catalog.entries().next().is_none() {
        println!("no .wasm or .so files in {}", dir.display());
        return Ok(ExitCode::SUCCESS);
    }
    for entry in catalog.entries() {
        match entry {
            CatalogEntry::Loaded(p) => {
                let info = p.info();
                println!("{} {} - {}", info.name, info.version, info.description);
                let size = std::fs::metadata(p.path()).map(|m| m.len()).unwrap_or(0);
                println!(
                    "  file:      {} ({}, sha256 {})",
                    p.path().display(),
                    bytesize::ByteSize::b(size),
                    &p.sha256()[..16]
                );
                let trust = match p.kind() {
                    PluginKind::Wasm => "sandboxed: only what its instance is granted",
                    PluginKind::Native => {
                        "trusted code with full network and filesystem access; isolation \"process\", the default, contains its crashes"
                    }
                };
                println!("  kind:      {} ({trust})", p.kind().as_str());
                println!("  interface: {}", p.interface());
                let used = users(p);
                let used = if used.is_empty() {
                    "no instance (add a [plugins.<name>] table)".to_owned()
                } else {
                    used.join(", ")
                };
                println!("  used by:   {used}");
                if !info.config_keys.is_empty() {
                    println!("  config:");
                    let width = info
                        .config_keys
                        .iter()
                        .map(|k| k.name.len())
                        .max()
                        .unwrap_or(0);
                    for key in &info.config_keys {
                        let default = match (&key.default_value, key.required) {
                            (_, true) => "(required)".to_owned(),
                            (Some(default), false) => format!("= {default}"),
                            (None, false) => "(optional)".to_owned(),
                        };
                        println!("    {:width$}  {default:<14} {}", key.name, key.description);
                    }
                }
            }
            CatalogEntry::Broken(error) => println!("{error}"),
        }
        println!();
    }
    Ok(ExitCode::SUCCESS)
}
