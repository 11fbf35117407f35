//! Fuzzing the strict reading and envelope decoding: arbitrary bytes and
//! mutated envelopes never panic; what passes the strict reading is JSON
//! serde_json reads too; an accepted envelope's canonical encoding reads
//! back as the same envelope and encodes to the same bytes.

use auditrelay_plugin_api::envelope::{AuditEventEnvelope, EnvelopeView, strict};
use auditrelay_plugin_api::testing::{Edit, mutate, sample_envelope};
use proptest::prelude::*;

/// JSON-ish text: valid JSON with random keys (duplicates likely) and
/// numbers of every spelling, as a string.
fn jsonish() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just("null".to_owned()),
        Just("true".to_owned()),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<u64>().prop_map(|n| n.to_string()),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| format!("{f:e}")),
        "-?(0|[1-9][0-9]{0,25})(\\.[0-9]{1,25})?([eE][+-]?[0-9]{1,4})?",
        "\"([a-c]|\\\\u00e9|\\\\ud83d\\\\ude00|\\\\ud800|\\\\n| )*\"",
    ];
    leaf.prop_recursive(6, 48, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..5)
                .prop_map(|items| format!("[{}]", items.join(","))),
            proptest::collection::vec(("[a-c]{1,2}", inner), 0..5).prop_map(|members| {
                let members: Vec<String> = members
                    .into_iter()
                    .map(|(k, v)| format!("\"{k}\":{v}"))
                    .collect();
                format!("{{{}}}", members.join(","))
            }),
        ]
    })
}

/// A byte replaced, inserted or removed anywhere.
pub fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<u16>(), any::<u8>()).prop_map(|(at, byte)| Edit::Replace(at, byte)),
        (any::<u16>(), any::<u8>()).prop_map(|(at, byte)| Edit::Insert(at, byte)),
        any::<u16>().prop_map(Edit::Remove),
    ]
}

/// Cases to run: `PROPTEST_CASES` when set (for a longer hunt), else a
/// number that keeps the test suite quick.
fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|cases| cases.parse().ok())
        .unwrap_or(default)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(512)))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = strict::check(&bytes);
        let _ = AuditEventEnvelope::from_json(&bytes);
        if let Ok(view) = EnvelopeView::from_json(&bytes) {
            let _ = view.to_canonical_json();
        }
    }

    #[test]
    fn what_passes_the_strict_reading_every_reader_reads(text in jsonish()) {
        let checked = strict::check(text.as_bytes());
        let parsed = serde_json::from_str::<serde_json::Value>(&text);
        if checked.is_ok() {
            prop_assert!(parsed.is_ok(), "strict accepted what serde_json refuses: {}", text);
        }
        if parsed.is_err() {
            prop_assert!(checked.is_err(), "{}", text);
        }
    }

    #[test]
    fn mutated_envelopes_are_refused_cleanly_or_read_one_way(
        seed in 0..50usize,
        edits in proptest::collection::vec(edit(), 1..4),
    ) {
        let bytes = mutate(sample_envelope(seed).to_canonical_json(), &edits);
        match AuditEventEnvelope::from_json(&bytes) {
            Ok(envelope) => {
                let canonical = envelope.to_canonical_json();
                let again = AuditEventEnvelope::from_json(&canonical).expect("canonical JSON reads back");
                prop_assert_eq!(&again, &envelope);
                prop_assert_eq!(&again.to_canonical_json(), &canonical);
                prop_assert!(strict::check(&canonical).is_ok());
            }
            Err(error) => prop_assert!(!error.to_string().is_empty()),
        }
    }
}
