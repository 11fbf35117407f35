//! Webhook sources, as a sender and an attacker meet them, over real HTTP
//! on 127.0.0.1 against a relay in this process. What is stored is counted
//! where the file exporter wrote it, not from what the relay says.
//!
//! - every forged, stale, replayed or altered request is refused with a
//!   status and a reason naming the header, and stores nothing;
//! - a request the relay could not store (a full spool) leaves its
//!   signature usable, so the sender's retry is accepted: nothing lost;
//! - a record that crashes the mapper is kept with its bytes and reason,
//!   the next requests flow, the relay lives;
//! - the secret never appears in an answer, the status, the logs or a file.

use std::time::Duration;

use auditrelay::Relay;
use auditrelay::http::HttpIngest;
use auditrelay_tests::webhooks::{ARCHIVE, SECRET, Served, now, serve, sign_hub, sign_v2};
use auditrelay_tests::{Home, files_under, leaked_form, logs, sample_envelope};
use serde_json::{Value, json};

/// A shop's webhook body: one order event.
fn order(n: usize) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "uid": format!("evt-{n}"), "kind": "OrderCancelled", "at": "2026-12-01T10:00:00Z",
        "user": {"id": format!("u-{n}")},
    }))
    .unwrap()
}

/// The `shop` source: v2 HMAC, mapped by json-map, beside the archive.
fn shop() -> String {
    [
        ARCHIVE,
        r#"
[ingest.webhook.shop]
auth = "hmac"
secret = "whsec-4f1c9a7be2d3-shared-with-the-shop"
[ingest.webhook.shop.mapper]
plugin = "json-map"
[ingest.webhook.shop.mapper.config]
fields = { id = "/uid", type = "/kind", time = "/at", "actor.id" = "/user/id" }
constants = { "action.outcome" = "success" }
values.type = { OrderCancelled = "order.cancelled" }
"#,
    ]
    .concat()
}

/// A v2-signed request to the `shop` source, signed at `at`.
async fn signed(served: &Served, body: Vec<u8>, at: i64) -> (u16, Value) {
    let ts = at.to_string();
    let signature = sign_v2(SECRET, &ts, &body);
    let headers = [
        ("x-webhook-timestamp", ts),
        ("x-webhook-signature", signature),
    ];
    served.source("shop", &headers, body).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_request_is_refused_naming_its_header_and_stores_nothing() {
    let logs = logs();
    let served = serve(&["file", "json-map"], &shop()).await;
    let body = order(1);
    let ts = now().to_string();
    let good = sign_v2(SECRET, &ts, &body);
    let with = |pairs: &[(&'static str, &str)]| -> Vec<(&'static str, String)> {
        pairs.iter().map(|(k, v)| (*k, v.to_string())).collect()
    };
    let stale = (now() - 301).to_string();
    // (what, headers, body, status, the reason's start)
    type Case<'a> = (&'a str, Vec<(&'a str, String)>, Vec<u8>, u16, &'a str);
    let cases: Vec<Case<'_>> = vec![
        (
            "missing headers",
            vec![],
            body.clone(),
            401,
            "x-webhook-signature and x-webhook-timestamp: missing",
        ),
        (
            "missing signature",
            with(&[("x-webhook-timestamp", &ts)]),
            body.clone(),
            401,
            "x-webhook-signature: missing",
        ),
        (
            "bad signature",
            with(&[
                ("x-webhook-timestamp", &ts),
                ("x-webhook-signature", &"0".repeat(64)),
            ]),
            body.clone(),
            401,
            "x-webhook-signature: does not match",
        ),
        (
            "wrong secret",
            with(&[
                ("x-webhook-timestamp", &ts),
                (
                    "x-webhook-signature",
                    &sign_v2("not-the-shops-secret-at-all", &ts, &body),
                ),
            ]),
            body.clone(),
            401,
            "x-webhook-signature: does not match",
        ),
        (
            "body changed after signing",
            with(&[("x-webhook-timestamp", &ts), ("x-webhook-signature", &good)]),
            order(2),
            401,
            "x-webhook-signature: does not match the body",
        ),
        (
            "stale timestamp",
            with(&[
                ("x-webhook-timestamp", &stale),
                ("x-webhook-signature", &sign_v2(SECRET, &stale, &body)),
            ]),
            body.clone(),
            401,
            "x-webhook-timestamp: signed 30",
        ),
        (
            "bearer token instead",
            with(&[("authorization", &format!("Bearer {SECRET}"))]),
            body.clone(),
            401,
            "x-webhook-signature and x-webhook-timestamp: missing",
        ),
    ];
    let mut answers = Vec::new();
    for (what, headers, body, status, reason) in cases {
        let (got, answer) = served.source("shop", &headers, body).await;
        assert_eq!(got, status, "{what}: {answer}");
        let error = answer["error"].as_str().unwrap_or_default();
        assert!(error.starts_with(reason), "{what}: {error}");
        assert_eq!(answer["accepted"], 0, "{what}");
        answers.push(answer.to_string());
    }
    assert!(
        served.stored().await.is_empty(),
        "a refused request stored something"
    );

    // The genuine request, then the same bytes replayed.
    let headers = with(&[("x-webhook-timestamp", &ts), ("x-webhook-signature", &good)]);
    let (status, answer) = served.source("shop", &headers, body.clone()).await;
    assert_eq!(
        (status, answer["accepted"].clone()),
        (202, json!(1)),
        "{answer}"
    );
    let (status, answer) = served.source("shop", &headers, body.clone()).await;
    assert_eq!(status, 409, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .starts_with("x-webhook-signature: this signature"),
        "{answer}"
    );
    answers.push(answer.to_string());
    // Sent again, signed afresh: accepted, stored once (the id dedups).
    let (status, answer) = signed(&served, body.clone(), ts.parse::<i64>().unwrap() - 2).await;
    assert_eq!(
        (status, answer["copies"].clone()),
        (202, json!(1)),
        "{answer}"
    );
    // No such source.
    let (status, answer) = served.source("nope", &headers, body.clone()).await;
    assert_eq!(status, 404, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("[ingest.webhook.<name>]")
    );

    let stored = served.stored().await;
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert_eq!(stored[0]["id"], "evt-1");
    assert_eq!(stored[0]["type"], "order.cancelled");
    assert_eq!(stored[0]["source"], "shop");

    // The secret is nowhere: answers, status, logs, files.
    let status = serde_json::to_string(&served.relay.status()).unwrap();
    let log_text: Vec<String> = logs.events().iter().map(Value::to_string).collect();
    let mut outputs = answers;
    outputs.push(status);
    outputs.extend(log_text);
    outputs.extend(
        files_under(served.home.path())
            .into_iter()
            .filter(|(p, _)| !p.ends_with("relay.toml"))
            .map(|(_, text)| text),
    );
    for text in &outputs {
        assert_eq!(
            leaked_form(text, SECRET),
            None,
            "the secret leaked: {}",
            &text[..text.len().min(300)]
        );
    }
    served.relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_cache_outlives_a_restart() {
    let home = Home::with_plugins(&["file", "json-map"]);
    let config = home.config(&shop());
    let body = order(7);
    let ts = now().to_string();
    let headers = [
        ("x-webhook-timestamp", ts.clone()),
        ("x-webhook-signature", sign_v2(SECRET, &ts, &body)),
    ];
    let client = reqwest::Client::new();
    let mut statuses = Vec::new();
    for _ in 0..2 {
        let relay = Relay::start(config.clone()).await.unwrap();
        let http = HttpIngest::bind(relay.clone(), &config).await.unwrap();
        let url = format!("http://{}/v1/sources/shop", http.local_addr().unwrap());
        let server = tokio::spawn(http.serve(std::future::pending()));
        let mut request = client.post(&url).body(body.clone());
        for (name, value) in &headers {
            request = request.header(*name, value);
        }
        statuses.push(request.send().await.unwrap().status().as_u16());
        server.abort();
        relay.shutdown().await;
    }
    assert_eq!(statuses, [202, 409]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_the_spool_could_not_take_is_accepted_when_retried_with_its_signature() {
    // `stuck` fails until then, so the spool stays full while the test
    // fills it and posts; long enough for a relay starting on a loaded
    // machine (3 s was not, in CI), short enough for the test to wait.
    let until = jiff::Timestamp::now() + Duration::from_secs(10);
    let shop = shop();
    let served = serve(
        &["file", "json-map", "faulty"],
        &format!(
            r#"{shop}
[relay]
max_event_bytes = "4KiB"
[spool]
segment_size = "64KiB"
max_size = "256KiB"
[plugins.stuck]
plugin = "faulty"
[plugins.stuck.config]
fault = "retryable"
fault_until = "{until}"
[plugins.stuck.retry]
initial_backoff = "10ms"
max_backoff = "50ms"
circuit_open_for = "200ms"
"#
        ),
    )
    .await;
    let mut filled = 0;
    while served.relay.emit(sample_envelope(filled)).is_ok() {
        filled += 1;
        assert!(filled < 10_000, "the spool never filled");
    }
    let body = order(9);
    let ts = now().to_string();
    let headers = vec![
        ("x-webhook-timestamp", ts.clone()),
        ("x-webhook-signature", sign_v2(SECRET, &ts, &body)),
    ];
    let (status, answer) = served.source("shop", &headers, body.clone()).await;
    assert_eq!(status, 503, "{answer}");
    assert_eq!(answer["accepted"], 0);
    // Once `stuck` recovers, the spool drains; the same request (same
    // signature) is then taken, not refused as a replay.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let answer = loop {
        let (status, answer) = served.source("shop", &headers, body.clone()).await;
        if status == 202 {
            break answer;
        }
        assert_eq!(status, 503, "{answer}");
        assert!(
            std::time::Instant::now() < deadline,
            "the spool never drained"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(answer["accepted"], 1);
    let stored = served.stored().await;
    assert_eq!(stored.iter().filter(|e| e["id"] == "evt-9").count(), 1);
    assert_eq!(stored.len(), filled + 1);
    served.relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_that_crashes_the_mapper_is_kept_with_its_reason_and_the_rest_flow() {
    let served = serve(
        &["file", "faulty-mapper"],
        &[
            ARCHIVE,
            r#"
[ingest.webhook.crm]
auth = "hub-signature"
secret = "whsec-4f1c9a7be2d3-shared-with-the-shop"
metadata_headers = ["x-crm-delivery"]
[ingest.webhook.crm.mapper]
plugin = "faulty-mapper"
[ingest.webhook.crm.mapper.limits]
timeout = "200ms"
memory = "16MiB"
"#,
        ]
        .concat(),
    )
    .await;
    let send = |n: usize, what: &str| {
        let body = format!(r#"{{"n":{n},"do":"{what}"}}"#).into_bytes();
        let headers = vec![
            ("x-hub-signature-256", sign_hub(SECRET, &body)),
            ("x-crm-delivery", format!("d-{n}")),
        ];
        (headers, body)
    };
    let mut accepted = 0;
    for (n, what) in [
        "ok", "panic", "ok", "loop", "two", "oom", "garbage", "refuse", "ok",
    ]
    .iter()
    .enumerate()
    {
        let (headers, body) = send(n, what);
        let (status, answer) = served.source("crm", &headers, body).await;
        assert_eq!(status, 202, "{what}: {answer}");
        accepted += answer["accepted"].as_u64().unwrap();
        let refused = answer["refused"].as_array().unwrap();
        match *what {
            "ok" | "two" => assert!(refused.is_empty(), "{what}: {answer}"),
            _ => {
                assert_eq!(refused.len(), 1, "{what}: {answer}");
                let reason = refused[0]["reason"].as_str().unwrap();
                let expected = match *what {
                    "panic" | "loop" | "oom" => {
                        "the mapper refused it: the mapper crashed on this record"
                    }
                    "garbage" => "mapped event 0 is not a valid envelope",
                    _ => "the mapper refused it: fixture refuses record 7",
                };
                assert!(reason.starts_with(expected), "{what}: {reason}");
            }
        }
    }
    assert_eq!(accepted, 5);
    let stored = served.stored().await;
    let ids: Vec<&str> = stored.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(
        ids,
        [
            "fixture-0",
            "fixture-2",
            "fixture-4-a",
            "fixture-4-b",
            "fixture-8"
        ]
    );
    // The refused records are kept, bytes, metadata and reason, synced.
    let (_, kept) = files_under(served.home.path())
        .into_iter()
        .find(|(path, _)| path.ends_with("sources/crm/refused.ndjson"))
        .expect("a refused-records file");
    let kept: Vec<Value> = kept
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let orders: Vec<&str> = kept.iter().map(|k| k["data"].as_str().unwrap()).collect();
    assert_eq!(
        orders,
        [
            r#"{"n":1,"do":"panic"}"#,
            r#"{"n":3,"do":"loop"}"#,
            r#"{"n":5,"do":"oom"}"#,
            r#"{"n":6,"do":"garbage"}"#,
            r#"{"n":7,"do":"refuse"}"#
        ]
    );
    assert_eq!(kept[0]["metadata"], json!([["x-crm-delivery", "d-1"]]));
    assert_eq!(kept[0]["source"], "crm");
    let source = served
        .relay
        .status()
        .sources
        .into_iter()
        .find(|s| s.name == "webhook.crm")
        .unwrap();
    assert_eq!(
        (source.state, source.refused_records, source.spooled_events),
        ("listening", 5, 5)
    );
    served.relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mapper_that_writes_its_secret_into_an_event_has_the_record_refused_and_masked() {
    const TOKEN: &str = "crm-api-token-9d8c7b6a5f4e";
    let served = serve(
        &["file", "faulty-mapper"],
        &format!(
            r#"{ARCHIVE}
[ingest.webhook.crm]
auth = "hub-signature"
secret = "{SECRET}"
[ingest.webhook.crm.mapper]
plugin = "faulty-mapper"
[ingest.webhook.crm.mapper.secrets]
token = "{TOKEN}"
"#
        ),
    )
    .await;
    let mut answers = Vec::new();
    for (n, what) in ["leak-event", "leak-invalid", "ok"].iter().enumerate() {
        let body = format!(r#"{{"n":{n},"do":"{what}"}}"#).into_bytes();
        let (status, answer) = served
            .source(
                "crm",
                &[("x-hub-signature-256", sign_hub(SECRET, &body))],
                body,
            )
            .await;
        assert_eq!(status, 202, "{answer}");
        answers.push(answer);
    }
    assert_eq!(
        answers[0]["refused"][0]["reason"],
        "mapped event 0 holds one of the mapper's secrets"
    );
    assert_eq!(
        answers[1]["refused"][0]["reason"],
        "mapped event 0 holds one of the mapper's secrets"
    );
    let stored = served.stored().await;
    assert_eq!(stored.len(), 1);
    let mut outputs: Vec<String> = answers.iter().map(Value::to_string).collect();
    outputs.extend(
        files_under(served.home.path())
            .into_iter()
            .filter(|(p, _)| !p.ends_with("relay.toml"))
            .map(|(_, t)| t),
    );
    for text in &outputs {
        assert_eq!(
            leaked_form(text, TOKEN),
            None,
            "{}",
            &text[..text.len().min(300)]
        );
    }
    served.relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_without_a_mapper_takes_envelopes_behind_a_bearer_token() {
    let served = serve(
        &["file"],
        &[
            ARCHIVE,
            r#"
[ingest.webhook.billing]
auth = "bearer"
secret = "whsec-4f1c9a7be2d3-shared-with-the-shop"
"#,
        ]
        .concat(),
    )
    .await;
    let mut events: Vec<_> = (0..3).map(sample_envelope).collect();
    for event in &mut events {
        event.source = "billing".into();
    }
    let body = serde_json::to_vec(&events).unwrap();
    let (status, answer) = served
        .source(
            "billing",
            &[("authorization", format!("Bearer {SECRET}x"))],
            body.clone(),
        )
        .await;
    assert_eq!(status, 401, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .starts_with("authorization: not the bearer token")
    );
    let (status, answer) = served
        .source(
            "billing",
            &[("authorization", format!("Bearer {SECRET}"))],
            body,
        )
        .await;
    assert_eq!(
        (status, answer["accepted"].clone()),
        (202, json!(3)),
        "{answer}"
    );
    assert_eq!(served.stored().await.len(), 3);
    // A sender holding this source's secret writes no other source's events.
    let mut other = sample_envelope(9);
    other.source = "identity-provider".into();
    let (status, answer) = served
        .source(
            "billing",
            &[("authorization", format!("Bearer {SECRET}"))],
            serde_json::to_vec(&other).unwrap(),
        )
        .await;
    assert_eq!(status, 422, "{answer}");
    assert_eq!(
        answer["rejected"][0]["errors"][0]["field"], "source",
        "{answer}"
    );
    assert_eq!(served.stored().await.len(), 3);
    served.relay.shutdown().await;
}

#[tokio::test]
async fn a_mapper_that_cannot_start_answers_503_with_the_reason_and_status_shows_it() {
    let served = serve(
        &["file", "json-map"],
        r#"
[plugins.archive]
plugin = "file"
grant_dir = "{home}/out"

[ingest.webhook.shop]
auth = "hub-signature"
secret = "whsec-4f1c9a7be2d3-shared-with-the-shop"
[ingest.webhook.shop.mapper]
plugin = "json-map"
[ingest.webhook.shop.mapper.config]
fields = { type = "kind" }
"#,
    )
    .await;
    let body = order(1);
    let (status, answer) = served
        .source(
            "shop",
            &[("x-hub-signature-256", sign_hub(SECRET, &body))],
            body,
        )
        .await;
    assert_eq!(status, 503, "{answer}");
    let error = answer["error"].as_str().unwrap();
    assert!(error.contains("ingest.webhook.shop.mapper"), "{error}");
    assert!(error.contains("config.fields.type"), "{error}");
    let source = served
        .relay
        .status()
        .sources
        .into_iter()
        .find(|s| s.name == "webhook.shop")
        .unwrap();
    assert_eq!(source.state, "failing");
    assert!(source.error.unwrap().contains("config.fields.type"));
    served.relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_servers_audit_webhook_lands_as_envelopes() {
    let served = serve(
        &["file", "k8s-audit"],
        &[
            ARCHIVE,
            r#"
[ingest.webhook.k8s]
auth = "bearer"
secret = "whsec-4f1c9a7be2d3-shared-with-the-shop"
[ingest.webhook.k8s.mapper]
plugin = "k8s-audit"
[ingest.webhook.k8s.mapper.config]
cluster = "prod-eu"
tenant_from_namespace = true
"#,
        ]
        .concat(),
    )
    .await;
    let sample = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../plugins/k8s-audit/tests/samples/webhook-eventlist.json");
    let body = std::fs::read(sample).unwrap();
    let bearer = [("authorization", format!("Bearer {SECRET}"))];
    let (status, answer) = served.source("k8s", &bearer, body.clone()).await;
    assert_eq!(
        (status, answer["accepted"].clone()),
        (202, json!(2)),
        "{answer}"
    );
    // The API server retries a batch it got no answer for: stored once.
    let (status, answer) = served.source("k8s", &bearer, body).await;
    assert_eq!(
        (status, answer["copies"].clone()),
        (202, json!(2)),
        "{answer}"
    );
    let stored = served.stored().await;
    let types: Vec<&str> = stored.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["k8s.pods.create", "k8s.configmaps.delete"]);
    assert_eq!(stored[1]["tenant"], "kube-system");
    assert!(stored.iter().all(|e| e["source"] == "k8s"));
    served.relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sender_waits_on_a_slow_mapper_no_longer_than_the_ack_timeout() {
    let served = serve(
        &["file", "faulty-mapper"],
        &[
            ARCHIVE,
            r#"
[ingest.http]
ack_timeout = "300ms"
[ingest.webhook.crm]
auth = "hub-signature"
secret = "whsec-4f1c9a7be2d3-shared-with-the-shop"
[ingest.webhook.crm.mapper]
plugin = "faulty-mapper"
[ingest.webhook.crm.mapper.limits]
timeout = "3s"
"#,
        ]
        .concat(),
    )
    .await;
    let body = br#"{"n":1,"do":"loop"}"#.to_vec();
    let (status, answer) = served
        .source(
            "crm",
            &[("x-hub-signature-256", sign_hub(SECRET, &body))],
            body,
        )
        .await;
    // Had it waited for the mapper's own 3 s deadline, the record would
    // have been refused and kept (202): 503 is the ack_timeout.
    assert_eq!(status, 503, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("ingest.http.ack_timeout"),
        "{answer}"
    );
    assert!(
        served.refused("crm").is_empty(),
        "nothing kept for a request not answered"
    );
    served.relay.shutdown().await;
}
