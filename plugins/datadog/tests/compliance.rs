//! The Datadog exporter through the exporter compliance suite
//! (`auditrelay_plugin_api::testing::compliance`), against an intake that
//! answers as Datadog's Logs API documents (`POST /api/v2/logs`: `202 {}`
//! for a request it takes; JSON:API errors otherwise; at most 1000 logs
//! and 5 MB uncompressed per request). The answer table is the README's.
//!
//! The exact request for `testing::fixed_events()` is pinned in
//! `tests/golden/request.http`; `UPDATE_GOLDEN=1 cargo test` rewrites it.

use auditrelay_plugin_api::http::{HttpError, Request, Response};
use auditrelay_plugin_api::testing::compliance::{Compliance, Expected, Golden, Limits, Sent};
use auditrelay_plugin_datadog::{DatadogExporter, MAX_LOGS_PER_REQUEST, MAX_REQUEST_BYTES};
use serde_json::{Value, json};

const API_KEY: &str = "dd-api-key-5e7c1f0b9a2d";

/// Datadog's error body: `{"errors":[{"status","title","detail"}]}`.
fn error(status: u16, title: &str, detail: &str) -> Response {
    let body =
        json!({"errors": [{"status": status.to_string(), "title": title, "detail": detail}]});
    Response::new(status, body.to_string()).with_header("content-type", "application/json")
}

/// The Logs intake on a good day: it checks the key and the framing, and
/// takes what is valid.
fn intake(request: &Request) -> Result<Response, HttpError> {
    match request.header_value("dd-api-key") {
        None => return Ok(error(401, "Unauthorized", "API key is missing")),
        Some(key) if key != API_KEY => return Ok(error(403, "Forbidden", "Forbidden")),
        Some(_) => {}
    }
    if request.header_value("content-type") != Some("application/json") {
        return Ok(error(
            400,
            "Bad Request",
            "Content-Type must be application/json",
        ));
    }
    let sent = match Sent::decode(request) {
        Ok(sent) => sent,
        Err(e) => return Ok(error(400, "Bad Request", &e)),
    };
    if sent.body().len() > MAX_REQUEST_BYTES as usize {
        return Ok(error(413, "Payload Too Large", "Payload too large"));
    }
    match serde_json::from_slice::<Value>(sent.body()) {
        Ok(Value::Array(logs)) if (1..=MAX_LOGS_PER_REQUEST).contains(&logs.len()) => {
            Ok(Response::new(202, "{}").with_header("content-type", "application/json"))
        }
        _ => Ok(error(
            400,
            "Bad Request",
            "A request holds 1 to 1000 log objects",
        )),
    }
}

#[test]
fn datadog_complies() {
    Compliance::<DatadogExporter>::http(["http-intake.logs.datadoghq.eu"])
        .config(json!({
            "site": "datadoghq.eu",
            "hostname": "relay-1",
            "tags": ["env:prod"],
        }))
        .secret("datadog_api_key", API_KEY)
        .secret_in_header("datadog_api_key", "dd-api-key")
        .refuses_without_secret("datadog_api_key")
        .refuses(json!({"site": "datadoghq.moon"}), "site")
        .refuses(json!({"max_request_bytes": "6MB"}), "max_request_bytes")
        .refuses(json!({"max_request_bytes": "lots"}), "max_request_bytes")
        .refuses(json!({"compression": "brotli"}), "compression")
        .refuses(json!({"tags": ["env prod"]}), "tags")
        .refuses(json!({"tag_fields": {"team": "actor..id"}}), "tag_fields")
        .refuses(json!({"endpoint": "ftp://intake.example"}), "endpoint")
        .refuses(json!({"timeout": "soon"}), "timeout")
        .server(intake)
        .events_in(|sent| sent.ids_at("/audit/id"))
        .limits(
            Limits::none()
                .max_events_per_request(MAX_LOGS_PER_REQUEST)
                .max_request_bytes(4_250_000),
        )
        .answer(Response::new(202, "{}"), Expected::Delivered)
        .answer_naming(
            error(400, "Bad Request", "Invalid tags"),
            Expected::Permanent,
            "tags",
        )
        .answer_naming(
            error(401, "Unauthorized", "API key is missing"),
            Expected::Permanent,
            "datadog_api_key",
        )
        .answer_naming(
            error(403, "Forbidden", "Forbidden"),
            Expected::Permanent,
            "datadog_api_key",
        )
        .answer(
            error(408, "Request Timeout", "Request timeout"),
            Expected::Retryable,
        )
        // A request of one log refused as too large: that log is rejected.
        .answer_naming(
            error(413, "Payload Too Large", "Payload too large"),
            Expected::PartiallyRejected,
            "too large",
        )
        .answer(
            error(429, "Too Many Requests", "Too many requests"),
            Expected::Retryable,
        )
        .answer(
            error(500, "Internal Server Error", "Internal error"),
            Expected::Retryable,
        )
        .answer(
            Response::new(502, "<html>Bad Gateway</html>"),
            Expected::Retryable,
        )
        .answer(
            error(503, "Service Unavailable", "Service unavailable"),
            Expected::Retryable,
        )
        .golden(Golden::new("tests/golden/request.http").config(json!({"compression": "none"})))
        .run();
}

// Bad days the suite's generic steps do not reach.

use auditrelay_plugin_api::envelope::{Actor, AuditEventEnvelope, Outcome};
use auditrelay_plugin_api::testing::{Harness, sample_events};
use auditrelay_plugin_api::{DeliverError, Delivery, EventBuf};

fn harness(
    config: Value,
    answer: impl Fn(&Request) -> Result<Response, HttpError> + Send + Sync + 'static,
) -> Harness<DatadogExporter> {
    Harness::<DatadogExporter>::builder()
        .config(config)
        .secret("datadog_api_key", API_KEY)
        .allowed_hosts(["http-intake.logs.datadoghq.com"])
        .http(answer)
        .init()
        .unwrap()
}

/// The `payload.seq` of every log in a request.
fn seqs(request: &Request) -> Vec<u64> {
    let sent = Sent::decode(request).unwrap();
    let logs: Vec<Value> = serde_json::from_slice(sent.body()).unwrap();
    logs.iter()
        .filter_map(|log| log["audit"]["payload"]["seq"].as_u64())
        .collect()
}

#[test]
fn a_retryable_answer_to_one_half_of_a_413_split_fails_the_batch() {
    // 413 for the whole request; of the halves, the first is taken and the
    // second meets a 503: nothing may be claimed delivered.
    let mut plugin = harness(json!({}), |request| {
        let seqs = seqs(request);
        Ok(if seqs.len() > 5 {
            error(413, "Payload Too Large", "Payload too large")
        } else if seqs.contains(&7) {
            error(503, "Service Unavailable", "Service unavailable").with_header("Retry-After", "3")
        } else {
            Response::new(202, "{}")
        })
    });
    match plugin.deliver(&sample_events(10)) {
        Err(DeliverError::Retryable { retry_after, .. }) => {
            assert_eq!(retry_after, Some(std::time::Duration::from_secs(3)));
        }
        other => panic!("expected the batch retryable, got {other:?}"),
    }
    let sizes: Vec<usize> = plugin.requests().iter().map(|r| seqs(r).len()).collect();
    assert_eq!(
        sizes,
        [10, 5, 5],
        "the whole, the taken half, the refused half"
    );
}

#[test]
fn a_log_larger_than_max_request_bytes_goes_alone_and_the_rest_within_it() {
    // max_request_bytes below Datadog's 1 MB per log: a 200 kB log cannot
    // share a request, and is sent alone (Datadog takes it); every other
    // request stays within the limit.
    let mut plugin = harness(
        json!({"compression": "none", "max_request_bytes": "100KB"}),
        intake_for_any_key,
    );
    let mut events = sample_events(300);
    let envelope = AuditEventEnvelope::builder("billing", "export.created")
        .actor(Actor::user("u-1"))
        .outcome(Outcome::Success)
        .payload(json!({"blob": "x".repeat(200_000)}))
        .build()
        .unwrap();
    events.insert(150, EventBuf::from_envelope(&envelope));
    assert_eq!(plugin.deliver(&events), Ok(Delivery::Accepted));
    let requests = plugin.requests();
    let over: Vec<usize> = requests
        .iter()
        .map(|r| r.body.len())
        .filter(|&len| len > 100_000)
        .collect();
    assert_eq!(over.len(), 1, "only the big log's request is over");
    let alone = requests.iter().find(|r| r.body.len() > 100_000).unwrap();
    let logs: Vec<Value> = serde_json::from_slice(&alone.body).unwrap();
    assert_eq!(logs.len(), 1);
    assert_eq!(
        logs[0]["audit"]["id"].as_str(),
        Some(events[150].id.as_str())
    );
}

fn intake_for_any_key(_: &Request) -> Result<Response, HttpError> {
    Ok(Response::new(202, "{}"))
}
/// An event too large for Datadog even without its payload (possible only
/// with the relay's limits raised; built by hand).
fn too_large_even_truncated() -> EventBuf {
    let envelope = AuditEventEnvelope::builder("billing", "export.created")
        .actor(Actor::user("u-1"))
        .outcome(Outcome::Success)
        .build()
        .unwrap();
    let mut event = EventBuf::from_envelope(&envelope);
    let mut json: Value = serde_json::from_slice(&event.envelope).unwrap();
    json["reason"] = Value::String("y".repeat(1_030_000));
    event.envelope = serde_json::to_vec(&json).unwrap();
    event
}

#[test]
fn rejections_from_the_encoder_and_from_a_413_come_in_batch_order() {
    // Event 2's log is refused alone (413); event 4 cannot be encoded at all.
    let mut plugin = harness(json!({}), |request| {
        Ok(if seqs(request).contains(&2) {
            error(413, "Payload Too Large", "Payload too large")
        } else {
            Response::new(202, "{}")
        })
    });
    let mut events = sample_events(4);
    events.push(too_large_even_truncated());
    match plugin.deliver(&events).unwrap() {
        Delivery::PartiallyRejected(rejected) => {
            let indexes: Vec<u32> = rejected.iter().map(|r| r.index).collect();
            assert_eq!(indexes, [2, 4], "in batch order: {rejected:?}");
            assert!(rejected[0].reason.contains("413"), "{}", rejected[0].reason);
            assert!(
                rejected[1].reason.contains("1 MB"),
                "{}",
                rejected[1].reason
            );
        }
        other => panic!("expected events 2 and 4 rejected, got {other:?}"),
    }
}
