//! What the relay reports about each plugin instance.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use serde::Serialize;

/// Whether an instance is delivering.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    /// Being loaded and started, or started again after its start failed
    /// (`error` says why, `consecutive_failures` how often).
    Starting,
    /// Delivering (or waiting for events).
    Running,
    /// The relay is shutting down; delivering what is left.
    Draining,
    /// Stopped after shutdown.
    Stopped,
    /// Cannot run as configured; see `error`. Not tried again until the
    /// relay starts again.
    Failed,
}

/// One plugin instance, as `GET /v1/status` and `auditrelay status` show it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PluginStatus {
    /// The instance name (`[plugins.<name>]`).
    pub instance: String,
    /// The plugin's name from `describe`, if it was loaded.
    pub plugin: Option<String>,
    /// The plugin's version, if it was loaded.
    pub version: Option<String>,
    /// The `.wasm` file, if one was found.
    pub file: Option<PathBuf>,
    /// Whether it runs.
    pub state: RunState,
    /// Why it could not be started (the last attempt, while `starting`).
    pub error: Option<String>,
    /// `closed`, `open` or `half_open`.
    pub circuit: &'static str,
    /// Failed calls since the last success.
    pub consecutive_failures: u32,
    /// Events acknowledged since the relay started.
    pub delivered: u64,
    /// Events set aside as dead letters since the relay started.
    pub dead_letters: u64,
    /// Events accepted but not yet handled by this instance.
    pub lag_events: u64,
    /// Their size in bytes.
    pub lag_bytes: u64,
    /// When a batch was last acknowledged.
    pub last_success: Option<jiff::Timestamp>,
    /// The last failure, if any since the last success.
    pub last_error: Option<String>,
}

impl PluginStatus {
    /// The status of an instance being started.
    pub fn starting(instance: &str) -> Self {
        PluginStatus {
            state: RunState::Starting,
            error: None,
            ..Self::failed(instance, String::new())
        }
    }

    /// The status of an instance that could not be started.
    pub fn failed(instance: &str, error: String) -> Self {
        PluginStatus {
            instance: instance.to_owned(),
            plugin: None,
            version: None,
            file: None,
            state: RunState::Failed,
            error: Some(error),
            circuit: "closed",
            consecutive_failures: 0,
            delivered: 0,
            dead_letters: 0,
            lag_events: 0,
            lag_bytes: 0,
            last_success: None,
            last_error: None,
        }
    }
}

/// The part of a [`PluginStatus`] a worker keeps up to date; shared with
/// the relay.
#[derive(Debug, Clone)]
pub struct Health(Arc<Mutex<PluginStatus>>);

impl Health {
    /// Health starting from `status`.
    pub fn new(status: PluginStatus) -> Self {
        Health(Arc::new(Mutex::new(status)))
    }

    /// Marks the instance running the given plugin.
    pub fn set_running(&self, plugin: &str, version: &str, file: PathBuf) {
        let mut status = self.lock();
        status.plugin = Some(plugin.to_owned());
        status.version = Some(version.to_owned());
        status.file = Some(file);
        status.state = RunState::Running;
        status.error = None;
        status.consecutive_failures = 0;
    }

    /// Locks it for an update.
    pub fn lock(&self) -> MutexGuard<'_, PluginStatus> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A copy of the current status.
    pub fn snapshot(&self) -> PluginStatus {
        self.lock().clone()
    }
}
