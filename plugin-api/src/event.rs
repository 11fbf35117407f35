//! What a plugin receives and returns per batch.

use std::time::Duration;

use crate::envelope::{AuditEventEnvelope, EnvelopeError};

/// One event of a batch: routing fields plus the canonical envelope JSON,
/// all borrowed from the batch the relay handed over (no copies).
///
/// Mirrors the WIT record `auditrelay:plugin/types.event`. To keep an
/// event beyond the `deliver` call, copy it with [`to_owned`](Self::to_owned).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event<'a> {
    /// The envelope's `id`.
    pub id: &'a str,
    /// The envelope's `source`.
    pub source: &'a str,
    /// The envelope's `type`.
    pub event_type: &'a str,
    /// The envelope's `time` in nanoseconds since the Unix epoch.
    pub time_unix_nanos: i64,
    /// The envelope's `tenant`.
    pub tenant: Option<&'a str>,
    /// The canonical JSON of the whole envelope.
    pub envelope: &'a [u8],
}

impl<'a> Event<'a> {
    /// The canonical envelope JSON as text.
    ///
    /// The relay only hands out UTF-8; invalid bytes (possible only from a
    /// hand-built event) are replaced with U+FFFD.
    pub fn envelope_str(&self) -> std::borrow::Cow<'a, str> {
        String::from_utf8_lossy(self.envelope)
    }

    /// Decodes the full envelope (a few microseconds per event; route on
    /// the other fields when you can).
    pub fn parse_envelope(&self) -> Result<AuditEventEnvelope, EnvelopeError> {
        AuditEventEnvelope::from_json(self.envelope)
    }

    /// The event time.
    pub fn time(&self) -> jiff::Timestamp {
        jiff::Timestamp::from_nanosecond(self.time_unix_nanos as i128)
            .expect("an i64 of nanoseconds is always a valid timestamp")
    }

    /// An owned copy.
    pub fn to_owned(&self) -> EventBuf {
        EventBuf {
            id: self.id.to_owned(),
            source: self.source.to_owned(),
            event_type: self.event_type.to_owned(),
            time_unix_nanos: self.time_unix_nanos,
            tenant: self.tenant.map(str::to_owned),
            envelope: self.envelope.to_vec(),
        }
    }
}

/// An owned [`Event`], for building batches in tests and keeping events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventBuf {
    /// The envelope's `id`.
    pub id: String,
    /// The envelope's `source`.
    pub source: String,
    /// The envelope's `type`.
    pub event_type: String,
    /// The envelope's `time` in nanoseconds since the Unix epoch.
    pub time_unix_nanos: i64,
    /// The envelope's `tenant`.
    pub tenant: Option<String>,
    /// The canonical JSON of the whole envelope.
    pub envelope: Vec<u8>,
}

impl EventBuf {
    /// The event as the relay would hand it to a plugin.
    pub fn from_envelope(envelope: &AuditEventEnvelope) -> Self {
        EventBuf {
            id: envelope.id.clone(),
            source: envelope.source.clone(),
            event_type: envelope.event_type.clone(),
            time_unix_nanos: envelope.time_unix_nanos(),
            tenant: envelope.tenant.clone(),
            envelope: envelope.to_canonical_json(),
        }
    }

    /// A borrowed view, as plugins receive it.
    pub fn as_event(&self) -> Event<'_> {
        Event {
            id: &self.id,
            source: &self.source,
            event_type: &self.event_type,
            time_unix_nanos: self.time_unix_nanos,
            tenant: self.tenant.as_deref(),
            envelope: &self.envelope,
        }
    }
}

/// A batch that reached the destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// Every event was accepted.
    Accepted,
    /// The listed events were refused for good; all others were accepted.
    PartiallyRejected(Vec<RejectedEvent>),
}

/// One event the destination refused for good. As JSON (the native ABI's
/// `AR_PARTIALLY_REJECTED` payload): `{"index": 3, "reason": "..."}`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RejectedEvent {
    /// Position of the event in the batch.
    pub index: u32,
    /// Why, in words an operator can act on.
    pub reason: String,
}

/// Why a batch did not reach the destination.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliverError {
    /// Transient: the relay retries the whole batch with backoff.
    #[error("{message} (will retry)")]
    Retryable {
        /// What went wrong.
        message: String,
        /// Wait at least this long before retrying (e.g. HTTP `Retry-After`).
        retry_after: Option<Duration>,
    },
    /// Never deliverable as it is: the relay sets the batch aside as dead
    /// letters. Name the setting to fix.
    #[error("{0}")]
    Permanent(String),
}

impl DeliverError {
    /// A transient failure with no server-given delay.
    pub fn retryable(message: impl Into<String>) -> Self {
        DeliverError::Retryable {
            message: message.into(),
            retry_after: None,
        }
    }

    /// A transient failure the destination asked to retry after `delay`.
    pub fn retry_after(message: impl Into<String>, delay: Duration) -> Self {
        DeliverError::Retryable {
            message: message.into(),
            retry_after: Some(delay),
        }
    }

    /// A failure retrying cannot fix.
    pub fn permanent(message: impl Into<String>) -> Self {
        DeliverError::Permanent(message.into())
    }

    /// Whether the relay will retry.
    pub fn is_retryable(&self) -> bool {
        matches!(self, DeliverError::Retryable { .. })
    }
}

impl From<std::io::Error> for DeliverError {
    /// I/O errors are retryable unless the data itself is at fault: a full
    /// disk or a wrong permission is fixed by the operator, after which the
    /// retried batch goes through without anyone replaying dead letters.
    fn from(error: std::io::Error) -> Self {
        match error.kind() {
            std::io::ErrorKind::InvalidData => DeliverError::permanent(error.to_string()),
            _ => DeliverError::retryable(error.to_string()),
        }
    }
}
