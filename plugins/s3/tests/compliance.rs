//! The S3 exporter through the exporter compliance suite
//! (`auditrelay_plugin_api::testing::compliance`), against a bucket that
//! answers PutObject as Amazon S3 documents it: `200` with an `ETag` for
//! an object it stores, and S3's XML errors (`<Error><Code>…`) otherwise.
//! A "request" of the suite is one PUT: an object of gzip NDJSON under
//! its tenant's key prefix. The answer table is the README's.
//!
//! The exact PUTs for `testing::fixed_events()` (one object per tenant)
//! are pinned in `tests/golden/put-objects.http`, signature and date left
//! out (the signer has its own vectors); `UPDATE_GOLDEN=1 cargo test`
//! rewrites it.

use auditrelay_plugin_api::http::{HttpError, Request, Response};
use auditrelay_plugin_api::testing::compliance::{Compliance, Expected, Golden};
use auditrelay_plugin_s3::S3Exporter;
use base64::Engine as _;
use md5::{Digest, Md5};
use serde_json::json;

const ACCESS_KEY_ID: &str = "AKIDCOMPLIANCE7Q2XW9";
const SECRET_ACCESS_KEY: &str = "s3-secret-9f8e7d6c5b4a/Zq+compliance";
const SESSION_TOKEN: &str = "session-token-3c2b1a0f-compliance";

/// S3's error body.
fn error(status: u16, code: &str, message: &str) -> Response {
    Response::new(
        status,
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{message}</Message><RequestId>4442587FB7D0A2F9</RequestId><HostId>Uuag1LuByRx9e6j5Onimru9pO4ZVKnJ2Qz7/C1NPcfTWAtRPfTaOFg==</HostId></Error>"
        ),
    )
    .with_header("content-type", "application/xml")
    .with_header("x-amz-request-id", "4442587FB7D0A2F9")
}

/// The bucket on a good day: it checks what S3 checks before storing an
/// object, and stores it.
fn bucket(request: &Request) -> Result<Response, HttpError> {
    let Some(authorization) = request.header_value("authorization") else {
        return Ok(error(403, "AccessDenied", "Access Denied"));
    };
    let Some(credential) = authorization.strip_prefix("AWS4-HMAC-SHA256 Credential=") else {
        return Ok(error(
            400,
            "AuthorizationHeaderMalformed",
            "The authorization header is malformed",
        ));
    };
    if !credential.starts_with(&format!("{ACCESS_KEY_ID}/")) {
        return Ok(error(
            403,
            "InvalidAccessKeyId",
            "The AWS Access Key Id you provided does not exist in our records.",
        ));
    }
    // Every x-amz-* header sent must be signed.
    let signed = authorization
        .split("SignedHeaders=")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .unwrap_or_default();
    for (name, _) in &request.headers {
        let name = name.to_ascii_lowercase();
        if name.starts_with("x-amz-") && !signed.split(';').any(|s| s == name) {
            return Ok(error(
                403,
                "AccessDenied",
                "There were headers present in the request which were not signed",
            ));
        }
    }
    let md5 = base64::engine::general_purpose::STANDARD.encode(Md5::digest(&request.body));
    if request.header_value("content-md5") != Some(md5.as_str()) {
        return Ok(error(
            400,
            "BadDigest",
            "The Content-MD5 you specified did not match what we received.",
        ));
    }
    let sha256 = auditrelay_plugin_s3::sigv4::sha256_hex(&request.body);
    if request.header_value("x-amz-content-sha256") != Some(sha256.as_str()) {
        return Ok(error(
            400,
            "XAmzContentSHA256Mismatch",
            "The provided 'x-amz-content-sha256' header does not match what was computed.",
        ));
    }
    if request.header_value("x-amz-security-token") != Some(SESSION_TOKEN) {
        return Ok(error(
            400,
            "InvalidToken",
            "The provided token is malformed or otherwise invalid.",
        ));
    }
    Ok(Response::new(200, "")
        .with_header("etag", format!("\"{}\"", hex_md5(&request.body)))
        .with_header("x-amz-request-id", "4442587FB7D0A2F9"))
}

fn hex_md5(body: &[u8]) -> String {
    Md5::digest(body)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn s3_complies() {
    // SignatureDoesNotMatch echoes the key id and the canonical request
    // (with the session token): none of it may reach the error.
    let signature_mismatch = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>SignatureDoesNotMatch</Code><Message>The request signature we calculated does not match the signature you provided. Check your key and signing method.</Message><AWSAccessKeyId>{ACCESS_KEY_ID}</AWSAccessKeyId><StringToSign>AWS4-HMAC-SHA256\n20261123T100000Z</StringToSign><CanonicalRequest>PUT\n/audit/x\n\nx-amz-security-token:{SESSION_TOKEN}\n</CanonicalRequest></Error>"
    );
    let credentials = "aws_secret_access_key";
    Compliance::<S3Exporter>::http(["audit-archive.s3.eu-west-1.amazonaws.com"])
        .config(json!({
            "bucket": "audit-archive",
            "region": "eu-west-1",
            "key_prefix": "audit/{tenant}/%Y/%m/%d/",
        }))
        .secret("aws_access_key_id", ACCESS_KEY_ID)
        .secret("aws_secret_access_key", SECRET_ACCESS_KEY)
        .secret("aws_session_token", SESSION_TOKEN)
        .secret_in_header("aws_access_key_id", "authorization")
        .secret_in_header("aws_session_token", "x-amz-security-token")
        .refuses_without_secret("aws_access_key_id")
        .refuses_without_secret("aws_secret_access_key")
        .refuses(json!({"bucket": null}), "bucket")
        .refuses(json!({"bucket": "s3://audit-archive/x"}), "bucket")
        .refuses(json!({"key_prefix": "/audit/"}), "key_prefix")
        .refuses(json!({"key_prefix": "audit/{user}/"}), "key_prefix")
        .refuses(json!({"endpoint": "ftp://minio.internal"}), "endpoint")
        .refuses(json!({"endpoint": "https://minio.internal/path"}), "endpoint")
        .refuses(
            json!({"compression": {"algorithm": "gzip", "level": 12}}),
            "compression",
        )
        .refuses(json!({"timeout": "soon"}), "timeout")
        .server(bucket)
        .events_in(|sent| sent.ids_at("/id"))
        .answer(Response::new(200, ""), Expected::Delivered)
        .answer(
            error(500, "InternalError", "We encountered an internal error. Please try again."),
            Expected::Retryable,
        )
        .answer(
            error(503, "SlowDown", "Please reduce your request rate."),
            Expected::Retryable,
        )
        .answer(
            error(503, "ServiceUnavailable", "Reduce your request rate."),
            Expected::Retryable,
        )
        .answer(
            error(
                400,
                "RequestTimeout",
                "Your socket connection to the server was not read from or written to within the timeout period.",
            ),
            Expected::Retryable,
        )
        .answer(
            error(400, "BadDigest", "The Content-MD5 you specified did not match what we received."),
            Expected::Retryable,
        )
        .answer(
            error(
                409,
                "OperationAborted",
                "A conflicting conditional operation is currently in progress against this resource. Please try again.",
            ),
            Expected::Retryable,
        )
        .answer(Response::new(408, ""), Expected::Retryable)
        .answer(Response::new(429, ""), Expected::Retryable)
        .answer(Response::new(502, "<html>Bad Gateway</html>"), Expected::Retryable)
        .answer(
            error(501, "NotImplemented", "A header you provided implies functionality that is not implemented."),
            Expected::Permanent,
        )
        .answer_naming(
            error(404, "NoSuchBucket", "The specified bucket does not exist"),
            Expected::Permanent,
            "`bucket`",
        )
        .answer_naming(Response::new(404, ""), Expected::Permanent, "`bucket`")
        .answer_naming(
            error(403, "InvalidAccessKeyId", "The AWS Access Key Id you provided does not exist in our records."),
            Expected::Permanent,
            credentials,
        )
        .answer_naming(
            Response::new(403, signature_mismatch).with_header("content-type", "application/xml"),
            Expected::Permanent,
            credentials,
        )
        .answer_naming(
            error(403, "NotSignedUp", "Your account is not signed up for the S3 service."),
            Expected::Permanent,
            credentials,
        )
        .answer_naming(
            error(400, "ExpiredToken", "The provided token has expired."),
            Expected::Permanent,
            "aws_session_token",
        )
        .answer_naming(Response::new(403, ""), Expected::Permanent, credentials)
        .answer_naming(
            error(403, "AccessDenied", "Access Denied"),
            Expected::Permanent,
            "s3:PutObject",
        )
        .answer_naming(
            error(
                400,
                "AuthorizationHeaderMalformed",
                "The authorization header is malformed; the region 'us-east-1' is wrong; expecting 'eu-west-1'",
            ),
            Expected::Permanent,
            "`region`",
        )
        .answer_naming(
            error(
                301,
                "PermanentRedirect",
                "The bucket you are attempting to access must be addressed using the specified endpoint.",
            ),
            Expected::Permanent,
            "`region`",
        )
        .answer_naming(Response::new(301, ""), Expected::Permanent, "`region`")
        .answer_naming(
            error(
                403,
                "RequestTimeTooSkewed",
                "The difference between the request time and the current time is too large.",
            ),
            Expected::Permanent,
            "clock",
        )
        .golden(
            Golden::new("tests/golden/put-objects.http")
                .config(json!({"compression": "none"}))
                .placeholder("authorization", "<signature>")
                .placeholder("x-amz-date", "<date>"),
        )
        .run();
}

// Bad days the suite's generic steps do not reach: what the bucket holds
// after an answer is lost and the relay retries, whole or in parts.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use auditrelay_plugin_api::http::HttpErrorKind;
use auditrelay_plugin_api::testing::compliance::{Sent, ids_at};
use auditrelay_plugin_api::testing::{Harness, sample_events};
use auditrelay_plugin_api::{DeliverError, Delivery, EventBuf};

/// Objects by URL; `lose` makes the PUT numbered so store the object and
/// then lose the answer (a timeout), as a dropped connection does.
#[derive(Default)]
struct Store {
    objects: BTreeMap<String, Vec<u8>>,
    puts: usize,
    lose: Option<usize>,
}

fn storing(store: Arc<Mutex<Store>>) -> Harness<S3Exporter> {
    Harness::<S3Exporter>::builder()
        .config(json!({
            "bucket": "audit-archive",
            "region": "eu-west-1",
            "key_prefix": "audit/{tenant}/%Y/%m/%d/",
        }))
        .secret("aws_access_key_id", ACCESS_KEY_ID)
        .secret("aws_secret_access_key", SECRET_ACCESS_KEY)
        .secret("aws_session_token", SESSION_TOKEN)
        .allowed_hosts(["audit-archive.s3.eu-west-1.amazonaws.com"])
        .http(move |request| {
            let answer = bucket(request)?;
            let mut store = store.lock().unwrap();
            let n = store.puts;
            store.puts += 1;
            if answer.status == 200 {
                let body = Sent::decode(request).unwrap().body().to_vec();
                store.objects.insert(request.url.clone(), body);
            }
            if store.lose == Some(n) {
                return Err(HttpError::new(
                    HttpErrorKind::Timeout,
                    "no answer within 60s",
                ));
            }
            Ok(answer)
        })
        .init()
        .unwrap()
}

/// How many copies of each event of `batch` the bucket holds.
fn copies(store: &Mutex<Store>, batch: &[EventBuf]) -> Vec<usize> {
    let store = store.lock().unwrap();
    let stored: Vec<String> = store
        .objects
        .values()
        .flat_map(|body| ids_at(body, "/id"))
        .collect();
    batch
        .iter()
        .map(|e| stored.iter().filter(|id| **id == e.id).count())
        .collect()
}

#[test]
fn a_batch_retried_after_a_lost_answer_is_stored_once() {
    let store = Arc::new(Mutex::new(Store {
        lose: Some(1),
        ..Store::default()
    }));
    let mut plugin = storing(store.clone());
    let batch = sample_events(30); // three tenants: three objects
    assert!(matches!(
        plugin.deliver(&batch),
        Err(DeliverError::Retryable { .. })
    ));
    assert_eq!(store.lock().unwrap().objects.len(), 2, "two objects stored");
    assert_eq!(plugin.deliver(&batch), Ok(Delivery::Accepted));
    assert_eq!(
        copies(&store, &batch),
        vec![1; 30],
        "overwritten, not added"
    );
    assert_eq!(store.lock().unwrap().objects.len(), 3);
}

#[test]
fn a_batch_retried_in_halves_after_a_lost_answer_loses_nothing() {
    // The relay's poison isolation retries a failing batch in parts: each
    // part's objects are named after its own first events, and an object
    // overwritten with fewer events leaves the rest to the later part.
    let store = Arc::new(Mutex::new(Store {
        lose: Some(2),
        ..Store::default()
    }));
    let mut plugin = storing(store.clone());
    let batch = sample_events(30);
    assert!(plugin.deliver(&batch).is_err());
    assert_eq!(plugin.deliver(&batch[..15]), Ok(Delivery::Accepted));
    assert_eq!(plugin.deliver(&batch[15..]), Ok(Delivery::Accepted));
    let copies = copies(&store, &batch);
    assert!(copies.iter().all(|&n| n >= 1), "none lost: {copies:?}");
    assert!(
        copies.iter().all(|&n| n == 1),
        "and none doubled, since each overwritten object kept exactly what the parts did not: {copies:?}"
    );
}
