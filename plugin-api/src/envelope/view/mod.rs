//! [`EnvelopeView`]: an envelope read in place from its JSON bytes.
//!
//! For code that reads an event's fields and lets go — the relay's intake,
//! an exporter that indexes or filters by field, a mapper — decoding into
//! [`AuditEventEnvelope`] allocates every string and builds the payload as
//! a tree, only to drop them. A view borrows instead: a string without
//! escapes is a slice of the input, `payload` stays JSON text, and nothing
//! is copied until it is kept ([`EnvelopeView::into_owned`]).
//!
//! ```
//! use auditrelay_plugin_api::envelope::EnvelopeView;
//!
//! let json = br#"{"action":{"outcome":"denied"},"actor":{"id":"u-7"},
//!   "id":"e-1","source":"billing","time":"2026-01-02T03:04:05Z","type":"invoice.voided",
//!   "payload":{"invoice":"in-9"}}"#;
//! let event = EnvelopeView::from_json(json).unwrap();
//! assert_eq!(event.actor.id, "u-7");
//! assert_eq!(event.payload.unwrap().get(), r#"{"invoice":"in-9"}"#);
//! // What the relay stores, written straight from the view:
//! assert!(event.to_canonical_json().starts_with(br#"{"action":{"outcome":"denied","severity":"info"}"#));
//! ```
//!
//! A view keeps every rule the owned type keeps: it is read as strictly
//! ([`strict`](super::strict)), checked against the same [`Limits`], and
//! encodes to the same canonical bytes.

use std::borrow::Cow;
use std::fmt;

use jiff::Timestamp;
use serde::Deserialize;
use serde::de::{Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

mod fast;

use super::canonical::{self, utf16_order};
use super::strict;
use super::validate::{Fields, ValidationErrors};
use super::{
    Action, Actor, ActorKind, AuditEventEnvelope, EnvelopeError, Integrity, Limits, Outcome,
    Severity, Target,
};

/// An envelope borrowed from its JSON. Fields mean what they mean in
/// [`AuditEventEnvelope`]; strings are [`Cow`]s (borrowed unless the JSON
/// escaped something in them), `payload` is the JSON text as sent.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename = "AuditEventEnvelope", deny_unknown_fields)]
pub struct EnvelopeView<'a> {
    /// What was done and how it ended.
    #[serde(borrow)]
    pub action: ActionView<'a>,
    /// Who did it.
    #[serde(borrow)]
    pub actor: ActorView<'a>,
    /// Schema version of the envelope.
    #[serde(default = "super::default_envelope_version")]
    pub envelope_version: u32,
    /// Unique per `source`.
    #[serde(borrow)]
    pub id: Cow<'a, str>,
    /// The relay's seal (see [`Integrity`]).
    #[serde(default)]
    pub integrity: Option<Integrity>,
    /// String labels, in the order the JSON has them.
    #[serde(default, deserialize_with = "borrow::labels")]
    pub metadata: Vec<Label<'a>>,
    /// Domain data of the change, as JSON text (`None` when absent or
    /// `null`).
    #[serde(borrow, default)]
    pub payload: Option<&'a RawValue>,
    /// What the fast reading learnt about `payload` (`None`: ask it).
    #[serde(skip)]
    scanned: Option<Scanned>,
    /// Why it was done.
    #[serde(default, deserialize_with = "borrow::optional")]
    pub reason: Option<Cow<'a, str>>,
    /// The request that caused the change.
    #[serde(default, deserialize_with = "borrow::optional")]
    pub request_id: Option<Cow<'a, str>>,
    /// The emitting service.
    #[serde(borrow)]
    pub source: Cow<'a, str>,
    /// What the action was applied to.
    #[serde(borrow, default)]
    pub target: Option<TargetView<'a>>,
    /// The tenant the event belongs to.
    #[serde(default, deserialize_with = "borrow::optional")]
    pub tenant: Option<Cow<'a, str>>,
    /// When it happened.
    #[serde(deserialize_with = "super::time::deserialize")]
    pub time: Timestamp,
    /// Distributed trace id of the request.
    #[serde(default, deserialize_with = "borrow::optional")]
    pub trace_id: Option<Cow<'a, str>>,
    /// What happened, e.g. `group.member_added`.
    #[serde(rename = "type", borrow)]
    pub event_type: Cow<'a, str>,
}

/// One `metadata` entry: key and value.
pub type Label<'a> = (Cow<'a, str>, Cow<'a, str>);

/// What reading a payload learnt about it, so that validating and
/// encoding need not walk it again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Scanned {
    /// How deeply arrays and objects nest in it.
    depth: usize,
    /// Whether its text is already canonical JSON.
    canonical: bool,
}

/// [`Actor`], borrowed.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename = "Actor", deny_unknown_fields)]
pub struct ActorView<'a> {
    /// Email address.
    #[serde(default, deserialize_with = "borrow::optional")]
    pub email: Option<Cow<'a, str>>,
    /// Groups or roles the actor held when acting.
    #[serde(default, deserialize_with = "borrow::list")]
    pub groups: Vec<Cow<'a, str>>,
    /// Stable identifier of the actor.
    #[serde(borrow)]
    pub id: Cow<'a, str>,
    /// Client IP address.
    #[serde(default, deserialize_with = "borrow::optional")]
    pub ip: Option<Cow<'a, str>>,
    /// What kind of actor this is.
    #[serde(default)]
    pub kind: ActorKind,
    /// The client's User-Agent.
    #[serde(default, deserialize_with = "borrow::optional")]
    pub user_agent: Option<Cow<'a, str>>,
}

/// [`Action`], borrowed.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename = "Action", deny_unknown_fields, bound(deserialize = "'de: 'a"))]
pub struct ActionView<'a> {
    /// The operation verb.
    #[serde(default, deserialize_with = "borrow::optional")]
    pub name: Option<Cow<'a, str>>,
    /// How it ended.
    pub outcome: Outcome,
    /// How much a reviewer should care.
    #[serde(default)]
    pub severity: Severity,
    /// The protocol status the operation returned.
    #[serde(default)]
    pub status_code: Option<u16>,
}

/// [`Target`], borrowed.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename = "Target", deny_unknown_fields)]
pub struct TargetView<'a> {
    /// Identifier of the target within its kind.
    #[serde(borrow)]
    pub id: Cow<'a, str>,
    /// The kind of object.
    #[serde(borrow)]
    pub kind: Cow<'a, str>,
    /// Human-readable name.
    #[serde(default, deserialize_with = "borrow::optional")]
    pub name: Option<Cow<'a, str>>,
}

impl<'a> EnvelopeView<'a> {
    /// Reads and validates one envelope with the default [`Limits`]: what
    /// [`AuditEventEnvelope::from_json`] accepts, without the copies.
    pub fn from_json(bytes: &'a [u8]) -> Result<Self, EnvelopeError> {
        Self::from_json_with(bytes, &Limits::default())
    }

    /// Reads and validates one envelope under `limits`.
    pub fn from_json_with(bytes: &'a [u8], limits: &Limits) -> Result<Self, EnvelopeError> {
        let view = Self::read_json(bytes)?;
        view.validate_with(limits, bytes.len())
            .map_err(EnvelopeError::Invalid)?;
        Ok(view)
    }

    /// Reads one envelope strictly ([`strict::check`]), every field in its
    /// place, without checking the envelope's rules.
    pub fn read_json(bytes: &'a [u8]) -> Result<Self, EnvelopeError> {
        match fast::read(bytes) {
            Some(view) => Ok(view),
            None => Self::read_json_reference(bytes),
        }
    }

    /// The reference reading, which defines what `read_json` takes and
    /// names what is wrong: [`strict::check`], then serde.
    fn read_json_reference(bytes: &'a [u8]) -> Result<Self, EnvelopeError> {
        strict::check(bytes).map_err(EnvelopeError::from)?;
        // As for the owned type: only a refusal reads the bytes again, to
        // name the field.
        serde_json::from_slice(bytes).or_else(|_| {
            let mut deserializer = serde_json::Deserializer::from_slice(bytes);
            serde_path_to_error::deserialize(&mut deserializer)
                .map_err(|e| super::parse::shape_error(e.path().to_string(), e.into_inner()))
        })
    }

    /// Checks every rule, all violations at once. `read_len` is the length
    /// of the JSON the view was read from, which bounds the canonical size
    /// without encoding it (see [`canonical_len_bound`]).
    fn validate_with(&self, limits: &Limits, read_len: usize) -> Result<(), ValidationErrors> {
        let mut errors = self.field_errors(limits);
        if errors.is_empty() && canonical_len_bound(read_len) > limits.max_event_bytes {
            super::validate::check_size(self.canonical_len(), limits, &mut errors);
        }
        super::validate::into_result(errors)
    }

    /// Validates and returns the canonical JSON, encoding once: what the
    /// relay stores for an event that arrived as bytes (refused if it
    /// brings an `integrity` seal, as for the owned type).
    pub fn to_validated_json(&self, limits: &Limits) -> Result<Vec<u8>, ValidationErrors> {
        super::validate::into_result(super::validate::arrival_errors(
            self,
            self.integrity.is_some(),
            limits,
        ))?;
        let json = self.to_canonical_json();
        let mut errors = Vec::new();
        super::validate::check_size(json.len(), limits, &mut errors);
        super::validate::into_result(errors)?;
        Ok(json)
    }

    /// The canonical JSON encoding, byte for byte what
    /// [`AuditEventEnvelope::to_canonical_json`] gives for the same event.
    pub fn to_canonical_json(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(512);
        self.write_canonical_json(&mut out);
        out
    }

    /// Appends the canonical JSON encoding to `out`.
    pub fn write_canonical_json(&self, out: &mut Vec<u8>) {
        let mut json = Writer { out, comma: false };
        json.open('{');
        json.key("action");
        json.open('{');
        if let Some(name) = &self.action.name {
            json.field("name", name);
        }
        json.field("outcome", self.action.outcome.as_str());
        json.field("severity", self.action.severity.as_str());
        if let Some(code) = self.action.status_code {
            json.key("status_code");
            json.raw(itoa(code as u64, &mut [0; 20]));
        }
        json.close('}');
        json.key("actor");
        json.open('{');
        if let Some(email) = &self.actor.email {
            json.field("email", email);
        }
        if !self.actor.groups.is_empty() {
            json.key("groups");
            json.open('[');
            for group in &self.actor.groups {
                json.string(group);
            }
            json.close(']');
        }
        json.field("id", &self.actor.id);
        if let Some(ip) = &self.actor.ip {
            json.field("ip", ip);
        }
        json.field("kind", self.actor.kind.as_str());
        if let Some(user_agent) = &self.actor.user_agent {
            json.field("user_agent", user_agent);
        }
        json.close('}');
        json.key("envelope_version");
        json.raw(itoa(self.envelope_version as u64, &mut [0; 20]));
        json.field("id", &self.id);
        if let Some(seal) = &self.integrity {
            json.key("integrity");
            json.open('{');
            json.field("hash", &seal.hash);
            json.field("prev", &seal.prev);
            json.key("seq");
            json.raw(itoa(seal.seq, &mut [0; 20]));
            json.field("stream", &seal.stream);
            json.close('}');
        }
        if !self.metadata.is_empty() {
            json.key("metadata");
            json.open('{');
            let mut labels: Vec<&(Cow<str>, Cow<str>)> = self.metadata.iter().collect();
            if !labels.is_sorted_by(|a, b| utf16_order(&a.0, &b.0).is_le()) {
                labels.sort_unstable_by(|a, b| utf16_order(&a.0, &b.0));
            }
            // Keys come from the sender: escaped like any string.
            for (key, value) in labels {
                json.separate();
                canonical::write_str(key, json.out);
                json.out.push(b':');
                json.comma = false;
                json.string(value);
            }
            json.close('}');
        }
        if let Some(payload) = self.payload {
            json.key("payload");
            match self.scanned {
                Some(Scanned {
                    canonical: true, ..
                }) => json.out.extend_from_slice(payload.get().as_bytes()),
                _ => canonical::text::write(payload.get(), json.out),
            }
            json.comma = true;
        }
        json.optional("reason", self.reason.as_deref());
        json.optional("request_id", self.request_id.as_deref());
        json.field("source", &self.source);
        if let Some(target) = &self.target {
            json.key("target");
            json.open('{');
            json.field("id", &target.id);
            json.field("kind", &target.kind);
            json.optional("name", target.name.as_deref());
            json.close('}');
        }
        json.optional("tenant", self.tenant.as_deref());
        json.key("time");
        canonical::write_time(&self.time, json.out);
        json.comma = true;
        json.optional("trace_id", self.trace_id.as_deref());
        json.field("type", &self.event_type);
        json.close('}');
    }

    /// Length in bytes of the canonical encoding.
    pub fn canonical_len(&self) -> usize {
        // Rarely asked (only for events near the size limit): encoding
        // once is simpler than counting field by field.
        self.to_canonical_json().len()
    }

    /// The event time in nanoseconds since the Unix epoch (clamped to
    /// i64, which validation enforces).
    pub fn time_unix_nanos(&self) -> i64 {
        super::unix_nanos(&self.time)
    }

    /// The owned envelope, for code that keeps the event.
    pub fn into_owned(self) -> AuditEventEnvelope {
        let text = |c: Cow<'a, str>| c.into_owned();
        AuditEventEnvelope {
            action: Action {
                name: self.action.name.map(text),
                outcome: self.action.outcome,
                severity: self.action.severity,
                status_code: self.action.status_code,
            },
            actor: Actor {
                email: self.actor.email.map(text),
                groups: self.actor.groups.into_iter().map(text).collect(),
                id: text(self.actor.id),
                ip: self.actor.ip.map(text),
                kind: self.actor.kind,
                user_agent: self.actor.user_agent.map(text),
            },
            envelope_version: self.envelope_version,
            id: text(self.id),
            integrity: self.integrity,
            metadata: self
                .metadata
                .into_iter()
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
            payload: self.payload.map_or(serde_json::Value::Null, |raw| {
                serde_json::from_str(raw.get()).expect("the payload was read as JSON")
            }),
            reason: self.reason.map(text),
            request_id: self.request_id.map(text),
            source: text(self.source),
            target: self.target.map(|t| Target {
                id: text(t.id),
                kind: text(t.kind),
                name: t.name.map(text),
            }),
            tenant: self.tenant.map(text),
            time: self.time,
            trace_id: self.trace_id.map(text),
            event_type: text(self.event_type),
        }
    }
}

/// The most bytes the canonical form of JSON read from `read_len` bytes
/// can take. Canonical JSON drops whitespace and only shortens string
/// escapes; it can lengthen only numbers, and at most to 5.25 times
/// (`1e20`, 4 bytes, is `100000000000000000000`, 21): an event whose
/// bound is within the size limit needs no encoding to know it is.
fn canonical_len_bound(read_len: usize) -> usize {
    read_len.saturating_mul(21).div_ceil(4)
}

impl Fields for EnvelopeView<'_> {
    fn envelope_version(&self) -> u32 {
        self.envelope_version
    }
    fn id(&self) -> &str {
        &self.id
    }
    fn source(&self) -> &str {
        &self.source
    }
    fn event_type(&self) -> &str {
        &self.event_type
    }
    fn time(&self) -> &Timestamp {
        &self.time
    }
    fn tenant(&self) -> Option<&str> {
        self.tenant.as_deref()
    }
    fn actor_id(&self) -> &str {
        &self.actor.id
    }
    fn actor_email(&self) -> Option<&str> {
        self.actor.email.as_deref()
    }
    fn actor_groups(&self) -> impl ExactSizeIterator<Item = &str> {
        self.actor.groups.iter().map(|g| &**g)
    }
    fn actor_ip(&self) -> Option<&str> {
        self.actor.ip.as_deref()
    }
    fn actor_user_agent(&self) -> Option<&str> {
        self.actor.user_agent.as_deref()
    }
    fn action_name(&self) -> Option<&str> {
        self.action.name.as_deref()
    }
    fn status_code(&self) -> Option<u16> {
        self.action.status_code
    }
    fn target(&self) -> Option<(&str, &str, Option<&str>)> {
        self.target
            .as_ref()
            .map(|t| (&*t.kind, &*t.id, t.name.as_deref()))
    }
    fn reason(&self) -> Option<&str> {
        self.reason.as_deref()
    }
    fn trace_id(&self) -> Option<&str> {
        self.trace_id.as_deref()
    }
    fn request_id(&self) -> Option<&str> {
        self.request_id.as_deref()
    }
    fn metadata(&self) -> impl ExactSizeIterator<Item = (&str, &str)> {
        self.metadata.iter().map(|(k, v)| (&**k, &**v))
    }
    fn payload_depth(&self) -> usize {
        match (self.payload, self.scanned) {
            (None, _) => 0,
            (Some(_), Some(scanned)) => scanned.depth,
            (Some(raw), None) => canonical::text::depth(raw.get()),
        }
    }
}

/// Writes canonical JSON piece by piece: commas between members and
/// elements, strings escaped as serde_json (and RFC 8785) escape them.
struct Writer<'o> {
    out: &'o mut Vec<u8>,
    /// Whether the next member or element needs a comma before it.
    comma: bool,
}

impl Writer<'_> {
    fn separate(&mut self) {
        if self.comma {
            self.out.push(b',');
        }
    }

    fn open(&mut self, bracket: char) {
        self.separate();
        self.out.push(bracket as u8);
        self.comma = false;
    }

    fn close(&mut self, bracket: char) {
        self.out.push(bracket as u8);
        self.comma = true;
    }

    /// A key and its colon; the value follows without a comma.
    fn key(&mut self, key: &str) {
        self.separate();
        self.out.push(b'"');
        self.out.extend_from_slice(key.as_bytes());
        self.out.extend_from_slice(b"\":");
        self.comma = false;
    }

    fn string(&mut self, text: &str) {
        self.separate();
        canonical::write_str(text, self.out);
        self.comma = true;
    }

    fn raw(&mut self, text: &str) {
        self.out.extend_from_slice(text.as_bytes());
        self.comma = true;
    }

    fn field(&mut self, key: &str, value: &str) {
        self.key(key);
        self.string(value);
    }

    fn optional(&mut self, key: &str, value: Option<&str>) {
        if let Some(value) = value {
            self.field(key, value);
        }
    }
}

/// `n` in decimal, in `buffer`.
fn itoa(mut n: u64, buffer: &mut [u8; 20]) -> &str {
    let mut at = buffer.len();
    loop {
        at -= 1;
        buffer[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    std::str::from_utf8(&buffer[at..]).expect("digits are ASCII")
}

/// Deserializing strings as borrowed as the input allows: serde borrows a
/// bare `Cow<str>` field with `#[serde(borrow)]`, but not one inside an
/// `Option`, a `Vec` or a map.
pub(super) mod borrow {
    use super::*;

    /// A string, borrowed from the input when it has no escapes.
    struct Text<'de>(Cow<'de, str>);

    impl<'de> Deserialize<'de> for Text<'de> {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            struct Expect;
            impl<'de> Visitor<'de> for Expect {
                type Value = Text<'de>;
                fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                    f.write_str("a string")
                }
                fn visit_borrowed_str<E>(self, text: &'de str) -> Result<Self::Value, E> {
                    Ok(Text(Cow::Borrowed(text)))
                }
                fn visit_str<E>(self, text: &str) -> Result<Self::Value, E> {
                    Ok(Text(Cow::Owned(text.to_owned())))
                }
                fn visit_string<E>(self, text: String) -> Result<Self::Value, E> {
                    Ok(Text(Cow::Owned(text)))
                }
            }
            deserializer.deserialize_str(Expect)
        }
    }

    /// One string.
    pub fn text<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Cow<'de, str>, D::Error> {
        Text::deserialize(deserializer).map(|t| t.0)
    }

    /// An optional string (`null` is none).
    pub fn optional<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Cow<'de, str>>, D::Error> {
        Option::<Text>::deserialize(deserializer).map(|t| t.map(|t| t.0))
    }

    /// A list of strings.
    pub fn list<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<Cow<'de, str>>, D::Error> {
        struct Expect;
        impl<'de> Visitor<'de> for Expect {
            type Value = Vec<Cow<'de, str>>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a sequence")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(256));
                while let Some(Text(item)) = seq.next_element()? {
                    items.push(item);
                }
                Ok(items)
            }
        }
        deserializer.deserialize_seq(Expect)
    }

    /// An object of string values, in document order.
    pub fn labels<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<Label<'de>>, D::Error> {
        struct Expect;
        impl<'de> Visitor<'de> for Expect {
            type Value = Vec<Label<'de>>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a map")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut labels = Vec::with_capacity(map.size_hint().unwrap_or(0).min(64));
                while let Some((Text(key), Text(value))) = map.next_entry()? {
                    labels.push((key, value));
                }
                Ok(labels)
            }
        }
        deserializer.deserialize_map(Expect)
    }
}

#[cfg(test)]
mod tests;
