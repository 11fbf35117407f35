//! Events/s and CPU per event from `emit` through the spool to each
//! exporter, against a local receiver on loopback (gzip on), next to the
//! file exporter in the same run.
//!
//! `cargo bench -p auditrelay-tests --bench exporters` (after
//! `scripts/build-plugins`; the S3 run needs `s3s-fs`, as the tests do).
//! Unset `RUST_BACKTRACE` first: with it set, every wasmtime error
//! captures a host backtrace.
//!
//! CPU is the relay's: the process's user+system time minus the receiver
//! threads' (the HEC and Datadog receivers run in-process on threads named
//! `receiver`; s3s-fs is a separate process). Emitting is included, the
//! same for every exporter.

use std::time::{Duration, Instant};

use auditrelay::Relay;
use auditrelay_plugin_api::envelope::AuditEventEnvelope;
use auditrelay_tests::receivers::{Datadog, S3Server, SplunkHec, s3};
use auditrelay_tests::{Home, sample_envelope};

/// Events per run.
const EVENTS: usize = 200_000;
/// Rounds per exporter; the best is reported (these machines are noisy).
const ROUNDS: usize = 3;

struct Outcome {
    events_per_second: f64,
    cpu_micros_per_event: f64,
}

fn main() {
    if std::env::var_os("RUST_BACKTRACE").is_some_and(|v| v != "0") {
        eprintln!("note: RUST_BACKTRACE is set; unset it for representative figures");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let envelopes: Vec<AuditEventEnvelope> = (0..EVENTS).map(sample_envelope).collect();
    let hec = SplunkHec::start("bench-token", &["audit"], false, 2_000_000);
    let datadog = Datadog::start("bench-key", 5_000_000);
    hec.count_only();
    datadog.count_only();

    let exporters: [(&str, &str, String); 4] = [
        (
            "file",
            "file",
            "grant_dir = \"{home}/out\"\n[plugins.x.config]\nfsync = false\n".to_owned(),
        ),
        (
            "splunk-hec",
            "splunk-hec",
            format!(
                "allowed_hosts = [\"127.0.0.1:*\"]\n[plugins.x.secrets]\nhec_token = \"bench-token\"\n[plugins.x.config]\nendpoint = \"{}\"\nindex = \"audit\"\n",
                hec.endpoint
            ),
        ),
        (
            "datadog",
            "datadog",
            format!(
                "allowed_hosts = [\"127.0.0.1:*\"]\n[plugins.x.secrets]\ndatadog_api_key = \"bench-key\"\n[plugins.x.config]\nendpoint = \"{}\"\n",
                datadog.url
            ),
        ),
        ("s3", "s3", String::new()),
    ];

    println!(
        "{EVENTS} events per run, best of {ROUNDS}; gzip (level 1, the default) for the HTTP exporters"
    );
    println!(
        "{:<12} {:>12} {:>14} {:>12}",
        "exporter", "events/s", "CPU µs/event", "CPU vs file"
    );
    let mut file_cpu = None;
    for (label, plugin, table) in exporters {
        let mut best: Option<Outcome> = None;
        for _ in 0..ROUNDS {
            let home = Home::with_plugins(&[plugin]);
            let (table, _server) = if plugin == "s3" {
                let server = S3Server::start(&home.join("s3"), "bench");
                let table = format!(
                    "allowed_hosts = [\"127.0.0.1:*\"]\n[plugins.x.secrets]\naws_access_key_id = \"{}\"\naws_secret_access_key = \"{}\"\n[plugins.x.config]\nbucket = \"bench\"\nendpoint = \"{}\"\nforce_path_style = true\n",
                    s3::ACCESS_KEY,
                    s3::SECRET_KEY,
                    server.endpoint
                );
                (table, Some(server))
            } else {
                (table.clone(), None)
            };
            let outcome = runtime.block_on(run(&home, plugin, &table, &envelopes));
            if best
                .as_ref()
                .is_none_or(|b| outcome.events_per_second > b.events_per_second)
            {
                best = Some(outcome);
            }
        }
        let best = best.unwrap();
        let file = *file_cpu.get_or_insert(best.cpu_micros_per_event);
        println!(
            "{label:<12} {:>12.0} {:>14.2} {:>11.2}x",
            best.events_per_second,
            best.cpu_micros_per_event,
            best.cpu_micros_per_event / file
        );
    }
}

async fn run(home: &Home, plugin: &str, table: &str, envelopes: &[AuditEventEnvelope]) -> Outcome {
    let config = home.config(&format!(
        "[plugins.x]\nplugin = \"{plugin}\"\n{table}\n[plugins.x.batch]\nmax_events = 2000\nmax_wait = \"20ms\"\n"
    ));
    // New events every run: the same ones again would be copies, which
    // the spool (kept in `home` across runs) acknowledges without spooling.
    let run: u64 = rand::random();
    let envelopes: Vec<AuditEventEnvelope> = envelopes
        .iter()
        .map(|e| AuditEventEnvelope {
            id: format!("{}-{run:x}", e.id),
            ..e.clone()
        })
        .collect();
    let relay = Relay::start(config).await.expect("the relay starts");
    let cpu_before = relay_cpu();
    let started = Instant::now();
    for envelope in &envelopes {
        relay.emit(envelope.clone()).expect("emit");
    }
    loop {
        let delivered = relay.status().plugin("x").unwrap().delivered;
        if delivered as usize >= envelopes.len() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "{plugin}: stuck at {delivered}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let elapsed = started.elapsed();
    let cpu = relay_cpu() - cpu_before;
    relay.shutdown().await;
    Outcome {
        events_per_second: envelopes.len() as f64 / elapsed.as_secs_f64(),
        cpu_micros_per_event: cpu.as_secs_f64() * 1e6 / envelopes.len() as f64,
    }
}

/// User + system time of this process, minus that of the receiver threads.
fn relay_cpu() -> Duration {
    let ticks = |stat: &str| -> u64 {
        // Fields after the `(comm)`: state is field 3; utime 14, stime 15.
        let after = &stat[stat.rfind(')').unwrap() + 2..];
        let fields: Vec<&str> = after.split(' ').collect();
        fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
    };
    let total = ticks(&std::fs::read_to_string("/proc/self/stat").unwrap());
    let mut receivers = 0;
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim() == "receiver"
            && let Ok(stat) = std::fs::read_to_string(task.path().join("stat"))
        {
            receivers += ticks(&stat);
        }
    }
    // CLK_TCK is 100 on Linux.
    Duration::from_millis((total - receivers) * 10)
}
