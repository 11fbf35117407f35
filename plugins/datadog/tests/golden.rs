//! The exact request this plugin sends for `testing::fixed_events()`,
//! checked into `tests/golden/` so any change to the wire format shows up
//! in review. `UPDATE_GOLDEN=1 cargo test` rewrites it.

use auditrelay_plugin_api::http::Response;
use auditrelay_plugin_api::testing::{Harness, assert_golden, fixed_events};
use auditrelay_plugin_datadog::DatadogExporter;

#[test]
fn the_request_matches_the_golden_file() {
    let mut harness = Harness::<DatadogExporter>::builder()
        .config(serde_json::json!({
            "site": "datadoghq.eu",
            "hostname": "relay-1",
            "tags": ["env:prod"],
            "compression": "none",
        }))
        .secret("datadog_api_key", "dd-api-key")
        .allowed_hosts(["http-intake.logs.datadoghq.eu"])
        .http(|_| Ok(Response::new(202, "{}")))
        .init()
        .unwrap();
    harness.deliver(&fixed_events()).unwrap();
    let requests = harness.requests();
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    let mut text = format!("{} {}\n", request.method.as_str(), request.url);
    for (name, value) in &request.headers {
        text.push_str(&format!("{name}: {value}\n"));
    }
    text.push('\n');
    text.push_str(&String::from_utf8_lossy(&request.body));
    text.push('\n');

    assert_golden(
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/request.http"),
        &text,
    );
}
