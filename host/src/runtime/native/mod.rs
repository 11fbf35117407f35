//! The native runtime: plugins built as shared libraries (`.so`) against
//! the C ABI of `plugin-api/include/auditrelay_plugin.h`.
//!
//! Native plugins are trusted code: they run with the relay's user, reach
//! the network and the filesystem as they please, and nothing caps their
//! CPU inside a call. What the relay still guarantees depends on the
//! instance's [`Isolation`]:
//!
//! - [`Isolation::Process`] (the default): the plugin runs in a child
//!   process, `auditrelay plugin-runner` ([`runner`]), which speaks the
//!   framed [`protocol`] over pipes. A crash (segfault, abort, panic), an
//!   allocation past `limits.memory` or a call past `limits.timeout` kills
//!   only the child; the call fails as a [`Fault`](crate::runtime::Fault),
//!   the next call starts a fresh child, and the relay goes on.
//! - [`Isolation::InProcess`]: the library is loaded into the relay
//!   ([`InProcessInstance`]), for the last microsecond. A Rust panic is
//!   still caught at the ABI boundary, but a segfault or abort takes the
//!   relay down, and a hung call holds one of its plugin threads.
//!
//! Either way the library's ABI version is checked before anything else
//! is called, and a loaded library is never unloaded (`dlclose` under
//! code that may still run — a thread the plugin started, a destructor —
//! is how hosts crash).
//!
//! Describing a plugin runs its code, so the catalog does that in a
//! runner process too ([`describe`]): a library that crashes while being
//! loaded is reported by name and skipped.

mod callbacks;
mod crash;
mod in_process;
pub mod library;
mod memory;
mod outcome;
mod process;
pub mod protocol;
pub mod runner;
mod watchdog;

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use self::in_process::InProcessInstance;
pub use self::process::ChildInstance;
use crate::runtime::Isolation;
use crate::runtime::services::PluginServices;
use crate::runtime::{LoadError, LoadLimits, PluginInfo, read_plugin_file, sha256_hex};

pub use auditrelay_plugin_api::native::ABI_VERSION;

/// How long describing a plugin in a runner process may take.
const DESCRIBE_TIMEOUT: Duration = Duration::from_secs(10);

/// A native plugin file that described itself.
#[derive(Debug)]
pub struct NativePlugin {
    /// The `.so` file.
    pub path: PathBuf,
    /// SHA-256 of the file, in hex.
    pub sha256: String,
    /// What the plugin says about itself.
    pub info: PluginInfo,
}

/// What one native instance is given and held to.
#[derive(Clone)]
pub struct NativeSettings {
    /// The instance's name, secrets and metrics.
    pub services: PluginServices,
    /// The instance's `config` table.
    pub config: serde_json::Value,
    /// The directory the plugin is told to use (not enforced: native
    /// plugins are trusted).
    pub grant_dir: Option<PathBuf>,
    /// In process isolation: the runner's data size cap (`RLIMIT_DATA`).
    pub memory_limit: u64,
    /// In process isolation: the deadline of each call.
    pub call_timeout: Duration,
    /// Where the code runs.
    pub isolation: Isolation,
}

impl NativeSettings {
    /// The instance name.
    pub fn instance(&self) -> &str {
        self.services.instance()
    }
}

/// Hashes a native plugin file and asks it to describe itself, in a runner
/// process so that a library which crashes on load only fails its own entry.
pub async fn describe(path: &Path, limits: &LoadLimits) -> Result<NativePlugin, LoadError> {
    let bytes = read_plugin_file(path, limits).await?;
    if bytes.len() < 4 || &bytes[..4] != b"\x7fELF" {
        return Err(LoadError::new(
            path,
            "is not a shared library (no ELF header); was it truncated or overwritten?",
        ));
    }
    let sha256 = sha256_hex(&bytes);
    let info = process::describe_in_runner(path, DESCRIBE_TIMEOUT)
        .await
        .map_err(|reason| LoadError::new(path, reason))?;
    Ok(NativePlugin {
        path: path.to_owned(),
        sha256,
        info,
    })
}
