//! Slow, idle and too many clients: every HTTP connection is bounded in
//! time and all of them in number, so no client can hold the relay's
//! descriptors, starve its spool, or lock real requests out.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use auditrelay::Relay;
use auditrelay::http::HttpIngest;
use auditrelay_tests::{
    Home, RelayProcess, free_port, metric, ndjson_values, post_counting, sample_envelope,
};

/// Waits until the server closes `stream` (or `limit` passes); what it
/// sent before closing.
fn until_closed(stream: &mut TcpStream, limit: Duration) -> Option<String> {
    stream.set_read_timeout(Some(limit)).unwrap();
    let mut answer = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => return Some(String::from_utf8_lossy(&answer).into_owned()),
            Ok(n) => answer.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                return Some(String::from_utf8_lossy(&answer).into_owned());
            }
            Err(_) => return None,
        }
    }
}

fn connect(addr: SocketAddr, sent: &[u8]) -> TcpStream {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.write_all(sent).unwrap();
    stream
}

const PARTIAL_HEADERS: &[u8] = b"POST /v1/events HTTP/1.1\r\nhost: relay\r\ncontent-type: app";

async fn in_process_relay(
    home: &Home,
    http: &str,
) -> (Relay, SocketAddr, tokio::task::JoinHandle<()>) {
    let config = home.config(&format!(
        "[ingest.http]\n{http}\n[plugins.file]\ngrant_dir = \"{{home}}/out\"\n[plugins.file.batch]\nmax_wait = \"10ms\"\n"
    ));
    let relay = Relay::start(config.clone()).await.unwrap();
    let ingest = HttpIngest::bind(relay.clone(), &config).await.unwrap();
    let addr = ingest.local_addr().unwrap();
    let server = tokio::spawn(ingest.serve(std::future::pending()));
    (relay, addr, server)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_idle_connections_are_closed_on_time() {
    let home = Home::with_plugins(&["file"]);
    let (relay, addr, server) = in_process_relay(
        &home,
        "header_timeout = \"300ms\"\nbody_timeout = \"400ms\"",
    )
    .await;

    tokio::task::spawn_blocking(move || {
        // Headers that never end: closed once header_timeout has passed.
        let started = Instant::now();
        let mut partial = connect(addr, PARTIAL_HEADERS);
        assert!(
            until_closed(&mut partial, Duration::from_secs(5)).is_some(),
            "a connection with partial headers stayed open"
        );
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(250), "closed before its time: {waited:?}");

        // A body that never arrives: 408, nothing accepted.
        let event = serde_json::to_vec(&sample_envelope(1)).unwrap();
        let head = format!(
            "POST /v1/events HTTP/1.1\r\nhost: relay\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            event.len()
        );
        let mut slow_body = connect(addr, head.as_bytes());
        slow_body.write_all(&event[..event.len() / 2]).unwrap();
        let answer = until_closed(&mut slow_body, Duration::from_secs(5)).expect("closed");
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(answer.contains("ingest.http.body_timeout"), "{answer}");

        // A kept-alive connection that goes quiet after one request.
        let mut keep_alive = connect(addr, b"GET /healthz HTTP/1.1\r\nhost: relay\r\n\r\n");
        let answer = until_closed(&mut keep_alive, Duration::from_secs(5)).expect("closed");
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    })
    .await
    .unwrap();
    assert_eq!(
        relay.status().plugin("file").unwrap().delivered,
        0,
        "the half-sent event was not accepted"
    );
    server.abort();
    relay.shutdown().await;
}

/// Headers of a `POST /v1/events` announcing a body of `len` bytes.
fn post_head(len: usize) -> String {
    format!(
        "POST /v1/events HTTP/1.1\r\nhost: relay\r\ncontent-type: application/x-ndjson\r\ncontent-length: {len}\r\n\r\n"
    )
}

/// `count` events as NDJSON, padded with blank lines to at least `len` bytes.
fn ndjson_body(count: usize, len: usize) -> Vec<u8> {
    let mut body = Vec::new();
    for i in 0..count {
        body.extend(serde_json::to_vec(&sample_envelope(i)).unwrap());
        body.push(b'\n');
    }
    body.resize(body.len().max(len), b'\n');
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickling_body_is_cut_off_long_before_its_timeout() {
    let home = Home::with_plugins(&["file"]);
    let (relay, addr, server) =
        in_process_relay(&home, "body_timeout = \"30s\"\nmin_body_rate = \"1KiB\"").await;
    tokio::task::spawn_blocking(move || {
        let body = ndjson_body(5, 64 * 1024);
        let started = Instant::now();
        let mut slow = connect(addr, post_head(body.len()).as_bytes());
        // 100 bytes every 200 ms: 500 bytes/s, half the minimum.
        let mut answer = None;
        for piece in body.chunks(100) {
            if slow.write_all(piece).is_err() {
                break;
            }
            slow.set_read_timeout(Some(Duration::from_millis(200)))
                .unwrap();
            let mut buf = [0u8; 4096];
            if let Ok(n @ 1..) = slow.read(&mut buf) {
                answer = Some(String::from_utf8_lossy(&buf[..n]).into_owned());
                break;
            }
        }
        let answer = answer.expect("an answer before the body was sent");
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(answer.contains("min_body_rate"), "{answer}");
        let took = started.elapsed();
        assert!(
            took < Duration::from_secs(10),
            "cut off after {took:?}, not after body_timeout (30 s)"
        );
        // A body sent at once is fine.
        let mut quick = connect(addr, post_head(body.len()).as_bytes());
        quick.write_all(&body).unwrap();
        let answer = until_closed_or_answer(&mut quick);
        assert!(answer.starts_with("HTTP/1.1 202"), "{answer}");
    })
    .await
    .unwrap();
    server.abort();
    relay.shutdown().await;
}

/// The first answer on `stream`.
fn until_closed_or_answer(stream: &mut TcpStream) -> String {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    let n = stream.read(&mut buf).unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_held_at_once_share_one_memory_budget() {
    let home = Home::with_plugins(&["file"]);
    let (relay, addr, server) = in_process_relay(
        &home,
        "max_body_bytes = \"512KiB\"\nmax_body_memory = \"1MiB\"\nbody_timeout = \"20s\"\nmin_body_rate = \"0B\"",
    )
    .await;
    let delivered = tokio::task::spawn_blocking(move || {
        // Each body its own events (a repeated one would be a copy).
        let bodies: Vec<Vec<u8>> = (0..4).map(|_| ndjson_body(3, 400 * 1024)).collect();
        let body = &bodies[2];
        // Two bodies nearly whole, held open: 800 KiB of the 1 MiB.
        let mut held: Vec<TcpStream> = bodies[..2]
            .iter()
            .map(|body| {
                let mut stream = connect(addr, post_head(body.len()).as_bytes());
                stream.write_all(&body[..body.len() - 10]).unwrap();
                stream
            })
            .collect();
        std::thread::sleep(Duration::from_millis(300));
        // A third does not fit: refused at once, nothing accepted.
        let started = Instant::now();
        let mut third = connect(addr, post_head(body.len()).as_bytes());
        let _ = third.write_all(body);
        let answer = until_closed_or_answer(&mut third);
        assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
        assert!(answer.to_lowercase().contains("retry-after: 1"), "{answer}");
        assert!(answer.contains("max_body_memory"), "{answer}");
        assert!(started.elapsed() < Duration::from_secs(5));
        // The held ones finish and are accepted; then there is room again.
        for (stream, body) in held.iter_mut().zip(&bodies) {
            stream.write_all(&body[body.len() - 10..]).unwrap();
            let answer = until_closed_or_answer(stream);
            assert!(answer.starts_with("HTTP/1.1 202"), "{answer}");
        }
        let body = &bodies[3];
        let mut fourth = connect(addr, post_head(body.len()).as_bytes());
        fourth.write_all(body).unwrap();
        let answer = until_closed_or_answer(&mut fourth);
        assert!(answer.starts_with("HTTP/1.1 202"), "{answer}");
        9
    })
    .await
    .unwrap();
    assert!(relay.idle(Duration::from_secs(30)).await);
    assert_eq!(relay.status().plugin("file").unwrap().delivered, delivered);
    server.abort();
    relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_idle_connections_never_locks_out_real_requests() {
    let home = Home::with_plugins(&["file"]);
    let (relay, addr, server) = in_process_relay(
        &home,
        "max_connections = 8\nheader_timeout = \"30s\"\nbody_timeout = \"2s\"",
    )
    .await;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let base = format!("http://{addr}");

    // Far more idle and half-open connections than the cap.
    let flood: Vec<TcpStream> = (0..50)
        .map(|i| connect(addr, if i % 2 == 0 { b"" } else { PARTIAL_HEADERS }))
        .collect();
    for i in 0..20 {
        let health = client.get(format!("{base}/healthz")).send().await.unwrap();
        assert_eq!(health.status(), 200, "health check {i} during the flood");
        let posted = client
            .post(format!("{base}/v1/events"))
            .json(&sample_envelope(i))
            .send()
            .await
            .unwrap();
        assert_eq!(posted.status(), 202, "event {i} during the flood");
    }
    let metrics = auditrelay_tests::metrics(&client, &base).await;
    let evicted = metric(
        &metrics,
        "auditrelay_http_connections_closed_total{reason=\"evicted_idle\"}",
    );
    assert!(evicted.is_some_and(|n| n >= 40.0), "{metrics}");
    let open = metric(&metrics, "auditrelay_http_connections").unwrap();
    assert!(open <= 8.0, "the cap holds: {open}");

    // Every connection busy (bodies trickling in): a newcomer is refused
    // at once, with a reason.
    drop(flood);
    let event = serde_json::to_vec(&sample_envelope(99)).unwrap();
    let head = format!(
        "POST /v1/events HTTP/1.1\r\nhost: relay\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{{",
        event.len()
    );
    let busy: Vec<TcpStream> = (0..8).map(|_| connect(addr, head.as_bytes())).collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let refused = tokio::task::spawn_blocking(move || {
        let mut newcomer = connect(addr, b"GET /healthz HTTP/1.1\r\nhost: relay\r\n\r\n");
        until_closed(&mut newcomer, Duration::from_secs(5)).expect("answered and closed")
    })
    .await
    .unwrap();
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
    assert!(refused.contains("ingest.http.max_connections"), "{refused}");
    // A client sending a whole request gets the answer, not a reset.
    for i in 0..3 {
        let answer = client
            .post(format!("{base}/v1/events"))
            .header("content-type", "application/x-ndjson")
            .body(ndjson_body(50, 64 * 1024))
            .send()
            .await
            .unwrap_or_else(|e| panic!("request {i} was reset instead of answered: {e:?}"));
        assert_eq!(answer.status(), 503, "request {i}");
    }
    drop(busy);

    assert!(relay.idle(Duration::from_secs(10)).await);
    assert_eq!(relay.status().plugin("file").unwrap().delivered, 20);
    server.abort();
    relay.shutdown().await;
}

/// Under a low descriptor limit, 1,100 idle connections opened over and
/// over: the relay keeps descriptors for itself, answers health checks,
/// and every event the client saw acknowledged is delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_connection_flood_under_a_low_descriptor_limit_loses_nothing() {
    let home = Home::with_plugins(&["file"]);
    let port = free_port();
    let config = home.config_file(&format!(
        r#"
[ingest.http]
listen = "127.0.0.1:{port}"
[spool]
segment_size = "64KiB"
[plugins.file]
grant_dir = "{{home}}/out"
[plugins.file.config]
rotate_bytes = "64KiB"
[plugins.file.batch]
max_wait = "20ms"
"#
    ));
    let mut relay = RelayProcess::start(&config, &["prlimit", "--nofile=256:256", "--"]);
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    assert!(
        relay
            .log()
            .contains("the open-file limit leaves room for fewer HTTP connections"),
        "{}",
        relay.log()
    );

    let stop = Arc::new(AtomicBool::new(false));
    let reopened = Arc::new(AtomicUsize::new(0));
    let flood = std::thread::spawn({
        let (stop, reopened) = (stop.clone(), reopened.clone());
        move || {
            let mut open: Vec<TcpStream> = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                // Keep 1,100 open: replace those the relay closed.
                open.retain(|s| {
                    s.set_nonblocking(true).unwrap();
                    let mut byte = [0u8; 1];
                    !matches!((&*s).read(&mut byte), Ok(0))
                });
                while open.len() < 1100 && !stop.load(Ordering::Relaxed) {
                    match TcpStream::connect(addr) {
                        Ok(mut stream) => {
                            let _ = stream.write_all(PARTIAL_HEADERS);
                            open.push(stream);
                            reopened.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    });

    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let url = format!("http://{addr}/v1/events");
    let mut acknowledged = HashSet::new();
    let (mut health_ok, mut health_checks) = (0, 0);
    let started = Instant::now();
    let mut next = 0;
    while started.elapsed() < Duration::from_secs(6) {
        let events: Vec<_> = (next..next + 100).map(sample_envelope).collect();
        next += 100;
        post_counting(&client, &url, events, &mut acknowledged).await;
        health_checks += 1;
        if let Ok(health) = client.get(format!("http://{addr}/healthz")).send().await
            && health.status() == 200
        {
            health_ok += 1;
        }
    }
    stop.store(true, Ordering::Relaxed);
    flood.join().unwrap();
    assert!(relay.is_running(), "{}", relay.log());
    assert!(
        relay.terminate(),
        "the relay did not stop cleanly:\n{}",
        relay.log()
    );

    let delivered: HashSet<String> = ndjson_values(&home.join("out"))
        .iter()
        .map(|event| event["id"].as_str().unwrap().to_owned())
        .collect();
    let lost = acknowledged.difference(&delivered).count();
    eprintln!(
        "descriptor limit 256, flood of 1100 idle connections ({} opened): {} events acknowledged, {lost} lost; \
         /healthz answered 200 to {health_ok} of {health_checks}",
        reopened.load(Ordering::Relaxed),
        acknowledged.len()
    );
    assert!(
        acknowledged.len() >= 1000,
        "too little got through to prove anything"
    );
    assert_eq!(lost, 0, "acknowledged events were lost");
    assert!(
        health_ok * 10 >= health_checks * 9,
        "health checks failed under the flood: {health_ok} of {health_checks}"
    );
    assert!(
        !relay.log().contains("Too many open files"),
        "the relay ran out of descriptors:\n{}",
        relay.log()
    );
}

/// `spool.when_full = "block"` with the spool full: requests waiting for
/// room hold no server thread, so `/healthz` (and every other request)
/// is answered at once meanwhile, on a server with two threads and more
/// waiting requests than that; the waiting ones get their `503` once
/// `block_timeout` has passed, naming the cause.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_waiting_for_room_in_a_full_spool_hold_no_server_thread() {
    let home = Home::with_plugins(&["faulty"]);
    let until = jiff::Timestamp::now() + Duration::from_secs(600);
    let config = home.config(&format!(
        r#"
[relay]
max_event_bytes = "4KiB"
shutdown_timeout = "1s"
[spool]
segment_size = "64KiB"
max_size = "256KiB"
when_full = "block"
block_timeout = "2s"
[plugins.stuck]
plugin = "faulty"
[plugins.stuck.config]
fault = "retryable"
fault_until = "{until}"
"#
    ));
    let relay = Relay::start(config.clone()).await.unwrap();
    let ingest = HttpIngest::bind(relay.clone(), &config).await.unwrap();
    let addr = ingest.local_addr().unwrap();
    tokio::spawn(ingest.serve(std::future::pending()));
    // Fill the spool (the last emit waits block_timeout, off the runtime).
    let filler = relay.clone();
    let filled = tokio::task::spawn_blocking(move || {
        (0..10_000).find(|&i| filler.emit(sample_envelope(i)).is_err())
    })
    .await
    .unwrap();
    assert!(filled.is_some(), "the spool never filled");

    let client = reqwest::Client::new();
    let url = format!("http://{addr}/v1/events");
    let waiting: Vec<_> = (0..6)
        .map(|i| {
            let request = client.post(&url).json(&[sample_envelope(20_000 + i)]);
            tokio::spawn(async move {
                let sent = Instant::now();
                let answer = request.send().await.unwrap();
                (answer, sent.elapsed())
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    for _ in 0..5 {
        let asked = Instant::now();
        let health = client
            .get(format!("http://{addr}/healthz"))
            .send()
            .await
            .unwrap();
        let took = asked.elapsed();
        assert_eq!(health.status(), 200);
        assert!(
            took < Duration::from_secs(1),
            "/healthz waited {took:?} behind requests waiting for room (block_timeout 2s)"
        );
    }
    for request in waiting {
        let (answer, took) = request.await.unwrap();
        // Each waited its own block_timeout, side by side, not in turn
        // behind others holding the threads.
        assert!(
            took < Duration::from_millis(3500),
            "a request waiting for room was answered after {took:?} (block_timeout 2s)"
        );
        assert_eq!(answer.status(), 503);
        let body: serde_json::Value = answer.json().await.unwrap();
        assert_eq!(body["accepted"], 0);
        let error = body["error"].as_str().unwrap();
        assert!(error.contains("spool.max_size"), "{error}");
    }
    relay.shutdown().await;
}
