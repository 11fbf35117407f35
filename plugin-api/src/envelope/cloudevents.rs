//! Mapping between [`AuditEventEnvelope`] and CloudEvents 1.0: structured
//! JSON mode (`application/cloudevents+json`), and on input the HTTP
//! binding's binary mode too ([`read_binary_cloudevent`]).
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

/// Reads one CloudEvent sent in the HTTP binding's *binary* content mode
/// (as the CloudEvents SDKs send by default): its attributes in `ce-*`
/// headers, `datacontenttype` in `Content-Type`, the body its `data`.
/// `headers` are every header of the request, by name (any case) and raw
/// value. Header values are unquoted and percent-decoded as the binding
/// says (§3.1.3.2); the body is held to the strict reading like any
/// envelope. Problems name the header (`ce-id`, `Content-Type`) or the
/// field in the body (`data.actor.id`).
pub fn read_binary_cloudevent<'h>(
    headers: impl IntoIterator<Item = (&'h str, &'h [u8])>,
    body: &[u8],
) -> Result<AuditEventEnvelope, EnvelopeError> {
    let mut event = Map::new();
    let mut content_type = None;
    for (name, raw) in headers {
        let name = name.to_ascii_lowercase();
        if name == "content-type" {
            content_type = Some(String::from_utf8_lossy(raw).into_owned());
            continue;
        }
        let Some(attribute) = name.strip_prefix("ce-") else {
            continue;
        };
        if attribute == "datacontenttype" || attribute == "data" {
            return Err(shape(
                &name,
                "must not be sent in binary mode: the data's type is the Content-Type header, and the data is the body",
            ));
        }
        let value = header_value(raw).map_err(|why| shape(&name, &why))?;
        if event
            .insert(attribute.to_owned(), Value::String(value))
            .is_some()
        {
            return Err(shape(&name, "is sent twice: send each attribute once"));
        }
    }
    if let Some(content_type) = content_type {
        event.insert("datacontenttype".into(), Value::String(content_type));
    }
    super::strict::check(body).map_err(|problem| {
        let error = EnvelopeError::from(problem);
        match error {
            EnvelopeError::Shape { field, message } => EnvelopeError::Shape {
                field: format!("data.{field}"),
                message,
            },
            EnvelopeError::Syntax {
                line,
                column,
                message,
            } => EnvelopeError::Syntax {
                line,
                column,
                message: format!("the body (the CloudEvent's data, binary mode): {message}"),
            },
            other => other,
        }
    })?;
    let data: Value = serde_json::from_slice(body).map_err(|e| EnvelopeError::syntax(&e))?;
    event.insert("data".into(), data);
    read_cloudevent(Value::Object(event)).map_err(|error| match error {
        EnvelopeError::Shape { field, message } => EnvelopeError::Shape {
            field: header_of(&field),
            message,
        },
        EnvelopeError::Invalid(ValidationErrors(errors)) => {
            EnvelopeError::Invalid(ValidationErrors(
                errors
                    .into_iter()
                    .map(|e| ValidationError {
                        field: header_of(&e.field),
                        problem: e.problem,
                    })
                    .collect(),
            ))
        }
        other => other,
    })
}

/// Where a binary-mode CloudEvent carried `field`: `data…` in the body,
/// `datacontenttype` in `Content-Type`, an attribute in its `ce-` header.
fn header_of(field: &str) -> String {
    if field == "data" || field.starts_with("data.") || field.starts_with("data[") {
        field.to_owned()
    } else if field == "datacontenttype" {
        "Content-Type".to_owned()
    } else if field == "(event)" {
        field.to_owned()
    } else {
        format!("ce-{field}")
    }
}

/// A binary-mode header value as text: a quoted string unescaped
/// (RFC 7230 §3.2.6, for older senders), then one round of
/// percent-decoding; the bytes must be UTF-8.
fn header_value(raw: &[u8]) -> Result<String, String> {
    let raw = raw.trim_ascii();
    let unquoted: Vec<u8> = match raw {
        [b'"', inner @ .., b'"'] => {
            let mut out = Vec::with_capacity(inner.len());
            let mut bytes = inner.iter();
            while let Some(&b) = bytes.next() {
                if b == b'\\' {
                    out.push(*bytes.next().ok_or("ends inside a backslash escape")?);
                } else {
                    out.push(b);
                }
            }
            out
        }
        _ => raw.to_vec(),
    };
    let mut decoded = Vec::with_capacity(unquoted.len());
    let mut at = 0;
    while at < unquoted.len() {
        if unquoted[at] == b'%' {
            let hex = unquoted
                .get(at + 1..at + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or("holds a `%` that does not start a percent-encoded byte (%XY)")?;
            decoded.push(hex);
            at += 3;
        } else {
            decoded.push(unquoted[at]);
            at += 1;
        }
    }
    String::from_utf8(decoded).map_err(|_| {
        "percent-decodes to bytes that are not UTF-8 (e.g. an overlong encoding)".into()
    })
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

#[cfg(test)]
mod binary_tests {
    use super::*;

    const DATA: &str =
        r#"{"actor":{"id":"u-42"},"action":{"outcome":"success"},"payload":{"n":1}}"#;

    fn read(headers: &[(&str, &str)], body: &str) -> Result<AuditEventEnvelope, EnvelopeError> {
        read_binary_cloudevent(
            headers.iter().map(|(n, v)| (*n, v.as_bytes())),
            body.as_bytes(),
        )
    }

    fn sdk_headers() -> Vec<(&'static str, &'static str)> {
        // What the CloudEvents Python SDK's `to_binary` sends.
        vec![
            ("ce-specversion", "1.0"),
            ("ce-id", "A234-1234-1234"),
            ("ce-source", "access-api"),
            ("ce-type", "group.member_added"),
            ("ce-time", "2026-11-22T10:15:00.123456Z"),
            ("Content-Type", "application/json"),
            ("ce-tenant", "acme"),
            (
                "ce-traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            ),
            ("Authorization", "Bearer secret"),
        ]
    }

    #[test]
    fn the_sdks_binary_mode_reads_like_structured_mode() {
        let event = read(&sdk_headers(), DATA).unwrap();
        assert_eq!(event.id, "A234-1234-1234");
        assert_eq!(event.source, "access-api");
        assert_eq!(event.tenant.as_deref(), Some("acme"));
        assert_eq!(event.actor.id, "u-42");
        assert_eq!(
            event.metadata.get("ce_traceparent").map(String::as_str),
            Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
        );
        assert!(!event.metadata.values().any(|v| v.contains("secret")));
    }

    #[test]
    fn header_values_are_unquoted_and_percent_decoded() {
        let mut headers = sdk_headers();
        headers.push(("ce-note", "Euro%20%E2%82%ac%20%F0%9F%98%80"));
        headers.push(("ce-quoted", r#""a \"b\" c""#));
        let event = read(&headers, DATA).unwrap();
        assert_eq!(event.metadata["ce_note"], "Euro \u{20ac} \u{1f600}");
        assert_eq!(event.metadata["ce_quoted"], "a \"b\" c");
    }

    /// Encodes `text` as the binding says a sender must (§3.1.3.2): space,
    /// `"`, `%` and everything outside printable ASCII percent-encoded.
    fn encode(text: &str) -> String {
        let mut out = String::new();
        for byte in text.bytes() {
            if (0x21..=0x7e).contains(&byte) && byte != b'"' && byte != b'%' {
                out.push(byte as char);
            } else {
                out.push_str(&format!("%{byte:02X}"));
            }
        }
        out
    }

    proptest::proptest! {
        /// Any attribute text a sender encodes decodes back to itself, and
        /// any header bytes at all are read or refused, never a panic.
        #[test]
        fn header_values_round_trip_and_never_panic(
            text in "\\PC{0,40}",
            junk in proptest::collection::vec(proptest::num::u8::ANY, 0..40),
        ) {
            proptest::prop_assert_eq!(header_value(encode(&text).as_bytes()), Ok(text.clone()));
            let _ = header_value(&junk);
            let mut headers = sdk_headers();
            let encoded = encode(&text);
            headers.push(("ce-note", encoded.as_str()));
            let event = read(&headers, DATA).unwrap();
            proptest::prop_assert_eq!(event.metadata.get("ce_note"), Some(&text));
        }
    }

    #[test]
    fn bad_headers_are_named() {
        let cases: [(&str, &str, &str); 4] = [
            ("ce-note", "%C0%A0", "not UTF-8"),
            ("ce-note", "100%", "percent-encoded"),
            ("ce-datacontenttype", "application/json", "Content-Type"),
            ("CE-ID", "again", "twice"),
        ];
        for (name, value, says) in cases {
            let mut headers = sdk_headers();
            headers.push((name, value));
            let error = read(&headers, DATA).unwrap_err();
            assert_eq!(
                error.field(),
                Some(name.to_ascii_lowercase().as_str()),
                "{error}"
            );
            assert!(error.to_string().contains(says), "{error}");
        }
    }

    #[test]
    fn missing_attributes_and_bad_bodies_name_where_they_belong() {
        let headers: Vec<_> = sdk_headers()
            .into_iter()
            .filter(|(n, _)| *n != "ce-id")
            .collect();
        let error = read(&headers, DATA).unwrap_err();
        assert_eq!(error.field(), Some("ce-id"), "{error}");

        let mut headers = sdk_headers();
        headers.retain(|(n, _)| *n != "Content-Type");
        headers.push(("Content-Type", "text/plain"));
        let error = read(&headers, DATA).unwrap_err();
        assert_eq!(error.field(), Some("Content-Type"), "{error}");

        let error = read(
            &sdk_headers(),
            r#"{"actor":{"id":"u"},"actor":{"id":"v"},"action":{"outcome":"success"}}"#,
        )
        .unwrap_err();
        assert_eq!(error.field(), Some("data.actor"), "{error}");

        let error = read(
            &sdk_headers(),
            r#"{"actor":{"kind":"user"},"action":{"outcome":"success"}}"#,
        )
        .unwrap_err();
        assert_eq!(error.field(), Some("data.actor.id"), "{error}");

        let error = read(&sdk_headers(), "not json").unwrap_err();
        assert!(error.to_string().contains("binary mode"), "{error}");
    }
}
