//! Mapper plugins are contained like exporters, and more finely: a record
//! that makes the mapper panic, loop, run out of memory or answer the
//! impossible is refused alone, with the reason; every other record of its
//! batch maps as if nothing happened; the next batch runs on a fresh
//! instance; a refusal's text never carries a secret. Worlds are told
//! apart by name: an exporter enabled as a mapper (or the reverse) is
//! refused with the fix.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use auditrelay::Relay;
use auditrelay::internals::{
    ForeignRecord, MapperInstance, PluginServices, RecordBatch, Sandbox, Secret, WasmMapper,
    WasmRuntime,
};
use auditrelay_plugin_api::mapper::Mapped;
use auditrelay_tests::{Home, leaked_form, plugin_wasm};

const TOKEN: &str = "mapper-secret-7f3a9c2e";

fn runtime() -> Arc<WasmRuntime> {
    Arc::new(WasmRuntime::new(None).unwrap())
}

async fn faulty_mapper() -> Arc<WasmMapper> {
    let loaded = runtime()
        .load_mapper(&plugin_wasm("faulty-mapper"), &Default::default())
        .await
        .unwrap();
    Arc::new(loaded)
}

/// A sandbox as the relay gives a mapper: 200 ms per call, 16 MiB, the
/// secret `token` granted.
fn sandbox() -> Sandbox {
    let secrets = BTreeMap::from([("token".to_owned(), Secret::new(TOKEN))]);
    Sandbox {
        services: PluginServices::new("crm", secrets, None),
        memory_limit: 16 << 20,
        call_timeout: Duration::from_millis(200),
        ..Sandbox::describe_only()
    }
}

/// A batch of the fixture's orders, record `i` numbered `i`.
fn batch(orders: &[&str]) -> RecordBatch {
    RecordBatch {
        source: "crm".into(),
        content_type: "application/json".into(),
        records: orders
            .iter()
            .enumerate()
            .map(|(n, what)| ForeignRecord {
                data: format!(r#"{{"n":{n},"do":"{what}"}}"#).into_bytes(),
                metadata: vec![("file.path".into(), "/var/log/crm.jsonl".into())],
            })
            .collect(),
    }
}

/// The ids of the events a record mapped to.
fn ids(answer: &Mapped) -> Vec<String> {
    answer
        .envelopes()
        .unwrap_or_else(|e| panic!("{e}"))
        .into_iter()
        .map(|event| event.id.to_string())
        .collect()
}

fn refusal(answer: &Mapped) -> &str {
    match answer {
        Mapped::Refused(reason) => reason,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_that_crashes_the_mapper_is_refused_alone_and_the_rest_flow() {
    let mut mapper = MapperInstance::start(faulty_mapper().await, sandbox())
        .await
        .unwrap();
    let orders = [
        "ok", "panic", "ok", "loop", "two", "oom", "drop", "garbage", "ok", "many", "refuse",
        "short", "ok", "leak", "ok",
    ];
    let answers = mapper.map(&batch(&orders)).await;
    assert_eq!(answers.len(), orders.len(), "one answer per record");
    for (n, (what, answer)) in orders.iter().zip(&answers).enumerate() {
        match *what {
            "ok" => assert_eq!(ids(answer), [format!("fixture-{n}")]),
            "two" => assert_eq!(
                ids(answer),
                [format!("fixture-{n}-a"), format!("fixture-{n}-b")]
            ),
            "drop" => assert_eq!(*answer, Mapped::dropped()),
            "refuse" => assert_eq!(refusal(answer), format!("fixture refuses record {n}")),
            // Not JSON: the mapper's answer is kept as given, and the
            // source's envelope check refuses it (below).
            "garbage" => assert_eq!(*answer, Mapped::Envelopes(vec!["{not json".into()])),
            "many" => assert!(refusal(answer).contains("at most 1000"), "{answer:?}"),
            "panic" | "loop" | "oom" | "short" => {
                let reason = refusal(answer);
                assert!(
                    reason.starts_with("the mapper crashed on this record"),
                    "{what}: {reason}"
                );
            }
            "leak" => {
                let reason = refusal(answer);
                assert!(reason.contains("fixture leaks"), "{reason}");
                assert_eq!(leaked_form(reason, TOKEN), None, "{reason}");
            }
            other => unreachable!("{other}"),
        }
    }
    assert!(
        answers[1].envelopes().unwrap_err().contains("panic"),
        "{:?}",
        answers[1]
    );
    assert!(refusal(&answers[3]).contains("200ms"), "{:?}", answers[3]);
    assert!(
        refusal(&answers[11]).contains("answered 0 times for 1 records"),
        "{:?}",
        answers[11]
    );
    assert!(
        answers[7]
            .envelopes()
            .unwrap_err()
            .contains("would be refused")
    );

    // The next batch runs on a fresh instance, at batch speed again.
    let answers = mapper.map(&batch(&["ok", "ok", "ok"])).await;
    let mapped: Vec<Vec<String>> = answers.iter().map(ids).collect();
    assert_eq!(mapped, [["fixture-0"], ["fixture-1"], ["fixture-2"]]);
    mapper.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mapper_that_crashes_on_everything_costs_three_deadlines_not_one_per_record() {
    let mut mapper = MapperInstance::start(faulty_mapper().await, sandbox())
        .await
        .unwrap();
    let orders = ["loop"; 20];
    let answers = mapper.map(&batch(&orders)).await;
    assert_eq!(answers.len(), 20);
    for answer in &answers[..3] {
        assert!(
            refusal(answer).starts_with("the mapper crashed on this record"),
            "{answer:?}"
        );
    }
    for answer in &answers[3..] {
        assert!(
            refusal(answer).contains("faulted on the 3 records before this one"),
            "{answer:?}"
        );
    }
    // The batch, then three records alone: four deadlines, not 21 (the
    // rest were refused untried, as their reasons say).
    // And it recovers once the records are good again.
    let answers = mapper.map(&batch(&["ok"])).await;
    assert_eq!(ids(&answers[0]), ["fixture-0"]);
}

#[tokio::test]
async fn an_exporter_is_not_loaded_as_a_mapper_nor_a_mapper_as_an_exporter() {
    let runtime = runtime();
    let error = runtime
        .load_mapper(&plugin_wasm("blackhole"), &Default::default())
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("is an exporter plugin"), "{error}");
    assert!(error.contains("[plugins.<name>]"), "{error}");
    let error = runtime
        .load(&plugin_wasm("json-map"), &Default::default())
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("is a mapper plugin"), "{error}");
}

#[tokio::test]
async fn a_mapper_with_a_bad_config_names_every_problem_at_start() {
    let mapper = Arc::new(
        runtime()
            .load_mapper(&plugin_wasm("json-map"), &Default::default())
            .await
            .unwrap(),
    );
    assert_eq!(mapper.info.name, "json-map");
    let sandbox = Sandbox {
        config_json: r#"{"fields": {"type": "kind", "actor.idd": "/user"}}"#.into(),
        ..sandbox()
    };
    let error = MapperInstance::start(mapper, sandbox)
        .await
        .err()
        .expect("refused")
        .to_string();
    for problem in [
        "config.fields.type: \"kind\" is not a JSON pointer; write \"/kind\"",
        "config.fields.actor.idd: not an envelope field",
        "nothing fills `time`",
        "nothing fills `actor.id`",
        "nothing fills `action.outcome`",
    ] {
        assert!(error.contains(problem), "{problem}: {error}");
    }
}

#[tokio::test]
async fn a_mapper_enabled_as_an_exporter_instance_is_refused_with_the_fix() {
    let home = Home::with_plugins(&["json-map"]);
    let config = home.config("[plugins.crm]\nplugin = \"json-map\"\n");
    let error = format!(
        "{:?}",
        Relay::start(config)
            .await
            .err()
            .expect("nothing to deliver to")
    );
    assert!(error.contains("is a mapper plugin"), "{error}");
    assert!(error.contains("name it as a source's mapper"), "{error}");
}
