//! Canonical JSON encoding of an envelope.
//!
//! The struct fields are declared in key order, so the derived `Serialize`
//! writes sorted keys for them. `payload` is free JSON whose map type depends
//! on serde_json's `preserve_order` feature (which any crate in a build may
//! switch on), so it is written through [`sorted`], which sorts object keys
//! itself.

use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
use serde_json::Value;

use super::AuditEventEnvelope;

impl AuditEventEnvelope {
    /// The canonical JSON encoding (see the [module docs](super)).
    pub fn to_canonical_json(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(512);
        self.write_canonical_json(&mut out);
        out
    }

    /// Appends the canonical JSON encoding to `out`.
    pub fn write_canonical_json(&self, out: &mut Vec<u8>) {
        serde_json::to_writer(out, self)
            .expect("an envelope always serializes: all keys are strings");
    }

    /// Length in bytes of the canonical encoding, without allocating it.
    pub fn canonical_len(&self) -> usize {
        let mut counter = ByteCounter(0);
        serde_json::to_writer(&mut counter, self)
            .expect("an envelope always serializes: all keys are strings");
        counter.0
    }
}

/// `serialize_with` helper: writes `value` with every object's keys in byte order.
pub(crate) fn sorted<S: Serializer>(value: &Value, serializer: S) -> Result<S::Ok, S::Error> {
    SortedValue(value).serialize(serializer)
}

struct SortedValue<'a>(&'a Value);

impl Serialize for SortedValue<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Value::Array(items) => {
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(&SortedValue(item))?;
                }
                seq.end()
            }
            Value::Object(object) => {
                let mut entries: Vec<(&String, &Value)> = object.iter().collect();
                if !entries.is_sorted_by(|a, b| a.0 <= b.0) {
                    entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
                }
                let mut map = serializer.serialize_map(Some(entries.len()))?;
                for (key, value) in entries {
                    map.serialize_entry(key, &SortedValue(value))?;
                }
                map.end()
            }
            scalar => scalar.serialize(serializer),
        }
    }
}

struct ByteCounter(usize);

impl std::io::Write for ByteCounter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::envelope::{Actor, AuditEventEnvelope, Outcome, Target};

    fn sample() -> AuditEventEnvelope {
        AuditEventEnvelope::builder("access-api", "group.member_added")
            .id("0192f5e4-8c1a-7c3e-9b1d-2f6a1c0e4b7d")
            .time("2026-11-22T10:15:00.1234Z".parse().unwrap())
            .actor(Actor::user("u-42").email("ana@acme.test").ip("203.0.113.9"))
            .outcome(Outcome::Success)
            .target(Target::new("group", "g-7").name("oncall"))
            .tenant("acme")
            .reason("rotation")
            .payload(json!({"zeta": 1, "alpha": {"y": [ {"b": 1, "a": 2} ], "x": null}}))
            .metadata("app_version", "3.1.0")
            .build()
            .unwrap()
    }

    #[test]
    fn keys_are_sorted_at_every_level() {
        let bytes = sample().to_canonical_json();
        let text = std::str::from_utf8(&bytes).unwrap();
        assert_eq!(
            text,
            concat!(
                r#"{"action":{"outcome":"success","severity":"info"},"#,
                r#""actor":{"email":"ana@acme.test","id":"u-42","ip":"203.0.113.9","kind":"user"},"#,
                r#""envelope_version":1,"id":"0192f5e4-8c1a-7c3e-9b1d-2f6a1c0e4b7d","#,
                r#""metadata":{"app_version":"3.1.0"},"#,
                r#""payload":{"alpha":{"x":null,"y":[{"a":2,"b":1}]},"zeta":1},"#,
                r#""reason":"rotation","source":"access-api","#,
                r#""target":{"id":"g-7","kind":"group","name":"oncall"},"#,
                r#""tenant":"acme","time":"2026-11-22T10:15:00.1234Z","type":"group.member_added"}"#
            )
        );
    }

    #[test]
    fn decoding_and_reencoding_is_byte_identical() {
        let bytes = sample().to_canonical_json();
        let decoded = AuditEventEnvelope::from_json(&bytes).unwrap();
        assert_eq!(decoded.to_canonical_json(), bytes);
        assert_eq!(decoded.canonical_len(), bytes.len());
    }

    #[test]
    fn time_is_normalised_to_utc() {
        let mut envelope = sample();
        envelope.time = "2026-11-22T12:15:00+02:00".parse().unwrap();
        let text = String::from_utf8(envelope.to_canonical_json()).unwrap();
        assert!(text.contains(r#""time":"2026-11-22T10:15:00Z""#), "{text}");
    }
}
