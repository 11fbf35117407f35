//! How much does the way in cost? The same events accepted in-process
//! (`Relay::emit_batch`, then `durable`), over HTTP (`POST /v1/events`
//! on loopback, one keep-alive connection, as JSON arrays and as NDJSON),
//! and through a webhook source (`POST /v1/sources/<name>`, v2 HMAC
//! verified and the signature checked against the replay cache: the
//! NDJSON body as envelopes, and the same events as a shop's own records
//! mapped by the `json-map` mapper plugin), in one run, at batch sizes 1,
//! 100 and 2,000, without and with a durability wait, all delivered to
//! the file plugin.
//!
//! ```text
//! scripts/build-plugins && cargo bench -p auditrelay --bench ingest
//! cargo bench -p auditrelay --bench ingest -- "NDJSON none 2000"   # only rows containing
//!                                          # it (and the in-process baseline next to them)
//! ```
//!
//! Per row: `ns/event` from the first request to the last answer (what a
//! client waits), the ratio to the in-process way, events/s, the relay's
//! CPU per event until the plugin has delivered every event (the
//! process's CPU time less the client thread's), and the p50/p99 time of
//! one request. `durability = "none"` runs on tmpfs where there is one,
//! so the figures are the relay's CPU, not the disk's; `"group"` (the
//! default) on the disk under the target directory, each request waiting
//! for its group commit. Rounds alternate between the ways so machine
//! noise hits all alike; the median round is reported.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use auditrelay::envelope::AuditEventEnvelope;
use auditrelay::http::HttpIngest;
use auditrelay::{Config, Relay};
use auditrelay_plugin_api::testing::sample_envelope;

use common::{median, name_filter, plugin_dir, quiet_backtraces, scratch_dir, target_dir};

/// Most events per round and way.
const EVENTS_PER_ROUND: usize = 20_000;
/// Most requests per round when each waits for a group commit.
const DURABLE_REQUESTS: usize = 200;
/// Rounds per way; the median is reported.
const ROUNDS: usize = 5;

fn main() {
    quiet_backtraces();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let filter = name_filter();
    println!(
        "events until answered (ns/event, events/s) and until delivered to the file plugin (relay CPU), median of {ROUNDS} alternating rounds"
    );
    println!(
        "{:<22} {:>10} {:>6} {:>10} {:>8} {:>10} {:>10} {:>9} {:>9}",
        "way",
        "durability",
        "batch",
        "ns/event",
        "vs emit",
        "events/s",
        "CPU µs/ev",
        "p50 ms",
        "p99 ms"
    );
    let tmpfs = scratch_dir();
    let disk = tempfile::tempdir_in(target_dir()).unwrap();
    for (durability, dir) in [("none", tmpfs.path()), ("group", disk.path())] {
        runtime.block_on(compare(dir, durability, &filter));
    }
}

/// One way in.
#[derive(Clone, Copy, PartialEq)]
enum Way {
    InProcess,
    HttpJson,
    HttpNdjson,
    WebhookHmac,
    WebhookMapped,
}

impl Way {
    fn name(self) -> &'static str {
        match self {
            Way::InProcess => "emit_batch + durable",
            Way::HttpJson => "POST, JSON array",
            Way::HttpNdjson => "POST, NDJSON",
            Way::WebhookHmac => "webhook, HMAC, NDJSON",
            Way::WebhookMapped => "webhook, HMAC, json-map",
        }
    }
}

/// The webhook sources' shared key.
const WEBHOOK_SECRET: &str = "bench-webhook-secret-0123456789";

/// What one round of one way measured.
#[derive(Default, Clone)]
struct Round {
    ns_per_event: f64,
    cpu_ns_per_event: f64,
    /// Each request's (or call's) time, in seconds.
    requests: Vec<f64>,
}

async fn compare(scratch: &Path, durability: &str, filter: &str) {
    let config = Config::parse(
        &format!(
            r#"
[relay]
plugin_dir = {:?}
data_dir = {:?}
max_buffered_bytes = "1GiB"
[spool]
durability = "{durability}"
max_size = "8GiB"
[ingest.http]
listen = "127.0.0.1:0"
max_body_bytes = "64MiB"
[plugins.archive]
plugin = "file"
grant_dir = {:?}
[plugins.archive.batch]
max_events = 2000
# Named as the sample envelopes' source: a webhook takes only its own.
[ingest.webhook.access-api]
auth = "hmac"
secret = "{WEBHOOK_SECRET}"
[ingest.webhook.shop]
auth = "hmac"
secret = "{WEBHOOK_SECRET}"
[ingest.webhook.shop.mapper]
plugin = "json-map"
[ingest.webhook.shop.mapper.config]
records = ""
fields = {{ id = "/uid", type = "/kind", time = "/at", "actor.id" = "/user/id", "target.id" = "/order" }}
constants = {{ "action.outcome" = "success", "target.kind" = "order" }}
"#,
            plugin_dir(),
            scratch.join("data"),
            scratch.join("archive"),
        ),
        "bench",
        &|_| None,
    )
    .unwrap();
    std::fs::create_dir_all(scratch.join("archive")).unwrap();
    let relay = Relay::start(config.clone()).await.unwrap();
    let http = HttpIngest::bind(relay.clone(), &config).await.unwrap();
    let addr = http.local_addr().unwrap();
    let server = tokio::spawn(http.serve(std::future::pending()));
    // The plugin compiles while the relay already takes events: measure
    // once it runs.
    let first = relay.emit_batch(vec![sample_envelope(0)]).unwrap();
    relay.durable(&first).await.unwrap();
    assert!(relay.idle(Duration::from_secs(300)).await);

    let ways = [
        Way::InProcess,
        Way::HttpJson,
        Way::HttpNdjson,
        Way::WebhookHmac,
        Way::WebhookMapped,
    ];
    for batch in [1, 100, 2000] {
        let wanted = |way: Way| format!("{} {durability} {batch}", way.name()).contains(filter);
        if !ways.into_iter().any(wanted) {
            continue;
        }
        let events = match durability {
            "none" => EVENTS_PER_ROUND,
            _ => (batch * DURABLE_REQUESTS).min(EVENTS_PER_ROUND),
        };
        let mut rounds: Vec<Vec<Round>> = vec![Vec::new(); ways.len()];
        for _ in 0..ROUNDS {
            for (i, &way) in ways.iter().enumerate() {
                // The in-process way always runs: it is what the others
                // are compared with.
                if way != Way::InProcess && !wanted(way) {
                    continue;
                }
                // New events every round and way: the same ones again would
                // be copies, which the spool acknowledges without spooling.
                let envelopes: Vec<AuditEventEnvelope> = (0..events).map(sample_envelope).collect();
                let bodies = Bodies::of(&envelopes, batch);
                let cpu_before = process_cpu();
                let (elapsed, requests, client_cpu) = match way {
                    Way::InProcess => in_process(&relay, &envelopes, batch).await,
                    Way::HttpJson => {
                        post_all(addr, plain("/v1/events", &bodies.json, "application/json")).await
                    }
                    Way::HttpNdjson => {
                        post_all(
                            addr,
                            plain("/v1/events", &bodies.ndjson, "application/x-ndjson"),
                        )
                        .await
                    }
                    Way::WebhookHmac => {
                        post_all(
                            addr,
                            signed(
                                "/v1/sources/access-api",
                                &bodies.ndjson,
                                "application/x-ndjson",
                            ),
                        )
                        .await
                    }
                    Way::WebhookMapped => {
                        post_all(
                            addr,
                            signed("/v1/sources/shop", &bodies.foreign, "application/json"),
                        )
                        .await
                    }
                };
                // Delivered, so the plugin's share is counted too.
                assert!(relay.idle(Duration::from_secs(120)).await);
                let relay_cpu = process_cpu() - cpu_before - client_cpu;
                rounds[i].push(Round {
                    ns_per_event: elapsed.as_nanos() as f64 / events as f64,
                    cpu_ns_per_event: relay_cpu.as_nanos() as f64 / events as f64,
                    requests,
                });
            }
        }
        let baseline = median(rounds[0].iter().map(|r| r.ns_per_event).collect());
        for (i, way) in ways.iter().enumerate() {
            if rounds[i].is_empty() {
                continue;
            }
            let ns = median(rounds[i].iter().map(|r| r.ns_per_event).collect());
            let cpu = median(rounds[i].iter().map(|r| r.cpu_ns_per_event).collect());
            let mut requests: Vec<f64> =
                rounds[i].iter().flat_map(|r| r.requests.clone()).collect();
            requests.sort_by(f64::total_cmp);
            let at = |q: f64| requests[((requests.len() - 1) as f64 * q) as usize] * 1e3;
            println!(
                "{:<22} {:>10} {:>6} {:>10.0} {:>7.2}x {:>10.0} {:>10.2} {:>9.3} {:>9.3}",
                way.name(),
                durability,
                batch,
                ns,
                ns / baseline,
                1e9 / ns,
                cpu / 1e3,
                at(0.5),
                at(0.99),
            );
        }
    }
    relay.shutdown().await;
    server.abort();
}

async fn in_process(
    relay: &Relay,
    envelopes: &[AuditEventEnvelope],
    batch: usize,
) -> (Duration, Vec<f64>, Duration) {
    // The application builds its envelopes before it emits them; cloning
    // them is not the relay's cost.
    let cloning = thread_cpu();
    let chunks: Vec<Vec<AuditEventEnvelope>> =
        envelopes.chunks(batch).map(|c| c.to_vec()).collect();
    let cloning = thread_cpu() - cloning;
    let mut requests = Vec::with_capacity(chunks.len());
    let started = Instant::now();
    for chunk in chunks {
        let sent = Instant::now();
        let receipt = relay.emit_batch(chunk).unwrap();
        relay.durable(&receipt).await.unwrap();
        requests.push(sent.elapsed().as_secs_f64());
    }
    // Past the cloning, the application's thread does the relay's work.
    (started.elapsed(), requests, cloning)
}

/// The request bodies of one round, in every format.
struct Bodies {
    json: Vec<Vec<u8>>,
    ndjson: Vec<Vec<u8>>,
    /// The same events as a shop's own records, a JSON array per request.
    foreign: Vec<Vec<u8>>,
}

impl Bodies {
    fn of(envelopes: &[AuditEventEnvelope], batch: usize) -> Self {
        let mut json = Vec::new();
        let mut ndjson = Vec::new();
        let mut foreign = Vec::new();
        for chunk in envelopes.chunks(batch) {
            let lines: Vec<Vec<u8>> = chunk.iter().map(|e| e.to_canonical_json()).collect();
            json.push([b"[".as_slice(), &lines.join(&b","[..]), b"]"].concat());
            ndjson.push(lines.join(&b"\n"[..]));
            let records: Vec<serde_json::Value> = chunk
                .iter()
                .map(|e| {
                    serde_json::json!({
                        "uid": e.id.to_string(), "kind": e.event_type, "at": e.time.to_string(),
                        "user": {"id": e.actor.id}, "order": format!("o-{}", e.id),
                    })
                })
                .collect();
            foreign.push(serde_json::to_vec(&records).unwrap());
        }
        Bodies {
            json,
            ndjson,
            foreign,
        }
    }
}

/// One prepared request: its path, extra header lines and body.
struct Request {
    path: &'static str,
    headers: String,
    body: Vec<u8>,
}

/// Requests of `bodies` to `path`, unsigned.
fn plain(path: &'static str, bodies: &[Vec<u8>], content_type: &str) -> Vec<Request> {
    bodies
        .iter()
        .map(|body| Request {
            path,
            headers: format!("Content-Type: {content_type}\r\n"),
            body: body.clone(),
        })
        .collect()
}

/// Requests of `bodies` to `path`, each signed with the v2 HMAC (before
/// timing: signing is the sender's cost).
fn signed(path: &'static str, bodies: &[Vec<u8>], content_type: &str) -> Vec<Request> {
    use hmac::{Hmac, Mac};
    use sha2::{Digest, Sha256};
    let now = jiff::Timestamp::now().as_second();
    bodies
        .iter()
        .enumerate()
        .map(|(i, body)| {
            // One second apart at most 2,000 requests back: every signature
            // differs, and all are well inside the skew window.
            let timestamp = now - (i % 250) as i64;
            let mut mac = Hmac::<Sha256>::new_from_slice(WEBHOOK_SECRET.as_bytes()).unwrap();
            mac.update(format!("{timestamp}:{}", hex::encode(Sha256::digest(body))).as_bytes());
            let signature = hex::encode(mac.finalize().into_bytes());
            Request {
                path,
                headers: format!(
                    "Content-Type: {content_type}\r\nX-Webhook-Timestamp: {timestamp}\r\nX-Webhook-Signature: {signature}\r\n"
                ),
                body: body.clone(),
            }
        })
        .collect()
}

/// Sends every body on one keep-alive connection, each request after the
/// previous answer (as a client that must know each batch is durable);
/// the time, each request's time, and the client thread's CPU.
async fn post_all(addr: SocketAddr, prepared: Vec<Request>) -> (Duration, Vec<f64>, Duration) {
    tokio::task::spawn_blocking(move || {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_nodelay(true).unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut writer = stream;
        let mut requests = Vec::with_capacity(prepared.len());
        let cpu_before = thread_cpu();
        let started = Instant::now();
        for Request {
            path,
            headers,
            body,
        } in &prepared
        {
            let sent = Instant::now();
            let head = format!(
                "POST {path} HTTP/1.1\r\nHost: {addr}\r\n{headers}Content-Length: {}\r\n\r\n",
                body.len()
            );
            writer.write_all(head.as_bytes()).unwrap();
            writer.write_all(body).unwrap();
            let status = read_answer(&mut reader);
            assert_eq!(status, 202, "the relay refused a benchmark request");
            requests.push(sent.elapsed().as_secs_f64());
        }
        (started.elapsed(), requests, thread_cpu() - cpu_before)
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

/// CPU time the whole process has used (user and system).
fn process_cpu() -> Duration {
    cpu_clock(libc::CLOCK_PROCESS_CPUTIME_ID)
}

/// CPU time the calling thread has used.
fn thread_cpu() -> Duration {
    cpu_clock(libc::CLOCK_THREAD_CPUTIME_ID)
}

fn cpu_clock(clock: libc::clockid_t) -> Duration {
    let mut time = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `time` is a valid timespec for the call to fill.
    let done = unsafe { libc::clock_gettime(clock, &mut time) };
    assert_eq!(done, 0, "clock_gettime failed");
    Duration::new(time.tv_sec as u64, time.tv_nsec as u32)
}
