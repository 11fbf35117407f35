//! What does each way of running a plugin cost? The same plugin code,
//! batch sizes 1, 64 and 1024, in one run:
//!
//! - **direct**: the `Plugin` implementation called as a Rust function, on
//!   `Event` views borrowed from the spool's batch (the baseline);
//! - **in-process**: the same code built as a `cdylib`, called through the
//!   C ABI (`isolation = "in-process"`);
//! - **process**: that library in an `auditrelay plugin-runner` child,
//!   each batch framed over a pipe and answered (`isolation = "process"`);
//! - **wasm**: the same code built as a component, in its sandbox.
//!
//! ```text
//! scripts/bench isolation             # builds what it needs in release, runs this
//! cargo bench -p auditrelay --bench isolation -- "no-op) 64"   # one row
//! ```
//!
//! Rounds alternate between the paths so that machine noise hits all
//! alike; the median round is reported, with each path's ratio to direct.

mod common;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use auditrelay::Config;
use auditrelay::internals::PluginServices;
use auditrelay::internals::{self, Metrics};
use auditrelay::internals::{AnyExporter, Exporter};
use auditrelay::internals::{ChildInstance, InProcessInstance};
use auditrelay::internals::{WasmInstance, WasmRuntime};
use auditrelay_plugin_api::host::{HostServices, Level, set_native_host};
use auditrelay_plugin_api::http::{HttpError, HttpErrorKind, Request, Response};
use auditrelay_plugin_blackhole::Blackhole;

use common::{
    Native, batch_of, median, name_filter, ns_per_event, plugin_dir, quiet_backtraces, target_dir,
};

/// Events delivered per round and path.
const EVENTS_PER_ROUND: usize = 65_536;
/// Rounds per path; the median is reported.
const ROUNDS: usize = 5;

fn main() {
    quiet_backtraces();
    let library = target_dir().join("native-plugins/libauditrelay_plugin_blackhole.so");
    assert!(
        library.exists(),
        "{} is missing: run scripts/bench (it builds the native plugins in release)",
        library.display()
    );
    let one_core = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let filter = name_filter();
    one_core.block_on(compare(library, &filter));
}

async fn compare(library: PathBuf, filter: &str) {
    let runtime = Arc::new(WasmRuntime::new(Some(target_dir().join("bench-cache"))).unwrap());
    let wasm_plugin = Arc::new(
        runtime
            .load(&plugin_dir().join("blackhole.wasm"), &Default::default())
            .await
            .unwrap(),
    );
    let metrics = Arc::new(Metrics::new());
    let config = Config::parse("[plugins.bench]\n", "bench", &|_| None).unwrap();
    let settings = &config.plugins["bench"];
    // The plugin counts its events through the host on every call; the
    // direct path pays for that too, through the same services.
    let services = || {
        PluginServices::new(
            "bench",
            settings.secrets.clone(),
            Some(metrics.plugin("bench")),
        )
    };
    set_native_host(Arc::new(DirectHost(services())));

    println!(
        "one blackhole plugin instance, the relay's side on one core (median of {ROUNDS} alternating rounds of {EVENTS_PER_ROUND} events)"
    );
    println!();
    println!(
        "{:<22} {:>5} {:>8} {:>17} {:>17} {:>17} {:>13}",
        "plugin", "batch", "direct", "in-process", "process", "wasm", "process"
    );
    println!(
        "{:<22} {:>5} {:>8} {:>17} {:>17} {:>17} {:>13}",
        "", "", "ns/event", "ns/event (ratio)", "ns/event (ratio)", "ns/event (ratio)", "events/s"
    );
    for (label, config_json) in [
        ("blackhole (no-op)", "{}"),
        ("blackhole, decode each", r#"{"decode": true}"#),
    ] {
        for batch_size in [1usize, 64, 1024] {
            if !format!("{label} {batch_size}").contains(filter) {
                continue;
            }
            let batch = batch_of(batch_size);
            let native = || {
                let mut native = internals::native_settings(settings, services());
                native.config = serde_json::from_str(config_json).unwrap();
                native
            };
            let mut sandbox = internals::sandbox(settings, services(), 0).unwrap();
            sandbox.config_json = config_json.to_owned();
            let mut direct = Native::<Blackhole>::new(config_json, None);
            let mut exporters = [
                AnyExporter::InProcess(InProcessInstance::start(&library, native()).unwrap()),
                AnyExporter::Process(ChildInstance::start(&library, native()).await.unwrap()),
                AnyExporter::Wasm(
                    WasmInstance::start(wasm_plugin.clone(), sandbox)
                        .await
                        .unwrap(),
                ),
            ];
            let calls = EVENTS_PER_ROUND.div_ceil(batch_size);
            let events = calls * batch_size;
            let mut rounds: [Vec<f64>; 4] = Default::default();
            for _ in 0..ROUNDS {
                let started = Instant::now();
                for _ in 0..calls {
                    direct.deliver(&batch);
                }
                rounds[0].push(ns_per_event(started.elapsed(), events));
                for (exporter, times) in exporters.iter_mut().zip(&mut rounds[1..]) {
                    let started = Instant::now();
                    for _ in 0..calls {
                        exporter.deliver(batch.encoded()).await.unwrap();
                    }
                    times.push(ns_per_event(started.elapsed(), events));
                }
            }
            for exporter in &mut exporters {
                exporter.shutdown().await;
            }
            let [direct, in_process, process, wasm] = rounds.map(median);
            let cell = |ns: f64| format!("{ns:>7.0} ({:>5.2}x)", ns / direct);
            println!(
                "{label:<22} {batch_size:>5} {direct:>8.0} {:>17} {:>17} {:>17} {:>13.0}",
                cell(in_process),
                cell(process),
                cell(wasm),
                1e9 / process
            );
        }
    }
    println!();
    println!("ratios are to direct; process events/s counts the round trip over the pipe");
    let floor = pipe_round_trip();
    println!(
        "the floor for process isolation on this machine: one byte to `cat` and back over pipes takes {:.1} µs",
        floor.as_secs_f64() * 1e6
    );
}

/// The time one byte takes to go to a child process and back over pipes:
/// what no framing can beat.
fn pipe_round_trip() -> std::time::Duration {
    use std::io::{Read, Write};
    let mut cat = std::process::Command::new("cat")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("cat runs");
    let (mut to, mut from) = (cat.stdin.take().unwrap(), cat.stdout.take().unwrap());
    let mut byte = [0u8; 1];
    let trips = 20_000;
    let started = Instant::now();
    for _ in 0..trips {
        to.write_all(&byte).unwrap();
        from.read_exact(&mut byte).unwrap();
    }
    let elapsed = started.elapsed() / trips;
    drop(to);
    cat.wait().unwrap();
    elapsed
}

/// The relay's services for the directly called plugin.
struct DirectHost(PluginServices);

impl HostServices for DirectHost {
    fn log(&self, level: Level, message: &str) {
        self.0.log(level, message)
    }

    fn secret(&self, name: &str) -> Option<String> {
        self.0.secret(name).map(str::to_owned)
    }

    fn counter_add(&self, name: &str, delta: u64) {
        self.0.counter_add(name, delta)
    }

    fn gauge_set(&self, name: &str, value: f64) {
        self.0.gauge_set(name, value)
    }

    fn http(&self, _: &Request) -> Result<Response, HttpError> {
        Err(HttpError::new(
            HttpErrorKind::Other,
            "no network in this benchmark",
        ))
    }
}
