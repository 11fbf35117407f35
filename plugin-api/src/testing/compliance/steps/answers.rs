//! Steps `answer mapping`, `transport errors are retryable` and
//! `allowed_hosts refusal`: what each way the destination can answer (or
//! not) makes of a delivery of one event.

use std::time::Duration;

use super::{Run, StepResult};
use crate::event::{DeliverError, Delivery};
use crate::http::{HttpError, HttpErrorKind, Response, parse_retry_after};
use crate::plugin::Plugin;
use crate::testing::compliance::instance::{Mode, Setup};
use crate::testing::compliance::support::{describe, events, problems_to_result};
use crate::testing::compliance::{ANSWERS, Answer, DENIED, Expected, TRANSPORT};

/// Network failures a transport reports; each must be retryable.
const NETWORK_FAILURES: [HttpErrorKind; 5] = [
    HttpErrorKind::Dns,
    HttpErrorKind::Connect,
    HttpErrorKind::Timeout,
    HttpErrorKind::Tls,
    HttpErrorKind::Protocol,
];

impl<P: Plugin> Run<'_, P> {
    pub(super) fn answers(&mut self) -> StepResult {
        let suite = self.suite;
        let mut problems = Vec::new();
        for answer in &suite.answers {
            for (case, response, retry_after) in answer_variants(answer) {
                let result = self.answer_case(
                    ANSWERS,
                    &case,
                    Ok(response),
                    answer.expected,
                    retry_after,
                    answer.naming.as_deref(),
                );
                match result {
                    Ok(()) => self.note(ANSWERS, format!("{case} → {:?}", answer.expected)),
                    Err(problem) => problems.push(problem),
                }
            }
        }
        if suite.answers.is_empty() {
            problems.push(
                "no answers declared: add one .answer(response, expected) per row of the README's answer table"
                    .to_owned(),
            );
        }
        problems_to_result(problems)
    }

    /// Delivers one event with `reply` to its first request and checks
    /// the outcome.
    fn answer_case(
        &mut self,
        step: &'static str,
        case: &str,
        reply: Result<Response, HttpError>,
        expected: Expected,
        retry_after: RetryAfter,
        naming: Option<&str>,
    ) -> StepResult {
        let mut instance = self.started(Setup::with(Mode::First(reply)))?;
        let batch = events(0..1);
        let outcome = instance.harness.deliver(&batch);
        self.observe(step, &outcome, batch.len());
        self.scan_instance(step, &instance);
        if instance.harness.requests().is_empty() {
            return Err(format!(
                "({case}) a delivery of 1 event sent no request, so the answer was never given"
            ));
        }
        let problem = outcome_problem(&outcome, expected, retry_after, naming);
        match problem {
            None => Ok(()),
            Some(problem) => Err(format!("({case}) {problem}")),
        }
    }

    pub(super) fn transport_errors(&mut self) -> StepResult {
        let mut problems = Vec::new();
        for kind in NETWORK_FAILURES {
            let reply = Err(HttpError::new(
                kind,
                format!("compliance: simulated {kind:?} failure"),
            ));
            let case = format!("{kind:?} error");
            match self.answer_case(
                TRANSPORT,
                &case,
                reply,
                Expected::Retryable,
                RetryAfter::Any,
                None,
            ) {
                Ok(()) => {}
                Err(problem) => problems.push(format!(
                    "{problem}. Pass HttpError to the relay with `?` (From<HttpError> for DeliverError keeps network failures retryable)"
                )),
            }
        }
        self.note(TRANSPORT, format!("{:?} → Retryable", NETWORK_FAILURES));
        problems_to_result(problems)
    }

    pub(super) fn denied(&mut self) -> StepResult {
        let mut instance = self.started(Setup {
            deny_all_hosts: true,
            ..Setup::accepting()
        })?;
        let batch = events(0..1);
        let outcome = instance.harness.deliver(&batch);
        self.observe(DENIED, &outcome, 1);
        self.scan_instance(DENIED, &instance);
        match &outcome {
            Err(DeliverError::Permanent(message)) if message.contains("allowed_hosts") => {
                self.note(
                    DENIED,
                    "a refused destination → Permanent, naming allowed_hosts",
                );
                Ok(())
            }
            other => Err(format!(
                "with the destination outside allowed_hosts, delivery returned {other:?}; it must be Err(Permanent) naming allowed_hosts (pass the HttpError on with `?`)"
            )),
        }
    }
}

/// The `retry_after` a case expects.
#[derive(Debug, Clone, Copy)]
enum RetryAfter {
    /// Anything (the answer says nothing about when).
    Any,
    /// Exactly this.
    Exactly(Duration),
    /// This, within a few seconds (an HTTP-date, read a moment later).
    About(Duration),
}

/// The cases one declared answer becomes: itself, and for a retryable
/// answer without `Retry-After`, the same with a delay in each form.
fn answer_variants(answer: &Answer) -> Vec<(String, Response, RetryAfter)> {
    let response = &answer.response;
    let label = |response: &Response| {
        let mut label = format!("HTTP {}", response.status);
        // The body's start on one line, past an XML declaration.
        let text = response.text();
        let mut text = text.trim();
        if text.starts_with("<?xml")
            && let Some(end) = text.find("?>")
        {
            text = text[end + 2..].trim_start();
        }
        let words: Vec<&str> = text.split_whitespace().collect();
        let text = words.join(" ");
        if !text.is_empty() {
            let mut body: String = text.chars().take(40).collect();
            if body.len() < text.len() {
                body.push('…');
            }
            label.push_str(&format!(" {body}"));
        }
        if let Some(value) = response.header("retry-after") {
            label.push_str(&format!(" with Retry-After: {value}"));
        }
        label
    };
    // Retry-After means something on an error (RFC 9110 names 503, RFC
    // 6585 429; services send it with other 4xx and 5xx), not on a 2xx.
    if answer.expected != Expected::Retryable || response.status < 400 {
        return vec![(label(response), response.clone(), RetryAfter::Any)];
    }
    if let Some(value) = response.header("retry-after") {
        let expected = match value.trim().parse::<u64>() {
            Ok(seconds) => RetryAfter::Exactly(Duration::from_secs(seconds)),
            Err(_) => match parse_retry_after(value, jiff::Timestamp::now()) {
                Some(delay) => RetryAfter::About(delay),
                None => RetryAfter::Any,
            },
        };
        return vec![(label(response), response.clone(), expected)];
    }
    let seconds = response.clone().with_header("Retry-After", "7");
    let at = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(120);
    let date = response.clone().with_header(
        "Retry-After",
        at.strftime("%a, %d %b %Y %H:%M:%S GMT").to_string(),
    );
    vec![
        (label(response), response.clone(), RetryAfter::Any),
        (
            label(&seconds),
            seconds,
            RetryAfter::Exactly(Duration::from_secs(7)),
        ),
        (
            format!("{} (an HTTP-date)", label(&date)),
            date,
            RetryAfter::About(Duration::from_secs(120)),
        ),
    ]
}

/// Why `outcome` is not what was expected, if it is not.
fn outcome_problem(
    outcome: &Result<Delivery, DeliverError>,
    expected: Expected,
    retry_after: RetryAfter,
    naming: Option<&str>,
) -> Option<String> {
    let class_matches = matches!(
        (outcome, expected),
        (Ok(Delivery::Accepted), Expected::Delivered)
            | (
                Ok(Delivery::PartiallyRejected(_)),
                Expected::PartiallyRejected
            )
            | (Err(DeliverError::Retryable { .. }), Expected::Retryable)
            | (Err(DeliverError::Permanent(_)), Expected::Permanent)
    );
    if !class_matches {
        return Some(format!(
            "expected {expected:?}, got {}; map this answer as the README's table says (or fix the table)",
            describe(outcome)
        ));
    }
    let words: Vec<&str> = match outcome {
        Ok(Delivery::Accepted) => Vec::new(),
        Ok(Delivery::PartiallyRejected(rejected)) => {
            if rejected.is_empty() {
                return Some(
                    "PartiallyRejected with no rejected event: return Accepted instead".to_owned(),
                );
            }
            rejected.iter().map(|r| r.reason.as_str()).collect()
        }
        Err(DeliverError::Retryable { message, .. } | DeliverError::Permanent(message)) => {
            if message.trim().is_empty() {
                return Some(format!(
                    "{expected:?} with an empty message: say what the destination answered and what to do"
                ));
            }
            vec![message.as_str()]
        }
    };
    if let Some(text) = naming
        && words.iter().any(|w| !w.contains(text))
    {
        return Some(format!(
            "{} does not mention {text:?}; name it so the operator knows what to fix",
            describe(outcome)
        ));
    }
    if let Err(DeliverError::Retryable {
        retry_after: got, ..
    }) = outcome
    {
        let honoured = match retry_after {
            RetryAfter::Any => true,
            RetryAfter::Exactly(want) => *got == Some(want),
            RetryAfter::About(want) => got.is_some_and(|got| {
                let (a, b) = (got.as_secs_f64(), want.as_secs_f64());
                (a - b).abs() <= 5.0
            }),
        };
        if !honoured {
            return Some(format!(
                "retry_after is {got:?}, not {} as the Retry-After header asks; take it from Response::retry_after (Response::deliver_error does)",
                match retry_after {
                    RetryAfter::Any => "any".to_owned(),
                    RetryAfter::Exactly(want) => format!("Some({want:?})"),
                    RetryAfter::About(want) => format!("about Some({want:?})"),
                }
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_compared_in_both_forms() {
        let retry = |after| {
            Err(DeliverError::Retryable {
                message: "busy".into(),
                retry_after: after,
            })
        };
        let seven = RetryAfter::Exactly(Duration::from_secs(7));
        assert_eq!(
            outcome_problem(
                &retry(Some(Duration::from_secs(7))),
                Expected::Retryable,
                seven,
                None
            ),
            None
        );
        assert!(outcome_problem(&retry(None), Expected::Retryable, seven, None).is_some());
        let about = RetryAfter::About(Duration::from_secs(120));
        assert_eq!(
            outcome_problem(
                &retry(Some(Duration::from_secs(118))),
                Expected::Retryable,
                about,
                None
            ),
            None
        );
        assert!(
            outcome_problem(
                &retry(Some(Duration::from_secs(7))),
                Expected::Retryable,
                about,
                None
            )
            .is_some()
        );
        assert!(
            outcome_problem(
                &Ok(Delivery::Accepted),
                Expected::Retryable,
                RetryAfter::Any,
                None
            )
            .is_some()
        );
        let naming = outcome_problem(
            &Err(DeliverError::permanent("HTTP 403")),
            Expected::Permanent,
            RetryAfter::Any,
            Some("api_key"),
        );
        assert!(naming.unwrap().contains("api_key"));
    }

    #[test]
    fn an_http_date_retry_after_variant_is_two_minutes_ahead() {
        let answer = Answer {
            response: Response::new(503, "busy"),
            expected: Expected::Retryable,
            naming: None,
        };
        let variants = answer_variants(&answer);
        assert_eq!(variants.len(), 3);
        let date = variants[2].1.header("retry-after").unwrap();
        assert!(date.ends_with(" GMT"), "{date}");
        let delay = parse_retry_after(date, jiff::Timestamp::now()).unwrap();
        assert!((115..=120).contains(&delay.as_secs()), "{delay:?}");
    }
}
