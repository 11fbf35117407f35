//! The one way in. Every door — [`Relay::emit`] and its kin, `POST
//! /v1/events`, and the sources to come — gathers its events as
//! [`Arrivals`] and hands them to [`Relay::admit`] (or
//! [`Relay::admit_durable`]), which counts, refuses or appends them the
//! same way whatever the door.
//!
//! An arriving event is validated, redacted ([`crate::redact`]) and
//! encoded as canonical JSON here, once ([`Arrivals::push`]); what a door
//! read from bytes and could not make an envelope of arrives already
//! refused ([`Arrivals::refuse`]). Each door says what the events that
//! break the rules mean for the others ([`Refusals`]).

use std::sync::Arc;
use std::time::Duration;

use auditrelay_plugin_api::envelope::{AuditEventEnvelope, EnvelopeView, Limits, ValidationError};
use serde::Serialize;

use super::{EmitError, Receipt, Relay};
use crate::config::InvalidOptional;
use crate::metrics::Via;
use crate::redact::Redaction;
use crate::spool::Record;

/// What every arriving event is held to, whatever its door.
#[derive(Debug)]
pub(crate) struct Rules {
    /// The envelope limits it is validated against.
    pub limits: Limits,
    /// What is redacted before it is spooled.
    pub redaction: Redaction,
    /// What an optional field that breaks a rule does to its event.
    pub invalid_optional: InvalidOptional,
}

/// One event taken, and the fields of it set aside (empty for most).
type Taken = (Record, Vec<ValidationError>);

/// One event refused: its `id` (if short enough to show) and every rule
/// it broke.
type Refusal = (Option<String>, Vec<ValidationError>);

impl Rules {
    /// The rules `config` sets; every problem of its redaction rules, as
    /// `(rule, problem)`.
    pub fn of(config: &crate::Config) -> Result<Rules, Vec<(String, String)>> {
        Ok(Rules {
            limits: Limits {
                max_event_bytes: usize::try_from(config.relay.max_event_bytes.as_u64())
                    .unwrap_or(usize::MAX),
                ..Limits::default()
            },
            redaction: Redaction::new(config.relay.redact_defaults, &config.redact)?,
            invalid_optional: config.relay.invalid_optional,
        })
    }

    /// Rules with `limits` and no redaction (for tests).
    #[cfg(test)]
    pub fn plain(limits: Limits) -> Arc<Rules> {
        Arc::new(Rules {
            limits,
            redaction: Redaction::new(false, &[]).expect("no rules are valid rules"),
            invalid_optional: InvalidOptional::Refuse,
        })
    }

    /// Validates, redacts and encodes one event.
    fn record(&self, mut event: AuditEventEnvelope) -> Result<Taken, Refusal> {
        let refused = |event: &AuditEventEnvelope, errors: Vec<ValidationError>| {
            // Long ids are refused for their length: not shown back.
            (Some(event.id.clone()).filter(|id| id.len() <= 128), errors)
        };
        let (json, set_aside) = match event.to_validated_json(&self.limits) {
            Ok(json) => (json, Vec::new()),
            Err(errors) => {
                let kept = (self.invalid_optional == InvalidOptional::SetAside)
                    .then(|| event.set_aside(&errors.0, &self.limits))
                    .flatten();
                let Some((kept, _)) = kept else {
                    return Err(refused(&event, errors.0));
                };
                event = kept;
                match event.to_validated_json(&self.limits) {
                    Ok(json) => (json, errors.0),
                    Err(_) => return Err(refused(&event, errors.0)),
                }
            }
        };
        self.redacted(&mut event, json)
            .map(|record| (record, set_aside))
            .map_err(|errors| refused(&event, errors))
    }

    /// The record of `event`, valid and encoded as `json`, after redaction.
    fn redacted(
        &self,
        event: &mut AuditEventEnvelope,
        json: Vec<u8>,
    ) -> Result<Record, Vec<ValidationError>> {
        if !self
            .redaction
            .may_apply(&event.source, &event.event_type, &json)
            || self.redaction.apply(event).is_empty()
        {
            return Ok(Record::with_json(event, &json));
        }
        match event.to_validated_json(&self.limits) {
            Ok(json) => Ok(Record::with_json(event, &json)),
            Err(errors) => Err(errors
                .0
                .into_iter()
                .map(|mut e| {
                    e.problem = format!("{} (after redaction)", e.problem);
                    e
                })
                .collect()),
        }
    }

    /// As [`record`](Self::record), for an envelope read from JSON.
    fn record_of_view(&self, view: &EnvelopeView<'_>) -> Result<Taken, Refusal> {
        let id = || {
            Some(view.id.as_ref())
                .filter(|id| id.len() <= 128)
                .map(str::to_owned)
        };
        let json = match view.to_validated_json(&self.limits) {
            Ok(json) => json,
            // Rarely: an owned copy, to set its fields aside.
            Err(_) if self.invalid_optional == InvalidOptional::SetAside => {
                return self.record(view.clone().into_owned());
            }
            Err(errors) => return Err((id(), errors.0)),
        };
        if !self
            .redaction
            .may_apply(&view.source, &view.event_type, &json)
        {
            return Ok((Record::with_view_json(view, &json), Vec::new()));
        }
        // Rarely: read into a tree, to walk it.
        let mut event: AuditEventEnvelope = serde_json::from_slice(&json).map_err(|error| {
            (
                id(),
                vec![ValidationError {
                    field: "(envelope)".into(),
                    problem: format!("cannot be read back for redaction: {error}"),
                }],
            )
        })?;
        self.redacted(&mut event, json)
            .map(|record| (record, Vec::new()))
            .map_err(|errors| (id(), errors))
    }
}

/// Why one arriving event was refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Refused {
    /// Its position among the arrivals (a batch's index, a body's line).
    pub index: usize,
    /// Its `id`, if it had a readable one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Every rule it broke.
    pub errors: Vec<ValidationError>,
}

/// The events one call of a door brought: each accepted one validated and
/// encoded, each refused one with why, in arrival order.
#[derive(Debug)]
pub(crate) struct Arrivals {
    rules: Arc<Rules>,
    records: Vec<Record>,
    /// Each record's position among the arrivals.
    indexes: Vec<usize>,
    refused: Vec<Refused>,
    /// Taken events with optional fields set aside, and the rules those broke.
    set_aside: Vec<Refused>,
    /// One event on its own ([`Relay::emit`]): its refusal names no index.
    single: bool,
}

impl Arrivals {
    /// The envelope limits events are held to.
    pub fn limits(&self) -> &Limits {
        &self.rules.limits
    }

    /// No events yet; they will be held to `rules`.
    pub fn new(rules: Arc<Rules>) -> Self {
        Arrivals {
            rules,
            records: Vec::new(),
            indexes: Vec::new(),
            refused: Vec::new(),
            set_aside: Vec::new(),
            single: false,
        }
    }

    /// One event on its own.
    pub fn one(rules: Arc<Rules>, event: AuditEventEnvelope) -> Self {
        let mut arrivals = Arrivals::new(rules);
        arrivals.single = true;
        arrivals.push(0, event);
        arrivals
    }

    /// The envelope at `index`: validated, redacted and encoded once, or
    /// refused.
    pub fn push(&mut self, index: usize, event: AuditEventEnvelope) {
        let record = self.rules.record(event);
        self.take(index, record);
    }

    /// The envelope read from `json` at `index` (the view borrows from
    /// the bytes: nothing is copied but the canonical encoding, unless a
    /// redaction rule may apply).
    pub fn push_view(&mut self, index: usize, event: &EnvelopeView<'_>) {
        let record = self.rules.record_of_view(event);
        self.take(index, record);
    }

    fn take(&mut self, index: usize, record: Result<Taken, Refusal>) {
        match record {
            Ok((record, set_aside)) => {
                if !set_aside.is_empty() {
                    self.set_aside.push(Refused {
                        index,
                        id: Some(record.as_event().id.to_owned()).filter(|id| id.len() <= 128),
                        errors: set_aside,
                    });
                }
                self.records.push(record);
                self.indexes.push(index);
            }
            Err((id, errors)) => self.refused.push(Refused { index, id, errors }),
        }
    }

    /// Takes every event of `other` (held to the same rules), as if pushed
    /// here: a source checks one record's events apart, then keeps all of
    /// them or none.
    pub fn append(&mut self, other: Arrivals) {
        self.records.extend(other.records);
        self.indexes.extend(other.indexes);
        self.refused.extend(other.refused);
        self.set_aside.extend(other.set_aside);
    }

    /// Refuses every event whose `source` is not `source`: a door that
    /// belongs to one source (a webhook) takes no events of another.
    pub fn confine_to(&mut self, source: &str, door: &str) {
        let records = std::mem::take(&mut self.records);
        let indexes = std::mem::take(&mut self.indexes);
        for (record, index) in records.into_iter().zip(indexes) {
            let event = record.as_event();
            if event.source == source {
                self.records.push(record);
                self.indexes.push(index);
                continue;
            }
            self.refused.push(Refused {
                index,
                id: Some(event.id.to_owned()).filter(|id| id.len() <= 128),
                errors: vec![ValidationError {
                    field: "source".into(),
                    problem: format!(
                        "is {:?}, but {door} takes only events of source {source:?}; send the others to POST /v1/events",
                        event.source
                    ),
                }],
            });
        }
    }

    /// Every rule the events refused so far broke, as one line (for a
    /// source's reason).
    pub fn refusal_text(&self) -> String {
        self.refused
            .iter()
            .map(|r| {
                let errors: Vec<String> = r.errors.iter().map(ToString::to_string).collect();
                format!("event {}: {}", r.index, errors.join("; "))
            })
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// An event that could not be read as an envelope at all.
    pub fn refuse(&mut self, refused: Refused) {
        self.refused.push(refused);
    }

    /// How many events were refused so far.
    pub fn refused_count(&self) -> usize {
        self.refused.len()
    }

    /// Whether any event was refused so far.
    pub fn has_refused(&self) -> bool {
        !self.refused.is_empty()
    }

    /// The accepted events and the refused ones.
    #[cfg(feature = "cli")]
    pub fn into_parts(self) -> (Vec<Record>, Vec<Refused>) {
        (self.records, self.refused)
    }

    /// The events accepted so far.
    #[cfg(test)]
    pub fn records(&self) -> &[Record] {
        &self.records
    }

    /// The events refused so far.
    #[cfg(test)]
    pub fn refused(&self) -> &[Refused] {
        &self.refused
    }
}

/// What refused events mean for the other events of the same call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusals {
    /// None is taken: the call is all or nothing ([`Relay::emit_batch`]).
    RefuseAll,
    /// The valid ones are taken; the answer lists the others (HTTP `422`).
    TakeTheValid,
}

/// What a door's call achieved.
#[derive(Debug)]
pub(crate) struct Admitted {
    /// Where the accepted events are in the spool.
    pub receipt: Receipt,
    /// The events refused (none with [`Refusals::RefuseAll`]).
    pub refused: Vec<Refused>,
    /// The events taken with optional fields set aside, and the rules
    /// those broke ([`InvalidOptional::SetAside`]).
    pub set_aside: Vec<Refused>,
}

impl Admitted {
    /// Every arrival was refused: answered without asking the spool, which
    /// may be failing (the answer is about the events, not the disk).
    fn none_of(refused: Vec<Refused>) -> Self {
        Admitted {
            receipt: Receipt {
                seqs: 0..0,
                copies: 0,
                durable_end: 0,
            },
            refused,
            set_aside: Vec::new(),
        }
    }
}

impl Relay {
    /// Takes `arrivals` in: counts the refused ones, and appends the rest
    /// (all or nothing) unless `refusals` says a refusal refuses the call.
    /// Never waits for the disk; with `spool.when_full = "block"` it waits
    /// up to `block_timeout` for room, on this thread.
    pub(crate) fn admit(
        &self,
        arrivals: Arrivals,
        via: Via,
        refusals: Refusals,
    ) -> Result<Admitted, EmitError> {
        let (records, refused, set_aside) = self.sort_out(arrivals, via, refusals)?;
        if records.is_empty() && !refused.is_empty() {
            return Ok(Admitted::none_of(refused));
        }
        let appended = self.inner.spool.append(&records);
        let receipt = self.appended(&records, appended, via)?;
        self.inner.metrics.set_aside(via, set_aside.len() as u64);
        Ok(Admitted {
            receipt,
            refused,
            set_aside,
        })
    }

    /// Takes `arrivals` in as [`admit`](Self::admit) does and waits until
    /// the accepted ones are durable under `spool.durability`, at most
    /// `durable_within` once they are appended ([`EmitError::SlowDisk`]
    /// past it, naming the setting). Refused at once while the spool cannot write (they would
    /// not become durable); waiting for room or for the disk never blocks
    /// the thread.
    pub(crate) async fn admit_durable(
        &self,
        arrivals: Arrivals,
        via: Via,
        refusals: Refusals,
        durable_within: Option<(Duration, &'static str)>,
    ) -> Result<Admitted, EmitError> {
        let (records, refused, set_aside) = self.sort_out(arrivals, via, refusals)?;
        if records.is_empty() && !refused.is_empty() {
            return Ok(Admitted::none_of(refused));
        }
        let appended = self.inner.spool.append_when_room(&records).await;
        let receipt = self.appended(&records, appended, via)?;
        match durable_within {
            None => self.durable(&receipt).await?,
            Some((waited, setting)) => tokio::time::timeout(waited, self.durable(&receipt))
                .await
                .map_err(|_| EmitError::SlowDisk { waited, setting })??,
        }
        self.inner.metrics.set_aside(via, set_aside.len() as u64);
        Ok(Admitted {
            receipt,
            refused,
            set_aside,
        })
    }

    /// Counts the refused arrivals; the records to append (and which had
    /// fields set aside), or the refusal of the whole call.
    #[allow(clippy::type_complexity)]
    fn sort_out(
        &self,
        arrivals: Arrivals,
        via: Via,
        refusals: Refusals,
    ) -> Result<(Vec<Record>, Vec<Refused>, Vec<Refused>), EmitError> {
        let Arrivals {
            records,
            refused,
            set_aside,
            single,
            ..
        } = arrivals;
        if refused.is_empty() {
            return Ok((records, refused, set_aside));
        }
        match refusals {
            Refusals::TakeTheValid => {
                self.inner
                    .metrics
                    .rejected(via, "invalid", refused.len() as u64);
                Ok((records, refused, set_aside))
            }
            Refusals::RefuseAll => {
                let events = records.len() + refused.len();
                self.inner.metrics.rejected(via, "invalid", events as u64);
                let first = refused
                    .into_iter()
                    .min_by_key(|r| r.index)
                    .expect("some event was refused");
                Err(EmitError::Invalid {
                    index: (!single).then_some(first.index),
                    errors: auditrelay_plugin_api::envelope::ValidationErrors(first.errors),
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use auditrelay_plugin_api::envelope::{Actor, Outcome};

    use super::*;

    /// A secret (recognised by its shape) sent in an optional field that
    /// breaks a rule is set aside into the record — and redaction, which
    /// runs after, still finds it there: it reaches no spool and no plugin.
    #[test]
    fn a_secret_in_a_field_set_aside_is_still_redacted() {
        let secret = "AKIAIOSFODNN7EXAMPLE";
        let rules = Rules {
            limits: Limits::default(),
            redaction: Redaction::new(true, &[]).unwrap(),
            invalid_optional: InvalidOptional::SetAside,
        };
        let mut event = AuditEventEnvelope::builder("api", "user.login")
            .actor(Actor::user("u-1"))
            .outcome(Outcome::Success)
            .build()
            .unwrap();
        event.actor.email = Some(format!("Bearer {secret}"));
        event.reason = Some(format!("key {secret}\u{7}"));
        let (record, set_aside) = rules.record(event).unwrap();
        assert_eq!(set_aside.len(), 2, "{set_aside:?}");
        let json = String::from_utf8(record.json().to_vec()).unwrap();
        assert!(json.contains("auditrelay.invalid"), "{json}");
        assert!(!json.contains(secret), "{json}");
    }
}
