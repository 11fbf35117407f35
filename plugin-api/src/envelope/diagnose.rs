//! Every problem of a refused envelope at once.
//!
//! serde stops at the first field it cannot read, so a client fixing an
//! event by its answers would need one round trip per field. When an
//! event is refused, this reads it again as a JSON tree and, each time
//! serde names a problem, sets that field aside — an unknown key removed,
//! a wrong value replaced by a stand-in of the expected type, a missing
//! one stood in for — and reads again, until the rest reads; then the
//! field rules run on what remains. Problems of stand-ins (and of the
//! fields inside them) are not reported: only what the sender sent.
//!
//! Only refusals take this path, and it is bounded (at most
//! [`MAX_PROBLEMS`] readings of the tree), so a sender of bad events
//! cannot make the relay work much harder than for good ones.

use serde_json::{Map, Value};

use super::parse::{EnvelopeError, shape_error};
use super::{AuditEventEnvelope, Limits, ValidationError, ValidationErrors};

/// Problems named at most; past them the answer says there may be more.
pub const MAX_PROBLEMS: usize = 16;

/// Every problem of `value`, an envelope serde refused, under `limits`:
/// the shape problems (as [`EnvelopeError::Shape`] names them), then the
/// rules the rest breaks. One problem keeps its own kind; several are
/// [`EnvelopeError::Invalid`].
pub(super) fn every_problem(
    mut value: Value,
    first: EnvelopeError,
    limits: &Limits,
) -> EnvelopeError {
    let mut problems: Vec<ValidationError> = Vec::new();
    // Paths holding a stand-in: errors at or under them are not the sender's.
    let mut stand_ins: Vec<String> = Vec::new();
    let mut readings = 0;
    let envelope = loop {
        readings += 1;
        if readings > MAX_PROBLEMS * 2 {
            break None;
        }
        match serde_path_to_error::deserialize::<_, AuditEventEnvelope>(&value) {
            Ok(envelope) => break Some(envelope),
            Err(error) => {
                let path = error.path().to_string();
                let message = error.inner().to_string();
                let EnvelopeError::Shape {
                    field,
                    message: said,
                } = shape_error(path, error.into_inner())
                else {
                    break None;
                };
                let ours = stand_ins.iter().any(|s| within(&field, s));
                if !ours {
                    if problems.len() == MAX_PROBLEMS {
                        problems.push(ValidationError {
                            field: "(event)".into(),
                            problem: format!("more problems than the {MAX_PROBLEMS} named: fix these and send again"),
                        });
                        break None;
                    }
                    problems.push(ValidationError {
                        field: field.clone(),
                        problem: said,
                    });
                }
                if !set_aside(&mut value, &field, &message, &mut stand_ins) {
                    break None;
                }
            }
        }
    };
    if let Some(envelope) = envelope
        && let Err(ValidationErrors(rules)) = envelope.validate_with(limits)
    {
        problems.extend(
            rules
                .into_iter()
                .filter(|e| !stand_ins.iter().any(|s| within(&e.field, s))),
        );
    }
    match problems.len() {
        0 | 1 => first,
        _ => EnvelopeError::Invalid(ValidationErrors(problems)),
    }
}

/// Whether `field` is `path` or inside it.
fn within(field: &str, path: &str) -> bool {
    field == path
        || field
            .strip_prefix(path)
            .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('['))
}

/// Takes the field serde could not read out of its way; `false` if it
/// cannot be found (nothing more can be learnt).
fn set_aside(value: &mut Value, field: &str, message: &str, stand_ins: &mut Vec<String>) -> bool {
    let Some((parent, key)) = split_last(field) else {
        return false;
    };
    let Some(Value::Object(object)) = lookup(value, parent) else {
        return false;
    };
    if message.starts_with("unknown field") {
        return object.remove(key).is_some();
    }
    // A stand-in already there that serde refused again: the next kind.
    let tried = object.get(key).cloned();
    let stand_in = match expected(message) {
        Some(stand_in) if Some(&stand_in) != tried.as_ref() => stand_in,
        _ => match next_guess(tried.as_ref()) {
            Some(guess) => guess,
            None => return false,
        },
    };
    object.insert(key.to_owned(), stand_in);
    if !stand_ins.iter().any(|s| s == field) {
        stand_ins.push(field.to_owned());
    }
    true
}

/// A value of the type serde's message says it expected.
fn expected(message: &str) -> Option<Value> {
    let wanted = message.rsplit_once("expected ").map(|(_, w)| w)?;
    if let Some(variants) = wanted.strip_prefix("one of ") {
        let first = variants.split('`').nth(1)?;
        return Some(Value::String(first.to_owned()));
    }
    Some(
        if wanted.contains("string") || wanted.contains("RFC 3339") {
            Value::String(if wanted.contains("RFC 3339") {
                "1970-01-01T00:00:00Z".into()
            } else {
                "x".into()
            })
        } else if wanted.starts_with("struct") || wanted.contains("map") {
            Value::Object(Map::new())
        } else if wanted.contains("sequence") {
            Value::Array(Vec::new())
        } else if wanted.contains("bool") {
            Value::Bool(false)
        } else if wanted.starts_with('u') || wanted.starts_with('i') || wanted.contains("integer") {
            Value::from(0)
        } else {
            return None;
        },
    )
}

/// The stand-ins tried in turn when serde's message names no type.
fn next_guess(tried: Option<&Value>) -> Option<Value> {
    let guesses = [
        Value::String("x".into()),
        Value::String("1970-01-01T00:00:00Z".into()),
        Value::Object(Map::new()),
        Value::from(0),
        Value::Array(Vec::new()),
        Value::Bool(false),
    ];
    let at = match tried {
        None => 0,
        Some(tried) => guesses.iter().position(|g| g == tried).map_or(0, |i| i + 1),
    };
    guesses.get(at).cloned()
}

/// `a.b[2].c` → (`a.b[2]`, `c`); top-level keys have the parent `""`.
fn split_last(field: &str) -> Option<(&str, &str)> {
    if field.is_empty() || field.ends_with(']') || field == "(event)" {
        return None;
    }
    Some(match field.rfind('.') {
        Some(dot) => (&field[..dot], &field[dot + 1..]),
        None => ("", field),
    })
}

/// The value at a dotted path with `[i]` indices.
fn lookup<'v>(value: &'v mut Value, path: &str) -> Option<&'v mut Value> {
    let mut at = value;
    if path.is_empty() {
        return Some(at);
    }
    for part in path.split('.') {
        let (key, indices) = match part.find('[') {
            Some(open) => (&part[..open], &part[open..]),
            None => (part, ""),
        };
        if !key.is_empty() {
            at = at.get_mut(key)?;
        }
        for index in indices.split(['[', ']']).filter(|s| !s.is_empty()) {
            at = at.get_mut(index.parse::<usize>().ok()?)?;
        }
    }
    Some(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(json: &str) -> Vec<(String, String)> {
        match AuditEventEnvelope::from_json(json.as_bytes()) {
            Ok(_) => Vec::new(),
            Err(EnvelopeError::Invalid(errors)) => {
                errors.0.into_iter().map(|e| (e.field, e.problem)).collect()
            }
            Err(other) => vec![(other.field().unwrap_or("").to_owned(), other.to_string())],
        }
    }

    fn fields(json: &str) -> Vec<String> {
        problems(json).into_iter().map(|(f, _)| f).collect()
    }

    #[test]
    fn five_bad_fields_are_named_in_one_answer() {
        let json = r#"{"id":"e1","source":"svc","type":7,"time":"yesterday",
            "actor":{"kind":"robot"},"action":{"outcome":"success"},"colour":"red",
            "actor_ip":"1.2.3.4"}"#;
        let mut named = fields(json);
        named.sort();
        assert_eq!(
            named,
            [
                "actor.id",
                "actor.kind",
                "actor_ip",
                "colour",
                "time",
                "type"
            ],
            "{:#?}",
            problems(json)
        );
    }

    #[test]
    fn shape_and_rule_problems_come_together() {
        // `type` missing (shape) and `actor.email` not an address (rule).
        let json = r#"{"id":"e1","source":"svc","time":"2026-01-02T03:04:05Z",
            "actor":{"id":"u1","email":"not-an-address"},"action":{"outcome":"maybe"}}"#;
        let mut named = fields(json);
        named.sort();
        assert_eq!(
            named,
            ["action.outcome", "actor.email", "type"],
            "{:#?}",
            problems(json)
        );
    }

    #[test]
    fn one_problem_keeps_its_own_error() {
        let json = r#"{"id":"e1","source":"svc","type":"t","time":"2026-01-02T03:04:05Z",
            "actor":{"kind":"user"},"action":{"outcome":"success"}}"#;
        let error = AuditEventEnvelope::from_json(json.as_bytes()).unwrap_err();
        assert_eq!(error.to_string(), "actor.id: missing field `id`");
    }

    #[test]
    fn a_missing_object_names_only_itself() {
        let json = r#"{"id":"e1","source":"svc","type":"t","time":"2026-01-02T03:04:05Z",
            "action":{"outcome":"success"},"extra":1}"#;
        let mut named = fields(json);
        named.sort();
        assert_eq!(named, ["actor", "extra"], "{:#?}", problems(json));
    }

    #[test]
    fn bad_items_in_lists_are_named() {
        let json = r#"{"id":"e1","source":"svc","type":"t","time":"2026-01-02T03:04:05Z",
            "actor":{"id":"u1","groups":["a",5,"b",{}]},"action":{"outcome":"success","severity":"huge"}}"#;
        let named = fields(json);
        assert!(
            named.iter().any(|f| f.starts_with("actor.groups")),
            "{named:?}"
        );
        assert!(named.contains(&"action.severity".to_owned()), "{named:?}");
    }

    proptest::proptest! {
        /// Whatever is set where in an envelope, explaining never panics,
        /// stays bounded, and still names the field serde named first.
        #[test]
        fn explaining_never_panics_and_keeps_the_first_field(
            edits in proptest::collection::vec((0usize..14, 0usize..9), 1..6)
        ) {
            let paths = [
                "id", "source", "type", "time", "tenant", "actor", "actor.id", "actor.kind",
                "actor.groups", "action", "action.outcome", "action.status_code", "target",
                "nonsense",
            ];
            let values = [
                Value::Null, Value::from(7), Value::from(-1), Value::String("x".into()),
                Value::String("".into()), serde_json::json!({}), serde_json::json!([1, "a"]),
                Value::Bool(true), serde_json::json!({"id": 5}),
            ];
            let mut value = serde_json::to_value(crate::testing::sample_envelope(3)).unwrap();
            for (path, v) in edits {
                let (parent, key) = split_last(paths[path]).unwrap();
                if let Some(Value::Object(object)) = lookup(&mut value, parent) {
                    object.insert(key.to_owned(), values[v].clone());
                }
            }
            let bytes = serde_json::to_vec(&value).unwrap();
            if let Err(first) = AuditEventEnvelope::read_json(&bytes) {
                let field = first.field().map(str::to_owned);
                let explained = first.explained(&bytes, &Limits::default());
                let named: Vec<String> = match &explained {
                    EnvelopeError::Invalid(errors) => errors.0.iter().map(|e| e.field.clone()).collect(),
                    other => other.field().map(str::to_owned).into_iter().collect(),
                };
                proptest::prop_assert!(named.len() <= MAX_PROBLEMS + 1);
                if let Some(field) = field {
                    proptest::prop_assert!(named.contains(&field), "{field} not in {named:?}");
                }
            }
        }
    }

    #[test]
    fn a_flood_of_problems_is_cut_short() {
        let extra: String = (0..100).map(|i| format!(",\"k{i}\":{i}")).collect();
        let json = format!(
            r#"{{"id":"e1","source":"svc","type":"t","time":"2026-01-02T03:04:05Z","actor":{{"id":"u"}},"action":{{"outcome":"success"}}{extra}}}"#
        );
        let named = problems(&json);
        assert_eq!(named.len(), MAX_PROBLEMS + 1, "{named:#?}");
        assert!(named.last().unwrap().1.contains("more problems"));
    }
}
