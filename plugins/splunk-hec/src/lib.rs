//! auditrelay exporter plugin: Splunk HTTP Event Collector.
//!
//! Batches go to `/services/collector/event` as concatenated HEC event
//! objects (the envelope is `event`, its time is `time`, chosen envelope
//! fields are indexed `fields`), split into requests of at most
//! `max_request_bytes`. With `acknowledgements`, success is reported only
//! once Splunk's indexers acknowledged every request of the batch. Every
//! key is in the plugin's README.

pub mod config;
pub mod request;
pub mod response;

use std::time::{Duration, Instant};

use auditrelay_plugin_api::http::Request;
use auditrelay_plugin_api::packing::{Encoded, split_by_limits};
use auditrelay_plugin_api::prelude::*;

use config::HecConfig;
use request::EventEncoder;

/// The exporter; see the crate docs.
pub struct HecExporter {
    config: HecConfig,
    encoder: EventEncoder,
    token: String,
    /// `X-Splunk-Request-Channel`: one per instance, as HEC expects.
    channel: String,
}

impl Plugin for HecExporter {
    type Config = HecConfig;

    fn info() -> PluginInfo {
        PluginInfo::new(
            "splunk-hec",
            env!("CARGO_PKG_VERSION"),
            "Sends events to Splunk's HTTP Event Collector, optionally waiting for indexer acknowledgement",
        )
        .key(ConfigKey::required(
            "endpoint",
            "`https://host:port` of the HEC, without `/services/collector`",
        ))
        .key(ConfigKey::unset("index", "HEC `index`; unset: the token's default index"))
        .key(ConfigKey::unset("source", "HEC `source`; unset: each event's `source`"))
        .key(ConfigKey::optional(
            "sourcetype",
            "HEC `sourcetype`",
            "\"auditrelay:audit\"",
        ))
        .key(ConfigKey::unset(
            "host",
            "HEC `host`; unset: Splunk's default (the sender's address)",
        ))
        .key(ConfigKey::optional(
            "fields",
            "indexed fields: name = envelope path; absent values are left out",
            "{ tenant = \"tenant\", actor = \"actor.id\", action = \"type\" }",
        ))
        .key(ConfigKey::optional(
            "compression",
            "`\"gzip\"` (level 1) or `\"none\"` (HEC does not take zstd)",
            "\"gzip\"",
        ))
        .key(ConfigKey::optional(
            "acknowledgements",
            "wait for indexer acknowledgement (the token must have it enabled)",
            "false",
        ))
        .key(ConfigKey::optional(
            "ack_timeout",
            "give up waiting and retry the batch; keep it below `limits.timeout` (30 s)",
            "\"20s\"",
        ))
        .key(ConfigKey::optional(
            "ack_poll_interval",
            "pause between polls of `/services/collector/ack`",
            "\"500ms\"",
        ))
        .key(ConfigKey::optional(
            "max_request_bytes",
            "largest uncompressed request; batches are split to fit (Splunk Cloud's cap is 1 MB)",
            "\"1MB\"",
        ))
        .key(ConfigKey::optional("timeout", "limit for each response", "\"30s\""))
    }

    fn init(config: HecConfig, _ctx: &InitContext) -> Result<Self, InitError> {
        let endpoint = config.endpoint.trim_end_matches('/');
        if !(endpoint.starts_with("https://") || endpoint.starts_with("http://"))
            || endpoint.contains("/services/")
        {
            return Err(InitError::new(format!(
                "endpoint {:?} must be https://host:port of the HEC, without /services/collector",
                config.endpoint
            )));
        }
        if config.compression.content_encoding() == Some("zstd") {
            return Err(InitError::new(
                "compression \"zstd\" is not accepted by Splunk HEC: use \"gzip\" or \"none\"",
            ));
        }
        let encoder = EventEncoder::new(&config).map_err(InitError::new)?;
        Ok(HecExporter {
            token: settings::required_secret("hec_token", "the HEC token")?,
            channel: uuid::Uuid::now_v7().to_string(),
            encoder,
            config,
        })
    }

    fn deliver(&mut self, events: &[Event<'_>]) -> Result<Delivery, DeliverError> {
        let mut encoded = Encoded::with_capacity(
            events.iter().map(|e| e.envelope.len() + 200).sum(),
            events.len(),
        );
        for event in events {
            encoded.push(|out| self.encoder.encode(event, out));
        }
        let sizes = encoded.sizes();
        let max = self.config.max_request_bytes.as_u64() as usize;
        let mut rejected = Vec::new();
        let mut ack_ids = Vec::new();
        for run in split_by_limits(&sizes, max, usize::MAX, 0) {
            if run.len() == 1 && sizes[run.start] > max {
                rejected.push(RejectedEvent {
                    index: run.start as u32,
                    reason: format!(
                        "the event is {} bytes as a HEC event, over max_request_bytes ({max}); raise it (and Splunk's max_content_length) to send it",
                        sizes[run.start]
                    ),
                });
                continue;
            }
            let body = encoded.span(run).to_vec();
            if let Some(ack_id) = self.post_events(body)? {
                ack_ids.push(ack_id);
            }
        }
        if self.config.acknowledgements {
            self.wait_for_acks(ack_ids)?;
        }
        Ok(if rejected.is_empty() {
            Delivery::Accepted
        } else {
            Delivery::PartiallyRejected(rejected)
        })
    }
}

impl HecExporter {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.config.endpoint.trim_end_matches('/'))
    }

    fn request(&self, url: String) -> Request {
        Request::post(url)
            .header("authorization", format!("Splunk {}", self.token))
            .header("x-splunk-request-channel", self.channel.clone())
            .header("content-type", "application/json")
            .timeout(self.config.timeout)
    }

    /// Sends one request of events; its ack id when acknowledgements are on.
    fn post_events(&self, body: Vec<u8>) -> Result<Option<u64>, DeliverError> {
        let mut request = self.request(self.url("/services/collector/event"));
        if let Some(encoding) = self.config.compression.content_encoding() {
            request = request.header("content-encoding", encoding);
        }
        let response = request
            .body(self.config.compression.compress(body))
            .send()?;
        if !response.is_success() {
            return Err(response::classify(&response));
        }
        let reply = response::success(&response)?;
        if self.config.acknowledgements && reply.ack_id.is_none() {
            return Err(DeliverError::permanent(
                "Splunk HEC sent no ackId although acknowledgements = true: enable indexer acknowledgement on the token, or set acknowledgements = false",
            ));
        }
        Ok(reply.ack_id)
    }

    /// Polls `/services/collector/ack` until every id is acknowledged, or
    /// fails retryably after `ack_timeout` (the batch is then sent again).
    fn wait_for_acks(&self, mut pending: Vec<u64>) -> Result<(), DeliverError> {
        let deadline = Instant::now() + self.config.ack_timeout;
        while !pending.is_empty() {
            let body = serde_json::to_vec(&serde_json::json!({ "acks": pending }))
                .expect("ids always encode");
            let url = self.url(&format!("/services/collector/ack?channel={}", self.channel));
            let response = self.request(url).body(body).send()?;
            if !response.is_success() {
                return Err(response::classify(&response));
            }
            let status: AckStatus = serde_json::from_slice(&response.body).map_err(|e| {
                DeliverError::retryable(format!("Splunk HEC ack reply is not JSON ({e})"))
            })?;
            pending.retain(|id| !status.acks.get(&id.to_string()).copied().unwrap_or(false));
            if pending.is_empty() {
                break;
            }
            if Instant::now() >= deadline {
                return Err(DeliverError::retryable(format!(
                    "Splunk indexers did not acknowledge {} request(s) within ack_timeout ({:?})",
                    pending.len(),
                    self.config.ack_timeout
                )));
            }
            std::thread::sleep(self.config.ack_poll_interval.min(Duration::from_secs(10)));
        }
        Ok(())
    }
}

/// `{"acks": {"0": true, "1": false}}`
#[derive(serde::Deserialize)]
struct AckStatus {
    acks: std::collections::HashMap<String, bool>,
}

export_plugin!(HecExporter);
