//! How much does the way in cost? The same events accepted in-process
//! (`Relay::emit_batch`, then `durable`) and over HTTP (`POST /v1/events`
//! on loopback, one keep-alive connection, as JSON arrays and as NDJSON),
//! in one run, at several batch sizes.
//!
//! ```text
//! scripts/build-plugins && cargo bench -p auditrelay --bench ingest
//! cargo bench -p auditrelay --bench ingest -- "NDJSON 1000"   # only rows containing it
//!                                                    # (and the in-process baseline)
//! ```
//!
//! Both ways end at the same point: the events are in the spool and
//! written (`durability = "none"`, on tmpfs where there is one, so the
//! figures are the relay's CPU, not the disk's). The in-process path gets
//! envelopes already built; the HTTP path gets bytes, so it also reads
//! them (strictly), which is the work it cannot avoid. Rounds alternate
//! between the ways so machine noise hits all alike; the median round is
//! reported, with the ratio to the in-process way.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use auditrelay::envelope::AuditEventEnvelope;
use auditrelay::http::HttpIngest;
use auditrelay::{Config, Relay};
use auditrelay_plugin_api::testing::sample_envelope;

use common::{median, name_filter, ns_per_event, plugin_dir, quiet_backtraces, scratch_dir};

/// Events per round and way.
const EVENTS_PER_ROUND: usize = 20_000;
/// Rounds per way; the median is reported.
const ROUNDS: usize = 5;

fn main() {
    quiet_backtraces();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let scratch = scratch_dir();
    runtime.block_on(compare(scratch.path(), &name_filter()));
}

/// One way in.
#[derive(Clone, Copy, PartialEq)]
enum Way {
    InProcess,
    HttpJson,
    HttpNdjson,
}

impl Way {
    fn name(self) -> &'static str {
        match self {
            Way::InProcess => "emit_batch + durable",
            Way::HttpJson => "POST, JSON array",
            Way::HttpNdjson => "POST, NDJSON",
        }
    }
}

async fn compare(scratch: &Path, filter: &str) {
    let config = Config::parse(
        &format!(
            r#"
[relay]
plugin_dir = {:?}
data_dir = {:?}
max_buffered_bytes = "1GiB"
[spool]
durability = "none"
max_size = "8GiB"
[ingest.http]
listen = "127.0.0.1:0"
max_body_bytes = "64MiB"
[plugins.blackhole]
[plugins.blackhole.batch]
max_events = 1024
"#,
            plugin_dir(),
            scratch.join("ingest"),
        ),
        "bench",
        &|_| None,
    )
    .unwrap();
    let relay = Relay::start(config.clone()).await.unwrap();
    let http = HttpIngest::bind(relay.clone(), &config.ingest.http)
        .await
        .unwrap();
    let addr = http.local_addr().unwrap();
    let server = tokio::spawn(http.serve(std::future::pending()));

    let envelopes: Vec<AuditEventEnvelope> = (0..EVENTS_PER_ROUND).map(sample_envelope).collect();
    let ways = [Way::InProcess, Way::HttpJson, Way::HttpNdjson];
    println!(
        "events accepted until written (durability = \"none\"), median of {ROUNDS} alternating rounds of {EVENTS_PER_ROUND} events"
    );
    println!(
        "{:<22} {:>6} {:>10} {:>10} {:>12}",
        "way", "batch", "ns/event", "vs emit", "events/s"
    );
    for batch in [1, 100, 1000] {
        let bodies = Bodies::of(&envelopes, batch);
        let mut times: Vec<Vec<f64>> = vec![Vec::new(); ways.len()];
        for _ in 0..ROUNDS {
            for (i, &way) in ways.iter().enumerate() {
                // The in-process way always runs: it is what the others
                // are compared with.
                let wanted = format!("{} {batch}", way.name()).contains(filter);
                if way != Way::InProcess && !wanted {
                    continue;
                }
                let elapsed = match way {
                    Way::InProcess => in_process(&relay, &envelopes, batch).await,
                    Way::HttpJson => post_all(addr, &bodies.json, "application/json").await,
                    Way::HttpNdjson => post_all(addr, &bodies.ndjson, "application/x-ndjson").await,
                };
                times[i].push(ns_per_event(elapsed, EVENTS_PER_ROUND));
            }
            // Keep the spool small between rounds: let the plugin catch up.
            assert!(relay.idle(Duration::from_secs(120)).await);
        }
        let baseline = median(times[0].clone());
        for (i, way) in ways.iter().enumerate() {
            if times[i].is_empty() {
                continue;
            }
            let ns = median(times[i].clone());
            println!(
                "{:<22} {:>6} {:>10.0} {:>9.2}x {:>12.0}",
                way.name(),
                batch,
                ns,
                ns / baseline,
                1e9 / ns
            );
        }
    }
    relay.shutdown().await;
    server.abort();
}

async fn in_process(relay: &Relay, envelopes: &[AuditEventEnvelope], batch: usize) -> Duration {
    // The application builds its envelopes before it emits them; cloning
    // them is not the relay's cost.
    let chunks: Vec<Vec<AuditEventEnvelope>> =
        envelopes.chunks(batch).map(|c| c.to_vec()).collect();
    let started = Instant::now();
    for chunk in chunks {
        let receipt = relay.emit_batch(chunk).unwrap();
        relay.durable(&receipt).await.unwrap();
    }
    started.elapsed()
}

/// The request bodies of one round, in both formats.
struct Bodies {
    json: Vec<Vec<u8>>,
    ndjson: Vec<Vec<u8>>,
}

impl Bodies {
    fn of(envelopes: &[AuditEventEnvelope], batch: usize) -> Self {
        let mut json = Vec::new();
        let mut ndjson = Vec::new();
        for chunk in envelopes.chunks(batch) {
            let lines: Vec<Vec<u8>> = chunk.iter().map(|e| e.to_canonical_json()).collect();
            json.push([b"[".as_slice(), &lines.join(&b","[..]), b"]"].concat());
            ndjson.push(lines.join(&b"\n"[..]));
        }
        Bodies { json, ndjson }
    }
}

/// Sends every body on one keep-alive connection, each request after the
/// previous answer (as a client that must know each batch is durable).
async fn post_all(addr: SocketAddr, bodies: &[Vec<u8>], content_type: &'static str) -> Duration {
    let bodies = bodies.to_vec();
    tokio::task::spawn_blocking(move || {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_nodelay(true).unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut writer = stream;
        let started = Instant::now();
        for body in &bodies {
            let head = format!(
                "POST /v1/events HTTP/1.1\r\nHost: {addr}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
                body.len()
            );
            writer.write_all(head.as_bytes()).unwrap();
            writer.write_all(body).unwrap();
            let status = read_answer(&mut reader);
            assert_eq!(status, 202, "the relay refused a benchmark request");
        }
        started.elapsed()
    })
    .await
    .unwrap()
}

/// Reads one HTTP/1.1 answer; its status.
fn read_answer(reader: &mut BufReader<TcpStream>) -> u16 {
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    let status: u16 = line.split(' ').nth(1).unwrap().parse().unwrap();
    let mut length = 0;
    loop {
        line.clear();
        reader.read_line(&mut line).unwrap();
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().unwrap();
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).unwrap();
    status
}
