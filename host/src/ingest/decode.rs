//! Request bodies into [`Arrivals`], one verdict per event.
//!
//! | `Content-Type` | body |
//! |---|---|
//! | `application/json` | one envelope, or a JSON array of envelopes |
//! | `application/x-ndjson` | one envelope per line |
//! | `application/cloudevents+json` | one CloudEvent (structured mode) |
//! | `application/cloudevents-batch+json` | a JSON array of CloudEvents |
//! | any, with `ce-*` headers | one CloudEvent in binary mode: the body is its data |
//!
//! A body that is not valid JSON (or not the expected shape) is refused as
//! a whole; otherwise each event is checked on its own and a bad event
//! never hides the good ones.

use auditrelay_plugin_api::envelope::{EnvelopeError, EnvelopeView, ValidationError, cloudevents};

use serde_json::value::RawValue;

use std::sync::Arc;

use crate::relay::{Arrivals, Refused, Rules};

/// Refused events of one body whose every problem is named; the rest name
/// their first.
const EXPLAINED_PER_BODY: usize = 100;

/// The media types a body may have, as every refusal lists them.
const ACCEPTED: &str = "send application/json (one envelope or an array), application/x-ndjson, application/cloudevents+json or application/cloudevents-batch+json";

/// Why a body was refused as a whole (nothing in it accepted).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    /// No `Content-Type` header.
    #[error("missing Content-Type: {ACCEPTED}")]
    MissingContentType,
    /// A `Content-Type` the relay does not read.
    #[error("unsupported Content-Type {0:?}: {ACCEPTED}")]
    UnsupportedContentType(String),
    /// UTF-8 with a byte order mark.
    #[error(
        "the body starts with a byte order mark (EF BB BF): send the JSON without it (RFC 8259 §8.1)"
    )]
    ByteOrderMark,
    /// UTF-16 or UTF-32, or bytes that are not UTF-8 at all.
    #[error("{0}")]
    NotUtf8(String),
    /// Not JSON, or not the shape the format promises.
    #[error("{0}")]
    Syntax(String),
}

/// The body formats, by media type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `application/json`
    Json,
    /// `application/x-ndjson`
    Ndjson,
    /// `application/cloudevents+json`
    CloudEvent,
    /// `application/cloudevents-batch+json`
    CloudEventBatch,
}

impl Format {
    /// The format of a `Content-Type` value (parameters ignored).
    pub fn from_content_type(content_type: Option<&str>) -> Result<Self, BodyError> {
        let essence = content_type
            .unwrap_or("")
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match essence.as_str() {
            "application/json" => Ok(Format::Json),
            "application/x-ndjson" | "application/jsonl" => Ok(Format::Ndjson),
            "application/cloudevents+json" => Ok(Format::CloudEvent),
            "application/cloudevents-batch+json" => Ok(Format::CloudEventBatch),
            "" => Err(BodyError::MissingContentType),
            other => Err(BodyError::UnsupportedContentType(other.to_owned())),
        }
    }
}

/// Decodes a body into the events it brings, each read strictly and then
/// validated and encoded once by [`Arrivals::push`]; `Err` means the body
/// as a whole is unusable.
pub fn decode(body: &[u8], format: Format, rules: Arc<Rules>) -> Result<Arrivals, BodyError> {
    check_encoding(body)?;
    let mut arrivals = Arrivals::new(rules);
    let refuse = |arrivals: &mut Arrivals, index: usize, raw: &[u8], error: EnvelopeError| {
        arrivals.refuse(Refused {
            index,
            id: readable_id(raw),
            errors: field_errors(error, raw),
        })
    };
    // Envelopes are read in place ([`EnvelopeView`]); CloudEvents are
    // mapped to owned envelopes.
    let mut envelope = |index: usize, raw: &[u8]| push_json(&mut arrivals, index, raw);
    match format {
        Format::Json => {
            // JSON's whitespace (no form feed), as the split reads it.
            let first = body
                .iter()
                .find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'));
            if first == Some(&b'[') {
                let (elements, checked) = match split_array(body) {
                    Some(elements) => (elements, false),
                    None => {
                        let elements = parse_array(body)?;
                        (
                            elements
                                .into_iter()
                                .map(|raw| raw.get().as_bytes())
                                .collect(),
                            true,
                        )
                    }
                };
                for (index, raw) in elements.into_iter().enumerate() {
                    envelope(index, raw);
                }
                // Elements that each read as JSON, in an array's structure,
                // are a JSON array. One that did not read may not be JSON
                // at all: then the body is refused as a whole, in
                // serde_json's words, as if it had been parsed first.
                if !checked && arrivals.has_refused() {
                    parse_array(body)?;
                }
            } else {
                let raw: &RawValue = parse(body)?;
                envelope(0, raw.get().as_bytes());
            }
        }
        Format::Ndjson => {
            let text = std::str::from_utf8(body)
                .map_err(|e| BodyError::NotUtf8(format!("body is not UTF-8: {e}")))?;
            for (index, line) in text.lines().filter(|l| !l.trim().is_empty()).enumerate() {
                envelope(index, line.as_bytes());
            }
        }
        Format::CloudEvent | Format::CloudEventBatch => {
            let events: Vec<&RawValue> = if format == Format::CloudEvent {
                vec![parse(body)?]
            } else {
                parse_array(body).map_err(|e| {
                    BodyError::Syntax(format!("{e} (a CloudEvents batch is a JSON array)"))
                })?
            };
            for (index, raw) in events.into_iter().enumerate() {
                let raw = raw.get().as_bytes();
                match cloudevents::read_cloudevent_json(raw) {
                    Ok(event) => arrivals.push(index, event),
                    Err(error) => refuse(&mut arrivals, index, raw, error),
                }
            }
        }
    }
    Ok(arrivals)
}

/// One CloudEvent in the HTTP binding's binary mode: its attributes in the
/// `ce-*` headers of the request, `Content-Type` its data's type, `body`
/// its data ([`cloudevents::read_binary_cloudevent`]). Refused with every
/// problem named by header or field, as a body of one event would be.
pub fn decode_binary_cloudevent(
    headers: &axum::http::HeaderMap,
    body: &[u8],
    rules: Arc<Rules>,
) -> Result<Arrivals, BodyError> {
    check_encoding(body)?;
    let mut arrivals = Arrivals::new(rules);
    let id = headers
        .get("ce-id")
        .and_then(|id| id.to_str().ok())
        .filter(|id| id.len() <= 128)
        .map(str::to_owned);
    let headers = headers
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_bytes()));
    match cloudevents::read_binary_cloudevent(headers, body) {
        Ok(event) => arrivals.push(0, event),
        Err(error @ EnvelopeError::Syntax { .. }) => {
            return Err(BodyError::Syntax(error.to_string()));
        }
        Err(error) => arrivals.refuse(Refused {
            index: 0,
            id,
            errors: field_errors(error, body),
        }),
    }
    Ok(arrivals)
}

/// One envelope's JSON at `index`: read in place ([`EnvelopeView`]), then
/// validated and encoded, or refused with every rule it broke.
pub fn push_json(arrivals: &mut Arrivals, index: usize, raw: &[u8]) {
    match EnvelopeView::read_json(raw) {
        Ok(event) => arrivals.push_view(index, &event),
        Err(error) => {
            // Every problem of the event, not only the first serde met —
            // for the first events refused: explaining reads an event up
            // to 32 times, and a body of bad events must not cost more.
            let error = if arrivals.refused_count() < EXPLAINED_PER_BODY {
                error.explained(raw, arrivals.limits())
            } else {
                error
            };
            let errors = field_errors(error, raw);
            arrivals.refuse(Refused {
                index,
                id: readable_id(raw),
                errors,
            })
        }
    }
}

/// The elements of a JSON array, found by its structure alone (brackets
/// and strings): each is then read strictly on its own, which finds
/// whatever else is wrong. `None` when the structure itself is wrong (a
/// missing or extra comma, text after the end): serde_json says where.
fn split_array(body: &[u8]) -> Option<Vec<&[u8]>> {
    let space = |b: &u8| matches!(b, b' ' | b'\t' | b'\n' | b'\r');
    let mut at = body.iter().position(|b| !space(b))? + 1;
    let mut elements = Vec::new();
    let skip_space = |at: &mut usize| {
        while body.get(*at).is_some_and(space) {
            *at += 1;
        }
    };
    skip_space(&mut at);
    if body.get(at) == Some(&b']') {
        at += 1;
    } else {
        loop {
            skip_space(&mut at);
            let start = at;
            let mut depth = 0usize;
            // The element ends at a comma or bracket outside any string
            // and any nesting.
            loop {
                match *body.get(at)? {
                    b'"' => {
                        at += 1;
                        loop {
                            at += memchr::memchr2(b'"', b'\\', body.get(at..)?)?;
                            match *body.get(at)? {
                                b'"' => break,
                                b'\\' => at += 2,
                                _ => at += 1,
                            }
                        }
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' if depth > 0 => depth -= 1,
                    b',' | b']' if depth == 0 => break,
                    _ => {}
                }
                at += 1;
            }
            let mut end = at;
            while end > start && space(&body[end - 1]) {
                end -= 1;
            }
            if end == start {
                return None;
            }
            elements.push(&body[start..end]);
            let closing = body[at] == b']';
            at += 1;
            if closing {
                break;
            }
        }
    }
    skip_space(&mut at);
    (at == body.len()).then_some(elements)
}

/// Refuses bodies that are not UTF-8 in a way a plain parser would only
/// call "expected value".
fn check_encoding(body: &[u8]) -> Result<(), BodyError> {
    if body.starts_with(b"\xEF\xBB\xBF") {
        return Err(BodyError::ByteOrderMark);
    }
    let utf16 = body.starts_with(b"\xFE\xFF")
        || body.starts_with(b"\xFF\xFE")
        || body.iter().take(4).any(|&b| b == 0);
    if utf16 {
        return Err(BodyError::NotUtf8(
            "the body looks like UTF-16 or UTF-32: JSON must be sent as UTF-8 (RFC 8259 §8.1)"
                .into(),
        ));
    }
    Ok(())
}

fn parse<'a, T: serde::Deserialize<'a>>(body: &'a [u8]) -> Result<T, BodyError> {
    serde_json::from_slice(body)
        .map_err(|e| BodyError::Syntax(EnvelopeError::syntax(&e).to_string()))
}

fn parse_array(body: &[u8]) -> Result<Vec<&RawValue>, BodyError> {
    parse(body)
}

/// A refused event's problems, as the answer lists them.
fn field_errors(error: EnvelopeError, raw: &[u8]) -> Vec<ValidationError> {
    let mut errors = match error {
        EnvelopeError::Invalid(errors) => errors
            .0
            .into_iter()
            .map(|e| ValidationError {
                field: e.field,
                problem: e.problem,
            })
            .collect(),
        other => vec![ValidationError {
            field: other.field().unwrap_or("(event)").to_owned(),
            problem: match &other {
                EnvelopeError::Shape { message, .. } => message.clone(),
                other => other.to_string(),
            },
        }],
    };
    if looks_like_cloudevent(raw) && errors.iter().any(|e| e.problem.contains("unknown field")) {
        // Point to the CloudEvents door only if the event would pass it;
        // otherwise say why it would not, so the hint is no dead end.
        let problem = match cloudevents::read_cloudevent_json(raw) {
            Ok(_) => {
                "this is a CloudEvent: send it with Content-Type: application/cloudevents+json"
                    .to_owned()
            }
            Err(error) => format!(
                "this has a `specversion` like a CloudEvent, but would not be taken as one either ({error}): send an auditrelay envelope, or a CloudEvent whose data holds actor and action"
            ),
        };
        errors.push(ValidationError {
            field: "(event)".into(),
            problem,
        });
    }
    errors
}

fn looks_like_cloudevent(raw: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(raw)
        .is_ok_and(|object| object.contains_key("specversion"))
}

/// The `id` of an event that failed validation, if it is a short string.
fn readable_id(raw: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct IdOnly {
        id: Option<serde_json::Value>,
    }
    let id = serde_json::from_slice::<IdOnly>(raw).ok()?.id?;
    id.as_str().filter(|id| id.len() <= 128).map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use auditrelay_plugin_api::envelope::{AuditEventEnvelope, Limits};
    use auditrelay_plugin_api::testing::sample_envelope;

    fn json(i: usize) -> String {
        String::from_utf8(sample_envelope(i).to_canonical_json()).unwrap()
    }

    fn plain() -> Arc<Rules> {
        Rules::plain(Limits::default())
    }

    #[test]
    fn single_array_and_ndjson_bodies_decode() {
        let event = json(0);
        let one = decode(event.as_bytes(), Format::Json, plain()).unwrap();
        assert_eq!(one.records().len(), 1);
        assert_eq!(one.records()[0].json(), event.as_bytes());

        let array = format!("[{},\n {}]", json(1), json(2));
        let many = decode(array.as_bytes(), Format::Json, plain()).unwrap();
        assert_eq!(many.records().len(), 2);

        let lines = format!("{}\n\n{}\n", json(3), json(4));
        assert_eq!(
            decode(lines.as_bytes(), Format::Ndjson, plain())
                .unwrap()
                .records()
                .len(),
            2
        );
    }

    #[test]
    fn bad_events_are_named_and_good_ones_kept() {
        let bad = json(1).replace("\"actor\":{", "\"actor\":{\"nick\":\"x\",");
        let body = format!("[{}, {}, {{\"id\": \"broken\"}}]", json(0), bad);
        let decoded = decode(body.as_bytes(), Format::Json, plain()).unwrap();
        assert_eq!(decoded.records().len(), 1);
        assert_eq!(decoded.refused().len(), 2);
        assert_eq!(decoded.refused()[0].index, 1);
        assert_eq!(decoded.refused()[0].errors[0].field, "actor.nick");
        assert_eq!(decoded.refused()[1].id.as_deref(), Some("broken"));
    }

    #[test]
    fn malformed_bodies_are_refused_with_a_position() {
        let err = decode(b"[{\"id\": 1,,}]", Format::Json, plain())
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("malformed JSON at line 1 column"), "{err}");
        assert!(
            Format::from_content_type(Some("text/plain"))
                .unwrap_err()
                .to_string()
                .contains("unsupported Content-Type")
        );
        assert!(
            Format::from_content_type(None)
                .unwrap_err()
                .to_string()
                .contains("missing Content-Type")
        );
        assert_eq!(
            Format::from_content_type(Some("application/json; charset=utf-8")),
            Ok(Format::Json)
        );
    }

    #[test]
    fn arrays_split_by_structure_as_serde_splits_them() {
        for body in [
            r#"[]"#,
            r#" [ 1 , "a,]\"[" , {"b": [1, {"c": "}"}]}, [[]] ] "#,
            "[\n{\"x\": \"\\\\\"}\t]",
        ] {
            let split = split_array(body.as_bytes()).expect(body);
            let serde: Vec<&[u8]> = parse_array(body.as_bytes())
                .unwrap()
                .into_iter()
                .map(|raw| raw.get().as_bytes())
                .collect();
            assert_eq!(split, serde, "{body}");
        }
        for body in ["[", "[1,]", "[,1]", "[1 2", "[]x", "[{]}", "[\"open]"] {
            assert!(
                split_array(body.as_bytes()).is_none_or(|_| parse_array(body.as_bytes()).is_err()),
                "{body}"
            );
        }
    }

    #[test]
    fn an_array_that_is_not_json_is_refused_whole_even_when_it_splits() {
        let good = json(0);
        for body in [
            format!("[{good}, {{\"a\": tru}}]"),
            format!("[{good}, {{\"a\": 1}} {{}}]"),
            format!("[{good}, [}}]"),
        ] {
            let err = decode(body.as_bytes(), Format::Json, plain()).unwrap_err();
            assert!(
                err.to_string().starts_with("malformed JSON"),
                "{body}: {err}"
            );
        }
    }

    /// Every problem is named for the first refused events of a body; past
    /// them, the first only: a body of bad events costs the relay a
    /// bounded amount more than one of good ones.
    #[test]
    fn a_body_of_bad_events_names_every_problem_of_the_first_ones() {
        let bad = |i: usize| {
            format!(
                r#"{{"id":"e{i}","source":"s","type":7,"time":"x","actor":{{"id":"u"}},"action":{{"outcome":"success"}}}}"#
            )
        };
        let body: String = (0..EXPLAINED_PER_BODY + 5).map(|i| bad(i) + "\n").collect();
        let decoded = decode(body.as_bytes(), Format::Ndjson, plain()).unwrap();
        let refused = decoded.refused();
        assert_eq!(refused.len(), EXPLAINED_PER_BODY + 5);
        assert_eq!(refused[0].errors.len(), 2, "{:?}", refused[0]);
        assert_eq!(refused[EXPLAINED_PER_BODY - 1].errors.len(), 2);
        assert_eq!(refused[EXPLAINED_PER_BODY].errors.len(), 1);
    }

    #[test]
    fn cloudevents_map_to_envelopes() {
        let envelope = sample_envelope(5);
        let event = cloudevents::to_cloudevent(&envelope);
        let body = serde_json::to_vec(&event).unwrap();
        let decoded = decode(&body, Format::CloudEvent, plain()).unwrap();
        assert_eq!(decoded.records()[0].json(), envelope.to_canonical_json());

        let batch = serde_json::to_vec(&vec![event.clone(), event]).unwrap();
        let decoded = decode(&batch, Format::CloudEventBatch, plain()).unwrap();
        assert_eq!(decoded.records().len(), 2);

        let as_plain_json = decode(&body, Format::Json, plain()).unwrap();
        let hint = &as_plain_json.refused()[0].errors;
        assert!(
            hint.iter()
                .any(|e| e.problem.contains("application/cloudevents+json")),
            "{hint:?}"
        );

        // CloudEvents-style, but no CloudEvent the relay reads (no actor in
        // data): the hint says why instead of pointing at a dead end.
        let styled = br#"{"specversion":"1.0","id":"1","source":"s","type":"t","time":"2026-01-02T03:04:05Z","data":{"subject":"u-1"}}"#;
        let refused = decode(styled, Format::Json, plain()).unwrap();
        let hint = &refused.refused()[0].errors;
        let last = &hint.last().unwrap().problem;
        assert!(
            last.contains("would not be taken as one either") && last.contains("data."),
            "{hint:?}"
        );
        assert!(!last.contains("send it with Content-Type"), "{hint:?}");
    }

    mod fuzz {
        use super::*;
        use auditrelay_plugin_api::testing::{Edit, mutate};
        use proptest::prelude::*;

        const FORMATS: [Format; 4] = [
            Format::Json,
            Format::Ndjson,
            Format::CloudEvent,
            Format::CloudEventBatch,
        ];

        /// A valid body of `format` holding `n` sample events.
        fn body(format: Format, n: usize) -> Vec<u8> {
            let events: Vec<_> = (0..n).map(sample_envelope).collect();
            match format {
                Format::Json => serde_json::to_vec(&events).unwrap(),
                Format::Ndjson => events
                    .iter()
                    .flat_map(|e| [e.to_canonical_json(), b"\n".to_vec()])
                    .flatten()
                    .collect(),
                Format::CloudEvent => {
                    serde_json::to_vec(&cloudevents::to_cloudevent(&events[0])).unwrap()
                }
                Format::CloudEventBatch => {
                    let ces: Vec<_> = events.iter().map(cloudevents::to_cloudevent).collect();
                    serde_json::to_vec(&ces).unwrap()
                }
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            /// Mutated bodies of every format: no panic, and every
            /// accepted event is stored in a canonical form that reads
            /// back as itself, byte for byte.
            #[test]
            fn mutated_bodies_decode_cleanly(
                format in 0..4usize,
                events in 1..4usize,
                edits in proptest::collection::vec(
                    (any::<u16>(), any::<u8>(), any::<bool>())
                        .prop_map(|(at, byte, insert)| if insert { Edit::Insert(at, byte) } else { Edit::Replace(at, byte) }),
                    0..4,
                ),
            ) {
                let format = FORMATS[format];
                let bytes = mutate(body(format, events), &edits);
                if let Ok(decoded) = decode(&bytes, format, plain()) {
                    for record in decoded.records() {
                        let again = AuditEventEnvelope::from_json(record.json()).expect("stored JSON reads back");
                        prop_assert_eq!(again.to_canonical_json(), record.json().to_vec());
                    }
                    for rejection in decoded.refused() {
                        prop_assert!(!rejection.errors.is_empty());
                    }
                }
            }

            /// A JSON body is refused as a whole exactly when serde_json
            /// cannot read it, as when it parsed every body first.
            #[test]
            fn a_json_body_is_refused_whole_exactly_when_it_is_not_json(
                events in 1..4usize,
                edits in proptest::collection::vec(
                    (any::<u16>(), any::<u8>(), any::<bool>())
                        .prop_map(|(at, byte, insert)| if insert { Edit::Insert(at, byte) } else { Edit::Replace(at, byte) }),
                    0..3,
                ),
                structural in proptest::sample::select(vec![b',', b'[', b']', b'{', b'}', b'"', b'\\', b' ']),
                insert_structural in any::<u16>(),
            ) {
                let mut bytes = mutate(body(Format::Json, events), &edits);
                let at = (insert_structural as usize * (bytes.len() + 1)) >> 16;
                bytes.insert(at, structural);
                // What the relay did before it split arrays itself.
                let not_json = match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
                    Some(b'[') => parse_array(&bytes).is_err(),
                    _ => parse::<&RawValue>(&bytes).is_err(),
                };
                let decoded = decode(&bytes, Format::Json, plain());
                if check_encoding(&bytes).is_ok() {
                    prop_assert_eq!(decoded.is_err(), not_json, "{}", String::from_utf8_lossy(&bytes));
                }
            }

            #[test]
            fn arbitrary_bodies_never_panic(format in 0..4usize, bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
                let _ = decode(&bytes, FORMATS[format], plain());
            }
        }
    }
}
