//! The Splunk HEC exporter through the exporter compliance suite
//! (`auditrelay_plugin_api::testing::compliance`), twice: without and with
//! indexer acknowledgement. The collector answers as Splunk's "Format
//! events for HTTP Event Collector" and "Troubleshoot HTTP Event
//! Collector" pages document: `{"text": ..., "code": n}` bodies with the
//! status each code comes with, an `ackId` per request when
//! acknowledgement is on, and `/services/collector/ack` answering
//! `{"acks": {"<id>": bool}}`. The answer table is the README's.
//!
//! The exact requests for `testing::fixed_events()` (one event request,
//! one acknowledgement poll) are pinned in `tests/golden/`;
//! `UPDATE_GOLDEN=1 cargo test` rewrites them.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use auditrelay_plugin_api::http::{HttpError, Request, Response};
use auditrelay_plugin_api::testing::compliance::{Compliance, Expected, Golden, Limits, Sent};
use auditrelay_plugin_api::testing::{Harness, sample_events};
use auditrelay_plugin_api::{DeliverError, Delivery};
use auditrelay_plugin_splunk_hec::HecExporter;
use serde_json::{Value, json};

const TOKEN: &str = "7d1e4c2a-9b3f-4e8d-a6c5-0f2b8e9d1a7c";
/// The token of the golden requests (unchanged since they were written).
const GOLDEN_TOKEN: &str = "00000000-0000-0000-0000-000000000000";

/// A HEC reply: `{"text": ..., "code": n}`.
fn reply(status: u16, code: i64, text: &str) -> Response {
    Response::new(status, json!({"text": text, "code": code}).to_string())
        .with_header("content-type", "application/json")
}

/// A collector taking `token`, with indexer acknowledgement on or off:
/// it checks what HEC checks and acknowledges every request it took at
/// the first poll.
fn collector(
    token: &'static str,
    acknowledgement: bool,
) -> impl Fn(&Request) -> Result<Response, HttpError> + Send + Sync + 'static {
    // Per channel: the next ack id and the ids issued.
    let channels: Mutex<HashMap<String, (u64, Vec<u64>)>> = Mutex::default();
    move |request| {
        let Some(authorization) = request.header_value("authorization") else {
            return Ok(reply(401, 2, "Token is required"));
        };
        let Some(given) = authorization.strip_prefix("Splunk ") else {
            return Ok(reply(401, 3, "Invalid authorization"));
        };
        if given != token {
            return Ok(reply(403, 4, "Invalid token"));
        }
        let channel = request.header_value("x-splunk-request-channel");
        if acknowledgement && channel.is_none() {
            return Ok(reply(400, 10, "Data channel is missing"));
        }
        let channel = channel.unwrap_or_default().to_owned();
        if request.url.contains("/services/collector/ack") {
            if !acknowledgement {
                return Ok(reply(400, 14, "ACK is disabled"));
            }
            let Ok(asked) = serde_json::from_slice::<Value>(&request.body) else {
                return Ok(reply(400, 6, "Invalid data format"));
            };
            let channels = channels.lock().unwrap();
            let issued = channels
                .get(&channel)
                .map(|(_, ids)| ids.as_slice())
                .unwrap_or(&[]);
            let mut acks = serde_json::Map::new();
            for id in asked["acks"].as_array().into_iter().flatten() {
                let Some(id) = id.as_u64() else {
                    return Ok(reply(400, 6, "Invalid data format"));
                };
                acks.insert(id.to_string(), Value::Bool(issued.contains(&id)));
            }
            return Ok(Response::new(200, json!({"acks": acks}).to_string()));
        }
        let sent = match Sent::decode(request) {
            Ok(sent) => sent,
            Err(_) => return Ok(reply(400, 6, "Invalid data format")),
        };
        if sent.body().iter().all(u8::is_ascii_whitespace) {
            return Ok(reply(400, 5, "No data"));
        }
        for (number, object) in serde_json::Deserializer::from_slice(sent.body())
            .into_iter::<Value>()
            .enumerate()
        {
            let invalid = |code: i64, text: &str| {
                Response::new(
                    400,
                    json!({"text": text, "code": code, "invalid-event-number": number}).to_string(),
                )
            };
            match object {
                Ok(Value::Object(object)) if object.get("event").is_some_and(|e| !e.is_null()) => {}
                Ok(Value::Object(_)) => return Ok(invalid(12, "Event field is required")),
                _ => return Ok(invalid(6, "Invalid data format")),
            }
        }
        if !acknowledgement {
            return Ok(reply(200, 0, "Success"));
        }
        let mut channels = channels.lock().unwrap();
        let (next, issued) = channels.entry(channel).or_default();
        let id = *next;
        *next += 1;
        issued.push(id);
        Ok(Response::new(
            200,
            json!({"text": "Success", "code": 0, "ackId": id}).to_string(),
        ))
    }
}

/// The README's answer table, for an event request.
fn with_answers(suite: Compliance<HecExporter>) -> Compliance<HecExporter> {
    let mut suite = suite
        .answer_naming(
            reply(403, 1, "Token disabled"),
            Expected::Permanent,
            "hec_token",
        )
        .answer_naming(
            reply(401, 2, "Token is required"),
            Expected::Permanent,
            "hec_token",
        )
        .answer_naming(
            reply(401, 3, "Invalid authorization"),
            Expected::Permanent,
            "hec_token",
        )
        .answer_naming(
            reply(403, 4, "Invalid token"),
            Expected::Permanent,
            "hec_token",
        )
        .answer(reply(400, 5, "No data"), Expected::Permanent)
        .answer(
            Response::new(
                400,
                r#"{"text":"Invalid data format","code":6,"invalid-event-number":0}"#,
            ),
            Expected::Permanent,
        )
        .answer_naming(
            reply(400, 7, "Incorrect index"),
            Expected::Permanent,
            "`index`",
        )
        .answer(reply(500, 8, "Internal server error"), Expected::Retryable)
        .answer(reply(503, 9, "Server is busy"), Expected::Retryable)
        .answer(
            reply(400, 10, "Data channel is missing"),
            Expected::Permanent,
        )
        .answer(reply(400, 11, "Invalid data channel"), Expected::Permanent)
        .answer(
            reply(400, 12, "Event field is required"),
            Expected::Permanent,
        )
        .answer(
            reply(400, 13, "Event field cannot be blank"),
            Expected::Permanent,
        )
        .answer_naming(
            reply(400, 15, "Error in handling indexed fields"),
            Expected::Permanent,
            "`fields`",
        )
        .answer(
            reply(400, 16, "Query string authorization is not enabled"),
            Expected::Permanent,
        )
        .answer(
            reply(503, 18, "HEC is unhealthy, queues are full"),
            Expected::Retryable,
        )
        .answer(
            reply(503, 19, "HEC is unhealthy, ack service unavailable"),
            Expected::Retryable,
        )
        .answer(
            reply(
                503,
                20,
                "HEC is unhealthy, queues are full, ack service unavailable",
            ),
            Expected::Retryable,
        )
        // splunkd's own limit answers in plain text, not HEC JSON.
        .answer_naming(
            Response::new(
                413,
                "Content-Length of 1048577 too large (maximum is 1000000)",
            ),
            Expected::Permanent,
            "max_request_bytes",
        )
        .answer(Response::new(408, "Request Timeout"), Expected::Retryable)
        .answer(Response::new(429, "Too Many Requests"), Expected::Retryable)
        .answer(
            Response::new(502, "<html>Bad Gateway</html>"),
            Expected::Retryable,
        )
        // A 2xx that is not HEC's (a proxy's page): not proof of delivery.
        .answer(
            Response::new(200, "<html>Welcome</html>"),
            Expected::Retryable,
        );
    for (bad, key) in [
        (json!({"endpoint": null}), "endpoint"),
        (
            json!({"endpoint": "https://hec.example.com:8088/services/collector"}),
            "endpoint",
        ),
        (json!({"compression": "zstd"}), "compression"),
        (json!({"fields": {"team": "actor..id"}}), "fields"),
        (json!({"ack_timeout": "soon"}), "ack_timeout"),
        (json!({"max_request_bytes": "lots"}), "max_request_bytes"),
    ] {
        suite = suite.refuses(bad, key);
    }
    suite
}

#[test]
fn splunk_hec_complies() {
    with_answers(
        Compliance::<HecExporter>::http(["hec.example.com:8088"])
            .config(json!({"endpoint": "https://hec.example.com:8088", "index": "audit"}))
            .secret("hec_token", TOKEN)
            .secret_in_header("hec_token", "authorization")
            .refuses_without_secret("hec_token")
            .server(collector(TOKEN, false))
            .events_in(|sent| sent.ids_at("/event/id"))
            .limits(Limits::none().max_request_bytes(1_000_000))
            .answer(reply(200, 0, "Success"), Expected::Delivered),
    )
    .run();
}

#[test]
fn splunk_hec_with_acknowledgements_complies() {
    with_answers(
        Compliance::<HecExporter>::http(["hec.example.com:8088"])
            .config(json!({
                "endpoint": "https://hec.example.com:8088",
                "index": "audit",
                "host": "relay-1",
                "compression": "none",
                "acknowledgements": true,
                "ack_timeout": "2s",
                "ack_poll_interval": "10ms",
            }))
            .secret("hec_token", GOLDEN_TOKEN)
            .secret_in_header("hec_token", "authorization")
            .refuses_without_secret("hec_token")
            .server(collector(GOLDEN_TOKEN, true))
            .events_in(|sent| sent.ids_at("/event/id"))
            .limits(Limits::none().max_request_bytes(1_000_000))
            // A collector that indexes without acknowledging, or whose
            // token has acknowledgement off.
            .answer_naming(
                reply(200, 0, "Success"),
                Expected::Permanent,
                "acknowledgements",
            )
            .answer_naming(
                reply(400, 14, "ACK is disabled"),
                Expected::Permanent,
                "acknowledgements",
            )
            .golden(
                Golden::new("tests/golden/event-and-ack.http")
                    .placeholder("x-splunk-request-channel", "<channel>"),
            ),
    )
    .run();
}

// Bad days the suite's generic steps do not reach: they answer the event
// request, and these are about the acknowledgement poll.

fn acknowledging(
    answer_polls: impl Fn(&Request) -> Response + Send + Sync + 'static,
) -> Harness<HecExporter> {
    Harness::<HecExporter>::builder()
        .config(json!({
            "endpoint": "https://hec.example.com:8088",
            "compression": "none",
            "acknowledgements": true,
            "ack_timeout": "200ms",
            "ack_poll_interval": "20ms",
        }))
        .secret("hec_token", TOKEN)
        .allowed_hosts(["hec.example.com:8088"])
        .http(move |request| {
            Ok(if request.url.contains("/services/collector/ack") {
                answer_polls(request)
            } else {
                Response::new(200, r#"{"text":"Success","code":0,"ackId":0}"#)
            })
        })
        .init()
        .unwrap()
}

#[test]
fn a_batch_never_acknowledged_is_retried_after_ack_timeout() {
    let mut plugin = acknowledging(|_| Response::new(200, r#"{"acks":{"0":false}}"#));
    let started = std::time::Instant::now();
    match plugin.deliver(&sample_events(3)) {
        Err(DeliverError::Retryable { message, .. }) => {
            assert!(message.contains("ack_timeout"), "{message}");
        }
        other => panic!("expected a retry after ack_timeout, got {other:?}"),
    }
    assert!(started.elapsed() >= Duration::from_millis(200));
    let polls = plugin
        .requests()
        .iter()
        .filter(|r| r.url.contains("/ack"))
        .count();
    assert!(polls >= 2, "polled until the deadline, {polls} time(s)");
}

#[test]
fn an_acknowledgement_answer_that_is_not_json_is_retried() {
    let mut plugin = acknowledging(|_| Response::new(200, "<html>Welcome</html>"));
    match plugin.deliver(&sample_events(1)) {
        Err(DeliverError::Retryable { message, .. }) => {
            assert!(message.contains("not JSON"), "{message}");
        }
        other => panic!("expected retryable, got {other:?}"),
    }
}

#[test]
fn a_busy_acknowledgement_service_is_retried_with_its_delay() {
    let mut plugin = acknowledging(|_| {
        Response::new(
            503,
            r#"{"text":"HEC is unhealthy, ack service unavailable","code":19}"#,
        )
        .with_header("Retry-After", "9")
    });
    assert_eq!(
        plugin.deliver(&sample_events(1)),
        Err(DeliverError::Retryable {
            message:
                "Splunk HEC answered HTTP 503 code 19: HEC is unhealthy, ack service unavailable"
                    .into(),
            retry_after: Some(Duration::from_secs(9)),
        })
    );
}

#[test]
fn acknowledgements_for_every_request_of_a_split_batch_are_awaited() {
    // Three requests; the indexers acknowledge them one poll at a time.
    let polls = Mutex::new(0u64);
    let mut plugin = Harness::<HecExporter>::builder()
        .config(json!({
            "endpoint": "https://hec.example.com:8088",
            "compression": "none",
            "acknowledgements": true,
            "ack_poll_interval": "1ms",
            "max_request_bytes": "100KB",
        }))
        .secret("hec_token", TOKEN)
        .allowed_hosts(["hec.example.com:8088"])
        .http({
            let next = Mutex::new(0u64);
            move |request| {
                if request.url.contains("/ack") {
                    let mut polls = polls.lock().unwrap();
                    *polls += 1;
                    let asked: Value = serde_json::from_slice(&request.body).unwrap();
                    let acks: serde_json::Map<String, Value> = asked["acks"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|id| (id.to_string(), Value::Bool(id.as_u64().unwrap() < *polls)))
                        .collect();
                    return Ok(Response::new(200, json!({"acks": acks}).to_string()));
                }
                let mut next = next.lock().unwrap();
                *next += 1;
                Ok(Response::new(
                    200,
                    json!({"text": "Success", "code": 0, "ackId": *next - 1}).to_string(),
                ))
            }
        })
        .init()
        .unwrap();
    assert_eq!(plugin.deliver(&sample_events(600)), Ok(Delivery::Accepted));
    let requests = plugin.requests();
    let events = requests
        .iter()
        .filter(|r| r.url.ends_with("/event"))
        .count();
    let polls: Vec<Value> = requests
        .iter()
        .filter(|r| r.url.contains("/ack"))
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect();
    assert!(events >= 3, "{events} event requests");
    assert_eq!(polls.len(), events, "one more id acknowledged per poll");
    assert_eq!(polls[0]["acks"].as_array().unwrap().len(), events);
    assert_eq!(
        polls.last().unwrap()["acks"].as_array().unwrap().len(),
        1,
        "only the ids still pending are asked again"
    );
}
