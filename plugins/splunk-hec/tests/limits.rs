//! Requests stay within `max_request_bytes`; an event that alone is larger
//! is refused on its own; Splunk's answers keep their meaning.

use auditrelay_plugin_api::http::Response;
use auditrelay_plugin_api::testing::{Harness, sample_events};
use auditrelay_plugin_api::{DeliverError, Delivery};
use auditrelay_plugin_splunk_hec::HecExporter;

fn harness(max: &str, answer: fn() -> Response) -> Harness<HecExporter> {
    Harness::<HecExporter>::builder()
        .config(serde_json::json!({
            "endpoint": "https://hec.example.com:8088",
            "compression": "none",
            "max_request_bytes": max,
        }))
        .secret("hec_token", "t")
        .allowed_hosts(["hec.example.com:8088"])
        .http(move |_| Ok(answer()))
        .init()
        .unwrap()
}

fn success() -> Response {
    Response::new(200, r#"{"text":"Success","code":0}"#)
}

#[test]
fn requests_stay_within_max_request_bytes_and_an_oversized_event_is_refused_alone() {
    let mut plugin = harness("20KB", success);
    let mut events = sample_events(200);
    let mut big = events[0].clone();
    big.envelope.extend(std::iter::repeat_n(b' ', 25_000)); // JSON allows trailing space
    events.insert(50, big);
    match plugin.deliver(&events).unwrap() {
        Delivery::PartiallyRejected(rejected) => {
            assert_eq!(rejected.len(), 1);
            assert_eq!(rejected[0].index, 50);
            assert!(
                rejected[0].reason.contains("max_request_bytes"),
                "{}",
                rejected[0].reason
            );
        }
        other => panic!("expected the big event refused, got {other:?}"),
    }
    let requests = plugin.requests();
    assert!(requests.len() > 3);
    assert!(requests.iter().all(|r| r.body.len() <= 20_000));
    let sent: usize = requests
        .iter()
        .map(|r| {
            serde_json::Deserializer::from_slice(&r.body)
                .into_iter::<serde_json::Value>()
                .count()
        })
        .sum();
    assert_eq!(sent, 200);
}

#[test]
fn splunk_answers_keep_their_meaning() {
    let mut plugin = harness("1MB", || Response::new(413, "Content too large"));
    let error = plugin.deliver(&sample_events(1)).unwrap_err();
    assert!(!error.is_retryable());
    assert!(error.to_string().contains("max_request_bytes"), "{error}");

    let mut plugin = harness("1MB", || {
        Response::new(
            503,
            r#"{"text":"HEC is unhealthy, queues are full","code":18}"#,
        )
        .with_header("Retry-After", "5")
    });
    match plugin.deliver(&sample_events(1)).unwrap_err() {
        DeliverError::Retryable {
            retry_after,
            message,
        } => {
            assert_eq!(retry_after, Some(std::time::Duration::from_secs(5)));
            assert!(message.contains("queues are full"), "{message}");
        }
        other => panic!("expected retryable, got {other:?}"),
    }
}
