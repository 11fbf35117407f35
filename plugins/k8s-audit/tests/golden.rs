//! `k8s-audit` on audit events shaped as the Kubernetes documentation
//! describes them (audit.k8s.io/v1: the webhook backend's `EventList`, the
//! log backend's one `Event` per line), each envelope read back as the
//! relay reads it and compared whole with `tests/golden/<sample>.json`
//! (`UPDATE_GOLDEN=1` rewrites them after a deliberate change).

use std::path::Path;

use auditrelay_mapper_k8s_audit::K8sAudit;
use auditrelay_plugin_api::mapper::Mapped;
use auditrelay_plugin_api::testing::MapperHarness;
use serde_json::{Value, json};

fn sample(name: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/samples")
            .join(name),
    )
    .unwrap()
}

fn harness(config: Value) -> MapperHarness<K8sAudit> {
    MapperHarness::<K8sAudit>::new(config)
        .unwrap()
        .source("k8s")
}

/// The envelopes `sample` maps to, as the relay stores them, compared
/// with the golden file.
fn golden(name: &str, config: Value) -> Vec<Value> {
    let mapped = harness(config).map_bytes(&sample(name), "application/json", &[]);
    let events: Vec<Value> = mapped
        .envelopes()
        .unwrap_or_else(|e| panic!("{name}: {e}"))
        .iter()
        .map(|e| serde_json::from_slice(&e.to_canonical_json()).unwrap())
        .collect();
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    let text = serde_json::to_string_pretty(&events).unwrap() + "\n";
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &text).unwrap();
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|_| panic!("{} missing: run with UPDATE_GOLDEN=1", path.display()));
    assert_eq!(text, expected, "{name} differs from its golden file");
    events
}

#[test]
fn a_webhook_event_list_keeps_completed_mutations_only() {
    let events = golden(
        "webhook-eventlist.json",
        json!({"cluster": "prod-eu", "tenant_from_namespace": true}),
    );
    // RequestReceived (a stage dropped by default) and a `get` (not a
    // mutation) are gone; the create and the forbidden delete remain.
    let ids: Vec<&str> = events.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(
        ids,
        [
            "5c1a3d0e-7b9f-4e21-9a63-2f8d41c0b7aa",
            "a7d2c6e8-1f34-4b5a-b8c9-3e7f0d1a2b99"
        ]
    );
    let create = &events[0];
    assert_eq!(create["type"], "k8s.pods.create");
    assert_eq!(create["time"], "2026-11-30T09:14:03.120455Z");
    assert_eq!(create["tenant"], "payments");
    assert_eq!(create["actor"]["id"], "ana@example.com");
    assert_eq!(create["actor"]["kind"], "user");
    assert_eq!(create["actor"]["ip"], "10.20.0.7");
    assert_eq!(
        create["action"],
        json!({"name": "create", "outcome": "success", "severity": "info", "status_code": 201})
    );
    assert_eq!(
        create["target"],
        json!({"kind": "pods", "id": "payments/debug-shell", "name": "debug-shell"})
    );
    assert!(
        create["reason"]
            .as_str()
            .unwrap()
            .starts_with("RBAC: allowed by ClusterRoleBinding")
    );
    assert_eq!(create["metadata"]["k8s.cluster"], "prod-eu");
    let denied = &events[1];
    assert_eq!(denied["action"]["outcome"], "denied");
    assert_eq!(denied["action"]["severity"], "medium");
    assert_eq!(denied["actor"]["kind"], "service");
    assert_eq!(denied["tenant"], "kube-system");
    assert_eq!(denied["metadata"]["k8s.decision"], "forbid");
    assert!(
        denied["reason"].as_str().unwrap().contains("is forbidden"),
        "the empty annotation gives way to the status message"
    );
}

#[test]
fn a_log_line_with_impersonation_and_a_subresource() {
    let events = golden("log-line-impersonated-scale.json", json!({}));
    let event = &events[0];
    assert_eq!(event["type"], "k8s.deployments.scale.patch");
    assert_eq!(
        event["actor"]["id"], "ci-bot",
        "who authenticated, not whom they impersonated"
    );
    assert_eq!(
        event["metadata"]["k8s.impersonated_user"],
        "release-manager"
    );
    assert_eq!(
        event["actor"]["ip"], "203.0.113.40",
        "the first source IP: the client"
    );
    assert!(
        event.get("payload").is_none(),
        "no object body without keep_objects"
    );
    let kept = harness(json!({"keep_objects": true}))
        .map_bytes(
            &sample("log-line-impersonated-scale.json"),
            "application/json",
            &[],
        )
        .envelopes()
        .unwrap();
    assert_eq!(
        kept[0].payload["requestObject"],
        json!({"spec": {"replicas": 6}})
    );
}

#[test]
fn non_resource_requests_panics_and_every_verb() {
    let events = golden("nonresource-and-panic.json", json!({"verbs": ["*"]}));
    assert_eq!(events[0]["type"], "k8s.nonresource.post");
    assert_eq!(events[0]["target"]["id"], "/livez");
    assert_eq!(events[0]["actor"]["kind"], "anonymous");
    assert_eq!(events[0]["action"]["outcome"], "denied");
    assert_eq!(
        events[1]["id"], "1d2c3b4a-5e6f-4a7b-8c9d-0e1f2a3b4c5d:Panic",
        "one id per stage"
    );
    assert_eq!(events[1]["action"]["outcome"], "failure");
    assert_eq!(events[1]["action"]["severity"], "high");
    assert_eq!(events[1]["actor"]["kind"], "system");
    assert_eq!(events[1]["target"]["id"], "node-3");
    // Nodes' own updates are noise to most: ignored by pattern.
    let quiet = harness(json!({"verbs": ["*"], "ignore_users": ["system:node:*"]})).map_bytes(
        &sample("nonresource-and-panic.json"),
        "application/json",
        &[],
    );
    assert_eq!(quiet.envelopes().unwrap().len(), 1);
}

#[test]
fn what_is_not_an_audit_event_is_refused_with_the_reason() {
    let mut harness = harness(json!({}));
    let refusal = |mapped: Mapped| match mapped {
        Mapped::Refused(reason) => reason,
        other => panic!("{other:?}"),
    };
    assert!(
        refusal(harness.map_json(&json!({"kind": "Pod"})))
            .starts_with("not a Kubernetes audit Event or EventList")
    );
    assert_eq!(
        refusal(harness.map_json(&json!({"kind": "EventList", "items": {}}))),
        "an EventList whose items is not an array"
    );
    let no_time = json!({"kind": "EventList", "items": [{"auditID": "x", "stage": "ResponseComplete", "verb": "create"}]});
    assert_eq!(
        refusal(harness.map_json(&no_time)),
        "event 0: it has neither requestReceivedTimestamp nor stageTimestamp"
    );
    assert_eq!(
        harness.map_json(&json!({"kind": "EventList", "items": []})),
        Mapped::dropped()
    );
    let error = MapperHarness::<K8sAudit>::new(json!({"stages": ["Done"], "verbs": []}))
        .err()
        .unwrap()
        .to_string();
    assert!(
        error.contains("config.stages: \"Done\" is not a stage")
            && error.contains("config.verbs: keeps nothing"),
        "{error}"
    );
}
