//! Step `retries are idempotent`: with [`Retries::SameRequests`], a
//! batch delivered again sends the same requests.

use super::{Run, StepResult};
use crate::plugin::Plugin;
use crate::testing::compliance::instance::Setup;
use crate::testing::compliance::sent::Sent;
use crate::testing::compliance::support::problems_to_result;
use crate::testing::compliance::{RETRIES, Retries};

impl<P: Plugin> Run<'_, P> {
    pub(super) fn retries(&mut self) -> StepResult {
        if self.suite.retries == Retries::Unchecked {
            self.note(RETRIES, "not checked (Retries::Unchecked)");
            return Ok(());
        }
        let (_, batch) = self.batches().swap_remove(1);
        let mut instance = self.started(Setup::accepting())?;
        let mut attempts = Vec::new();
        for _ in 0..2 {
            let before = instance.harness.requests().len();
            let outcome = instance.harness.deliver(&batch);
            self.observe(RETRIES, &outcome, batch.len());
            let sent = self.sent(&instance.harness)?;
            attempts.push(self.carrying(&sent[before..]));
        }
        self.scan_instance(RETRIES, &instance);
        drop(instance);
        let mut fresh = self.started(Setup::accepting())?;
        let outcome = fresh.harness.deliver(&batch);
        self.observe(RETRIES, &outcome, batch.len());
        let sent = self.sent(&fresh.harness)?;
        attempts.push(self.carrying(&sent));
        self.scan_instance(RETRIES, &fresh);
        let mut problems = Vec::new();
        for (n, what) in [
            (1, "the same instance"),
            (2, "a new instance (as after a crash)"),
        ] {
            if let Some(difference) = first_difference(&attempts[0], &attempts[n]) {
                problems.push(format!(
                    "delivering the batch of {} events again to {what} sent different requests: {difference}. Build requests only from the batch (no clock, counter or random value in the URL or body), or declare Retries::Unchecked and say so in the README",
                    batch.len()
                ));
            }
        }
        if problems.is_empty() {
            self.note(
                RETRIES,
                format!(
                    "{} events delivered 3 times (twice to one instance, once to a new one): the same {} request(s) each time",
                    batch.len(),
                    attempts[0].len()
                ),
            );
        }
        problems_to_result(problems)
    }

    fn carrying(&self, sent: &[Sent]) -> Vec<(String, String, Vec<u8>)> {
        sent.iter()
            .filter(|s| !self.events_in(s).is_empty())
            .map(|s| {
                (
                    s.request.method.as_str().to_owned(),
                    s.request.url.clone(),
                    s.body.clone(),
                )
            })
            .collect()
    }
}

/// The first difference between two deliveries' requests, in words.
fn first_difference(
    a: &[(String, String, Vec<u8>)],
    b: &[(String, String, Vec<u8>)],
) -> Option<String> {
    if a.len() != b.len() {
        return Some(format!("{} requests, then {}", a.len(), b.len()));
    }
    for (n, (x, y)) in a.iter().zip(b).enumerate() {
        if x.0 != y.0 || x.1 != y.1 {
            return Some(format!(
                "request {n} was {} {}, then {} {}",
                x.0, x.1, y.0, y.1
            ));
        }
        if x.2 != y.2 {
            let at =
                x.2.iter()
                    .zip(&y.2)
                    .position(|(p, q)| p != q)
                    .unwrap_or(x.2.len().min(y.2.len()));
            let show = |body: &[u8]| {
                let start = at.saturating_sub(30);
                String::from_utf8_lossy(&body[start..(at + 30).min(body.len())]).into_owned()
            };
            return Some(format!(
                "the body of request {n} ({} {}) differs at byte {at}: {:?}, then {:?}",
                x.0,
                x.1,
                show(&x.2),
                show(&y.2)
            ));
        }
    }
    None
}
