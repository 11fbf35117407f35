//! The built-in value patterns: secrets recognised by their shape, in any
//! string, whatever key holds them.
//!
//! Each has an exact expression, run on the string values themselves
//! (with a check of its own where the shape alone says too little: the
//! Luhn digit of a card number, the ISO 13616 check digits of an IBAN),
//! and a loose **hint**, run once on an event's canonical JSON: an event
//! in which no hint matches cannot hold the pattern, and is not looked at
//! further. A hint may match where the pattern does not (that costs a
//! closer look), never the other way round.

use regex::Regex;

/// One built-in pattern.
pub(super) struct Pattern {
    pub name: &'static str,
    pub exact: &'static str,
    /// What must be in an event's JSON wherever `exact` can match.
    pub hint: Hint,
    /// A check a match must pass too (`None`: the shape is enough).
    pub check: Option<fn(&str) -> bool>,
}

/// What an event's JSON must hold for a pattern to be in it.
#[derive(Debug, Clone, Copy)]
pub(super) enum Hint {
    /// One of these, in any letter case.
    Literals(&'static [&'static str]),
    /// A match of this (ASCII) expression.
    Shape(&'static str),
}

/// All the hints of the patterns rules use, compiled into one search for
/// the literals and one for the shapes.
pub(super) struct Hints {
    literals: Option<aho_corasick::AhoCorasick>,
    shapes: Option<regex::bytes::RegexSet>,
}

impl Hints {
    pub fn new(hints: &[Hint]) -> Self {
        let literals: Vec<&str> = hints
            .iter()
            .flat_map(|h| match h {
                Hint::Literals(l) => l.to_vec(),
                Hint::Shape(_) => Vec::new(),
            })
            .collect();
        let shapes: Vec<&str> = hints
            .iter()
            .filter_map(|h| match h {
                Hint::Shape(s) => Some(*s),
                Hint::Literals(_) => None,
            })
            .collect();
        Hints {
            literals: (!literals.is_empty()).then(|| {
                aho_corasick::AhoCorasick::builder()
                    .ascii_case_insensitive(true)
                    .kind(Some(aho_corasick::AhoCorasickKind::DFA))
                    .build(&literals)
                    .expect("literal hints compile")
            }),
            shapes: (!shapes.is_empty())
                .then(|| regex::bytes::RegexSet::new(&shapes).expect("shape hints compile")),
        }
    }

    /// Whether any hint is in `json`.
    pub fn any(&self, json: &[u8]) -> bool {
        self.literals.as_ref().is_some_and(|ac| ac.is_match(json))
            || self.shapes.as_ref().is_some_and(|set| set.is_match(json))
    }
}

/// Every built-in pattern, by name.
pub(super) const PATTERNS: &[Pattern] = &[
    Pattern {
        name: "bearer_token",
        exact: r"(?i-u)\bbearer\s+[A-Za-z0-9\-._~+/]+=*",
        hint: Hint::Literals(&["bearer"]),
        check: None,
    },
    Pattern {
        name: "jwt",
        exact: r"(?-u)\beyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*",
        hint: Hint::Literals(&["eyJ"]),
        check: None,
    },
    Pattern {
        name: "aws_access_key_id",
        exact: r"(?-u)\b(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}\b",
        hint: Hint::Literals(&["AKIA", "ASIA", "ABIA", "ACCA"]),
        check: None,
    },
    Pattern {
        // A secret key has no shape of its own (40 base64 characters, as
        // many hashes are): it is recognised next to its name.
        name: "aws_secret_key",
        exact: r#"(?i-u)aws_?secret_?(?:access_?)?key["']?\s*[=:]\s*["']?[A-Za-z0-9/+]{40}"#,
        hint: Hint::Literals(&["aws_secret", "awssecret"]),
        check: None,
    },
    Pattern {
        name: "private_key",
        exact: r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----(?s:.*?)(?:-----END (?:[A-Z0-9]+ )*PRIVATE KEY-----|\z)",
        hint: Hint::Literals(&["-----BEGIN"]),
        check: None,
    },
    Pattern {
        name: "card_number",
        exact: r"(?-u)\b[0-9](?:[ -]?[0-9]){12,18}\b",
        hint: Hint::Shape(r"(?-u)[0-9](?:[ -]?[0-9]){12}"),
        check: Some(luhn),
    },
    Pattern {
        name: "iban",
        exact: r"(?-u)\b[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]){11,30}\b",
        hint: Hint::Shape(r"(?-u)[A-Z]{2}[0-9]{2} ?[A-Z0-9]"),
        check: Some(iban),
    },
];

/// The pattern named `name`.
pub(super) fn named(name: &str) -> Option<&'static Pattern> {
    PATTERNS.iter().find(|p| p.name == name)
}

/// An exact expression with its check, compiled.
pub(super) struct Matcher {
    pub regex: Regex,
    pub check: Option<fn(&str) -> bool>,
}

impl Matcher {
    /// Byte ranges of every match in `text` that passes the check.
    pub fn find(&self, text: &str) -> Vec<std::ops::Range<usize>> {
        self.regex
            .find_iter(text)
            .filter(|m| self.check.is_none_or(|check| check(m.as_str())))
            .map(|m| m.range())
            .collect()
    }
}

/// Whether the digits of `text` (13 to 19 of them) pass the Luhn check.
pub(super) fn luhn(text: &str) -> bool {
    let digits: Vec<u32> = text.chars().filter_map(|c| c.to_digit(10)).collect();
    if !(13..=19).contains(&digits.len()) {
        return false;
    }
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| match i % 2 {
            0 => d,
            _ if d * 2 > 9 => d * 2 - 9,
            _ => d * 2,
        })
        .sum();
    sum.is_multiple_of(10)
}

/// Whether `text` (spaces aside) is an IBAN whose check digits are right
/// (ISO 13616: the number, country and check digits moved to the end and
/// letters counted from 10, leaves 1 modulo 97).
pub(super) fn iban(text: &str) -> bool {
    let compact: Vec<u8> = text.bytes().filter(|b| *b != b' ').collect();
    if !(15..=34).contains(&compact.len()) {
        return false;
    }
    let (head, rest) = compact.split_at(4);
    let mut remainder = 0u32;
    for &b in rest.iter().chain(head) {
        let value = match b {
            b'0'..=b'9' => u32::from(b - b'0'),
            b'A'..=b'Z' => u32::from(b - b'A') + 10,
            _ => return false,
        };
        let width = if value >= 10 { 100 } else { 10 };
        remainder = (remainder * width + value) % 97;
    }
    remainder == 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matcher(name: &str) -> Matcher {
        let pattern = named(name).unwrap();
        Matcher {
            regex: Regex::new(pattern.exact).unwrap(),
            check: pattern.check,
        }
    }

    fn found<'a>(name: &str, text: &'a str) -> Vec<&'a str> {
        matcher(name)
            .find(text)
            .into_iter()
            .map(|r| &text[r])
            .collect()
    }

    #[test]
    fn card_numbers_need_a_right_luhn_digit() {
        assert_eq!(
            found("card_number", "paid with 4111 1111 1111 1111."),
            ["4111 1111 1111 1111"]
        );
        assert_eq!(
            found("card_number", "card 5500-0000-0000-0004 ok"),
            ["5500-0000-0000-0004"]
        );
        assert!(
            found("card_number", "4111 1111 1111 1112").is_empty(),
            "a wrong check digit"
        );
        assert!(found("card_number", "order 1234567890123").is_empty());
        assert!(found("card_number", "phone 12345").is_empty());
    }

    #[test]
    fn ibans_need_right_check_digits() {
        // The examples of the IBAN registry (SWIFT).
        assert_eq!(
            found("iban", "to DE89 3704 0044 0532 0130 00 now"),
            ["DE89 3704 0044 0532 0130 00"]
        );
        assert_eq!(
            found("iban", "GB29NWBK60161331926819"),
            ["GB29NWBK60161331926819"]
        );
        assert!(found("iban", "GB28NWBK60161331926819").is_empty());
    }

    #[test]
    fn tokens_and_keys_are_found_by_shape() {
        let jwt =
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U";
        assert_eq!(found("jwt", &format!("token={jwt};")), [jwt]);
        assert_eq!(
            found("bearer_token", "Authorization: Bearer abc.def-123"),
            ["Bearer abc.def-123"]
        );
        assert_eq!(
            found("aws_access_key_id", "id AKIAIOSFODNN7EXAMPLE here"),
            ["AKIAIOSFODNN7EXAMPLE"]
        );
        assert_eq!(
            found(
                "aws_secret_key",
                "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
            ),
            ["aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"]
        );
        let pem = "-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY-----";
        assert_eq!(found("private_key", &format!("key: {pem} end")), [pem]);
        assert_eq!(
            found("private_key", "-----BEGIN PRIVATE KEY-----\nMIIE cut"),
            ["-----BEGIN PRIVATE KEY-----\nMIIE cut"]
        );
    }

    #[test]
    fn every_hint_matches_wherever_its_pattern_does() {
        let samples = [
            "Bearer x",
            "eyJa.eyJb.c",
            "AKIAIOSFODNN7EXAMPLE",
            "AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            "-----BEGIN EC PRIVATE KEY-----",
            "4111111111111111",
            "DE89370400440532013000",
        ];
        for pattern in PATTERNS {
            let exact = Regex::new(pattern.exact).unwrap();
            let hint = Hints::new(&[pattern.hint]);
            for sample in samples {
                if exact.is_match(sample) {
                    assert!(hint.any(sample.as_bytes()), "{}: {sample}", pattern.name);
                }
            }
        }
    }
}
