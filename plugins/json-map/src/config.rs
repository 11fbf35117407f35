//! The `config` table, checked whole at `init`: every problem at once.

use std::collections::BTreeMap;

use serde::Deserialize;

/// Envelope fields a field map may fill, as dotted paths (plus any
/// `metadata.<key>`).
pub const FIELDS: &[&str] = &[
    "id",
    "type",
    "time",
    "tenant",
    "actor.id",
    "actor.kind",
    "actor.email",
    "actor.groups",
    "actor.ip",
    "actor.user_agent",
    "action.name",
    "action.outcome",
    "action.severity",
    "action.status_code",
    "target.kind",
    "target.id",
    "target.name",
    "reason",
    "trace_id",
    "request_id",
    "payload",
];

/// The fields every envelope must have.
pub const REQUIRED: &[&str] = &["type", "time", "actor.id", "action.outcome"];

/// The `config` table as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Envelope field → JSON pointer into the record (`""`: the whole
    /// record), or `@<name>`: the record's metadata `<name>`.
    #[serde(default)]
    pub fields: BTreeMap<String, String>,
    /// Envelope field → value, used where `fields` finds nothing.
    #[serde(default)]
    pub constants: BTreeMap<String, serde_json::Value>,
    /// Envelope field → (record value → envelope value), e.g.
    /// `type = { UserSignedIn = "user.login" }`.
    #[serde(default)]
    pub values: BTreeMap<String, BTreeMap<String, String>>,
    /// What a value absent from its `values` map does: `keep`, `drop`
    /// the record, or `refuse` it.
    #[serde(default)]
    pub unmatched: Unmatched,
    /// Keep only events whose (mapped) `type` matches one of these; a
    /// trailing `*` matches any suffix. Empty: every type.
    #[serde(default)]
    pub types: Vec<String>,
    /// A JSON pointer to an array: each element is one event (a body that
    /// carries several). Unset: the record is one event.
    #[serde(default)]
    pub records: Option<String>,
    /// How `time` is written in the records.
    #[serde(default)]
    pub time_format: TimeFormat,
}

/// See [`Config::unmatched`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unmatched {
    /// Keep the record's value as it is.
    #[default]
    Keep,
    /// Drop the record (counted, nothing kept).
    Drop,
    /// Refuse the record (a dead letter).
    Refuse,
}

/// See [`Config::time_format`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimeFormat {
    /// An RFC 3339 string, passed on as it is.
    #[default]
    Rfc3339,
    /// Seconds since the Unix epoch (a number, may have a fraction).
    UnixSeconds,
    /// Milliseconds since the Unix epoch (a number).
    UnixMillis,
}

/// Whether `field` is an envelope field a map may fill.
pub fn is_field(field: &str) -> bool {
    FIELDS.contains(&field)
        || field
            .strip_prefix("metadata.")
            .is_some_and(|key| !key.is_empty())
}

impl Config {
    /// Every problem of the table, each naming its key and the fix.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let known = || format!("one of {} or metadata.<key>", FIELDS.join(", "));
        for (field, pointer) in &self.fields {
            if !is_field(field) {
                problems.push(format!(
                    "config.fields.{field}: not an envelope field; use {}",
                    known()
                ));
            }
            if pointer == "@" {
                problems.push(format!(
                    "config.fields.{field}: \"@\" names no metadata; write \"@<name>\", e.g. \"@x-github-event\""
                ));
            } else if !pointer.is_empty() && !pointer.starts_with('/') && !pointer.starts_with('@')
            {
                problems.push(format!(
                    "config.fields.{field}: {pointer:?} is not a JSON pointer; write \"/{pointer}\" (RFC 6901), \"\" for the whole record, or \"@<name>\" for a metadata value"
                ));
            }
        }
        for field in self.constants.keys() {
            if !is_field(field) {
                problems.push(format!(
                    "config.constants.{field}: not an envelope field; use {}",
                    known()
                ));
            }
        }
        for field in self.values.keys() {
            if !self.fields.contains_key(field) {
                problems.push(format!(
                    "config.values.{field}: maps the values of a field that config.fields does not read; add config.fields.{field}"
                ));
            }
        }
        if let Some(pointer) = &self.records
            && !pointer.is_empty()
            && !pointer.starts_with('/')
        {
            problems.push(format!(
                "config.records: {pointer:?} is not a JSON pointer; write \"/{pointer}\""
            ));
        }
        for &required in REQUIRED {
            if !self.fields.contains_key(required) && !self.constants.contains_key(required) {
                problems.push(format!(
                    "config: nothing fills `{required}`, which every envelope needs; add config.fields.{required} (a JSON pointer) or config.constants.{required}"
                ));
            }
        }
        problems
    }
}
