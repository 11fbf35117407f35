//! What the webhook tests share: a relay in this process serving HTTP on
//! 127.0.0.1, requests signed as the schemes are documented (computed here,
//! not with the relay's code), and what the file exporter wrote.

use std::time::Duration;

use auditrelay::Relay;
use auditrelay::http::HttpIngest;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::{Home, files_under, ndjson_values};

/// The secret the tests' webhook sources share with their senders.
pub const SECRET: &str = "whsec-4f1c9a7be2d3-shared-with-the-shop";

/// A file exporter `archive` writing to `<home>/out` in small batches.
pub const ARCHIVE: &str = r#"
[plugins.archive]
plugin = "file"
grant_dir = "{home}/out"
[plugins.archive.config]
fsync = false
[plugins.archive.batch]
max_wait = "5ms"
"#;

/// The v2 signature: hex HMAC-SHA256 over `<timestamp>:<hex SHA-256 of
/// the body>`.
pub fn sign_v2(secret: &str, timestamp: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{timestamp}:{}", hex::encode(Sha256::digest(body))).as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// `X-Hub-Signature-256`'s value: `sha256=<hex HMAC-SHA256 of the body>`.
pub fn sign_hub(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Now, in Unix seconds.
pub fn now() -> i64 {
    jiff::Timestamp::now().as_second()
}

/// A relay with HTTP ingest served.
pub struct Served {
    /// The relay.
    pub relay: Relay,
    /// Its home (plugins, data, exporter output).
    pub home: Home,
    /// `http://<addr>`.
    pub base: String,
    /// Where it listens.
    pub addr: std::net::SocketAddr,
}

/// A relay of `tables` with `plugins`, serving HTTP.
pub async fn serve(plugins: &[&str], tables: &str) -> Served {
    let home = Home::with_plugins(plugins);
    let config = home.config(tables);
    let relay = Relay::start(config.clone()).await.unwrap();
    let http = HttpIngest::bind(relay.clone(), &config).await.unwrap();
    let addr = http.local_addr().unwrap();
    tokio::spawn(http.serve(std::future::pending()));
    Served {
        relay,
        home,
        base: format!("http://{addr}"),
        addr,
    }
}

impl Served {
    /// POSTs `body` (as JSON) to `path` with `headers` through `client`:
    /// the status and the answer (`null` when not JSON).
    pub async fn post_with(
        &self,
        client: &reqwest::Client,
        path: &str,
        headers: &[(&str, String)],
        body: Vec<u8>,
    ) -> Result<(u16, Value), reqwest::Error> {
        let mut request = client
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(body);
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        Ok((status, response.json().await.unwrap_or(Value::Null)))
    }

    /// [`post_with`](Self::post_with) a fresh client.
    pub async fn post(
        &self,
        path: &str,
        headers: &[(&str, String)],
        body: Vec<u8>,
    ) -> (u16, Value) {
        self.post_with(&reqwest::Client::new(), path, headers, body)
            .await
            .unwrap()
    }

    /// POSTs to the webhook source `name`.
    pub async fn source(
        &self,
        name: &str,
        headers: &[(&str, String)],
        body: Vec<u8>,
    ) -> (u16, Value) {
        self.post(&format!("/v1/sources/{name}"), headers, body)
            .await
    }

    /// The events the `archive` exporter wrote, once the relay is idle.
    pub async fn stored(&self) -> Vec<Value> {
        assert!(self.relay.idle(Duration::from_secs(30)).await);
        ndjson_values(&self.home.join("out"))
    }

    /// The records source `name` kept as refused: its `refused.ndjson`.
    pub fn refused(&self, name: &str) -> Vec<Value> {
        files_under(self.home.path())
            .into_iter()
            .find(|(path, _)| path.ends_with(format!("sources/{name}/refused.ndjson")))
            .map(|(_, text)| {
                text.lines()
                    .map(|l| serde_json::from_str(l).unwrap())
                    .collect()
            })
            .unwrap_or_default()
    }
}
