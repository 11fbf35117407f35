//! Datadog's documented limits, checked on the requests the plugin builds:
//! at most 1000 logs and `max_request_bytes` per request, and no log over
//! 1 MB (its payload is cut down with a marker; identity fields stay).

use auditrelay_plugin_api::envelope::{Actor, AuditEventEnvelope, Outcome};
use auditrelay_plugin_api::http::Response;
use auditrelay_plugin_api::testing::{Harness, sample_events};
use auditrelay_plugin_api::{Delivery, EventBuf};
use auditrelay_plugin_datadog::DatadogExporter;
use serde_json::Value;

fn harness(config: Value) -> Harness<DatadogExporter> {
    Harness::<DatadogExporter>::builder()
        .config(config)
        .secret("datadog_api_key", "k")
        .allowed_hosts(["http-intake.logs.datadoghq.com"])
        .http(|_| Ok(Response::new(202, "{}")))
        .init()
        .unwrap()
}

fn logs_of(body: &[u8]) -> Vec<Value> {
    serde_json::from_slice(body).expect("a JSON array")
}

#[test]
fn requests_hold_at_most_1000_logs_and_max_request_bytes() {
    let mut plugin = harness(serde_json::json!({"compression": "none"}));
    assert_eq!(
        plugin.deliver(&sample_events(2500)).unwrap(),
        Delivery::Accepted
    );
    let counts: Vec<usize> = plugin
        .requests()
        .iter()
        .map(|r| logs_of(&r.body).len())
        .collect();
    assert_eq!(counts, [1000, 1000, 500]);

    let mut plugin =
        harness(serde_json::json!({"compression": "none", "max_request_bytes": "100KB"}));
    plugin.deliver(&sample_events(1000)).unwrap();
    let requests = plugin.requests();
    assert!(requests.len() > 5);
    assert!(
        requests.iter().all(|r| r.body.len() <= 100_000),
        "every request within 100 kB"
    );
    assert_eq!(
        requests
            .iter()
            .map(|r| logs_of(&r.body).len())
            .sum::<usize>(),
        1000
    );
}

fn event_with(payload: Value) -> EventBuf {
    let envelope = AuditEventEnvelope::builder("billing", "export.created")
        .actor(Actor::user("u-1"))
        .outcome(Outcome::Success)
        .payload(payload)
        .build()
        .expect("under the relay's 1 MiB");
    EventBuf::from_envelope(&envelope)
}

#[test]
fn a_log_over_1_mb_has_its_payload_truncated_and_keeps_its_identity() {
    let big = event_with(serde_json::json!({"blob": "x".repeat(1_030_000)}));
    assert!(big.envelope.len() > 1_000_000);
    let mut plugin = harness(serde_json::json!({"compression": "none"}));
    assert_eq!(
        plugin.deliver(std::slice::from_ref(&big)).unwrap(),
        Delivery::Accepted
    );
    let request = &plugin.requests()[0];
    let log = &logs_of(&request.body)[0];
    assert!(serde_json::to_vec(log).unwrap().len() <= 1_000_000);
    assert_eq!(log["audit"]["id"].as_str(), Some(big.id.as_str()));
    assert_eq!(log["audit"]["actor"]["id"], "u-1");
    assert_eq!(log["audit"]["type"], "export.created");
    let payload = log["audit"]["payload"]
        .as_str()
        .expect("the payload became a marker string");
    assert!(payload.starts_with("{\"blob\":\"xxxx"));
    assert!(
        payload.ends_with("[truncated by auditrelay: payload was 1030011 bytes]"),
        "{}",
        &payload[payload.len() - 80..]
    );

    // Too big even without its payload (possible only with the relay's
    // limits raised; built by hand here): refused alone, the rest delivered.
    let mut huge = event_with(serde_json::json!({}));
    let mut json: Value = serde_json::from_slice(&huge.envelope).unwrap();
    json["reason"] = Value::String("y".repeat(1_030_000));
    huge.envelope = serde_json::to_vec(&json).unwrap();
    let small = &sample_events(1)[0];
    let mut plugin = harness(serde_json::json!({"compression": "none"}));
    match plugin.deliver(&[small.clone(), huge]).unwrap() {
        Delivery::PartiallyRejected(rejected) => {
            assert_eq!(rejected.len(), 1);
            assert_eq!(rejected[0].index, 1);
            assert!(
                rejected[0].reason.contains("1 MB"),
                "{}",
                rejected[0].reason
            );
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
    assert_eq!(logs_of(&plugin.requests()[0].body).len(), 1);
}

#[test]
fn a_413_splits_the_request_down_to_the_log_it_refuses() {
    // The intake refuses any request with more than 100 logs, and the log of
    // event 7 always.
    let mut plugin = Harness::<DatadogExporter>::builder()
        .config(serde_json::json!({"compression": "none"}))
        .secret("datadog_api_key", "k")
        .allowed_hosts(["http-intake.logs.datadoghq.com"])
        .http(|request| {
            let logs = logs_of(&request.body);
            let refused =
                logs.len() > 100 || logs.iter().any(|l| l["audit"]["payload"]["seq"] == 7);
            Ok(Response::new(if refused { 413 } else { 202 }, "{}"))
        })
        .init()
        .unwrap();
    match plugin.deliver(&sample_events(300)).unwrap() {
        Delivery::PartiallyRejected(rejected) => {
            assert_eq!(rejected.iter().map(|r| r.index).collect::<Vec<_>>(), [7]);
        }
        other => panic!("expected event 7 refused, got {other:?}"),
    }
    let accepted: usize = plugin
        .requests()
        .iter()
        .map(|r| logs_of(&r.body))
        .filter(|logs| logs.len() <= 100 && logs.iter().all(|l| l["audit"]["payload"]["seq"] != 7))
        .map(|logs| logs.len())
        .sum();
    assert_eq!(accepted, 299, "every other log was accepted exactly once");
}
