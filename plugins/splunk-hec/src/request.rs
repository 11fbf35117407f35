//! Encoding events as HEC event objects: `{"time":…,"event":{envelope},…}`,
//! concatenated without separators as `/services/collector/event` wants.

use std::io::Write;

use auditrelay_plugin_api::Event;
use auditrelay_plugin_api::envelope::FieldPaths;

use crate::config::HecConfig;

/// Encodes events with one config's metadata.
#[derive(Debug, Clone)]
pub struct EventEncoder {
    /// `"host":…,"index":…,"sourcetype":…` pre-encoded, with a leading comma.
    fixed: String,
    /// The `source` override, JSON-encoded.
    source: Option<String>,
    /// `"name":` per indexed field, pre-encoded.
    field_names: Vec<String>,
    field_paths: FieldPaths,
}

impl EventEncoder {
    /// An encoder for `config`; the error names a bad field path.
    pub fn new(config: &HecConfig) -> Result<EventEncoder, String> {
        let mut fixed = String::new();
        for (key, value) in [
            ("host", &config.host),
            ("index", &config.index),
            ("sourcetype", &Some(config.sourcetype.clone())),
        ] {
            if let Some(value) = value {
                fixed.push_str(&format!(",\"{key}\":{}", json_string(value)));
            }
        }
        let field_paths =
            FieldPaths::new(config.fields.values()).map_err(|e| format!("`fields`: {e}"))?;
        Ok(EventEncoder {
            fixed,
            source: config.source.as_deref().map(json_string),
            field_names: config
                .fields
                .keys()
                .map(|name| format!("{}:", json_string(name)))
                .collect(),
            field_paths,
        })
    }

    /// Appends one HEC event object for `event` to `out`.
    pub fn encode(&self, event: &Event<'_>, out: &mut Vec<u8>) {
        let nanos = event.time_unix_nanos;
        let seconds = nanos.div_euclid(1_000_000_000);
        let micros = nanos.rem_euclid(1_000_000_000) / 1000;
        write!(out, "{{\"time\":{seconds}.{micros:06}").expect("writing to a Vec");
        out.extend_from_slice(self.fixed.as_bytes());
        out.extend_from_slice(b",\"source\":");
        match &self.source {
            Some(source) => out.extend_from_slice(source.as_bytes()),
            None => write_json_string(out, event.source),
        }
        if !self.field_paths.is_empty() {
            // The envelope was validated by the relay; a parse failure here
            // only loses the indexed fields, never the event.
            let values = self
                .field_paths
                .extract_event(event)
                .unwrap_or_else(|_| vec![None; self.field_paths.len()]);
            let mut first = true;
            for (name, value) in self.field_names.iter().zip(values) {
                let Some(value) = value else { continue };
                out.extend_from_slice(if first { b",\"fields\":{" } else { b"," });
                first = false;
                out.extend_from_slice(name.as_bytes());
                write_json_string(out, &value);
            }
            if !first {
                out.push(b'}');
            }
        }
        out.extend_from_slice(b",\"event\":");
        out.extend_from_slice(event.envelope);
        out.push(b'}');
    }
}

fn write_json_string(out: &mut Vec<u8>, value: &str) {
    serde_json::to_writer(out, value).expect("a string always encodes");
}

fn json_string(value: &str) -> String {
    serde_json::to_string(value).expect("a string always encodes")
}
