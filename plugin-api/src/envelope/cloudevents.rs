//! Mapping between [`AuditEventEnvelope`] and CloudEvents 1.0 (structured
//! JSON mode, `application/cloudevents+json`).
//!
//! | envelope | CloudEvents |
//! |---|---|
//! | `id` | `id` |
//! | `source` | `source` (a URI-reference; a service name is a relative one) |
//! | `type` | `type` |
//! | `time` | `time` (required here, although optional in CloudEvents) |
//! | (constant) | `specversion` = `"1.0"`, `datacontenttype` = `"application/json"` |
//! | `target.kind` + `target.id` | `subject` = `"<kind>/<id>"` (output only) |
//! | `tenant` | extension attribute `tenant` |
//! | `action`, `actor`, `envelope_version`, `metadata`, `payload`, `reason`, `request_id`, `target`, `trace_id` | `data` (a JSON object with these keys) |
//!
//! On input, any other extension attribute `x` is kept as the metadata
//! label `ce_x` (its value as text), so nothing the producer sent is lost;
//! `subject` is kept as `ce_subject` when it differs from the one derived
//! from `target`.

use serde_json::{Map, Value};

use super::{AuditEventEnvelope, EnvelopeError, Limits, ValidationError, ValidationErrors};

/// The CloudEvents attributes this mapping reads itself.
const CONTEXT_ATTRIBUTES: [&str; 7] = [
    "specversion",
    "id",
    "source",
    "type",
    "time",
    "datacontenttype",
    "data",
];

/// Envelope keys that travel as CloudEvents attributes, never inside `data`.
const ATTRIBUTE_KEYS: [&str; 5] = ["id", "source", "type", "time", "tenant"];

/// The CloudEvents JSON form of an envelope.
pub fn to_cloudevent(envelope: &AuditEventEnvelope) -> Value {
    let Value::Object(mut data) =
        serde_json::to_value(envelope).expect("an envelope always serializes")
    else {
        unreachable!("an envelope serializes to a JSON object")
    };
    let mut event = Map::new();
    event.insert("specversion".into(), "1.0".into());
    for key in ATTRIBUTE_KEYS {
        if let Some(value) = data.remove(key) {
            event.insert(key.into(), value);
        }
    }
    event.insert("datacontenttype".into(), "application/json".into());
    if let Some(target) = &envelope.target {
        event.insert(
            "subject".into(),
            format!("{}/{}", target.kind, target.id).into(),
        );
    }
    event.insert("data".into(), Value::Object(data));
    Value::Object(event)
}

/// Reads one CloudEvent from its JSON bytes, which must pass the strict
/// reading first ([`strict::check`](super::strict::check): no key twice, so
/// no `id` or `actor.id` that two readers would take differently).
pub fn from_cloudevent_json(
    bytes: &[u8],
    limits: &Limits,
) -> Result<AuditEventEnvelope, EnvelopeError> {
    read_cloudevent_json(bytes)?.validated(limits)
}

/// Reads one CloudEvent from its JSON bytes strictly, as
/// [`from_cloudevent_json`] does, without checking the envelope's rules
/// (see [`AuditEventEnvelope::read_json`]).
pub fn read_cloudevent_json(bytes: &[u8]) -> Result<AuditEventEnvelope, EnvelopeError> {
    super::strict::check(bytes).map_err(EnvelopeError::from)?;
    let event: Value = serde_json::from_slice(bytes).map_err(|e| EnvelopeError::syntax(&e))?;
    read_cloudevent(event)
}

/// Reads one CloudEvent (JSON parsed from bytes that passed
/// [`strict::check`](super::strict::check)) into a validated envelope.
pub fn from_cloudevent(event: Value, limits: &Limits) -> Result<AuditEventEnvelope, EnvelopeError> {
    read_cloudevent(event)?.validated(limits)
}

/// Reads one CloudEvent into an envelope without checking the envelope's
/// rules (see [`AuditEventEnvelope::read_json`]); what is wrong with it as
/// a CloudEvent is refused here.
pub fn read_cloudevent(event: Value) -> Result<AuditEventEnvelope, EnvelopeError> {
    let Value::Object(mut event) = event else {
        return Err(shape("(event)", "a CloudEvent must be a JSON object"));
    };
    match event.get("specversion") {
        Some(Value::String(v)) if v == "1.0" => {}
        Some(_) => return Err(shape("specversion", "must be \"1.0\"")),
        None => return Err(shape("specversion", "missing field `specversion`")),
    }
    if let Some(content_type) = event.get("datacontenttype") {
        let ok = content_type.as_str().is_some_and(|ct| {
            let essence = ct.split(';').next().unwrap_or("").trim();
            essence == "application/json" || essence.ends_with("+json")
        });
        if !ok {
            return Err(shape(
                "datacontenttype",
                "must be application/json: audit data travels as a JSON object",
            ));
        }
    }
    let mut data = match event.remove("data") {
        Some(Value::Object(data)) => data,
        Some(_) => {
            return Err(shape(
                "data",
                "must be a JSON object holding actor, action, ...",
            ));
        }
        None => {
            return Err(shape(
                "data",
                "missing field `data` (it holds actor and action)",
            ));
        }
    };
    let mut problems = Vec::new();
    for key in ATTRIBUTE_KEYS {
        if data.contains_key(key) && key != "tenant" {
            problems.push(ValidationError {
                field: format!("data.{key}"),
                problem: format!("belongs in the CloudEvents attribute `{key}`, not in data"),
            });
        }
    }
    if let (Some(attr), Some(inner)) = (event.get("tenant"), data.get("tenant"))
        && attr != inner
    {
        problems.push(ValidationError {
            field: "data.tenant".into(),
            problem: "disagrees with the `tenant` extension attribute".into(),
        });
    }
    if !problems.is_empty() {
        return Err(EnvelopeError::Invalid(ValidationErrors(problems)));
    }

    let subject = event.remove("subject");
    let extensions: Vec<(String, Value)> = event
        .iter()
        .filter(|(k, _)| {
            !CONTEXT_ATTRIBUTES.contains(&k.as_str()) && !ATTRIBUTE_KEYS.contains(&k.as_str())
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for key in ATTRIBUTE_KEYS {
        if let Some(value) = event.remove(key) {
            data.insert(key.into(), value);
        }
    }
    let mut envelope =
        AuditEventEnvelope::read_value(Value::Object(data)).map_err(|e| match e {
            EnvelopeError::Shape { field, message }
                if !ATTRIBUTE_KEYS.contains(&field.as_str()) =>
            {
                EnvelopeError::Shape {
                    field: format!("data.{field}"),
                    message,
                }
            }
            other => other,
        })?;

    let derived_subject = envelope
        .target
        .as_ref()
        .map(|t| format!("{}/{}", t.kind, t.id));
    let mut kept = Vec::new();
    if let Some(Value::String(subject)) = subject
        && Some(&subject) != derived_subject.as_ref()
    {
        kept.push(("subject".to_owned(), subject));
    }
    for (name, value) in extensions {
        let text = match value {
            Value::String(s) => s,
            other => other.to_string(),
        };
        kept.push((name, text));
    }
    // One reading only: an attribute never silently replaces a label the
    // producer also put in data.
    let mut clashes = Vec::new();
    for (name, text) in kept {
        let key = format!("ce_{name}");
        match envelope.metadata.get(&key) {
            Some(existing) if *existing != text => clashes.push(ValidationError {
                field: format!("data.metadata.{key}"),
                problem: format!(
                    "is also set, to another value, by the CloudEvents attribute `{name}`; send it once"
                ),
            }),
            _ => {
                envelope.metadata.insert(key, text);
            }
        }
    }
    if !clashes.is_empty() {
        return Err(EnvelopeError::Invalid(ValidationErrors(clashes)));
    }
    Ok(envelope)
}

fn shape(field: &str, message: &str) -> EnvelopeError {
    EnvelopeError::Shape {
        field: field.into(),
        message: message.into(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::envelope::{Actor, Outcome, Target};

    fn sample() -> AuditEventEnvelope {
        AuditEventEnvelope::builder("access-api", "group.member_added")
            .actor(Actor::user("u-42"))
            .outcome(Outcome::Success)
            .target(Target::new("group", "g-7"))
            .tenant("acme")
            .payload(json!({"member": "u-77"}))
            .build()
            .unwrap()
    }

    #[test]
    fn round_trips_through_cloudevents() {
        let envelope = sample();
        let ce = to_cloudevent(&envelope);
        assert_eq!(ce["specversion"], "1.0");
        assert_eq!(ce["id"], envelope.id.as_str());
        assert_eq!(ce["subject"], "group/g-7");
        assert_eq!(ce["tenant"], "acme");
        assert!(ce["data"].get("id").is_none());
        let back = from_cloudevent(ce, &Limits::default()).unwrap();
        assert_eq!(back, envelope);
    }

    #[test]
    fn extensions_are_kept_as_metadata() {
        let mut ce = to_cloudevent(&sample());
        ce["traceparent"] = json!("00-abc-def-01");
        ce["subject"] = json!("something/else");
        let back = from_cloudevent(ce, &Limits::default()).unwrap();
        assert_eq!(back.metadata["ce_traceparent"], "00-abc-def-01");
        assert_eq!(back.metadata["ce_subject"], "something/else");
    }

    #[test]
    fn an_attribute_given_twice_is_refused_not_overwritten() {
        let ce = serde_json::to_string(&to_cloudevent(&sample())).unwrap();
        let twice = ce.replacen("\"specversion\":", "\"id\":\"first\",\"specversion\":", 1);
        let err = from_cloudevent_json(twice.as_bytes(), &Limits::default()).unwrap_err();
        assert_eq!(err.field(), Some("id"), "{err}");
        let twice = ce.replacen("\"actor\":{", "\"actor\":{\"id\":\"mallory\",", 1);
        let err = from_cloudevent_json(twice.as_bytes(), &Limits::default()).unwrap_err();
        assert_eq!(err.field(), Some("data.actor.id"), "{err}");
        assert!(from_cloudevent_json(ce.as_bytes(), &Limits::default()).is_ok());
    }

    #[test]
    fn errors_name_cloudevents_fields() {
        let mut ce = to_cloudevent(&sample());
        ce["specversion"] = json!("0.3");
        let err = from_cloudevent(ce, &Limits::default()).unwrap_err();
        assert_eq!(err.field(), Some("specversion"));

        let mut ce = to_cloudevent(&sample());
        ce["data"]["actor"] = json!({});
        let err = from_cloudevent(ce, &Limits::default()).unwrap_err();
        assert_eq!(err.field(), Some("data.actor.id"), "{err}");

        let mut ce = to_cloudevent(&sample());
        ce.as_object_mut().unwrap().remove("time");
        let err = from_cloudevent(ce, &Limits::default()).unwrap_err();
        assert_eq!(err.field(), Some("time"), "{err}");
    }

    #[test]
    fn an_extension_never_silently_replaces_a_label_in_data() {
        let mut value = to_cloudevent(&sample());
        value["foo"] = json!("from the attribute");
        value["data"]["metadata"] = json!({"ce_foo": "from data"});
        let error = from_cloudevent(value.clone(), &Limits::default()).unwrap_err();
        assert!(
            error.to_string().contains("data.metadata.ce_foo"),
            "{error}"
        );
        // The same value twice is one reading.
        value["data"]["metadata"] = json!({"ce_foo": "from the attribute"});
        let back = from_cloudevent(value, &Limits::default()).unwrap();
        assert_eq!(back.metadata["ce_foo"], "from the attribute");
    }
}
