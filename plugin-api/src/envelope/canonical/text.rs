//! Canonical JSON written straight from JSON text, for the payload of an
//! [`EnvelopeView`](crate::envelope::EnvelopeView): the bytes the owned
//! envelope gets by parsing the text into a `serde_json::Value` and writing
//! it sorted, without building the tree.
//!
//! The text must have passed the strict reading ([`strict`]
//! (crate::envelope::strict)): it is one JSON value, no key appears twice
//! in an object, every number survives the canonical form. Most text is
//! copied as it is: strings without escapes, integers of up to 18 digits,
//! literals, and the members of objects whose keys are already in order
//! (as they are in anything that was canonical JSON before). Only escaped
//! strings, other numbers and unsorted objects are rewritten.

use std::borrow::Cow;

use super::{number_text, utf16_order, write_str};

/// Appends the canonical form of `text` to `out`.
pub(crate) fn write(text: &str, out: &mut Vec<u8>) {
    let mut walk = Walk {
        text,
        bytes: text.as_bytes(),
        at: 0,
        members: Vec::new(),
    };
    walk.value(out);
}

/// How deeply arrays and objects nest in `text` (0 for a scalar), counted
/// as the owned envelope's validation counts it.
pub(crate) fn depth(text: &str) -> usize {
    let bytes = text.as_bytes();
    let (mut depth, mut deepest) = (0usize, 0usize);
    let mut at = 0;
    while at < bytes.len() {
        match bytes[at] {
            b'"' => at = string_end(bytes, at),
            b'{' | b'[' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
        at += 1;
    }
    deepest
}

/// The index of the quote that closes the string opening at `open`.
fn string_end(bytes: &[u8], open: usize) -> usize {
    let mut at = open + 1;
    while at < bytes.len() {
        match bytes[at] {
            b'"' => return at,
            b'\\' => at += 2,
            _ => at += 1,
        }
    }
    bytes.len()
}

/// One member of an object being written: its key (unescaped, for the
/// order) and where `"key":value` lies in the output.
struct Member<'a> {
    key: Cow<'a, str>,
    start: usize,
    end: usize,
}

struct Walk<'a> {
    text: &'a str,
    bytes: &'a [u8],
    at: usize,
    /// The members of every object still open, outermost first: one
    /// buffer for the whole walk.
    members: Vec<Member<'a>>,
}

impl<'a> Walk<'a> {
    fn skip_space(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.bytes.get(self.at) {
            self.at += 1;
        }
    }

    fn value(&mut self, out: &mut Vec<u8>) {
        self.skip_space();
        match self.bytes.get(self.at) {
            Some(b'{') => self.object(out),
            Some(b'[') => self.array(out),
            Some(b'"') => {
                let (raw, escaped) = self.string();
                if escaped {
                    write_str(&unescape(raw), out);
                } else {
                    out.extend_from_slice(raw.as_bytes());
                }
            }
            Some(b't') => self.literal("true", out),
            Some(b'f') => self.literal("false", out),
            Some(b'n') => self.literal("null", out),
            _ => self.number(out),
        }
    }

    fn literal(&mut self, word: &str, out: &mut Vec<u8>) {
        out.extend_from_slice(word.as_bytes());
        self.at += word.len();
    }

    /// The string at the cursor, quotes included, and whether it has
    /// escapes; the cursor moves past it.
    fn string(&mut self) -> (&'a str, bool) {
        let open = self.at;
        let close = string_end(self.bytes, open);
        self.at = close + 1;
        let raw = &self.text[open..self.at];
        (raw, raw.contains('\\'))
    }

    fn number(&mut self, out: &mut Vec<u8>) {
        let start = self.at;
        while let Some(b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E') = self.bytes.get(self.at) {
            self.at += 1;
        }
        let token = &self.text[start..self.at];
        let digits = token.strip_prefix('-').unwrap_or(token);
        // An integer that fits 64 bits is written as sent; `-0` is not
        // one (it reads as a double).
        let plain_integer = !digits.is_empty()
            && digits.len() <= 18
            && digits.bytes().all(|b| b.is_ascii_digit())
            && !(token.starts_with('-') && digits == "0");
        if plain_integer {
            out.extend_from_slice(token.as_bytes());
        } else {
            let number: serde_json::Number =
                serde_json::from_str(token).expect("the strict reading checked the number");
            out.extend_from_slice(number_text(&number).as_bytes());
        }
    }

    fn array(&mut self, out: &mut Vec<u8>) {
        self.at += 1;
        out.push(b'[');
        self.skip_space();
        if self.bytes.get(self.at) == Some(&b']') {
            self.at += 1;
            out.push(b']');
            return;
        }
        loop {
            self.value(out);
            self.skip_space();
            let next = self.bytes.get(self.at).copied();
            self.at += 1;
            if next == Some(b',') {
                out.push(b',');
            } else {
                break;
            }
        }
        out.push(b']');
    }

    fn object(&mut self, out: &mut Vec<u8>) {
        self.at += 1;
        out.push(b'{');
        let body = out.len();
        let first = self.members.len();
        loop {
            self.skip_space();
            if self.bytes.get(self.at) != Some(&b'"') {
                self.at += 1; // `}` of an empty object
                break;
            }
            if self.members.len() > first {
                out.push(b',');
            }
            let start = out.len();
            let (raw, escaped) = self.string();
            let key = if escaped {
                let key = unescape(raw);
                write_str(&key, out);
                key
            } else {
                out.extend_from_slice(raw.as_bytes());
                Cow::Borrowed(&raw[1..raw.len() - 1])
            };
            self.skip_space();
            self.at += 1; // `:`
            out.push(b':');
            self.value(out);
            self.members.push(Member {
                key,
                start,
                end: out.len(),
            });
            self.skip_space();
            let next = self.bytes.get(self.at).copied();
            self.at += 1;
            if next != Some(b',') {
                break;
            }
        }
        let own = &self.members[first..];
        if !own.is_sorted_by(|a, b| utf16_order(&a.key, &b.key).is_le()) {
            let mut order: Vec<&Member> = own.iter().collect();
            order.sort_unstable_by(|a, b| utf16_order(&a.key, &b.key));
            let written = out[body..].to_vec();
            out.truncate(body);
            for (n, member) in order.into_iter().enumerate() {
                if n > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(&written[member.start - body..member.end - body]);
            }
        }
        self.members.truncate(first);
        out.push(b'}');
    }
}

/// The text of a JSON string with escapes (quotes included).
fn unescape(raw: &str) -> Cow<'static, str> {
    Cow::Owned(serde_json::from_str(raw).expect("the strict reading checked the string"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the owned envelope writes for the same text.
    fn through_value(text: &str) -> String {
        let value: serde_json::Value = serde_json::from_str(text).unwrap();
        serde_json::to_string(&super::super::SortedValue(&value)).unwrap()
    }

    fn canonical(text: &str) -> String {
        let mut out = Vec::new();
        write(text, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn text_is_written_as_the_owned_form_writes_it() {
        for text in [
            r#"{"b": 1, "a": [1, 2.50, -0, 1e2, 1E-7, 12345678901234567890, -9223372036854775808], "c": {}}"#,
            r#"  { "z" : { "y": [ { "k": "v", "a": null } ], "x": true }, "\u0061b": "t\u00e9\n\/" } "#,
            r#"{"\ud83d\ude00": 1, "\ufb33": 2, "a": 3, "é": false}"#,
            r#"[]"#,
            r#""just a \"string\"""#,
            r#"-0.0"#,
            r#"0"#,
            r#"[1.5e300, 5e-324, 0.1, 100000000000000000000, 123456789012345678]"#,
            r#"{"a":{"c":1,"b":2},"A":[{"y":1,"x":2}]}"#,
        ] {
            assert_eq!(canonical(text), through_value(text), "{text}");
        }
    }

    #[test]
    fn depth_counts_arrays_and_objects_not_brackets_in_strings() {
        assert_eq!(depth("1"), 0);
        assert_eq!(depth("{}"), 1);
        assert_eq!(depth(r#"{"a": [[{"b": "[[[{"}]], {}]}"#), 4);
        assert_eq!(depth(r#"["\"]]]", [1]]"#), 2);
    }
}
