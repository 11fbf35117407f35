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

pub(crate) mod backoff;
mod circuit;
mod dead_letter;
pub(crate) mod filter;
mod status;
mod telemetry;
mod worker;

use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use backoff::Backoff;
pub use circuit::Circuit;
pub use dead_letter::{DeadLetters, Listing};
pub use filter::EventFilter;
pub use status::{PluginStatus, RunState};
pub use telemetry::Telemetry;
pub use worker::{Worker, WorkerParts};

use crate::runtime::Exporter;

/// The running workers.
pub struct Dispatcher {
    workers: Vec<JoinHandle<()>>,
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

    /// Starts a worker for `exporter` on `runtime`. A worker that panics (a
    /// bug in the relay) is reported, never silent: its instance shows as
    /// failed with the reason, and its events stay in the spool.
    pub fn spawn<E: Exporter>(
        &mut self,
        runtime: &tokio::runtime::Handle,
        exporter: E,
        parts: WorkerParts,
    ) {
        let instance = parts.instance.clone();
        let telemetry = parts.telemetry.clone();
        let worker = runtime.spawn(Worker::new(exporter, parts).run());
        let handle = runtime.spawn(async move {
            let Err(error) = worker.await else {
                return;
            };
            let reason = match error.try_into_panic() {
                Ok(panic) => panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a panic".into()),
                Err(error) => error.to_string(),
            };
            let reason: String = reason.chars().take(300).collect();
            tracing::error!(plugin = &*instance, reason, "the delivery loop of this instance stopped on an internal error; its events stay in the spool and are delivered after a restart (please report this)");
            telemetry.internal_error(format!(
                "the relay's delivery loop stopped on an internal error ({reason}); events stay in the spool until the relay is restarted"
            ));
        });
        self.workers.push(handle);
    }

    /// Waits up to `timeout` for every worker to drain the (closed) spool,
    /// then stops the rest where they are.
    pub async fn drain(self, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        for mut handle in self.workers {
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::config::{BatchSettings, FilterSettings};
    use crate::metrics::Metrics;
    use crate::runtime::{CallError, Delivery};
    use crate::spool::{
        Durability, Record, SegmentFiles, Spool, SpoolOptions, StartFrom, WhenFull,
    };
    use auditrelay_plugin_api::batch::EncodedBatch;

    /// An instance whose every call hits a bug in the relay (a panic).
    struct Buggy;

    impl Exporter for Buggy {
        async fn deliver(&mut self, _batch: EncodedBatch<'_>) -> Result<Delivery, CallError> {
            panic!("an invariant the relay relies on does not hold")
        }
        async fn flush(&mut self) -> Result<(), CallError> {
            Ok(())
        }
        async fn shutdown(&mut self) {}
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_worker_that_panics_is_reported_failed_not_left_looking_healthy() {
        let dir = tempfile::tempdir().unwrap();
        let (spool, _) = Spool::open(SpoolOptions {
            dir: dir.path().to_owned(),
            durability: Durability::None,
            segment_bytes: 1 << 20,
            max_bytes: 1 << 24,
            when_full: WhenFull::Reject,
            block_timeout: Duration::from_millis(100),
            max_pending_bytes: 1 << 20,
            files: SegmentFiles::default(),
            chain: None,
            dedup: crate::spool::DedupWindow::OFF,
        })
        .unwrap();
        let spool = Arc::new(spool);
        let consumer = spool.consumer("buggy", StartFrom::Earliest, true);
        let event = &auditrelay_plugin_api::testing::sample_events(1)[0];
        spool
            .append(&[Record::from_event(event.as_event())])
            .unwrap();
        let telemetry = Telemetry::new(
            "buggy",
            Arc::new(Metrics::new()).plugin("buggy"),
            Circuit::new(5, Duration::from_secs(1)),
        );
        telemetry.running("buggy", "0", "buggy.wasm".into());
        let mut dispatcher = Dispatcher::new();
        let parts = WorkerParts {
            instance: Arc::from("buggy"),
            spool: spool.clone(),
            consumer,
            reader: spool.reader(consumer),
            batch: BatchSettings::default(),
            backoff: Backoff::new(Duration::from_millis(1), Duration::from_millis(10)),
            filter: EventFilter::new(&FilterSettings::default()),
            dead_letters: Arc::new(DeadLetters::new(dir.path(), "buggy")),
            replay: Arc::new(tokio::sync::Notify::new()),
            telemetry: telemetry.clone(),
            isolate_after: 0,
            abort: dispatcher.abort_token(),
        };
        dispatcher.spawn(&tokio::runtime::Handle::current(), Buggy, parts);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while telemetry.snapshot().state != RunState::Failed {
            assert!(
                std::time::Instant::now() < deadline,
                "{:?}",
                telemetry.snapshot()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let error = telemetry.snapshot().error.unwrap();
        assert!(error.contains("internal error"), "{error}");
        assert!(
            error.contains("an invariant the relay relies on"),
            "{error}"
        );
        assert_eq!(spool.cursor(consumer), 0, "the event stays in the spool");
        dispatcher.drain(Duration::from_secs(1)).await;
    }
}
