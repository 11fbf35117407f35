//! What the relay reports about each plugin instance.

use std::path::PathBuf;

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
    pub(crate) fn starting(instance: &str) -> Self {
        PluginStatus {
            instance: instance.to_owned(),
            plugin: None,
            version: None,
            file: None,
            state: RunState::Starting,
            error: None,
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
