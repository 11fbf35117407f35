//! Do live streams slow ingest? The same events taken in (`emit_batch`
//! in batches of 1,000) and delivered to the blackhole plugin by a relay
//! with no stream open, with 100 slow streams (clients that read 1 KiB
//! every 100 ms: their queues fill and their feeds wait), and with 100
//! streams read as fast as they come (every event sent 100 times over
//! loopback, on the same two cores), in one run.
//!
//! Each round first takes a warm-up of 20,000 events (timed apart): the
//! slow streams fill their queues and socket buffers then, a cost paid
//! once per stream. The timed run that follows is the steady state the
//! question is about.
//!
//! ```text
//! scripts/bench stream
//! ```
//!
//! The relay's data lives on tmpfs where there is one, with
//! `durability = "none"`, so the figures are CPU. Each row is the median
//! of its rounds; rounds alternate between the ways, each on a fresh
//! relay.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use auditrelay::http::HttpIngest;
use auditrelay::{Config, Relay};
use auditrelay_plugin_api::testing::sample_envelope;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use common::{median, plugin_dir, quiet_backtraces, scratch_dir};

/// Events per round.
const EVENTS: usize = 100_000;
/// Events taken before the timed run (the streams fill up meanwhile).
const WARM_UP: usize = 20_000;
/// Streams open in the ways that have them.
const STREAMS: usize = 100;
/// Rounds per way; the median is reported.
const ROUNDS: usize = 3;

#[derive(Clone, Copy, PartialEq)]
enum Way {
    None,
    Slow,
    Fast,
}

impl Way {
    fn label(self) -> &'static str {
        match self {
            Way::None => "no stream",
            Way::Slow => "100 slow streams",
            Way::Fast => "100 streams read at full speed",
        }
    }
}

fn main() {
    quiet_backtraces();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let scratch = scratch_dir();
    println!(
        "{EVENTS} events taken in and delivered (durability none, tmpfs), median of {ROUNDS} rounds"
    );
    println!(
        "{:<34} {:>12} {:>10} {:>12} {:>10} {:>16}",
        "way", "warm-up ms", "ms", "events/s", "vs none", "streamed events"
    );
    let ways = [Way::None, Way::Slow, Way::Fast];
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); ways.len()];
    let mut warm: Vec<Vec<f64>> = vec![Vec::new(); ways.len()];
    let mut streamed: Vec<Vec<f64>> = vec![Vec::new(); ways.len()];
    for round in 0..ROUNDS {
        for (i, way) in ways.iter().enumerate() {
            let run = runtime.block_on(time_ingest(scratch.path(), *way, round));
            warm[i].push(run.warm_up.as_secs_f64());
            times[i].push(run.timed.as_secs_f64());
            streamed[i].push(run.streamed as f64);
        }
    }
    let none = median(times[0].clone());
    for (i, way) in ways.iter().enumerate() {
        let seconds = median(times[i].clone());
        println!(
            "{:<34} {:>12.1} {:>10.1} {:>12.0} {:>9.2}× {:>16.0}",
            way.label(),
            median(warm[i].clone()) * 1e3,
            seconds * 1e3,
            EVENTS as f64 / seconds,
            seconds / none,
            median(streamed[i].clone())
        );
    }
}

/// One round's figures.
struct Run {
    /// Taking the warm-up events, until delivered.
    warm_up: Duration,
    /// Taking the timed events, until delivered.
    timed: Duration,
    /// Events the streams had received by the end.
    streamed: u64,
}

/// A fresh relay with `way`'s streams open: the time from the first
/// `emit_batch` until the plugin has every event, for the warm-up and
/// then for the timed run.
async fn time_ingest(scratch: &Path, way: Way, round: usize) -> Run {
    let dir = scratch.join(format!("relay-{round}-{}", way as u8));
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
max_streams = 200
[plugins.sink]
plugin = "blackhole"
"#,
            plugin_dir(),
            dir.join("data"),
        ),
        "bench",
        &|_| None,
    )
    .unwrap();
    let relay = Relay::start(config.clone()).await.unwrap();
    assert!(relay.ready().await.is_ok());
    let http = HttpIngest::bind(relay.clone(), &config).await.unwrap();
    let addr = http.local_addr().unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    let server = tokio::spawn(http.serve(stop.clone().cancelled_owned()));
    let received = Arc::new(AtomicU64::new(0));
    let mut clients = Vec::new();
    if way != Way::None {
        for _ in 0..STREAMS {
            clients.push(tokio::spawn(client(addr, way, received.clone())));
        }
        // Every stream open before the first event.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let take = |events: Vec<auditrelay::envelope::AuditEventEnvelope>| {
        let relay = relay.clone();
        async move {
            let started = Instant::now();
            for chunk in events.chunks(1000) {
                relay.emit_batch(chunk.to_vec()).unwrap();
            }
            assert!(relay.idle(Duration::from_secs(300)).await);
            started.elapsed()
        }
    };
    let warm_up = take((0..WARM_UP).map(sample_envelope).collect()).await;
    // The slow streams' feeds catch up to their full queues.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let events: Vec<_> = (WARM_UP..WARM_UP + EVENTS).map(sample_envelope).collect();
    let timed = take(events).await;
    let got = received.load(Ordering::Relaxed);
    for client in clients {
        client.abort();
    }
    stop.cancel();
    let _ = server.await;
    relay.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    Run {
        warm_up,
        timed,
        streamed: got,
    }
}

/// One stream client: slow ones read 1 KiB every 100 ms, fast ones all
/// they can; both count the events they read.
async fn client(addr: SocketAddr, way: Way, received: Arc<AtomicU64>) {
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    socket
        .write_all(b"GET /v1/stream HTTP/1.1\r\nhost: relay\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; if way == Way::Slow { 1024 } else { 256 * 1024 }];
    loop {
        let Ok(n) = socket.read(&mut buf).await else {
            return;
        };
        if n == 0 {
            return;
        }
        let events = memchr::memmem::find_iter(&buf[..n], b"event: audit").count();
        received.fetch_add(events as u64, Ordering::Relaxed);
        if way == Way::Slow {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
