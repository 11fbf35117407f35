//! Validation rules for [`AuditEventEnvelope`].
//!
//! Every rule names the field it checks; all violations of one event are
//! reported together so an emitter can fix them in one go. Values are never
//! echoed back in messages: audit events carry personal data.

use std::fmt;
use std::net::IpAddr;

use super::{AuditEventEnvelope, ENVELOPE_VERSION};

/// Size limits applied by [`AuditEventEnvelope::validate_with`].
///
/// The defaults suit SIEM destinations (Splunk and Datadog refuse single
/// events above 1 MB); raise `max_event_bytes` only if every destination
/// accepts larger events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest canonical JSON encoding of one event, in bytes.
    pub max_event_bytes: usize,
    /// Deepest nesting of arrays and objects inside `payload`.
    pub max_payload_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_event_bytes: 1024 * 1024,
            max_payload_depth: 32,
        }
    }
}

/// One violated rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationError {
    /// Dotted path of the offending field, e.g. `actor.email`.
    pub field: String,
    /// What is wrong and what is expected.
    pub problem: String,
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.problem)
    }
}

/// Every rule one event violates (never empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationErrors(pub Vec<ValidationError>);

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ValidationErrors {}

/// Collects violations while walking an envelope.
struct Checker {
    errors: Vec<ValidationError>,
}

impl Checker {
    fn fail(&mut self, field: &str, problem: impl Into<String>) {
        self.errors.push(ValidationError {
            field: field.to_owned(),
            problem: problem.into(),
        });
    }

    /// A required string: non-empty, at most `max` bytes, no control characters.
    fn required(&mut self, field: &str, value: &str, max: usize) {
        if value.trim().is_empty() {
            self.fail(field, "is required and must not be empty");
        } else {
            self.text(field, value, max);
        }
    }

    /// An optional string: when present, at most `max` bytes and no control characters.
    fn optional(&mut self, field: &str, value: Option<&str>, max: usize) {
        if let Some(value) = value {
            if value.is_empty() {
                self.fail(field, "must not be empty when present (omit it instead)");
            } else {
                self.text(field, value, max);
            }
        }
    }

    fn text(&mut self, field: &str, value: &str, max: usize) {
        if value.len() > max {
            self.fail(
                field,
                format!("is {} bytes long; the limit is {max}", value.len()),
            );
        }
        if has_control(value) {
            self.fail(field, "must not contain control characters");
        }
    }

    /// An identifier-like string: printable ASCII without spaces.
    fn token(&mut self, field: &str, value: &str, max: usize) {
        self.required(field, value, max);
        if !value.bytes().all(|b| b.is_ascii_graphic()) {
            self.fail(field, "must be printable ASCII without spaces");
        }
    }
}

/// Whether `text` holds a control character other than tab (Unicode
/// category Cc: U+0000–U+001F, U+007F–U+009F), checked on bytes: in UTF-8
/// the C1 controls are `C2 80`–`C2 9F`, and no other sequence contains
/// bytes below 0x80.
fn has_control(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.iter().enumerate().any(|(i, &b)| {
        (b < 0x20 && b != b'\t')
            || b == 0x7f
            || (b == 0xc2
                && bytes
                    .get(i + 1)
                    .is_some_and(|next| (0x80..=0x9f).contains(next)))
    })
}

fn is_event_type_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':' | '/')
}

impl AuditEventEnvelope {
    /// Checks the event against the default [`Limits`].
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        self.validate_with(&Limits::default())
    }

    /// Checks every rule and returns all violations at once.
    pub fn validate_with(&self, limits: &Limits) -> Result<(), ValidationErrors> {
        let mut errors = self.field_errors(limits);
        if errors.is_empty() {
            check_size(self.canonical_len(), limits, &mut errors);
        }
        into_result(errors)
    }

    /// Validates and returns the canonical JSON, encoding only once. This is
    /// what the relay stores for each accepted event.
    pub fn to_validated_json(&self, limits: &Limits) -> Result<Vec<u8>, ValidationErrors> {
        into_result(self.field_errors(limits))?;
        let json = self.to_canonical_json();
        let mut errors = Vec::new();
        check_size(json.len(), limits, &mut errors);
        into_result(errors)?;
        Ok(json)
    }

    fn field_errors(&self, limits: &Limits) -> Vec<ValidationError> {
        let mut c = Checker { errors: Vec::new() };
        if self.envelope_version != ENVELOPE_VERSION {
            c.fail(
                "envelope_version",
                format!(
                    "version {} is not supported; this relay reads version {ENVELOPE_VERSION}",
                    self.envelope_version
                ),
            );
        }
        c.token("id", &self.id, 128);
        c.required("source", &self.source, 256);
        c.required("type", &self.event_type, 256);
        if !self.event_type.chars().all(is_event_type_char) {
            c.fail(
                "type",
                "may contain only letters, digits and . _ - : / (e.g. group.member_added)",
            );
        }
        // The wire format carries nanoseconds in an i64: 1677-09-21 to 2262-04-11.
        let nanos = self.time.as_nanosecond();
        if nanos < i64::MIN as i128 || nanos > i64::MAX as i128 {
            c.fail("time", "must lie between 1677-09-22 and 2262-04-11");
        }
        c.optional("tenant", self.tenant.as_deref(), 256);

        let actor = &self.actor;
        c.required("actor.id", &actor.id, 512);
        c.optional("actor.email", actor.email.as_deref(), 320);
        if let Some(email) = &actor.email
            && !email.contains('@')
        {
            c.fail("actor.email", "must be an email address (no '@' found)");
        }
        if actor.groups.len() > 256 {
            c.fail("actor.groups", "has more than 256 entries");
        }
        for (i, group) in actor.groups.iter().enumerate() {
            c.required(&format!("actor.groups[{i}]"), group, 256);
        }
        if let Some(ip) = &actor.ip
            && ip.parse::<IpAddr>().is_err()
        {
            c.fail(
                "actor.ip",
                "must be one IPv4 or IPv6 address without a port (take the first X-Forwarded-For hop)",
            );
        }
        c.optional("actor.user_agent", actor.user_agent.as_deref(), 1024);

        c.optional("action.name", self.action.name.as_deref(), 256);
        if let Some(code) = self.action.status_code
            && !(100..=999).contains(&code)
        {
            c.fail("action.status_code", "must be a 3-digit status code");
        }

        if let Some(target) = &self.target {
            c.required("target.kind", &target.kind, 256);
            c.required("target.id", &target.id, 512);
            c.optional("target.name", target.name.as_deref(), 1024);
        }
        c.optional("reason", self.reason.as_deref(), 4096);
        c.optional("trace_id", self.trace_id.as_deref(), 128);
        c.optional("request_id", self.request_id.as_deref(), 256);

        if self.metadata.len() > 64 {
            c.fail("metadata", "has more than 64 entries");
        }
        for (key, value) in &self.metadata {
            c.required(&format!("metadata key {key:.32?}"), key, 128);
            c.text(&format!("metadata.{key:.32}"), value, 4096);
        }
        if json_depth(&self.payload) > limits.max_payload_depth {
            c.fail(
                "payload",
                format!("nests deeper than {} levels", limits.max_payload_depth),
            );
        }

        c.errors
    }
}

fn check_size(size: usize, limits: &Limits, errors: &mut Vec<ValidationError>) {
    if size > limits.max_event_bytes {
        errors.push(ValidationError {
            field: "(event)".into(),
            problem: format!(
                "is {size} bytes as canonical JSON; the limit is {} (move bulky data out of payload)",
                limits.max_event_bytes
            ),
        });
    }
}

fn into_result(errors: Vec<ValidationError>) -> Result<(), ValidationErrors> {
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ValidationErrors(errors))
    }
}

fn json_depth(value: &serde_json::Value) -> usize {
    match value {
        serde_json::Value::Array(items) => 1 + items.iter().map(json_depth).max().unwrap_or(0),
        serde_json::Value::Object(map) => 1 + map.values().map(json_depth).max().unwrap_or(0),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::has_control;

    #[test]
    fn control_characters_match_unicode_cc() {
        for c in (0..=0x10ffffu32).filter_map(char::from_u32) {
            let text = format!("a{c}b");
            assert_eq!(
                has_control(&text),
                c.is_control() && c != '\t',
                "{:#x}",
                c as u32
            );
        }
    }
}
