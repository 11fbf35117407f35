//! The two kinds of plugin file, and where a native one runs.

use serde::Deserialize;

/// `[plugins.<name>] kind`: which kind of plugin file runs the instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PluginKind {
    /// A WebAssembly component (`.wasm`), sandboxed.
    Wasm,
    /// A shared library (`.so`) implementing the native C ABI; trusted code.
    Native,
}

impl PluginKind {
    /// The kind a plugin file's extension says, if it is a plugin file.
    pub fn of_file(path: &std::path::Path) -> Option<PluginKind> {
        match path.extension()?.to_str()? {
            "wasm" => Some(PluginKind::Wasm),
            "so" => Some(PluginKind::Native),
            _ => None,
        }
    }

    /// The configuration value.
    pub fn as_str(self) -> &'static str {
        match self {
            PluginKind::Wasm => "wasm",
            PluginKind::Native => "native",
        }
    }
}

/// `[plugins.<name>] isolation`: where a native plugin's code runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Isolation {
    /// In a child process of its own (`auditrelay plugin-runner`), killed
    /// and restarted when it crashes or hangs.
    #[default]
    Process,
    /// Inside the relay's process: fastest, but a crash is the relay's.
    InProcess,
}

impl Isolation {
    /// The configuration value.
    pub fn as_str(self) -> &'static str {
        match self {
            Isolation::Process => "process",
            Isolation::InProcess => "in-process",
        }
    }
}
