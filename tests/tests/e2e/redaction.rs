//! Secrets never reach the spool: an event full of them, in every
//! spelling and depth, sent over HTTP and through `Relay::emit`, leaves no
//! trace of any secret in any file the relay or its plugins wrote — spool
//! segments, dead letters, a plugin's output — nor in the relay's log.

use std::time::Duration;

use auditrelay::Relay;
use auditrelay::envelope::AuditEventEnvelope;
use auditrelay_tests::{Home, RelayProcess, files_under, free_port, leaked_form, sample_envelope};
use serde_json::json;

const SECRETS: &[&str] = &[
    "hunter2-Pa55w0rd",
    "sk_live_51HxQzK",
    "4111 1111 1111 1111",
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJlLXZhbHVl",
    "AKIAIOSFODNN7EXAMPLE",
    "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC",
    "GB29NWBK60161331926819",
    "tok-3f9a7c1e",
    "cookie-QWxhZGRpbjpvcGVu",
    "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
];

fn secret_event(i: usize) -> AuditEventEnvelope {
    let mut event = sample_envelope(i);
    event.payload = json!({
        "level1": {"Level2": [{"PASSWORD": SECRETS[0]}, {"nested": {"Api-Key": SECRETS[1]}}]},
        "notes": format!("paid with {} today", SECRETS[2]),
        "headers": {"Authorization": format!("Bearer {}", SECRETS[3]), "set-cookie": [format!("session={}", SECRETS[8])]},
        "log": format!("key {} in use; aws_secret_access_key={}", SECRETS[4], SECRETS[9]),
        "pem": format!("-----BEGIN RSA PRIVATE KEY-----\n{}\n-----END RSA PRIVATE KEY-----", SECRETS[5]),
        "deep": [[{"client_secret": {"value": SECRETS[7]}}], {"iban": SECRETS[6]}],
    });
    event
        .metadata
        .insert("X-Auth-Token".into(), SECRETS[7].into());
    event.reason = Some(format!("refund to card {}", SECRETS[2]));
    event
}

/// Every file under `dir` and the relay's log, searched for every secret
/// in every form `leaked_form` knows (plain, JSON-escaped, base64, hex...).
fn assert_no_secret(dir: &std::path::Path, log: &str) {
    let mut files = files_under(dir);
    files.push(("the relay's log".into(), log.to_owned()));
    assert!(files.len() > 3, "nothing was written: {files:?}");
    for (path, text) in &files {
        for secret in SECRETS {
            if let Some(form) = leaked_form(text, secret) {
                panic!("{} holds {secret:?} ({form})", path.display());
            }
        }
    }
}

fn tables() -> &'static str {
    // A file exporter that delivers, and one that refuses every batch, so
    // the events also sit in dead letters.
    "[plugins.file]\ngrant_dir = \"{home}/out\"\n[plugins.file.config]\nfsync = false\n\
     [plugins.file.batch]\nmax_wait = \"5ms\"\n\
     [plugins.refuser]\nplugin = \"faulty\"\n[plugins.refuser.config]\nfault = \"permanent\"\n\
     [plugins.refuser.batch]\nmax_wait = \"5ms\"\n"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_the_disk_a_plugin_or_the_log_over_http() {
    let home = Home::with_plugins(&["file", "faulty"]);
    let port = free_port();
    let config = home.config_file(&format!(
        "[ingest.http]\nlisten = \"127.0.0.1:{port}\"\n{}",
        tables()
    ));
    let mut relay = RelayProcess::start(&config, &[]);
    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}");
    // One event per request and a batch, as JSON and as NDJSON.
    let events: Vec<AuditEventEnvelope> = (0..20).map(secret_event).collect();
    let answer = client
        .post(format!("{url}/v1/events"))
        .json(&events[..10])
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 202, "{}", answer.text().await.unwrap());
    let ndjson: String = events[10..]
        .iter()
        .map(|e| String::from_utf8(e.to_canonical_json()).unwrap() + "\n")
        .collect();
    let answer = client
        .post(format!("{url}/v1/events"))
        .header("content-type", "application/x-ndjson")
        .body(ndjson)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 202, "{}", answer.text().await.unwrap());
    // Delivered to the file, refused into the other's dead letters.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let status = auditrelay_tests::status(&client, &url).await;
        let of = |name: &str| {
            status["plugins"]
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p["instance"] == name)
                .cloned()
                .unwrap()
        };
        if of("file")["delivered"] == 20 && of("refuser")["dead_letters"] == 20 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{status}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(relay.terminate(), "{}", relay.log());
    let out = std::fs::read_to_string(files_under(&home.join("out"))[0].0.clone()).unwrap();
    assert_eq!(out.lines().count(), 20);
    assert!(
        out.contains("auditrelay.redacted") && out.contains("[REDACTED]"),
        "{out}"
    );
    assert_no_secret(home.path(), &relay.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_the_disk_or_a_plugin_through_emit() {
    let home = Home::with_plugins(&["file", "faulty"]);
    let relay = Relay::start(home.config(tables())).await.unwrap();
    for i in 0..10 {
        relay.emit_durable(secret_event(i)).await.unwrap();
    }
    relay
        .emit_batch((10..20).map(secret_event).collect())
        .unwrap();
    assert!(relay.idle(Duration::from_secs(30)).await);
    assert_eq!(relay.status().plugin("refuser").unwrap().dead_letters, 20);
    relay.shutdown().await;
    assert_no_secret(home.path(), "");
}
