//! The exact requests this plugin sends for `testing::fixed_events()`,
//! checked into `tests/golden/` so any change to the wire format shows up
//! in review. `UPDATE_GOLDEN=1 cargo test` rewrites them.

use auditrelay_plugin_api::http::Response;
use auditrelay_plugin_api::testing::{Harness, assert_golden, fixed_events};
use auditrelay_plugin_splunk_hec::HecExporter;

#[test]
fn event_and_ack_requests_match_the_golden_files() {
    let mut harness = Harness::<HecExporter>::builder()
        .config(serde_json::json!({
            "endpoint": "https://hec.example.com:8088",
            "index": "audit",
            "host": "relay-1",
            "compression": "none",
            "acknowledgements": true,
        }))
        .secret("hec_token", "00000000-0000-0000-0000-000000000000")
        .allowed_hosts(["hec.example.com:8088"])
        .http(|request| {
            Ok(if request.url.contains("/ack") {
                Response::new(200, r#"{"acks":{"0":true}}"#)
            } else {
                Response::new(200, r#"{"text":"Success","code":0,"ackId":0}"#)
            })
        })
        .init()
        .unwrap();
    harness.deliver(&fixed_events()).unwrap();
    let requests = harness.requests();
    assert_eq!(requests.len(), 2, "one event request, one ack poll");
    let channel = requests[0]
        .header_value("x-splunk-request-channel")
        .unwrap()
        .to_owned();
    let mut text = String::new();
    for request in &requests {
        text.push_str(&format!(
            "{} {}\n",
            request.method.as_str(),
            request.url.replace(&channel, "<channel>")
        ));
        for (name, value) in &request.headers {
            text.push_str(&format!(
                "{name}: {}\n",
                value.replace(&channel, "<channel>")
            ));
        }
        text.push('\n');
        text.push_str(&String::from_utf8_lossy(&request.body));
        text.push_str("\n\n");
    }
    assert_golden(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/golden/event-and-ack.http"
        ),
        &text,
    );
}
