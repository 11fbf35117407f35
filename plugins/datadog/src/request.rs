//! Encoding events as Datadog log objects: reserved attributes
//! (`ddsource`, `ddtags`, `hostname`, `service`, `status`, `message`,
//! `timestamp`) and the whole envelope under `audit`, so it cannot collide
//! with them (the envelope's own `source` and `trace_id` would).

use std::io::Write;

use auditrelay_plugin_api::Event;
use auditrelay_plugin_api::envelope::{AuditEventEnvelope, FieldPaths};

use crate::config::DatadogConfig;

/// Datadog's limit for one log.
pub const MAX_LOG_BYTES: usize = 1_000_000;

/// Envelope paths every log needs, before the tag fields.
const CORE_PATHS: [&str; 6] = [
    "actor.id",
    "action.name",
    "action.outcome",
    "action.severity",
    "target.kind",
    "target.id",
];

/// Encodes events with one config's metadata.
#[derive(Debug, Clone)]
pub struct LogEncoder {
    /// `"ddsource":…,"hostname":…` pre-encoded, no leading comma.
    fixed: String,
    service: Option<String>,
    fixed_tags: String,
    tag_names: Vec<String>,
    paths: FieldPaths,
}

impl LogEncoder {
    /// An encoder for `config`; the error names a bad tag or path.
    pub fn new(config: &DatadogConfig) -> Result<LogEncoder, String> {
        let mut fixed = format!("\"ddsource\":{}", json_string(&config.ddsource));
        if let Some(hostname) = &config.hostname {
            fixed.push_str(&format!(",\"hostname\":{}", json_string(hostname)));
        }
        for tag in &config.tags {
            if !tag.contains(':') || tag.contains(',') {
                return Err(format!(
                    "tag {tag:?} in `tags` must be key:value without commas"
                ));
            }
        }
        let paths = FieldPaths::new(
            CORE_PATHS
                .iter()
                .copied()
                .chain(config.tag_fields.values().map(String::as_str)),
        )
        .map_err(|e| format!("`tag_fields`: {e}"))?;
        Ok(LogEncoder {
            fixed,
            service: config.service.as_deref().map(json_string),
            fixed_tags: config.tags.join(","),
            tag_names: config.tag_fields.keys().cloned().collect(),
            paths,
        })
    }

    /// Appends one log object for `event` to `out`. A log over Datadog's
    /// 1 MB has its `payload` cut down with a marker; the identity fields
    /// stay. `Err` when even that does not fit.
    pub fn encode(&self, event: &Event<'_>, out: &mut Vec<u8>) -> Result<(), String> {
        let start = out.len();
        self.encode_with(event, event.envelope, out);
        if out.len() - start <= MAX_LOG_BYTES {
            return Ok(());
        }
        out.truncate(start);
        let truncated = truncate_payload(event.envelope)?;
        self.encode_with(event, &truncated, out);
        if out.len() - start > MAX_LOG_BYTES {
            out.truncate(start);
            return Err(format!(
                "the event is over Datadog's 1 MB per log even with its payload truncated ({} bytes of envelope)",
                truncated.len()
            ));
        }
        Ok(())
    }

    fn encode_with(&self, event: &Event<'_>, envelope: &[u8], out: &mut Vec<u8>) {
        let event = Event { envelope, ..*event };
        let values = self
            .paths
            .extract_event(&event)
            .unwrap_or_else(|_| vec![None; self.paths.len()]);
        let text = |i: usize| values[i].as_deref().unwrap_or("");
        let (actor, action_name, outcome, severity) = (text(0), text(1), text(2), text(3));
        let action = if action_name.is_empty() {
            event.event_type
        } else {
            action_name
        };

        out.push(b'{');
        out.extend_from_slice(self.fixed.as_bytes());
        // Written straight into the request, escaped, without building
        // strings: this runs once per event inside the sandbox.
        out.extend_from_slice(b",\"ddtags\":\"");
        let mut first = self.fixed_tags.is_empty();
        write_escaped(out, &self.fixed_tags, false);
        for (name, value) in self.tag_names.iter().zip(&values[CORE_PATHS.len()..]) {
            let Some(value) = value else { continue };
            if !first {
                out.push(b',');
            }
            first = false;
            write_escaped(out, name, false);
            out.push(b':');
            // Commas and spaces would split or break a tag.
            write_escaped(out, value, true);
        }
        out.extend_from_slice(b"\",\"service\":");
        match &self.service {
            Some(service) => out.extend_from_slice(service.as_bytes()),
            None => write_json_string(out, event.source),
        }
        out.extend_from_slice(b",\"status\":\"");
        out.extend_from_slice(status(severity, outcome).as_bytes());
        out.extend_from_slice(b"\",\"message\":\"");
        write_escaped(out, actor, false);
        out.push(b' ');
        write_escaped(out, action, false);
        if let (kind, id) = (text(4), text(5))
            && !(kind.is_empty() && id.is_empty())
        {
            out.push(b' ');
            write_escaped(out, kind, false);
            out.push(b'/');
            write_escaped(out, id, false);
        }
        out.extend_from_slice(b": ");
        write_escaped(out, outcome, false);
        out.push(b'"');
        write!(
            out,
            ",\"timestamp\":{}",
            event.time_unix_nanos.div_euclid(1_000_000)
        )
        .expect("writing to a Vec");
        out.extend_from_slice(b",\"audit\":");
        out.extend_from_slice(envelope);
        out.push(b'}');
    }
}

/// The Datadog status for an envelope's severity, raised to at least
/// `warning` when the action failed or was denied.
pub fn status(severity: &str, outcome: &str) -> &'static str {
    let base = match severity {
        "critical" => "critical",
        "high" => "error",
        "medium" => "warning",
        "low" => "notice",
        _ => "info",
    };
    match (base, outcome) {
        ("info" | "notice", "failure" | "denied") => "warning",
        _ => base,
    }
}

/// The envelope with its `payload` replaced by a marker holding the start
/// of the original; everything that identifies the event is kept.
fn truncate_payload(envelope: &[u8]) -> Result<Vec<u8>, String> {
    let mut parsed: AuditEventEnvelope = serde_json::from_slice(envelope).map_err(|e| {
        format!("the event is over Datadog's 1 MB per log and cannot be parsed to truncate it: {e}")
    })?;
    let original = serde_json::to_string(&parsed.payload).unwrap_or_default();
    let keep: String = original.chars().take(4096).collect();
    parsed.payload = serde_json::Value::String(format!(
        "{keep}...[truncated by auditrelay: payload was {} bytes]",
        original.len()
    ));
    Ok(parsed.to_canonical_json())
}

/// Appends `value` as the inside of a JSON string; with `tag`, commas and
/// whitespace become `_`.
fn write_escaped(out: &mut Vec<u8>, value: &str, tag: bool) {
    for c in value.chars() {
        match c {
            ',' if tag => out.push(b'_'),
            c if tag && c.is_whitespace() => out.push(b'_'),
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            c if (c as u32) < 0x20 => write!(out, "\\u{:04x}", c as u32).expect("writing to a Vec"),
            c => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
}

fn write_json_string(out: &mut Vec<u8>, value: &str) {
    serde_json::to_writer(out, value).expect("a string always encodes");
}

fn json_string(value: &str) -> String {
    serde_json::to_string(value).expect("a string always encodes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_follows_severity_then_outcome() {
        assert_eq!(status("info", "success"), "info");
        assert_eq!(status("info", "denied"), "warning");
        assert_eq!(status("low", "failure"), "warning");
        assert_eq!(status("high", "success"), "error");
        assert_eq!(status("critical", "denied"), "critical");
    }
}
