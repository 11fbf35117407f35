//! A plugin that panics, loops, runs out of memory, overflows its stack or
//! calls a host it may not reach is caught, logged with its name and cause,
//! and recovered (or its circuit opened); a healthy plugin beside it gets
//! every event, and `emit` does not slow down.
//!
//! The same for native plugins in `process` isolation, which can also
//! segfault, abort, hang and leak: the runner process is killed and
//! restarted, and the relay (this test process) lives on.

use std::time::{Duration, Instant};

use auditrelay::Relay;
use auditrelay_tests::{
    HEALTHY_FILE_TABLES, HitCounter, Home, logs, metric, ndjson_lines, sample_envelope,
};

/// Events emitted per run.
const EVENTS: usize = 3000;
/// How long the faulty plugin misbehaves before it delivers normally,
/// counted from before the relay starts. Starting can take half a second
/// on a loaded machine, and the looping plugin needs three 200 ms
/// deadlines in a row inside the window for its circuit to open.
const FAULT_FOR: Duration = Duration::from_millis(2000);

struct Run {
    relay: Relay,
    home: Home,
    expected: Vec<Vec<u8>>,
    /// Duration of every `emit` call.
    latencies: Vec<Duration>,
}

/// Which build of the faulty fixture runs.
#[derive(Clone, Copy)]
enum Build {
    Wasm,
    /// The native library, in `process` isolation (the default).
    Native,
}

/// A relay with a healthy `file` instance and a `faulty` instance named
/// `instance` (of the given build) configured with `fault_config` (a
/// `[plugins.<instance>.config]` body), then `EVENTS` events emitted at a
/// steady pace.
async fn run(instance: &str, build: Build, fault_config: &str, extra: &str) -> Run {
    let home = Home::with_plugins(&["file", "faulty"]);
    home.add_native_plugin("auditrelay_fixture_faulty");
    let kind = match build {
        Build::Wasm => "wasm",
        Build::Native => "native",
    };
    let config = home.config(&format!(
        r#"
{HEALTHY_FILE_TABLES}

[plugins.{instance}]
plugin = "faulty"
kind = "{kind}"
{extra}
[plugins.{instance}.config]
{fault_config}
[plugins.{instance}.limits]
timeout = "200ms"
memory = "16MiB"
[plugins.{instance}.batch]
max_events = 100
max_wait = "5ms"
[plugins.{instance}.retry]
initial_backoff = "10ms"
max_backoff = "100ms"
circuit_after = 3
circuit_open_for = "300ms"
"#
    ));
    let relay = Relay::start(config).await.unwrap();
    let mut expected = Vec::with_capacity(EVENTS);
    let mut latencies = Vec::with_capacity(EVENTS);
    for i in 0..EVENTS {
        let event = sample_envelope(i);
        expected.push(event.to_canonical_json());
        let started = Instant::now();
        relay.emit(event).unwrap();
        latencies.push(started.elapsed());
        // Spread the events over about a second, so faults happen while
        // the application is emitting.
        if i % 10 == 9 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    Run {
        relay,
        home,
        expected,
        latencies,
    }
}

fn until() -> String {
    (jiff::Timestamp::now() + FAULT_FOR).to_string()
}

fn median(latencies: &[Duration]) -> Duration {
    let mut sorted = latencies.to_vec();
    sorted.sort();
    sorted[sorted.len() / 2]
}

fn p99(latencies: &[Duration]) -> Duration {
    let mut sorted = latencies.to_vec();
    sorted.sort();
    sorted[sorted.len() * 99 / 100]
}

/// Emit latency with the fault must stay within 2x of a run without it.
async fn assert_emit_unaffected(faulty: &Run) {
    let baseline = run("calm", Build::Wasm, "fault = \"none\"", "").await;
    assert!(baseline.relay.idle(Duration::from_secs(30)).await);
    baseline.relay.shutdown().await;
    let (base, with_fault) = (median(&baseline.latencies), median(&faulty.latencies));
    let ratio = with_fault.as_secs_f64() / base.as_secs_f64();
    eprintln!(
        "emit latency p50 {with_fault:?} with the fault vs {base:?} without (ratio {ratio:.2}); p99 {:?} vs {:?}",
        p99(&faulty.latencies),
        p99(&baseline.latencies)
    );
    assert!(
        ratio <= 2.0,
        "emit slowed down {ratio:.2}x while a plugin was faulting"
    );
}

/// Checks everything a trapping fault must show.
async fn assert_trap_contained(
    instance: &str,
    build: Build,
    fault: &str,
    cause: &str,
    message: &str,
) {
    let logs = logs();
    let run = run(
        instance,
        build,
        &format!("fault = \"{fault}\"\nfault_until = \"{}\"", until()),
        "",
    )
    .await;

    // Caught and logged with the plugin's name and the cause.
    let crash = logs
        .wait_for(instance, Duration::from_secs(10), |e| e["cause"] == cause)
        .unwrap_or_else(|| {
            panic!(
                "no crash logged for {instance}: {:#?}",
                logs.of_plugin(instance)
            )
        });
    let text = crash["message"].as_str().unwrap();
    assert!(
        text.contains(message),
        "crash log says {text:?}, expected {message:?}"
    );
    assert_eq!(crash["level"], "ERROR");

    // Recovered: after the fault passes, the plugin delivers everything.
    assert!(
        run.relay.idle(Duration::from_secs(60)).await,
        "{:#?}",
        run.relay.status()
    );
    let status = run.relay.status();
    let faulty = status.plugin(instance).unwrap();
    assert_eq!(faulty.delivered, EVENTS as u64, "{faulty:#?}");
    let metrics = run.relay.metrics_text();
    let traps = metric(
        &metrics,
        &format!("auditrelay_plugin_traps_total{{plugin=\"{instance}\",kind=\"{cause}\"}}"),
    );
    assert!(traps.unwrap_or(0.0) >= 1.0, "{metrics}");
    let restarts = metric(
        &metrics,
        &format!("auditrelay_plugin_restarts_total{{plugin=\"{instance}\"}}"),
    );
    assert!(restarts.unwrap_or(0.0) >= 1.0, "{metrics}");

    // The healthy plugin beside it got every event, in order.
    assert_eq!(ndjson_lines(&run.home.join("healthy")), run.expected);
    assert_emit_unaffected(&run).await;
    run.relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_plugin_is_replaced_and_recovers() {
    assert_trap_contained(
        "faulty-panic",
        Build::Wasm,
        "panic",
        "panic",
        "fixture panic on a batch of",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_exhausting_memory_is_stopped_at_its_cap() {
    assert_trap_contained(
        "faulty-oom",
        Build::Wasm,
        "oom",
        "out_of_memory",
        "past limits.memory = 16.0 MiB",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_overflowing_its_stack_is_caught() {
    assert_trap_contained(
        "faulty-stack",
        Build::Wasm,
        "stack_overflow",
        "stack_overflow",
        "overflowed its stack",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_looping_plugin_hits_its_deadline_and_its_circuit_opens() {
    let instance = "faulty-loop";
    assert_trap_contained(
        instance,
        Build::Wasm,
        "loop",
        "deadline",
        "did not finish within 200ms (limits.timeout)",
    )
    .await;
    let logs = logs();
    let opened = logs.of_plugin(instance).into_iter().find(|e| {
        e["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("circuit opened"))
    });
    assert!(
        opened.is_some(),
        "the circuit never opened: {:#?}",
        logs.of_plugin(instance)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_calling_a_forbidden_host_is_refused_and_its_batches_set_aside() {
    // A real server the plugin could reach if the operator allowed it.
    let server = HitCounter::start().await;
    let addr = server.addr;

    let instance = "faulty-forbidden";
    let logs = logs();
    let run = run(
        instance,
        Build::Wasm,
        &format!("fault = \"http_post\"\nurl = \"http://{addr}/collect\""),
        "allowed_hosts = [\"collector.example.com\"]",
    )
    .await;
    let denied = logs
        .wait_for(instance, Duration::from_secs(10), |e| {
            e["message"]
                .as_str()
                .is_some_and(|m| m.contains("not in this plugin's allowed_hosts"))
        })
        .expect("the host logs the denied request with the plugin's name");
    assert_eq!(
        denied["destination"],
        format!("http://127.0.0.1:{}", addr.port())
    );

    assert!(run.relay.idle(Duration::from_secs(30)).await);
    assert_eq!(server.hits(), 0, "the request got out");
    let status = run.relay.status();
    let faulty = status.plugin(instance).unwrap();
    assert_eq!(faulty.delivered, 0);
    assert_eq!(
        faulty.dead_letters, EVENTS as u64,
        "refused batches become dead letters"
    );
    let dead = std::fs::read_to_string(
        run.home
            .join(&format!("data/dead-letters/{instance}.ndjson")),
    )
    .unwrap();
    let lines: Vec<serde_json::Value> = dead
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        lines[0]["reason"]
            .as_str()
            .unwrap()
            .contains("allowed_hosts"),
        "{}",
        lines[0]
    );
    let events: usize = lines
        .iter()
        .map(|l| l["events"].as_array().unwrap().len())
        .sum();
    assert_eq!(
        events, EVENTS,
        "each batch's reason stored once, with all its events"
    );
    assert!(lines.len() < EVENTS);

    assert_eq!(ndjson_lines(&run.home.join("healthy")), run.expected);
    assert_emit_unaffected(&run).await;
    run.relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_native_plugin_that_panics_is_restarted_in_a_fresh_process() {
    assert_trap_contained(
        "native-panic",
        Build::Native,
        "panic",
        "panic",
        "fixture panic on a batch of",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_native_plugin_that_segfaults_takes_only_its_runner_down() {
    assert_trap_contained(
        "native-segfault",
        Build::Native,
        "segfault",
        "memory_fault",
        "crashed with SIGSEGV",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_native_plugin_that_aborts_takes_only_its_runner_down() {
    assert_trap_contained(
        "native-abort",
        Build::Native,
        "abort",
        "abort",
        "aborted (SIGABRT)",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_native_plugin_that_hangs_is_killed_at_its_deadline() {
    assert_trap_contained(
        "native-hang",
        Build::Native,
        "hang",
        "deadline",
        "did not answer within 200ms (limits.timeout)",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_native_plugin_that_leaks_is_stopped_at_its_memory_cap() {
    assert_trap_contained(
        "native-leak",
        Build::Native,
        "leak",
        "out_of_memory",
        "ran out of memory (limits.memory caps its runner at 16.0 MiB)",
    )
    .await;
}
