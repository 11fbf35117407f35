//! An outside review of the live stream (`GET /v1/stream`) and `auditrelay
//! tail`, as an adversary or a bad day would meet them: clients that resume
//! from long ago, stall, trickle, churn, lie about their position, or have
//! no token; a relay stopping or restarting under them. Real HTTP on
//! 127.0.0.1; raw sockets with small receive buffers for the clients that
//! do not read.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use auditrelay::Relay;
use auditrelay::envelope::AuditEventEnvelope;
use auditrelay::http::HttpIngest;
use auditrelay_tests::webhooks::{ARCHIVE, serve};
use auditrelay_tests::{Home, RelayProcess, free_port, metric, relay_binary};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::stream::{emit_logins, event, events, metrics, raw_stream, wait_metric};

/// One Server-Sent Event.
#[derive(Debug, Clone)]
struct Sse {
    id: Option<u64>,
    kind: String,
    data: Value,
}

/// The events (with `data`) in `text`, and how much of it they took (an
/// unfinished one is left).
fn parse_sse(text: &str) -> (Vec<Sse>, usize) {
    let mut events = Vec::new();
    let mut used = 0;
    while let Some(end) = text[used..].find("\n\n") {
        let block = &text[used..used + end];
        used += end + 2;
        let (mut id, mut kind, mut data) = (None, String::from("message"), None);
        for line in block.lines() {
            if let Some(v) = line.strip_prefix("id: ") {
                id = Some(v.parse().unwrap());
            } else if let Some(v) = line.strip_prefix("event: ") {
                kind = v.to_owned();
            } else if let Some(v) = line.strip_prefix("data: ") {
                data = Some(serde_json::from_str(v).unwrap());
            }
        }
        if let Some(data) = data {
            events.push(Sse { id, kind, data });
        }
    }
    (events, used)
}

/// A stream client over reqwest.
struct Client {
    response: reqwest::Response,
    partial: String,
}

impl Client {
    async fn open(base: &str, query: &str, last: Option<u64>) -> Client {
        let mut request = reqwest::Client::new().get(format!("{base}/v1/stream?{query}"));
        if let Some(last) = last {
            request = request.header("last-event-id", last.to_string());
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200);
        Client {
            response,
            partial: String::new(),
        }
    }

    /// The next event, `None` at the end, `Err` after `wait` of silence.
    async fn next_within(&mut self, wait: Duration) -> Result<Option<Sse>, ()> {
        loop {
            if let Some(end) = self.partial.find("\n\n") {
                let block: String = self.partial.drain(..end + 2).collect();
                // A block without data (retry, comment) is skipped.
                if let Some(event) = parse_sse(&block).0.pop() {
                    return Ok(Some(event));
                }
                continue;
            }
            match tokio::time::timeout(wait, self.response.chunk()).await {
                Err(_) => return Err(()),
                Ok(Ok(Some(chunk))) => self.partial.push_str(std::str::from_utf8(&chunk).unwrap()),
                Ok(_) => return Ok(None),
            }
        }
    }

    async fn next(&mut self) -> Option<Sse> {
        self.next_within(Duration::from_secs(30))
            .await
            .expect("the stream said nothing for 30 s")
    }

    async fn audit(&mut self, n: usize) -> Vec<Sse> {
        let mut got = Vec::new();
        while got.len() < n {
            let event = self.next().await.expect("the stream ended early");
            if event.kind == "audit" {
                got.push(event);
            }
        }
        got
    }
}

/// The body of a whole HTTP/1.1 answer (chunked or not).
fn body_of(answer: &[u8]) -> String {
    let Some(head_end) = answer.windows(4).position(|w| w == b"\r\n\r\n") else {
        return String::new();
    };
    let head_end = head_end + 4;
    let head = String::from_utf8_lossy(&answer[..head_end]).to_ascii_lowercase();
    let mut body = &answer[head_end..];
    if !head.contains("transfer-encoding: chunked") {
        return String::from_utf8_lossy(body).into_owned();
    }
    let mut out = Vec::new();
    while let Some(line_end) = body.windows(2).position(|w| w == b"\r\n") {
        let size =
            usize::from_str_radix(std::str::from_utf8(&body[..line_end]).unwrap().trim(), 16)
                .unwrap();
        body = &body[line_end + 2..];
        if size == 0 || body.len() < size {
            out.extend_from_slice(&body[..size.min(body.len())]);
            break;
        }
        out.extend_from_slice(&body[..size]);
        body = &body[size + 2.min(body.len() - size)..];
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// **Only durable events are sent** — except right after a resume from
/// before the spool's first segment. The feed reads `durable - next` events
/// from its cursor, assuming they are contiguous; when the reader jumps
/// over deleted segments to the first one that is left, it goes on reading
/// that many events from there, past `durable_seq`, into events that are
/// written but not yet synced (`durability = "group"`). Here: every
/// delivered segment is gone, 20 events are written and wait for their
/// group commit (3 s), and a client resuming with `Last-Event-ID: 0` is
/// sent them at once — seconds before the relay calls them durable. A
/// crash in that window takes back events the client saw, and their ids
/// are given to other events after the restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_from_before_the_first_segment_is_sent_events_not_yet_durable() {
    let served = serve(
        &["file"],
        &format!(
            "{ARCHIVE}\n[spool]\ndurability = \"group\"\ngroup_commit = \"3s\"\ndedup_ids = 0\n"
        ),
    )
    .await;
    // More than a MiB, delivered: the segment is retired and deleted.
    let receipt = served
        .relay
        .emit_batch(events(0..5000, "old.event"))
        .unwrap();
    served.relay.durable(&receipt).await.unwrap();
    assert!(served.relay.idle(Duration::from_secs(30)).await);
    wait_metric(&served.base, "auditrelay_spool_segments", |n| n == 1.0).await;
    wait_metric(&served.base, "auditrelay_spool_bytes", |n| n < 50_000.0).await;

    let emitted = Instant::now();
    let receipt = served
        .relay
        .emit_batch(events(5000..5020, "new.event"))
        .unwrap();
    let relay = served.relay.clone();
    let durable = tokio::spawn(async move {
        relay.durable(&receipt).await.unwrap();
        Instant::now()
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut client = Client::open(&served.base, "", Some(0)).await;
    let gap = client.next().await.unwrap();
    assert_eq!(gap.kind, "gap", "{gap:?}");
    let first = client.next().await.unwrap();
    let received = Instant::now();
    assert_eq!(first.kind, "audit", "{first:?}");
    let durable_at = durable.await.unwrap();
    assert!(
        durable_at < received + Duration::from_secs(1),
        "event id {:?} ({}) was sent {:?} after it was emitted, {:?} before the relay called it durable (gap before it: {})",
        first.id,
        first.data["id"],
        received - emitted,
        durable_at - received,
        gap.data
    );
}

/// The `end` a slow client gets says `last_event_id`, and the docs say to
/// reconnect with it. But it is the id of the last event the feed *read*,
/// including the chunk whose queueing timed out and was dropped: a client
/// that does as told skips up to a chunk (512 events / 32 KiB) it never
/// got.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_end_notice_points_past_events_the_client_never_got() {
    let served = serve(
        &["file"],
        &format!("{ARCHIVE}\n[ingest.http]\nstream_stall = \"300ms\"\n"),
    )
    .await;
    let mut socket = raw_stream(served.addr, "/v1/stream").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    emit_logins(&served.relay, 20_000, 500);
    assert!(served.relay.idle(Duration::from_secs(60)).await);
    wait_metric(
        &served.base,
        "auditrelay_streams_ended_total{reason=\"slow\"}",
        |n| n == 1.0,
    )
    .await;
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), socket.read_to_end(&mut answer))
        .await
        .expect("the stream did not end")
        .unwrap();
    let (got, _) = parse_sse(&body_of(&answer));
    let last_got = got
        .iter()
        .filter(|e| e.kind == "audit")
        .filter_map(|e| e.id)
        .max()
        .expect("some events came");
    let end = got.last().expect("an end notice");
    assert_eq!(end.kind, "end", "{end:?}");
    let said = end.data["last_event_id"].as_u64().unwrap();
    // Do as the docs say: reconnect with that id.
    let mut client = Client::open(&served.base, "from=earliest", Some(said)).await;
    let next = client.audit(1).await[0].id.unwrap();
    assert!(
        said <= last_got,
        "the end notice says last_event_id {said}, the last event the client got was {last_got}: \
         reconnecting with it (as docs/stream.md says) the next event is {next}, \
         and events {}..={said} were never sent to the client",
        last_got + 1
    );
}

/// **The relay shuts down promptly with streams open** — not with one
/// whose client stopped reading. Its feed waits for queue room
/// (`stream_stall`) without looking at the stop signal, and the server
/// then waits for the answer to finish, which a client that does not read
/// never lets it (until `body_timeout`). Here `stream_stall` and
/// `body_timeout` are 60 s (a slow-uploads setting), and the server is
/// still not stopped 8 s after it was told to; with the defaults one such
/// client holds a shutdown for up to 30 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stopped_reading_holds_up_the_shutdown() {
    let home = Home::with_plugins(&["file"]);
    let config = home.config(&format!(
        "{}\n[ingest.http]\nstream_stall = \"60s\"\nbody_timeout = \"60s\"\n",
        ARCHIVE.replace("{home}", &home.path().display().to_string())
    ));
    let relay = Relay::start(config.clone()).await.unwrap();
    let http = HttpIngest::bind(relay.clone(), &config).await.unwrap();
    let addr = http.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(http.serve(async move {
        let _ = stopped.await;
    }));
    let socket = raw_stream(addr, "/v1/stream").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    emit_logins(&relay, 20_000, 500);
    assert!(relay.idle(Duration::from_secs(60)).await);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let asked = Instant::now();
    stop.send(()).unwrap();
    let mut server = server;
    let finished = tokio::time::timeout(Duration::from_secs(8), &mut server).await;
    drop(socket);
    let waited = asked.elapsed();
    if finished.is_err() {
        let _ = tokio::time::timeout(Duration::from_secs(30), server).await;
    }
    relay.shutdown().await;
    assert!(
        finished.is_ok(),
        "the HTTP server had not stopped {waited:?} after it was told to, held by one live stream whose client does not read"
    );
}

/// A `Last-Event-ID` the relay never gave (past its last sequence number:
/// the client saw another relay, or this relay's spool was wiped) is
/// trusted: the stream starts after it and says nothing while every event
/// below it — events the spool holds — goes by unsent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_last_event_id_from_the_future_silently_skips_what_the_spool_holds() {
    let served = serve(&["file"], ARCHIVE).await;
    for n in 0..5 {
        served
            .relay
            .emit_durable(event(n, "user.login", None))
            .await
            .unwrap();
    }
    let answer = reqwest::Client::new()
        .get(format!("{}/v1/stream", served.base))
        .header("last-event-id", "1000000")
        .send()
        .await
        .unwrap();
    if answer.status() != 200 {
        return; // refused, saying why: fine
    }
    let mut client = Client {
        response: answer,
        partial: String::new(),
    };
    for n in 5..25 {
        served
            .relay
            .emit_durable(event(n, "user.login", None))
            .await
            .unwrap();
    }
    let said = client.next_within(Duration::from_secs(5)).await;
    assert!(
        matches!(said, Ok(Some(_))),
        "Last-Event-ID 1000000 on a spool whose ids end at 24 was taken as it is: 200, then {said:?} \
         for 5 s while 20 events it holds went by"
    );
}

/// `auditrelay tail` "reconnects with Last-Event-ID whenever the stream
/// ends ... without a gap" — only if it got an event before. A tail whose
/// filter matched nothing yet has no id: the relay's `end` carries none
/// (only a `last_event_id` in its data, which tail does not read), so after
/// a restart it reconnects with `from=now` and misses whatever came in
/// between. Here the event arrives while tail waits to reconnect, and is
/// never printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_misses_events_across_a_restart_when_it_had_not_printed_one_yet() {
    use std::io::BufRead;
    let home = Home::with_plugins(&["file"]);
    let port = free_port();
    let config = home.config_file(&format!(
        "[ingest.http]\nlisten = \"127.0.0.1:{port}\"\n[plugins.file]\ngrant_dir = \"{{home}}/out\"\n"
    ));
    let base = format!("http://127.0.0.1:{port}");
    let mut relay = RelayProcess::start(&config, &[]);
    let mut tail = std::process::Command::new(relay_binary())
        .args(["tail", "-c", config.to_str().unwrap()])
        .args(["--type", "rare.*", "--json", "--count", "1"])
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (said_tx, said) = std::sync::mpsc::channel::<String>();
    let stderr = tail.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = said_tx.send(line);
        }
    });
    wait_metric(&base, "auditrelay_streams", |n| n == 1.0).await;
    let post = |n: usize, event_type: &str| {
        let body = event(n, event_type, None).to_canonical_json();
        let url = format!("{base}/v1/events");
        async move {
            let answer = reqwest::Client::new()
                .post(url)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            assert!(answer.status().is_success(), "{}", answer.status());
        }
    };
    post(1, "user.login").await;
    assert!(relay.terminate());
    // tail says so once its first reconnect fails; restart the relay
    // after its second attempt failed too.
    let mut lines = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !lines.iter().any(|l: &String| l.contains("cannot reach")) {
        assert!(Instant::now() < deadline, "tail said: {lines:?}");
        if let Ok(line) = said.recv_timeout(Duration::from_millis(100)) {
            lines.push(line);
        }
    }
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let mut relay = RelayProcess::start(&config, &[]);
    post(2, "rare.thing").await;
    // Once tail is connected again (it backs off a few seconds), the
    // event is printed at once or never; printed, tail exits (`--count 1`),
    // so its stream may be gone before any gauge shows it.
    let deadline = Instant::now() + Duration::from_secs(30);
    let printed = loop {
        if tail.try_wait().unwrap().is_some() {
            break true;
        }
        if Instant::now() > deadline {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    if !printed {
        let _ = tail.kill();
    }
    let output = tail.wait_with_output().unwrap();
    lines.extend(said.try_iter());
    relay.terminate();
    assert!(
        printed && String::from_utf8_lossy(&output.stdout).contains("evt-000002"),
        "tail reconnected and never printed the rare.thing event accepted before it did \
         (stdout {:?}); it said:\n{}",
        String::from_utf8_lossy(&output.stdout),
        lines.join("\n")
    );
}

/// The open files of this process that are deleted spool segments, and
/// their bytes.
fn deleted_segments_held(home: &Home) -> (usize, u64) {
    let home = home.path().display().to_string();
    let mut held = (0, 0);
    for entry in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
        let Ok(target) = std::fs::read_link(entry.path()) else {
            continue;
        };
        let target = target.display().to_string();
        if target.starts_with(&home) && target.contains("spool") && target.ends_with(" (deleted)") {
            held.0 += 1;
            held.1 += std::fs::metadata(entry.path())
                .map(|m| m.len())
                .unwrap_or(0);
        }
    }
    held
}

/// "It keeps no segment from deletion" — the file is unlinked, but a
/// stream's reader keeps it open, so its disk space is not freed (and no
/// longer counted in `auditrelay_spool_bytes` or against
/// `spool.max_size`). A client that reads a little every second (never
/// stalled by `stream_stall`) keeps its reader in old segments for as long
/// as it likes, each one deleted and still taking disk: up to
/// `segment_size` per stream, 128 × 64 MiB = 8 GiB with the defaults.
/// Here: 1 MiB segments, four clients each reading 8 KiB every 500 ms.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trickling_clients_keep_deleted_segments_on_disk() {
    let served = serve(
        &["file"],
        &format!("{ARCHIVE}\n[spool]\nsegment_size = \"1MiB\"\ndedup_ids = 0\n"),
    )
    .await;
    let mut readers = Vec::new();
    for _ in 0..4 {
        let mut socket = raw_stream(served.addr, "/v1/stream").await;
        readers.push(tokio::spawn(async move {
            let mut buf = vec![0u8; 8192];
            for _ in 0..40 {
                if socket.read(&mut buf).await.unwrap_or(0) == 0 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }));
    }
    wait_metric(&served.base, "auditrelay_streams", |n| n == 4.0).await;
    // 32 MB: far more than the stream queues, hyper's buffers and the
    // kernel's socket buffers take.
    for chunk in (0..8000).collect::<Vec<_>>().chunks(100) {
        let batch = chunk
            .iter()
            .map(|&n| {
                let mut event = event(n, "user.login", None);
                event.payload = serde_json::json!({"blob": "x".repeat(4000), "n": n});
                event
            })
            .collect();
        served.relay.emit_batch(batch).unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(served.relay.idle(Duration::from_secs(30)).await);
    let spool_bytes = metric(&metrics(&served.base).await, "auditrelay_spool_bytes").unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut held = deleted_segments_held(&served.home);
    while held.0 == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        held = deleted_segments_held(&served.home);
    }
    for reader in readers {
        reader.abort();
    }
    assert_eq!(
        held.0, 0,
        "{} deleted spool segments ({} bytes) are still open, and their disk space taken, \
         for 4 slow live streams (the spool counts {spool_bytes} bytes)",
        held.0, held.1
    );
}

/// Streams with filters over neighbouring values (`acme` / `acme2` /
/// `ACME` / `acm` / no tenant; `user.login` / `user.login.failed` / `user.loginx`;
/// two sources) get exactly the events their filter matches, in order, and
/// nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_never_let_another_event_through() {
    let served = serve(&["file"], ARCHIVE).await;
    let tenants = [Some("acme"), Some("acme2"), Some("ACME"), None, Some("acm")];
    let types = [
        "user.login",
        "user.login.failed",
        "user.loginx",
        "group.member_added",
        "user",
    ];
    let sources = ["shop", "shop-eu"];
    let mut all = Vec::new();
    for n in 0..600 {
        let mut event = event(n, types[n % 5], tenants[(n / 5) % 5]);
        event.source = sources[(n / 25) % 2].to_owned();
        all.push(event);
    }
    type Pred = fn(&AuditEventEnvelope) -> bool;
    let streams: [(&str, Pred); 6] = [
        ("tenant=acme", |e| e.tenant.as_deref() == Some("acme")),
        ("tenant=", |e| e.tenant.is_none()),
        ("type=user.login", |e| e.event_type == "user.login"),
        ("type=user.login*&tenant=acme*", |e| {
            e.event_type.starts_with("user.login")
                && e.tenant.as_deref().is_some_and(|t| t.starts_with("acme"))
        }),
        ("source=shop&type=group.*,user", |e| {
            e.source == "shop" && (e.event_type.starts_with("group.") || e.event_type == "user")
        }),
        ("tenant=ACME&tenant=acm&source=shop-eu", |e| {
            matches!(e.tenant.as_deref(), Some("ACME" | "acm")) && e.source == "shop-eu"
        }),
    ];
    let mut clients = Vec::new();
    for (query, _) in &streams {
        clients.push(Client::open(&served.base, query, None).await);
    }
    for chunk in all.chunks(50) {
        served.relay.emit_batch(chunk.to_vec()).unwrap();
    }
    let mut wrong = Vec::new();
    for ((query, matches), mut client) in streams.iter().zip(clients) {
        let expected: Vec<&str> = all
            .iter()
            .filter(|e| matches(e))
            .map(|e| e.id.as_str())
            .collect();
        assert!(!expected.is_empty(), "{query}");
        let got = client.audit(expected.len()).await;
        let got: Vec<String> = got
            .iter()
            .map(|g| g.data["id"].as_str().unwrap().to_owned())
            .collect();
        if got != expected {
            wrong.push(format!("{query}: got {got:?}\nexpected {expected:?}"));
        }
        // Nothing more comes for it.
        if let Ok(extra) = client.next_within(Duration::from_millis(300)).await {
            wrong.push(format!("{query}: then {extra:?}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// With `auth_token` set, nothing without it: no header, a wrong or
/// lengthened token, another scheme, the token in the query, two headers
/// with the right one second, a HEAD — each a `401` with no event in it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_event_is_sent_without_the_token() {
    const TOKEN: &str = "stream-token-0123456789abcdef";
    let served = serve(
        &["file"],
        &format!("{ARCHIVE}\n[ingest.http]\nauth_token = \"{TOKEN}\"\n"),
    )
    .await;
    served
        .relay
        .emit_durable(event(1, "user.login", Some("acme")))
        .await
        .unwrap();
    let attempts: Vec<(&str, String, Vec<String>)> = vec![
        ("no header", "from=earliest".into(), vec![]),
        (
            "a wrong token",
            "from=earliest".into(),
            vec![format!("Bearer {TOKEN}x")],
        ),
        (
            "a prefix of it",
            "from=earliest".into(),
            vec![format!("Bearer {}", &TOKEN[..20])],
        ),
        (
            "Basic",
            "from=earliest".into(),
            vec![format!("Basic {TOKEN}")],
        ),
        ("no scheme", "from=earliest".into(), vec![TOKEN.to_owned()]),
        (
            "in the query",
            format!("from=earliest&access_token={TOKEN}"),
            vec![],
        ),
        (
            "token= in the query",
            format!("from=earliest&token={TOKEN}"),
            vec![],
        ),
        (
            "the right one second",
            "from=earliest".into(),
            vec!["Bearer nope".into(), format!("Bearer {TOKEN}")],
        ),
    ];
    let mut leaked = Vec::new();
    for (what, query, authorizations) in attempts {
        let mut socket = TcpStream::connect(served.addr).await.unwrap();
        let headers: String = authorizations
            .iter()
            .map(|a| format!("authorization: {a}\r\n"))
            .collect();
        socket
            .write_all(
                format!("GET /v1/stream?{query} HTTP/1.1\r\nhost: relay\r\n{headers}connection: close\r\n\r\n")
                    .as_bytes(),
            )
            .await
            .unwrap();
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), socket.read_to_end(&mut answer)).await;
        let text = String::from_utf8_lossy(&answer);
        if !text.starts_with("HTTP/1.1 401") || text.contains("evt-") || text.contains("event:") {
            leaked.push(format!("{what}: {}", text.lines().next().unwrap_or("")));
        }
    }
    let head = reqwest::Client::new()
        .head(format!("{}/v1/stream?from=earliest", served.base))
        .send()
        .await
        .unwrap();
    if head.status() != 401 {
        leaked.push(format!("HEAD: {}", head.status()));
    }
    // The right token, in any case of the scheme, works.
    let ok = reqwest::Client::new()
        .get(format!("{}/v1/stream?from=earliest", served.base))
        .header("authorization", format!("bEaReR {TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let mut client = Client {
        response: ok,
        partial: String::new(),
    };
    assert_eq!(client.audit(1).await[0].data["id"], "evt-000001");
    assert!(leaked.is_empty(), "{}", leaked.join("\n"));
}

/// Churn: 200 streams opened and dropped every way a client goes (before
/// the answer, after the headers, mid-event with a reset, half-closed),
/// with `max_streams = 8` and events flowing. The gauge returns to 0 and
/// a new stream is admitted; no slot leaks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_disconnect_churn_leaks_no_stream_slot() {
    let served = serve(
        &["file"],
        &format!("{ARCHIVE}\n[ingest.http]\nmax_streams = 8\n"),
    )
    .await;
    let relay = served.relay.clone();
    let writer = tokio::spawn(async move {
        for n in 0..200 {
            relay
                .emit_batch(events(n * 20..n * 20 + 20, "user.login"))
                .unwrap();
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    let mut refused = 0;
    for round in 0..200 {
        let mut socket = TcpStream::connect(served.addr).await.unwrap();
        socket
            .write_all(b"GET /v1/stream?from=earliest HTTP/1.1\r\nhost: relay\r\n\r\n")
            .await
            .unwrap();
        let mut buf = vec![0u8; 2048];
        match round % 4 {
            0 => {}
            1 => {
                let n = socket.read(&mut buf).await.unwrap();
                if String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 503") {
                    refused += 1;
                }
            }
            2 => {
                let _ = socket.read(&mut buf).await;
                let _ = socket.read(&mut buf).await;
                socket.set_zero_linger().unwrap();
            }
            _ => {
                let _ = socket.read(&mut buf).await;
                socket.shutdown().await.unwrap();
                let _ = tokio::time::timeout(Duration::from_millis(5), socket.read(&mut buf)).await;
            }
        }
        drop(socket);
    }
    writer.await.unwrap();
    wait_metric(&served.base, "auditrelay_streams", |n| n == 0.0).await;
    let mut client = Client::open(&served.base, "from=earliest", None).await;
    assert_eq!(client.audit(1).await.len(), 1);
    let again: Vec<_> = (0..7)
        .map(|_| Client::open(&served.base, "", None))
        .collect();
    for open in again {
        drop(open.await);
    }
    eprintln!("{refused} of 50 header-readers were refused (503) while the churn ran");
}

/// 16 clients that never read (from the earliest event, small receive
/// buffers) and one that reads everything, while 30,000 events come in:
/// every event is delivered to the exporter, and the reading client gets
/// all of them once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_clients_hold_back_neither_ingest_nor_delivery_nor_other_streams() {
    let served = serve(&["file"], ARCHIVE).await;
    let mut stalled = Vec::new();
    for _ in 0..16 {
        stalled.push(raw_stream(served.addr, "/v1/stream?from=earliest").await);
    }
    wait_metric(&served.base, "auditrelay_streams", |n| n == 16.0).await;
    let mut reader = Client::open(&served.base, "", None).await;
    let relay = served.relay.clone();
    let writer = tokio::spawn(async move {
        for n in 0..60 {
            relay
                .emit_batch(events(n * 500..n * 500 + 500, "user.login"))
                .unwrap();
        }
    });
    let got = reader.audit(30_000).await;
    writer.await.unwrap();
    assert!(served.relay.idle(Duration::from_secs(30)).await);
    let ids: Vec<&str> = got.iter().map(|g| g.data["id"].as_str().unwrap()).collect();
    let expected: Vec<String> = (0..30_000).map(|n| format!("evt-{n:06}")).collect();
    assert!(ids == expected, "the reading client's events differ");
    let delivered: HashSet<String> = served
        .stored()
        .await
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(delivered.len(), 30_000);
    drop(stalled);
}

/// A client cut off at arbitrary bytes — mid-event, mid-`id:` line — five
/// times while events keep coming, resuming each time with the id of the
/// last *complete* event it read: every event once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_cut_off_mid_event_resumes_without_loss_or_repeat() {
    let served = serve(&["file"], ARCHIVE).await;
    let relay = served.relay.clone();
    let writer = tokio::spawn(async move {
        for n in 0..100 {
            relay
                .emit_batch(events(n * 30..n * 30 + 30, "user.login"))
                .unwrap();
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    let mut got: Vec<Sse> = Vec::new();
    let mut last: Option<u64> = None;
    let cuts = [7_001usize, 50_013, 123_457, 3, 99_999];
    for cut in cuts {
        let path = match last {
            Some(id) => format!("/v1/stream?last_event_id={id}"),
            None => "/v1/stream?from=earliest".to_owned(),
        };
        let mut socket = TcpStream::connect(served.addr).await.unwrap();
        socket
            .write_all(format!("GET {path} HTTP/1.1\r\nhost: relay\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut answer = Vec::new();
        let mut buf = vec![0u8; 4096];
        while answer.len() < cut {
            let n = tokio::time::timeout(Duration::from_secs(30), socket.read(&mut buf))
                .await
                .expect("silent for 30 s")
                .unwrap();
            assert!(n > 0);
            answer.extend_from_slice(&buf[..n.min(cut - answer.len())]);
        }
        drop(socket);
        // The complete events in what was read (chunk framing included).
        let text = body_of(&answer);
        let (events, _) = parse_sse(&text);
        for event in events.into_iter().filter(|e| e.kind == "audit") {
            last = event.id;
            got.push(event);
        }
    }
    writer.await.unwrap();
    let mut client = Client::open(&served.base, "", last).await;
    let rest = 3000 - got.len();
    got.extend(client.audit(rest).await);
    let ids: Vec<&str> = got.iter().map(|g| g.data["id"].as_str().unwrap()).collect();
    let expected: Vec<String> = (0..3000).map(|n| format!("evt-{n:06}")).collect();
    assert!(
        ids == expected,
        "missed, repeated or out of order: {} events",
        ids.len()
    );
}

/// The process's resident memory, in bytes.
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    statm
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<u64>()
        .unwrap()
        * 4096
}

/// "Its queue is bounded (4 chunks of at most 32 KiB of events, beside the
/// kernel's socket buffers)" — but a stream holds far more than its
/// queue: its spool reader keeps the read buffer it grew (up to 1 MiB,
/// `reader::CHUNK`) for as long as the stream lives. Measured as the
/// growth of this process's resident memory, 32 streams at a time, over a
/// spool of 10,000 events: streams whose filter matches nothing (caught up,
/// queue empty, nothing sent — limit 256 KiB each), then streams from the
/// earliest event whose clients do not read (limit 768 KiB each, room for
/// the queue and hyper's write buffer). With `max_streams = 128` the
/// first alone is ~180 MiB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_holds_far_more_memory_than_its_queue() {
    const STREAMS: u64 = 32;
    let served = serve(
        &["file"],
        &format!("{ARCHIVE}\n[ingest.http]\nstream_stall = \"60s\"\nmax_streams = 64\n"),
    )
    .await;
    emit_logins(&served.relay, 10_000, 500);
    assert!(served.relay.idle(Duration::from_secs(60)).await);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut per_stream = Vec::new();
    let mut sockets = Vec::new();
    for (open, query) in [
        (STREAMS, "type=nothing.matches&from=earliest"),
        (2 * STREAMS, "from=earliest"),
    ] {
        let before = rss();
        for _ in 0..STREAMS {
            sockets.push(raw_stream(served.addr, &format!("/v1/stream?{query}")).await);
        }
        wait_metric(&served.base, "auditrelay_streams", |n| n == open as f64).await;
        // Each feed reads what it can and waits.
        tokio::time::sleep(Duration::from_secs(2)).await;
        per_stream.push(rss().saturating_sub(before) / STREAMS / 1024);
    }
    drop(sockets);
    assert!(
        per_stream[0] < 256 && per_stream[1] < 768,
        "a stream whose filter matched nothing (nothing queued) holds {} KiB of the relay's memory; \
         one whose client does not read, {} KiB (the documented queue is 4 x 32 KiB)",
        per_stream[0],
        per_stream[1]
    );
}
