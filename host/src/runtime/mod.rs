//! Where plugin code runs.
//!
//! A runtime turns a plugin file into running [`Exporter`]s: [`wasm`] runs
//! WebAssembly components in a sandbox. Every runtime reports the same
//! outcomes, so the dispatcher that drives it (batching, retries, circuit
//! breaker) does not care which kind of plugin it talks to.

pub mod wasm;

pub mod catalog;
mod fault;

use std::future::Future;
use std::time::Duration;

pub use auditrelay_plugin_api::{Delivery, PluginInfo, RejectedEvent};
pub use fault::{Fault, FaultKind};

use crate::spool::Batch;

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
/// recovers from its own faults: after [`CallError::Fault`] the next call
/// runs on a fresh instance.
pub trait Exporter: Send + 'static {
    /// Delivers a batch, in order.
    fn deliver(
        &mut self,
        batch: &Batch,
    ) -> impl Future<Output = Result<Delivery, CallError>> + Send;

    /// Asks the plugin to push out anything it holds in memory.
    fn flush(&mut self) -> impl Future<Output = Result<(), CallError>> + Send;

    /// Lets the plugin release its resources; the instance is dropped after.
    fn shutdown(&mut self) -> impl Future<Output = ()> + Send;
}
