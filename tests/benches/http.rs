//! End to end over HTTP, as an application's events travel: `auditrelay
//! emit` processes post NDJSON batches of 2,000 to an `auditrelay run`
//! process, which spools them (default durability, group commit) and
//! delivers them to the file plugin (no fsync). Per way of sending: events
//! per second from the first request until the plugin has delivered the
//! last event, and the relay process's CPU per event (user + system time
//! from `/proc`, the clients excluded: they are other processes).
//!
//! `cargo bench -p auditrelay-tests --bench http` (after
//! `scripts/build-plugins` and `cargo build --release -p auditrelay`;
//! `scripts/bench http` does both). Unset `RUST_BACKTRACE` first.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use auditrelay_tests::{Home, RelayProcess, free_port, relay_binary, sample_envelope};

/// Events per way.
const EVENTS: usize = 400_000;
/// Rounds per way; the median is reported.
const ROUNDS: usize = 3;

/// One way of sending: how many `emit` processes, each with how many
/// requests in flight.
struct Way {
    label: &'static str,
    processes: usize,
    in_flight: u32,
}

const WAYS: [Way; 4] = [
    Way {
        label: "1 emit, 1 request in flight",
        processes: 1,
        in_flight: 1,
    },
    Way {
        label: "1 emit, 4 in flight (default)",
        processes: 1,
        in_flight: 4,
    },
    Way {
        label: "4 emits, 1 in flight each",
        processes: 4,
        in_flight: 1,
    },
    Way {
        label: "4 emits, 4 in flight each",
        processes: 4,
        in_flight: 4,
    },
];

fn main() {
    if std::env::var_os("RUST_BACKTRACE").is_some_and(|v| v != "0") {
        eprintln!("note: RUST_BACKTRACE is set; unset it for representative figures");
    }
    let home = Home::with_plugins(&["file"]);
    let port = free_port();
    let config = home.config_file(&format!(
        "[ingest.http]\nlisten = \"127.0.0.1:{port}\"\nmax_body_bytes = \"16MiB\"\n\
         [plugins.file]\ngrant_dir = \"{{home}}/out\"\n[plugins.file.config]\nfsync = false\n"
    ));
    let mut relay = RelayProcess::start(&config, &[]);
    let url = format!("http://127.0.0.1:{port}");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = reqwest::Client::new();
    let mut delivered = 0u64;
    // A first event, so the plugin has compiled and runs before timing.
    let first = home.join("first.json");
    std::fs::write(&first, sample_envelope(0).to_canonical_json()).unwrap();
    send(&url, &[first], 1, 1);
    delivered += 1;
    runtime.block_on(wait_delivered(&client, &url, delivered));

    println!(
        "{EVENTS} events of ~490 B per round, NDJSON batches of 2000, median of {ROUNDS} rounds"
    );
    println!("{:<32} {:>10} {:>16}", "way", "events/s", "relay CPU µs/ev");
    for way in &WAYS {
        let mut rates = Vec::new();
        let mut cpus = Vec::new();
        for _ in 0..ROUNDS {
            // Each process sends its own part; new events every round (the
            // same ones again would be copies, acknowledged and not spooled).
            let files = &write_parts(home.path(), way.processes);
            let cpu_before = process_cpu(relay.child.id());
            let started = Instant::now();
            send(&url, files, way.processes, way.in_flight);
            delivered += EVENTS as u64;
            runtime.block_on(wait_delivered(&client, &url, delivered));
            let elapsed = started.elapsed();
            let cpu = process_cpu(relay.child.id()) - cpu_before;
            rates.push(EVENTS as f64 / elapsed.as_secs_f64());
            cpus.push(cpu.as_secs_f64() * 1e6 / EVENTS as f64);
        }
        println!(
            "{:<32} {:>10.0} {:>16.2}",
            way.label,
            median(rates),
            median(cpus)
        );
    }
    assert!(relay.terminate(), "the relay did not stop cleanly");
}

/// Writes the events as `n` NDJSON files of equal parts; their paths.
fn write_parts(dir: &Path, n: usize) -> Vec<std::path::PathBuf> {
    (0..n)
        .map(|part| {
            let path = dir.join(format!("events-{n}-{part}.ndjson"));
            let mut text = Vec::new();
            for i in (part..EVENTS).step_by(n) {
                text.extend_from_slice(&sample_envelope(i).to_canonical_json());
                text.push(b'\n');
            }
            std::fs::write(&path, text).unwrap();
            path
        })
        .collect()
}

/// Runs one `auditrelay emit` per file, at once, and waits for them all.
fn send(url: &str, files: &[std::path::PathBuf], processes: usize, in_flight: u32) {
    let children: Vec<_> = files
        .iter()
        .take(processes)
        .map(|file| {
            Command::new(relay_binary())
                .args(["emit", file.to_str().unwrap(), "--url", url])
                .args([
                    "--batch-size",
                    "2000",
                    "--in-flight",
                    &in_flight.to_string(),
                ])
                .stdout(std::process::Stdio::null())
                .spawn()
                .expect("starting auditrelay emit")
        })
        .collect();
    for mut child in children {
        assert!(child.wait().unwrap().success(), "auditrelay emit failed");
    }
}

/// Waits until the file plugin has delivered `count` events in all.
async fn wait_delivered(client: &reqwest::Client, url: &str, count: u64) {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let status = auditrelay_tests::status(client, url).await;
        let delivered = status["plugins"][0]["delivered"].as_u64().unwrap_or(0);
        if delivered >= count {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "delivered {delivered} of {count}: {status}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// CPU time (user + system) process `pid` has used.
fn process_cpu(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    // utime and stime, fields 14 and 15 of proc(5), in clock ticks.
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // SAFETY: sysconf has no preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    Duration::from_secs_f64(ticks as f64 / per_second as f64)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}
