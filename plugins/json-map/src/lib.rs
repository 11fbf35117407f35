//! `json-map`: maps JSON records from any system to audit envelopes through
//! a field map written in the relay's TOML: JSON pointers into the record
//! for each envelope field, constants for what the record lacks, value maps
//! (`UserSignedIn` → `user.login`) and a type allowlist.
//!
//! ```toml
//! [ingest.webhook.shop.mapper]
//! plugin = "json-map"
//!
//! [ingest.webhook.shop.mapper.config]
//! types = ["user.*", "order.cancelled"]
//! fields = { id = "/uid", type = "/kind", time = "/at", "actor.id" = "/user/id", payload = "/details" }
//! constants = { "action.outcome" = "success" }
//! values.type = { UserSignedIn = "user.login", OrderCancelled = "order.cancelled" }
//! ```
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `fields` | `{}` | Envelope field (`type`, `actor.id`, `metadata.<key>`, ...) → JSON pointer (RFC 6901) into the record (`""` is the whole record), or `@<name>`: the record's metadata `<name>` (a webhook's `metadata_headers`, e.g. `type = "@x-github-event"`). |
//! | `constants` | `{}` | Envelope field → value, for fields the record lacks (or `fields` finds empty). |
//! | `values` | `{}` | Envelope field → (record value → envelope value). |
//! | `unmatched` | `"keep"` | A value missing from its `values` map: `keep` it, `drop` the record, or `refuse` it. |
//! | `types` | `[]` | Keep only these mapped types (trailing `*`: any suffix); empty keeps all. Others are dropped. |
//! | `records` | unset | JSON pointer to an array whose elements are the events; unset: the record is one event. |
//! | `time_format` | `"rfc3339"` | `rfc3339`, `unix_seconds` or `unix_millis`. |
//!
//! `source` is always the relay source's name: a source writes only its
//! own (the relay refuses an event that claims another). An `id` that is a
//! number is written as text; one that is not an envelope id (printable
//! ASCII, at most 128 bytes) becomes `sha256:<hex of it>`, so that a
//! record sent twice still deduplicates. Without an `id` mapping the id is
//! `sha256:<hex>` of the record's JSON (keys sorted): a record resent
//! unchanged is stored once, and two records differing in any byte of
//! content are two events.

mod config;

use auditrelay_plugin_api::mapper::{Mapped, Mapper, Record};
use auditrelay_plugin_api::prelude::*;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

pub use config::{Config, TimeFormat, Unmatched};

/// The mapper; see the crate docs.
pub struct JsonMap {
    config: Config,
    /// Every field something fills, in a fixed order.
    filled: Vec<String>,
}

impl Mapper for JsonMap {
    type Config = Config;

    fn info() -> PluginInfo {
        PluginInfo::new(
            "json-map",
            env!("CARGO_PKG_VERSION"),
            "Maps JSON records to audit envelopes through a field map of JSON pointers",
        )
        .key(ConfigKey::optional("fields", "envelope field -> JSON pointer into the record (\"\" is the whole record)", "{}"))
        .key(ConfigKey::optional("constants", "envelope field -> value, for what the record lacks", "{}"))
        .key(ConfigKey::optional("values", "envelope field -> (record value -> envelope value), e.g. type = { UserSignedIn = \"user.login\" }", "{}"))
        .key(ConfigKey::optional("unmatched", "a value missing from its values map: keep, drop (the record) or refuse (a dead letter)", "\"keep\""))
        .key(ConfigKey::optional("types", "keep only these mapped types (trailing * matches any suffix); empty keeps all", "[]"))
        .key(ConfigKey::unset("records", "JSON pointer to an array whose elements are the events (unset: the record is one event)"))
        .key(ConfigKey::optional("time_format", "how records write time: rfc3339, unix_seconds or unix_millis", "\"rfc3339\""))
    }

    fn init(config: Config, _ctx: &InitContext) -> Result<Self, InitError> {
        let problems = config.problems();
        if !problems.is_empty() {
            return Err(InitError::new(problems.join("; ")));
        }
        let mut filled: Vec<String> = config
            .fields
            .keys()
            .chain(config.constants.keys())
            .cloned()
            .collect();
        filled.sort();
        filled.dedup();
        Ok(JsonMap { config, filled })
    }

    fn map(&mut self, record: &Record<'_>) -> Mapped {
        let document: Value = match record.json() {
            Ok(document) => document,
            Err(reason) => return Mapped::refused(reason),
        };
        let items: Vec<&Value> = match &self.config.records {
            None => vec![&document],
            Some(pointer) => match document.pointer(pointer) {
                Some(Value::Array(items)) => items.iter().collect(),
                Some(_) => {
                    return Mapped::refused(format!("{pointer} is not an array (config.records)"));
                }
                None => {
                    return Mapped::refused(format!(
                        "the record has nothing at {pointer} (config.records)"
                    ));
                }
            },
        };
        let mut events = Vec::with_capacity(items.len());
        for (at, item) in items.into_iter().enumerate() {
            match self.event(item, record) {
                Ok(Some(event)) => events.push(event),
                Ok(None) => {}
                Err(reason) if self.config.records.is_some() => {
                    return Mapped::refused(format!("element {at}: {reason}"));
                }
                Err(reason) => return Mapped::refused(reason),
            }
        }
        Mapped::events(events)
    }
}

impl JsonMap {
    /// The envelope `item` maps to; `None` when it is dropped on purpose.
    fn event(&self, item: &Value, record: &Record<'_>) -> Result<Option<Value>, String> {
        let source = record.source;
        let mut envelope = Map::new();
        for field in &self.filled {
            let pointer = self.config.fields.get(field);
            // `@name`: the record's metadata (a request header), else a
            // JSON pointer into the record.
            let found = pointer
                .and_then(|pointer| match pointer.strip_prefix('@') {
                    Some(name) => record
                        .meta(name)
                        .map(|value| Value::String(value.to_owned())),
                    None => item.pointer(pointer).cloned(),
                })
                .filter(|value| !value.is_null());
            let Some(mut value) = found.or_else(|| self.config.constants.get(field).cloned())
            else {
                if let Some(pointer) = pointer
                    && config::REQUIRED.contains(&field.as_str())
                {
                    return Err(format!(
                        "`{field}` is required and the record has nothing at {pointer:?}"
                    ));
                }
                continue;
            };
            if let Some(map) = self.config.values.get(field) {
                match map.get(&text_of(&value)) {
                    Some(mapped) => value = Value::String(mapped.clone()),
                    None => match self.config.unmatched {
                        Unmatched::Keep => {}
                        Unmatched::Drop => return Ok(None),
                        Unmatched::Refuse => {
                            return Err(format!(
                                "`{field}` is {}, which config.values.{field} does not map",
                                text_of(&value)
                            ));
                        }
                    },
                }
            }
            let value = self.convert(field, value)?;
            set(&mut envelope, field, value);
        }
        envelope.insert("source".into(), Value::String(source.to_owned()));
        envelope
            .entry("id")
            .or_insert_with(|| Value::String(content_id(item)));
        let kind = envelope
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if !self.config.types.is_empty()
            && !self
                .config
                .types
                .iter()
                .any(|pattern| matches(pattern, kind))
        {
            return Ok(None);
        }
        Ok(Some(Value::Object(envelope)))
    }

    /// `value` in the form the envelope's `field` takes.
    fn convert(&self, field: &str, value: Value) -> Result<Value, String> {
        Ok(match field {
            "time" => time(value, self.config.time_format)?,
            "id" => Value::String(external_id(&value)),
            "payload" | "actor.groups" | "action.status_code" => value,
            // Text fields: a number or a boolean is written as text.
            _ => match value {
                Value::Number(_) | Value::Bool(_) => Value::String(value.to_string()),
                other => other,
            },
        })
    }
}

/// A value as the text a `values` map is keyed by.
fn text_of(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// An envelope id for the record's own id: as it is when it can be one, else
/// a digest of it, so that the same record always gets the same id.
fn external_id(value: &Value) -> String {
    let text = text_of(value);
    if !text.is_empty() && text.len() <= 128 && text.bytes().all(|b| b.is_ascii_graphic()) {
        text
    } else {
        format!("sha256:{}", hex::encode(Sha256::digest(text.as_bytes())))
    }
}

/// The id of a record without one: a digest of its content, keys sorted
/// here (not by `serde_json`'s map, whose order a feature can change), so
/// the same content has the same id in every build.
fn content_id(item: &Value) -> String {
    fn write(value: &Value, out: &mut String) {
        match value {
            Value::Object(map) => {
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort();
                out.push('{');
                for (at, key) in keys.into_iter().enumerate() {
                    if at > 0 {
                        out.push(',');
                    }
                    out.push_str(&Value::String(key.clone()).to_string());
                    out.push(':');
                    write(&map[key], out);
                }
                out.push('}');
            }
            Value::Array(items) => {
                out.push('[');
                for (at, item) in items.iter().enumerate() {
                    if at > 0 {
                        out.push(',');
                    }
                    write(item, out);
                }
                out.push(']');
            }
            scalar => out.push_str(&scalar.to_string()),
        }
    }
    let mut canonical = String::new();
    write(item, &mut canonical);
    format!(
        "sha256:{}",
        hex::encode(Sha256::digest(canonical.as_bytes()))
    )
}

fn time(value: Value, format: TimeFormat) -> Result<Value, String> {
    let number = || {
        value.as_f64().ok_or_else(|| {
            format!("`time` is {value}, not a number (config.time_format = {format:?})")
        })
    };
    let timestamp = match format {
        TimeFormat::Rfc3339 => return Ok(value),
        TimeFormat::UnixSeconds => jiff::Timestamp::from_nanosecond((number()? * 1e9) as i128),
        TimeFormat::UnixMillis => jiff::Timestamp::from_nanosecond((number()? * 1e6) as i128),
    };
    timestamp
        .map(|t| Value::String(t.to_string()))
        .map_err(|e| format!("`time` {value} is out of range: {e}"))
}

/// Sets the dotted envelope `field` (`actor.id`, `metadata.app.version`).
fn set(envelope: &mut Map<String, Value>, field: &str, value: Value) {
    match field.split_once('.') {
        None => {
            envelope.insert(field.to_owned(), value);
        }
        Some((parent, child)) => {
            let parent = envelope
                .entry(parent)
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(parent) = parent {
                parent.insert(child.to_owned(), value);
            }
        }
    }
}

fn matches(pattern: &str, value: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => value.starts_with(prefix),
        None => value == pattern,
    }
}

export_mapper!(JsonMap);
