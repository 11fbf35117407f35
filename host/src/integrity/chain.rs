//! The hash chain: how the relay seals each event to the one before it in
//! its stream, and how anyone reads a seal back.
//!
//! An event's seal is the envelope's `integrity` member
//! ([`auditrelay_plugin_api::envelope::Integrity`]):
//!
//! ```text
//! digest = SHA-256(canonical JSON of the event without "integrity")
//! hash   = SHA-256(canonical JSON of {"digest":hex(digest),"prev":hex(prev),"seq":seq,"stream":stream})
//! ```
//!
//! `prev` is the `hash` of the stream's event `seq - 1` (64 zeros before
//! the first, `seq` 1). Editing an event changes its digest; deleting,
//! inserting or swapping events breaks the links; and the hashes are the
//! leaves of the stream's Merkle tree ([`super::tree`]), whose signed
//! checkpoints no one without the key can forge.
//!
//! Sealing inserts the member where canonical order puts it (after `id`,
//! before every later key), so a sealed event is canonical JSON too.
//! Reading one back ([`Opened::read`]) finds the member without decoding
//! the rest, which is what lets `auditrelay verify` check a million
//! events a second.

use std::borrow::Cow;

use auditrelay_plugin_api::envelope::EnvelopeView;
use sha2::{Digest, Sha256};

use super::merkle::Hash;

/// The `prev` of a stream's first event.
pub const GENESIS: Hash = [0; 32];

/// The last event of a stream: what the next one links to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Head {
    /// Its sequence number (0: the stream has no event yet).
    pub seq: u64,
    /// Its chain hash ([`GENESIS`] before the first event).
    pub hash: Hash,
}

/// Which field of an event names its stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StreamKey {
    /// One stream per tenant (events without one share the stream `""`).
    #[default]
    Tenant,
    /// One stream per source.
    Source,
    /// One stream for everything.
    All,
}

impl StreamKey {
    /// The stream of an event with this tenant and source.
    pub fn stream<'a>(self, tenant: Option<&'a str>, source: &'a str) -> &'a str {
        match self {
            StreamKey::Tenant => tenant.unwrap_or(""),
            StreamKey::Source => source,
            StreamKey::All => "",
        }
    }
}

/// SHA-256 of an event's canonical JSON without its seal (given in two
/// pieces: what lies before and after the `integrity` member).
pub fn digest(before: &[u8], after: &[u8]) -> Hash {
    let mut sha = Sha256::new();
    sha.update(before);
    sha.update(after);
    sha.finalize().into()
}

/// The chain hash of the event with `digest` at `seq` of `stream`, after
/// the event whose hash is `prev`.
pub fn link(digest: &Hash, prev: &Hash, seq: u64, stream: &str) -> Hash {
    // Hashed as it is written, without building the text: this runs once
    // per event sealed and once per event verified.
    let mut sha = Sha256::new();
    write_fields("digest", digest, prev, seq, stream, &mut sha);
    sha.finalize().into()
}

/// Where [`write_fields`] writes: a buffer, or a hash fed directly.
trait Sink {
    fn put(&mut self, bytes: &[u8]);
}

impl Sink for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

impl Sink for Sha256 {
    fn put(&mut self, bytes: &[u8]) {
        self.update(bytes);
    }
}

/// `{"<first>":"<hex>","prev":"<hex>","seq":<n>,"stream":"<stream>"}`:
/// the link's text (`digest` first) and the seal's (`hash` first).
fn write_fields(
    first: &str,
    hash: &Hash,
    prev: &Hash,
    seq: u64,
    stream: &str,
    out: &mut impl Sink,
) {
    out.put(b"{\"");
    out.put(first.as_bytes());
    out.put(b"\":\"");
    out.put(&to_hex(hash));
    out.put(b"\",\"prev\":\"");
    out.put(&to_hex(prev));
    out.put(b"\",\"seq\":");
    out.put(itoa::Buffer::new().format(seq).as_bytes());
    out.put(b",\"stream\":");
    write_json_string(stream, out);
    out.put(b"}");
}

/// A hash in lower-case hex.
fn to_hex(hash: &Hash) -> [u8; 64] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = [0u8; 64];
    for (pair, byte) in text.chunks_exact_mut(2).zip(hash) {
        pair[0] = DIGITS[usize::from(byte >> 4)];
        pair[1] = DIGITS[usize::from(byte & 0xf)];
    }
    text
}

/// Seals `content` (canonical envelope JSON without a seal) as the next
/// event of `stream` after `head`, which it advances. Returns the sealed
/// JSON.
pub fn seal(content: &[u8], stream: &str, head: &mut Head) -> Vec<u8> {
    let at = member_position(content).expect("the relay seals only canonical envelopes it encoded");
    let seq = head.seq + 1;
    let hash = link(&digest(content, &[]), &head.hash, seq, stream);
    let mut sealed = Vec::with_capacity(content.len() + member_len_bound(stream));
    sealed.extend_from_slice(&content[..at]);
    write_member(&hash, &head.hash, seq, stream, &mut sealed);
    sealed.extend_from_slice(&content[at..]);
    *head = Head { seq, hash };
    sealed
}

/// At most how many bytes sealing adds to an event of `stream`.
pub fn member_len_bound(stream: &str) -> usize {
    // `"integrity":{"hash":"…","prev":"…","seq":…,"stream":"…"},` with
    // two 64-digit hashes, up to 20 digits, and each stream byte escaped
    // as at most `\u00XX`.
    180 + 20 + 6 * stream.len()
}

fn write_member(hash: &Hash, prev: &Hash, seq: u64, stream: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(b"\"integrity\":");
    write_fields("hash", hash, prev, seq, stream, out);
    out.push(b',');
}

/// A string as canonical JSON writes it (escaping only `"`, `\\` and
/// control characters).
fn write_json_string(text: &str, out: &mut impl Sink) {
    if !text.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\') {
        out.put(b"\"");
        out.put(text.as_bytes());
        out.put(b"\"");
        return;
    }
    let mut escaped = Vec::with_capacity(text.len() + 8);
    serde_json::to_writer(&mut escaped, text).expect("a string always serializes");
    out.put(&escaped);
}

/// Where the `integrity` member goes in a canonical envelope: at the start
/// of the first top-level member whose key sorts after it (there always
/// is one: `source` is required).
fn member_position(content: &[u8]) -> Option<usize> {
    let mut scan = TopLevel::new(content)?;
    while let Some((key, start)) = scan.next_key()? {
        if key > &b"integrity"[..] {
            return Some(start);
        }
        scan.skip_value()?;
    }
    None
}

/// A sealed event read back: its seal and the bytes it sealed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened<'a> {
    /// The stream.
    pub stream: Cow<'a, str>,
    /// The sequence number.
    pub seq: u64,
    /// The previous event's hash, as the seal states it.
    pub prev: Hash,
    /// The event's hash, as the seal states it.
    pub hash: Hash,
    /// SHA-256 of the event without its seal, as the bytes are now.
    pub digest: Hash,
    /// The event's `id`.
    pub id: Cow<'a, str>,
}

impl<'a> Opened<'a> {
    /// Reads the seal of one event's JSON: at once when the JSON is as the
    /// relay wrote it (canonical), else by decoding it strictly and
    /// encoding it canonically again (a destination may have reformatted
    /// it). `None`: not an envelope, or one without a seal.
    pub fn read(json: &'a [u8]) -> Option<Opened<'a>> {
        Self::read_canonical(json).or_else(|| Self::read_any(json))
    }

    /// Whether the seal holds: the event hashes to what it states.
    pub fn holds(&self) -> bool {
        link(&self.digest, &self.prev, self.seq, &self.stream) == self.hash
    }

    /// The fast way: the member found in place in canonical JSON.
    fn read_canonical(json: &'a [u8]) -> Option<Opened<'a>> {
        let found = find_member(json)?;
        Some(Opened {
            digest: digest(&json[..found.start], &json[found.end..]),
            stream: found.member.stream,
            seq: found.member.seq,
            prev: found.member.prev,
            hash: found.member.hash,
            id: found.id,
        })
    }

    /// The slow way: decode, drop the seal, encode canonically.
    fn read_any(json: &[u8]) -> Option<Opened<'a>> {
        let mut view = EnvelopeView::read_json(json).ok()?;
        let seal = view.integrity.take()?;
        let content = view.to_canonical_json();
        Some(Opened {
            stream: Cow::Owned(seal.stream),
            seq: seal.seq,
            prev: parse_hash(&seal.prev)?,
            hash: parse_hash(&seal.hash)?,
            digest: digest(&content, &[]),
            id: Cow::Owned(view.id.into_owned()),
        })
    }
}

/// The seal of canonical JSON as the relay wrote it (stream, seq, prev,
/// hash), without hashing the event: for replaying the spool's own
/// records, which need no checking.
pub fn seal_of(json: &[u8]) -> Option<(Cow<'_, str>, u64, Hash, Hash)> {
    let member = find_member(json)?.member;
    Some((member.stream, member.seq, member.prev, member.hash))
}

/// A canonical event's bytes without its seal, in two pieces (before and
/// after it); the whole JSON and nothing when it has none.
pub fn without_seal(json: &[u8]) -> (&[u8], &[u8]) {
    match find_member(json) {
        Some(found) => (&json[..found.start], &json[found.end..]),
        None => (json, &[]),
    }
}

/// The `integrity` member of canonical JSON, where the relay put it.
struct Found<'a> {
    member: Member<'a>,
    /// Where the member starts, and where what follows its comma does.
    start: usize,
    end: usize,
    id: Cow<'a, str>,
}

fn find_member(json: &[u8]) -> Option<Found<'_>> {
    let mut scan = TopLevel::new(json)?;
    let mut id = None;
    while let Some((key, start)) = scan.next_key()? {
        match key {
            b"id" => id = Some(scan.string_value()?),
            b"integrity" => {
                let member = Member::parse(&json[scan.at..])?;
                let end = scan.at + member.len;
                // The member must be followed by another (it is never
                // last), and its comma is part of what was inserted.
                if json.get(end) != Some(&b',') {
                    return None;
                }
                return Some(Found {
                    member,
                    start,
                    end: end + 1,
                    id: id?,
                });
            }
            _ if key > &b"integrity"[..] => return None,
            _ => scan.skip_value()?,
        }
    }
    None
}

/// A hash in lower-case hex.
pub fn parse_hash(text: &str) -> Option<Hash> {
    from_hex(text.as_bytes())
}

/// 64 lower-case hex digits as a hash (upper case is not canonical).
fn from_hex(text: &[u8]) -> Option<Hash> {
    /// Each byte's value as a lower-case hex digit; 0xff: not one.
    const NIBBLES: [u8; 256] = {
        let mut table = [0xff; 256];
        let mut i = 0;
        while i < 16 {
            table[b"0123456789abcdef"[i] as usize] = i as u8;
            i += 1;
        }
        table
    };
    if text.len() != 64 {
        return None;
    }
    let mut hash = [0; 32];
    let mut invalid = 0;
    for (byte, pair) in hash.iter_mut().zip(text.chunks_exact(2)) {
        let (high, low) = (NIBBLES[usize::from(pair[0])], NIBBLES[usize::from(pair[1])]);
        invalid |= high | low;
        *byte = high << 4 | low;
    }
    // One test for all 64 digits: 0xff has the high bits no digit has.
    (invalid & 0xf0 == 0).then_some(hash)
}

/// The `integrity` member's value exactly as [`seal`] writes it.
struct Member<'a> {
    hash: Hash,
    prev: Hash,
    seq: u64,
    stream: Cow<'a, str>,
    /// Bytes from `{` to `}`.
    len: usize,
}

impl<'a> Member<'a> {
    fn parse(bytes: &'a [u8]) -> Option<Member<'a>> {
        let rest = bytes.strip_prefix(b"{\"hash\":\"")?;
        let (hash, rest) = hex_then(rest, b"\",\"prev\":\"")?;
        let (prev, rest) = hex_then(rest, b"\",\"seq\":")?;
        let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        let seq_text = std::str::from_utf8(&rest[..digits]).ok()?;
        if seq_text.is_empty() || seq_text.len() > 1 && seq_text.starts_with('0') {
            return None;
        }
        let seq = seq_text.parse().ok()?;
        let rest = rest[digits..].strip_prefix(b",\"stream\":")?;
        let string_len = json_string_len(rest)?;
        let stream = unescape(&rest[..string_len])?;
        let rest = rest[string_len..].strip_prefix(b"}")?;
        Some(Member {
            hash,
            prev,
            seq,
            stream,
            len: bytes.len() - rest.len(),
        })
    }
}

/// 64 hex digits, then `then`.
fn hex_then<'b>(bytes: &'b [u8], then: &[u8]) -> Option<(Hash, &'b [u8])> {
    Some((from_hex(bytes.get(..64)?)?, bytes[64..].strip_prefix(then)?))
}

/// The length of the JSON string at the start of `bytes`, quotes included.
fn json_string_len(bytes: &[u8]) -> Option<usize> {
    if bytes.first() != Some(&b'"') {
        return None;
    }
    let mut at = 1;
    loop {
        // Keys and most values are short: a plain loop beats setting up
        // a vectorised search for each.
        at += bytes
            .get(at..)?
            .iter()
            .position(|&b| b == b'"' || b == b'\\')?;
        match bytes[at] {
            b'\\' => at += 2,
            _ => return Some(at + 1),
        }
    }
}

/// A JSON string's text (quotes included in `quoted`): borrowed unless
/// it holds an escape.
fn unescape(quoted: &[u8]) -> Option<Cow<'_, str>> {
    let inner = &quoted[1..quoted.len() - 1];
    match memchr::memchr(b'\\', inner) {
        None => std::str::from_utf8(inner).ok().map(Cow::Borrowed),
        Some(_) => serde_json::from_slice::<String>(quoted)
            .ok()
            .map(Cow::Owned),
    }
}

/// Walks the top-level members of a compact JSON object (no whitespace,
/// as canonical JSON is). Anything else ends the walk with `None`.
struct TopLevel<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> TopLevel<'a> {
    fn new(bytes: &'a [u8]) -> Option<Self> {
        (bytes.first() == Some(&b'{')).then_some(TopLevel { bytes, at: 1 })
    }

    /// The next key (raw, between its quotes) and where its member starts;
    /// `Some(None)` at the end of the object.
    fn next_key(&mut self) -> Option<Option<(&'a [u8], usize)>> {
        match self.bytes.get(self.at)? {
            b'}' => return Some(None),
            b',' if self.at > 1 => self.at += 1,
            _ if self.at == 1 => {}
            _ => return None,
        }
        let start = self.at;
        let len = json_string_len(&self.bytes[start..])?;
        let key = &self.bytes[start + 1..start + len - 1];
        self.at = start + len;
        if self.bytes.get(self.at) != Some(&b':') {
            return None;
        }
        self.at += 1;
        Some(Some((key, start)))
    }

    /// A string value, unescaped.
    fn string_value(&mut self) -> Option<Cow<'a, str>> {
        let len = json_string_len(&self.bytes[self.at..])?;
        let text = &self.bytes[self.at..self.at + len];
        self.at += len;
        unescape(text)
    }

    /// Steps over one value.
    fn skip_value(&mut self) -> Option<()> {
        let mut depth = 0usize;
        loop {
            match *self.bytes.get(self.at)? {
                b'"' => self.at += json_string_len(&self.bytes[self.at..])?,
                b'{' | b'[' => {
                    depth += 1;
                    self.at += 1;
                }
                b'}' | b']' if depth > 0 => {
                    depth -= 1;
                    self.at += 1;
                }
                b',' | b'}' if depth == 0 => return Some(()),
                _ => self.at += 1,
            }
            if depth == 0 && matches!(self.bytes.get(self.at), Some(b',' | b'}')) {
                return Some(());
            }
        }
    }
}

#[cfg(test)]
mod tests;
