//! Validation rules for [`AuditEventEnvelope`].
//!
//! Every rule names the field it checks; all violations of one event are
//! reported together so an emitter can fix them in one go. Values are never
//! echoed back in messages: audit events carry personal data.

use std::fmt;
use std::net::IpAddr;

use jiff::Timestamp;

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
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
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

    /// A required name: non-empty, at most `max` bytes, nothing hidden.
    fn required(&mut self, field: &str, value: &str, max: usize) {
        if value.trim().is_empty() {
            self.fail(field, "is required and must not be empty");
        } else {
            self.text(field, value, max, Text::Name);
        }
    }

    /// An optional string of the given kind: when present, non-empty, at
    /// most `max` bytes, nothing hidden.
    fn optional(&mut self, field: &str, value: Option<&str>, max: usize, kind: Text) {
        if let Some(value) = value {
            if value.is_empty() {
                self.fail(field, "must not be empty when present (omit it instead)");
            } else {
                self.text(field, value, max, kind);
            }
        }
    }

    fn text(&mut self, field: &str, value: &str, max: usize, kind: Text) {
        if value.len() > max {
            self.fail(
                field,
                format!("is {} bytes long; the limit is {max}", value.len()),
            );
        }
        if let Some(problem) = hidden(value, kind) {
            self.fail(field, problem);
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

/// What a string field holds, for which characters it may contain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Text {
    /// Who and what: ids, names, kinds, labels. A reviewer compares these
    /// by eye, so nothing invisible may hide in them.
    Name,
    /// Free text a person wrote or a client sent (`reason`, `target.name`,
    /// `actor.user_agent`, metadata values): tabs are fine, nothing that
    /// reorders what a reader sees.
    Prose,
}

/// Characters that make text display other than it is (Trojan Source,
/// CVE-2021-42574): bidirectional embeddings, overrides and isolates, and
/// the marks.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// Characters that show as nothing (Unicode's Default_Ignorable_Code_Point,
/// from DerivedCoreProperties.txt): zero-width spaces and joiners, the soft
/// hyphen, fillers, variation selectors, tag characters, the byte order
/// mark, invisible operators.
fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{00ad}' | '\u{034f}' | '\u{061c}' | '\u{115f}'..='\u{1160}' | '\u{17b4}'..='\u{17b5}'
        | '\u{180b}'..='\u{180f}' | '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}'
        | '\u{2060}'..='\u{206f}' | '\u{3164}' | '\u{fe00}'..='\u{fe0f}' | '\u{feff}'
        | '\u{ffa0}' | '\u{fff0}'..='\u{fff8}' | '\u{1bca0}'..='\u{1bca3}'
        | '\u{1d173}'..='\u{1d17a}' | '\u{e0000}'..='\u{e0fff}')
}

/// Tag characters (U+E0000–U+E007F): invisible copies of ASCII, which can
/// carry a hidden message to whatever reads the text next.
fn is_tag(c: char) -> bool {
    ('\u{e0000}'..='\u{e007f}').contains(&c)
}

/// Line and paragraph separators (Unicode categories Zl, Zp): line breaks
/// by another name.
fn is_line_separator(c: char) -> bool {
    matches!(c, '\u{2028}' | '\u{2029}')
}

/// Spaces other than U+0020, and the blank Braille pattern: they look like
/// a space, or like nothing, and are not one.
fn is_lookalike_space(c: char) -> bool {
    matches!(
        c,
        '\u{00a0}' | '\u{1680}' | '\u{2000}'
            ..='\u{200a}' | '\u{202f}' | '\u{205f}' | '\u{3000}' | '\u{2800}'
    )
}

/// Why `text` may not be a field of `kind`, if it may not.
fn hidden(text: &str, kind: Text) -> Option<&'static str> {
    // Most text is printable ASCII: then only the spaces at its ends can
    // be wrong. (Counted without branching, so the loop vectorizes.)
    let unprintable = text
        .bytes()
        .fold(0u8, |n, b| n | u8::from(!(0x20..0x7f).contains(&b)));
    if unprintable == 0 {
        return spaced_name(text, kind);
    }
    let tab_ok = kind == Text::Prose;
    if has_control(text, tab_ok) {
        return Some(match kind {
            Text::Name => "must not contain control characters (tabs and line breaks included)",
            Text::Prose => {
                "must not contain control characters other than tab (line breaks included)"
            }
        });
    }
    if let Some(problem) = spaced_name(text, kind) {
        return Some(problem);
    }
    if text.is_ascii() {
        return None;
    }
    if text.chars().any(is_line_separator) {
        return Some("must not contain line or paragraph separators (U+2028, U+2029)");
    }
    if text.chars().any(is_bidi_control) {
        return Some(
            "must not contain bidirectional control characters (U+202A-U+202E, U+2066-U+2069, U+200E, U+200F, U+061C): they make the text display other than it is",
        );
    }
    if text.chars().any(is_tag) {
        return Some(
            "must not contain tag characters (U+E0000-U+E007F): invisible text can carry a message nobody sees",
        );
    }
    if kind == Text::Name
        && text
            .chars()
            .any(|c| is_invisible(c) || is_lookalike_space(c))
    {
        return Some(
            "must not contain invisible characters or spaces other than U+0020 (zero-width and variation characters, fillers, U+00AD, U+00A0, U+2800, ...: Unicode's default-ignorable code points): two names that look the same must be the same",
        );
    }
    None
}

/// Why a name may not be `text`: a space at either end.
fn spaced_name(text: &str, kind: Text) -> Option<&'static str> {
    (kind == Text::Name && (text.starts_with(' ') || text.ends_with(' '))).then_some(
        "must not begin or end with a space: two names that look the same must be the same",
    )
}

/// Whether `text` holds a control character (Unicode category Cc:
/// U+0000–U+001F, U+007F–U+009F; tab allowed if `tab_ok`), checked on
/// bytes: in UTF-8 the C1 controls are `C2 80`–`C2 9F`, and no other
/// sequence contains bytes below 0x80.
fn has_control(text: &str, tab_ok: bool) -> bool {
    let bytes = text.as_bytes();
    bytes.iter().enumerate().any(|(i, &b)| {
        (b < 0x20 && !(tab_ok && b == b'\t'))
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
    /// what the relay stores for each accepted event, so an event that
    /// already carries an `integrity` seal is refused: only the relay
    /// seals.
    pub fn to_validated_json(&self, limits: &Limits) -> Result<Vec<u8>, ValidationErrors> {
        into_result(arrival_errors(self, self.integrity.is_some(), limits))?;
        let json = self.to_canonical_json();
        let mut errors = Vec::new();
        check_size(json.len(), limits, &mut errors);
        into_result(errors)?;
        Ok(json)
    }
}

/// Every rule an arriving event breaks: the field rules, and a seal it
/// must not bring (a sender could otherwise pass off its own chain).
pub(super) fn arrival_errors(
    event: &impl Fields,
    sealed: bool,
    limits: &Limits,
) -> Vec<ValidationError> {
    let mut errors = event.field_errors(limits);
    if sealed {
        errors.push(ValidationError {
            field: "integrity".into(),
            problem:
                "is the relay's seal, written when it spools the event; send the event without it"
                    .into(),
        });
    }
    errors
}

/// What the rules read of an event, whichever form holds it: the owned
/// [`AuditEventEnvelope`] and the borrowed
/// [`EnvelopeView`](super::EnvelopeView) keep the same rules because they
/// are checked by the same code.
pub(super) trait Fields {
    fn envelope_version(&self) -> u32;
    fn id(&self) -> &str;
    fn source(&self) -> &str;
    fn event_type(&self) -> &str;
    fn time(&self) -> &Timestamp;
    fn tenant(&self) -> Option<&str>;
    fn actor_id(&self) -> &str;
    fn actor_email(&self) -> Option<&str>;
    fn actor_groups(&self) -> impl ExactSizeIterator<Item = &str>;
    fn actor_ip(&self) -> Option<&str>;
    fn actor_user_agent(&self) -> Option<&str>;
    fn action_name(&self) -> Option<&str>;
    fn status_code(&self) -> Option<u16>;
    /// Kind, id and name.
    fn target(&self) -> Option<(&str, &str, Option<&str>)>;
    fn reason(&self) -> Option<&str>;
    fn trace_id(&self) -> Option<&str>;
    fn request_id(&self) -> Option<&str>;
    fn metadata(&self) -> impl ExactSizeIterator<Item = (&str, &str)>;
    /// How deeply arrays and objects nest in `payload`.
    fn payload_depth(&self) -> usize;

    /// Every rule but the size limit the event breaks.
    fn field_errors(&self, limits: &Limits) -> Vec<ValidationError> {
        let mut c = Checker { errors: Vec::new() };
        if self.envelope_version() != ENVELOPE_VERSION {
            c.fail(
                "envelope_version",
                format!(
                    "version {} is not supported; this relay reads version {ENVELOPE_VERSION}",
                    self.envelope_version()
                ),
            );
        }
        c.token("id", self.id(), 128);
        c.required("source", self.source(), 256);
        c.required("type", self.event_type(), 256);
        if !self.event_type().chars().all(is_event_type_char) {
            c.fail(
                "type",
                "may contain only letters, digits and . _ - : / (e.g. group.member_added)",
            );
        }
        // The wire format carries nanoseconds in an i64: 1677-09-21 to 2262-04-11.
        let nanos = self.time().as_nanosecond();
        if nanos < i64::MIN as i128 || nanos > i64::MAX as i128 {
            c.fail("time", "must lie between 1677-09-22 and 2262-04-11");
        }
        c.optional("tenant", self.tenant(), 256, Text::Name);

        c.required("actor.id", self.actor_id(), 512);
        c.optional("actor.email", self.actor_email(), 320, Text::Name);
        if let Some(email) = self.actor_email()
            && !email.contains('@')
        {
            c.fail("actor.email", "must be an email address (no '@' found)");
        }
        if self.actor_groups().len() > 256 {
            c.fail("actor.groups", "has more than 256 entries");
        }
        for (i, group) in self.actor_groups().enumerate() {
            c.required(&format!("actor.groups[{i}]"), group, 256);
        }
        if let Some(ip) = self.actor_ip()
            && ip.parse::<IpAddr>().is_err()
        {
            c.fail(
                "actor.ip",
                "must be one IPv4 or IPv6 address without a port (take the first X-Forwarded-For hop)",
            );
        }
        c.optional(
            "actor.user_agent",
            self.actor_user_agent(),
            1024,
            Text::Prose,
        );

        c.optional("action.name", self.action_name(), 256, Text::Name);
        if let Some(code) = self.status_code()
            && !(100..=999).contains(&code)
        {
            c.fail("action.status_code", "must be a 3-digit status code");
        }

        if let Some((kind, id, name)) = self.target() {
            c.required("target.kind", kind, 256);
            c.required("target.id", id, 512);
            c.optional("target.name", name, 1024, Text::Prose);
        }
        c.optional("reason", self.reason(), 4096, Text::Prose);
        c.optional("trace_id", self.trace_id(), 128, Text::Name);
        c.optional("request_id", self.request_id(), 256, Text::Name);

        let entries = self
            .metadata()
            .filter(|(key, _)| {
                *key != super::REDACTION_RECORD_KEY && *key != super::INVALID_RECORD_KEY
            })
            .count();
        if entries > 64 {
            c.fail("metadata", "has more than 64 entries");
        }
        for (key, value) in self.metadata() {
            c.required(&format!("metadata key {key:.32?}"), key, 128);
            c.text(&format!("metadata.{key:.32}"), value, 4096, Text::Prose);
        }
        if self.payload_depth() > limits.max_payload_depth {
            c.fail(
                "payload",
                format!("nests deeper than {} levels", limits.max_payload_depth),
            );
        }

        c.errors
    }
}

impl Fields for AuditEventEnvelope {
    fn envelope_version(&self) -> u32 {
        self.envelope_version
    }
    fn id(&self) -> &str {
        &self.id
    }
    fn source(&self) -> &str {
        &self.source
    }
    fn event_type(&self) -> &str {
        &self.event_type
    }
    fn time(&self) -> &Timestamp {
        &self.time
    }
    fn tenant(&self) -> Option<&str> {
        self.tenant.as_deref()
    }
    fn actor_id(&self) -> &str {
        &self.actor.id
    }
    fn actor_email(&self) -> Option<&str> {
        self.actor.email.as_deref()
    }
    fn actor_groups(&self) -> impl ExactSizeIterator<Item = &str> {
        self.actor.groups.iter().map(String::as_str)
    }
    fn actor_ip(&self) -> Option<&str> {
        self.actor.ip.as_deref()
    }
    fn actor_user_agent(&self) -> Option<&str> {
        self.actor.user_agent.as_deref()
    }
    fn action_name(&self) -> Option<&str> {
        self.action.name.as_deref()
    }
    fn status_code(&self) -> Option<u16> {
        self.action.status_code
    }
    fn target(&self) -> Option<(&str, &str, Option<&str>)> {
        self.target
            .as_ref()
            .map(|t| (t.kind.as_str(), t.id.as_str(), t.name.as_deref()))
    }
    fn reason(&self) -> Option<&str> {
        self.reason.as_deref()
    }
    fn trace_id(&self) -> Option<&str> {
        self.trace_id.as_deref()
    }
    fn request_id(&self) -> Option<&str> {
        self.request_id.as_deref()
    }
    fn metadata(&self) -> impl ExactSizeIterator<Item = (&str, &str)> {
        self.metadata.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
    fn payload_depth(&self) -> usize {
        json_depth(&self.payload)
    }
}

pub(super) fn check_size(size: usize, limits: &Limits, errors: &mut Vec<ValidationError>) {
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

pub(super) fn into_result(errors: Vec<ValidationError>) -> Result<(), ValidationErrors> {
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
    use super::*;
    use crate::testing::sample_envelope;

    #[test]
    fn control_characters_match_unicode_cc() {
        for c in (0..=0x10ffffu32).filter_map(char::from_u32) {
            let text = format!("a{c}b");
            assert_eq!(
                has_control(&text, true),
                c.is_control() && c != '\t',
                "{:#x}",
                c as u32
            );
            assert_eq!(has_control(&text, false), c.is_control(), "{:#x}", c as u32);
        }
    }

    #[test]
    fn names_and_prose_hide_nothing() {
        let mut event = sample_envelope(1);
        event.actor.id = "admin\u{202e}nimda".into();
        event.target.as_mut().unwrap().id = "g\u{200b}7".into();
        event.tenant = Some("acme\tcorp".into());
        event.reason = Some("rotation\t(ticket 7) \u{2067}hidden\u{2069}".into());
        event.actor.user_agent = Some("curl/8\u{200b}".into());
        let errors = event.validate().unwrap_err();
        let fields: Vec<&str> = errors.0.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            ["tenant", "actor.id", "target.id", "reason"],
            "{errors}"
        );
        assert!(errors.0[1].problem.contains("bidirectional"), "{errors}");
        assert!(errors.0[2].problem.contains("invisible"), "{errors}");
        // A zero-width space in prose and a tab in a reason are fine.
        event.actor.id = "u-1".into();
        event.target.as_mut().unwrap().id = "g-7".into();
        event.tenant = Some("acme".into());
        event.reason = Some("rotation\t(ticket 7)".into());
        assert_eq!(event.validate(), Ok(()));
    }

    #[test]
    fn names_refuse_every_character_that_looks_like_nothing_or_like_a_space() {
        // What got through a hand-picked list: tag characters, Hangul
        // fillers, the combining grapheme joiner, variation selectors,
        // Braille blank, separators, lookalike spaces, deprecated format
        // characters, the Mongolian free variation selectors.
        for hidden in [
            "\u{e0041}",
            "\u{3164}",
            "\u{034f}",
            "\u{fe0f}",
            "\u{2800}",
            "\u{2028}",
            "\u{2029}",
            "\u{00a0}",
            "\u{206a}",
            "\u{ffa0}",
            "\u{180b}",
            "\u{3000}",
        ] {
            let mut event = sample_envelope(1);
            event.actor.id = format!("admin{hidden}");
            let errors = event.validate().unwrap_err();
            assert_eq!(errors.0[0].field, "actor.id", "{hidden:?}: {errors}");
        }
        let mut event = sample_envelope(1);
        event.actor.id = "admin ".into();
        assert!(
            event
                .validate()
                .unwrap_err()
                .to_string()
                .contains("end with a space")
        );
        // Prose may hold an emoji with its variation selector or a no-break
        // space, but no separator and no hidden tag text.
        let mut event = sample_envelope(1);
        event.reason = Some("ok \u{2764}\u{fe0f}\u{00a0}done".into());
        assert_eq!(event.validate(), Ok(()));
        for hidden in ["\u{2028}", "\u{e0041}\u{e0042}"] {
            event.reason = Some(format!("fine{hidden}"));
            let errors = event.validate().unwrap_err();
            assert_eq!(errors.0[0].field, "reason", "{hidden:?}: {errors}");
        }
    }
}
