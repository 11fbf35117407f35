//! What does a mapper cost per record? The generic field-map mapper
//! (`json-map`) in the sandbox, next to the same code called natively,
//! next to the exporter path (the `blackhole` exporter decoding each event
//! of a batch in the sandbox), in one run.
//!
//! ```text
//! scripts/build-plugins && cargo bench -p auditrelay --bench mapping
//! ```
//!
//! Per batch size (1, 64, 1024 records): `map` on one thread (a
//! current-thread runtime: one core), records shaped like a shop's webhook
//! body (`uid`, `kind`, `at`, `user`, `order`, a small `details` object)
//! mapped to envelopes of about the size `deliver` gets. Rounds alternate
//! between the ways; the median round is reported.

mod common;

use std::sync::Arc;
use std::time::Instant;

use auditrelay::Config;
use auditrelay::internals::{
    self, Exporter, ForeignRecord, MapperInstance, Metrics, PluginServices, RecordBatch, Sandbox,
    WasmInstance, WasmRuntime,
};
use auditrelay_mapper_json_map::JsonMap;
use auditrelay_plugin_api::testing::MapperHarness;
use serde_json::json;

use common::{
    batch_of, median, name_filter, ns_per_event, plugin_dir, quiet_backtraces, target_dir,
};

/// Records mapped per round and way.
const RECORDS_PER_ROUND: usize = 50_000;
/// Rounds per way; the median is reported.
const ROUNDS: usize = 5;

fn config() -> serde_json::Value {
    json!({
        "fields": {"id": "/uid", "type": "/kind", "time": "/at", "actor.id": "/user/id",
                   "actor.email": "/user/email", "target.id": "/order", "payload": "/details"},
        "constants": {"action.outcome": "success", "target.kind": "order", "actor.kind": "user"},
        "values": {"type": {"OrderCancelled": "order.cancelled", "OrderPaid": "order.paid"}},
    })
}

fn record(i: usize) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "uid": format!("evt-{i:08}"), "kind": if i.is_multiple_of(2) { "OrderCancelled" } else { "OrderPaid" },
        "at": "2026-12-01T10:00:00.123456Z",
        "user": {"id": format!("u-{}", i % 977), "email": "ana@example.com"},
        "order": format!("o-{i}"),
        "details": {"total": 120.5, "currency": "EUR", "items": 3, "channel": "web"},
    }))
    .unwrap()
}

fn main() {
    quiet_backtraces();
    let one_core = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let filter = name_filter();
    one_core.block_on(compare(&filter));
}

async fn compare(filter: &str) {
    let runtime = Arc::new(WasmRuntime::new(Some(target_dir().join("bench-cache"))).unwrap());
    let metrics = Arc::new(Metrics::new());
    let mapper = Arc::new(
        runtime
            .load_mapper(&plugin_dir().join("json-map.wasm"), &Default::default())
            .await
            .unwrap(),
    );
    let blackhole = Arc::new(
        runtime
            .load(&plugin_dir().join("blackhole.wasm"), &Default::default())
            .await
            .unwrap(),
    );
    println!(
        "json-map per record vs the same code native vs an exporter decoding each event (median of {ROUNDS} alternating rounds of {RECORDS_PER_ROUND})"
    );
    println!();
    println!(
        "{:>6} {:>15} {:>17} {:>12} {:>18} {:>16}",
        "batch",
        "wasm ns/record",
        "native ns/record",
        "wasm/native",
        "exporter ns/event",
        "mapper/exporter"
    );
    for size in [1usize, 64, 1024] {
        if !format!("{size}").contains(filter) {
            continue;
        }
        let batch = RecordBatch {
            source: "shop".into(),
            content_type: "application/json".into(),
            records: (0..size)
                .map(|i| ForeignRecord {
                    data: record(i),
                    metadata: Vec::new(),
                })
                .collect(),
        };
        let sandbox = |config_json: String| Sandbox {
            services: PluginServices::new(
                "bench",
                Default::default(),
                Some(metrics.plugin("bench")),
            ),
            config_json,
            ..Sandbox::describe_only()
        };
        let mut wasm = MapperInstance::start(mapper.clone(), sandbox(config().to_string()))
            .await
            .unwrap();
        let mut native = MapperHarness::<JsonMap>::new(config())
            .unwrap()
            .source("shop");
        let mut exporter_sandbox = internals::sandbox(
            &Config::parse("[plugins.bench]\n", "bench", &|_| None)
                .unwrap()
                .plugins["bench"],
            PluginServices::new("bench", Default::default(), Some(metrics.plugin("bench"))),
            0,
        )
        .unwrap();
        exporter_sandbox.config_json = r#"{"decode": true, "owned": true}"#.into();
        let mut exporter = WasmInstance::start(blackhole.clone(), exporter_sandbox)
            .await
            .unwrap();
        let events = batch_of(size);
        let calls = RECORDS_PER_ROUND.div_ceil(size);
        // Checked once, outside the timing: every record maps to a valid envelope.
        let answers = wasm.map(&batch).await;
        assert!(
            answers.iter().all(|a| a.envelopes().is_ok()),
            "{:?}",
            answers[0]
        );
        let (mut wasm_ns, mut native_ns, mut exporter_ns) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            let started = Instant::now();
            for _ in 0..calls {
                std::hint::black_box(wasm.map(&batch).await);
            }
            wasm_ns.push(ns_per_event(started.elapsed(), calls * size));
            let started = Instant::now();
            for _ in 0..calls {
                for record in &batch.records {
                    std::hint::black_box(native.map_bytes(&record.data, "application/json", &[]));
                }
            }
            native_ns.push(ns_per_event(started.elapsed(), calls * size));
            let started = Instant::now();
            for _ in 0..calls {
                exporter.deliver(events.encoded()).await.unwrap();
            }
            exporter_ns.push(ns_per_event(started.elapsed(), calls * size));
        }
        wasm.shutdown().await;
        exporter.shutdown().await;
        let (wasm_ns, native_ns, exporter_ns) =
            (median(wasm_ns), median(native_ns), median(exporter_ns));
        println!(
            "{:>6} {:>15.0} {:>17.0} {:>11.2}x {:>18.0} {:>15.2}x",
            size,
            wasm_ns,
            native_ns,
            wasm_ns / native_ns,
            exporter_ns,
            wasm_ns / exporter_ns
        );
    }
}
