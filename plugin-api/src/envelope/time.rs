//! `time` is an RFC 3339 date-time, read strictly.
//!
//! Accepted: `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`, with `t` and `z`
//! also in lower case (RFC 3339 §5.6 allows it). Refused, each with a
//! message saying what to send instead: a missing seconds field, offsets
//! without a colon (`+0000`) or beyond ±23:59, years that are not four
//! digits, a space or anything else in place of `T`, zone names or
//! annotations after the offset, dates that do not exist, and the two
//! things a timestamp cannot keep exactly — a leap second (`:60`) and
//! digits beyond nanoseconds that are not zero. `-00:00` ("offset
//! unknown", RFC 3339 §4.3) is read as UTC.

use jiff::Timestamp;
use jiff::civil::DateTime;
use jiff::tz::Offset;
use serde::Deserializer;

const EXAMPLE: &str = "send e.g. 2026-01-02T03:04:05Z or 2026-01-02T04:04:05.250+01:00";

/// Reads an RFC 3339 date-time; the error says what is wrong, without
/// repeating the value.
pub fn parse_rfc3339(text: &str) -> Result<Timestamp, String> {
    let b = text.as_bytes();
    let fail = |what: &str| {
        Err(format!(
            "{what} (an RFC 3339 date-time is required; {EXAMPLE})"
        ))
    };
    let digits = |range: std::ops::Range<usize>| -> Option<i32> {
        let part = b.get(range)?;
        part.iter()
            .all(u8::is_ascii_digit)
            .then(|| part.iter().fold(0, |n, d| n * 10 + i32::from(d - b'0')))
    };
    let Some(year) = digits(0..4).filter(|_| b.get(4) == Some(&b'-')) else {
        return fail("must start with a four-digit year and `-`");
    };
    let (Some(month), Some(day)) = (
        digits(5..7).filter(|_| b.get(7) == Some(&b'-')),
        digits(8..10),
    ) else {
        return fail("must have the date as YYYY-MM-DD");
    };
    match b.get(10) {
        Some(b'T' | b't') => {}
        Some(b' ') => return fail("must separate date and time with `T`, not a space"),
        None => return fail("has a date but no time"),
        Some(_) => return fail("must separate date and time with `T`"),
    }
    let (Some(hour), Some(minute)) = (
        digits(11..13).filter(|_| b.get(13) == Some(&b':')),
        digits(14..16),
    ) else {
        return fail("must have the time as HH:MM:SS");
    };
    if b.get(16) != Some(&b':') {
        return fail("must have seconds (HH:MM:SS)");
    }
    let Some(second) = digits(17..19) else {
        return fail("must have seconds as two digits (HH:MM:SS)");
    };
    let mut at = 19;
    let mut nanos = 0i32;
    if b.get(at) == Some(&b'.') {
        at += 1;
        let start = at;
        while b.get(at).is_some_and(u8::is_ascii_digit) {
            at += 1;
        }
        let fraction = &text[start..at];
        if fraction.is_empty() {
            return fail("must have digits after the decimal point of the seconds");
        }
        if fraction.len() > 9 && fraction[9..].bytes().any(|d| d != b'0') {
            return fail("has more than nanosecond precision, which a timestamp cannot keep");
        }
        nanos = fraction
            .bytes()
            .take(9)
            .chain(std::iter::repeat(b'0'))
            .take(9)
            .fold(0, |n, d| n * 10 + i32::from(d - b'0'));
    }
    let offset_seconds = match b.get(at) {
        Some(b'Z' | b'z') => {
            at += 1;
            0
        }
        Some(&sign @ (b'+' | b'-')) => {
            let (Some(h), Some(m)) = (
                digits(at + 1..at + 3).filter(|_| b.get(at + 3) == Some(&b':')),
                digits(at + 4..at + 6),
            ) else {
                return fail("must end with Z or an offset written ±HH:MM");
            };
            if h > 23 || m > 59 {
                return fail("has an offset beyond ±23:59");
            }
            at += 6;
            let seconds = h * 3600 + m * 60;
            if sign == b'-' { -seconds } else { seconds }
        }
        None => {
            return fail("must end with Z or an offset (±HH:MM): a time without one is ambiguous");
        }
        Some(_) => return fail("must end with Z or an offset written ±HH:MM"),
    };
    if at != b.len() {
        return fail("has text after the offset (zone names and annotations are not RFC 3339)");
    }
    if second == 60 {
        return Err(format!(
            "is a leap second (:60), which a timestamp cannot keep exactly: send the next second, or :59.999999999 ({EXAMPLE})"
        ));
    }
    let (Ok(month), Ok(day), Ok(hour), Ok(minute), Ok(second)) = (
        i8::try_from(month),
        i8::try_from(day),
        i8::try_from(hour),
        i8::try_from(minute),
        i8::try_from(second),
    ) else {
        return fail("has a field out of range");
    };
    let Ok(year) = i16::try_from(year) else {
        return fail("has a year out of range");
    };
    let civil = DateTime::new(year, month, day, hour, minute, second, nanos).map_err(|_| {
        format!(
            "names a date or time that does not exist, such as February 30 or 24:00 ({EXAMPLE})"
        )
    })?;
    let offset = Offset::from_seconds(offset_seconds).expect("offsets within ±23:59 are valid");
    offset
        .to_timestamp(civil)
        .map_err(|_| format!("lies outside the range a timestamp can hold ({EXAMPLE})"))
}

/// `deserialize_with` for `time`.
pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Timestamp, D::Error> {
    let text = super::view::borrow::text(deserializer)?;
    parse_rfc3339(&text).map_err(serde::de::Error::custom)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> String {
        parse_rfc3339(text).unwrap().to_string()
    }

    #[test]
    fn rfc_3339_date_times_are_read() {
        assert_eq!(at("2026-11-22T10:15:00Z"), "2026-11-22T10:15:00Z");
        assert_eq!(at("2026-11-22t10:15:00.5z"), "2026-11-22T10:15:00.5Z");
        assert_eq!(
            at("2026-11-22T11:15:00.123456789+01:00"),
            "2026-11-22T10:15:00.123456789Z"
        );
        assert_eq!(
            at("2026-11-22T10:15:00.1000000000Z"),
            "2026-11-22T10:15:00.1Z"
        );
        assert_eq!(at("2026-11-22T10:15:00-00:00"), "2026-11-22T10:15:00Z");
        assert_eq!(at("2024-02-29T23:59:59-23:59"), "2024-03-01T23:58:59Z");
    }

    #[test]
    fn everything_else_is_refused_saying_what_is_wrong() {
        for (text, says) in [
            ("2026-11-22T10:15:00+0000", "±HH:MM"),
            ("2026-11-22T10:15Z", "seconds"),
            ("2026-11-22T10:15:00+25:00", "beyond ±23:59"),
            ("+02026-11-22T10:15:00Z", "four-digit year"),
            ("202611-22T10:15:00Z", "four-digit year"),
            ("2026-11-22 10:15:00Z", "not a space"),
            ("2026-11-22T10:15:00Z[Europe/Paris]", "after the offset"),
            ("2026-11-22T10:15:00", "ambiguous"),
            ("2026-11-22", "no time"),
            ("2026-11-22T23:59:60Z", "leap second"),
            ("2026-11-22T10:15:00.1234567891Z", "nanosecond"),
            ("2026-02-30T10:15:00Z", "does not exist"),
            ("2026-11-22T24:00:00Z", "does not exist"),
            ("2026-11-22T10:15:00.Z", "digits after the decimal point"),
            ("yesterday", "four-digit year"),
            ("", "four-digit year"),
        ] {
            let error = parse_rfc3339(text).expect_err(text);
            assert!(error.contains(says), "{text}: {error}");
            assert!(
                !error.contains(text) || text.len() < 5,
                "the value is not repeated: {error}"
            );
        }
    }
}
