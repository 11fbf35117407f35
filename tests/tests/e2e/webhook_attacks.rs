//! Webhook sources under attack, as an outside review tried them: a
//! duplicate in flight, a client that disconnects mid-commit, a captured
//! request replayed, a sender writing as another source, a slow body
//! without credentials, a shutdown mid-request. Each test states what
//! holds (each once failed, and its doc says how).

use std::io::Write;
use std::time::Duration;

use auditrelay_tests::webhooks::{ARCHIVE, SECRET, now, serve, sign_hub, sign_v2};
use auditrelay_tests::{files_under, sample_envelope};
use serde_json::{Value, json};

/// A sample envelope of `source`, as a body.
fn event_of(source: &str, n: usize) -> Vec<u8> {
    let mut event = sample_envelope(n);
    event.source = source.into();
    serde_json::to_vec(&event).unwrap()
}

/// `409 ... nothing was stored from this one`, a final-sounding 4xx most
/// senders do not retry. The first then fails (here: the spool is full and
/// stays full past block_timeout) — or its client is already gone. The
/// sender has heard 409 and stops; nothing was stored. Expected: the
/// in-flight duplicate is answered with something retryable (503 +
/// Retry-After) or waits for the first's outcome.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_in_flight_duplicate_is_told_to_retry_so_the_delivery_is_not_lost() {
    let served = serve(
        &["file", "faulty"],
        &format!(
            r#"{ARCHIVE}
[relay]
max_event_bytes = "4KiB"
[spool]
segment_size = "64KiB"
max_size = "256KiB"
when_full = "block"
block_timeout = "3s"
[plugins.stuck]
plugin = "faulty"
[plugins.stuck.config]
fault = "retryable"
[plugins.stuck.retry]
initial_backoff = "10ms"
max_backoff = "50ms"

[ingest.webhook.shop]
auth = "hmac"
secret = "{SECRET}"
"#
        ),
    )
    .await;
    // Fill the spool (emit blocks up to block_timeout once it is full).
    let mut filled = 0;
    while served.relay.emit(sample_envelope(filled)).is_ok() {
        filled += 1;
        assert!(filled < 10_000, "the spool never filled");
    }
    let body = event_of("shop", 99_999);
    let ts = now().to_string();
    let headers = vec![
        ("x-webhook-timestamp", ts.clone()),
        ("x-webhook-signature", sign_v2(SECRET, &ts, &body)),
    ];
    let first = {
        let (served_base, headers, body) = (served.base.clone(), headers.clone(), body.clone());
        tokio::spawn(async move {
            let mut request = reqwest::Client::new()
                .post(format!("{served_base}/v1/sources/shop"))
                .header("content-type", "application/json")
                .body(body);
            for (name, value) in &headers {
                request = request.header(*name, value);
            }
            request.send().await.unwrap().status().as_u16()
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (second, answer) = served
        .post("/v1/sources/shop", &headers, body.clone())
        .await;
    let first = first.await.unwrap();
    eprintln!("first: {first}, second: {second} {answer}");
    assert_eq!(first, 503, "the first could not be stored");
    assert_ne!(
        second, 409,
        "the in-flight duplicate was told 409 ({answer}) and the first then failed with 503: a sender that saw only the 409 never retries"
    );
}

/// (b)/(e) The client disconnects while its request waits for the group
/// commit: the handler future is dropped, the Reservation's Drop releases
/// the signature — but the events were already appended and become
/// durable. The same signed request replayed then is accepted again; with
/// the dedup window off (dedup_ids = 0) it is stored twice. Expected: the
/// signature is committed once the events are durable whether or not the
/// answer reached the client (409 on the replay).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disconnect_while_waiting_for_the_group_commit_still_uses_the_signature() {
    let served = serve(
        &["file"],
        &format!(
            r#"{ARCHIVE}
[spool]
durability = "group"
group_commit = "4s"
dedup_ids = 0

[ingest.webhook.shop]
auth = "hmac"
secret = "{SECRET}"
"#
        ),
    )
    .await;
    let body = event_of("shop", 7);
    let ts = now().to_string();
    let headers = vec![
        ("x-webhook-timestamp", ts.clone()),
        ("x-webhook-signature", sign_v2(SECRET, &ts, &body)),
    ];
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(800))
        .build()
        .unwrap();
    let gone = served
        .post_with(&impatient, "/v1/sources/shop", &headers, body.clone())
        .await;
    assert!(
        gone.is_err(),
        "expected the client to time out while the relay waits for the group commit: {gone:?}"
    );
    // Past the group commit: the first request's event is durable.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (status, answer) = served
        .post("/v1/sources/shop", &headers, body.clone())
        .await;
    let stored = served.stored().await;
    let copies = stored.len();
    eprintln!("replay: {status} {answer}; stored {copies} time(s)");
    assert_eq!(
        status, 409,
        "the replay of a request whose event is stored was accepted: {answer}; stored {copies} times"
    );
    assert_eq!(copies, 1);
}

/// (d) `hub-signature` (and `bearer`) cannot refuse a replay; events
/// dedup by id, but refused records do not: anyone who captured one
/// signed request whose record the mapper refuses can resend it at will,
/// and each resend appends the whole body to refused.ndjson and fsyncs.
/// Expected: a bounded file (dedup by body digest, a size cap, or a
/// rotation).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_captured_refused_record_replayed_is_kept_once() {
    let served = serve(
        &["file", "faulty-mapper"],
        &format!(
            r#"{ARCHIVE}
[ingest.webhook.crm]
auth = "hub-signature"
secret = "{SECRET}"
[ingest.webhook.crm.mapper]
plugin = "faulty-mapper"
"#
        ),
    )
    .await;
    // A padded record (an attacker would use max_body_bytes).
    let body = format!(
        r#"{{"n":1,"do":"refuse","pad":"{}"}}"#,
        "x".repeat(64 * 1024)
    )
    .into_bytes();
    let headers = vec![("x-hub-signature-256", sign_hub(SECRET, &body))];
    for _ in 0..20 {
        let (status, answer) = served.post("/v1/sources/crm", &headers, body.clone()).await;
        assert_eq!(status, 202, "{answer}");
    }
    let lines = served.refused("crm").len();
    let bytes = std::fs::metadata(served.home.join("data/sources/crm/refused.ndjson"))
        .map(|m| m.len())
        .unwrap_or(0);
    assert!(
        lines <= 1,
        "one captured request, replayed 20 times, kept {lines} times ({bytes} bytes)"
    );
}

/// (b) A source without a mapper takes envelopes as they come: the
/// webhook's sender (a third party holding only this source's secret) can
/// write events under any `source`, e.g. another system's name, which the
/// relay's own ingest token would have guarded. Expected: the source
/// forced to (or checked against) the webhook's name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_sender_cannot_write_events_as_another_source() {
    let served = serve(
        &["file"],
        &format!(
            r#"{ARCHIVE}
[ingest.http]
auth_token = "relay-ingest-token-0123456789abcdef"

[ingest.webhook.billing]
auth = "bearer"
secret = "{SECRET}"
"#
        ),
    )
    .await;
    let mut event = serde_json::to_value(sample_envelope(1)).unwrap();
    event["source"] = json!("identity-provider");
    event["type"] = json!("user.login");
    let (status, answer) = served
        .post(
            "/v1/sources/billing",
            &[("authorization", format!("Bearer {SECRET}"))],
            serde_json::to_vec(&event).unwrap(),
        )
        .await;
    let stored = served.stored().await;
    let sources: Vec<&Value> = stored.iter().map(|e| &e["source"]).collect();
    eprintln!("{status} {answer}; stored sources {sources:?}");
    assert!(
        stored.iter().all(|e| e["source"] == "billing"),
        "the billing webhook stored events as {sources:?}"
    );
}

/// (d) The body is read (and holds its share of max_body_memory) before
/// the request is authenticated: an attacker with no secret at all sends
/// most of a large body and stalls, and every authenticated client of
/// `POST /v1/events` is answered 503 meanwhile. `/v1/events` itself
/// checks the token before reading the body. Expected: a bearer source
/// checks its token, and an hmac source its headers and timestamp, before
/// the body takes budget.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unauthenticated_slow_body_does_not_starve_the_authenticated_ingest() {
    let served = serve(
        &["file"],
        &format!(
            r#"{ARCHIVE}
[ingest.http]
auth_token = "relay-ingest-token-0123456789abcdef"
max_body_bytes = "256KiB"
max_body_memory = "256KiB"
body_timeout = "20s"
min_body_rate = "1KiB"

[ingest.webhook.shop]
auth = "hmac"
secret = "{SECRET}"
"#
        ),
    )
    .await;
    let hold = |path: &'static str| {
        let addr = served.addr;
        std::thread::spawn(move || {
            let mut stream = std::net::TcpStream::connect(addr).unwrap();
            let total = 256 * 1024;
            write!(stream, "POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {total}\r\n\r\n").unwrap();
            stream.write_all(&vec![b' '; total - 1]).unwrap();
            stream.flush().unwrap();
            std::thread::sleep(Duration::from_secs(6));
            drop(stream);
        })
    };
    let legit = || async {
        let body = serde_json::to_vec(&sample_envelope(1)).unwrap();
        served
            .post(
                "/v1/events",
                &[(
                    "authorization",
                    "Bearer relay-ingest-token-0123456789abcdef".to_owned(),
                )],
                body,
            )
            .await
    };
    // Control: the same stall on /v1/events without the token costs nothing.
    let control = hold("/v1/events");
    tokio::time::sleep(Duration::from_millis(800)).await;
    let (status, answer) = legit().await;
    assert_eq!(status, 202, "control: {answer}");
    control.join().unwrap();
    // The attack: no credentials at all, on the webhook route.
    let attacker = hold("/v1/sources/shop");
    tokio::time::sleep(Duration::from_millis(800)).await;
    let (status, answer) = legit().await;
    attacker.join().unwrap();
    assert_eq!(
        status, 202,
        "an unauthenticated stalled webhook body made an authenticated POST /v1/events fail: {answer}"
    );
}

/// (a)/(f) A request whose mapping is cut short by the relay's shutdown:
/// the answer is 503 (retry; good), but its record is also written to
/// refused.ndjson as "the relay is shutting down; not mapped" — the sender
/// resends it, and whoever replays the refused records stores it twice.
/// Expected: 503 and nothing kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_cut_short_by_shutdown_is_answered_503_and_not_kept_as_refused() {
    let served = serve(
        &["file", "faulty-mapper"],
        &format!(
            r#"{ARCHIVE}
[ingest.webhook.crm]
auth = "hub-signature"
secret = "{SECRET}"
[ingest.webhook.crm.mapper]
plugin = "faulty-mapper"
[ingest.webhook.crm.mapper.limits]
timeout = "3s"
"#
        ),
    )
    .await;
    let send = |what: &'static str| {
        let base = served.base.clone();
        tokio::spawn(async move {
            let body = format!(r#"{{"n":1,"do":"{what}"}}"#).into_bytes();
            let response = reqwest::Client::new()
                .post(format!("{base}/v1/sources/crm"))
                .header("x-hub-signature-256", sign_hub(SECRET, &body))
                .body(body)
                .send()
                .await;
            match response {
                Ok(r) => {
                    let status = r.status().as_u16();
                    (status, r.json::<Value>().await.unwrap_or(Value::Null))
                }
                Err(e) => (0, json!(e.to_string())),
            }
        })
    };
    // Make sure the mapper is up first.
    let (status, answer) = send("ok").await.unwrap();
    assert_eq!(status, 202, "{answer}");
    let busy = send("loop");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let queued = send("ok");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let relay = served.relay.clone();
    let shutdown = tokio::spawn(async move { relay.shutdown().await });
    let (busy, queued) = (busy.await.unwrap(), queued.await.unwrap());
    shutdown.await.unwrap();
    eprintln!(
        "busy: {busy:?}\nqueued: {queued:?}\nrefused lines: {}",
        served.refused("crm").len()
    );
    let kept: Vec<String> = files_under(served.home.path())
        .into_iter()
        .filter(|(p, _)| p.ends_with("sources/crm/refused.ndjson"))
        .flat_map(|(_, text)| {
            text.lines()
                .map(|l| serde_json::from_str::<Value>(l).unwrap()["reason"].to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    eprintln!("kept reasons: {kept:?}");
    // Answered 503 (retry) — yet kept as refused: a later replay of the
    // refused records would store them a second time.
    assert!(
        !kept.iter().any(|r| r.contains("shutting down")),
        "records answered 503 were also kept as refused: {kept:?}"
    );
    let (status, answer) = queued;
    let refused_for_shutdown = answer["refused"].as_array().is_some_and(|r| {
        r.iter()
            .any(|r| r["reason"].as_str().unwrap_or("").contains("shutting down"))
    });
    assert!(
        !(status == 202 && refused_for_shutdown),
        "an 'ok' record was answered 202 and kept as refused because the relay was stopping: {answer}"
    );
}
