//! One reading for every input: the JSON rules an envelope's bytes must
//! meet before anything decodes them, so that two readers can never take
//! the same bytes for different events.
//!
//! [`check`] walks a document once and refuses, naming the field:
//!
//! - **duplicate keys** in any object, at any depth (readers disagree on
//!   which copy wins; RFC 8259 §4 leaves it open);
//! - **numbers that cannot be kept exactly**: an integer beyond 64 bits
//!   that no IEEE 754 double holds exactly, a fraction with more precision
//!   than a double keeps, anything that overflows to infinity or
//!   underflows to zero. Everything accepted survives the canonical
//!   encoding with its value unchanged;
//! - **lone surrogates** in `\u` escapes (they are not Unicode text);
//! - nesting deeper than [`MAX_DEPTH`] (a hostile document must not
//!   exhaust a reader's stack);
//! - anything else RFC 8259 does not allow: bytes that are not UTF-8,
//!   unescaped control characters in strings, trailing text.

use std::borrow::Cow;
use std::fmt;

/// Deepest nesting of arrays and objects any document may have: what
/// serde_json reads (its recursion limit), so that nothing the strict
/// reading takes is refused by a serde reader after it.
pub const MAX_DEPTH: usize = 127;

/// Steps of a path shown in a message.
const SHOWN_STEPS: usize = 16;

/// Objects with more keys than this are checked for duplicates through a
/// hash set instead of by comparison.
const LINEAR_KEYS: usize = 16;

/// The bytes that end a run of plain string text: `"`, `\\` and the
/// control characters (refused unescaped).
const ENDS_A_RUN: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 0x20 {
        table[b] = true;
        b += 1;
    }
    table[b'"' as usize] = true;
    table[b'\\' as usize] = true;
    table
};

/// How many bytes of string text start `bytes` before the first `"`,
/// `\\` or control character (all of them if none): eight at a time.
pub(crate) fn plain_run(bytes: &[u8]) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // A byte of `word` is flagged (its high bit set) if it is zero; only
    // the lowest flag is exact, which is the one wanted.
    let zero = |word: u64| word.wrapping_sub(ONES) & !word & HIGH;
    let mut at = 0;
    while let Some(chunk) = bytes.get(at..at + 8) {
        let word = u64::from_le_bytes(chunk.try_into().expect("eight bytes"));
        let below_space = word.wrapping_sub(ONES * 0x20) & !word & HIGH;
        let ends =
            zero(word ^ (ONES * b'"' as u64)) | zero(word ^ (ONES * b'\\' as u64)) | below_space;
        if ends != 0 {
            return at + (ends.trailing_zeros() / 8) as usize;
        }
        at += 8;
    }
    at + bytes[at..]
        .iter()
        .position(|&b| ENDS_A_RUN[b as usize])
        .unwrap_or(bytes.len() - at)
}

/// Why a document was refused, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonProblem {
    /// Dotted path of the field (`payload.items[2].sku`), empty when the
    /// problem is with the document as a whole.
    pub path: String,
    /// What is wrong.
    pub problem: String,
    /// 1-based line of the problem.
    pub line: usize,
    /// 1-based column (in bytes) of the problem.
    pub column: usize,
}

impl fmt::Display for JsonProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        write!(
            f,
            "{} (line {} column {})",
            self.problem, self.line, self.column
        )
    }
}

/// Checks that `bytes` are one JSON value that every reader reads the
/// same way (see the [module docs](self)).
pub fn check(bytes: &[u8]) -> Result<(), JsonProblem> {
    let text = match std::str::from_utf8(bytes) {
        Ok(text) => text,
        Err(error) => {
            return Err(problem_at(
                bytes,
                error.valid_up_to(),
                String::new(),
                "is not UTF-8 text (JSON must be UTF-8, RFC 8259 §8.1)".into(),
            ));
        }
    };
    let mut walk = Walk {
        bytes,
        text,
        at: 0,
        path: Vec::with_capacity(16),
        outer: 0,
        keys: Vec::with_capacity(32),
    };
    walk.skip_space();
    walk.value().map_err(|refusal| *refusal)?;
    walk.skip_space();
    if walk.at < bytes.len() {
        return Err(*walk.fail("has text after the end of the JSON value"));
    }
    Ok(())
}

/// Checks the one JSON value that starts at byte `at` of `text` (space
/// before it allowed), nested `depth` levels deep in its document, by the
/// same rules as [`check`]; where the value ends, or `None` if it breaks
/// a rule (the caller checks the whole document to say which).
pub(crate) fn check_value(text: &str, at: usize, depth: usize) -> Option<usize> {
    let mut walk = Walk {
        bytes: text.as_bytes(),
        text,
        at,
        path: Vec::new(),
        outer: depth,
        keys: Vec::new(),
    };
    walk.skip_space();
    walk.value().ok()?;
    Some(walk.at)
}

/// A refusal on its way out of the walk, boxed so that every step's
/// `Result` stays one word wide.
type Refusal = Box<JsonProblem>;

/// One step of the path to the value being read.
#[derive(Clone, Copy)]
enum Step {
    /// The key at this index of [`Walk::keys`].
    Key(usize),
    Index(usize),
}

struct Walk<'a> {
    bytes: &'a [u8],
    /// The same bytes as text (checked once, up front): strings are cut
    /// from it at ASCII quotes and backslashes, so on character boundaries.
    text: &'a str,
    at: usize,
    path: Vec<Step>,
    /// How deep the value being checked lies in its document.
    outer: usize,
    /// The keys of every object still open, outermost first: one buffer
    /// for the whole walk instead of one per object.
    keys: Vec<Cow<'a, str>>,
}

impl<'a> Walk<'a> {
    fn fail(&self, problem: impl Into<String>) -> Refusal {
        self.fail_at(self.at, problem)
    }

    fn fail_at(&self, at: usize, problem: impl Into<String>) -> Refusal {
        Box::new(problem_at(
            self.bytes,
            at,
            self.render(&self.path),
            problem.into(),
        ))
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn skip_space(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.at += 1;
        }
    }

    fn expect(&mut self, byte: u8, what: &str) -> Result<(), Refusal> {
        if self.peek() == Some(byte) {
            self.at += 1;
            Ok(())
        } else {
            Err(self.unexpected(what))
        }
    }

    fn unexpected(&self, expected: &str) -> Refusal {
        match self.peek() {
            None => self.fail(format!("ends early: expected {expected}")),
            Some(b) if b.is_ascii_graphic() => {
                self.fail(format!("expected {expected}, found `{}`", b as char))
            }
            Some(b) => self.fail(format!("expected {expected}, found byte {b:#04x}")),
        }
    }

    fn value(&mut self) -> Result<(), Refusal> {
        match self.peek() {
            Some(b'{') => self.object(),
            Some(b'[') => self.array(),
            Some(b'"') => self.string().map(|_| ()),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(b't') => self.literal("true"),
            Some(b'f') => self.literal("false"),
            Some(b'n') => self.literal("null"),
            _ => Err(self.unexpected("a JSON value")),
        }
    }

    fn literal(&mut self, word: &str) -> Result<(), Refusal> {
        if self.bytes[self.at..].starts_with(word.as_bytes()) {
            self.at += word.len();
            Ok(())
        } else {
            Err(self.unexpected(&format!("`{word}`")))
        }
    }

    fn nest(&self) -> Result<(), Refusal> {
        if self.outer + self.path.len() >= MAX_DEPTH {
            // Name the last field on the way down, not every array index.
            let named = self
                .path
                .iter()
                .rposition(|step| matches!(step, Step::Key(_)))
                .map_or(0, |i| i + 1);
            return Err(Box::new(problem_at(
                self.bytes,
                self.at,
                self.render(&self.path[..named]),
                format!("nests deeper than {MAX_DEPTH} levels of arrays and objects"),
            )));
        }
        Ok(())
    }

    fn object(&mut self) -> Result<(), Refusal> {
        self.nest()?;
        self.at += 1;
        self.skip_space();
        if self.peek() == Some(b'}') {
            self.at += 1;
            return Ok(());
        }
        let first_key = self.keys.len();
        let mut many: Option<std::collections::HashSet<Cow<'a, str>>> = None;
        loop {
            self.skip_space();
            if self.peek() != Some(b'"') {
                return Err(self.unexpected("a key in double quotes"));
            }
            let key_at = self.at;
            let key = self.string()?;
            let duplicate = match &mut many {
                Some(set) => !set.insert(key.clone()),
                None => {
                    let own = &self.keys[first_key..];
                    if own.len() == LINEAR_KEYS {
                        let mut set: std::collections::HashSet<_> = own.iter().cloned().collect();
                        let duplicate = !set.insert(key.clone());
                        many = Some(set);
                        duplicate
                    } else {
                        own.contains(&key)
                    }
                }
            };
            self.path.push(Step::Key(self.keys.len()));
            self.keys.push(key);
            if duplicate {
                return Err(self.fail_at(
                    key_at,
                    "appears twice in the same object: readers disagree on which copy counts, so send each key once",
                ));
            }
            self.skip_space();
            self.expect(b':', "`:` after the key")?;
            self.skip_space();
            self.value()?;
            self.path.pop();
            self.skip_space();
            match self.peek() {
                Some(b',') => self.at += 1,
                Some(b'}') => {
                    self.at += 1;
                    self.keys.truncate(first_key);
                    return Ok(());
                }
                _ => return Err(self.unexpected("`,` or `}`")),
            }
        }
    }

    fn array(&mut self) -> Result<(), Refusal> {
        self.nest()?;
        self.at += 1;
        self.skip_space();
        if self.peek() == Some(b']') {
            self.at += 1;
            return Ok(());
        }
        let mut index = 0;
        loop {
            self.skip_space();
            self.path.push(Step::Index(index));
            self.value()?;
            self.path.pop();
            self.skip_space();
            match self.peek() {
                Some(b',') => self.at += 1,
                Some(b']') => {
                    self.at += 1;
                    return Ok(());
                }
                _ => return Err(self.unexpected("`,` or `]`")),
            }
            index += 1;
        }
    }

    /// A string at the cursor; its text, unescaped (borrowed when it
    /// holds no escape).
    fn string(&mut self) -> Result<Cow<'a, str>, Refusal> {
        let bytes = self.bytes;
        self.at += 1;
        let start = self.at;
        // Fast path: no escapes, one table lookup per byte.
        self.plain_run()?;
        if bytes.get(self.at) == Some(&b'"') {
            self.at += 1;
            return Ok(Cow::Borrowed(&self.text[start..self.at - 1]));
        }
        let mut text = self.text[start..self.at].to_owned();
        loop {
            let Some(&b) = bytes.get(self.at) else {
                return Err(self.fail_at(start - 1, "is a string that never ends"));
            };
            match b {
                b'"' => {
                    self.at += 1;
                    return Ok(Cow::Owned(text));
                }
                b'\\' => self.escape(&mut text)?,
                // Plain text, or a control character `plain_run` refuses.
                _ => {
                    let run = self.at;
                    self.plain_run()?;
                    text.push_str(&self.text[run..self.at]);
                }
            }
        }
    }

    /// Moves the cursor past string text up to the next `"` or `\\` (or
    /// the end), refusing an unescaped control character on the way.
    fn plain_run(&mut self) -> Result<(), Refusal> {
        let rest = &self.bytes[self.at..];
        let run = plain_run(rest);
        self.at += run;
        match rest.get(run) {
            Some(&b) if b < 0x20 => Err(self.control_character(b)),
            _ => Ok(()),
        }
    }

    fn control_character(&self, byte: u8) -> Refusal {
        self.fail(format!(
            "holds the control character {byte:#04x} unescaped: write it as \\u{byte:04x}"
        ))
    }

    fn escape(&mut self, text: &mut String) -> Result<(), Refusal> {
        let at = self.at;
        self.at += 1;
        let Some(kind) = self.peek() else {
            return Err(self.fail_at(at, "ends inside an escape"));
        };
        self.at += 1;
        let c = match kind {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let unit = self.hex4(at)?;
                match unit {
                    0xd800..=0xdbff => {
                        let low_at = self.at;
                        if !self.bytes[self.at..].starts_with(b"\\u") {
                            return Err(self.lone_surrogate(at, unit));
                        }
                        self.at += 2;
                        let low = self.hex4(low_at)?;
                        if !(0xdc00..=0xdfff).contains(&low) {
                            return Err(self.lone_surrogate(at, unit));
                        }
                        let scalar = 0x10000 + ((unit - 0xd800) << 10) + (low - 0xdc00);
                        char::from_u32(scalar).expect("a valid surrogate pair")
                    }
                    0xdc00..=0xdfff => return Err(self.lone_surrogate(at, unit)),
                    unit => char::from_u32(unit).expect("not a surrogate"),
                }
            }
            _ => {
                return Err(self.fail_at(
                    at,
                    "holds an escape JSON does not define (only \\\" \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX)",
                ));
            }
        };
        text.push(c);
        Ok(())
    }

    fn hex4(&mut self, escape_at: usize) -> Result<u32, Refusal> {
        let digits = self
            .bytes
            .get(self.at..self.at + 4)
            .and_then(|d| std::str::from_utf8(d).ok())
            .and_then(|d| {
                u32::from_str_radix(d, 16)
                    .ok()
                    .filter(|_| d.bytes().all(|b| b.is_ascii_hexdigit()))
            });
        match digits {
            Some(unit) => {
                self.at += 4;
                Ok(unit)
            }
            None => Err(self.fail_at(escape_at, "holds a \\u escape without four hex digits")),
        }
    }

    fn lone_surrogate(&self, at: usize, unit: u32) -> Refusal {
        self.fail_at(
            at,
            format!(
                "holds \\u{unit:04x}, half of a UTF-16 surrogate pair without its other half: that is not Unicode text"
            ),
        )
    }

    fn number(&mut self) -> Result<(), Refusal> {
        let start = self.at;
        let bytes = self.bytes;
        let digits = |walk: &mut Self| {
            let from = walk.at;
            while walk.peek().is_some_and(|b| b.is_ascii_digit()) {
                walk.at += 1;
            }
            walk.at - from
        };
        if self.peek() == Some(b'-') {
            self.at += 1;
        }
        let int_start = self.at;
        match digits(self) {
            0 => return Err(self.unexpected("a digit")),
            n if n > 1 && bytes[int_start] == b'0' => {
                return Err(self.fail_at(int_start, "is a number with a leading zero"));
            }
            _ => {}
        }
        let mut integer = true;
        if self.peek() == Some(b'.') {
            integer = false;
            self.at += 1;
            if digits(self) == 0 {
                return Err(self.unexpected("a digit after the decimal point"));
            }
        }
        if let Some(b'e' | b'E') = self.peek() {
            integer = false;
            self.at += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.at += 1;
            }
            if digits(self) == 0 {
                return Err(self.unexpected("a digit in the exponent"));
            }
        }
        let text = std::str::from_utf8(&bytes[start..self.at]).expect("ASCII");
        match exactness(text, integer) {
            Ok(()) => Ok(()),
            Err(why) => Err(self.fail_at(start, why)),
        }
    }
}

/// Whether the number `text` (valid JSON grammar) is kept exactly: as a
/// 64-bit integer, or as the IEEE 754 double whose shortest decimal form
/// has the same value.
pub(crate) fn exactness(text: &str, integer: bool) -> Result<(), String> {
    if integer && (text.parse::<i64>().is_ok() || text.parse::<u64>().is_ok()) {
        return Ok(());
    }
    if !integer && plainly_exact(text) {
        return Ok(());
    }
    let value: f64 = text.parse().expect("JSON number grammar parses as f64");
    if value.is_infinite() {
        return Err("is a number too large for a 64-bit float: send it as a string".into());
    }
    if decimal(text) == decimal(&format!("{value:e}")) {
        return Ok(());
    }
    Err(if integer {
        "is an integer beyond 64 bits that a 64-bit float cannot hold exactly: send it as a string"
            .into()
    } else if value == 0.0 {
        "is a number too small for a 64-bit float (it would become 0): send it as a string".into()
    } else {
        format!(
            "is a number with more precision than a 64-bit float keeps (it would become {}): send it as a string",
            super::canonical::es6_number(value)
        )
    })
}

/// Whether `text` has at most 15 significant digits and a magnitude far
/// from a double's limits: every such decimal is the shortest form of its
/// nearest double (15 digits is what a double always keeps), so it is
/// kept exactly without parsing and formatting it.
fn plainly_exact(text: &str) -> bool {
    let (mantissa, exponent) = match text.find(['e', 'E']) {
        Some(at) => (&text[..at], text[at + 1..].parse::<i32>().ok()),
        None => (text, Some(0)),
    };
    let significant = mantissa
        .bytes()
        .filter(u8::is_ascii_digit)
        .skip_while(|&d| d == b'0')
        .count();
    exponent.is_some_and(|e| e.abs() <= 250) && mantissa.len() <= 40 && significant <= 15
}

/// A decimal number's value as (negative, significant digits, exponent):
/// `-12.50e1` is `(true, "125", 0)`; every zero is `(false, "", 0)`.
fn decimal(text: &str) -> (bool, String, i64) {
    let (negative, rest) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (mantissa, exponent) = match rest.find(['e', 'E']) {
        Some(at) => (
            &rest[..at],
            rest[at + 1..].parse::<i64>().unwrap_or(i64::MAX / 2),
        ),
        None => (rest, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let mut digits: String = int.chars().chain(frac.chars()).collect();
    let mut exponent = exponent.saturating_sub(frac.len() as i64);
    let leading = digits.len() - digits.trim_start_matches('0').len();
    digits.drain(..leading);
    while digits.ends_with('0') {
        digits.pop();
        exponent = exponent.saturating_add(1);
    }
    if digits.is_empty() {
        return (false, digits, 0);
    }
    (negative, digits, exponent)
}

impl Walk<'_> {
    /// The path as `a.b[2].c`: at most [`SHOWN_STEPS`] steps and 64
    /// characters of each key, so that a hostile document cannot make the
    /// message huge.
    fn render(&self, path: &[Step]) -> String {
        let mut out = String::new();
        for (i, step) in path.iter().enumerate() {
            if i == SHOWN_STEPS {
                out.push_str(&format!("…({} more)", path.len() - SHOWN_STEPS));
                break;
            }
            match step {
                Step::Key(key) => {
                    if !out.is_empty() {
                        out.push('.');
                    }
                    let key: String = self.keys[*key].chars().take(64).collect();
                    out.push_str(&key);
                }
                Step::Index(i) => out.push_str(&format!("[{i}]")),
            }
        }
        out
    }
}

fn problem_at(bytes: &[u8], at: usize, path: String, problem: String) -> JsonProblem {
    let before = &bytes[..at.min(bytes.len())];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let column = at
        - before
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1)
        + 1;
    JsonProblem {
        path,
        problem,
        line,
        column,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(json: &str) -> JsonProblem {
        check(json.as_bytes()).expect_err(json)
    }

    #[test]
    fn well_formed_documents_pass() {
        for json in [
            r#"{"a":1,"b":[true,false,null,"x\"y\u00e9\ud83d\ude00"],"c":{"d":-0.5e-3}}"#,
            "[]",
            "{}",
            " \n\t 3 ",
            r#""\/""#,
            "[9007199254740993, -9223372036854775808, 18446744073709551615]",
            "[0.1, 1e308, 5e-324, 1.7976931348623157e308, 100000000000000000000]",
            "[1.0, 1e2, 1E+2, 0.000, -0, -0.0]",
        ] {
            assert_eq!(check(json.as_bytes()), Ok(()), "{json}");
        }
    }

    #[test]
    fn duplicate_keys_are_refused_at_any_depth_with_their_path() {
        let p = refused(r#"{"payload":{"items":[{"sku":"a","sku":"b"}]}}"#);
        assert_eq!(p.path, "payload.items[0].sku");
        assert!(p.problem.contains("appears twice"), "{p}");
        // Equal after unescaping is equal.
        assert_eq!(refused(r#"{"id":"x","\u0069d":"y"}"#).path, "id");
        // Also in large objects.
        let many: Vec<String> = (0..40).map(|i| format!("\"k{i}\":{i}")).collect();
        let json = format!("{{{},\"k7\":0}}", many.join(","));
        assert_eq!(refused(&json).path, "k7");
    }

    #[test]
    fn numbers_that_cannot_be_kept_exactly_are_refused() {
        for (json, says) in [
            ("123456789012345678901234567890", "beyond 64 bits"),
            ("18446744073709551617", "beyond 64 bits"),
            ("1e-400", "too small"),
            ("1e400", "too large"),
            ("0.1000000000000000000001", "more precision"),
            ("9007199254740993.0", "more precision"),
        ] {
            let p = refused(&format!("{{\"n\":{json}}}"));
            assert_eq!(p.path, "n", "{json}");
            assert!(p.problem.contains(says), "{json}: {p}");
        }
    }

    #[test]
    fn text_that_is_not_unicode_or_not_json_is_refused_where_it_is() {
        let p = refused(r#"{"actor":{"id":"\ud800x"}}"#);
        assert_eq!(p.path, "actor.id");
        assert!(p.problem.contains("surrogate"), "{p}");
        assert!(refused(r#"["\udc00"]"#).problem.contains("surrogate"));
        assert!(refused("\"a\u{1}b\"").problem.contains("control character"));
        assert!(refused("[01]").problem.contains("leading zero"));
        assert!(refused("{\"a\":1} x").problem.contains("after the end"));
        assert!(check(b"[\"\xff\"]").unwrap_err().problem.contains("UTF-8"));
        let deep = "[".repeat(200) + &"]".repeat(200);
        let p = refused(&deep);
        assert!(p.problem.contains("deeper than 127"), "{p}");
        let deep = format!(
            "{{\"a\":{{\"b\":{}1{}}}}}",
            "[".repeat(200),
            "]".repeat(200)
        );
        assert_eq!(refused(&deep).path, "a.b");
        let long = format!("{}[1,]{}", "[".repeat(20), "]".repeat(20));
        assert_eq!(
            refused(&long).path,
            format!("{}…(5 more)", "[0]".repeat(16))
        );
        let p = refused("{\n  \"a\": [1,\n   2,,3]}");
        assert_eq!((p.path.as_str(), p.line, p.column), ("a[2]", 3, 6), "{p}");
    }

    #[test]
    fn the_shortcut_for_short_numbers_agrees_with_the_full_check() {
        let mut checked = 0;
        for digits in [
            "1",
            "5",
            "123456789012345",
            "999999999999999",
            "100000000000000",
        ] {
            for point in 0..digits.len() {
                for exponent in [-250, -17, -1, 0, 3, 22, 250] {
                    let (int, frac) = digits.split_at(point.max(1));
                    let text = if frac.is_empty() {
                        format!("{int}.0e{exponent}")
                    } else {
                        format!("{int}.{frac}e{exponent}")
                    };
                    assert!(plainly_exact(&text), "{text}");
                    let value: f64 = text.parse().unwrap();
                    assert_eq!(decimal(&text), decimal(&format!("{value:e}")), "{text}");
                    checked += 1;
                }
            }
        }
        assert!(checked > 100);
        // Past the shortcut's reach, the full check decides.
        assert!(!plainly_exact("0.1000000000000000000001"));
        assert!(!plainly_exact("1e-400"));
        assert!(!plainly_exact("1e99999999999"));
    }

    #[test]
    fn decimal_values_compare_by_value_not_spelling() {
        assert_eq!(decimal("-12.50e1"), (true, "125".into(), 0));
        assert_eq!(decimal("0.000"), decimal("0"));
        assert_eq!(decimal("-0"), decimal("0"));
        assert_eq!(decimal("1e2"), decimal("100"));
        assert_eq!(decimal("1.5e-7"), (false, "15".into(), -8));
    }
}
