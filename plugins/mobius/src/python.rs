//! JSON as Python's `json` module reads and writes it, for the seal check:
//! the hash covers `json.dumps(event, sort_keys=True, separators=(",",
//! ":"))`, so the text must be rebuilt from what Python would have read —
//! integers of any size as they are, `NaN` and `Infinity`, lone
//! surrogates, the last of duplicate keys, nesting as deep as Python
//! allows — not from what serde_json reads (which rounds big integers to
//! floats and refuses the rest).

/// A JSON value as Python holds it.
#[derive(Debug, Clone, PartialEq)]
pub enum Py {
    Null,
    Bool(bool),
    /// An integer, its decimal digits (Python's `int` has any size).
    Int(String),
    Float(f64),
    /// A string as UTF-16 code units (Python's `str` may hold lone
    /// surrogates, which `\ud800` reads as).
    Str(Vec<u16>),
    Array(Vec<Py>),
    /// Members in the order first seen; a repeated key keeps its place
    /// and takes the later value (a `dict` being filled).
    Object(Vec<(Vec<u16>, Py)>),
}

/// Deepest nesting read (Python's own recursion limit is about 1000).
const MAX_DEPTH: usize = 900;

impl Py {
    /// The member `key` of an object.
    pub fn get(&self, key: &str) -> Option<&Py> {
        let Py::Object(members) = self else {
            return None;
        };
        let key: Vec<u16> = key.encode_utf16().collect();
        members.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    /// The object without its member `key`.
    pub fn without(&self, key: &str) -> Py {
        let key: Vec<u16> = key.encode_utf16().collect();
        match self {
            Py::Object(members) => {
                Py::Object(members.iter().filter(|(k, _)| *k != key).cloned().collect())
            }
            other => other.clone(),
        }
    }

    /// mobius-auditlog-py's `prune_empty`: members that are `None`, `""`,
    /// `[]` or `{}` (once pruned) dropped, recursively; list items pruned
    /// but kept.
    pub fn pruned(&self) -> Py {
        match self {
            Py::Object(members) => Py::Object(
                members
                    .iter()
                    .map(|(k, v)| (k.clone(), v.pruned()))
                    .filter(|(_, v)| !v.is_empty())
                    .collect(),
            ),
            Py::Array(items) => Py::Array(items.iter().map(Py::pruned).collect()),
            other => other.clone(),
        }
    }

    fn is_empty(&self) -> bool {
        match self {
            Py::Null => true,
            Py::Str(s) => s.is_empty(),
            Py::Array(a) => a.is_empty(),
            Py::Object(o) => o.is_empty(),
            _ => false,
        }
    }

    /// `json.dumps(self, sort_keys=True, separators=(",", ":"))`.
    pub fn dumps(&self) -> String {
        let mut out = String::new();
        self.write(&mut out);
        out
    }

    fn write(&self, out: &mut String) {
        match self {
            Py::Null => out.push_str("null"),
            Py::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Py::Int(digits) => out.push_str(digits),
            Py::Float(x) => out.push_str(&float_repr(*x)),
            Py::Str(units) => write_str(units, out),
            Py::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    item.write(out);
                }
                out.push(']');
            }
            Py::Object(members) => {
                let mut sorted: Vec<&(Vec<u16>, Py)> = members.iter().collect();
                // Python compares `str`s by code point.
                sorted.sort_by(|a, b| code_points(&a.0).cmp(code_points(&b.0)));
                out.push('{');
                for (i, (key, value)) in sorted.into_iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write_str(key, out);
                    out.push(':');
                    value.write(out);
                }
                out.push('}');
            }
        }
    }

    /// As serde_json holds it (for mapping): big integers become floats,
    /// lone surrogates U+FFFD, and `NaN`, `Infinity` and `-Infinity`,
    /// which JSON cannot carry, their names as strings (`non_finite` is
    /// set when there was one).
    pub fn to_value(&self, non_finite: &mut bool) -> serde_json::Value {
        use serde_json::Value;
        match self {
            Py::Null => Value::Null,
            Py::Bool(b) => Value::Bool(*b),
            Py::Int(digits) => match (digits.parse::<i64>(), digits.parse::<u64>()) {
                (Ok(n), _) => n.into(),
                (_, Ok(n)) => n.into(),
                _ => digits
                    .parse::<f64>()
                    .ok()
                    .and_then(serde_json::Number::from_f64)
                    .map_or(Value::Null, Value::Number),
            },
            Py::Float(x) => match serde_json::Number::from_f64(*x) {
                Some(number) => Value::Number(number),
                None => {
                    *non_finite = true;
                    Value::String(float_repr(*x))
                }
            },
            Py::Str(units) => Value::String(String::from_utf16_lossy(units)),
            Py::Array(items) => {
                Value::Array(items.iter().map(|i| i.to_value(non_finite)).collect())
            }
            Py::Object(members) => Value::Object(
                members
                    .iter()
                    .map(|(k, v)| (String::from_utf16_lossy(k), v.to_value(non_finite)))
                    .collect(),
            ),
        }
    }
}

/// The code points of UTF-16 units, surrogate pairs joined, lone ones as
/// they are.
fn code_points(units: &[u16]) -> impl Iterator<Item = u32> + '_ {
    char::decode_utf16(units.iter().copied()).map(|c| match c {
        Ok(c) => c as u32,
        Err(lone) => u32::from(lone.unpaired_surrogate()),
    })
}

fn write_str(units: &[u16], out: &mut String) {
    out.push('"');
    for &unit in units {
        match unit {
            0x22 => out.push_str("\\\""),
            0x5c => out.push_str("\\\\"),
            0x0a => out.push_str("\\n"),
            0x0d => out.push_str("\\r"),
            0x09 => out.push_str("\\t"),
            0x08 => out.push_str("\\b"),
            0x0c => out.push_str("\\f"),
            0x20..=0x7e => out.push(unit as u8 as char),
            _ => out.push_str(&format!("\\u{unit:04x}")),
        }
    }
    out.push('"');
}

/// A float as Python's `repr`: the shortest digits that read back, fixed
/// notation for exponents from -4 to 15, else `1e+16`, `1.5e-07`.
pub fn float_repr(x: f64) -> String {
    if x.is_nan() {
        return "NaN".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    // `{:e}` gives the shortest round-trip digits: `1.5e16`, `-2e-7`.
    let sci = format!("{x:e}");
    let (mantissa, exponent) = sci.split_once('e').expect("{:e} has an exponent");
    let exponent: i32 = exponent.parse().expect("an integer exponent");
    if (-4..16).contains(&exponent) {
        let fixed = format!("{x}");
        if fixed.contains('.') {
            fixed
        } else {
            format!("{fixed}.0")
        }
    } else {
        let sign = if exponent < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exponent.abs())
    }
}

/// Reads `text` as `json.loads` does.
pub fn loads(text: &[u8]) -> Result<Py, String> {
    let mut reader = Reader { text, at: 0 };
    reader.space();
    let value = reader.value(0)?;
    reader.space();
    if reader.at != text.len() {
        return Err(reader.error("extra data after the value"));
    }
    Ok(value)
}

struct Reader<'t> {
    text: &'t [u8],
    at: usize,
}

impl Reader<'_> {
    fn error(&self, what: &str) -> String {
        format!("not JSON Python reads: {what} at byte {}", self.at)
    }

    fn space(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.text.get(self.at) {
            self.at += 1;
        }
    }

    fn eat(&mut self, word: &str) -> bool {
        if self.text[self.at..].starts_with(word.as_bytes()) {
            self.at += word.len();
            true
        } else {
            false
        }
    }

    fn value(&mut self, depth: usize) -> Result<Py, String> {
        if depth > MAX_DEPTH {
            return Err(self.error("nested too deep"));
        }
        match self.text.get(self.at) {
            None => Err(self.error("a value is missing")),
            Some(b'{') => self.object(depth),
            Some(b'[') => self.array(depth),
            Some(b'"') => Ok(Py::Str(self.string()?)),
            Some(b'-' | b'0'..=b'9') => {
                if self.eat("-Infinity") {
                    return Ok(Py::Float(f64::NEG_INFINITY));
                }
                self.number()
            }
            _ if self.eat("null") => Ok(Py::Null),
            _ if self.eat("true") => Ok(Py::Bool(true)),
            _ if self.eat("false") => Ok(Py::Bool(false)),
            _ if self.eat("NaN") => Ok(Py::Float(f64::NAN)),
            _ if self.eat("Infinity") => Ok(Py::Float(f64::INFINITY)),
            _ => Err(self.error("not a value")),
        }
    }

    fn object(&mut self, depth: usize) -> Result<Py, String> {
        self.at += 1;
        let mut members: Vec<(Vec<u16>, Py)> = Vec::new();
        self.space();
        if self.eat("}") {
            return Ok(Py::Object(members));
        }
        loop {
            self.space();
            if self.text.get(self.at) != Some(&b'"') {
                return Err(self.error("a key must be a string"));
            }
            let key = self.string()?;
            self.space();
            if !self.eat(":") {
                return Err(self.error("':' expected"));
            }
            self.space();
            let value = self.value(depth + 1)?;
            match members.iter_mut().find(|(k, _)| *k == key) {
                Some((_, old)) => *old = value,
                None => members.push((key, value)),
            }
            self.space();
            if self.eat(",") {
                continue;
            }
            if self.eat("}") {
                return Ok(Py::Object(members));
            }
            return Err(self.error("',' or '}' expected"));
        }
    }

    fn array(&mut self, depth: usize) -> Result<Py, String> {
        self.at += 1;
        let mut items = Vec::new();
        self.space();
        if self.eat("]") {
            return Ok(Py::Array(items));
        }
        loop {
            self.space();
            items.push(self.value(depth + 1)?);
            self.space();
            if self.eat(",") {
                continue;
            }
            if self.eat("]") {
                return Ok(Py::Array(items));
            }
            return Err(self.error("',' or ']' expected"));
        }
    }

    fn string(&mut self) -> Result<Vec<u16>, String> {
        self.at += 1;
        let mut units = Vec::new();
        loop {
            let Some(&byte) = self.text.get(self.at) else {
                return Err(self.error("a string is not closed"));
            };
            match byte {
                b'"' => {
                    self.at += 1;
                    return Ok(units);
                }
                b'\\' => {
                    let escape = *self
                        .text
                        .get(self.at + 1)
                        .ok_or_else(|| self.error("an escape is cut"))?;
                    self.at += 2;
                    match escape {
                        b'"' => units.push(0x22),
                        b'\\' => units.push(0x5c),
                        b'/' => units.push(0x2f),
                        b'b' => units.push(0x08),
                        b'f' => units.push(0x0c),
                        b'n' => units.push(0x0a),
                        b'r' => units.push(0x0d),
                        b't' => units.push(0x09),
                        b'u' => {
                            let hex = self
                                .text
                                .get(self.at..self.at + 4)
                                .and_then(|h| std::str::from_utf8(h).ok())
                                .and_then(|h| u16::from_str_radix(h, 16).ok())
                                .ok_or_else(|| self.error("a \\u escape needs four hex digits"))?;
                            self.at += 4;
                            units.push(hex);
                        }
                        _ => return Err(self.error("an unknown escape")),
                    }
                }
                0x00..=0x1f => return Err(self.error("a control character in a string")),
                _ => {
                    // One UTF-8 character, as its UTF-16 units.
                    let rest = &self.text[self.at..];
                    let len = match byte {
                        0x00..=0x7f => 1,
                        0xc0..=0xdf => 2,
                        0xe0..=0xef => 3,
                        _ => 4,
                    };
                    let c = rest
                        .get(..len)
                        .and_then(|b| std::str::from_utf8(b).ok())
                        .and_then(|s| s.chars().next())
                        .ok_or_else(|| self.error("not UTF-8"))?;
                    let mut buf = [0u16; 2];
                    units.extend_from_slice(c.encode_utf16(&mut buf));
                    self.at += len;
                }
            }
        }
    }

    fn number(&mut self) -> Result<Py, String> {
        let start = self.at;
        let digits = |r: &mut Self| {
            let from = r.at;
            while let Some(b'0'..=b'9') = r.text.get(r.at) {
                r.at += 1;
            }
            r.at - from
        };
        self.eat("-");
        match self.text.get(self.at) {
            Some(b'0') => self.at += 1,
            Some(b'1'..=b'9') => {
                digits(self);
            }
            _ => return Err(self.error("a number needs digits")),
        }
        let mut float = false;
        if self.text.get(self.at) == Some(&b'.')
            && matches!(self.text.get(self.at + 1), Some(b'0'..=b'9'))
        {
            self.at += 1;
            digits(self);
            float = true;
        }
        if let Some(b'e' | b'E') = self.text.get(self.at) {
            let mark = self.at;
            self.at += 1;
            if let Some(b'+' | b'-') = self.text.get(self.at) {
                self.at += 1;
            }
            if digits(self) == 0 {
                self.at = mark;
            } else {
                float = true;
            }
        }
        let text = std::str::from_utf8(&self.text[start..self.at]).expect("ASCII digits");
        if float {
            text.parse::<f64>()
                .map(Py::Float)
                .map_err(|_| self.error("a float"))
        } else if text == "-0" {
            Ok(Py::Int("0".into()))
        } else {
            Ok(Py::Int(text.to_owned()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What Python 3.11 prints for `repr` of each (checked by hand).
    #[test]
    fn floats_are_written_as_python_writes_them() {
        for (x, python) in [
            (0.1, "0.1"),
            (1.0, "1.0"),
            (-2.5, "-2.5"),
            (1e16, "1e+16"),
            (1.5e16, "1.5e+16"),
            (1e15, "1000000000000000.0"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.5e-7, "1.5e-07"),
            (123456.789, "123456.789"),
            (-0.0, "-0.0"),
            (5e-324, "5e-324"),
        ] {
            assert_eq!(float_repr(x), python, "{x}");
        }
    }

    /// Each read and written back as `json.dumps(json.loads(text),
    /// sort_keys=True, separators=(",", ":"))` prints it (Python 3.11).
    #[test]
    fn text_round_trips_as_python_does() {
        for (text, python) in [
            (
                r#"{"b":1,"a":[true,null,-0,1.0]}"#,
                r#"{"a":[true,null,0,1.0],"b":1}"#,
            ),
            (
                r#"{"n":18446744073709551616}"#,
                r#"{"n":18446744073709551616}"#,
            ),
            (
                r#"[NaN,Infinity,-Infinity,1e400]"#,
                r#"[NaN,Infinity,-Infinity,Infinity]"#,
            ),
            (r#""\ud800""#, r#""\ud800""#),
            ("\"é😀\\/\u{7f}\"", r#""\u00e9\ud83d\ude00/\u007f""#),
            (r#"{"a":1,"a":2}"#, r#"{"a":2}"#),
            (
                "{\"\u{ff71}\":1,\"\u{1f600}\":2}",
                r#"{"\uff71":1,"\ud83d\ude00":2}"#,
            ),
        ] {
            assert_eq!(loads(text.as_bytes()).unwrap().dumps(), python, "{text}");
        }
        for bad in ["{", "[1,]", "\"a\nb\"", "01", "{1:2}", "tru"] {
            assert!(loads(bad.as_bytes()).is_err(), "{bad}");
        }
    }
}
