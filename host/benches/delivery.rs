//! How much does the sandbox cost? Delivery through the host into WASM
//! plugins, next to the same plugin code called natively, in one run.
//!
//! ```text
//! scripts/build-plugins && cargo bench -p auditrelay --bench delivery
//! cargo bench -p auditrelay --bench delivery -- file   # only rows containing "file"
//! ```
//!
//! For each plugin and batch size (1, 64, 1024) it times `deliver` on one
//! thread (a current-thread runtime: one core): the WASM path copies the
//! spool's batch buffer into the component and calls it; the native path
//! hands the same `Plugin` implementation `Event` views borrowed from the
//! same batch. Rounds alternate between the two so
//! that machine noise hits both alike; the median round is reported. Then
//! the whole pipeline (emit → spool → worker → WASM plugin) is timed, next
//! to `emit` alone.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use auditrelay::internals::Exporter;
use auditrelay::internals::PluginServices;
use auditrelay::internals::{self, Metrics};
use auditrelay::internals::{WasmInstance, WasmPlugin, WasmRuntime};
use auditrelay::{Config, Relay};
use auditrelay_plugin_api::testing::sample_envelope;

use common::{
    Native, NativeDeliver, batch_of, median, name_filter, ns_per_event, plugin_dir,
    quiet_backtraces, scratch_dir, target_dir,
};

/// Events delivered per round and path.
const EVENTS_PER_ROUND: usize = 100_000;
/// Rounds per path; the median is reported.
const ROUNDS: usize = 5;
/// Events through the whole pipeline.
const PIPELINE_EVENTS: usize = 200_000;

fn main() {
    quiet_backtraces();
    let one_core = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let scratch = scratch_dir();
    let filter = name_filter();
    one_core.block_on(compare_paths(scratch.path(), &filter));

    if "whole pipeline".contains(&filter) {
        let pipeline = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap();
        pipeline.block_on(whole_pipeline(scratch.path()));
    }
}

struct Case {
    label: &'static str,
    wasm: &'static str,
    config_json: &'static str,
    native: fn(&str, Option<PathBuf>) -> Box<dyn NativeDeliver>,
    needs_dir: bool,
}

async fn compare_paths(scratch: &Path, filter: &str) {
    let runtime = Arc::new(WasmRuntime::new(Some(target_dir().join("bench-cache"))).unwrap());
    let metrics = Arc::new(Metrics::new());
    let cases = [
        Case {
            label: "blackhole (no-op)",
            wasm: "blackhole",
            config_json: "{}",
            native: |c, d| Box::new(Native::<auditrelay_plugin_blackhole::Blackhole>::new(c, d)),
            needs_dir: false,
        },
        Case {
            label: "blackhole, decode each (view)",
            wasm: "blackhole",
            config_json: r#"{"decode": true}"#,
            native: |c, d| Box::new(Native::<auditrelay_plugin_blackhole::Blackhole>::new(c, d)),
            needs_dir: false,
        },
        Case {
            label: "blackhole, decode each (owned)",
            wasm: "blackhole",
            config_json: r#"{"decode": true, "owned": true}"#,
            native: |c, d| Box::new(Native::<auditrelay_plugin_blackhole::Blackhole>::new(c, d)),
            needs_dir: false,
        },
        Case {
            label: "file, no fsync",
            wasm: "file",
            config_json: r#"{"fsync": false, "rotate_bytes": "256MiB"}"#,
            native: |c, d| Box::new(Native::<auditrelay_plugin_file::FileExporter>::new(c, d)),
            needs_dir: true,
        },
    ];
    println!(
        "delivery into one plugin instance on one core (median of {ROUNDS} alternating rounds of {EVENTS_PER_ROUND} events)"
    );
    println!();
    println!(
        "{:<24} {:>6} {:>13} {:>15} {:>13} {:>14}",
        "plugin", "batch", "wasm ns/event", "native ns/event", "wasm/native", "wasm events/s"
    );
    for case in &cases {
        let loaded: Arc<WasmPlugin> = Arc::new(
            runtime
                .load(
                    &plugin_dir().join(format!("{}.wasm", case.wasm)),
                    &Default::default(),
                )
                .await
                .unwrap(),
        );
        for batch_size in [1usize, 64, 1024] {
            if !format!("{} {batch_size}", case.label).contains(filter) {
                continue;
            }
            let batch = batch_of(batch_size);
            let dir = |path: &str| {
                case.needs_dir.then(|| {
                    let dir = scratch.join(format!("{}-{batch_size}-{path}", case.wasm));
                    std::fs::create_dir_all(&dir).unwrap();
                    dir
                })
            };
            let mut sandbox = internals::sandbox(
                &Config::parse("[plugins.bench]\n", "bench", &|_| None)
                    .unwrap()
                    .plugins["bench"],
                PluginServices::new("bench", Default::default(), Some(metrics.plugin("bench"))),
                0,
            )
            .unwrap();
            sandbox.config_json = case.config_json.to_owned();
            sandbox.grant_dir = dir("wasm");
            let mut wasm = WasmInstance::start(loaded.clone(), sandbox).await.unwrap();
            let mut native = (case.native)(case.config_json, dir("native"));
            let calls = EVENTS_PER_ROUND.div_ceil(batch_size);
            let (mut wasm_ns, mut native_ns) = (Vec::new(), Vec::new());
            for _ in 0..ROUNDS {
                let started = Instant::now();
                for _ in 0..calls {
                    wasm.deliver(batch.encoded()).await.unwrap();
                }
                wasm_ns.push(ns_per_event(started.elapsed(), calls * batch_size));
                let started = Instant::now();
                for _ in 0..calls {
                    native.deliver(&batch);
                }
                native_ns.push(ns_per_event(started.elapsed(), calls * batch_size));
            }
            wasm.shutdown().await;
            drop(native);
            for path in ["wasm", "native"] {
                if let Some(dir) = dir(path) {
                    std::fs::remove_dir_all(dir).unwrap();
                }
            }
            let (wasm_ns, native_ns) = (median(wasm_ns), median(native_ns));
            println!(
                "{:<24} {:>6} {:>13.0} {:>15.0} {:>12.2}x {:>14.0}",
                case.label,
                batch_size,
                wasm_ns,
                native_ns,
                wasm_ns / native_ns,
                1e9 / wasm_ns
            );
        }
    }
}

async fn whole_pipeline(scratch: &Path) {
    let config = Config::parse(
        &format!(
            r#"
[relay]
plugin_dir = {:?}
data_dir = {:?}
plugin_threads = 1
max_buffered_bytes = "1GiB"
[ingest.http]
enabled = false
[plugins.blackhole]
[plugins.blackhole.batch]
max_events = 1024
max_wait = "1ms"
"#,
            plugin_dir(),
            scratch.join("pipeline"),
        ),
        "bench",
        &|_| None,
    )
    .unwrap();
    // A few templates, cloned just before each emit: an application emits
    // an envelope it has just built, so it is in cache.
    let templates: Vec<_> = (0..64).map(sample_envelope).collect();
    // Each event its own id: a template sent again would be a copy, which
    // the spool acknowledges without spooling it.
    let mut ids: Vec<String> = (0..PIPELINE_EVENTS)
        .map(|i| format!("{}-{i}", templates[i % templates.len()].id))
        .collect();
    let relay = Relay::start(config).await.unwrap();
    let mut latencies = Vec::with_capacity(PIPELINE_EVENTS);
    let started = Instant::now();
    for (i, id) in ids.drain(..).enumerate() {
        let mut envelope = templates[i % templates.len()].clone();
        envelope.id = id;
        let call = Instant::now();
        relay.emit(envelope).unwrap();
        latencies.push(call.elapsed());
    }
    assert!(relay.idle(Duration::from_secs(120)).await);
    let delivered = started.elapsed();
    relay.shutdown().await;
    latencies.sort();
    let emitting: Duration = latencies.iter().sum();
    let percentile = |p: usize| latencies[latencies.len() * p / 100];
    println!();
    println!(
        "whole pipeline, {PIPELINE_EVENTS} events: emit (validate, encode, append) → spool → worker → WASM blackhole, plugin_threads = 1"
    );
    println!(
        "  emit:           {:>6.0} ns/event on average (p50 {:?}, p99 {:?}), {:.0} events/s from one thread",
        ns_per_event(emitting, PIPELINE_EVENTS),
        percentile(50),
        percentile(99),
        PIPELINE_EVENTS as f64 / emitting.as_secs_f64()
    );
    println!(
        "  emit→delivered: {:>6.0} events/s (first emit to last delivery, cloning envelopes included)",
        PIPELINE_EVENTS as f64 / delivered.as_secs_f64(),
    );
}
