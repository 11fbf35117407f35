//! Steps `empty batch` and `every event exactly once`: what an accepting
//! destination gets for 0 events, 1 event and batches past the
//! declared [`Limits`](crate::testing::compliance::Limits).

use std::collections::{BTreeMap, HashMap, HashSet};

use super::{Run, StepResult};
use crate::event::{Delivery, EventBuf};
use crate::plugin::Plugin;
use crate::testing::compliance::instance::Setup;
use crate::testing::compliance::sent::Sent;
use crate::testing::compliance::support::{events, events_of_bytes, problems_to_result};
use crate::testing::compliance::{EMPTY, EXACTLY_ONCE};

/// The least batch size of the "past the limits" delivery.
const LARGE_BATCH: usize = 2_500;

impl<P: Plugin> Run<'_, P> {
    pub(super) fn empty_batch(&mut self) -> StepResult {
        let mut instance = self.started(Setup::accepting())?;
        let outcome = instance.harness.deliver(&[]);
        self.observe(EMPTY, &outcome, 0);
        let mut problems = Vec::new();
        if outcome != Ok(Delivery::Accepted) {
            problems.push(format!(
                "delivering 0 events returned {outcome:?}; it must return Ok(Delivery::Accepted)"
            ));
        }
        let requests = instance.harness.requests();
        if !requests.is_empty() {
            problems.push(format!(
                "delivering 0 events sent {} request(s), first {} {}; send nothing",
                requests.len(),
                requests[0].method.as_str(),
                requests[0].url
            ));
        }
        if self.suite.reader.is_some() {
            let (copies, _) = self.read_destination(&instance);
            if copies > 0 {
                problems.push(format!(
                    "delivering 0 events left {copies} event(s) at the destination"
                ));
            }
        }
        self.scan_instance(EMPTY, &instance);
        self.note(
            EMPTY,
            if self.suite.is_http() {
                "0 events: Accepted, no request sent"
            } else {
                "0 events: Accepted, nothing at the destination"
            },
        );
        problems_to_result(problems)
    }

    pub(super) fn exactly_once(&mut self) -> StepResult {
        let mut problems = Vec::new();
        for (label, batch) in self.batches() {
            if let Err(problem) = self.exactly_once_with(&label, &batch) {
                problems.push(problem);
            }
        }
        problems_to_result(problems)
    }

    /// The batches of the step: 1 event, past the events-per-request
    /// limit, past the bytes-per-request limit.
    pub(super) fn batches(&self) -> Vec<(String, Vec<EventBuf>)> {
        let limits = self.suite.limits;
        let large = limits
            .events_per_request
            .map_or(LARGE_BATCH, |max| (max * 5 / 2).max(LARGE_BATCH));
        let mut batches = vec![
            ("1 event".to_owned(), events(0..1)),
            (
                match limits.events_per_request {
                    Some(max) => format!("{large} events, past {max} per request"),
                    None => format!("{large} events"),
                },
                events(0..large),
            ),
        ];
        if let Some(max) = limits.request_bytes {
            let batch = events_of_bytes(max + max / 2);
            let bytes: usize = batch.iter().map(|e| e.envelope.len()).sum();
            batches.push((
                format!(
                    "{} events of {bytes} envelope bytes, past {max} bytes per request",
                    batch.len()
                ),
                batch,
            ));
        }
        batches
    }

    fn exactly_once_with(&mut self, label: &str, batch: &[EventBuf]) -> StepResult {
        let mut instance = self.started(Setup::accepting())?;
        let outcome = instance.harness.deliver(batch);
        self.observe(EXACTLY_ONCE, &outcome, batch.len());
        let context = format!("{label}, accepting destination");
        if outcome != Ok(Delivery::Accepted) {
            self.scan_instance(EXACTLY_ONCE, &instance);
            return Err(format!(
                "({context}) delivery returned {outcome:?}; a destination that takes every request must get Ok(Delivery::Accepted)"
            ));
        }
        let mut problems = Vec::new();
        let arrived = if self.suite.is_http() {
            let requests = self.sent(&instance.harness)?;
            problems.extend(self.limit_problems(&requests));
            let mut arrived = Vec::new();
            for (n, sent) in requests.iter().enumerate() {
                for id in self.events_in(sent) {
                    arrived.push((id, Some(n)));
                }
            }
            if requests.is_empty() {
                problems.push("no request was sent".to_owned());
            }
            Some(arrived)
        } else {
            match self.read_destination(&instance) {
                (_, Some(ids)) => Some(ids.into_iter().map(|id| (id, None)).collect()),
                (count, None) => {
                    if count != batch.len() {
                        problems.push(format!(
                            "the destination took {count} events for a batch of {}",
                            batch.len()
                        ));
                    }
                    None
                }
            }
        };
        if let Some(arrived) = arrived {
            problems.extend(once_problems(batch, &arrived));
        }
        if let Err(error) = instance.harness.flush() {
            problems.push(format!("flush after the delivery failed: {error}"));
        }
        instance.harness.shutdown();
        self.scan_instance(EXACTLY_ONCE, &instance);
        if problems.is_empty() {
            let requests = instance.harness.requests().len();
            self.note(
                EXACTLY_ONCE,
                if self.suite.is_http() {
                    format!("{label}: each once, in {requests} request(s) within the limits")
                } else {
                    format!("{label}: each once")
                },
            );
            Ok(())
        } else {
            Err(format!("({context}) {}", problems.join("; ")))
        }
    }

    fn limit_problems(&self, requests: &[Sent]) -> Vec<String> {
        let limits = self.suite.limits;
        let mut problems = Vec::new();
        for (n, sent) in requests.iter().enumerate() {
            if let Some(max) = limits.request_bytes
                && sent.body.len() > max
            {
                problems.push(format!(
                    "request #{n} has {} body bytes (uncompressed), over the declared {max}",
                    sent.body.len()
                ));
            }
            if let Some(max) = limits.events_per_request {
                let count = self.events_in(sent).len();
                if count > max {
                    problems.push(format!(
                        "request #{n} carries {count} events, over the declared {max}"
                    ));
                }
            }
        }
        problems
    }
}

/// Lost, doubled and unknown events, given where each arrived.
fn once_problems(batch: &[EventBuf], arrived: &[(String, Option<usize>)]) -> Vec<String> {
    let mut copies: HashMap<&str, Vec<Option<usize>>> = HashMap::new();
    for (id, request) in arrived {
        copies.entry(id.as_str()).or_default().push(*request);
    }
    let known: HashSet<&str> = batch.iter().map(|e| e.id.as_str()).collect();
    let lost: Vec<&str> = batch
        .iter()
        .map(|e| e.id.as_str())
        .filter(|id| !copies.contains_key(id))
        .collect();
    let doubled: BTreeMap<&str, &Vec<Option<usize>>> = copies
        .iter()
        .filter(|(_, at)| at.len() > 1)
        .map(|(id, at)| (*id, at))
        .collect();
    let unknown: Vec<&str> = copies
        .keys()
        .copied()
        .filter(|id| !known.contains(id))
        .collect();
    let mut problems = Vec::new();
    if !lost.is_empty() {
        problems.push(format!(
            "{} of {} events never arrived (first: {}); every event of an accepted batch must be sent",
            lost.len(),
            batch.len(),
            lost[0]
        ));
    }
    if let Some((id, at)) = doubled.iter().next() {
        let places: Vec<String> = at
            .iter()
            .map(|n| n.map_or("the destination".to_owned(), |n| format!("request #{n}")))
            .collect();
        problems.push(format!(
            "{} events arrived more than once (first: {id}, in {}); send each event of a batch once",
            doubled.len(),
            places.join(" and ")
        ));
    }
    if !unknown.is_empty() {
        problems.push(format!(
            "{} ids arrived that are not in the batch (first: {:?}); check the events_in/delivered reader",
            unknown.len(),
            unknown[0]
        ));
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lost_doubled_and_unknown_events_are_named() {
        let batch = events(0..3);
        let at = |i: usize, n| (batch[i].id.clone(), Some(n));
        assert!(once_problems(&batch, &[at(0, 0), at(1, 0), at(2, 1)]).is_empty());
        let problems = once_problems(
            &batch,
            &[at(0, 0), at(0, 1), at(1, 1), ("stray".into(), Some(1))],
        );
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].contains(&batch[2].id), "{problems:?}");
        assert!(
            problems[1].contains("request #0 and request #1"),
            "{problems:?}"
        );
        assert!(problems[2].contains("stray"), "{problems:?}");
    }
}
