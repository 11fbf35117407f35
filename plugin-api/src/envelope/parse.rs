//! Decoding envelopes from JSON, with errors that name the field.

use std::fmt;

use super::strict::JsonProblem;
use super::{AuditEventEnvelope, EnvelopeView, Limits, ValidationErrors};

/// Why bytes could not become a valid [`AuditEventEnvelope`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvelopeError {
    /// The input is not JSON at all.
    Syntax {
        /// 1-based line of the error.
        line: usize,
        /// 1-based column of the error.
        column: usize,
        /// What the parser expected.
        message: String,
    },
    /// The JSON does not have the envelope's shape (missing or unknown key,
    /// wrong type).
    Shape {
        /// Dotted path of the offending field (`.` for the whole event).
        field: String,
        /// What is wrong.
        message: String,
    },
    /// The shape is right but values break the rules.
    Invalid(ValidationErrors),
}

impl fmt::Display for EnvelopeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EnvelopeError::Syntax {
                line,
                column,
                message,
            } => write!(
                f,
                "malformed JSON at line {line} column {column}: {message}"
            ),
            EnvelopeError::Shape { field, message } => write!(f, "{field}: {message}"),
            EnvelopeError::Invalid(errors) => write!(f, "{errors}"),
        }
    }
}

impl std::error::Error for EnvelopeError {}

impl EnvelopeError {
    /// The error for input that serde_json could not read as JSON, with its
    /// position (for callers that parse JSON around envelopes, e.g. arrays).
    pub fn syntax(error: &serde_json::Error) -> Self {
        EnvelopeError::Syntax {
            line: error.line(),
            column: error.column(),
            message: strip_position(&error.to_string()),
        }
    }

    /// The error with every problem of the event `bytes` it is about, not
    /// only the first serde met: a [`Shape`](Self::Shape) error (which
    /// stops at one field) becomes all of them, shape and rules, as
    /// [`Invalid`](Self::Invalid) when there are several (see
    /// the `diagnose` module). Any other error is returned as it is.
    pub fn explained(self, bytes: &[u8], limits: &Limits) -> Self {
        // Only serde's refusals: a strict problem (a key twice, an inexact
        // number) is about the one reading of the bytes, which a tree of
        // them no longer shows.
        if !matches!(self, EnvelopeError::Shape { .. }) || super::strict::check(bytes).is_err() {
            return self;
        }
        match serde_json::from_slice::<serde_json::Value>(bytes) {
            Ok(value) => super::diagnose::every_problem(value, self, limits),
            Err(_) => self,
        }
    }

    /// The field the error is about, when there is one.
    pub fn field(&self) -> Option<&str> {
        match self {
            EnvelopeError::Syntax { .. } => None,
            EnvelopeError::Shape { field, .. } => Some(field),
            EnvelopeError::Invalid(errors) => errors.0.first().map(|e| e.field.as_str()),
        }
    }
}

impl From<JsonProblem> for EnvelopeError {
    /// A problem inside a field names the field; one with the document as
    /// a whole is a syntax error.
    fn from(problem: JsonProblem) -> Self {
        if problem.path.is_empty() {
            EnvelopeError::Syntax {
                line: problem.line,
                column: problem.column,
                message: problem.problem,
            }
        } else {
            EnvelopeError::Shape {
                field: problem.path,
                message: format!(
                    "{} (line {} column {})",
                    problem.problem, problem.line, problem.column
                ),
            }
        }
    }
}

impl AuditEventEnvelope {
    /// Decodes and validates one envelope from JSON with the default [`Limits`].
    pub fn from_json(bytes: &[u8]) -> Result<Self, EnvelopeError> {
        Self::from_json_with(bytes, &Limits::default())
    }

    /// Decodes and validates one envelope from JSON: the bytes must pass
    /// [`strict::check`](super::strict::check) first.
    pub fn from_json_with(bytes: &[u8], limits: &Limits) -> Result<Self, EnvelopeError> {
        EnvelopeView::from_json_with(bytes, limits)
            .map(EnvelopeView::into_owned)
            .map_err(|error| error.explained(bytes, limits))
    }

    /// The envelope, if it keeps every rule under `limits`.
    pub(crate) fn validated(self, limits: &Limits) -> Result<Self, EnvelopeError> {
        self.validate_with(limits).map_err(EnvelopeError::Invalid)?;
        Ok(self)
    }

    /// Reads one envelope from JSON — strictly ([`strict::check`](super::strict::check)), with
    /// every field in its place — without checking the envelope's rules:
    /// for a caller that validates next, as
    /// [`to_validated_json`](Self::to_validated_json) does while it
    /// encodes (the relay's intake: one encoding per event, not two).
    pub fn read_json(bytes: &[u8]) -> Result<Self, EnvelopeError> {
        EnvelopeView::read_json(bytes).map(EnvelopeView::into_owned)
    }

    /// Decodes and validates one envelope from an already-parsed JSON value
    /// (a value parsed from bytes that passed [`strict::check`](super::strict::check); duplicate
    /// keys and inexact numbers can no longer be seen here).
    pub fn from_value(value: serde_json::Value, limits: &Limits) -> Result<Self, EnvelopeError> {
        Self::read_value(value)?.validated(limits)
    }

    /// Reads one envelope from a parsed JSON value without checking its
    /// rules (see [`read_json`](Self::read_json)).
    pub fn read_value(value: serde_json::Value) -> Result<Self, EnvelopeError> {
        serde_path_to_error::deserialize(value)
            .map_err(|e| shape_error(e.path().to_string(), e.into_inner()))
    }
}

pub(super) fn shape_error(path: String, error: serde_json::Error) -> EnvelopeError {
    if error.is_syntax() || error.is_eof() {
        return EnvelopeError::syntax(&error);
    }
    let message = strip_position(&error.to_string());
    // serde reports a missing key against its parent ("actor: missing field `id`");
    // name the key itself so the error points at what to add.
    let field = match (path.as_str(), missing_field(&message)) {
        (".", Some(key)) => key.to_owned(),
        (parent, Some(key)) => format!("{parent}.{key}"),
        (".", None) => "(event)".to_owned(),
        (field, None) => field.to_owned(),
    };
    EnvelopeError::Shape { field, message }
}

fn missing_field(message: &str) -> Option<&str> {
    message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.strip_suffix('`'))
}

/// serde_json appends " at line L column C"; the position is reported separately.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(at) => message[..at].to_owned(),
        None => message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = r#"{"id":"e1","source":"svc","type":"user.login","time":"2026-01-02T03:04:05Z",
        "actor":{"id":"u1"},"action":{"outcome":"success"}}"#;

    #[test]
    fn minimal_event_parses_with_defaults() {
        let e = AuditEventEnvelope::from_json(VALID.as_bytes()).unwrap();
        assert_eq!(e.envelope_version, 1);
        assert_eq!(e.actor.kind, crate::envelope::ActorKind::User);
        assert_eq!(e.action.severity, crate::envelope::Severity::Info);
    }

    #[test]
    fn malformed_json_reports_position() {
        let err = AuditEventEnvelope::from_json(b"{\"id\": \"x\",\n  oops}").unwrap_err();
        match err {
            EnvelopeError::Syntax { line, column, .. } => assert_eq!((line, column), (2, 3)),
            other => panic!("expected a syntax error, got {other:?}"),
        }
    }

    #[test]
    fn missing_nested_field_is_named() {
        let json = VALID.replace(r#""actor":{"id":"u1"}"#, r#""actor":{"kind":"user"}"#);
        let err = AuditEventEnvelope::from_json(json.as_bytes()).unwrap_err();
        assert_eq!(err.field(), Some("actor.id"), "{err}");
        assert_eq!(err.to_string(), "actor.id: missing field `id`");
    }

    #[test]
    fn missing_top_level_field_is_named() {
        let json = VALID.replace(r#""source":"svc","#, "");
        let err = AuditEventEnvelope::from_json(json.as_bytes()).unwrap_err();
        assert_eq!(err.field(), Some("source"), "{err}");
    }

    #[test]
    fn unknown_field_is_rejected_with_its_path() {
        let json = VALID.replace(
            r#""outcome":"success""#,
            r#""outcome":"success","sevrity":"high""#,
        );
        let err = AuditEventEnvelope::from_json(json.as_bytes()).unwrap_err();
        assert_eq!(err.field(), Some("action.sevrity"), "{err}");
        assert!(err.to_string().contains("unknown field `sevrity`"), "{err}");
    }

    #[test]
    fn bad_time_and_enum_are_named() {
        let json = VALID.replace("2026-01-02T03:04:05Z", "yesterday");
        let err = AuditEventEnvelope::from_json(json.as_bytes()).unwrap_err();
        assert_eq!(err.field(), Some("time"), "{err}");

        let json = VALID.replace(r#""outcome":"success""#, r#""outcome":"great""#);
        let err = AuditEventEnvelope::from_json(json.as_bytes()).unwrap_err();
        assert_eq!(err.field(), Some("action.outcome"), "{err}");
    }

    #[test]
    fn time_without_offset_is_rejected() {
        let json = VALID.replace("2026-01-02T03:04:05Z", "2026-01-02T03:04:05");
        let err = AuditEventEnvelope::from_json(json.as_bytes()).unwrap_err();
        assert_eq!(err.field(), Some("time"), "{err}");
    }

    #[test]
    fn all_rule_violations_are_reported_together() {
        let json = VALID
            .replace(
                r#""id":"u1""#,
                r#""id":"","ip":"10.0.0.1:443","email":"nope""#,
            )
            .replace(r#""type":"user.login""#, r#""type":"user login""#);
        let err = AuditEventEnvelope::from_json(json.as_bytes()).unwrap_err();
        let EnvelopeError::Invalid(errors) = err else {
            panic!("expected rule violations, got {err:?}")
        };
        let fields: Vec<&str> = errors.0.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["type", "actor.id", "actor.email", "actor.ip"]);
    }

    #[test]
    fn oversized_event_is_rejected() {
        let big = "x".repeat(2000);
        let json = VALID.replace(
            r#""action""#,
            &format!(r#""payload":{{"blob":"{big}"}},"action""#),
        );
        let limits = Limits {
            max_event_bytes: 1000,
            ..Limits::default()
        };
        let err = AuditEventEnvelope::from_json_with(json.as_bytes(), &limits).unwrap_err();
        assert!(err.to_string().contains("the limit is 1000"), "{err}");
    }

    #[test]
    fn trailing_garbage_is_a_syntax_error() {
        let json = format!("{VALID} {{}}");
        let err = AuditEventEnvelope::from_json(json.as_bytes()).unwrap_err();
        assert!(matches!(err, EnvelopeError::Syntax { .. }), "{err:?}");
    }
}
