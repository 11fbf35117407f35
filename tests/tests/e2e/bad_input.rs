//! Every bad input gets a clear error, and nothing already accepted is lost.

use std::time::Duration;

use auditrelay::http::HttpIngest;
use auditrelay::{EmitError, Relay};
use auditrelay_tests::{Home, ndjson_lines, ndjson_values, plugin_wasm, sample_envelope};

const TOKEN: &str = "0123456789abcdef-test-token";

struct Endpoint {
    url: String,
    client: reqwest::Client,
}

impl Endpoint {
    async fn post(
        &self,
        content_type: &str,
        token: Option<&str>,
        body: Vec<u8>,
    ) -> (u16, serde_json::Value) {
        let mut request = self
            .client
            .post(&self.url)
            .header("content-type", content_type)
            .body(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (
            status,
            response.json().await.unwrap_or(serde_json::Value::Null),
        )
    }

    async fn post_events(&self, events: &[serde_json::Value]) -> (u16, serde_json::Value) {
        self.post(
            "application/json",
            Some(TOKEN),
            serde_json::to_vec(events).unwrap(),
        )
        .await
    }
}

/// A relay whose file plugin writes to `<home>/out`, with HTTP ingest on a
/// free port behind [`TOKEN`].
async fn served(home: &Home) -> (Relay, Endpoint, std::net::SocketAddr) {
    let config = home.config(&format!(
        "[ingest.http]\nauth_token = \"{TOKEN}\"\n[plugins.file]\ngrant_dir = \"{{home}}/out\"\n"
    ));
    let relay = Relay::start(config.clone()).await.unwrap();
    let http = HttpIngest::bind(relay.clone(), &config).await.unwrap();
    let addr = http.local_addr().unwrap();
    tokio::spawn(http.serve(std::future::pending()));
    let endpoint = Endpoint {
        url: format!("http://{addr}/v1/events"),
        client: reqwest::Client::new(),
    };
    (relay, endpoint, addr)
}

/// The fields an answer's `errors` name, sorted.
fn fields_of(errors: &serde_json::Value) -> Vec<&str> {
    let mut fields: Vec<&str> = errors
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    fields.sort_unstable();
    fields
}

fn json(i: usize) -> serde_json::Value {
    serde_json::to_value(sample_envelope(i)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_refused_clearly_and_good_events_survive() {
    let home = Home::with_plugins(&["file"]);
    let config = home.config(&format!(
        r#"
[relay]
max_event_bytes = "4KiB"
[ingest.http]
auth_token = "{TOKEN}"
max_body_bytes = "64KiB"
[plugins.file]
grant_dir = "{{home}}/out"
"#
    ));
    let relay = Relay::start(config.clone()).await.unwrap();
    let http = HttpIngest::bind(relay.clone(), &config).await.unwrap();
    let endpoint = Endpoint {
        url: format!("http://{}/v1/events", http.local_addr().unwrap()),
        client: reqwest::Client::new(),
    };
    tokio::spawn(http.serve(std::future::pending()));
    let mut expected = Vec::new();

    // Good events first: they must survive everything that follows.
    let good: Vec<_> = (0..10).map(json).collect();
    let (status, body) = endpoint.post_events(&good).await;
    assert_eq!((status, body["accepted"].as_u64()), (202, Some(10)));
    expected.extend(good.iter().cloned());

    // Malformed JSON: refused as a whole, with the position.
    let (status, body) = endpoint
        .post(
            "application/json",
            Some(TOKEN),
            b"[{\"id\": \"x\",\n  oops}]".to_vec(),
        )
        .await;
    assert_eq!(status, 400);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .starts_with("malformed JSON at line 2 column 3"),
        "{body}"
    );

    // Missing and unknown fields: named per event; the valid ones are kept.
    let mut no_actor_id = json(10);
    no_actor_id["actor"].as_object_mut().unwrap().remove("id");
    let mut typo = json(11);
    typo["action"]["sevrity"] = "high".into();
    let mixed = vec![json(12), no_actor_id, json(13), typo];
    let (status, body) = endpoint.post_events(&mixed).await;
    assert_eq!(status, 422);
    assert_eq!(body["accepted"], 2);
    let rejected = body["rejected"].as_array().unwrap();
    assert_eq!(rejected[0]["index"], 1);
    assert_eq!(rejected[0]["errors"][0]["field"], "actor.id");
    assert_eq!(rejected[1]["index"], 3);
    assert_eq!(rejected[1]["errors"][0]["field"], "action.sevrity");
    assert!(
        rejected[1]["errors"][0]["problem"]
            .as_str()
            .unwrap()
            .contains("unknown field")
    );
    expected.push(mixed[0].clone());
    expected.push(mixed[2].clone());

    // An event over relay.max_event_bytes.
    let mut huge = json(14);
    huge["payload"] = serde_json::json!({"blob": "x".repeat(5000)});
    let (status, body) = endpoint.post_events(&[huge]).await;
    assert_eq!(status, 422);
    assert!(
        body["rejected"][0]["errors"][0]["problem"]
            .as_str()
            .unwrap()
            .contains("the limit is 4096"),
        "{body}"
    );

    // A body over ingest.http.max_body_bytes.
    let big: Vec<_> = (100..300).map(json).collect();
    let (status, body) = endpoint.post_events(&big).await;
    assert_eq!(status, 413);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("ingest.http.max_body_bytes"),
        "{body}"
    );

    // Wrong or missing token.
    let body_bytes = serde_json::to_vec(&[json(15)]).unwrap();
    let (status, body) = endpoint
        .post(
            "application/json",
            Some("wrong-token-wrong-token"),
            body_bytes.clone(),
        )
        .await;
    assert_eq!(status, 401);
    assert!(
        body["error"].as_str().unwrap().contains("bearer token"),
        "{body}"
    );
    let (status, _) = endpoint
        .post("application/json", None, body_bytes.clone())
        .await;
    assert_eq!(status, 401);

    // A content type the relay does not speak.
    let (status, body) = endpoint.post("text/plain", Some(TOKEN), body_bytes).await;
    assert_eq!(status, 415);
    assert!(
        body["error"].as_str().unwrap().contains("application/json"),
        "{body}"
    );

    // Nothing accepted was lost, nothing refused slipped through.
    assert!(relay.idle(Duration::from_secs(30)).await);
    relay.shutdown().await;
    let written = ndjson_values(&home.join("out"));
    assert_eq!(written, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emit_refuses_invalid_events_naming_the_field() {
    let home = Home::with_plugins(&["file"]);
    let relay = Relay::start(home.config(
        "[relay]\ninvalid_optional = \"refuse\"\n[plugins.file]\ngrant_dir = \"{home}/out\"\n",
    ))
    .await
    .unwrap();
    let mut bad = sample_envelope(0);
    bad.actor.email = Some("not-an-address".into());
    let err = relay.emit(bad.clone()).unwrap_err();
    assert!(
        err.to_string()
            .contains("actor.email: must be an email address"),
        "{err}"
    );

    // A batch is atomic: one bad event, nothing accepted.
    let err = relay.emit_batch(vec![sample_envelope(1), bad]).unwrap_err();
    assert!(
        matches!(err, EmitError::Invalid { index: Some(1), .. }),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .starts_with("event 1: invalid event: actor.email"),
        "{err}"
    );
    assert!(relay.idle(Duration::from_secs(10)).await);
    relay.shutdown().await;
    assert!(ndjson_lines(&home.join("out")).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_plugin_files_are_reported_by_name_and_the_rest_run() {
    let home = Home::with_plugins(&["file"]);
    let plugins = home.plugin_dir();
    std::fs::write(plugins.join("garbage.wasm"), b"this is not wasm at all").unwrap();
    let file_wasm = std::fs::read(plugin_wasm("file")).unwrap();
    std::fs::write(
        plugins.join("truncated.wasm"),
        &file_wasm[..file_wasm.len() / 2],
    )
    .unwrap();
    // The smallest valid core module: wasm, but not a component.
    std::fs::write(plugins.join("core.wasm"), b"\0asm\x01\0\0\0").unwrap();
    let config = home.config(
        r#"
[plugins.file]
grant_dir = "{home}/out"
[plugins.garbage]
path = "garbage.wasm"
[plugins.truncated]
path = "truncated.wasm"
[plugins.core]
path = "core.wasm"
"#,
    );
    let relay = Relay::start(config).await.unwrap();
    let status = relay.status();
    let error = |instance: &str| -> String {
        status
            .plugins
            .iter()
            .find(|p| p.instance == instance)
            .and_then(|p| p.error.clone())
            .unwrap_or_else(|| panic!("{instance} should have failed: {status:#?}"))
    };
    assert!(
        error("garbage").contains("garbage.wasm: is not a WebAssembly file"),
        "{}",
        error("garbage")
    );
    assert!(
        error("truncated").contains("truncated.wasm: is not a valid WebAssembly component"),
        "{}",
        error("truncated")
    );
    assert!(
        error("core").contains("core.wasm: is a core WebAssembly module, not a component"),
        "{}",
        error("core")
    );

    // The healthy plugin runs regardless.
    for i in 0..5 {
        relay.emit(sample_envelope(i)).unwrap();
    }
    assert!(relay.idle(Duration::from_secs(30)).await);
    relay.shutdown().await;
    assert_eq!(ndjson_lines(&home.join("out")).len(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_spool_refuses_new_events_instead_of_dropping_any() {
    let home = Home::with_plugins(&["file", "faulty"]);
    let config_until = |until: jiff::Timestamp| {
        home.config(&format!(
            r#"
[relay]
max_event_bytes = "4KiB"
[spool]
segment_size = "64KiB"
max_size = "256KiB"
[plugins.file]
grant_dir = "{{home}}/out"
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
        ))
    };
    // Compile the plugins once first: on a busy machine with a cold cache
    // that alone can outlast the fault window below.
    let warm = Relay::start(config_until(jiff::Timestamp::now()))
        .await
        .unwrap();
    warm.shutdown().await;
    drop(warm);
    // `stuck` keeps failing until later, so events pile up for it.
    let config = config_until(jiff::Timestamp::now() + Duration::from_secs(2));
    let relay = Relay::start(config.clone()).await.unwrap();
    let http = HttpIngest::bind(relay.clone(), &config).await.unwrap();
    let url = format!("http://{}/v1/events", http.local_addr().unwrap());
    tokio::spawn(http.serve(std::future::pending()));

    let mut accepted = 0;
    let (full, refused) = loop {
        let event = sample_envelope(accepted);
        match relay.emit(event.clone()) {
            Ok(_) => accepted += 1,
            Err(error) => break (error, event),
        }
        assert!(accepted < 10_000, "the spool never filled");
    };
    assert!(full.to_string().contains("raise spool.max_size"), "{full}");
    // The same event over HTTP (a smaller one might still fit: sizes vary
    // by a few bytes with the time's digits).
    let response = reqwest::Client::new()
        .post(&url)
        .json(&[refused])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "1");
    // A body of only invalid events is answered for its events, full
    // spool or not: retrying it would never help.
    let response = reqwest::Client::new()
        .post(&url)
        .json(&[serde_json::json!({"id": "not-an-envelope"})])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 422);
    let answer: serde_json::Value = response.json().await.unwrap();
    assert_eq!(answer["accepted"], 0);
    assert_eq!(answer["rejected"][0]["id"], "not-an-envelope");

    // Once the stuck plugin recovers, everything accepted is delivered.
    assert!(relay.idle(Duration::from_secs(30)).await);
    relay.shutdown().await;
    assert_eq!(ndjson_lines(&home.join("out")).len(), accepted);
    let status = relay.status();
    assert!(
        status
            .plugins
            .iter()
            .all(|p| p.delivered == accepted as u64),
        "{status:#?}"
    );
}

/// One input, one reading: every way the same bytes could mean different
/// events to different readers is refused over HTTP, naming the field,
/// while the good events beside them are kept byte for byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ambiguous_input_is_refused_naming_the_field_and_kept_events_read_one_way() {
    let home = Home::with_plugins(&["file"]);
    let (relay, endpoint, _) = served(&home).await;

    let text = |i: usize| serde_json::to_string(&json(i)).unwrap();
    let with = |i: usize, from: &str, to: &str| {
        let event = text(i);
        assert!(event.contains(from), "{from} in {event}");
        event.replacen(from, to, 1)
    };
    let cases: Vec<(String, &str, &str)> = vec![
        (
            with(1, "\"payload\":{", "\"payload\":{\"role\":\"admin\","),
            "payload.role",
            "appears twice",
        ),
        (
            with(2, "\"actor\":{", "\"actor\":{\"id\":\"u-0\","),
            "actor.id",
            "appears twice",
        ),
        (
            with(
                3,
                "\"payload\":{",
                "\"payload\":{\"n\":123456789012345678901234567890,",
            ),
            "payload.n",
            "beyond 64 bits",
        ),
        (
            with(4, "\"payload\":{", "\"payload\":{\"n\":1e-400,"),
            "payload.n",
            "too small",
        ),
        (
            with(5, "\"payload\":{", "\"payload\":{\"s\":\"\\ud800\","),
            "payload.s",
            "surrogate",
        ),
        (with(6, "Z\"", "+0000\""), "time", "±HH:MM"),
        (
            with(7, "\"id\":\"u-", "\"id\":\"u-\\u202e"),
            "actor.id",
            "bidirectional",
        ),
        (
            with(
                8,
                "\"payload\":{",
                &format!(
                    "\"payload\":{{\"deep\":{}1{},",
                    "[".repeat(150),
                    "]".repeat(150)
                ),
            ),
            "payload.deep",
            "deeper than 127",
        ),
    ];
    let body = cases
        .iter()
        .map(|(event, _, _)| event.as_str())
        .chain([text(0).as_str(), text(9).as_str()])
        .collect::<Vec<_>>()
        .join("\n");
    let (status, answer) = endpoint
        .post("application/x-ndjson", Some(TOKEN), body.into_bytes())
        .await;
    assert_eq!(
        (status, answer["accepted"].as_u64()),
        (422, Some(2)),
        "{answer}"
    );
    let rejected = answer["rejected"].as_array().unwrap();
    assert_eq!(rejected.len(), cases.len(), "{answer}");
    for ((_, field, says), rejection) in cases.iter().zip(rejected) {
        let error = &rejection["errors"][0];
        assert_eq!(error["field"], *field, "{rejection}");
        assert!(
            error["problem"].as_str().unwrap().contains(says),
            "{field}: {rejection}"
        );
    }

    // A CloudEvent carrying its id twice.
    let mut cloudevent = serde_json::to_string(&auditrelay::envelope::cloudevents::to_cloudevent(
        &sample_envelope(20),
    ))
    .unwrap();
    cloudevent = cloudevent.replacen("\"specversion\":", "\"id\":\"other\",\"specversion\":", 1);
    let (status, answer) = endpoint
        .post(
            "application/cloudevents+json",
            Some(TOKEN),
            cloudevent.into_bytes(),
        )
        .await;
    assert_eq!(status, 422, "{answer}");
    assert_eq!(
        answer["rejected"][0]["errors"][0]["field"], "id",
        "{answer}"
    );

    // Bodies that are not UTF-8 JSON say so.
    let mut bom = b"\xEF\xBB\xBF".to_vec();
    bom.extend_from_slice(text(21).as_bytes());
    let (status, answer) = endpoint.post("application/json", Some(TOKEN), bom).await;
    assert_eq!(status, 400);
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("byte order mark"),
        "{answer}"
    );
    let utf16: Vec<u8> = text(22).encode_utf16().flat_map(u16::to_le_bytes).collect();
    let (status, answer) = endpoint.post("application/json", Some(TOKEN), utf16).await;
    assert_eq!(status, 400);
    assert!(
        answer["error"].as_str().unwrap().contains("UTF-16"),
        "{answer}"
    );

    // The bearer scheme in another letter case is the same scheme.
    let repeated = text(23);
    let response = endpoint
        .client
        .post(&endpoint.url)
        .header("content-type", "application/json")
        .header("authorization", format!("bEaReR {TOKEN}"))
        .body(repeated.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);

    // The same (source, id) again: with the same content, a copy
    // (acknowledged, not spooled again); with other content, spooled,
    // counted and warned about.
    let other = repeated.replacen("on-call rotation", "another reason", 1);
    for body in [repeated.clone(), other.clone()] {
        let (status, _) = endpoint
            .post("application/json", Some(TOKEN), body.into_bytes())
            .await;
        assert_eq!(status, 202);
    }
    let metrics = relay.metrics_text();
    assert_eq!(
        auditrelay_tests::metric(
            &metrics,
            "auditrelay_duplicate_events_total{content=\"same\"}"
        ),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        auditrelay_tests::metric(
            &metrics,
            "auditrelay_duplicate_events_total{content=\"different\"}"
        ),
        Some(1.0),
        "{metrics}"
    );

    assert!(relay.idle(Duration::from_secs(30)).await);
    relay.shutdown().await;
    let written = ndjson_values(&home.join("out"));
    assert_eq!(
        written.len(),
        4,
        "the two good events, and the two versions of one id (its copy is not spooled)"
    );
    let repeated: serde_json::Value = serde_json::from_str(&repeated).unwrap();
    assert_eq!(written[2], repeated, "kept byte for byte, read one way");
    let other: serde_json::Value = serde_json::from_str(&other).unwrap();
    assert_eq!(written[3], other);
}

/// An event with five bad fields — of shape and of rules — gets all five
/// in one answer, each naming its field, so a client fixes it in one
/// round trip; the good event beside it is kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_with_five_bad_fields_gets_all_five_in_one_answer() {
    let home = Home::with_plugins(&["file"]);
    let (relay, endpoint, _) = served(&home).await;

    let mut bad = json(1);
    bad["type"] = 7.into(); // wrong type
    bad["time"] = "yesterday".into(); // not RFC 3339
    bad["actor"]["email"] = "not-an-address".into(); // a rule
    bad["action"]["outcome"] = "maybe".into(); // no such outcome
    bad["colour"] = "red".into(); // no such field
    let (status, answer) = endpoint.post_events(&[bad, json(2)]).await;
    assert_eq!(
        (status, answer["accepted"].as_u64()),
        (422, Some(1)),
        "{answer}"
    );
    assert_eq!(
        fields_of(&answer["rejected"][0]["errors"]),
        ["action.outcome", "actor.email", "colour", "time", "type"],
        "{answer}"
    );
    assert!(relay.idle(Duration::from_secs(10)).await);
    relay.shutdown().await;
    assert_eq!(ndjson_lines(&home.join("out")).len(), 1);
}

/// A CloudEvent in the HTTP binding's binary mode — attributes in `ce-*`
/// headers, the body its data, as the CloudEvents SDKs send by default
/// (headers written here to the binding's text, §3.1) — is accepted, and
/// a bad one is refused naming the header.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloudevents_binary_mode_is_accepted_and_its_headers_named() {
    let home = Home::with_plugins(&["file"]);
    let (relay, endpoint, _) = served(&home).await;
    let url = endpoint.url.clone();
    let client = reqwest::Client::new();
    let send = |id: &'static str, extra: Option<(&'static str, &'static str)>| {
        let mut request = client
            .post(&url)
            .bearer_auth(TOKEN)
            .header("content-type", "application/json; charset=utf-8")
            .header("ce-specversion", "1.0")
            .header("ce-id", id)
            .header("ce-source", "access-api")
            .header("ce-type", "group.member_added")
            .header("ce-time", "2026-11-22T10:15:00Z")
            .header("ce-tenant", "acme")
            .header("ce-subject", "group%2Fg-7%20(on-call)")
            .body(r#"{"actor":{"id":"u-42"},"action":{"outcome":"success"},"target":{"kind":"group","id":"g-7"}}"#);
        if let Some((name, value)) = extra {
            request = request.header(name, value);
        }
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            (status, response.json::<serde_json::Value>().await.unwrap())
        }
    };
    let (status, answer) = send("ce-1", None).await;
    assert_eq!(
        (status, answer["accepted"].as_u64()),
        (202, Some(1)),
        "{answer}"
    );
    let (status, answer) = send("ce-2", Some(("ce-datacontenttype", "application/json"))).await;
    assert_eq!(status, 422, "{answer}");
    assert_eq!(answer["rejected"][0]["id"], "ce-2", "{answer}");
    assert_eq!(
        answer["rejected"][0]["errors"][0]["field"], "ce-datacontenttype",
        "{answer}"
    );

    assert!(relay.idle(Duration::from_secs(10)).await);
    relay.shutdown().await;
    let delivered = ndjson_values(&home.join("out"));
    assert_eq!(delivered.len(), 1, "{delivered:?}");
    let event = &delivered[0];
    assert_eq!(event["id"], "ce-1");
    assert_eq!(event["tenant"], "acme");
    assert_eq!(event["actor"]["id"], "u-42");
    assert_eq!(event["metadata"]["ce_subject"], "group/g-7 (on-call)");
}

/// By default an event whose *optional* fields alone break rules — a test
/// client's `actor.ip = "testclient"`, an email without `@` — is kept
/// without them, each value and problem recorded in its metadata and
/// listed in the answer, so a fire-and-forget client loses nothing; one
/// that breaks a rule of a field saying which event it is (`tenant`) is
/// still refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_optional_fields_are_set_aside_and_the_event_kept() {
    let home = Home::with_plugins(&["file"]);
    let (relay, endpoint, addr) = served(&home).await;
    let metrics_url = format!("http://{addr}/metrics");

    let mut sloppy = json(1);
    sloppy["actor"]["ip"] = "testclient".into();
    sloppy["actor"]["email"] = "nobody".into();
    let sloppy_id = sloppy["id"].clone();
    let mut wrong_tenant = json(2);
    wrong_tenant["actor"]["ip"] = "testclient".into();
    wrong_tenant["tenant"] = "acme\u{202e}".into();
    let (status, answer) = endpoint.post_events(&[sloppy, wrong_tenant, json(3)]).await;
    assert_eq!(
        (status, answer["accepted"].as_u64()),
        (422, Some(2)),
        "{answer}"
    );
    assert_eq!(answer["rejected"][0]["index"], 1, "{answer}");
    let set_aside = &answer["set_aside"][0];
    assert_eq!(set_aside["index"], 0, "{answer}");
    assert_eq!(
        fields_of(&set_aside["errors"]),
        ["actor.email", "actor.ip"],
        "{answer}"
    );

    assert!(relay.idle(Duration::from_secs(10)).await);
    let metrics = reqwest::get(&metrics_url)
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("auditrelay_events_set_aside_total{via=\"http\"} 1"),
        "{metrics}"
    );
    relay.shutdown().await;
    let delivered = ndjson_values(&home.join("out"));
    assert_eq!(delivered.len(), 2, "{delivered:?}");
    let kept = delivered
        .iter()
        .find(|e| e["id"] == sloppy_id)
        .expect("the sloppy event is kept");
    assert!(kept["actor"].get("ip").is_none(), "{kept}");
    let record: serde_json::Value =
        serde_json::from_str(kept["metadata"]["auditrelay.invalid"].as_str().unwrap()).unwrap();
    let values: Vec<&str> = record
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["value"].as_str().unwrap())
        .collect();
    assert!(
        values.contains(&"testclient") && values.contains(&"nobody"),
        "{record}"
    );
}
