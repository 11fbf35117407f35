//! `json-map` against the records it is for: every key of its table, the
//! envelopes read back as the relay reads them, and every bad record or
//! bad table refused with the reason.

use auditrelay_mapper_json_map::JsonMap;
use auditrelay_plugin_api::mapper::Mapped;
use auditrelay_plugin_api::testing::MapperHarness;
use serde_json::{Value, json};

/// A shop's webhook body, as its documentation might show it.
fn order_cancelled() -> Value {
    json!({
        "uid": "evt_01HV6", "kind": "OrderCancelled", "at": "2026-12-01T10:00:00Z",
        "user": {"id": 4711, "mail": "ana@example.com", "ip": "192.0.2.7"},
        "order": {"id": "o-88", "total": 120.5},
        "reason": null,
    })
}

fn shop() -> MapperHarness<JsonMap> {
    MapperHarness::<JsonMap>::new(json!({
        "fields": {
            "id": "/uid", "type": "/kind", "time": "/at",
            "actor.id": "/user/id", "actor.email": "/user/mail", "actor.ip": "/user/ip",
            "target.id": "/order/id", "reason": "/reason", "payload": "/order",
            "metadata.shop.total": "/order/total",
        },
        "constants": {"action.outcome": "success", "actor.kind": "user", "target.kind": "order", "reason": "none given"},
        "values": {"type": {"OrderCancelled": "order.cancelled", "UserSignedIn": "user.login"}},
    }))
    .unwrap()
    .source("shop")
}

#[test]
fn every_field_lands_where_the_map_says() {
    let mapped = shop().map_json(&order_cancelled());
    let events = mapped.envelopes().unwrap();
    assert_eq!(events.len(), 1);
    let event = serde_json::to_value(&events[0]).unwrap();
    assert_eq!(event["id"], "evt_01HV6");
    assert_eq!(event["source"], "shop", "the relay source's name");
    assert_eq!(
        event["type"], "order.cancelled",
        "mapped through values.type"
    );
    assert_eq!(event["time"], "2026-12-01T10:00:00Z");
    assert_eq!(event["actor"]["id"], "4711", "a number becomes text");
    assert_eq!(event["actor"]["kind"], "user");
    assert_eq!(event["actor"]["email"], "ana@example.com");
    assert_eq!(event["actor"]["ip"], "192.0.2.7");
    assert_eq!(event["target"]["id"], "o-88");
    assert_eq!(event["target"]["kind"], "order");
    assert_eq!(
        event["reason"], "none given",
        "null in the record: the constant"
    );
    assert_eq!(event["payload"], json!({"id": "o-88", "total": 120.5}));
    assert_eq!(event["metadata"]["shop.total"], "120.5");
    assert_eq!(event["action"]["outcome"], "success");
}

#[test]
fn the_same_record_maps_to_the_same_id_so_a_resend_deduplicates() {
    let mut harness = MapperHarness::<JsonMap>::new(json!({
        "fields": {"id": "/id", "type": "/t", "time": "/at", "actor.id": "/who"},
        "constants": {"action.outcome": "success"},
    }))
    .unwrap();
    let record =
        |id: Value| json!({"id": id, "t": "a.b", "at": "2026-12-01T10:00:00Z", "who": "x"});
    let id_of = |mapped: Mapped| mapped.envelopes().unwrap()[0].id.to_string();
    assert_eq!(id_of(harness.map_json(&record(json!(12345)))), "12345");
    let spaced = id_of(harness.map_json(&record(json!("an id with spaces"))));
    assert!(spaced.starts_with("sha256:"), "{spaced}");
    assert_eq!(
        spaced,
        id_of(harness.map_json(&record(json!("an id with spaces"))))
    );
    assert_ne!(
        spaced,
        id_of(harness.map_json(&record(json!("an id with spaces!"))))
    );
    let long = "x".repeat(129);
    assert!(id_of(harness.map_json(&record(json!(long)))).starts_with("sha256:"));

    // No id mapping: the content's digest, the same for the same content.
    let mut unnamed = MapperHarness::<JsonMap>::new(json!({
        "fields": {"type": "/t", "time": "/at", "actor.id": "/who"},
        "constants": {"action.outcome": "success"},
    }))
    .unwrap();
    let first =
        id_of(unnamed.map_json(&json!({"t": "a.b", "at": "2026-12-01T10:00:00Z", "who": "x"})));
    let reordered =
        id_of(unnamed.map_json(&json!({"who": "x", "at": "2026-12-01T10:00:00Z", "t": "a.b"})));
    let other =
        id_of(unnamed.map_json(&json!({"t": "a.b", "at": "2026-12-01T10:00:01Z", "who": "x"})));
    assert!(first.starts_with("sha256:"), "{first}");
    assert_eq!(first, reordered, "keys are sorted before the digest");
    assert_ne!(first, other);
}

#[test]
fn the_type_allowlist_drops_the_rest_and_unmatched_values_do_as_told() {
    let config = |unmatched: &str| {
        json!({
            "fields": {"type": "/kind", "time": "/at", "actor.id": "/user/id"},
            "constants": {"action.outcome": "success"},
            "values": {"type": {"OrderCancelled": "order.cancelled"}},
            "types": ["order.*"],
            "unmatched": unmatched,
        })
    };
    let signed_in =
        json!({"kind": "UserSignedIn", "at": "2026-12-01T10:00:00Z", "user": {"id": "ana"}});
    let mut keep = MapperHarness::<JsonMap>::new(config("keep")).unwrap();
    assert_eq!(
        keep.map_json(&order_cancelled()).envelopes().unwrap().len(),
        1
    );
    // Kept as "UserSignedIn", which the allowlist does not hold.
    assert_eq!(keep.map_json(&signed_in), Mapped::dropped());
    let mut drop = MapperHarness::<JsonMap>::new(config("drop")).unwrap();
    assert_eq!(drop.map_json(&signed_in), Mapped::dropped());
    let mut refuse = MapperHarness::<JsonMap>::new(config("refuse")).unwrap();
    assert_eq!(
        refuse.map_json(&signed_in),
        Mapped::refused("`type` is UserSignedIn, which config.values.type does not map")
    );
}

#[test]
fn a_body_of_many_events_maps_each_and_a_bad_element_names_its_position() {
    let mut harness = MapperHarness::<JsonMap>::new(json!({
        "records": "/events",
        "fields": {"id": "/id", "type": "/type", "time": "/ts", "actor.id": "/actor"},
        "constants": {"action.outcome": "success"},
        "time_format": "unix_millis",
    }))
    .unwrap();
    let body = json!({"events": [
        {"id": "a", "type": "x.y", "ts": 1764583200000_u64, "actor": "ana"},
        {"id": "b", "type": "x.z", "ts": 1764583200500_u64, "actor": "bo"},
    ]});
    let events = harness.map_json(&body).envelopes().unwrap();
    let times: Vec<String> = events.iter().map(|e| e.time.to_string()).collect();
    assert_eq!(times, ["2025-12-01T10:00:00Z", "2025-12-01T10:00:00.5Z"]);
    let bad = json!({"events": [{"id": "a", "type": "x.y", "ts": 1, "actor": "ana"}, {"id": "b", "type": "x.y", "ts": 2}]});
    assert_eq!(
        harness.map_json(&bad),
        Mapped::refused(
            "element 1: `actor.id` is required and the record has nothing at \"/actor\""
        )
    );
    assert_eq!(
        harness.map_json(&json!({"events": {}})),
        Mapped::refused("/events is not an array (config.records)")
    );
}

#[test]
fn a_record_that_is_not_json_or_has_the_wrong_shape_is_refused_with_the_reason() {
    let mut harness = shop();
    let refused = harness.map_bytes(b"uid=1&kind=x", "application/x-www-form-urlencoded", &[]);
    let Mapped::Refused(reason) = refused else {
        panic!("{refused:?}")
    };
    assert!(
        reason.starts_with("the record is not the JSON expected"),
        "{reason}"
    );
    let mut record = order_cancelled();
    record["at"] = json!(17);
    // A time that is not one: the mapper passes it on, the relay's
    // strict reading (what envelopes() does) refuses it by field name.
    let error = harness.map_json(&record).envelopes().unwrap_err();
    assert!(error.contains("time"), "{error}");
    let mut unix = MapperHarness::<JsonMap>::new(json!({
        "fields": {"type": "/t", "time": "/at", "actor.id": "/who"},
        "constants": {"action.outcome": "success"},
        "time_format": "unix_seconds",
    }))
    .unwrap();
    assert_eq!(
        unix.map_json(&json!({"t": "a.b", "at": "yesterday", "who": "x"})),
        Mapped::refused("`time` is \"yesterday\", not a number (config.time_format = UnixSeconds)")
    );
}

#[test]
fn a_bad_table_is_refused_with_every_problem_at_once() {
    let error = MapperHarness::<JsonMap>::new(json!({
        "fields": {"type": "kind", "actor.name": "/user"},
        "constants": {"colour": "blue"},
        "values": {"action.outcome": {"ok": "success"}},
        "records": "events",
    }))
    .err()
    .expect("refused")
    .to_string();
    for problem in [
        "config.fields.type: \"kind\" is not a JSON pointer; write \"/kind\"",
        "config.fields.actor.name: not an envelope field",
        "config.constants.colour: not an envelope field",
        "config.values.action.outcome: maps the values of a field that config.fields does not read",
        "config.records: \"events\" is not a JSON pointer",
        "nothing fills `time`",
        "nothing fills `actor.id`",
        "nothing fills `action.outcome`",
    ] {
        assert!(error.contains(problem), "{problem:?} in {error}");
    }
    let typo = MapperHarness::<JsonMap>::new(json!({"feilds": {}}))
        .err()
        .expect("refused")
        .to_string();
    assert!(typo.contains("unknown field `feilds`"), "{typo}");
}

#[test]
fn metadata_fills_fields_a_body_does_not_carry() {
    // GitHub names the event and the delivery in headers, not the body.
    let mut harness = MapperHarness::<JsonMap>::new(json!({
        "fields": {
            "id": "@x-github-delivery", "type": "@x-github-event", "action.name": "/action",
            "actor.id": "/sender/login", "time": "/pull_request/updated_at", "target.id": "/pull_request/html_url",
        },
        "constants": {"action.outcome": "success", "target.kind": "pull_request"},
        "values": {"type": {"pull_request": "github.pull_request"}},
    }))
    .unwrap()
    .source("github");
    let body = serde_json::to_vec(&json!({
        "action": "opened", "sender": {"login": "octocat"},
        "pull_request": {"html_url": "https://github.com/o/r/pull/1", "updated_at": "2026-12-01T10:00:00Z"},
    }))
    .unwrap();
    let metadata = [
        ("x-github-event".to_owned(), "pull_request".to_owned()),
        (
            "x-github-delivery".to_owned(),
            "72d3162e-cc78-11e3-81ab-4c9367dc0958".to_owned(),
        ),
    ];
    let events = harness
        .map_bytes(&body, "application/json", &metadata)
        .envelopes()
        .unwrap();
    assert_eq!(
        events[0].id.to_string(),
        "72d3162e-cc78-11e3-81ab-4c9367dc0958"
    );
    assert_eq!(events[0].event_type, "github.pull_request");
    // Without the header the required field is missing: refused, by name.
    let refused = harness.map_bytes(&body, "application/json", &metadata[1..]);
    assert_eq!(
        refused,
        Mapped::refused("`type` is required and the record has nothing at \"@x-github-event\"")
    );
    let error = MapperHarness::<JsonMap>::new(json!({"fields": {"type": "@"}}))
        .err()
        .unwrap()
        .to_string();
    assert!(
        error.contains("config.fields.type: \"@\" names no metadata"),
        "{error}"
    );
}
