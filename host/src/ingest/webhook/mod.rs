//! Webhook sources: `POST /v1/sources/<name>` for systems the relay does
//! not control, each configured in `[ingest.webhook.<name>]`.
//!
//! A request is, in this order: authenticated ([`verify`]: a bearer token,
//! the v2 HMAC over timestamp and body digest, or `X-Hub-Signature-256`);
//! checked against the [`replay`] cache (a v2 signature is accepted once);
//! mapped by the source's mapper plugin (the body is one record, its
//! selected headers the metadata), or read as envelopes when the source
//! names no mapper; its refused records kept with the reason
//! ([`refused`](crate::ingest::refused)); its events made durable. Only
//! then is it acknowledged, and only then is its signature used.
//!
//! | status | when | body |
//! |---|---|---|
//! | `202` | every event is durable; refused records are kept | `{"accepted": n, "copies": c, "refused": [{"record", "reason"}]}` |
//! | `401` | missing, malformed, wrong or stale credentials; nothing stored | `{"accepted": 0, "error": "<header>: ..."}` |
//! | `404` | no enabled source of that name | `{"accepted": 0, "error": "..."}` |
//! | `409` | the v2 signature was used before; nothing stored | `{"accepted": 0, "error": "<signature header>: ..."}` |
//! | `503` | the mapper cannot start, the spool cannot take the events, the refused records cannot be kept, the same signature is being stored now, or the relay is stopping; nothing acknowledged (retry) | `{"accepted": 0, "error": "..."}` |
//!
//! Without a mapper the answers are `POST /v1/events`'s
//! ([`events`](crate::ingest::http::events)).

pub mod replay;
pub mod verify;

#[cfg(test)]
mod attacks;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use bytes::Bytes;
use serde::Serialize;
use tokio::sync::OnceCell;

use self::replay::{ReplayCache, Replayed};
use self::verify::{Proof, Rejection, Verifier};
use crate::config::{Config, WebhookSettings};
use crate::ingest::foreign::{Door, StoreFailure};
use crate::ingest::refused::RefusedRecords;
use crate::metrics::Via;
use crate::relay::{EmitError, Relay, SourceMapper, SourceReport};
use crate::runtime::wasm::{ForeignRecord, RecordBatch};

/// The enabled webhook sources, by name.
#[derive(Clone, Default)]
pub struct Webhooks(Arc<BTreeMap<String, Arc<Webhook>>>);

/// One webhook source.
pub struct Webhook {
    name: String,
    settings: WebhookSettings,
    verifier: Verifier,
    /// `hmac` only: the signatures used within the window.
    replay: Option<Arc<ReplayCache>>,
    mapper: OnceCell<Result<SourceMapper, String>>,
    refused: RefusedRecords,
    report: SourceReport,
}

/// What became of a request: the status and the JSON answer.
pub struct Outcome {
    /// The HTTP status.
    pub status: StatusCode,
    /// The answer's body.
    pub body: serde_json::Value,
    /// Seconds to wait before retrying (`503`).
    pub retry_after: Option<u64>,
}

impl Outcome {
    fn refused(status: StatusCode, error: String) -> Self {
        Outcome {
            status,
            body: serde_json::json!({ "accepted": 0, "error": error }),
            retry_after: (status == StatusCode::SERVICE_UNAVAILABLE).then_some(1),
        }
    }
}

impl From<Rejection> for Outcome {
    fn from(rejection: Rejection) -> Self {
        Outcome::refused(rejection.status, rejection.reason)
    }
}

#[derive(Serialize)]
struct Answer {
    accepted: usize,
    #[serde(skip_serializing_if = "is_zero")]
    copies: usize,
    /// Records not turned into events, kept with the reason in the
    /// source's `refused.ndjson` (not to be sent again).
    refused: Vec<RecordRefusal>,
}

#[derive(Serialize)]
struct RecordRefusal {
    record: usize,
    reason: String,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

impl Webhooks {
    /// The enabled sources of `config`, their replay caches opened and
    /// their mappers starting in the background.
    pub fn open(relay: &Relay, config: &Config) -> std::io::Result<Self> {
        let now = jiff::Timestamp::now().as_second();
        let mut all = BTreeMap::new();
        for (name, settings) in config.ingest.webhook.iter().filter(|(_, s)| s.enabled) {
            let dir = config.relay.data_dir.sources().join(name);
            let verifier = Verifier::new(settings);
            let replay = match settings.auth {
                crate::config::WebhookAuth::Hmac => {
                    let window = i64::try_from(verifier.window().as_secs()).unwrap_or(i64::MAX);
                    Some(ReplayCache::open(&dir.join("replay"), window, now).map_err(|e| {
                        std::io::Error::new(e.kind(), format!("cannot open the replay cache of ingest.webhook.{name} in {}: {e}", dir.display()))
                    })?)
                }
                _ => None,
            };
            let report = relay.register_source(format!("webhook.{name}"));
            report.update(|s| {
                s.state = if settings.mapper.is_some() {
                    "starting"
                } else {
                    "listening"
                }
            });
            let webhook = Arc::new(Webhook {
                name: name.clone(),
                settings: settings.clone(),
                verifier,
                replay,
                mapper: OnceCell::new(),
                refused: RefusedRecords::new(&dir, name, settings.max_refused_bytes.as_u64()),
                report,
            });
            if webhook.settings.mapper.is_some() {
                let (webhook, relay) = (webhook.clone(), relay.clone());
                tokio::spawn(async move { webhook.mapper(&relay).await.is_ok() });
            }
            all.insert(name.clone(), webhook);
        }
        Ok(Webhooks(Arc::new(all)))
    }

    /// The source called `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<Webhook>> {
        self.0.get(name)
    }
}

impl Webhook {
    /// The source's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether a body goes through a mapper (else it is envelopes).
    pub fn maps(&self) -> bool {
        self.settings.mapper.is_some()
    }

    /// The mapper, started on first need; its failure is kept (a bad
    /// configuration needs a restart to change).
    async fn mapper(&self, relay: &Relay) -> Result<&SourceMapper, &str> {
        let settings = self
            .settings
            .mapper
            .as_ref()
            .expect("called for sources with a mapper");
        let started = self
            .mapper
            .get_or_init(|| async {
                let key = format!("ingest.webhook.{}", self.name);
                let started = relay.start_mapper(&key, &format!("webhook.{}", self.name), settings).await;
                match &started {
                    Ok(_) => self.report.update(|s| {
                        s.state = "listening";
                        s.error = None;
                    }),
                    Err(error) => {
                        tracing::error!(source = %key, "the mapper cannot start; requests are answered 503: {error}");
                        self.report.update(|s| {
                            s.state = "failing";
                            s.error = Some(error.clone());
                        });
                    }
                }
                started
            })
            .await;
        started.as_ref().map_err(String::as_str)
    }

    /// What the headers alone tell, before the body is read.
    pub fn precheck(&self, headers: &HeaderMap) -> Result<(), Rejection> {
        self.verifier
            .precheck(headers, jiff::Timestamp::now().as_second())
    }

    /// Authenticates a request and holds its signature; the proof of a
    /// request that may be stored.
    pub fn admit(
        &self,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<Option<replay::Reservation>, Rejection> {
        let now = jiff::Timestamp::now().as_second();
        let proof = self.verifier.verify(headers, body, now)?;
        let (
            Proof::Signed {
                signature,
                timestamp,
            },
            Some(cache),
        ) = (proof, &self.replay)
        else {
            return Ok(None);
        };
        let header = &self.settings.signature_header;
        cache.reserve(signature, timestamp, now).map(Some).map_err(|replayed| match replayed {
            Replayed::Accepted(at) => Rejection {
                status: StatusCode::CONFLICT,
                reason: format!(
                    "{header}: this signature (signed at {at}) was accepted before; each delivery must be signed afresh (nothing was stored)"
                ),
            },
            // The first may yet fail: this one is not refused for good.
            Replayed::InFlight => Rejection {
                status: StatusCode::SERVICE_UNAVAILABLE,
                reason: format!(
                    "{header}: a request with this signature is being stored now; retry shortly (if it was stored, the retry is answered 409)"
                ),
            },
        })
    }

    /// Maps an authenticated body, keeps what is refused and spools the
    /// events, within `ack_timeout` for durability.
    pub async fn store_mapped(
        &self,
        relay: &Relay,
        headers: &HeaderMap,
        body: Bytes,
        ack_timeout: Duration,
    ) -> Outcome {
        let mapper = match self.mapper(relay).await {
            Ok(mapper) => mapper,
            Err(error) => {
                return Outcome::refused(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("this source's mapper is not running: {error}"),
                );
            }
        };
        let content_type = headers
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("application/octet-stream")
            .to_owned();
        let metadata = self
            .settings
            .metadata_headers
            .iter()
            .filter_map(|name| {
                let value = headers.get(name)?;
                Some((
                    name.clone(),
                    String::from_utf8_lossy(value.as_bytes()).into_owned(),
                ))
            })
            .collect();
        let batch = Arc::new(RecordBatch {
            source: self.name.clone(),
            content_type,
            records: vec![ForeignRecord {
                data: body.to_vec(),
                metadata,
            }],
        });
        // A sender waits on the mapper too: no longer than for durability.
        // Past it nothing is kept or stored, and the retry maps afresh.
        let label = format!("webhook.{}", self.name);
        let door = Door {
            name: &self.name,
            label: &label,
            mapper: Some(mapper),
            refused: &self.refused,
            via: Via::Webhook,
        };
        let stored = door
            .store(
                relay,
                batch,
                Vec::new(),
                ack_timeout,
                (ack_timeout, "ingest.http.ack_timeout"),
            )
            .await;
        let stored = match stored {
            Ok(stored) => stored,
            Err(StoreFailure::Spool(error)) => return unavailable(&error),
            Err(failure) => {
                return Outcome::refused(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("{failure} (ingest.http.ack_timeout bounds the wait); retry"),
                );
            }
        };
        self.report.update(|s| {
            s.spooled_events += (stored.accepted - stored.copies) as u64;
            s.refused_records += stored.newly_kept as u64;
            s.dropped_records += stored.dropped as u64;
        });
        let answer = Answer {
            accepted: stored.accepted,
            copies: stored.copies,
            refused: stored
                .refused
                .into_iter()
                .map(|(record, reason)| RecordRefusal { record, reason })
                .collect(),
        };
        Outcome {
            status: StatusCode::ACCEPTED,
            body: serde_json::to_value(answer).expect("an answer serializes"),
            retry_after: None,
        }
    }
}

/// A `503` for events that were not acknowledged.
pub fn unavailable(error: &EmitError) -> Outcome {
    Outcome::refused(StatusCode::SERVICE_UNAVAILABLE, error.to_string())
}
