//! AWS's published SigV4 test suite (copied into `tests/sigv4/`, Apache-2.0,
//! from awslabs/aws-c-auth): for every case, the canonical request, the
//! string to sign, the signature and the `Authorization` header must match
//! byte for byte. `"normalize": false` cases are S3's path rule.

use std::fs;
use std::path::Path;

use auditrelay_plugin_s3::sigv4::{self, Credentials, PathStyle, Scope, SigningRequest};
use serde_json::Value;

struct Case {
    method: String,
    path: String,
    query: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

/// Parses `request.txt`: request line, headers (continuation lines folded
/// into the previous value), blank line, body.
fn parse_request(text: &str) -> Case {
    let (head, body) = text.split_once("\n\n").unwrap_or((text, ""));
    let mut lines = head.lines();
    let request_line = lines.next().expect("request line");
    let (method, target) = request_line.split_once(' ').expect("method");
    let target = target.strip_suffix(" HTTP/1.1").expect("HTTP/1.1");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut headers: Vec<(String, String)> = Vec::new();
    for line in lines {
        if line.starts_with([' ', '\t']) {
            let last = headers
                .last_mut()
                .expect("a header before its continuation");
            last.1.push(' ');
            last.1.push_str(line.trim());
        } else {
            let (name, value) = line.split_once(':').expect("name:value");
            headers.push((name.to_owned(), value.to_owned()));
        }
    }
    Case {
        method: method.to_owned(),
        path: path.to_owned(),
        query: query.to_owned(),
        headers,
        body: body.as_bytes().to_vec(),
    }
}

fn read(dir: &Path, name: &str) -> String {
    fs::read_to_string(dir.join(name))
        .unwrap_or_else(|e| panic!("{}: {e}", dir.join(name).display()))
}

#[test]
fn every_published_header_case_matches() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sigv4");
    let mut checked = 0;
    for entry in fs::read_dir(&root).unwrap() {
        let dir = entry.unwrap().path();
        if !dir.is_dir() {
            continue;
        }
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let context: Value = serde_json::from_str(&read(&dir, "context.json")).unwrap();
        let mut case = parse_request(&read(&dir, "request.txt"));
        let time: jiff::Timestamp = context["timestamp"].as_str().unwrap().parse().unwrap();
        let amz_date = sigv4::amz_date(time);
        let credentials = Credentials {
            access_key_id: context["credentials"]["access_key_id"]
                .as_str()
                .unwrap()
                .into(),
            secret_access_key: context["credentials"]["secret_access_key"]
                .as_str()
                .unwrap()
                .into(),
            session_token: context["credentials"]["token"].as_str().map(str::to_owned),
        };
        case.headers.push(("X-Amz-Date".into(), amz_date.clone()));
        let omit_token = context["omit_session_token"].as_bool().unwrap_or(false);
        if let (Some(token), false) = (&credentials.session_token, omit_token) {
            case.headers
                .push(("X-Amz-Security-Token".into(), token.clone()));
        }
        let payload_sha256 = sigv4::sha256_hex(&case.body);
        if context["sign_body"].as_bool().unwrap() {
            case.headers
                .push(("X-Amz-Content-Sha256".into(), payload_sha256.clone()));
        }
        let style = if context["normalize"].as_bool().unwrap() {
            PathStyle::Normalized
        } else {
            PathStyle::S3
        };
        let signature = sigv4::sign(
            &SigningRequest {
                method: &case.method,
                path: &case.path,
                query: &case.query,
                headers: &case.headers,
                payload_sha256: &payload_sha256,
            },
            &Scope {
                region: context["region"].as_str().unwrap(),
                service: context["service"].as_str().unwrap(),
                amz_date: &amz_date,
            },
            &credentials,
            style,
        );
        assert_eq!(
            signature.canonical_request,
            read(&dir, "header-canonical-request.txt"),
            "{name}: canonical request"
        );
        assert_eq!(
            signature.string_to_sign,
            read(&dir, "header-string-to-sign.txt"),
            "{name}: string to sign"
        );
        assert_eq!(
            signature.signature,
            read(&dir, "header-signature.txt").trim(),
            "{name}: signature"
        );
        let signed_request = read(&dir, "header-signed-request.txt");
        assert!(
            signed_request.contains(&format!("Authorization:{}", signature.authorization)),
            "{name}: Authorization header\n{}\nnot in\n{signed_request}",
            signature.authorization
        );
        checked += 1;
    }
    assert_eq!(checked, 38, "every copied case was checked");
}
