//! The steps of a run, one file per step (or group of steps) of the
//! table in the [module docs](super), and what every step looks at.

mod answers;
mod golden;
mod init;
mod once;
mod refused;
mod rejections;
mod retries;
mod secrets;

use std::panic::{AssertUnwindSafe, catch_unwind};

use self::rejections::rejection_problem;
use self::secrets::Leak;
use super::instance::Instance;
use super::sent::{Destination, Sent};
use super::support::panic_text;
use super::{
    ANSWERS, Compliance, DENIED, EMPTY, EXACTLY_ONCE, GOLDEN, INIT, REJECTIONS, RETRIES, Reader,
    Report, SPLIT, TRANSPORT,
};
use crate::event::{DeliverError, Delivery};
use crate::plugin::Plugin;
use crate::testing::Harness;

/// The state of one run of the suite.
pub(super) struct Run<'s, P: Plugin> {
    pub(super) suite: &'s Compliance<P>,
    pub(super) report: Report,
    pub(super) failures: Vec<String>,
    pub(super) leaks: Vec<Leak>,
    pub(super) rejections_checked: usize,
    pub(super) texts_scanned: usize,
}

pub(super) type StepResult = Result<(), String>;

impl<P: Plugin> Run<'_, P> {
    /// Runs every step that applies to the exporter, in the order of the
    /// table in the module docs.
    pub(super) fn all_steps(&mut self) {
        self.step(INIT, Run::init);
        self.step(EMPTY, Run::empty_batch);
        self.step(EXACTLY_ONCE, Run::exactly_once);
        if self.suite.is_http() {
            self.step(ANSWERS, Run::answers);
            self.step(TRANSPORT, Run::transport_errors);
            self.step(DENIED, Run::denied);
            self.step(SPLIT, Run::refused_after_accepted);
            self.step(RETRIES, Run::retries);
            if self.suite.golden.is_some() {
                self.step(GOLDEN, Run::golden);
            }
        }
    }

    fn step(&mut self, name: &'static str, body: fn(&mut Self) -> StepResult) {
        let result = catch_unwind(AssertUnwindSafe(|| body(self)));
        let failure = match result {
            Ok(Ok(())) => return,
            Ok(Err(failure)) => failure,
            Err(panic) => format!(
                "the exporter (or a reader of the test) panicked: {}",
                panic_text(&*panic)
            ),
        };
        self.fail(name, failure);
    }

    fn fail(&mut self, step: &str, what: String) {
        self.failures
            .push(format!("{}: step `{step}`: {what}", self.suite.exporter));
    }

    fn note(&mut self, step: &'static str, detail: impl Into<String>) {
        self.report.steps.push((step, detail.into()));
    }

    // What every step looks at.

    fn events_in(&self, sent: &Sent) -> Vec<String> {
        (self
            .suite
            .events_in
            .as_ref()
            .expect("HTTP exporters have events_in"))(sent)
    }

    /// Every request of `harness`, decoded.
    fn sent(&self, harness: &Harness<P>) -> Result<Vec<Sent>, String> {
        harness
            .requests()
            .iter()
            .enumerate()
            .map(|(n, request)| {
                Sent::decode(request).map_err(|e| {
                    format!(
                        "request #{n} ({} {}): {e}",
                        request.method.as_str(),
                        request.url
                    )
                })
            })
            .collect()
    }

    /// What a local destination holds: (copies, ids if it keeps them).
    fn read_destination(&self, instance: &Instance<P>) -> (usize, Option<Vec<String>>) {
        let destination = Destination {
            harness: &instance.harness,
            dir: instance.dir.as_ref().map(|d| d.0.as_path()),
        };
        match self
            .suite
            .reader
            .as_ref()
            .expect("local exporters have a reader")
        {
            Reader::Ids(read) => {
                let ids = read(&destination);
                (ids.len(), Some(ids))
            }
            Reader::Count(count) => (count(&destination) as usize, None),
        }
    }

    /// Checks what a delivery returned wherever it happens: partial
    /// rejections well formed, no secret in the words.
    fn observe(
        &mut self,
        step: &'static str,
        outcome: &Result<Delivery, DeliverError>,
        len: usize,
    ) {
        match outcome {
            Ok(Delivery::Accepted) => {}
            Ok(Delivery::PartiallyRejected(rejected)) => {
                self.rejections_checked += 1;
                if let Some(problem) = rejection_problem(rejected, len) {
                    self.failures.push(format!(
                        "{}: step `{REJECTIONS}` (seen in step `{step}`, batch of {len}): {problem}",
                        self.suite.exporter
                    ));
                }
                for rejection in rejected {
                    self.scan(step, "a rejection reason", &rejection.reason, &[]);
                }
            }
            Err(DeliverError::Retryable { message, .. } | DeliverError::Permanent(message)) => {
                self.scan(step, "a DeliverError message", message, &[]);
            }
        }
    }
}
