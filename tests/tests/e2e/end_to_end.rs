//! Events in through both doors, out through the sandboxed file plugin,
//! byte for byte.

use std::time::Duration;

use auditrelay::Relay;
use auditrelay::http::HttpIngest;
use auditrelay_tests::{Home, metric, ndjson_lines, sample_envelope};

const PER_DOOR: usize = 10_000;
const HTTP_BATCH: usize = 500;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_from_emit_and_http_arrive_exactly_as_emitted() {
    let home = Home::with_plugins(&["file"]);
    let config = home.config(
        r#"
[plugins.file]
grant_dir = "{home}/out"
[plugins.file.config]
fsync = false
rotate_bytes = "4MiB"
[plugins.file.batch]
max_events = 1000
max_wait = "20ms"
"#,
    );
    let relay = Relay::start(config.clone()).await.unwrap();
    let http = HttpIngest::bind(relay.clone(), &config).await.unwrap();
    let url = format!("http://{}/v1/events", http.local_addr().unwrap());
    let server = tokio::spawn(http.serve(std::future::pending()));

    let mut expected: Vec<Vec<u8>> = Vec::with_capacity(2 * PER_DOOR);
    for i in 0..PER_DOOR {
        let event = sample_envelope(i);
        expected.push(event.to_canonical_json());
        relay.emit(event).unwrap();
    }

    let client = reqwest::Client::new();
    for (n, first) in (PER_DOOR..2 * PER_DOOR).step_by(HTTP_BATCH).enumerate() {
        let events: Vec<_> = (first..first + HTTP_BATCH).map(sample_envelope).collect();
        expected.extend(events.iter().map(|e| e.to_canonical_json()));
        // Every other batch is pretty-printed: the relay stores canonical
        // JSON whatever the formatting it received.
        let body = if n % 2 == 0 {
            serde_json::to_vec(&events).unwrap()
        } else {
            serde_json::to_vec_pretty(&events).unwrap()
        };
        let response = client
            .post(&url)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 202);
        let answer: serde_json::Value = response.json().await.unwrap();
        assert_eq!(answer["accepted"], HTTP_BATCH);
    }

    assert!(
        relay.idle(Duration::from_secs(120)).await,
        "delivery did not finish"
    );
    let written = ndjson_lines(&home.join("out"));
    assert_eq!(written.len(), 2 * PER_DOOR);
    // Same bytes, same order: the spool's order is the order of arrival.
    for (i, (got, want)) in written.iter().zip(&expected).enumerate() {
        assert_eq!(got, want, "event {i} differs");
    }
    let files = std::fs::read_dir(home.join("out")).unwrap().count();
    assert!(
        files >= 3,
        "4 MiB rotation should have produced several files, got {files}"
    );

    let metrics = relay.metrics_text();
    assert_eq!(
        metric(
            &metrics,
            "auditrelay_plugin_delivered_events_total{plugin=\"file\"}"
        ),
        Some(20_000.0)
    );
    assert_eq!(
        metric(&metrics, "auditrelay_events_accepted_total{via=\"api\"}"),
        Some(10_000.0)
    );
    assert_eq!(
        metric(&metrics, "auditrelay_events_accepted_total{via=\"http\"}"),
        Some(10_000.0)
    );
    let status = relay.status();
    assert_eq!(status.plugins[0].delivered, 20_000);
    assert_eq!(status.spool_events, 0, "delivered events leave the spool");

    let report = relay.shutdown().await;
    assert!(report.undelivered.is_empty());
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_delivers_what_is_buffered() {
    let home = Home::with_plugins(&["file"]);
    // A long max_wait: without a graceful drain these would sit in a batch.
    let config = home.config(
        r#"
[plugins.file]
grant_dir = "{home}/out"
[plugins.file.batch]
max_events = 100000
max_wait = "1h"
"#,
    );
    let relay = Relay::start(config).await.unwrap();
    for i in 0..500 {
        relay.emit(sample_envelope(i)).unwrap();
    }
    let report = relay.shutdown().await;
    assert!(report.undelivered.is_empty(), "{report:?}");
    assert_eq!(ndjson_lines(&home.join("out")).len(), 500);
    // After shutdown the relay refuses new events instead of losing them.
    let err = relay.emit(sample_envelope(0)).unwrap_err();
    assert!(err.to_string().contains("shutting down"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_route_events_to_the_instances_that_want_them() {
    let home = Home::with_plugins(&["file"]);
    let config = home.config(
        r#"
[plugins.groups]
plugin = "file"
grant_dir = "{home}/groups"
[plugins.groups.filter]
types = ["group.*"]
[plugins.acme]
plugin = "file"
grant_dir = "{home}/acme"
[plugins.acme.filter]
tenants = ["acme"]
"#,
    );
    let relay = Relay::start(config).await.unwrap();
    let mut login = sample_envelope(0);
    login.event_type = "user.login".into();
    relay.emit(login).unwrap(); // tenant acme (sample 0), not a group event
    let mut other = sample_envelope(1); // tenant globex, group event
    other.event_type = "group.deleted".into();
    relay.emit(other).unwrap();
    assert!(relay.idle(Duration::from_secs(30)).await);
    relay.shutdown().await;
    let groups = ndjson_lines(&home.join("groups"));
    let acme = ndjson_lines(&home.join("acme"));
    assert_eq!(groups.len(), 1);
    assert!(String::from_utf8_lossy(&groups[0]).contains("group.deleted"));
    assert_eq!(acme.len(), 1);
    assert!(String::from_utf8_lossy(&acme[0]).contains("user.login"));
}
