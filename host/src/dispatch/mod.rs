//! Getting events from the spool into plugins: one worker per instance.
//!
//! Each enabled plugin instance gets a [`Worker`] on the relay's plugin
//! runtime. Workers share nothing but the spool, so a slow, failing or
//! crashing plugin never holds back another, and never the application:
//! `emit` only appends to the spool.
//!
//! Per instance: [batches](crate::config::BatchSettings) in spool order,
//! a [filter](EventFilter), [retries with backoff](Backoff) (forever, by
//! default), a [circuit breaker](Circuit), and [dead letters](DeadLetters)
//! for what the destination refuses for good.

mod backoff;
mod circuit;
mod dead_letter;
mod filter;
mod status;
mod worker;

use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use backoff::Backoff;
pub use circuit::{Circuit, CircuitState};
pub use dead_letter::{DeadLetters, Listing, Replay};
pub use filter::EventFilter;
pub use status::{Health, PluginStatus, RunState};
pub use worker::{Worker, WorkerParts};

use crate::runtime::Exporter;

/// The running workers.
pub struct Dispatcher {
    workers: Vec<(String, Health, JoinHandle<()>)>,
    abort: CancellationToken,
}

impl Default for Dispatcher {
    fn default() -> Self {
        Self::new()
    }
}

impl Dispatcher {
    /// No workers yet.
    pub fn new() -> Self {
        Dispatcher {
            workers: Vec::new(),
            abort: CancellationToken::new(),
        }
    }

    /// The token workers watch for a hard stop; pass it in [`WorkerParts`].
    pub fn abort_token(&self) -> CancellationToken {
        self.abort.clone()
    }

    /// Starts a worker for `exporter` on `runtime`.
    pub fn spawn<E: Exporter>(
        &mut self,
        runtime: &tokio::runtime::Handle,
        exporter: E,
        parts: WorkerParts,
    ) {
        let instance = parts.instance.to_string();
        let health = parts.health.clone();
        let handle = runtime.spawn(Worker::new(exporter, parts).run());
        self.workers.push((instance, health, handle));
    }

    /// Health of every worker, in start order.
    pub fn health(&self) -> impl Iterator<Item = (&str, &Health)> {
        self.workers
            .iter()
            .map(|(name, health, _)| (name.as_str(), health))
    }

    /// Waits up to `timeout` for every worker to drain the (closed) spool,
    /// then stops the rest where they are.
    pub async fn drain(self, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        for (_, _, mut handle) in self.workers {
            if tokio::time::timeout_at(deadline, &mut handle)
                .await
                .is_err()
            {
                self.abort.cancel();
                let _ = handle.await;
            }
        }
    }
}
