//! Records of other systems made events, the same way for every source
//! (webhook, file): mapped by the source's mapper (or each read as one
//! envelope when it names none), sorted out record by record, the refused
//! ones kept with why ([`refused`](crate::ingest::refused)), the events
//! made durable. A record is taken whole or refused whole, and only once
//! both its events and its refusal are on disk is anything acknowledged.

use std::sync::Arc;
use std::time::Duration;

use auditrelay_plugin_api::envelope::AuditEventEnvelope;
use auditrelay_plugin_api::mapper::Mapped;

use crate::config::MapperSettings;
use crate::ingest::decode;
use crate::ingest::refused::{RefusedRecord, RefusedRecords};
use crate::metrics::Via;
use crate::relay::intake::{Arrivals, Refusals};
use crate::relay::{EmitError, Relay, SourceMapper, SourceReport};
use crate::runtime::wasm::RecordBatch;

/// Starts a reading source's mapper (none when it names none). A mapper
/// that cannot start is a configuration problem, which only a restart
/// changes: it is logged and reported as the source's error, and the
/// source does not read (`Err`); `idle` says so (`the files are not read`).
pub(crate) async fn start_mapper(
    relay: &Relay,
    key: &str,
    label: &str,
    settings: Option<&MapperSettings>,
    report: &SourceReport,
    idle: &str,
) -> Result<Option<SourceMapper>, ()> {
    let Some(settings) = settings else {
        return Ok(None);
    };
    match relay.start_mapper(key, label, settings).await {
        Ok(mapper) => Ok(Some(mapper)),
        Err(error) => {
            tracing::error!(source = label, "the mapper cannot start; {idle}: {error}");
            report.update(|s| {
                s.state = "failing";
                s.error = Some(error);
            });
            Err(())
        }
    }
}

/// One source's way from records to events.
pub(crate) struct Door<'a> {
    /// The source's name: the only `source` its events may have.
    pub name: &'a str,
    /// How messages name it (`webhook source "shop"`, `file source "app"`).
    pub label: &'a str,
    /// Its mapper; none: each record is one envelope.
    pub mapper: Option<&'a SourceMapper>,
    /// Where its refused records are kept.
    pub refused: &'a RefusedRecords,
    /// How its events are counted.
    pub via: Via,
}

/// What became of a batch whose events are durable.
pub(crate) struct Stored {
    /// Events taken (copies included).
    pub accepted: usize,
    /// Of those, events the spool held already (a resend).
    pub copies: usize,
    /// Records not made events, by position, with why (masked); kept.
    pub refused: Vec<(usize, String)>,
    /// Of those, records kept now (the others were kept before).
    pub newly_kept: usize,
    /// Records mapped to no event, on purpose.
    pub dropped: usize,
}

/// Why nothing of a batch was acknowledged (all of it may be tried again).
#[derive(Debug, thiserror::Error)]
pub(crate) enum StoreFailure {
    /// The mapper did not answer (stopping, a host failure, too slow).
    #[error("{0}")]
    Mapper(String),
    /// A refused record could not be kept.
    #[error("cannot keep a refused record in {path}: {error}; nothing was acknowledged")]
    Keep {
        /// The source's `refused.ndjson`.
        path: String,
        /// Why.
        error: String,
    },
    /// The spool did not take the events, or not durably in time.
    #[error(transparent)]
    Spool(#[from] EmitError),
}

impl Door<'_> {
    /// Maps `batch` (waiting on the mapper at most `map_within`), keeps
    /// what is refused and spools the events, waiting for durability at
    /// most `durable_within`.
    ///
    /// `refused_before` are records of `batch` the source refused itself
    /// (a line too long), by position, with why: they are kept with the
    /// others, in order, and never mapped.
    pub async fn store(
        &self,
        relay: &Relay,
        batch: Arc<RecordBatch>,
        refused_before: Vec<(usize, String)>,
        map_within: Duration,
        durable_within: (Duration, &'static str),
    ) -> Result<Stored, StoreFailure> {
        let mut sorted = if refused_before.is_empty() {
            self.sort(relay, batch.clone(), map_within).await?
        } else {
            // Only the others are mapped; their positions are the batch's.
            let others: Vec<usize> = (0..batch.records.len())
                .filter(|at| !refused_before.iter().any(|(r, _)| r == at))
                .collect();
            let mut sorted = if others.is_empty() {
                Sorted::new(relay)
            } else {
                let sub = Arc::new(RecordBatch {
                    source: batch.source.clone(),
                    content_type: batch.content_type.clone(),
                    records: others.iter().map(|&at| batch.records[at].clone()).collect(),
                });
                self.sort(relay, sub, map_within).await?
            };
            for (at, _) in &mut sorted.refused {
                *at = others[*at];
            }
            sorted.refused.extend(refused_before);
            sorted.refused.sort_by_key(|(at, _)| *at);
            sorted
        };
        let refused = std::mem::take(&mut sorted.refused);
        self.keep_and_spool(relay, &batch, sorted, refused, durable_within)
            .await
    }

    /// Maps `batch` (or reads its records as envelopes) and sorts out
    /// what came back.
    async fn sort(
        &self,
        relay: &Relay,
        batch: Arc<RecordBatch>,
        map_within: Duration,
    ) -> Result<Sorted, StoreFailure> {
        Ok(match self.mapper {
            Some(mapper) => {
                let answers = tokio::time::timeout(map_within, mapper.map(batch.clone()))
                    .await
                    .map_err(|_| {
                        StoreFailure::Mapper(format!(
                            "the mapper did not answer within {} (it may be busy with other records); nothing was stored",
                            humantime::format_duration(map_within)
                        ))
                    })?
                    .map_err(StoreFailure::Mapper)?;
                self.sort_mapped(relay, mapper, &batch, answers)
            }
            None => self.sort_envelopes(relay, &batch),
        })
    }

    /// Keeps the `refused` records of `batch` and spools the events
    /// `sorted` holds, durably.
    async fn keep_and_spool(
        &self,
        relay: &Relay,
        batch: &RecordBatch,
        sorted: Sorted,
        refused: Vec<(usize, String)>,
        durable_within: (Duration, &'static str),
    ) -> Result<Stored, StoreFailure> {
        let kept: Vec<RefusedRecord<'_>> = refused
            .iter()
            .map(|(at, reason)| RefusedRecord {
                record: &batch.records[*at],
                reason: reason.clone(),
            })
            .collect();
        let newly_kept = self
            .refused
            .keep(&batch.content_type, &kept)
            .map_err(|error| StoreFailure::Keep {
                path: self.refused.path().display().to_string(),
                error: error.to_string(),
            })?;
        let admitted = relay
            .admit_durable(
                sorted.arrivals,
                self.via,
                Refusals::TakeTheValid,
                Some(durable_within),
            )
            .await?;
        if newly_kept > 0 {
            for (_, reason) in &refused {
                tracing::warn!(
                    source = self.label,
                    "a record was refused and kept in {}: {reason}",
                    self.refused.path().display()
                );
            }
        }
        Ok(Stored {
            accepted: admitted.receipt.len(),
            copies: admitted.receipt.copies(),
            refused,
            newly_kept,
            dropped: sorted.dropped,
        })
    }

    /// Sorts out the mapper's `answers` to `batch`. An envelope that is not
    /// valid, claims another `source` (a source writes only its own name)
    /// or holds one of the mapper's secrets refuses its record.
    fn sort_mapped(
        &self,
        relay: &Relay,
        mapper: &SourceMapper,
        batch: &RecordBatch,
        answers: Vec<Mapped>,
    ) -> Sorted {
        let rules = relay.rules();
        let mut sorted = Sorted::new(relay);
        for (at, answer) in answers.into_iter().enumerate().take(batch.records.len()) {
            let envelopes = match answer {
                Mapped::Refused(reason) => {
                    sorted
                        .refused
                        .push((at, format!("the mapper refused it: {reason}")));
                    continue;
                }
                Mapped::Envelopes(envelopes) if envelopes.is_empty() => {
                    sorted.dropped += 1;
                    continue;
                }
                Mapped::Envelopes(envelopes) => envelopes,
            };
            let mut own = Arrivals::new(rules.clone());
            let mut problems = Vec::new();
            for (k, json) in envelopes.iter().enumerate() {
                if mapper.holds_secret(json) {
                    problems.push(format!(
                        "mapped event {k} holds one of the mapper's secrets"
                    ));
                    continue;
                }
                match AuditEventEnvelope::from_json(json.as_bytes()) {
                    Ok(event) if event.source != self.name => problems.push(format!(
                        "mapped event {k} has source {:?}; a source writes only its own name ({:?})",
                        event.source, self.name
                    )),
                    Ok(event) => own.push(k, event),
                    Err(error) => {
                        problems.push(format!("mapped event {k} is not a valid envelope: {error}"))
                    }
                }
            }
            if own.has_refused() {
                problems.push(own.refusal_text());
            }
            if problems.is_empty() {
                sorted.arrivals.append(own);
            } else {
                sorted
                    .refused
                    .push((at, mapper.admit(&problems.join("; "))));
            }
        }
        sorted
    }

    /// Reads each record of `batch` as one envelope of this source.
    fn sort_envelopes(&self, relay: &Relay, batch: &RecordBatch) -> Sorted {
        let mut sorted = Sorted::new(relay);
        let door = self.label;
        for (at, record) in batch.records.iter().enumerate() {
            let mut own = Arrivals::new(relay.rules());
            decode::push_json(&mut own, 0, &record.data);
            own.confine_to(self.name, door);
            if own.has_refused() {
                let text = own.refusal_text();
                let reason = text.strip_prefix("event 0: ").unwrap_or(&text);
                sorted
                    .refused
                    .push((at, format!("not a valid envelope: {reason}")));
            } else {
                sorted.arrivals.append(own);
            }
        }
        sorted
    }
}

/// A batch's answers sorted out.
struct Sorted {
    /// The events of every record taken.
    arrivals: Arrivals,
    /// The other records, by position, with the reason.
    refused: Vec<(usize, String)>,
    /// Records mapped to no event on purpose.
    dropped: usize,
}

impl Sorted {
    fn new(relay: &Relay) -> Self {
        Sorted {
            arrivals: Arrivals::new(relay.rules()),
            refused: Vec::new(),
            dropped: 0,
        }
    }
}
