//! The S3, Splunk HEC and Datadog exporters, each against a real receiver
//! on 127.0.0.1: s3s-fs (verifies SigV4) and strict HEC / Datadog intakes
//! (`auditrelay_tests::receivers`). For each: every event arrives intact,
//! batching limits hold, a retryable failure is retried until it passes, a
//! permanent one becomes dead letters with a message naming the setting to
//! fix, and a host missing from `allowed_hosts` fails clearly.

use std::collections::HashSet;
use std::io::Read;
use std::time::{Duration, Instant};

use auditrelay::Relay;
use auditrelay_tests::receivers::{Datadog, Refusal, S3Server, SplunkHec};
use auditrelay_tests::{Home, sample_envelope};
use md5::{Digest, Md5};
use serde_json::Value;

/// Starts a relay with one exporter instance `name` of `plugin`.
async fn start_relay(home: &Home, name: &str, plugin: &str, table: &str) -> Relay {
    let config = home.config(&format!(
        r#"
[plugins.{name}]
plugin = "{plugin}"
{table}
[plugins.{name}.batch]
max_events = 500
max_wait = "20ms"
[plugins.{name}.retry]
initial_backoff = "20ms"
max_backoff = "200ms"
circuit_open_for = "200ms"
"#
    ));
    Relay::start(config).await.expect("the relay starts")
}

/// Emits `count` sample events; their ids, in order.
fn emit(relay: &Relay, count: usize) -> Vec<String> {
    (0..count)
        .map(|i| {
            let event = sample_envelope(i);
            let id = event.id.clone();
            relay.emit(event).unwrap();
            id
        })
        .collect()
}

/// Waits until `instance` has delivered or dead-lettered `count` events.
async fn settle(relay: &Relay, instance: &str, count: u64) -> (u64, u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = relay.status();
        let plugin = status.plugin(instance).expect("the instance runs");
        if plugin.delivered + plugin.dead_letters >= count || Instant::now() > deadline {
            return (plugin.delivered, plugin.dead_letters);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The first dead letter's reason.
/// Runs instance `name` of `plugin` with `table` for 5 events, which must
/// all become dead letters; the first one's reason.
async fn refusal_reason(name: &str, plugin: &str, table: &str) -> String {
    let home = Home::with_plugins(&[plugin]);
    let relay = start_relay(&home, name, plugin, table).await;
    emit(&relay, 5);
    assert_eq!(settle(&relay, name, 5).await, (0, 5));
    let listing = relay.dead_letters(name).unwrap().list(0, 1).unwrap();
    relay.shutdown().await;
    listing.events[0]["reason"].as_str().unwrap().to_owned()
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut plain = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut plain)
        .unwrap();
    plain
}

fn s3_table(server: &S3Server, extra: &str) -> String {
    format!(
        r#"allowed_hosts = ["127.0.0.1:*"]
[plugins.s3.secrets]
aws_access_key_id = "{}"
aws_secret_access_key = "{}"
[plugins.s3.config]
bucket = "{}"
endpoint = "{}"
force_path_style = true
key_prefix = "audit/{{tenant}}/%Y/%m/%d/"
{extra}"#,
        auditrelay_tests::receivers::s3::ACCESS_KEY,
        auditrelay_tests::receivers::s3::SECRET_KEY,
        server.bucket,
        server.endpoint
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_objects_hold_every_event_with_keys_encoding_and_md5() {
    let home = Home::with_plugins(&["s3"]);
    let server = S3Server::start(&home.join("s3"), "audit-bucket");
    let relay = start_relay(&home, "s3", "s3", &s3_table(&server, "")).await;
    let ids = emit(&relay, 3000);
    assert_eq!(settle(&relay, "s3", 3000).await, (3000, 0));

    let objects = server.objects().await;
    assert!(!objects.is_empty());
    let mut arrived = Vec::new();
    for object in &objects {
        // audit/<tenant>/YYYY/MM/DD/<time>-<first id>.ndjson.gz
        let parts: Vec<&str> = object.key.split('/').collect();
        assert_eq!(parts.len(), 6, "{}", object.key);
        assert!(parts[5].ends_with(".ndjson.gz"), "{}", object.key);
        assert_eq!(object.content_type.as_deref(), Some("application/x-ndjson"));
        assert_eq!(object.content_encoding.as_deref(), Some("gzip"));
        let md5: String = Md5::digest(&object.body)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            object.etag.as_deref(),
            Some(md5.as_str()),
            "ETag is the body's MD5"
        );
        let plain = gunzip(&object.body);
        let lines_in_object = plain
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .count();
        assert!(
            lines_in_object <= 500,
            "an object holds one batch at most (max_events = 500)"
        );
        let lines: Vec<Value> = plain
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).unwrap())
            .collect();
        assert!(
            parts[5].contains(lines[0]["id"].as_str().unwrap()),
            "named after its first event"
        );
        for line in lines {
            assert_eq!(
                line["tenant"].as_str(),
                Some(parts[1]),
                "partitioned by tenant"
            );
            arrived.push(line["id"].as_str().unwrap().to_owned());
        }
    }
    let arrived_set: HashSet<_> = arrived.iter().cloned().collect();
    assert_eq!(arrived.len(), ids.len(), "no duplicates");
    assert_eq!(arrived_set, ids.into_iter().collect::<HashSet<_>>());
    relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_outage_is_retried_and_bad_settings_are_named() {
    let home = Home::with_plugins(&["s3"]);
    let mut server = S3Server::start(&home.join("s3"), "audit-bucket");
    server.stop();
    let relay = start_relay(&home, "s3", "s3", &s3_table(&server, "")).await;
    emit(&relay, 200);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let status = relay.status();
    let plugin = status.plugin("s3").unwrap();
    assert_eq!(plugin.delivered, 0);
    let error = plugin.last_error.clone().unwrap_or_default();
    assert!(
        error.contains("connection refused") && error.contains(&server.endpoint[7..]),
        "{error}"
    );
    server.resume();
    assert_eq!(settle(&relay, "s3", 200).await, (200, 0));
    relay.shutdown().await;

    // Wrong secret: SignatureDoesNotMatch, permanent, naming the secret.
    let table = s3_table(&server, "").replace(auditrelay_tests::receivers::s3::SECRET_KEY, "wrong");
    let reason = refusal_reason("s3", "s3", &table).await;
    assert!(
        reason.contains("SignatureDoesNotMatch") && reason.contains("aws_secret_access_key"),
        "{reason}"
    );

    // Unknown access key: permanent, naming the key's secret.
    let table =
        s3_table(&server, "").replace(auditrelay_tests::receivers::s3::ACCESS_KEY, "AKIDUNKNOWN");
    let reason = refusal_reason("s3", "s3", &table).await;
    assert!(
        reason.contains("HTTP 403") && reason.contains("aws_access_key_id"),
        "{reason}"
    );

    // Not in allowed_hosts: refused by the sandbox, permanent.
    let table = s3_table(&server, "").replace("[\"127.0.0.1:*\"]", "[\"s3.amazonaws.com\"]");
    assert!(
        refusal_reason("s3", "s3", &table)
            .await
            .contains("allowed_hosts")
    );
}

fn hec_table(hec: &SplunkHec, extra: &str) -> String {
    format!(
        r#"allowed_hosts = ["127.0.0.1:*"]
[plugins.hec.secrets]
hec_token = "hec-token-1"
[plugins.hec.config]
endpoint = "{}"
index = "audit"
ack_poll_interval = "20ms"
{extra}"#,
        hec.endpoint
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn splunk_hec_receives_every_event_acknowledged_within_size_limits() {
    let hec = SplunkHec::start("hec-token-1", &["audit"], true, 64 * 1024);
    let home = Home::with_plugins(&["splunk-hec"]);
    let relay = start_relay(
        &home,
        "hec",
        "splunk-hec",
        &hec_table(
            &hec,
            "acknowledgements = true\nmax_request_bytes = \"60KiB\"",
        ),
    )
    .await;
    let ids = emit(&relay, 3000);
    assert_eq!(settle(&relay, "hec", 3000).await, (3000, 0));
    let events = hec.events();
    assert_eq!(events.len(), 3000);
    for (event, id) in events.iter().zip(&ids) {
        let object = &event.object;
        assert!(
            event.request_bytes <= 60 * 1024,
            "a request of {} bytes",
            event.request_bytes
        );
        assert_eq!(
            object["event"]["id"].as_str(),
            Some(id.as_str()),
            "in order"
        );
        assert_eq!(object["index"], "audit");
        assert_eq!(object["sourcetype"], "auditrelay:audit");
        assert_eq!(object["source"], "access-api");
        let time: jiff::Timestamp = object["event"]["time"].as_str().unwrap().parse().unwrap();
        let seconds = object["time"].as_f64().unwrap();
        assert!((seconds - time.as_millisecond() as f64 / 1000.0).abs() < 0.001);
        assert_eq!(object["fields"]["tenant"], object["event"]["tenant"]);
        assert_eq!(object["fields"]["actor"], object["event"]["actor"]["id"]);
        assert_eq!(object["fields"]["action"], "group.member_added");
    }
    assert!(
        hec.requests() > 3000 * 600 / (60 * 1024),
        "split into several requests"
    );
    relay.shutdown().await;
}

/// The same exporter code built as a native library, in its runner
/// process, with the plugin API's native HTTP transport: the collector sees
/// the same events, acknowledged, within the same size limits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn splunk_hec_built_native_delivers_through_the_native_http_transport() {
    let hec = SplunkHec::start("hec-token-1", &["audit"], true, 64 * 1024);
    let home = Home::with_plugins(&[]);
    home.add_native_plugin("auditrelay_plugin_splunk_hec");
    let table = hec_table(
        &hec,
        "acknowledgements = true\nmax_request_bytes = \"60KiB\"",
    )
    // Native plugins are trusted code: allowed_hosts is the sandbox's.
    .replace("allowed_hosts = [\"127.0.0.1:*\"]\n", "");
    let relay = start_relay(&home, "hec", "splunk-hec", &table).await;
    let status = relay.status();
    let file = status.plugin("hec").unwrap().file.clone().unwrap();
    assert_eq!(file.extension().unwrap(), "so");
    let ids = emit(&relay, 1000);
    assert_eq!(settle(&relay, "hec", 1000).await, (1000, 0));
    let events = hec.events();
    let received: Vec<&str> = events
        .iter()
        .map(|e| e.object["event"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(received, ids, "every event once, in order");
    assert!(events.iter().all(|e| e.request_bytes <= 60 * 1024));
    relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn splunk_hec_retries_busy_and_unacknowledged_and_names_bad_settings() {
    // Busy (503 code 9, Retry-After) three times, then acks that come too late.
    let hec = SplunkHec::start("hec-token-1", &["audit"], true, 1_000_000);
    hec.refuse_next(
        3,
        Refusal {
            status: 503,
            body: r#"{"text":"Server is busy","code":9}"#.into(),
            retry_after: Some(0),
        },
    );
    hec.set_polls_before_ack(u32::MAX);
    let home = Home::with_plugins(&["splunk-hec"]);
    let relay = start_relay(
        &home,
        "hec",
        "splunk-hec",
        &hec_table(&hec, "acknowledgements = true\nack_timeout = \"200ms\""),
    )
    .await;
    let ids = emit(&relay, 100);
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        relay.status().plugin("hec").unwrap().delivered,
        0,
        "unacknowledged is not delivered"
    );
    assert!(
        relay
            .status()
            .plugin("hec")
            .unwrap()
            .last_error
            .as_deref()
            .unwrap_or("")
            .contains("acknowledge")
    );
    hec.set_polls_before_ack(1);
    assert_eq!(settle(&relay, "hec", 100).await, (100, 0));
    assert_eq!(hec.refused(), 3);
    let arrived: HashSet<String> = hec
        .events()
        .iter()
        .map(|e| e.object["event"]["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(arrived, ids.into_iter().collect());
    relay.shutdown().await;

    // Wrong token (403 code 4) and a forbidden index (400 code 7).
    for (table, expected) in [
        (
            hec_table(&hec, "").replace("hec-token-1", "wrong"),
            "hec_token",
        ),
        (
            hec_table(&hec, "").replace("index = \"audit\"", "index = \"main\""),
            "check `index`",
        ),
        (
            hec_table(&hec, "").replace("[\"127.0.0.1:*\"]", "[]"),
            "allowed_hosts",
        ),
    ] {
        let reason = refusal_reason("hec", "splunk-hec", &table).await;
        assert!(reason.contains(expected), "{reason}");
    }
}

fn datadog_table(intake: &Datadog, extra: &str) -> String {
    format!(
        r#"allowed_hosts = ["127.0.0.1:*"]
[plugins.dd.secrets]
datadog_api_key = "dd-key-1"
[plugins.dd.config]
endpoint = "{}"
tags = ["env:test"]
hostname = "relay-1"
{extra}"#,
        intake.url
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn datadog_receives_every_log_within_limits_and_splits_on_413() {
    // The intake takes at most 200 kB, the plugin sends up to 4.25 MB:
    // every large request is refused with 413 and split.
    let intake = Datadog::start("dd-key-1", 200_000);
    let home = Home::with_plugins(&["datadog"]);
    let config = home.config(&format!(
        r#"
[plugins.dd]
plugin = "datadog"
{}
[plugins.dd.batch]
max_events = 5000
max_wait = "200ms"
"#,
        datadog_table(&intake, "")
    ));
    let relay = Relay::start(config).await.unwrap();
    let ids = emit(&relay, 4000);
    assert_eq!(settle(&relay, "dd", 4000).await, (4000, 0));
    assert!(
        intake.too_large() > 0,
        "some requests were too large and split"
    );
    for (entries, bytes) in intake.requests() {
        assert!(
            entries <= 1000 && bytes <= 200_000,
            "{entries} entries, {bytes} bytes"
        );
    }
    let logs = intake.logs();
    let arrived: HashSet<String> = logs
        .iter()
        .map(|l| l["audit"]["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(logs.len(), 4000, "no duplicates");
    assert_eq!(arrived, ids.into_iter().collect());
    let log = &logs[0];
    assert_eq!(log["ddsource"], "auditrelay");
    assert_eq!(log["service"], "access-api");
    assert_eq!(log["hostname"], "relay-1");
    assert_eq!(log["status"], "info");
    let tenant = log["audit"]["tenant"].as_str().unwrap();
    assert_eq!(
        log["ddtags"],
        format!("env:test,action:group.member_added,outcome:success,tenant:{tenant}")
    );
    assert!(
        log["message"]
            .as_str()
            .unwrap()
            .contains("add_member group/")
    );
    relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn datadog_retries_unavailable_and_names_bad_keys() {
    let intake = Datadog::start("dd-key-1", 5_000_000);
    intake.refuse_next(
        2,
        Refusal {
            status: 503,
            body: "unavailable".into(),
            retry_after: None,
        },
    );
    intake.refuse_next(
        1,
        Refusal {
            status: 429,
            body: "slow down".into(),
            retry_after: Some(0),
        },
    );
    let home = Home::with_plugins(&["datadog"]);
    let relay = start_relay(&home, "dd", "datadog", &datadog_table(&intake, "")).await;
    emit(&relay, 300);
    assert_eq!(settle(&relay, "dd", 300).await, (300, 0));
    assert_eq!(intake.logs().len(), 300);
    relay.shutdown().await;

    for (table, expected) in [
        (
            datadog_table(&intake, "").replace("dd-key-1", "wrong"),
            "datadog_api_key",
        ),
        (
            datadog_table(&intake, "").replace("[\"127.0.0.1:*\"]", "[]"),
            "allowed_hosts",
        ),
    ] {
        let reason = refusal_reason("dd", "datadog", &table).await;
        assert!(reason.contains(expected), "{reason}");
    }
}
