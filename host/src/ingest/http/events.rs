//! `POST /v1/events`: events from applications in any language.
//!
//! Body formats are in [`crate::ingest::decode`]; a request with a
//! `ce-specversion` header is one CloudEvent in the HTTP binding's binary
//! mode. Answers:
//!
//! | status | when | body |
//! |---|---|---|
//! | `202` | every event was accepted **and is durable** (`spool.durability`) | `{"accepted": n, "rejected": []}`, and `"set_aside": [{"index", "id", "errors"}]` for events taken without optional fields that broke a rule (`relay.invalid_optional`) |
//! | `422` | some events broke the rules; **the others were accepted** (and are durable) | `{"accepted": n, "rejected": [{"index", "id", "errors": [{"field", "problem"}]}]}` |
//! | `400` | the body is not JSON of the expected shape; nothing accepted | `{"accepted": 0, "error": "..."}` |
//! | `401` | missing or wrong bearer token | `{"accepted": 0, "error": "..."}` |
//! | `408` | the body did not arrive within `ingest.http.body_timeout`, or slower than `min_body_rate` | `{"accepted": 0, "error": "..."}` |
//! | `413` | body larger than `ingest.http.max_body_bytes` | `{"accepted": 0, "error": "..."}` |
//! | `415` | unsupported `Content-Type` | `{"accepted": 0, "error": "..."}` |
//! | `503` | spool full, disk failing, relay shutting down, or `max_body_memory` of bodies held; **nothing is acknowledged**: retry after `Retry-After` | `{"accepted": 0, "error": "..."}` |
//!
//! The valid events of one request are appended together: all of them or
//! none. `"accepted"` counts only events that are durable: a `503` always
//! says `0`. While the spool cannot write (a full or failing disk) a
//! request is refused at once. If the disk starts failing, or durability
//! takes longer than `ingest.http.ack_timeout`, after the events were
//! appended, they are held in memory only; the answer says so, and the
//! client must retry. Should the disk recover first they are delivered as
//! well, so a retry may deliver them twice (`(source, id)` tells the copies
//! apart) — never zero times for an event the client was told to retry.

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::{Api, refuse};
use crate::ingest::decode::{self, Format};
use crate::metrics::Via;
use crate::relay::{EmitError, Refusals, Refused};
use crate::spool::SpoolError;

#[derive(Serialize)]
struct Answer {
    /// Every event acknowledged, copies included.
    accepted: usize,
    /// Of those, copies of events accepted recently: not spooled again.
    #[serde(skip_serializing_if = "is_zero")]
    copies: usize,
    rejected: Vec<Refused>,
    /// Events taken with optional fields that broke a rule left out (their
    /// values kept in `metadata["auditrelay.invalid"]`): the rules broken.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    set_aside: Vec<Refused>,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

pub(super) async fn post_events(
    State(api): State<Api>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if let Some(refusal) = api.refusal(&headers) {
        return refusal;
    }
    // An unsupported type is refused before the body is read.
    if let Err(error) = body_format(&headers) {
        return refuse(StatusCode::UNSUPPORTED_MEDIA_TYPE, error);
    }
    // Held until the events are dealt with: decoded events cost memory too.
    let (bytes, _budget) = match api.bodies.read(body).await {
        Ok(read) => read,
        Err(refusal) => return refusal,
    };
    store(&api, headers, bytes, None).await
}

/// How the body is written: a format, and whether it is a CloudEvent in
/// the HTTP binding's binary mode (its attributes in `ce-*` headers,
/// whatever the body's type, unless the type names a CloudEvents format:
/// that is structured mode).
fn body_format(headers: &HeaderMap) -> Result<(Format, bool), String> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let binary = headers.contains_key("ce-specversion")
        && !content_type.is_some_and(|t| t.trim().starts_with("application/cloudevents"));
    match Format::from_content_type(content_type) {
        Ok(format) => Ok((format, binary)),
        Err(_) if binary => Ok((Format::Json, true)),
        Err(error) => Err(error.to_string()),
    }
}

/// Reads a body of envelopes and spools the valid ones, answering as the
/// table above says: for `POST /v1/events`, or (`webhook`: its name) a
/// webhook source without a mapper, which takes only events of its own
/// source.
pub(super) async fn store(
    api: &Api,
    headers: HeaderMap,
    bytes: Bytes,
    webhook: Option<&str>,
) -> Response {
    let (format, binary) = match body_format(&headers) {
        Ok(found) => found,
        Err(error) => return refuse(StatusCode::UNSUPPORTED_MEDIA_TYPE, error),
    };
    let rules = api.relay.rules();
    let decoding = move || {
        if binary {
            decode::decode_binary_cloudevent(&headers, &bytes, rules)
        } else {
            decode::decode(&bytes, format, rules)
        }
    };
    // Reading a large batch takes milliseconds: keep it off the I/O threads.
    let mut arrivals = match tokio::task::spawn_blocking(decoding).await {
        Ok(Ok(arrivals)) => arrivals,
        Ok(Err(error)) => return refuse(StatusCode::BAD_REQUEST, error.to_string()),
        Err(error) => {
            return refuse(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("decoding failed: {error}"),
            );
        }
    };
    let via = match webhook {
        Some(name) => {
            arrivals.confine_to(name, &format!("webhook source {name}"));
            Via::Webhook
        }
        None => Via::Http,
    };
    let admitted = api
        .relay
        .admit_durable(
            arrivals,
            via,
            Refusals::TakeTheValid,
            Some((api.ack_timeout, "ingest.http.ack_timeout")),
        )
        .await;
    let admitted = match admitted {
        Ok(admitted) => admitted,
        Err(error) => return unavailable(&error),
    };
    let status = if admitted.refused.is_empty() {
        StatusCode::ACCEPTED
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    let answer = Answer {
        accepted: admitted.receipt.len(),
        copies: admitted.receipt.copies(),
        rejected: admitted.refused,
        set_aside: admitted.set_aside,
    };
    (status, axum::Json(answer)).into_response()
}

/// A `503` for events that were not acknowledged: refused, or not durable.
fn unavailable(error: &EmitError) -> Response {
    // Room or a working disk may come back within a second; a slow disk
    // or a closing relay needs longer.
    let retry_soon = matches!(
        error,
        EmitError::Spool(SpoolError::Full { .. } | SpoolError::Unwritable(_))
            | EmitError::NotDurable { .. }
    );
    let body = serde_json::json!({ "accepted": 0, "error": error.to_string() });
    let mut response = (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response();
    let after = if retry_soon { "1" } else { "5" };
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static(after));
    response
}
