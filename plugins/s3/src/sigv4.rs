//! AWS Signature Version 4, header form.
//!
//! Written from the published algorithm and checked against AWS's SigV4
//! test suite (`tests/sigv4/`): canonical request, string to sign and
//! signature must all match byte for byte. S3 signs paths as given
//! ([`PathStyle::S3`]: no dot-segment removal); other services normalize
//! the path first ([`PathStyle::Normalized`]).

use auditrelay_plugin_api::http::percent_decode;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// The signing algorithm's name on the wire.
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// The SHA-256 of an empty payload, hex-encoded.
pub const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// Access keys. `Debug` never shows the secret parts.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The access key id (`AKIA...`), not secret.
    pub access_key_id: String,
    /// The secret access key.
    pub secret_access_key: String,
    /// A session token, for temporary credentials.
    pub session_token: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"***")
            .field("session_token", &self.session_token.as_ref().map(|_| "***"))
            .finish()
    }
}

/// How the path enters the canonical request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathStyle {
    /// S3: each segment URI-encoded once, the path kept as it is.
    S3,
    /// Every other service: dot segments and empty segments removed, then
    /// each segment URI-encoded.
    Normalized,
}

/// What gets signed.
#[derive(Debug, Clone)]
pub struct SigningRequest<'a> {
    /// `GET`, `PUT`, ...
    pub method: &'a str,
    /// The path, not percent-encoded (e.g. `/bucket/audit/a b.json`).
    pub path: &'a str,
    /// The query string as sent (percent-encoded), without `?`.
    pub query: &'a str,
    /// Every header that will be sent and signed, `host` included.
    pub headers: &'a [(String, String)],
    /// Hex SHA-256 of the payload (or `UNSIGNED-PAYLOAD`).
    pub payload_sha256: &'a str,
}

/// Where and when a signature is valid.
#[derive(Debug, Clone)]
pub struct Scope<'a> {
    /// The region, e.g. `us-east-1`.
    pub region: &'a str,
    /// The service, e.g. `s3`.
    pub service: &'a str,
    /// `YYYYMMDDTHHMMSSZ`, the value of `x-amz-date`.
    pub amz_date: &'a str,
}

impl Scope<'_> {
    fn date(&self) -> &str {
        &self.amz_date[..8]
    }

    fn credential_scope(&self) -> String {
        format!(
            "{}/{}/{}/aws4_request",
            self.date(),
            self.region,
            self.service
        )
    }
}

/// The intermediate results and the `Authorization` header value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    /// The canonical request (step 1).
    pub canonical_request: String,
    /// The string to sign (step 2).
    pub string_to_sign: String,
    /// The hex signature (step 3).
    pub signature: String,
    /// The `Authorization` header value.
    pub authorization: String,
}

/// Formats a time as `x-amz-date` wants it.
pub fn amz_date(time: jiff::Timestamp) -> String {
    time.strftime("%Y%m%dT%H%M%SZ").to_string()
}

/// Hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Signs `request` for `scope` with `credentials`.
pub fn sign(
    request: &SigningRequest<'_>,
    scope: &Scope<'_>,
    credentials: &Credentials,
    style: PathStyle,
) -> Signature {
    let (canonical_headers, signed_headers) = canonical_headers(request.headers);
    let canonical_request = format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        request.method,
        canonical_path(request.path, style),
        canonical_query(request.query),
        canonical_headers,
        signed_headers,
        request.payload_sha256,
    );
    let string_to_sign = format!(
        "{ALGORITHM}\n{}\n{}\n{}",
        scope.amz_date,
        scope.credential_scope(),
        sha256_hex(canonical_request.as_bytes()),
    );
    let key = signing_key(&credentials.secret_access_key, scope);
    let signature = hex(&hmac(&key, string_to_sign.as_bytes()));
    let authorization = format!(
        "{ALGORITHM} Credential={}/{}, SignedHeaders={signed_headers}, Signature={signature}",
        credentials.access_key_id,
        scope.credential_scope(),
    );
    Signature {
        canonical_request,
        string_to_sign,
        signature,
        authorization,
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters (and
/// `/` when `keep_slash`), as SigV4 requires.
pub fn uri_encode(text: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for &byte in text.as_bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(byte as char)
            }
            b'/' if keep_slash => out.push('/'),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

fn canonical_path(path: &str, style: PathStyle) -> String {
    if path.is_empty() {
        return "/".to_owned();
    }
    match style {
        PathStyle::S3 => uri_encode(path, true),
        PathStyle::Normalized => {
            let mut segments: Vec<&str> = Vec::new();
            for segment in path.split('/') {
                match segment {
                    "" | "." => {}
                    ".." => {
                        segments.pop();
                    }
                    s => segments.push(s),
                }
            }
            let trailing = path.ends_with('/') && !segments.is_empty();
            let mut out = String::from("/");
            let encoded: Vec<String> = segments.iter().map(|s| uri_encode(s, false)).collect();
            out.push_str(&encoded.join("/"));
            if trailing {
                out.push('/');
            }
            out
        }
    }
}

fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (
                uri_encode(&percent_decode(key), false),
                uri_encode(&percent_decode(value), false),
            )
        })
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// Lower-cased names, sorted; values trimmed with inner runs of spaces
/// collapsed; repeated headers joined with `,`.
fn canonical_headers(headers: &[(String, String)]) -> (String, String) {
    let mut merged: Vec<(String, String)> = Vec::new();
    let mut sorted: Vec<(String, String)> = headers
        .iter()
        .map(|(n, v)| (n.to_ascii_lowercase(), collapse_spaces(v)))
        .collect();
    // Stable: repeated headers keep their order.
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, value) in sorted {
        match merged.last_mut() {
            Some((last, joined)) if *last == name => {
                joined.push(',');
                joined.push_str(&value);
            }
            _ => merged.push((name, value)),
        }
    }
    let canonical = merged.iter().map(|(n, v)| format!("{n}:{v}\n")).collect();
    let signed = merged
        .iter()
        .map(|(n, _)| n.as_str())
        .collect::<Vec<_>>()
        .join(";");
    (canonical, signed)
}

fn collapse_spaces(value: &str) -> String {
    value.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn signing_key(secret: &str, scope: &Scope<'_>) -> Vec<u8> {
    let date = hmac(format!("AWS4{secret}").as_bytes(), scope.date().as_bytes());
    let region = hmac(&date, scope.region.as_bytes());
    let service = hmac(&region, scope.service.as_bytes());
    hmac(&service, b"aws4_request")
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
