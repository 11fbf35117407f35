//! The live stream (`GET /v1/stream`) as clients meet it: a client that
//! drops and resumes with `Last-Event-ID` misses nothing and gets nothing
//! twice; filters by type, tenant and source; a client that reads too
//! slowly is ended with a last event saying so, and ingest never waits for
//! it; the stream cap, the token, the relay stopping, and events the spool
//! no longer holds. What a client got is counted by the client.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use auditrelay::Relay;
use auditrelay::envelope::AuditEventEnvelope;
use auditrelay_tests::webhooks::{ARCHIVE, Served, serve};
use auditrelay_tests::{metric, sample_envelope};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One event as a client read it.
#[derive(Debug, Clone)]
struct Got {
    id: Option<u64>,
    kind: String,
    data: Value,
}

/// A stream client reading in this process.
struct Client {
    response: reqwest::Response,
    partial: String,
}

impl Client {
    async fn open(served: &Served, query: &str, last: Option<u64>) -> Client {
        let mut request = reqwest::Client::new().get(format!("{}/v1/stream?{query}", served.base));
        if let Some(last) = last {
            request = request.header("last-event-id", last.to_string());
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        Client {
            response,
            partial: String::new(),
        }
    }

    /// The next event (comments and `retry` skipped); `None` at the end.
    async fn next(&mut self) -> Option<Got> {
        loop {
            if let Some(end) = self.partial.find("\n\n") {
                let block: String = self.partial.drain(..end + 2).collect();
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
                    return Some(Got { id, kind, data });
                }
                continue;
            }
            let chunk = tokio::time::timeout(Duration::from_secs(30), self.response.chunk())
                .await
                .expect("the stream said nothing for 30 s")
                .ok()??;
            self.partial.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }

    /// The next `n` audit events.
    async fn audit(&mut self, n: usize) -> Vec<Got> {
        let mut got = Vec::new();
        while got.len() < n {
            let event = self.next().await.expect("the stream ended early");
            assert_eq!(event.kind, "audit", "{event:?}");
            got.push(event);
        }
        got
    }
}

/// Event `n` with a readable id, of `event_type` and `tenant`.
pub(crate) fn event(n: usize, event_type: &str, tenant: Option<&str>) -> AuditEventEnvelope {
    let mut event = sample_envelope(n);
    event.id = format!("evt-{n:06}");
    event.event_type = event_type.to_owned();
    event.tenant = tenant.map(str::to_owned);
    event
}

/// Events `range` of `event_type`, without a tenant.
pub(crate) fn events(range: std::ops::Range<usize>, event_type: &str) -> Vec<AuditEventEnvelope> {
    range.map(|n| event(n, event_type, None)).collect()
}

/// Emits `count` `user.login` events in batches of `batch` (not waiting
/// for them).
pub(crate) fn emit_logins(relay: &Relay, count: usize, batch: usize) {
    for start in (0..count).step_by(batch) {
        relay
            .emit_batch(events(start..(start + batch).min(count), "user.login"))
            .unwrap();
    }
}

/// The relay's metrics at `base`.
pub(crate) async fn metrics(base: &str) -> String {
    reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Waits (up to 30 s) until `series` reads `wanted`.
pub(crate) async fn wait_metric(base: &str, series: &str, wanted: impl Fn(f64) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = metrics(base).await;
        if metric(&text, series).is_some_and(&wanted) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "{series} never got there in 30 s:\n{}",
            text.lines()
                .filter(|l| l.starts_with("auditrelay_s"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A raw client of `GET path` with a small receive buffer, that reads only
/// when told to.
pub(crate) async fn raw_stream(addr: SocketAddr, path: &str) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stream = socket.connect(addr).await.unwrap();
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nhost: relay\r\nconnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
    stream
}

async fn emit_durably(served: &Served, events: Vec<AuditEventEnvelope>) {
    for event in events {
        served.relay.emit_durable(event).await.unwrap();
    }
}

/// Dropped after 300 of 1,000 events and resumed with the last id it got,
/// a client gets every event once, in order, while events keep coming.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_resuming_with_last_event_id_misses_nothing() {
    let served = serve(&["file"], ARCHIVE).await;
    let mut client = Client::open(&served, "", None).await;
    let writer = {
        let relay = served.relay.clone();
        tokio::spawn(async move {
            for chunk in (0..1000).collect::<Vec<_>>().chunks(50) {
                relay
                    .emit_batch(events(chunk[0]..chunk[0] + chunk.len(), "user.login"))
                    .unwrap();
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let mut got = client.audit(300).await;
    drop(client);
    let last = got.last().unwrap().id.unwrap();
    let mut client = Client::open(&served, "", Some(last)).await;
    got.extend(client.audit(700).await);
    writer.await.unwrap();
    let ids: Vec<&str> = got.iter().map(|g| g.data["id"].as_str().unwrap()).collect();
    let expected: Vec<String> = (0..1000).map(|n| format!("evt-{n:06}")).collect();
    assert_eq!(ids, expected, "missed, repeated or out of order");
    let seqs: Vec<u64> = got.iter().map(|g| g.id.unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "ids go back");
}

/// `type`, `tenant` and `source`, each a list with `*` suffixes; `from`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_pick_types_tenants_and_sources() {
    let served = serve(&["file"], ARCHIVE).await;
    emit_durably(
        &served,
        vec![
            event(1, "group.member_added", Some("acme")),
            event(2, "user.login", Some("acme")),
            event(3, "group.deleted", Some("globex")),
            event(4, "group.created", None),
            event(5, "role.granted", Some("acme")),
        ],
    )
    .await;
    let ids = |got: Vec<Got>| -> Vec<String> {
        got.iter()
            .map(|g| g.data["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let mut client = Client::open(&served, "from=earliest&type=group.*", None).await;
    assert_eq!(
        ids(client.audit(3).await),
        ["evt-000001", "evt-000003", "evt-000004"]
    );
    let mut client = Client::open(
        &served,
        "from=earliest&type=group.*,role.*&tenant=acme",
        None,
    )
    .await;
    assert_eq!(ids(client.audit(2).await), ["evt-000001", "evt-000005"]);
    let mut client = Client::open(&served, "from=earliest&tenant=&type=group.*", None).await;
    assert_eq!(ids(client.audit(1).await), ["evt-000004"]);
    let source = sample_envelope(0).source;
    let mut client = Client::open(
        &served,
        &format!("from=earliest&source={source}&tenant=globex"),
        None,
    )
    .await;
    assert_eq!(ids(client.audit(1).await), ["evt-000003"]);
    // `from=now` (the default) shows only what comes after.
    let mut client = Client::open(&served, "type=user.*", None).await;
    emit_durably(&served, vec![event(6, "user.logout", None)]).await;
    assert_eq!(ids(client.audit(1).await), ["evt-000006"]);

    let answer = reqwest::get(format!("{}/v1/stream?typ=x&from=soon", served.base))
        .await
        .unwrap();
    assert_eq!(answer.status(), 400);
    let error = answer.json::<Value>().await.unwrap()["error"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        error.contains("\"typ\"") && error.contains("from=\"soon\""),
        "{error}"
    );
}

/// A client that stops reading: its stream fills, and after
/// `stream_stall` it is ended with an `event: end` that says why — while
/// the relay takes every event at its own pace. A reader that comes back
/// gets what was queued, the notice, and the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_does_not_read_is_ended_with_a_notice() {
    let served = serve(
        &["file"],
        &format!("{ARCHIVE}\n[ingest.http]\nstream_stall = \"300ms\"\n"),
    )
    .await;
    let mut socket = tokio::net::TcpStream::connect(served.addr).await.unwrap();
    socket
        .write_all(b"GET /v1/stream HTTP/1.1\r\nhost: relay\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    // Let the stream open before the events come.
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Far more than the queue and the socket buffers hold.
    let started = Instant::now();
    emit_logins(&served.relay, 20_000, 500);
    assert!(served.relay.idle(Duration::from_secs(60)).await);
    eprintln!(
        "20,000 events taken in {:?} beside a client that reads nothing",
        started.elapsed()
    );
    wait_metric(
        &served.base,
        "auditrelay_streams_ended_total{reason=\"slow\"}",
        |n| n == 1.0,
    )
    .await;
    let mut read = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), socket.read_to_end(&mut read))
        .await
        .expect("the stream did not end")
        .unwrap();
    let read = String::from_utf8_lossy(&read);
    let end = read.rfind("event: end\ndata: ").expect("no end notice");
    assert!(
        read[end..].contains("the client read too slowly"),
        "{}",
        &read[end..]
    );
    let delivered = read.matches("event: audit").count();
    assert!(
        delivered > 0 && delivered < 20_000,
        "{delivered} events before the end"
    );
}

/// `max_streams`, the API token, and the relay stopping.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_are_capped_authenticated_and_ended_when_the_relay_stops() {
    let served = serve(
        &["file"],
        &format!(
            "{ARCHIVE}\n[ingest.http]\nmax_streams = 2\nauth_token = \"stream-token-0123456789\"\n"
        ),
    )
    .await;
    let client = reqwest::Client::new();
    let url = format!("{}/v1/stream", served.base);
    let refused = client.get(&url).send().await.unwrap();
    assert_eq!(refused.status(), 401);
    let open = |client: &reqwest::Client| {
        client
            .get(&url)
            .bearer_auth("stream-token-0123456789")
            .send()
    };
    let first = open(&client).await.unwrap();
    let second = open(&client).await.unwrap();
    assert_eq!(
        (first.status().as_u16(), second.status().as_u16()),
        (200, 200)
    );
    let third = open(&client).await.unwrap();
    assert_eq!(third.status(), 503);
    let error = third.json::<Value>().await.unwrap()["error"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(error.contains("ingest.http.max_streams"), "{error}");
    drop(second);
    // The closed stream's place is free again.
    let deadline = Instant::now() + Duration::from_secs(10);
    let reopened = loop {
        let answer = open(&client).await.unwrap();
        if answer.status() == 200 {
            break answer;
        }
        assert!(
            Instant::now() < deadline,
            "the closed stream's place never came back"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let mut stream = Client {
        response: reopened,
        partial: String::new(),
    };
    drop(first);
    served.relay.shutdown().await;
    let end = stream.next().await.expect("no end notice");
    assert_eq!(end.kind, "end");
    assert!(
        end.data["reason"].as_str().unwrap().contains("stopping"),
        "{end:?}"
    );
    assert!(stream.next().await.is_none());
}

/// Events the spool deleted before a client read them (every instance had
/// them, their segments went): a client resuming from before them is told
/// which, then goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_the_spool_no_longer_holds_are_named_as_a_gap() {
    let served = serve(
        &["file"],
        // Small segments, and a dedup window that keeps none of them.
        &format!("{ARCHIVE}\n[spool]\nsegment_size = \"64KiB\"\ndedup_ids = 100\n"),
    )
    .await;
    for start in (0..3000).step_by(100) {
        served
            .relay
            .emit_batch(events(start..start + 100, "user.login"))
            .unwrap();
        assert!(served.relay.idle(Duration::from_secs(30)).await);
    }
    let mut client = Client::open(&served, "", Some(0)).await;
    let gap = client.next().await.unwrap();
    assert_eq!(gap.kind, "gap", "{gap:?}");
    let (from, to) = (
        gap.data["from"].as_u64().unwrap(),
        gap.data["to"].as_u64().unwrap(),
    );
    assert_eq!(from, 1);
    let first = client.next().await.unwrap();
    assert_eq!(first.kind, "audit");
    assert_eq!(
        first.id,
        Some(to + 1),
        "the stream goes on right after the gap"
    );
    assert!(to > 100, "the gap should cover deleted segments: {gap:?}");
}
