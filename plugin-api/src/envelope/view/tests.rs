//! The view against the owned envelope and the fast reading against the
//! reference one, on envelopes with every kind of payload, escapes and
//! spacing, and on mutations of them.

use proptest::prelude::*;

use super::*;
use crate::testing::{Edit, mutate, sample_envelope};

/// What the owned envelope makes of `bytes`, read the reference way.
fn owned(bytes: &[u8]) -> Option<AuditEventEnvelope> {
    strict::check(bytes).ok()?;
    serde_json::from_slice(bytes).ok()
}

/// JSON values of every shape: numbers of every spelling, escapes,
/// unsorted and duplicate keys, space.
fn json_value() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just("null".to_owned()),
        Just("false".to_owned()),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<u64>().prop_map(|n| n.to_string()),
        "-?(0|[1-9][0-9]{0,22})(\\.[0-9]{1,20})?([eE][+-]?[0-9]{1,3})?",
        "\"([a-c]|é|\\\\u00e9|\\\\ud83d\\\\ude00|\\\\ud800|\\\\n|\\\\\"|\\\\/| |\u{7f})*\"",
    ];
    leaf.prop_recursive(5, 40, 5, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4)
                .prop_map(|items| format!("[ {} ]", items.join(" ,"))),
            proptest::collection::vec(("([a-c]|\\\\u0061|\u{1f600}|\u{fb33}){1,2}", inner), 0..5)
                .prop_map(|members| {
                    let members: Vec<String> = members
                        .into_iter()
                        .map(|(k, v)| format!("\"{k}\" : {v}"))
                        .collect();
                    format!("{{{}}}", members.join(","))
                }),
        ]
    })
}

/// An envelope's JSON with `payload` and `metadata` spliced in, fields
/// escaped or spaced out now and then.
fn envelope_text(seed: usize, payload: &str, labels: &[(String, String)], spaced: bool) -> Vec<u8> {
    let mut event = sample_envelope(seed);
    event.payload = serde_json::Value::Null;
    event.metadata.clear();
    let mut text = String::from_utf8(event.to_canonical_json()).unwrap();
    let labels: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("\"{k}\":\"{v}\""))
        .collect();
    let extra = format!(
        "\"payload\":{payload},\"metadata\":{{{}}},",
        labels.join(",")
    );
    text.insert_str(1, &extra);
    if spaced {
        text = text.replace(",\"", " ,\n \"").replace("\":", "\" :\t");
    }
    if seed.is_multiple_of(3) {
        text = text.replace("\"access-api\"", "\"access\\u002dapi\"");
    }
    text.into_bytes()
}

fn label() -> impl Strategy<Value = (String, String)> {
    ("[a-c]{1,2}|\\\\u0062", "[a-c ]{0,3}|\\\\t|x\\\\u00e9")
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<u16>(), any::<u8>()).prop_map(|(at, byte)| Edit::Replace(at, byte)),
        (any::<u16>(), any::<u8>()).prop_map(|(at, byte)| Edit::Insert(at, byte)),
        any::<u16>().prop_map(Edit::Remove),
    ]
}

/// Holds the two readings and the two encodings to each other.
fn agree(bytes: &[u8]) -> Result<(), TestCaseError> {
    let fast = fast::read(bytes);
    let reference = EnvelopeView::read_json_reference(bytes);
    let owned = owned(bytes);
    prop_assert_eq!(reference.is_ok(), owned.is_some());
    if let Some(fast) = &fast {
        let Ok(reference) = &reference else {
            return Err(TestCaseError::fail(format!(
                "the fast reading took what the reference refuses: {}",
                String::from_utf8_lossy(bytes)
            )));
        };
        prop_assert_eq!(fast.to_canonical_json(), reference.to_canonical_json());
        // What the fast reading learnt of the payload (its depth) judges
        // as the reference does, at every depth limit.
        for max_payload_depth in [0, 1, 2, 3, 32] {
            let limits = Limits {
                max_payload_depth,
                ..Limits::default()
            };
            prop_assert_eq!(
                fast.to_validated_json(&limits),
                reference.to_validated_json(&limits)
            );
        }
    }
    if let (Ok(view), Some(owned)) = (&reference, &owned) {
        prop_assert_eq!(view.to_canonical_json(), owned.to_canonical_json());
        let limits = Limits::default();
        prop_assert_eq!(
            view.to_validated_json(&limits),
            owned.to_validated_json(&limits)
        );
        prop_assert_eq!(&view.clone().into_owned(), owned);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn fast_and_reference_readings_agree(
        seed in 0..60usize,
        payload in json_value(),
        labels in proptest::collection::vec(label(), 0..4),
        spaced in any::<bool>(),
    ) {
        agree(&envelope_text(seed, &payload, &labels, spaced))?;
    }

    #[test]
    fn they_agree_on_mutations_too(
        seed in 0..60usize,
        payload in json_value(),
        edits in proptest::collection::vec(edit(), 1..4),
    ) {
        agree(&mutate(envelope_text(seed, &payload, &[], seed.is_multiple_of(2)), &edits))?;
    }
}

/// The fast reading is no mere shortcut for canonical input: spacing,
/// escaped values, unsorted and nested payloads and labels all take it.
#[test]
fn the_fast_reading_takes_the_common_envelope() {
    let labels = [
        ("b".to_owned(), "x\\u00e9".to_owned()),
        ("a".to_owned(), "".to_owned()),
    ];
    for i in 0..20 {
        let canonical = sample_envelope(i).to_canonical_json();
        let payload = r#"{"z": [1, -2.5e3, "\u00e9\n", {"b": null, "a": true}], "a": {}}"#;
        for bytes in [canonical, envelope_text(i, payload, &labels, i % 2 == 0)] {
            let text = String::from_utf8_lossy(&bytes).into_owned();
            assert!(fast::read(&bytes).is_some(), "{text}");
            agree(&bytes).unwrap_or_else(|e| panic!("{e}: {text}"));
        }
    }
}

#[test]
fn a_refusal_names_the_field_as_the_owned_type_does() {
    let good = String::from_utf8(sample_envelope(1).to_canonical_json()).unwrap();
    for (bad, field) in [
        (
            good.replace("\"kind\":\"user\"", "\"kind\":\"robot\""),
            "actor.kind",
        ),
        (
            good.replace("\"payload\":{", "\"payload\":{\"a\":1,\"a\":2,"),
            "payload.a",
        ),
        (good.replace("\"tenant\":", "\"tenent\":"), "tenent"),
        (
            good.replace("\"outcome\":\"success\"", "\"outcome\":\"great\""),
            "action.outcome",
        ),
        (
            good.replace("\"envelope_version\":1", "\"envelope_version\":\"1\""),
            "envelope_version",
        ),
        (
            good.replace("\"severity\":\"info\"", "\"severity\":\"loud\""),
            "action.severity",
        ),
    ] {
        let view = EnvelopeView::from_json(bad.as_bytes()).unwrap_err();
        let owned = AuditEventEnvelope::from_json(bad.as_bytes()).unwrap_err();
        assert_eq!(view.field(), Some(field), "{view}");
        assert_eq!(view, owned);
    }
}

/// A metadata key is the sender's text: a quote in it must be escaped,
/// never close the key and inject fields (found by an outside review).
#[test]
fn metadata_keys_are_escaped_and_cannot_inject_fields() {
    let bytes = br#"{"metadata":{"a\":\"1\"},\"tenant\":\"victim\"":"v"},"action":{"outcome":"success"},"actor":{"id":"u-1"},"id":"e-1","source":"s","time":"2026-01-02T03:04:05Z","type":"t"}"#;
    agree(bytes).unwrap();
    let view = EnvelopeView::from_json(bytes).unwrap();
    let stored = view.to_validated_json(&Limits::default()).unwrap();
    let again = AuditEventEnvelope::from_json(&stored).unwrap();
    assert_eq!(again.tenant, None);
    assert_eq!(stored, owned(bytes).unwrap().to_canonical_json());
}

/// Many labels are refused in linear time (the fast reading hands them
/// to the reference, which counts them with a hash set).
#[test]
fn many_labels_are_left_to_the_reference() {
    let labels: Vec<String> = (0..5000).map(|i| format!("\"k{i}\":\"\"")).collect();
    let text = format!(
        r#"{{"metadata":{{{}}},"action":{{"outcome":"success"}},"actor":{{"id":"u"}},"id":"e","source":"s","time":"2026-01-02T03:04:05Z","type":"t"}}"#,
        labels.join(",")
    );
    assert!(fast::read(text.as_bytes()).is_none());
    let err = EnvelopeView::from_json(text.as_bytes()).unwrap_err();
    assert!(err.to_string().contains("more than 64"), "{err}");
}

/// Nesting right at the limit: every reading agrees (serde_json's own
/// limit is the strict one), just past it every reading refuses.
#[test]
fn nesting_at_the_limit_reads_the_same_every_way() {
    for levels in [126, 127, 128] {
        let text = format!(
            r#"{{"payload":{}{},"action":{{"outcome":"success"}},"actor":{{"id":"u"}},"id":"e","source":"s","time":"2026-01-02T03:04:05Z","type":"t"}}"#,
            "[".repeat(levels - 1),
            "]".repeat(levels - 1)
        );
        agree(text.as_bytes()).unwrap_or_else(|e| panic!("{levels}: {e}"));
        let read = EnvelopeView::read_json(text.as_bytes());
        assert_eq!(read.is_ok(), levels <= strict::MAX_DEPTH, "{levels}");
    }
}

#[test]
fn a_sealed_envelope_reads_the_same_both_ways_and_is_refused_on_arrival() {
    let seal = r#""integrity":{"hash":"aa","prev":"bb","seq":7,"stream":"acme"}"#;
    let json = format!(
        r#"{{"action":{{"outcome":"success"}},"actor":{{"id":"u-1"}},"id":"e-1",{seal},"source":"s","time":"2026-01-02T03:04:05Z","type":"t"}}"#
    );
    let fast = EnvelopeView::read_json(json.as_bytes()).unwrap();
    let reference = EnvelopeView::read_json_reference(json.as_bytes()).unwrap();
    let expected = Integrity {
        hash: "aa".into(),
        prev: "bb".into(),
        seq: 7,
        stream: "acme".into(),
    };
    assert_eq!(fast.integrity.as_ref(), Some(&expected));
    assert_eq!(reference.integrity.as_ref(), Some(&expected));
    // The canonical form keeps the seal where canonical order puts it,
    // the same from the view as from the owned envelope.
    let canonical = fast.to_canonical_json();
    assert!(String::from_utf8_lossy(&canonical).contains(&format!("\"id\":\"e-1\",{seal},")));
    let owned = fast.clone().into_owned();
    assert_eq!(owned.to_canonical_json(), canonical);
    // Plugins read sealed events; the relay refuses them on arrival.
    assert!(EnvelopeView::from_json(json.as_bytes()).is_ok());
    for errors in [
        fast.to_validated_json(&Limits::default()).unwrap_err(),
        owned.to_validated_json(&Limits::default()).unwrap_err(),
    ] {
        assert_eq!(errors.0.len(), 1);
        assert_eq!(errors.0[0].field, "integrity");
    }
}
