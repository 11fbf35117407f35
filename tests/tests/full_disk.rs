//! A full disk: the relay runs with its spool on a 2 MiB tmpfs (in a
//! private mount namespace, `unshare`), while its destination is down.
//! When the disk fills it refuses new events clearly (HTTP 503 naming the
//! cause), keeps running, and once the destination is back and the spool
//! drains, everything it acknowledged is delivered.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use auditrelay_tests::{Home, Receiver, RelayProcess, free_port, sample_envelope, tally};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_is_refused_clearly_and_loses_nothing_acknowledged() {
    let receiver = Receiver::start().await;
    let home = Home::with_plugins(&["faulty"]);
    let data = home.join("tmpfs");
    std::fs::create_dir_all(&data).unwrap();
    let port = free_port();
    let recover_at = jiff::Timestamp::now() + Duration::from_secs(12);
    let config = home.config_file(&format!(
        r#"
[relay]
data_dir = {data:?}
max_buffered_bytes = "64KiB"
max_event_bytes = "16KiB"
[ingest.http]
listen = "127.0.0.1:{port}"
ack_timeout = "500ms"
[spool]
segment_size = "128KiB"
[plugins.sink]
plugin = "faulty"
allowed_hosts = ["127.0.0.1:{receiver_port}"]
[plugins.sink.config]
fault = "retryable"
fault_until = "{recover_at}"
url = "{url}"
[plugins.sink.retry]
initial_backoff = "50ms"
max_backoff = "200ms"
circuit_open_for = "200ms"
"#,
        receiver_port = receiver.addr.port(),
        url = receiver.url(),
    ));
    // The relay sees a 2 MiB filesystem at `data`; nothing else changes.
    let mount = format!("mount -t tmpfs -o size=2m tmpfs {data:?} && exec \"$0\" \"$@\"");
    let mut relay = RelayProcess::start(&config, &["unshare", "-rm", "sh", "-c", &mount]);

    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/v1/events");
    // Post until the relay refuses outright. On the way it first accepts
    // events it cannot confirm as durable (503 with "accepted": n).
    let mut acknowledged = HashSet::new();
    let mut unconfirmed = HashSet::new();
    let mut refusals = Vec::new();
    for batch in 0..2000 {
        let events: Vec<_> = (batch * 50..batch * 50 + 50).map(sample_envelope).collect();
        let response = client.post(&url).json(&events).send().await.unwrap();
        let status = response.status();
        let body: serde_json::Value = response.json().await.unwrap();
        match (status.as_u16(), body["accepted"].as_u64()) {
            (202, _) => acknowledged.extend(events.into_iter().map(|e| e.id)),
            (503, Some(0)) => {
                refusals.push(body["error"].as_str().unwrap().to_owned());
                break;
            }
            (503, Some(_)) => {
                if refusals.is_empty() {
                    // The first refusal: the relay says why, and keeps running.
                    let state: serde_json::Value = client
                        .get(format!("http://127.0.0.1:{port}/v1/status"))
                        .send()
                        .await
                        .unwrap()
                        .json()
                        .await
                        .unwrap();
                    assert!(
                        state["spool_write_error"]
                            .as_str()
                            .is_some_and(|e| e.contains("No space left on device")),
                        "{state}"
                    );
                }
                refusals.push(body["error"].as_str().unwrap().to_owned());
                unconfirmed.extend(events.into_iter().map(|e| e.id));
            }
            other => panic!("unexpected answer {other:?}: {body}"),
        }
    }
    let error = refusals
        .last()
        .expect("the 2 MiB disk never filled")
        .clone();
    assert!(
        refusals
            .iter()
            .all(|e| e.contains("No space left on device")),
        "every refusal should say the disk is full: {refusals:#?}"
    );
    assert!(error.contains("the spool cannot write to disk"), "{error}");
    assert!(
        relay.is_running(),
        "the relay died on a full disk:\n{}",
        relay.log()
    );
    assert!(
        relay.log().contains("the spool cannot write to disk"),
        "{}",
        relay.log()
    );

    // The destination comes back: the spool drains, the disk frees up, and
    // everything acknowledged arrives.
    let accepted: HashSet<String> = acknowledged.union(&unconfirmed).cloned().collect();
    let delivered = receiver
        .wait_for_all(&accepted, Duration::from_secs(90))
        .await;
    let result = tally(&acknowledged, &receiver.ids());
    let all = tally(&accepted, &receiver.ids());
    eprintln!(
        "full disk: {} events acknowledged durable before the disk filled, {} more accepted unconfirmed; \
         {} delivered, {} lost; last refusal: {error}",
        result.acknowledged,
        unconfirmed.len(),
        all.distinct,
        all.lost
    );
    assert!(delivered && all.lost == 0, "{all:?}\n{}", relay.log());
    // And it accepts again.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let response = client
            .post(&url)
            .json(&[sample_envelope(99_999)])
            .send()
            .await
            .unwrap();
        if response.status() == 202 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the relay never accepted again:\n{}",
            relay.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(relay.terminate(), "{}", relay.log());
}
