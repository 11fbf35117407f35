//! Finding and talking to the relay a configuration describes.
//!
//! A running relay holds the lock on its spool; operator commands that
//! change state go through its HTTP API then, and work on the files
//! directly only when it is stopped.

use std::net::SocketAddr;

use anyhow::{Context, bail};

use crate::config::Config;

/// Whether a relay is running on this configuration's data directory.
pub fn is_running(config: &Config) -> bool {
    crate::spool::in_use(&config.relay.data_dir.spool())
}

/// Where a running relay says it listens: `<data_dir>/relay.json`, written
/// by `auditrelay run` (the config may say port 0, or 0.0.0.0).
pub fn address_file(config: &Config) -> std::path::PathBuf {
    config.relay.data_dir.address_file()
}

/// Records where this relay listens, for the operator commands.
pub fn record_address(config: &Config, addr: SocketAddr) {
    let info = serde_json::json!({ "pid": std::process::id(), "http": addr.to_string() });
    if let Err(error) = std::fs::write(address_file(config), info.to_string()) {
        tracing::warn!(%error, "cannot record the HTTP address for `auditrelay status` and `dlq`");
    }
}

/// A client for the running relay's HTTP API.
pub struct RelayApi {
    base: String,
    token: Option<String>,
    client: reqwest::Client,
}

impl RelayApi {
    /// The API of the relay `config` describes (its `ingest.http.listen`).
    pub fn new(config: &Config) -> anyhow::Result<Self> {
        let http = &config.ingest.http;
        if !http.enabled {
            bail!(
                "the relay runs with ingest.http.enabled = false, so it cannot be asked; stop it to work on its files"
            );
        }
        let recorded = std::fs::read(address_file(config))
            .ok()
            .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
            .and_then(|info| info["http"].as_str()?.parse::<SocketAddr>().ok());
        let mut addr: SocketAddr = recorded.unwrap_or(http.listen);
        if addr.ip().is_unspecified() {
            addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        Ok(RelayApi {
            base: format!("http://{addr}"),
            token: http.auth_token.as_ref().map(|t| t.expose().to_owned()),
            client: reqwest::Client::new(),
        })
    }

    /// A request to `path`, with the token when the config has one.
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let request = self.client.request(method, format!("{}{path}", self.base));
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// Where it listens (`http://<addr>`).
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Sends a request and returns the JSON answer, or the relay's error.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
    ) -> anyhow::Result<serde_json::Value> {
        let response = self
            .request(method, path)
            .send()
            .await
            .with_context(|| format!("cannot reach the running relay at {}", self.base))?;
        let status = response.status();
        let body: serde_json::Value = response.json().await.unwrap_or(serde_json::Value::Null);
        if !status.is_success() {
            let error = body["error"].as_str().unwrap_or("no details");
            bail!("the relay answered HTTP {status}: {error}");
        }
        Ok(body)
    }
}
