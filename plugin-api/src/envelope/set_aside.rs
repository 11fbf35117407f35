//! Keeping an event whose optional fields break the rules: each such
//! field's value moves into a record in the event's metadata
//! ([`INVALID_RECORD_KEY`]) and the field is left out, so the event is
//! kept — a fire-and-forget sender that cannot react to a refusal would
//! otherwise lose it — and an auditor sees what was sent and why it was
//! not taken as it was.
//!
//! Only fields that say nothing about *which* event it is are set aside:
//! `id`, `source`, `type`, `time`, `tenant` (it picks the stream and the
//! plugins), `actor.id`, `action.outcome`, the payload and the event's
//! size are never, and an event that breaks one of those is refused.

use serde::Serialize;

use super::{AuditEventEnvelope, Limits, ValidationError};

/// The metadata key of the record of fields set aside: a JSON array of
/// `{"field", "problem", "value"}`, the value as sent (cut to
/// [`MAX_VALUE_CHARS`], anything but printable ASCII as `\u{…}`). Not
/// counted toward the 64 metadata entries.
pub const INVALID_RECORD_KEY: &str = "auditrelay.invalid";

/// How much of a value set aside the record keeps.
pub const MAX_VALUE_CHARS: usize = 200;

/// One field set aside.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SetAside {
    /// Its path, as the rule named it.
    pub field: String,
    /// The rule it broke.
    pub problem: String,
    /// What was sent, as text (cut, escaped).
    pub value: String,
}

impl AuditEventEnvelope {
    /// Sets aside every field `errors` name — if each is an optional field
    /// that can be left out — recording them in the metadata, and checks
    /// the event again under `limits`. `None` (the event unchanged) when
    /// any error is about a field that cannot be set aside, or the event
    /// still breaks a rule without them.
    pub fn set_aside(
        &self,
        errors: &[ValidationError],
        limits: &Limits,
    ) -> Option<(AuditEventEnvelope, Vec<SetAside>)> {
        let mut event = self.clone();
        let mut done: Vec<SetAside> = Vec::new();
        for error in errors {
            // A field breaking two rules is set aside once, with both.
            if let Some(again) = done.iter_mut().find(|d| d.field == error.field) {
                again.problem = format!("{}; {}", again.problem, error.problem);
                continue;
            }
            let value = event.take(&error.field)?;
            done.push(SetAside {
                field: error.field.clone(),
                problem: error.problem.clone(),
                value: printable(&value),
            });
        }
        if done.is_empty() || event.metadata.contains_key(INVALID_RECORD_KEY) {
            return None;
        }
        event.metadata.insert(
            INVALID_RECORD_KEY.to_owned(),
            serde_json::to_string(&done).expect("a record serializes"),
        );
        event.validate_with(limits).ok()?;
        Some((event, done))
    }

    /// Takes the value of the optional field at `field` out of the event,
    /// as text; `None` if the field cannot be set aside (or is not there).
    fn take(&mut self, field: &str) -> Option<String> {
        let text = |v: Option<String>| v;
        match field {
            "actor.email" => text(self.actor.email.take()),
            "actor.ip" => text(self.actor.ip.take()),
            "actor.user_agent" => text(self.actor.user_agent.take()),
            "action.name" => text(self.action.name.take()),
            "action.status_code" => self.action.status_code.take().map(|c| c.to_string()),
            "reason" => text(self.reason.take()),
            "trace_id" => text(self.trace_id.take()),
            "request_id" => text(self.request_id.take()),
            "target.name" => self.target.as_mut().and_then(|t| t.name.take()),
            "target.kind" | "target.id" => self
                .target
                .take()
                .map(|t| serde_json::to_string(&t).expect("a target serializes")),
            _ if field == "actor.groups" || field.starts_with("actor.groups[") => {
                if self.actor.groups.is_empty() {
                    return None;
                }
                Some(
                    serde_json::to_string(&std::mem::take(&mut self.actor.groups))
                        .expect("a list serializes"),
                )
            }
            _ => {
                let key = field.strip_prefix("metadata.")?;
                if key == INVALID_RECORD_KEY || key == super::REDACTION_RECORD_KEY {
                    return None;
                }
                self.metadata.remove(key)
            }
        }
    }
}

/// `value` cut to [`MAX_VALUE_CHARS`], printable ASCII kept and anything
/// else written `\u{…}`: the value broke a rule, perhaps by holding a
/// control or bidirectional character, which the record must not carry.
fn printable(value: &str) -> String {
    let mut out = String::new();
    for (i, c) in value.chars().enumerate() {
        if i == MAX_VALUE_CHARS {
            out.push('…');
            break;
        }
        if c.is_ascii_graphic() || c == ' ' {
            out.push(c);
        } else {
            out.extend(c.escape_unicode());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::{Actor, Outcome, Target};

    fn event() -> AuditEventEnvelope {
        AuditEventEnvelope::builder("api", "user.login")
            .id("e1")
            .actor(Actor::user("u-1"))
            .outcome(Outcome::Success)
            .target(Target::new("user", "u-1"))
            .build()
            .unwrap()
    }

    fn errors(event: &AuditEventEnvelope) -> Vec<ValidationError> {
        event.validate().map_or_else(|e| e.0, |()| Vec::new())
    }

    #[test]
    fn a_test_clients_ip_is_set_aside_and_recorded() {
        let mut sent = event();
        sent.actor.ip = Some("testclient".into());
        sent.actor.email = Some("no-at-sign\u{202e}".into());
        let errors = errors(&sent);
        assert_eq!(errors.len(), 3, "{errors:?}");
        let (kept, done) = sent.set_aside(&errors, &Limits::default()).unwrap();
        assert_eq!(kept.actor.ip, None);
        assert_eq!(kept.actor.email, None);
        assert_eq!(done.len(), 2);
        let record: serde_json::Value =
            serde_json::from_str(&kept.metadata[INVALID_RECORD_KEY]).unwrap();
        let fields: Vec<&str> = record
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["field"].as_str().unwrap())
            .collect();
        assert!(fields.contains(&"actor.ip") && fields.contains(&"actor.email"));
        assert!(kept.metadata[INVALID_RECORD_KEY].contains("testclient"));
        assert!(
            kept.metadata[INVALID_RECORD_KEY].contains("\\\\u{202e}"),
            "{}",
            kept.metadata[INVALID_RECORD_KEY]
        );
        kept.validate().unwrap();
    }

    #[test]
    fn fields_that_say_which_event_it_is_are_never_set_aside() {
        for edit in [
            (|e: &mut AuditEventEnvelope| e.tenant = Some("bad\u{202e}".into()))
                as fn(&mut AuditEventEnvelope),
            |e| e.actor.id = String::new(),
            |e| e.event_type = "no spaces".into(),
            |e| e.id = "x".repeat(200),
        ] {
            let mut sent = event();
            edit(&mut sent);
            let errors = errors(&sent);
            assert!(!errors.is_empty());
            assert!(
                sent.set_aside(&errors, &Limits::default()).is_none(),
                "{errors:?}"
            );
        }
        // One of those beside a field that could be set aside: refused whole.
        let mut sent = event();
        sent.actor.ip = Some("testclient".into());
        sent.tenant = Some("bad\u{202e}".into());
        assert!(sent.set_aside(&errors(&sent), &Limits::default()).is_none());
    }

    #[test]
    fn a_sender_cannot_write_the_record_itself() {
        let mut sent = event();
        sent.actor.ip = Some("testclient".into());
        sent.metadata.insert(INVALID_RECORD_KEY.into(), "[]".into());
        assert!(sent.set_aside(&errors(&sent), &Limits::default()).is_none());
    }

    #[test]
    fn long_values_are_cut() {
        let mut sent = event();
        sent.reason = Some("\u{7}".repeat(5000));
        let (kept, done) = sent.set_aside(&errors(&sent), &Limits::default()).unwrap();
        assert!(done[0].value.ends_with('…'));
        assert!(kept.metadata[INVALID_RECORD_KEY].len() < 4096);
    }
}
