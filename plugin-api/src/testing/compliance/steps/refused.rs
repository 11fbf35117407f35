//! Step `refused after accepted`: a batch whose second request is
//! refused is not claimed delivered, and a retry loses no event.

use std::collections::HashSet;

use super::{Run, StepResult};
use crate::event::{DeliverError, Delivery, EventBuf};
use crate::plugin::Plugin;
use crate::testing::compliance::instance::{Mode, Setup};
use crate::testing::compliance::support::{describe, problems_to_result};
use crate::testing::compliance::{Answer, Expected, SPLIT};

impl<P: Plugin> Run<'_, P> {
    pub(super) fn refused_after_accepted(&mut self) -> StepResult {
        let suite = self.suite;
        let batch = self
            .batches()
            .pop()
            .map(|(_, batch)| batch)
            .expect("there are batches");
        // How many requests carry events on a good day?
        let mut probe = self.started(Setup::accepting())?;
        let outcome = probe.harness.deliver(&batch);
        self.observe(SPLIT, &outcome, batch.len());
        self.scan_instance(SPLIT, &probe);
        let carrying = self
            .sent(&probe.harness)?
            .iter()
            .filter(|sent| !self.events_in(sent).is_empty())
            .count();
        drop(probe);
        if carrying < 2 {
            self.note(
                SPLIT,
                format!(
                    "skipped: a batch of {} events goes out in one request",
                    batch.len()
                ),
            );
            return Ok(());
        }
        let retryable = suite
            .answers
            .iter()
            .find(|a| a.expected == Expected::Retryable);
        let permanent = suite
            .answers
            .iter()
            .find(|a| a.expected == Expected::Permanent);
        let mut problems = Vec::new();
        for (answer, kind) in [
            (retryable, Expected::Retryable),
            (permanent, Expected::Permanent),
        ] {
            let Some(answer) = answer else {
                self.note(
                    SPLIT,
                    format!("skipped for {kind:?}: no such answer declared"),
                );
                continue;
            };
            let case = format!(
                "{} events in {carrying} requests, request 2 answered HTTP {}",
                batch.len(),
                answer.response.status
            );
            match self.refuse_second(&batch, answer, kind) {
                Ok(detail) => self.note(SPLIT, format!("{case}: {detail}")),
                Err(problem) => problems.push(format!("({case}) {problem}")),
            }
        }
        problems_to_result(problems)
    }

    fn refuse_second(
        &mut self,
        batch: &[EventBuf],
        answer: &Answer,
        kind: Expected,
    ) -> Result<String, String> {
        let mut instance = self.started(Setup::with(Mode::NthWithEvents(
            1,
            Ok(answer.response.clone()),
        )))?;
        let outcome = instance.harness.deliver(batch);
        self.observe(SPLIT, &outcome, batch.len());
        let first = self.sent(&instance.harness)?;
        // Which events did the destination take? All but the refused request's.
        let mut accepted: HashSet<String> = HashSet::new();
        let mut k = 0;
        for sent in &first {
            let ids = self.events_in(sent);
            if ids.is_empty() {
                continue;
            }
            if k != 1 {
                accepted.extend(ids);
            }
            k += 1;
        }
        let not_taken: Vec<usize> = batch
            .iter()
            .enumerate()
            .filter(|(_, e)| !accepted.contains(&e.id))
            .map(|(i, _)| i)
            .collect();
        match (&outcome, kind) {
            (Ok(Delivery::Accepted), _) => {
                return Err(format!(
                    "delivery returned Accepted although the destination refused request 2 ({} events never taken): the batch must fail (Retryable, so the relay retries it) or reject the events not taken",
                    not_taken.len()
                ));
            }
            (Err(DeliverError::Retryable { .. }), _) => {}
            (other, Expected::Retryable) => {
                return Err(format!(
                    "delivery returned {}; a retryable refusal of one request must make the batch retryable",
                    describe(other)
                ));
            }
            (Ok(Delivery::PartiallyRejected(rejected)), _) => {
                let listed: HashSet<u32> = rejected.iter().map(|r| r.index).collect();
                let missing: Vec<usize> = not_taken
                    .iter()
                    .copied()
                    .filter(|&i| !listed.contains(&(i as u32)))
                    .collect();
                if !missing.is_empty() {
                    return Err(format!(
                        "delivery returned PartiallyRejected for {} events, but {} events the destination never took are not among them (first at index {}): they would be counted as delivered",
                        rejected.len(),
                        missing.len(),
                        missing[0]
                    ));
                }
            }
            (Err(DeliverError::Permanent(_)), _) => {}
        }
        if kind == Expected::Permanent {
            self.scan_instance(SPLIT, &instance);
            return Ok(format!("not claimed delivered ({})", describe(&outcome)));
        }
        // The relay retries the batch; now the destination takes it.
        let before = instance.harness.requests().len();
        instance
            .server
            .as_ref()
            .expect("HTTP instances have a server")
            .set(Mode::Accept);
        let retried = instance.harness.deliver(batch);
        self.observe(SPLIT, &retried, batch.len());
        self.scan_instance(SPLIT, &instance);
        if retried != Ok(Delivery::Accepted) {
            return Err(format!(
                "the retry, with the destination taking every request, returned {}",
                describe(&retried)
            ));
        }
        let all = self.sent(&instance.harness)?;
        for sent in &all[before..] {
            accepted.extend(self.events_in(sent));
        }
        let lost: Vec<&str> = batch
            .iter()
            .filter(|e| !accepted.contains(&e.id))
            .map(|e| e.id.as_str())
            .collect();
        if !lost.is_empty() {
            return Err(format!(
                "after the refusal and a successful retry, {} events never reached the destination (first: {})",
                lost.len(),
                lost[0]
            ));
        }
        Ok(format!(
            "{} then, on retry, every event delivered",
            describe(&outcome)
        ))
    }
}
