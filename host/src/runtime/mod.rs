//! Where plugin code runs.
//!
//! A runtime turns a plugin file into running [`Exporter`]s: [`wasm`] runs
//! WebAssembly components in a sandbox, [`native`] runs shared libraries
//! in a runner process of their own or in the relay's. Every runtime
//! reports the same outcomes and offers the same [`services`], so the
//! dispatcher that drives an instance (batching, retries, circuit breaker)
//! does not care which kind of plugin it talks to. The [`catalog`] finds
//! both kinds in `plugin_dir`.

pub mod native;
pub mod wasm;

mod admit;
pub mod catalog;
mod fault;
mod kind;
pub mod mask;
pub mod output;
pub mod services;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use auditrelay_plugin_api::{Delivery, PluginInfo, RejectedEvent};
pub use fault::{Fault, FaultKind};
pub use kind::{Isolation, PluginKind};

use auditrelay_plugin_api::batch::EncodedBatch;

/// The SHA-256 of a plugin file's bytes, in lower-case hex: how `auditrelay
/// plugins` identifies it and the compiled-component cache keys it.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(bytes))
}

/// A plugin file that cannot be used, and why.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}: {reason}", path.display())]
pub struct LoadError {
    /// The file.
    pub path: PathBuf,
    /// What is wrong and what to do about it.
    pub reason: String,
}

impl LoadError {
    /// The file at `path` cannot be used because of `reason`.
    pub fn new(path: &Path, reason: impl Into<String>) -> Self {
        LoadError {
            path: path.to_owned(),
            reason: reason.into(),
        }
    }
}

/// How much loading one plugin file may cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadLimits {
    /// Largest plugin file (`relay.max_plugin_size`).
    pub max_size: u64,
    /// Longest a WASM compile may take (`relay.plugin_load_timeout`).
    pub timeout: Duration,
}

impl Default for LoadLimits {
    fn default() -> Self {
        LoadLimits {
            max_size: 64 * 1024 * 1024,
            timeout: Duration::from_secs(60),
        }
    }
}

/// A plugin file's bytes, whatever its kind; a file over the size limit is
/// refused before it is read.
async fn read_plugin_file(path: &Path, limits: &LoadLimits) -> Result<Vec<u8>, LoadError> {
    let fail = |e: std::io::Error| LoadError::new(path, format!("cannot read the file: {e}"));
    let size = tokio::fs::metadata(path).await.map_err(fail)?.len();
    if size > limits.max_size {
        return Err(LoadError::new(
            path,
            format!(
                "is {} and plugin files may be at most {} (relay.max_plugin_size): it was not read",
                bytesize::ByteSize(size).display().iec(),
                bytesize::ByteSize(limits.max_size).display().iec()
            ),
        ));
    }
    tokio::fs::read(path).await.map_err(fail)
}

/// Why an instance could not be launched, whatever its kind. The relay
/// tries again with backoff; when a restart after a fault fails,
/// [`LaunchError::into_call_error`] says what that call got.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LaunchError {
    /// Where it runs could not be set up: its sandbox (`grant_dir` cannot
    /// be opened), its library (cannot be loaded), its runner process
    /// (cannot be spawned).
    #[error("{0}")]
    Setup(String),
    /// The plugin's `init` refused the configuration.
    #[error("init refused the configuration: {0}")]
    Init(String),
    /// The plugin crashed (or ran out of time) while starting.
    #[error("crashed while starting: {0}")]
    Fault(Fault),
}

impl LaunchError {
    /// What a failed restart (after a fault) is for the call that needed
    /// the instance: a crash is that call's fault; anything else may pass.
    pub fn into_call_error(self) -> CallError {
        match self {
            LaunchError::Fault(fault) => CallError::Fault(fault),
            other => CallError::Retryable {
                message: format!("restarting the plugin after a fault failed: {other}"),
                retry_after: None,
            },
        }
    }
}

/// Why a call into a plugin did not succeed.
#[derive(Debug, Clone, PartialEq)]
pub enum CallError {
    /// The plugin reported a failure that may pass: retry the whole batch.
    Retryable {
        /// The plugin's message.
        message: String,
        /// How long the destination asked to wait, if it said.
        retry_after: Option<Duration>,
    },
    /// The plugin reported that the batch can never be delivered as it is.
    Permanent(String),
    /// The plugin crashed (or could not be restarted). The instance has
    /// been discarded; the next call starts a fresh one.
    Fault(Fault),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Retryable { message, .. } => write!(f, "retryable failure: {message}"),
            CallError::Permanent(message) => write!(f, "permanent failure: {message}"),
            CallError::Fault(fault) => write!(f, "{fault}"),
        }
    }
}

/// A running plugin instance as the dispatcher sees it.
///
/// Calls never overlap (the dispatcher owns the instance), and an instance
/// recovers from its own faults: after `CallError::Fault` the next call
/// runs on a fresh instance.
pub trait Exporter: Send + 'static {
    /// Delivers a batch, in order.
    fn deliver(
        &mut self,
        batch: EncodedBatch<'_>,
    ) -> impl Future<Output = Result<Delivery, CallError>> + Send;

    /// Asks the plugin to push out anything it holds in memory.
    fn flush(&mut self) -> impl Future<Output = Result<(), CallError>> + Send;

    /// Lets the plugin release its resources; the instance is dropped after.
    fn shutdown(&mut self) -> impl Future<Output = ()> + Send;
}

/// A running instance of any kind, as one [`Exporter`] type.
pub enum AnyExporter {
    /// A sandboxed WASM instance.
    Wasm(wasm::WasmInstance),
    /// A native instance in the relay's process.
    InProcess(native::InProcessInstance),
    /// A native instance in a runner process.
    Process(native::ChildInstance),
}

impl AnyExporter {
    /// Ends the live instance (its answer was a fault); the next call
    /// starts a fresh one, as after a crash.
    async fn retire(&mut self) {
        match self {
            AnyExporter::Wasm(e) => e.retire(),
            AnyExporter::InProcess(e) => e.retire(),
            AnyExporter::Process(e) => e.retire().await,
        }
    }

    /// The instance's services: every answer passes their
    /// [admission](services::PluginServices::admit_delivery).
    fn services(&self) -> &services::PluginServices {
        match self {
            AnyExporter::Wasm(e) => &e.sandbox().services,
            AnyExporter::InProcess(e) => e.services(),
            AnyExporter::Process(e) => &e.settings().services,
        }
    }
}

/// Whatever kind of instance answers, its answer is admitted in one place:
/// masked, capped, and checked for being possible at all. An impossible
/// answer is a fault like a crash, in every kind: the instance that gave
/// it is not trusted with another call, and the next one starts afresh.
impl Exporter for AnyExporter {
    async fn deliver(&mut self, batch: EncodedBatch<'_>) -> Result<Delivery, CallError> {
        let answer = match self {
            AnyExporter::Wasm(e) => e.deliver(batch).await,
            AnyExporter::InProcess(e) => e.deliver(batch).await,
            AnyExporter::Process(e) => e.deliver(batch).await,
        };
        let answered = answer.is_ok();
        let admitted = self.services().admit_delivery(batch.len(), answer);
        if answered && matches!(admitted, Err(CallError::Fault(_))) {
            self.retire().await;
        }
        admitted
    }

    async fn flush(&mut self) -> Result<(), CallError> {
        let answer = match self {
            AnyExporter::Wasm(e) => e.flush().await,
            AnyExporter::InProcess(e) => e.flush().await,
            AnyExporter::Process(e) => e.flush().await,
        };
        answer.map_err(|error| self.services().admit_error(error))
    }

    async fn shutdown(&mut self) {
        match self {
            AnyExporter::Wasm(e) => e.shutdown().await,
            AnyExporter::InProcess(e) => e.shutdown().await,
            AnyExporter::Process(e) => e.shutdown().await,
        }
    }
}

/// The `auditrelay` executable that does the relay's work in processes of
/// its own (runs native plugins in `process` isolation, compiles WASM
/// plugins under a time limit): `AUDITRELAY_BIN` if set, else the running
/// executable if it is `auditrelay`, else an `auditrelay` beside it or one
/// directory up (where cargo puts the binary next to test executables).
pub fn helper_program() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os("AUDITRELAY_BIN") {
        return Ok(PathBuf::from(path));
    }
    let exe = std::env::current_exe()
        .map_err(|e| format!("cannot tell which executable is running: {e}"))?;
    if exe.file_stem().is_some_and(|stem| stem == "auditrelay") {
        return Ok(exe);
    }
    exe.ancestors()
        .skip(1)
        .take(2)
        .map(|dir| dir.join("auditrelay"))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| {
            format!(
                "no auditrelay executable was found beside {} (native plugins in process isolation run in `auditrelay plugin-runner`, WASM plugins compile in `auditrelay plugin-compiler`); set AUDITRELAY_BIN to its path",
                exe.display()
            )
        })
}
