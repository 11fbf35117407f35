//! The audit event envelope: who did what, when, why, with what outcome.
//!
//! [`AuditEventEnvelope`] is one versioned JSON document. Applications build
//! it (with [`AuditEventEnvelope::builder`]) after their database commit and
//! hand it to the relay; plugins receive it as canonical JSON inside each
//! [`Event`](crate::Event).
//!
//! # JSON shape
//!
//! ```json
//! {
//!   "envelope_version": 1,
//!   "id": "0192f5e4-8c1a-7c3e-9b1d-2f6a1c0e4b7d",
//!   "source": "access-api",
//!   "type": "group.member_added",
//!   "time": "2026-11-22T10:15:00.123456Z",
//!   "tenant": "acme",
//!   "actor": {"id": "u-42", "kind": "user", "email": "ana@acme.test",
//!             "groups": ["admins"], "ip": "203.0.113.9", "user_agent": "curl/8"},
//!   "action": {"name": "add_member", "outcome": "success", "severity": "medium",
//!              "status_code": 200},
//!   "target": {"kind": "group", "id": "g-7", "name": "payments-oncall"},
//!   "reason": "on-call rotation",
//!   "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
//!   "request_id": "req-1",
//!   "payload": {"member": "u-77"},
//!   "metadata": {"app_version": "3.1.0"}
//! }
//! ```
//!
//! Required: `id`, `source`, `type`, `time`, `actor.id`, `action.outcome`.
//! Everything else is optional; unknown keys are rejected so that typos do
//! not silently drop data. `(source, id)` is the idempotency key end to end.
//!
//! # One reading
//!
//! Before anything decodes them, an envelope's bytes must pass [`strict`]:
//! no key twice in any object, no number that cannot be kept exactly, no
//! lone surrogate, no nesting beyond 127 levels. So the same bytes cannot
//! mean one event to the relay and another to a plugin or an auditor.
//! `time` must be RFC 3339 ([`parse_rfc3339`]).
//!
//! # Canonical JSON
//!
//! [`AuditEventEnvelope::to_canonical_json`] produces the bytes the relay
//! stores and plugins receive: RFC 8785 (JCS) — UTF-8, object keys sorted by
//! UTF-16 code units at every level (including inside `payload`), no
//! insignificant whitespace, numbers as ECMAScript writes doubles — except
//! that 64-bit integers keep all their digits. Absent optional fields are
//! omitted, `time` is in UTC with `Z` and only as many fractional digits
//! as needed. Equal envelopes encode to identical bytes, so the encoding
//! can be hashed and signed. See [`es6_number`] for numbers.
//!
//! # CloudEvents
//!
//! See [`cloudevents`] for the mapping to CloudEvents 1.0.

mod builder;
mod canonical;
pub mod cloudevents;
mod diagnose;
mod fields;
mod parse;
mod set_aside;
pub mod strict;
mod time;
mod validate;
mod view;

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

pub use builder::EnvelopeBuilder;
pub use canonical::es6_number;
pub use fields::FieldPaths;
pub use parse::EnvelopeError;
pub use set_aside::{INVALID_RECORD_KEY, MAX_VALUE_CHARS, SetAside};
pub use time::parse_rfc3339;
pub use validate::{Limits, ValidationError, ValidationErrors};
pub use view::{ActionView, ActorView, EnvelopeView, Label, TargetView};

/// The envelope schema version this crate reads and writes.
pub const ENVELOPE_VERSION: u32 = 1;

/// The metadata key in which the relay records what it redacted in an
/// event: a JSON array of `{"path", "rule", "action"}` (never a value).
/// It does not count toward the 64 metadata entries an event may have.
pub const REDACTION_RECORD_KEY: &str = "auditrelay.redacted";

/// One audit event. See the [module documentation](self) for the JSON shape.
///
/// Fields are declared in the order of their JSON names so that serializing
/// the struct yields sorted keys: `serde_json::to_vec(&envelope)` is the
/// canonical form.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditEventEnvelope {
    /// What was done and how it ended.
    pub action: Action,
    /// Who did it.
    pub actor: Actor,
    /// Schema version of the envelope; always [`ENVELOPE_VERSION`] today.
    #[serde(default = "default_envelope_version")]
    pub envelope_version: u32,
    /// Unique per `source`; a UUIDv7 when built with the builder.
    pub id: String,
    /// The relay's seal: where the event stands in its stream's hash
    /// chain. Written by the relay when it spools the event (an event that
    /// arrives with one is refused); `None` before that.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub integrity: Option<Integrity>,
    /// Free-form string labels (app version, region, ...).
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        serialize_with = "canonical::sorted_labels"
    )]
    pub metadata: BTreeMap<String, String>,
    /// Domain data of the change (before/after values, ids). Free JSON,
    /// kept as sent (after the strict reading): unlike the named fields,
    /// its strings are not checked for control, bidirectional or invisible
    /// characters — control characters are escaped as JSON requires in the
    /// canonical form, the rest pass as they are. Treat payload text as
    /// untrusted wherever it is displayed.
    #[serde(
        default,
        skip_serializing_if = "serde_json::Value::is_null",
        serialize_with = "canonical::sorted"
    )]
    pub payload: serde_json::Value,
    /// Why it was done, as the actor stated it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The request that caused the change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// The emitting service, e.g. `billing-api`.
    pub source: String,
    /// What the action was applied to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<Target>,
    /// The tenant (customer, organisation) the event belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// When it happened (RFC 3339 on the wire, read strictly: see
    /// [`parse_rfc3339`]).
    #[serde(deserialize_with = "time::deserialize")]
    pub time: Timestamp,
    /// Distributed trace id of the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// What happened, dot-separated, e.g. `group.member_added`.
    #[serde(rename = "type")]
    pub event_type: String,
}

/// An event's place in its stream's hash chain, as the relay sealed it.
///
/// `hash` is SHA-256 over the canonical JSON of
/// `{"digest":…,"prev":…,"seq":…,"stream":…}`, where `digest` is the
/// SHA-256 of the event's canonical JSON without `integrity` (all hashes
/// in lower-case hex): so it commits to the event, its place and the
/// event before it. The relay's `docs/integrity.md` says how to check it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Integrity {
    /// This event's chain hash.
    pub hash: String,
    /// The previous event's chain hash (64 zeros for the first).
    pub prev: String,
    /// The event's number in its stream, from 1, without gaps.
    pub seq: u64,
    /// The stream (by default the tenant; empty for events without one).
    pub stream: String,
}

fn default_envelope_version() -> u32 {
    ENVELOPE_VERSION
}

/// Who performed the action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Actor {
    /// Email address, if the actor has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Groups or roles the actor held when acting.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// Stable identifier of the actor (user id, service account, token name).
    pub id: String,
    /// Client IP address (IPv4 or IPv6, no port).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    /// What kind of actor this is.
    #[serde(default)]
    pub kind: ActorKind,
    /// The client's User-Agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
}

impl Actor {
    /// An actor of the given kind with only an id.
    pub fn new(kind: ActorKind, id: impl Into<String>) -> Self {
        Actor {
            email: None,
            groups: Vec::new(),
            id: id.into(),
            ip: None,
            kind,
            user_agent: None,
        }
    }

    /// A human user.
    pub fn user(id: impl Into<String>) -> Self {
        Self::new(ActorKind::User, id)
    }

    /// A service or machine identity.
    pub fn service(id: impl Into<String>) -> Self {
        Self::new(ActorKind::Service, id)
    }

    /// Sets the email address.
    pub fn email(mut self, email: impl Into<String>) -> Self {
        self.email = Some(email.into());
        self
    }

    /// Sets the client IP address.
    pub fn ip(mut self, ip: impl Into<String>) -> Self {
        self.ip = Some(ip.into());
        self
    }

    /// Sets the client User-Agent.
    pub fn user_agent(mut self, user_agent: impl Into<String>) -> Self {
        self.user_agent = Some(user_agent.into());
        self
    }

    /// Adds a group or role.
    pub fn group(mut self, group: impl Into<String>) -> Self {
        self.groups.push(group.into());
        self
    }
}

/// The kind of actor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActorKind {
    /// A human.
    #[default]
    User,
    /// A service, job or API client acting on its own behalf.
    Service,
    /// The system itself (scheduled jobs, automatic expiry).
    System,
    /// An unauthenticated caller.
    Anonymous,
}

/// What was done and how it ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Action {
    /// The operation verb, e.g. `create`, `approve`, `exec`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// How it ended.
    pub outcome: Outcome,
    /// How much a reviewer should care.
    #[serde(default)]
    pub severity: Severity,
    /// The protocol status the operation returned (e.g. HTTP 403).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_code: Option<u16>,
}

impl Action {
    /// An action with the given outcome and default severity.
    pub fn new(outcome: Outcome) -> Self {
        Action {
            name: None,
            outcome,
            severity: Severity::default(),
            status_code: None,
        }
    }
}

/// How an action ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The action took effect.
    Success,
    /// The action was attempted and failed.
    Failure,
    /// The action was refused by an authorisation check.
    Denied,
    /// The outcome is not known.
    Unknown,
}

impl Outcome {
    /// The lower-case name used in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::Denied => "denied",
            Outcome::Unknown => "unknown",
        }
    }
}

/// How much a reviewer should care about an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Routine activity.
    #[default]
    Info,
    /// Worth a look in aggregate.
    Low,
    /// Worth a look.
    Medium,
    /// Needs attention.
    High,
    /// Needs attention now.
    Critical,
}

impl Severity {
    /// The lower-case name used in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

impl ActorKind {
    /// The lower-case name used in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            ActorKind::User => "user",
            ActorKind::Service => "service",
            ActorKind::System => "system",
            ActorKind::Anonymous => "anonymous",
        }
    }
}

/// What the action was applied to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    /// Identifier of the target within its kind.
    pub id: String,
    /// The kind of object, e.g. `group`, `invoice`.
    pub kind: String,
    /// Human-readable name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl Target {
    /// A target of the given kind and id.
    pub fn new(kind: impl Into<String>, id: impl Into<String>) -> Self {
        Target {
            id: id.into(),
            kind: kind.into(),
            name: None,
        }
    }

    /// Sets the human-readable name.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }
}

impl AuditEventEnvelope {
    /// Starts building an event from `source` of type `event_type`, with a
    /// fresh UUIDv7 id and the current time.
    pub fn builder(source: impl Into<String>, event_type: impl Into<String>) -> EnvelopeBuilder {
        EnvelopeBuilder::new(source.into(), event_type.into())
    }

    /// The event time in nanoseconds since the Unix epoch.
    pub fn time_unix_nanos(&self) -> i64 {
        unix_nanos(&self.time)
    }
}

/// `time` in nanoseconds since the Unix epoch, for the wire.
fn unix_nanos(time: &Timestamp) -> i64 {
    // Timestamps span years -9999..=9999, which fits an i128; clamp to
    // i64 (years 1678..=2262) for the wire, which validation enforces.
    time.as_nanosecond()
        .clamp(i64::MIN as i128, i64::MAX as i128) as i64
}
