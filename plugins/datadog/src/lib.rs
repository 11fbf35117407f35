//! auditrelay exporter plugin: Datadog Logs.
//!
//! Batches go to `https://http-intake.logs.<site>/api/v2/logs` as JSON
//! arrays of log objects: at most 1000 logs and `max_request_bytes`
//! (4.25 MB) uncompressed per request (a log larger than that alone goes
//! alone), each log at most 1 MB (a larger one has its `payload`
//! truncated with a marker). A `413` splits the request in halves and
//! sends each. Every key is in the plugin's README.

pub mod config;
pub mod request;
pub mod response;

use std::ops::Range;

use auditrelay_plugin_api::http::Request;
use auditrelay_plugin_api::packing::{Encoded, split_by_limits};
use auditrelay_plugin_api::prelude::*;

use config::{DatadogConfig, SITES};
use request::LogEncoder;
use response::Failure;

/// Datadog's limit of logs per request.
pub const MAX_LOGS_PER_REQUEST: usize = 1000;
/// Datadog's limit of uncompressed bytes per request.
pub const MAX_REQUEST_BYTES: u64 = 5_000_000;

/// The exporter; see the crate docs.
pub struct DatadogExporter {
    config: DatadogConfig,
    encoder: LogEncoder,
    api_key: String,
    url: String,
}

impl Plugin for DatadogExporter {
    type Config = DatadogConfig;

    fn info() -> PluginInfo {
        PluginInfo::new(
            "datadog",
            env!("CARGO_PKG_VERSION"),
            "Sends events to Datadog Logs (HTTP intake v2)",
        )
        .key(ConfigKey::optional(
            "site",
            "`datadoghq.com`, `us3.datadoghq.com`, `us5.datadoghq.com`, `datadoghq.eu`, `ap1.datadoghq.com`, `ap2.datadoghq.com`, `ddog-gov.com`",
            "\"datadoghq.com\"",
        ))
        .key(ConfigKey::unset(
            "endpoint",
            "full intake URL (a proxy); unset: `https://http-intake.logs.<site>/api/v2/logs`",
        ))
        .key(ConfigKey::optional("ddsource", "`ddsource`", "\"auditrelay\""))
        .key(ConfigKey::unset("service", "`service`; unset: each event's `source`"))
        .key(ConfigKey::unset("hostname", "`hostname`; unset: left out"))
        .key(ConfigKey::optional("tags", "fixed `key:value` tags", "[]"))
        .key(ConfigKey::optional(
            "tag_fields",
            "tags from envelope fields: name = envelope path (commas and spaces in values become `_`)",
            "{ tenant = \"tenant\", action = \"type\", outcome = \"action.outcome\" }",
        ))
        .key(ConfigKey::optional(
            "compression",
            "`\"gzip\"` (level 1), `\"zstd\"`, `\"none\"`, or `{ algorithm = \"gzip\", level = 6 }`",
            "\"gzip\"",
        ))
        .key(ConfigKey::optional(
            "max_request_bytes",
            "largest uncompressed request (Datadog takes 5 MB)",
            "\"4.25MB\"",
        ))
        .key(ConfigKey::optional("timeout", "limit for each response", "\"30s\""))
    }

    fn init(config: DatadogConfig, _ctx: &InitContext) -> Result<Self, InitError> {
        if config.endpoint.is_none() && !SITES.contains(&config.site.as_str()) {
            return Err(InitError::new(format!(
                "site {:?} is not a Datadog site; use one of {} (or set `endpoint`)",
                config.site,
                SITES.join(", ")
            )));
        }
        if config.max_request_bytes.as_u64() > MAX_REQUEST_BYTES {
            return Err(InitError::new(format!(
                "max_request_bytes {} is over Datadog's 5 MB per request; lower it",
                config.max_request_bytes
            )));
        }
        let url = config.url();
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            return Err(InitError::new(format!(
                "endpoint {url:?} must be an http(s) URL"
            )));
        }
        Ok(DatadogExporter {
            api_key: settings::required_secret("datadog_api_key", "the Datadog API key")?,
            encoder: LogEncoder::new(&config).map_err(InitError::new)?,
            url,
            config,
        })
    }

    fn deliver(&mut self, events: &[Event<'_>]) -> Result<Delivery, DeliverError> {
        let mut logs = Encoded::with_capacity(
            events.iter().map(|e| e.envelope.len() + 300).sum(),
            events.len(),
        );
        // The batch position of log k (a rejected event has no log).
        let mut indexes = Vec::with_capacity(events.len());
        let mut rejected = Vec::new();
        for (i, event) in events.iter().enumerate() {
            match logs.try_push(|out| self.encoder.encode(event, out)) {
                Ok(()) => indexes.push(i as u32),
                Err(reason) => rejected.push(RejectedEvent {
                    index: i as u32,
                    reason,
                }),
            }
        }
        let sizes = logs.sizes();
        let max = self.config.max_request_bytes.as_u64() as usize;
        // One byte per log for the separating comma, two for the brackets.
        for run in split_by_limits(&sizes, max.saturating_sub(2), MAX_LOGS_PER_REQUEST, 1) {
            self.send(&logs, &indexes, run, &mut rejected)?;
        }
        // Refused by the encoder, then by the intake (413): one list in
        // batch order, as the plugin contract's other answers are.
        rejected.sort_unstable_by_key(|r| r.index);
        Ok(if rejected.is_empty() {
            Delivery::Accepted
        } else {
            Delivery::PartiallyRejected(rejected)
        })
    }
}

impl DatadogExporter {
    /// Sends `logs[run]`; on 413 sends each half, down to single logs,
    /// which are then rejected.
    fn send(
        &self,
        logs: &Encoded,
        indexes: &[u32],
        run: Range<usize>,
        rejected: &mut Vec<RejectedEvent>,
    ) -> Result<(), DeliverError> {
        let mut body = Vec::with_capacity(logs.span(run.clone()).len() + run.len() + 2);
        body.push(b'[');
        for k in run.clone() {
            if k > run.start {
                body.push(b',');
            }
            body.extend_from_slice(logs.get(k));
        }
        body.push(b']');
        let mut request = Request::post(self.url.clone())
            .header("dd-api-key", self.api_key.clone())
            .header("content-type", "application/json")
            .timeout(self.config.timeout);
        if let Some(encoding) = self.config.compression.content_encoding() {
            request = request.header("content-encoding", encoding);
        }
        let response = request
            .body(self.config.compression.compress(body))
            .send()?;
        if response.is_success() {
            return Ok(());
        }
        match response::classify(&response, &self.config.site) {
            Failure::TooLarge if run.len() > 1 => {
                host::warn(format!(
                    "Datadog refused a request of {} logs as too large (413); sending it in halves",
                    run.len()
                ));
                let middle = run.start + run.len() / 2;
                self.send(logs, indexes, run.start..middle, rejected)?;
                self.send(logs, indexes, middle..run.end, rejected)
            }
            Failure::TooLarge => {
                rejected.push(RejectedEvent {
                    index: indexes[run.start],
                    reason: "Datadog refused this log alone as too large (413)".to_owned(),
                });
                Ok(())
            }
            Failure::Error(error) => Err(error),
        }
    }
}

export_plugin!(DatadogExporter);
