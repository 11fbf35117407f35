//! Building envelopes in application code.

use std::collections::BTreeMap;

use jiff::Timestamp;

use super::{
    Action, Actor, AuditEventEnvelope, ENVELOPE_VERSION, Outcome, Severity, Target,
    ValidationErrors,
};

/// Builds an [`AuditEventEnvelope`]; created by [`AuditEventEnvelope::builder`].
///
/// ```
/// use auditrelay_plugin_api::envelope::{Actor, AuditEventEnvelope, Outcome, Target};
///
/// let event = AuditEventEnvelope::builder("access-api", "group.member_added")
///     .actor(Actor::user("u-42").email("ana@acme.test"))
///     .outcome(Outcome::Success)
///     .target(Target::new("group", "g-7"))
///     .tenant("acme")
///     .reason("on-call rotation")
///     .payload(serde_json::json!({"member": "u-77"}))
///     .build()?;
/// assert_eq!(event.event_type, "group.member_added");
/// # Ok::<(), auditrelay_plugin_api::envelope::ValidationErrors>(())
/// ```
#[derive(Debug, Clone)]
#[must_use = "call build() to obtain the envelope"]
pub struct EnvelopeBuilder {
    envelope: AuditEventEnvelope,
}

impl EnvelopeBuilder {
    pub(super) fn new(source: String, event_type: String) -> Self {
        EnvelopeBuilder {
            envelope: AuditEventEnvelope {
                action: Action::new(Outcome::Unknown),
                actor: Actor::new(super::ActorKind::System, ""),
                envelope_version: ENVELOPE_VERSION,
                id: uuid::Uuid::now_v7().to_string(),
                integrity: None,
                metadata: BTreeMap::new(),
                payload: serde_json::Value::Null,
                reason: None,
                request_id: None,
                source,
                target: None,
                tenant: None,
                time: Timestamp::now(),
                trace_id: None,
                event_type,
            },
        }
    }

    /// Overrides the generated UUIDv7, e.g. with the id of the database row
    /// that records the change, so retries by the application deduplicate.
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.envelope.id = id.into();
        self
    }

    /// Overrides the time (defaults to now); use the commit time when known.
    pub fn time(mut self, time: Timestamp) -> Self {
        self.envelope.time = time;
        self
    }

    /// Sets who acted. Required: an actor with an empty id fails `build`.
    pub fn actor(mut self, actor: Actor) -> Self {
        self.envelope.actor = actor;
        self
    }

    /// Sets how the action ended (defaults to `unknown`).
    pub fn outcome(mut self, outcome: Outcome) -> Self {
        self.envelope.action.outcome = outcome;
        self
    }

    /// Sets the operation verb, e.g. `approve`.
    pub fn action_name(mut self, name: impl Into<String>) -> Self {
        self.envelope.action.name = Some(name.into());
        self
    }

    /// Sets the severity (defaults to `info`).
    pub fn severity(mut self, severity: Severity) -> Self {
        self.envelope.action.severity = severity;
        self
    }

    /// Sets the protocol status code the operation returned.
    pub fn status_code(mut self, code: u16) -> Self {
        self.envelope.action.status_code = Some(code);
        self
    }

    /// Sets what the action was applied to.
    pub fn target(mut self, target: Target) -> Self {
        self.envelope.target = Some(target);
        self
    }

    /// Sets the tenant.
    pub fn tenant(mut self, tenant: impl Into<String>) -> Self {
        self.envelope.tenant = Some(tenant.into());
        self
    }

    /// Sets the reason the actor gave.
    pub fn reason(mut self, reason: impl Into<String>) -> Self {
        self.envelope.reason = Some(reason.into());
        self
    }

    /// Sets the trace id.
    pub fn trace_id(mut self, trace_id: impl Into<String>) -> Self {
        self.envelope.trace_id = Some(trace_id.into());
        self
    }

    /// Sets the request id.
    pub fn request_id(mut self, request_id: impl Into<String>) -> Self {
        self.envelope.request_id = Some(request_id.into());
        self
    }

    /// Sets the domain payload (free JSON).
    pub fn payload(mut self, payload: serde_json::Value) -> Self {
        self.envelope.payload = payload;
        self
    }

    /// Adds one metadata label.
    pub fn metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.envelope.metadata.insert(key.into(), value.into());
        self
    }

    /// Validates and returns the envelope.
    pub fn build(self) -> Result<AuditEventEnvelope, ValidationErrors> {
        self.envelope.validate()?;
        Ok(self.envelope)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_generates_unique_v7_ids() {
        let a = AuditEventEnvelope::builder("s", "t")
            .actor(Actor::user("u"))
            .build()
            .unwrap();
        let b = AuditEventEnvelope::builder("s", "t")
            .actor(Actor::user("u"))
            .build()
            .unwrap();
        assert_ne!(a.id, b.id);
        let uuid: uuid::Uuid = a.id.parse().unwrap();
        assert_eq!(uuid.get_version_num(), 7);
    }

    #[test]
    fn builder_without_actor_fails_naming_the_field() {
        let err = AuditEventEnvelope::builder("s", "t").build().unwrap_err();
        assert_eq!(err.0[0].field, "actor.id");
    }
}
