//! Masking a plugin instance's secrets out of everything it says.
//!
//! Every string that crosses from a plugin into the host — log lines,
//! stdout and stderr, error messages, rejection reasons, panic messages,
//! metric names, the hosts it tries to reach — passes through one
//! [`SecretMask`] before it is stored, logged, exported or served. Each
//! granted secret of at least [`MIN_MASKED`] bytes is replaced by `***`
//! wherever it appears:
//!
//! - as it is, and in any letter case;
//! - reversed;
//! - in base64 (standard and URL-safe alphabets, padded or not, at any of
//!   the three alignments it can have inside longer base64 text);
//! - in hex (either case) and percent-encoded;
//! - any run of its characters half its length or longer (at least
//!   [`MIN_MASKED`], at most [`FRAGMENT`]), so that a secret cut in two
//!   (across two calls, or by a length limit) loses both pieces when each
//!   is at least that long — a cut in the middle always is. (So a
//!   secret made of words masks those words wherever they appear, and a
//!   metric name holding one is refused: secrets should be random.)
//!
//! What it cannot promise: a plugin was *given* the secret, so one that is
//! determined to leak it can always send it to a host it may reach, or
//! encode it in a way no mask knows (XOR with a constant, one character
//! per log line). Masking stops accidental leaks and the obvious
//! encodings; `allowed_hosts` is what bounds where a secret can go.

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};

/// Secrets shorter than this are not masked: masking "a" would mangle
/// every line and hide nothing.
pub const MIN_MASKED: usize = 4;
/// Runs of a secret's characters this long are masked on their own (and
/// shorter runs of a short secret, down to half its length).
pub const FRAGMENT: usize = 8;
/// What replaces a masked secret.
const MASK: &str = "***";

/// The masks of one instance's secrets.
#[derive(Clone, Default)]
pub struct SecretMask {
    patterns: Option<AhoCorasick>,
    /// The longest pattern: text cut at a limit is masked with this much
    /// more first, so that no secret straddles the cut.
    longest: usize,
}

impl std::fmt::Debug for SecretMask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretMask(***)")
    }
}

impl SecretMask {
    /// The mask of `secrets` (their values).
    pub fn new<'a>(secrets: impl IntoIterator<Item = &'a str>) -> Self {
        let mut patterns: Vec<Vec<u8>> = Vec::new();
        for secret in secrets {
            if secret.len() < MIN_MASKED {
                continue;
            }
            let bytes = secret.as_bytes();
            let reversed: String = secret.chars().rev().collect();
            patterns.push(bytes.to_vec());
            patterns.push(reversed.as_bytes().to_vec());
            patterns.push(hex::encode(bytes).into_bytes());
            patterns.push(percent_encode(bytes).into_bytes());
            for engine in [&STANDARD, &URL_SAFE] {
                patterns.extend(base64_cores(engine, bytes));
            }
            for engine in [&STANDARD_NO_PAD, &URL_SAFE_NO_PAD, &STANDARD, &URL_SAFE] {
                patterns.push(engine.encode(bytes).into_bytes());
            }
            // Every run of this many characters: a secret cut in two
            // pieces each at least this long loses both of them.
            let fragment = (secret.chars().count() / 2).clamp(MIN_MASKED, FRAGMENT);
            for text in [secret, reversed.as_str()] {
                let chars: Vec<(usize, char)> = text.char_indices().collect();
                if chars.len() > fragment {
                    for window in chars.windows(fragment) {
                        let start = window[0].0;
                        let (last, c) = window[fragment - 1];
                        patterns.push(text.as_bytes()[start..last + c.len_utf8()].to_vec());
                    }
                }
            }
        }
        patterns.retain(|p| p.len() >= MIN_MASKED);
        patterns.sort();
        patterns.dedup();
        if patterns.is_empty() {
            return SecretMask::default();
        }
        let longest = patterns.iter().map(Vec::len).max().unwrap_or(0);
        let automaton = AhoCorasickBuilder::new()
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::Standard)
            .build(&patterns)
            .expect("secret patterns build an automaton");
        SecretMask {
            patterns: Some(automaton),
            longest,
        }
    }

    /// `text` with every occurrence of a secret replaced by `***`.
    pub fn mask<'t>(&self, text: &'t str) -> std::borrow::Cow<'t, str> {
        let Some(patterns) = &self.patterns else {
            return text.into();
        };
        // The union of every match, overlapping ones included: fragments
        // chain over the whole of a partial copy.
        let mut spans: Vec<(usize, usize)> = patterns
            .find_overlapping_iter(text)
            .map(|m| (m.start(), m.end()))
            .collect();
        if spans.is_empty() {
            return text.into();
        }
        spans.sort_unstable();
        let mut out = String::with_capacity(text.len());
        let mut at = 0;
        let mut spans = spans.into_iter().peekable();
        while let Some((start, mut end)) = spans.next() {
            while let Some(&(next_start, next_end)) = spans.peek() {
                if next_start > end {
                    break;
                }
                end = end.max(next_end);
                spans.next();
            }
            let (start, end) = (floor_char(text, start.max(at)), ceil_char(text, end));
            out.push_str(&text[at..start]);
            out.push_str(MASK);
            at = end;
        }
        out.push_str(&text[at..]);
        out.into()
    }

    /// `text` masked and cut to at most `max` bytes (on a character
    /// boundary), with a marker when cut. The text is cut a little past
    /// `max` first, so the work is bounded, and masked before the final
    /// cut, so no secret is split by it.
    pub fn admit(&self, text: &str, max: usize) -> String {
        let rough = cut(text, max.saturating_add(self.longest));
        let masked = self.mask(rough);
        if masked.len() <= max && rough.len() == text.len() {
            return masked.into_owned();
        }
        let kept = cut(&masked, max);
        format!("{kept}… [cut: {} bytes in all]", text.len())
    }
}

/// The parts of a secret's base64 encoding that are the same wherever it
/// starts inside longer encoded text: for each of the three alignments,
/// the encoding of (filler + secret) without the characters that depend on
/// the filler or on what follows.
fn base64_cores(engine: &impl Engine, secret: &[u8]) -> Vec<Vec<u8>> {
    (0..3)
        .map(|shift| {
            let mut bytes = vec![0u8; shift];
            bytes.extend_from_slice(secret);
            let encoded = engine.encode(&bytes);
            let encoded = encoded.trim_end_matches('=');
            // Characters wholly determined by the secret's bytes.
            let skip = (shift * 8).div_ceil(6);
            let total_bits = bytes.len() * 8;
            let keep = total_bits / 6;
            encoded.as_bytes()[skip.min(keep)..keep].to_vec()
        })
        .collect()
}

fn percent_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 3);
    for &b in bytes {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `text` cut to at most `max` bytes on a character boundary.
pub fn cut(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    &text[..floor_char(text, max)]
}

fn floor_char(text: &str, mut at: usize) -> usize {
    at = at.min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

fn ceil_char(text: &str, mut at: usize) -> usize {
    at = at.min(text.len());
    while !text.is_char_boundary(at) {
        at += 1;
    }
    at
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "s3cr3t-T0ken-9f8e7d6c5b4a";

    fn mask() -> SecretMask {
        SecretMask::new([SECRET, "pin"])
    }

    fn leaks(text: &str) -> bool {
        let masked = mask().mask(text).into_owned();
        masked.to_lowercase().contains("9f8e7d6c") || masked.contains(&SECRET[..8])
    }

    #[test]
    fn the_secret_is_masked_as_it_is_and_in_every_common_encoding() {
        let rev: String = SECRET.chars().rev().collect();
        for text in [
            format!("token={SECRET};"),
            format!("upper {}", SECRET.to_uppercase()),
            format!("reversed {rev}"),
            format!("hex {}", hex::encode(SECRET)),
            format!("HEX {}", hex::encode_upper(SECRET)),
            format!("b64 {}", STANDARD.encode(SECRET)),
            format!("url {}", URL_SAFE_NO_PAD.encode(SECRET)),
            format!("basic {}", STANDARD.encode(format!("user:{SECRET}"))),
            format!("shifted {}", STANDARD.encode(format!("xy{SECRET}zz"))),
            format!("pct {}", percent_encode(SECRET.as_bytes())),
            format!("first half {} ", &SECRET[..13]),
            format!("second half {}", &SECRET[13..]),
        ] {
            assert!(!leaks(&text), "{text} -> {}", mask().mask(&text));
            assert!(mask().mask(&text).contains(MASK), "{text}");
        }
        assert_eq!(
            mask().mask("pin 1234, nothing secret"),
            "pin 1234, nothing secret"
        );
    }

    #[test]
    fn a_secret_across_the_cut_is_masked_before_cutting() {
        // Cut at 110 bytes, the plain text would keep the secret's first
        // 10 characters; masked first, it keeps none.
        let text = format!("{}{SECRET}{}", "x".repeat(100), "y".repeat(100));
        let admitted = mask().admit(&text, 110);
        assert!(!admitted.contains(&SECRET[..5]), "{admitted}");
        assert!(
            admitted.starts_with(&format!("{}***yyy", "x".repeat(100))),
            "{admitted}"
        );
        assert!(
            admitted.ends_with("… [cut: 225 bytes in all]"),
            "{admitted}"
        );
        assert_eq!(mask().admit("short", 100), "short");
    }

    #[test]
    fn a_short_secret_split_in_two_loses_both_halves() {
        for secret in ["k3y-9Q2w", "abcdefghijkl", "Tok3n-Secret-1"] {
            let mask = SecretMask::new([secret]);
            let half = secret.len() / 2;
            for part in [&secret[..half], &secret[half..]] {
                let said = format!("part <{part}>");
                assert_eq!(mask.mask(&said), "part <***>", "{secret}: {part}");
            }
        }
        // Pieces shorter than half of it are ordinary text.
        assert_eq!(
            SecretMask::new(["abcdefghijkl"]).mask("abc abcde"),
            "abc abcde"
        );
    }

    #[test]
    fn masking_keeps_character_boundaries() {
        let text = format!("é{SECRET}é and ü");
        assert_eq!(mask().mask(&text), "é***é and ü");
        assert_eq!(
            SecretMask::new(["abc"]).mask("abc"),
            "abc",
            "too short to mask"
        );
    }
}
