//! The fast way to read an [`EnvelopeView`]: one pass over the bytes that
//! checks the strict rules and fills the fields as it goes, where the
//! reference reading takes three (UTF-8, [`strict::check`], serde).
//!
//! It only decides, it never explains: anything it does not take — a
//! refusal, and whatever is legal but rare (escaped keys, numbers other
//! than plain integers, `null` where serde would say why) — it leaves to
//! the reference reading, which takes it or names what is wrong. So it
//! must never take what the reference refuses, nor read a field other
//! than the reference does; `tests::fast_and_reference_readings_agree`
//! holds it to that on mutated envelopes.

use std::borrow::Cow;

use serde_json::value::RawValue;

use super::{ActionView, ActorView, EnvelopeView, Label, Scanned, TargetView};
use crate::envelope::canonical::utf16_order;
use crate::envelope::strict::{self, MAX_DEPTH};
use crate::envelope::{ActorKind, Outcome, Severity, parse_rfc3339};

/// The envelope in `bytes`, if the fast reading takes it.
pub(super) fn read(bytes: &[u8]) -> Option<EnvelopeView<'_>> {
    let text = std::str::from_utf8(bytes).ok()?;
    let mut reader = Reader { text, bytes, at: 0 };
    let view = reader.envelope()?;
    reader.space();
    (reader.at == bytes.len()).then_some(view)
}

struct Reader<'a> {
    text: &'a str,
    bytes: &'a [u8],
    at: usize,
}

/// `Some(())` if `seen` did not have `bit` yet (and now has): a key twice
/// is the reference's to refuse.
fn first_time(seen: &mut u32, bit: u32) -> Option<()> {
    let new = *seen & bit == 0;
    *seen |= bit;
    new.then_some(())
}

impl<'a> Reader<'a> {
    fn space(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.bytes.get(self.at) {
            self.at += 1;
        }
    }

    /// The next byte after space, consumed if it is `byte`.
    fn eat(&mut self, byte: u8) -> bool {
        self.space();
        if self.bytes.get(self.at) == Some(&byte) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, byte: u8) -> Option<()> {
        self.eat(byte).then_some(())
    }

    /// Reads `{ "key": value, ... }`, handing each key (unescaped keys
    /// only) to `member`, which reads the value.
    fn object(&mut self, mut member: impl FnMut(&mut Self, &'a str) -> Option<()>) -> Option<()> {
        self.expect(b'{')?;
        if self.eat(b'}') {
            return Some(());
        }
        loop {
            self.space();
            let key = match self.string()? {
                Cow::Borrowed(key) => key,
                Cow::Owned(_) => return None,
            };
            self.expect(b':')?;
            self.space();
            member(self, key)?;
            if self.eat(b'}') {
                return Some(());
            }
            self.expect(b',')?;
        }
    }

    /// A string: borrowed when it has no escapes; `None` for anything but
    /// a well-formed string.
    fn string(&mut self) -> Option<Cow<'a, str>> {
        if self.bytes.get(self.at) != Some(&b'"') {
            return None;
        }
        let start = self.at + 1;
        let mut at = start + strict::plain_run(&self.bytes[start..]);
        match *self.bytes.get(at)? {
            b'"' => {
                self.at = at + 1;
                return Some(Cow::Borrowed(&self.text[start..at]));
            }
            b'\\' => {}
            _ => return None,
        }
        // Escapes: find the end, and let serde_json unescape (it refuses
        // what the strict reading refuses: bad escapes, lone surrogates).
        while let Some(&b) = self.bytes.get(at) {
            match b {
                b'"' => {
                    self.at = at + 1;
                    let quoted = &self.text[start - 1..self.at];
                    return serde_json::from_str::<String>(quoted).ok().map(Cow::Owned);
                }
                b'\\' => at += 2,
                0..0x20 => return None,
                _ => at += 1,
            }
        }
        None
    }

    /// A string or `null`.
    fn optional(&mut self) -> Option<Option<Cow<'a, str>>> {
        if self.bytes[self.at..].starts_with(b"null") {
            self.at += 4;
            return Some(None);
        }
        self.string().map(Some)
    }

    /// A plain unsigned integer (no sign, fraction or exponent).
    fn integer(&mut self) -> Option<u64> {
        let start = self.at;
        while self.bytes.get(self.at).is_some_and(u8::is_ascii_digit) {
            self.at += 1;
        }
        let digits = &self.text[start..self.at];
        let plain = !digits.is_empty() && (digits == "0" || !digits.starts_with('0'));
        let next = self.bytes.get(self.at).copied();
        if !plain || matches!(next, Some(b'.' | b'e' | b'E')) {
            return None;
        }
        digits.parse().ok()
    }

    /// An enum's name: borrowed (an escaped name is the reference's).
    fn name(&mut self) -> Option<&'a str> {
        match self.string()? {
            Cow::Borrowed(name) => Some(name),
            Cow::Owned(_) => None,
        }
    }

    fn envelope(&mut self) -> Option<EnvelopeView<'a>> {
        let (mut action, mut actor, mut id, mut source, mut time, mut event_type) =
            (None, None, None, None, None, None);
        let mut view = EnvelopeView {
            action: ActionView {
                name: None,
                outcome: Outcome::Unknown,
                severity: Severity::Info,
                status_code: None,
            },
            actor: ActorView {
                email: None,
                groups: Vec::new(),
                id: Cow::Borrowed(""),
                ip: None,
                kind: ActorKind::User,
                user_agent: None,
            },
            envelope_version: crate::envelope::ENVELOPE_VERSION,
            id: Cow::Borrowed(""),
            integrity: None,
            metadata: Vec::new(),
            payload: None,
            scanned: None,
            reason: None,
            request_id: None,
            source: Cow::Borrowed(""),
            target: None,
            tenant: None,
            time: jiff::Timestamp::UNIX_EPOCH,
            trace_id: None,
            event_type: Cow::Borrowed(""),
        };
        let mut seen = 0u32;
        self.object(|r, key| {
            match key {
                "action" => {
                    first_time(&mut seen, 1)?;
                    action = Some(r.action()?);
                }
                "actor" => {
                    first_time(&mut seen, 1 << 1)?;
                    actor = Some(r.actor()?);
                }
                "envelope_version" => {
                    first_time(&mut seen, 1 << 2)?;
                    view.envelope_version = r.integer()?.try_into().ok()?;
                }
                "id" => {
                    first_time(&mut seen, 1 << 3)?;
                    id = Some(r.string()?);
                }
                "integrity" => {
                    first_time(&mut seen, 1 << 14)?;
                    view.integrity = Some(r.integrity()?);
                }
                "metadata" => {
                    first_time(&mut seen, 1 << 4)?;
                    view.metadata = r.labels()?;
                }
                "payload" => {
                    first_time(&mut seen, 1 << 5)?;
                    (view.payload, view.scanned) = r.payload()?;
                }
                "reason" => {
                    first_time(&mut seen, 1 << 6)?;
                    view.reason = r.optional()?;
                }
                "request_id" => {
                    first_time(&mut seen, 1 << 7)?;
                    view.request_id = r.optional()?;
                }
                "source" => {
                    first_time(&mut seen, 1 << 8)?;
                    source = Some(r.string()?);
                }
                "target" => {
                    first_time(&mut seen, 1 << 9)?;
                    view.target = r.target()?;
                }
                "tenant" => {
                    first_time(&mut seen, 1 << 10)?;
                    view.tenant = r.optional()?;
                }
                "time" => {
                    first_time(&mut seen, 1 << 11)?;
                    time = Some(parse_rfc3339(&r.string()?).ok()?);
                }
                "trace_id" => {
                    first_time(&mut seen, 1 << 12)?;
                    view.trace_id = r.optional()?;
                }
                "type" => {
                    first_time(&mut seen, 1 << 13)?;
                    event_type = Some(r.string()?);
                }
                _ => return None,
            }
            Some(())
        })?;
        view.action = action?;
        view.actor = actor?;
        view.id = id?;
        view.source = source?;
        view.time = time?;
        view.event_type = event_type?;
        Some(view)
    }

    fn action(&mut self) -> Option<ActionView<'a>> {
        let mut action = ActionView {
            name: None,
            outcome: Outcome::Unknown,
            severity: Severity::Info,
            status_code: None,
        };
        let (mut outcome, mut seen) = (None, 0u32);
        self.object(|r, key| {
            match key {
                "name" => {
                    first_time(&mut seen, 1)?;
                    action.name = r.optional()?;
                }
                "outcome" => {
                    first_time(&mut seen, 1 << 1)?;
                    outcome = Some(match r.name()? {
                        "success" => Outcome::Success,
                        "failure" => Outcome::Failure,
                        "denied" => Outcome::Denied,
                        "unknown" => Outcome::Unknown,
                        _ => return None,
                    });
                }
                "severity" => {
                    first_time(&mut seen, 1 << 2)?;
                    action.severity = match r.name()? {
                        "info" => Severity::Info,
                        "low" => Severity::Low,
                        "medium" => Severity::Medium,
                        "high" => Severity::High,
                        "critical" => Severity::Critical,
                        _ => return None,
                    };
                }
                "status_code" => {
                    first_time(&mut seen, 1 << 3)?;
                    action.status_code = if r.bytes[r.at..].starts_with(b"null") {
                        r.at += 4;
                        None
                    } else {
                        Some(r.integer()?.try_into().ok()?)
                    };
                }
                _ => return None,
            }
            Some(())
        })?;
        action.outcome = outcome?;
        Some(action)
    }

    fn actor(&mut self) -> Option<ActorView<'a>> {
        let mut actor = ActorView {
            email: None,
            groups: Vec::new(),
            id: Cow::Borrowed(""),
            ip: None,
            kind: ActorKind::User,
            user_agent: None,
        };
        let (mut id, mut seen) = (None, 0u32);
        self.object(|r, key| {
            match key {
                "email" => {
                    first_time(&mut seen, 1)?;
                    actor.email = r.optional()?;
                }
                "groups" => {
                    first_time(&mut seen, 1 << 1)?;
                    actor.groups = r.list()?;
                }
                "id" => {
                    first_time(&mut seen, 1 << 2)?;
                    id = Some(r.string()?);
                }
                "ip" => {
                    first_time(&mut seen, 1 << 3)?;
                    actor.ip = r.optional()?;
                }
                "kind" => {
                    first_time(&mut seen, 1 << 4)?;
                    actor.kind = match r.name()? {
                        "user" => ActorKind::User,
                        "service" => ActorKind::Service,
                        "system" => ActorKind::System,
                        "anonymous" => ActorKind::Anonymous,
                        _ => return None,
                    };
                }
                "user_agent" => {
                    first_time(&mut seen, 1 << 5)?;
                    actor.user_agent = r.optional()?;
                }
                _ => return None,
            }
            Some(())
        })?;
        actor.id = id?;
        Some(actor)
    }

    /// `integrity`: the relay's seal, every field present.
    fn integrity(&mut self) -> Option<crate::envelope::Integrity> {
        let (mut hash, mut prev, mut seq, mut stream, mut seen) = (None, None, None, None, 0u32);
        self.object(|r, key| {
            match key {
                "hash" => {
                    first_time(&mut seen, 1)?;
                    hash = Some(r.string()?.into_owned());
                }
                "prev" => {
                    first_time(&mut seen, 1 << 1)?;
                    prev = Some(r.string()?.into_owned());
                }
                "seq" => {
                    first_time(&mut seen, 1 << 2)?;
                    seq = Some(r.integer()?);
                }
                "stream" => {
                    first_time(&mut seen, 1 << 3)?;
                    stream = Some(r.string()?.into_owned());
                }
                _ => return None,
            }
            Some(())
        })?;
        Some(crate::envelope::Integrity {
            hash: hash?,
            prev: prev?,
            seq: seq?,
            stream: stream?,
        })
    }

    /// `target`: an object or `null`.
    fn target(&mut self) -> Option<Option<TargetView<'a>>> {
        if self.bytes[self.at..].starts_with(b"null") {
            self.at += 4;
            return Some(None);
        }
        let (mut id, mut kind, mut name, mut seen) = (None, None, None, 0u32);
        self.object(|r, key| {
            match key {
                "id" => {
                    first_time(&mut seen, 1)?;
                    id = Some(r.string()?);
                }
                "kind" => {
                    first_time(&mut seen, 1 << 1)?;
                    kind = Some(r.string()?);
                }
                "name" => {
                    first_time(&mut seen, 1 << 2)?;
                    name = r.optional()?;
                }
                _ => return None,
            }
            Some(())
        })?;
        Some(Some(TargetView {
            id: id?,
            kind: kind?,
            name,
        }))
    }

    /// `actor.groups`: an array of strings.
    fn list(&mut self) -> Option<Vec<Cow<'a, str>>> {
        self.expect(b'[')?;
        let mut items = Vec::new();
        if self.eat(b']') {
            return Some(items);
        }
        loop {
            self.space();
            items.push(self.string()?);
            if self.eat(b']') {
                return Some(items);
            }
            self.expect(b',')?;
        }
    }

    /// `metadata`: an object of strings, no key twice.
    fn labels(&mut self) -> Option<Vec<Label<'a>>> {
        let mut labels: Vec<Label<'a>> = Vec::new();
        self.object(|r, key| {
            // More than validation allows, or a duplicate: the reference
            // reading (a hash set past 16 keys) decides, never a quadratic scan.
            if labels.len() >= 64 || labels.iter().any(|(k, _)| k == key) {
                return None;
            }
            labels.push((Cow::Borrowed(key), r.string()?));
            Some(())
        })?;
        Some(labels)
    }

    /// `payload`: any JSON value the strict reading takes (`null` is
    /// none), kept as text, with what was learnt about it on the way.
    fn payload(&mut self) -> Option<(Option<&'a RawValue>, Option<Scanned>)> {
        if self.bytes[self.at..].starts_with(b"null") {
            self.at += 4;
            return Some((None, None));
        }
        let start = self.at;
        let mut scan = Scan {
            depth: 0,
            canonical: true,
        };
        // One level down, as in the document: its depth limit holds.
        let scanned = match self.value(1, &mut scan) {
            Some(()) => Some(Scanned {
                depth: scan.depth,
                canonical: scan.canonical,
            }),
            // Beyond what the scan reads (an escaped key, a wide object):
            // the strict walk decides.
            None => {
                self.at = strict::check_value(self.text, start, 1)?;
                None
            }
        };
        let raw: &RawValue = serde_json::from_str(&self.text[start..self.at]).ok()?;
        Some((Some(raw), scanned))
    }

    /// Any JSON value, `depth` levels down in the document, by the strict
    /// rules; `None` also for what the scan leaves to the strict walk.
    fn value(&mut self, depth: usize, scan: &mut Scan) -> Option<()> {
        match *self.bytes.get(self.at)? {
            b'{' | b'[' if depth >= MAX_DEPTH => None,
            b'{' => self.payload_object(depth, scan),
            b'[' => self.payload_array(depth, scan),
            b'"' => {
                if let Cow::Owned(_) = self.string()? {
                    scan.canonical = false;
                }
                Some(())
            }
            b't' => self.word("true"),
            b'f' => self.word("false"),
            b'n' => self.word("null"),
            _ => self.number(scan),
        }
    }

    fn word(&mut self, word: &str) -> Option<()> {
        self.bytes[self.at..]
            .starts_with(word.as_bytes())
            .then(|| self.at += word.len())
    }

    /// A number by JSON's grammar that the canonical form keeps exactly.
    fn number(&mut self, scan: &mut Scan) -> Option<()> {
        let start = self.at;
        let digits = |r: &mut Self| {
            let from = r.at;
            while r.bytes.get(r.at).is_some_and(u8::is_ascii_digit) {
                r.at += 1;
            }
            r.at - from
        };
        if self.bytes.get(self.at) == Some(&b'-') {
            self.at += 1;
        }
        let int_start = self.at;
        match digits(self) {
            0 => return None,
            n if n > 1 && self.bytes[int_start] == b'0' => return None,
            _ => {}
        }
        let mut integer = true;
        if self.bytes.get(self.at) == Some(&b'.') {
            integer = false;
            self.at += 1;
            if digits(self) == 0 {
                return None;
            }
        }
        if let Some(b'e' | b'E') = self.bytes.get(self.at) {
            integer = false;
            self.at += 1;
            if let Some(b'+' | b'-') = self.bytes.get(self.at) {
                self.at += 1;
            }
            if digits(self) == 0 {
                return None;
            }
        }
        let text = &self.text[start..self.at];
        strict::exactness(text, integer).ok()?;
        // The canonical form writes integers of up to 18 digits as they
        // are (not `-0`, which reads as a double).
        let plain = integer && self.at - int_start <= 18 && text != "-0";
        scan.canonical &= plain;
        Some(())
    }

    fn payload_array(&mut self, depth: usize, scan: &mut Scan) -> Option<()> {
        scan.depth = scan.depth.max(depth);
        self.at += 1;
        if self.spaced(scan) == Some(b']') {
            self.at += 1;
            return Some(());
        }
        loop {
            self.spaced(scan);
            self.value(depth + 1, scan)?;
            match self.spaced(scan)? {
                b',' => self.at += 1,
                b']' => {
                    self.at += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// An object whose keys have no escapes and number at most
    /// [`SCANNED_KEYS`] (the duplicate check keeps them on the stack).
    fn payload_object(&mut self, depth: usize, scan: &mut Scan) -> Option<()> {
        scan.depth = scan.depth.max(depth);
        self.at += 1;
        if self.spaced(scan) == Some(b'}') {
            self.at += 1;
            return Some(());
        }
        let mut keys: [&str; SCANNED_KEYS] = [""; SCANNED_KEYS];
        let mut count = 0;
        loop {
            self.spaced(scan);
            let Cow::Borrowed(key) = self.string()? else {
                return None;
            };
            if count == SCANNED_KEYS || keys[..count].contains(&key) {
                return None;
            }
            if count > 0 && utf16_order(keys[count - 1], key).is_ge() {
                scan.canonical = false;
            }
            keys[count] = key;
            count += 1;
            if self.spaced(scan)? != b':' {
                return None;
            }
            self.at += 1;
            self.spaced(scan);
            self.value(depth + 1, scan)?;
            match self.spaced(scan)? {
                b',' => self.at += 1,
                b'}' => {
                    self.at += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// The next byte after space; space makes the text not canonical.
    fn spaced(&mut self, scan: &mut Scan) -> Option<u8> {
        let before = self.at;
        self.space();
        scan.canonical &= self.at == before;
        self.bytes.get(self.at).copied()
    }
}

/// Keys of one payload object the scan checks for duplicates itself.
const SCANNED_KEYS: usize = 16;

/// What the payload scan learns on its way.
struct Scan {
    depth: usize,
    canonical: bool,
}
