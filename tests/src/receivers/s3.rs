//! `s3s-fs`, a real S3-compatible server that verifies SigV4, run as a
//! child process on 127.0.0.1, and a small signed client to read back
//! what a plugin wrote.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use auditrelay_plugin_s3::sigv4::{self, Credentials, PathStyle, Scope, SigningRequest};

/// The access key the server accepts.
pub const ACCESS_KEY: &str = "AKIDAUDITRELAYTEST";
/// The secret key the server accepts.
pub const SECRET_KEY: &str = "auditrelay/test/secret+key";

/// One object read back.
#[derive(Debug, Clone)]
pub struct S3Object {
    /// Its key.
    pub key: String,
    /// Body as stored.
    pub body: Vec<u8>,
    /// `Content-Type` as stored.
    pub content_type: Option<String>,
    /// `Content-Encoding` as stored.
    pub content_encoding: Option<String>,
    /// The `ETag`, unquoted (the MD5 of the body for a single PUT).
    pub etag: Option<String>,
}

/// A running `s3s-fs` with one bucket.
pub struct S3Server {
    /// `http://127.0.0.1:port`.
    pub endpoint: String,
    /// The bucket that exists.
    pub bucket: String,
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

/// Where `s3s-fs` is: `$S3S_FS`, then `PATH`, then `~/.cargo/bin`.
fn binary() -> PathBuf {
    if let Some(path) = std::env::var_os("S3S_FS") {
        return PathBuf::from(path);
    }
    let candidates = std::env::var_os("PATH")
        .map(|paths| {
            std::env::split_paths(&paths)
                .map(|p| p.join("s3s-fs"))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default()
        .into_iter()
        .chain(std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo/bin/s3s-fs")));
    candidates.into_iter().find(|p| p.exists()).unwrap_or_else(|| {
        panic!("s3s-fs is not installed: `cargo install s3s-fs --version 0.14.1 --features binary --locked` (.ci/run does)")
    })
}

impl S3Server {
    /// Starts `s3s-fs` on a free port with `bucket` created, storing under `dir`.
    pub fn start(dir: &Path, bucket: &str) -> Self {
        std::fs::create_dir_all(dir.join(bucket)).unwrap();
        let mut server = S3Server {
            endpoint: String::new(),
            bucket: bucket.to_owned(),
            port: crate::free_port(),
            dir: dir.to_owned(),
            child: None,
        };
        server.endpoint = format!("http://127.0.0.1:{}", server.port);
        server.resume();
        server
    }

    /// Stops the server (connections are refused until [`resume`](Self::resume)).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port and data.
    pub fn resume(&mut self) {
        let child = Command::new(binary())
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting s3s-fs");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "s3s-fs did not start listening");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Every object in the bucket, keys in order, read with signed GETs.
    pub async fn objects(&self) -> Vec<S3Object> {
        let mut keys = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut query = "list-type=2".to_owned();
            if let Some(t) = &token {
                query.push_str(&format!(
                    "&continuation-token={}",
                    sigv4::uri_encode(t, false)
                ));
            }
            let response = self.get(&format!("/{}", self.bucket), &query).await;
            assert_eq!(response.status(), 200, "ListObjectsV2 failed");
            let xml = response.text().await.unwrap();
            keys.extend(xml_values(&xml, "Key"));
            token = xml_values(&xml, "NextContinuationToken").into_iter().next();
            if token.is_none() {
                break;
            }
        }
        let mut objects = Vec::new();
        for key in keys {
            let response = self.get(&format!("/{}/{key}", self.bucket), "").await;
            assert_eq!(response.status(), 200, "GetObject {key} failed");
            let header = |name: &str| {
                response
                    .headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(|v| v.trim_matches('"').to_owned())
            };
            let (content_type, content_encoding, etag) = (
                header("content-type"),
                header("content-encoding"),
                header("etag"),
            );
            objects.push(S3Object {
                key,
                content_type,
                content_encoding,
                etag,
                body: response.bytes().await.unwrap().to_vec(),
            });
        }
        objects
    }

    async fn get(&self, path: &str, query: &str) -> reqwest::Response {
        let authority = self.endpoint.trim_start_matches("http://").to_owned();
        let amz_date = sigv4::amz_date(jiff::Timestamp::now());
        let headers = vec![
            ("host".to_owned(), authority),
            (
                "x-amz-content-sha256".to_owned(),
                sigv4::EMPTY_SHA256.to_owned(),
            ),
            ("x-amz-date".to_owned(), amz_date.clone()),
        ];
        let signature = sigv4::sign(
            &SigningRequest {
                method: "GET",
                path,
                query,
                headers: &headers,
                payload_sha256: sigv4::EMPTY_SHA256,
            },
            &Scope {
                region: "us-east-1",
                service: "s3",
                amz_date: &amz_date,
            },
            &Credentials {
                access_key_id: ACCESS_KEY.into(),
                secret_access_key: SECRET_KEY.into(),
                session_token: None,
            },
            PathStyle::S3,
        );
        let mut url = format!("{}{}", self.endpoint, sigv4::uri_encode(path, true));
        if !query.is_empty() {
            url.push('?');
            url.push_str(query);
        }
        reqwest::Client::new()
            .get(url)
            .header("x-amz-content-sha256", sigv4::EMPTY_SHA256)
            .header("x-amz-date", amz_date)
            .header("authorization", signature.authorization)
            .send()
            .await
            .expect("s3s-fs answers")
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
    }
}

fn xml_values(xml: &str, name: &str) -> Vec<String> {
    let (open, close) = (format!("<{name}>"), format!("</{name}>"));
    let mut values = Vec::new();
    let mut rest = xml;
    while let Some(start) = rest.find(&open) {
        let after = &rest[start + open.len()..];
        let Some(end) = after.find(&close) else { break };
        values.push(
            after[..end]
                .replace("&amp;", "&")
                .replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&quot;", "\"")
                .replace("&apos;", "'"),
        );
        rest = &after[end + close.len()..];
    }
    values
}
