//! `mobius` on events mobius-auditlog-py 1.0.0 (the package from PyPI)
//! built and published: `tests/samples/published.ndjson` is what its
//! publisher handed a sender (`tests/python/mobius_events.py print`: one
//! event from the builder, one from its ASGI middleware, one changed after
//! it was sealed). Each envelope is read back as the relay reads it and
//! compared whole with `tests/golden/published.json` (`UPDATE_GOLDEN=1`
//! rewrites it after a deliberate change).

use std::path::Path;

use auditrelay_mapper_mobius::Mobius;
use auditrelay_plugin_api::mapper::Mapped;
use auditrelay_plugin_api::testing::MapperHarness;
use serde_json::{Value, json};

fn samples() -> Vec<Vec<u8>> {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/samples/published.ndjson"),
    )
    .unwrap()
    .lines()
    .map(|line| line.as_bytes().to_vec())
    .collect()
}

fn harness(config: Value) -> MapperHarness<Mobius> {
    MapperHarness::<Mobius>::new(config)
        .unwrap()
        .source("billing")
}

fn refusal(mapped: &Mapped) -> Option<&str> {
    match mapped {
        Mapped::Refused(reason) => Some(reason),
        Mapped::Envelopes(_) => None,
    }
}

fn envelope(mapped: &Mapped) -> Value {
    let events = mapped.envelopes().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(events.len(), 1);
    serde_json::from_slice(&events[0].to_canonical_json()).unwrap()
}

#[test]
fn published_events_map_field_by_field() {
    let mut harness = harness(json!({}));
    let samples = samples();
    let events: Vec<Value> = samples[..2]
        .iter()
        .map(|sample| envelope(&harness.map_bytes(sample, "application/json", &[])))
        .collect();
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/published.json");
    let text = serde_json::to_string_pretty(&events).unwrap() + "\n";
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &text).unwrap();
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|_| panic!("{} missing: run with UPDATE_GOLDEN=1", path.display()));
    assert_eq!(text, expected, "the mapping differs from its golden file");

    let built = &events[0];
    assert_eq!(built["type"], "group.member_added");
    assert_eq!(built["tenant"], "acme");
    assert_eq!(built["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(built["request_id"], "tx-7781");
    assert_eq!(
        built["actor"],
        json!({"id": "u-1001", "kind": "user", "groups": ["billing-admins", "staff"], "ip": "203.0.113.9", "user_agent": "billing-ui/4.2"})
    );
    assert_eq!(
        built["action"],
        json!({"name": "group.member_added", "outcome": "success", "severity": "info"})
    );
    assert_eq!(built["target"], json!({"kind": "groups", "id": "g-7"}));
    assert_eq!(built["payload"]["request"]["note"], "Zoë — café ✓");
    assert_eq!(built["metadata"]["mobius.sensitive"], "true");
    assert_eq!(built["metadata"]["mobius.compliance_category"], "SOX");
    assert_eq!(built["metadata"]["mobius.signed"], "true");

    // The middleware's: the route is the action, the type comes from the
    // resource and the method, a 403 is a failure with WARNING.
    let request = &events[1];
    assert_eq!(request["type"], "invoices.delete");
    assert_eq!(request["actor"]["id"], "svc-reconciler");
    assert_eq!(request["actor"]["kind"], "service");
    assert_eq!(
        request["action"],
        json!({"name": "/invoices/inv-42", "outcome": "failure", "severity": "medium"})
    );
    assert_eq!(
        request["target"],
        json!({"kind": "invoices", "id": "/invoices/inv-42"})
    );
    assert_eq!(request["metadata"]["k8s.pod"], "billing-api-7d9f");
    assert_eq!(request["metadata"]["mobius.method"], "DELETE");
}

#[test]
fn an_event_changed_after_it_was_sealed_is_refused() {
    let mut harness = harness(json!({}));
    let tampered = &samples()[2];
    let refused = harness.map_bytes(tampered, "application/json", &[]);
    let reason = refusal(&refused).expect("a changed event is refused");
    assert!(reason.contains("changed after it was sealed"), "{reason}");

    // Any one byte of content changed, anywhere: refused.
    let original: Value = serde_json::from_slice(&samples()[0]).unwrap();
    for (pointer, value) in [
        ("/eventdata/requestpayload/limit", json!(1250.25)),
        ("/eventdata/requestpayload/note", json!("Zoe — cafe ✓")),
        ("/timestamp", json!("2026-12-04T03:20:24+00:00")),
        ("/tenantid", json!("globex")),
    ] {
        let mut changed = original.clone();
        *changed.pointer_mut(pointer).unwrap() = value;
        let mapped = harness.map_bytes(
            &serde_json::to_vec(&changed).unwrap(),
            "application/json",
            &[],
        );
        assert!(
            refusal(&mapped).is_some(),
            "{pointer} changed, and the event was taken"
        );
    }
}

#[test]
fn unsealed_events_are_taken_unless_a_hash_is_required() {
    let mut event: Value = serde_json::from_slice(&samples()[0]).unwrap();
    event.as_object_mut().unwrap().remove("security");
    let bytes = serde_json::to_vec(&event).unwrap();
    let taken = harness(json!({})).map_bytes(&bytes, "application/json", &[]);
    assert!(taken.envelopes().is_ok());
    let refused = harness(json!({"require_hash": true})).map_bytes(&bytes, "application/json", &[]);
    assert!(refusal(&refused).unwrap().contains("no security.hash"));
}

#[test]
fn what_is_not_a_mobius_event_is_refused_with_why() {
    let mut harness = harness(json!({}));
    for (body, wanted) in [
        (&b"[1]"[..], "event 0: not a mobius audit event"),
        (b"{\"timestamp\":\"2026-01-01T00:00:00+00:00\"}", "no id"),
        (b"{\"id\":\"e\"}", "no timestamp"),
    ] {
        let mapped = harness.map_bytes(body, "application/json", &[]);
        let reason = refusal(&mapped).unwrap_or_else(|| panic!("{body:?} was taken"));
        assert!(reason.contains(wanted), "{reason}");
    }
}
