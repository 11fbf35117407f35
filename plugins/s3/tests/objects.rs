//! The objects a batch becomes: one per key prefix, named after the
//! batch's first event so a retry overwrites instead of duplicating, with
//! Content-MD5 and a SigV4 signature over the headers that matter.

use auditrelay_plugin_api::http::Response;
use auditrelay_plugin_api::testing::{Harness, sample_events};
use auditrelay_plugin_s3::S3Exporter;
use base64::Engine as _;
use md5::{Digest, Md5};

fn harness(status: u16) -> Harness<S3Exporter> {
    Harness::<S3Exporter>::builder()
        .config(serde_json::json!({
            "bucket": "audit",
            "region": "eu-west-1",
            "key_prefix": "audit/{tenant}/%Y/",
        }))
        .secret("aws_access_key_id", "AKIDEXAMPLE")
        .secret("aws_secret_access_key", "secret")
        .allowed_hosts(["audit.s3.eu-west-1.amazonaws.com"])
        .http(move |_| Ok(Response::new(status, "")))
        .init()
        .unwrap()
}

#[test]
fn a_retried_batch_writes_the_same_keys() {
    let events = sample_events(30); // three tenants
    let mut plugin = harness(200);
    plugin.deliver(&events).unwrap();
    plugin.deliver(&events).unwrap();
    let urls: Vec<String> = plugin.requests().iter().map(|r| r.url.clone()).collect();
    assert_eq!(urls.len(), 6, "one object per tenant, twice");
    assert_eq!(
        urls[..3],
        urls[3..],
        "the retry overwrites the same three keys"
    );
    let year = events[0].as_event().time().strftime("%Y").to_string();
    for (url, tenant) in urls[..3].iter().zip(["acme", "globex", "initech"]) {
        let prefix = format!("https://audit.s3.eu-west-1.amazonaws.com/audit/{tenant}/{year}/");
        assert!(url.starts_with(&prefix), "{url}");
        assert!(url.ends_with(".ndjson.gz"), "{url}");
    }
}

#[test]
fn every_put_carries_md5_and_a_signature_over_its_headers() {
    let mut plugin = harness(200);
    plugin.deliver(&sample_events(3)).unwrap();
    for request in plugin.requests() {
        let md5 = base64::engine::general_purpose::STANDARD.encode(Md5::digest(&request.body));
        assert_eq!(request.header_value("content-md5"), Some(md5.as_str()));
        assert_eq!(request.header_value("content-encoding"), Some("gzip"));
        assert_eq!(
            request.header_value("content-length"),
            None,
            "added by the transport"
        );
        let authorization = request.header_value("authorization").unwrap();
        assert!(
            authorization.starts_with("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/"),
            "{authorization}"
        );
        assert!(
            authorization.contains("/eu-west-1/s3/aws4_request"),
            "{authorization}"
        );
        assert!(
            authorization.contains(
                "SignedHeaders=content-encoding;content-md5;content-type;host;x-amz-content-sha256;x-amz-date,"
            ),
            "{authorization}"
        );
        assert!(!authorization.contains("secret"));
    }
}

#[test]
fn missing_credentials_and_bad_settings_are_refused_at_init() {
    let error = Harness::<S3Exporter>::builder()
        .config(serde_json::json!({"bucket": "audit"}))
        .init()
        .err()
        .unwrap();
    assert!(error.0.contains("aws_access_key_id"), "{error}");
    let error = Harness::<S3Exporter>::builder()
        .config(serde_json::json!({"bucket": "s3://audit/x"}))
        .secret("aws_access_key_id", "a")
        .secret("aws_secret_access_key", "b")
        .init()
        .err()
        .unwrap();
    assert!(error.0.contains("bucket"), "{error}");
    let error = Harness::<S3Exporter>::builder()
        .config(serde_json::json!({"bucket": "audit", "key_prefix": "/audit/{user}/"}))
        .secret("aws_access_key_id", "a")
        .secret("aws_secret_access_key", "b")
        .init()
        .err()
        .unwrap();
    assert!(error.0.contains("key_prefix"), "{error}");
}
