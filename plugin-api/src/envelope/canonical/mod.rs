//! Canonical JSON encoding of an envelope: RFC 8785 (the JSON
//! Canonicalization Scheme), with one extension for 64-bit integers.
//!
//! - Object keys are sorted by their UTF-16 code units, at every level.
//! - No whitespace; strings escape only `"`, `\` and control characters
//!   (`\b \f \n \r \t`, else `\u00xx`), everything else is written as is.
//! - Numbers are written as ECMAScript writes an IEEE 754 double (the
//!   shortest form that reads back as the same double, `1e21` and up and
//!   below `1e-6` with an exponent; `-0` as `0`) — except integers held
//!   as 64-bit integers, which are written with all their digits. For
//!   every document whose integers lie within ±2^53 that is exactly RFC
//!   8785; above 2^53 a JCS implementation would round such an integer
//!   through a double, and this encoding keeps it.
//!
//! Input never holds a number that would change on the way: the strict
//! reading ([`strict`](super::strict)) refuses those.
//!
//! The struct fields are declared in key order, so the derived `Serialize`
//! writes sorted keys for them. `payload` is free JSON whose map type depends
//! on serde_json's `preserve_order` feature (which any crate in a build may
//! switch on), so it is written through [`sorted`], which sorts object keys
//! itself; `metadata` through [`sorted_labels`]. An
//! [`EnvelopeView`](super::EnvelopeView) writes the same bytes without
//! serde: its fields by hand, its payload from the JSON text ([`text`]),
//! with the helpers below that both ways share.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
use serde_json::Value;
use serde_json::value::RawValue;

use super::AuditEventEnvelope;

pub(crate) mod text;

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

/// `serialize_with` helper: writes `value` canonically (keys in UTF-16
/// order, numbers as RFC 8785 writes them).
pub(crate) fn sorted<S: Serializer>(value: &Value, serializer: S) -> Result<S::Ok, S::Error> {
    SortedValue(value).serialize(serializer)
}

/// `serialize_with` helper: writes string labels with keys in UTF-16 order.
pub(crate) fn sorted_labels<S: Serializer>(
    labels: &BTreeMap<String, String>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    let mut entries: Vec<(&String, &String)> = labels.iter().collect();
    if entries.iter().any(|(key, _)| has_supplementary(key)) {
        entries.sort_by(|a, b| utf16_order(a.0, b.0));
    }
    let mut map = serializer.serialize_map(Some(entries.len()))?;
    for (key, value) in entries {
        map.serialize_entry(key, value)?;
    }
    map.end()
}

/// Whether `text` holds a character outside the Basic Multilingual Plane
/// (four UTF-8 bytes, a surrogate pair in UTF-16): only then can UTF-16
/// order differ from byte order.
fn has_supplementary(text: &str) -> bool {
    text.bytes().any(|b| b >= 0xf0)
}

/// RFC 8785 key order: by UTF-16 code units.
pub(crate) fn utf16_order(a: &str, b: &str) -> Ordering {
    if !has_supplementary(a) && !has_supplementary(b) {
        return a.cmp(b);
    }
    a.encode_utf16().cmp(b.encode_utf16())
}

/// A number as the canonical form writes it: a double as ECMAScript
/// does, a 64-bit integer with all its digits.
pub(crate) fn number_text(number: &serde_json::Number) -> String {
    match number.as_f64() {
        Some(float) if number.is_f64() => es6_number(float),
        _ => number.to_string(),
    }
}

/// Writes `text` as a JSON string, escaped as serde_json escapes it (and
/// RFC 8785 asks): `"`, `\` and control characters only.
pub(crate) fn write_str(text: &str, out: &mut Vec<u8>) {
    let plain = text.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\');
    if plain {
        out.reserve(text.len() + 2);
        out.push(b'"');
        out.extend_from_slice(text.as_bytes());
        out.push(b'"');
    } else {
        serde_json::Serializer::new(out)
            .serialize_str(text)
            .expect("writing to a Vec cannot fail");
    }
}

/// Writes a timestamp as the envelope's `time` (what jiff's `Serialize`
/// writes: RFC 3339 in UTC, `Z`, as few fractional digits as needed).
pub(crate) fn write_time(time: &jiff::Timestamp, out: &mut Vec<u8>) {
    use std::io::Write;
    write!(out, "\"{time}\"").expect("writing to a Vec cannot fail");
}

/// How ECMAScript's `Number.prototype.toString` writes a finite double
/// (ECMA-262 §6.1.6.1.20), which RFC 8785 uses for numbers.
pub fn es6_number(value: f64) -> String {
    if value == 0.0 {
        return "0".into();
    }
    // Rust writes the shortest digits that read back as the same double.
    // When two such digit strings are equally short, ECMAScript takes the
    // one closest to the double's exact value, and the even one on a tie:
    // that is the exact value rounded (half to even) to as many digits, if
    // it reads back as the same double.
    let shortest = format!("{:e}", value.abs());
    let k = shortest
        .split_once('e')
        .expect("{:e} has an exponent")
        .0
        .len();
    let k = if k > 1 { k - 1 } else { k };
    let rounded = format!("{:.*e}", k - 1, value.abs());
    let scientific = if rounded.parse::<f64>() == Ok(value.abs()) {
        rounded
    } else {
        shortest
    };
    let (mantissa, exponent) = scientific.split_once('e').expect("{:e} has an exponent");
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let k = digits.len() as i64;
    // value = 0.d1d2...dk × 10^n
    let n = exponent.parse::<i64>().expect("an integer exponent") + 1;
    let mut out = String::with_capacity(24);
    if value < 0.0 {
        out.push('-');
    }
    if k <= n && n <= 21 {
        out.push_str(&digits);
        out.extend(std::iter::repeat_n('0', (n - k) as usize));
    } else if 0 < n && n <= 21 {
        out.push_str(&digits[..n as usize]);
        out.push('.');
        out.push_str(&digits[n as usize..]);
    } else if -6 < n && n <= 0 {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', (-n) as usize));
        out.push_str(&digits);
    } else {
        out.push_str(&digits[..1]);
        if k > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        out.push('e');
        out.push(if n > 0 { '+' } else { '-' });
        out.push_str(&(n - 1).abs().to_string());
    }
    out
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
                if !entries.is_sorted_by(|a, b| utf16_order(a.0, b.0).is_le()) {
                    entries.sort_unstable_by(|a, b| utf16_order(a.0, b.0));
                }
                let mut map = serializer.serialize_map(Some(entries.len()))?;
                for (key, value) in entries {
                    map.serialize_entry(key, &SortedValue(value))?;
                }
                map.end()
            }
            Value::Number(number) => match number.as_f64() {
                Some(_) if number.is_f64() => RawValue::from_string(number_text(number))
                    .expect("a number is valid JSON")
                    .serialize(serializer),
                _ => number.serialize(serializer),
            },
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
    fn numbers_are_written_as_rfc_8785_writes_them() {
        // Vectors from RFC 8785 appendix B and ECMA-262.
        for (bits, expected) in [
            (0x0000000000000000u64, "0"),
            (0x8000000000000000, "0"),
            (0x0000000000000001, "5e-324"),
            (0x8000000000000001, "-5e-324"),
            (0x7fefffffffffffff, "1.7976931348623157e+308"),
            (0xffefffffffffffff, "-1.7976931348623157e+308"),
            (0x4340000000000000, "9007199254740992"),
            (0xc340000000000000, "-9007199254740992"),
            (0x4430000000000000, "295147905179352830000"),
            (0x44b52d02c7e14af5, "9.999999999999997e+22"),
            (0x44b52d02c7e14af6, "1e+23"),
            (0x44b52d02c7e14af7, "1.0000000000000001e+23"),
            (0x444b1ae4d6e2ef4e, "999999999999999700000"),
            (0x444b1ae4d6e2ef4f, "999999999999999900000"),
            (0x444b1ae4d6e2ef50, "1e+21"),
            (0x3eb0c6f7a0b5ed8c, "9.999999999999997e-7"),
            (0x3eb0c6f7a0b5ed8d, "0.000001"),
            (0x41b3de4355555553, "333333333.3333332"),
            (0x41b3de4355555554, "333333333.33333325"),
            (0x41b3de4355555555, "333333333.3333333"),
            (0x41b3de4355555556, "333333333.3333334"),
            (0x41b3de4355555557, "333333333.33333343"),
            (0xbecbf647612f3696, "-0.0000033333333333333333"),
            (0x43143ff3c1cb0959, "1424953923781206.2"),
        ] {
            assert_eq!(
                super::es6_number(f64::from_bits(bits)),
                expected,
                "{bits:#x}"
            );
        }
    }

    #[test]
    fn keys_sort_by_utf16_code_units() {
        // RFC 8785 §3.2.3: U+1F600 (a surrogate pair, 0xD83D...) sorts
        // before U+FB33 in UTF-16, after it in UTF-8.
        let value = json!({"\u{fb33}": 1, "\u{1f600}": 2, "a": 3, "\u{80}": 4});
        let text = serde_json::to_string(&super::SortedValue(&value)).unwrap();
        assert_eq!(
            text,
            "{\"a\":3,\"\u{80}\":4,\"\u{1f600}\":2,\"\u{fb33}\":1}"
        );
        assert_eq!(
            serde_json::to_string(&super::SortedValue(&json!([
                1.0,
                1e21,
                0.5,
                -0.0,
                10_u64.pow(19)
            ])))
            .unwrap(),
            "[1,1e+21,0.5,0,10000000000000000000]"
        );
    }

    #[test]
    fn time_is_normalised_to_utc() {
        let mut envelope = sample();
        envelope.time = "2026-11-22T12:15:00+02:00".parse().unwrap();
        let text = String::from_utf8(envelope.to_canonical_json()).unwrap();
        assert!(text.contains(r#""time":"2026-11-22T10:15:00Z""#), "{text}");
    }
}
