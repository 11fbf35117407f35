//! The compliance suite catches what it promises to: a toy exporter that
//! passes, then the same exporter with one bug at a time, each of which
//! must fail the suite in the step that names it.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{SystemTime, UNIX_EPOCH};

use auditrelay_plugin_api::http::{Request, Response};
use auditrelay_plugin_api::prelude::*;
use auditrelay_plugin_api::testing::compliance::{Compliance, Expected, Golden, Limits, Retries};
use serde::Deserialize;

/// Posts events as NDJSON, at most 10 a request, with a bearer token;
/// `bug` makes it wrong in one way.
struct Toy {
    url: String,
    token: String,
    bug: Bug,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
enum Bug {
    #[default]
    None,
    /// Drops the last event of every request.
    LosesEvents,
    /// Sends the first event of the batch twice.
    DoublesEvents,
    /// Sends 11 events a request.
    OverLimit,
    /// Sends a request for an empty batch.
    PostsEmpty,
    /// Maps 503 to Permanent.
    FiveHundredsPermanent,
    /// Drops Retry-After.
    IgnoresRetryAfter,
    /// Puts the token in an error message.
    LeaksInError,
    /// Logs the token.
    LeaksInLog,
    /// Puts the token in the URL.
    LeaksInUrl,
    /// Logs the token as a Basic credential, base64-encoded.
    LeaksEncoded,
    /// Goes on after a refused request and reports Accepted.
    ClaimsRefused,
    /// Reports only the first event of a refused request as rejected,
    /// and goes on.
    RejectsTooFew,
    /// Puts the time of sending in every body.
    StampsBodies,
    /// Rejects (on 413) the event after the one refused.
    OffByOne,
    /// Turns every network failure permanent.
    NetworkPermanent,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    url: String,
    #[serde(default)]
    bug: Bug,
}

impl Plugin for Toy {
    type Config = Config;

    fn info() -> PluginInfo {
        PluginInfo::new("toy", "0.1.0", "posts NDJSON")
    }

    fn init(config: Config, _ctx: &InitContext) -> Result<Self, InitError> {
        let token = settings::required_secret("toy_token", "the toy's token")?;
        Ok(Toy {
            url: config.url,
            token,
            bug: config.bug,
        })
    }

    fn deliver(&mut self, events: &[Event<'_>]) -> Result<Delivery, DeliverError> {
        let per_request = if self.bug == Bug::OverLimit { 11 } else { 10 };
        let mut chunks: Vec<(usize, &[Event<'_>])> = events
            .chunks(per_request)
            .enumerate()
            .map(|(k, chunk)| (k * per_request, chunk))
            .collect();
        if events.is_empty() && self.bug == Bug::PostsEmpty {
            chunks.push((0, &[]));
        }
        let mut rejected = Vec::new();
        for (start, chunk) in chunks {
            let mut body = Vec::new();
            if self.bug == Bug::StampsBodies {
                let nanos = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap()
                    .as_nanos();
                body.extend_from_slice(format!("{{\"sent\":{nanos}}}\n").as_bytes());
            }
            let mut chunk = chunk;
            if self.bug == Bug::LosesEvents && chunk.len() > 1 {
                chunk = &chunk[..chunk.len() - 1];
            }
            for event in chunk {
                body.extend_from_slice(event.envelope);
                body.push(b'\n');
            }
            if self.bug == Bug::DoublesEvents && start == 0 && !chunk.is_empty() {
                body.extend_from_slice(chunk[0].envelope);
                body.push(b'\n');
            }
            let url = if self.bug == Bug::LeaksInUrl {
                format!("{}?token={}", self.url, self.token)
            } else {
                self.url.clone()
            };
            if self.bug == Bug::LeaksInLog {
                host::debug(format!("posting with {}", self.token));
            }
            if self.bug == Bug::LeaksEncoded {
                host::debug(format!(
                    "posting with Basic {}",
                    base64::Engine::encode(
                        &base64::engine::general_purpose::STANDARD,
                        format!("toy:{}", self.token)
                    )
                ));
            }
            let response = match Request::post(url)
                .header("authorization", format!("Bearer {}", self.token))
                .body(body)
                .send()
            {
                Ok(response) => response,
                Err(error) if self.bug == Bug::NetworkPermanent => {
                    return Err(DeliverError::permanent(error.to_string()));
                }
                Err(error) => return Err(error.into()),
            };
            if response.status == 413 {
                for i in 0..chunk.len() {
                    rejected.push(RejectedEvent {
                        index: (start + i) as u32,
                        reason: "too large".into(),
                    });
                }
                continue;
            }
            if !response.is_success() {
                let error = match self.bug {
                    Bug::FiveHundredsPermanent if response.status == 503 => {
                        DeliverError::permanent("the toy answered 503")
                    }
                    Bug::IgnoresRetryAfter if response.status == 503 => {
                        DeliverError::retryable("the toy answered 503")
                    }
                    Bug::LeaksInError => {
                        DeliverError::permanent(format!("refused token {}", self.token))
                    }
                    _ => response.into_deliver_error("the toy"),
                };
                match self.bug {
                    Bug::ClaimsRefused => continue,
                    Bug::RejectsTooFew => {
                        rejected.push(RejectedEvent {
                            index: start as u32,
                            reason: "refused".into(),
                        });
                        continue;
                    }
                    _ => return Err(error),
                }
            }
        }
        if self.bug == Bug::OffByOne {
            rejected.iter_mut().for_each(|r| r.index += 1);
        }
        Ok(if rejected.is_empty() {
            Delivery::Accepted
        } else {
            Delivery::PartiallyRejected(rejected)
        })
    }
}

fn suite(bug: &str) -> Compliance<Toy> {
    Compliance::<Toy>::http(["toy.test"])
        .config(serde_json::json!({"url": "https://toy.test/ingest", "bug": bug}))
        .secret("toy_token", "tok-8c41f2d9-compliance")
        .secret_in_header("toy_token", "authorization")
        .refuses_without_secret("toy_token")
        .refuses(serde_json::json!({"url": null}), "url")
        .server(|_| Ok(Response::new(200, "ok")))
        .events_in(|sent| sent.ids_at("/id"))
        .limits(Limits::none().max_events_per_request(10))
        .answer(Response::new(200, "ok"), Expected::Delivered)
        .answer(Response::new(401, "unknown token"), Expected::Permanent)
        .answer(Response::new(503, "busy"), Expected::Retryable)
        .answer(
            Response::new(429, "slow down")
                .with_header("Retry-After", "Wed, 21 Oct 2099 07:28:00 GMT"),
            Expected::Retryable,
        )
        .answer(Response::new(413, "too large"), Expected::PartiallyRejected)
}

/// Runs the suite with `bug`, which must fail in `step` saying `says`.
fn fails(bug: &str, step: &str, says: &str) {
    let result = catch_unwind(AssertUnwindSafe(|| suite(bug).run()));
    let panic = result.expect_err(&format!("the suite passed the toy with bug {bug}"));
    let message = panic.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(
        message.contains(&format!("toy: step `{step}`")),
        "bug {bug}: expected a failure in step `{step}`:\n{message}"
    );
    assert!(
        message.contains(says),
        "bug {bug}: expected the failure to say {says:?}:\n{message}"
    );
}

#[test]
fn a_correct_exporter_passes_every_step() {
    let report = suite("none").run();
    assert_eq!(report.exporter(), "toy");
    assert_eq!(
        report.steps(),
        [
            "init refuses bad config",
            "empty batch",
            "every event exactly once",
            "answer mapping",
            "transport errors are retryable",
            "allowed_hosts refusal",
            "refused after accepted",
            "retries are idempotent",
            "partial rejections are well formed",
            "secrets never leak",
        ]
    );
}

#[test]
fn lost_doubled_and_oversized_requests_fail_exactly_once() {
    fails("loses_events", "every event exactly once", "never arrived");
    fails(
        "doubles_events",
        "every event exactly once",
        "more than once",
    );
    fails(
        "over_limit",
        "every event exactly once",
        "over the declared 10",
    );
}

#[test]
fn a_request_for_an_empty_batch_fails() {
    fails("posts_empty", "empty batch", "sent 1 request");
}

#[test]
fn wrong_answers_fail_the_answer_mapping() {
    fails(
        "five_hundreds_permanent",
        "answer mapping",
        "expected Retryable, got Permanent",
    );
    fails(
        "ignores_retry_after",
        "answer mapping",
        "as the Retry-After header asks",
    );
    fails(
        "off_by_one",
        "partial rejections are well formed",
        "outside the batch of 1",
    );
    fails(
        "network_permanent",
        "transport errors are retryable",
        "Timeout error",
    );
}

#[test]
fn leaked_secrets_fail_wherever_they_appear() {
    fails(
        "leaks_in_error",
        "secrets never leak",
        "a DeliverError message",
    );
    fails("leaks_in_log", "secrets never leak", "a log line (debug)");
    fails(
        "leaks_encoded",
        "secrets never leak",
        "a log line (debug) (base64)",
    );
    fails(
        "leaks_in_url",
        "secrets never leak",
        "the URL of request #0",
    );
}

#[test]
fn claiming_a_refused_request_delivered_fails() {
    fails(
        "claims_refused",
        "refused after accepted",
        "returned Accepted although",
    );
    fails(
        "rejects_too_few",
        "refused after accepted",
        "are not among them",
    );
}

#[test]
fn requests_that_change_on_retry_fail_unless_declared() {
    fails("stamps_bodies", "retries are idempotent", "differs at byte");
    // Declared (and said in the README), the rest of the suite passes.
    suite("stamps_bodies").retries(Retries::Unchecked).run();
}

#[test]
fn a_golden_file_that_differs_fails() {
    let dir = std::env::temp_dir().join(format!("compliance-golden-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("toy.http");
    std::fs::write(&path, "POST https://toy.test/other\n").unwrap();
    let result = catch_unwind(AssertUnwindSafe(|| {
        suite("none").golden(Golden::new(&path)).run()
    }));
    let message = result
        .expect_err("a golden file that differs fails")
        .downcast_ref::<String>()
        .cloned()
        .unwrap_or_default();
    assert!(message.contains("toy: step `golden requests`"), "{message}");
    assert!(message.contains("UPDATE_GOLDEN=1"), "{message}");
    std::fs::remove_dir_all(&dir).unwrap();
}
