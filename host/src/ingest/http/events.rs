//! `POST /v1/events`: events from applications in any language.
//!
//! Body formats are in [`crate::ingest::decode`]. Answers:
//!
//! | status | when | body |
//! |---|---|---|
//! | `202` | every event was accepted **and is durable** (`spool.durability`) | `{"accepted": n, "rejected": []}` |
//! | `422` | some events broke the rules; **the others were accepted** (and are durable) | `{"accepted": n, "rejected": [{"index", "id", "errors": [{"field", "problem"}]}]}` |
//! | `400` | the body is not JSON of the expected shape; nothing accepted | `{"accepted": 0, "error": "..."}` |
//! | `401` | missing or wrong bearer token | `{"accepted": 0, "error": "..."}` |
//! | `413` | body larger than `ingest.http.max_body_bytes` | `{"accepted": 0, "error": "..."}` |
//! | `415` | unsupported `Content-Type` | `{"accepted": 0, "error": "..."}` |
//! | `503` | spool full, disk failing or relay shutting down; retry after `Retry-After` | `{"accepted": n, "error": "..."}` |
//!
//! The valid events of one request are appended together: all of them or
//! none. A `503` with `"accepted": n > 0` means they were accepted but not
//! confirmed durable within `ingest.http.ack_timeout`: they will still be
//! delivered, and a retry may deliver them twice (`(source, id)` tells the
//! copies apart).

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::{Api, refuse};
use crate::ingest::decode::{self, Format, Rejection};
use crate::metrics::Via;
use crate::relay::EmitError;
use crate::spool::SpoolError;

#[derive(Serialize)]
struct Answer {
    accepted: usize,
    rejected: Vec<Rejection>,
}

pub(super) async fn post_events(
    State(api): State<Api>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if let Some(refusal) = api.refusal(&headers) {
        return refusal;
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let format = match Format::from_content_type(content_type) {
        Ok(format) => format,
        Err(error) => return refuse(StatusCode::UNSUPPORTED_MEDIA_TYPE, error),
    };
    let Ok(bytes) = axum::body::to_bytes(body, api.max_body_bytes).await else {
        return refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the body is larger than ingest.http.max_body_bytes ({} bytes): send smaller batches",
                api.max_body_bytes
            ),
        );
    };
    let relay = api.relay.clone();
    // Decoding a large batch takes milliseconds: keep it off the I/O threads.
    let decoded =
        tokio::task::spawn_blocking(move || decode::decode(&bytes, format, relay.limits())).await;
    let decoded = match decoded {
        Ok(Ok(decoded)) => decoded,
        Ok(Err(error)) => return refuse(StatusCode::BAD_REQUEST, error),
        Err(error) => {
            return refuse(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("decoding failed: {error}"),
            );
        }
    };
    let accepted = decoded.records.len();
    if !decoded.rejected.is_empty() {
        api.relay
            .count_rejected(Via::Http, "invalid", decoded.rejected.len() as u64);
    }
    if accepted > 0 {
        let receipt = match api.relay.accept(decoded.records, Via::Http) {
            Ok(receipt) => receipt,
            Err(error) => return unavailable(0, &error),
        };
        match tokio::time::timeout(api.ack_timeout, api.relay.durable(&receipt)).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => return unavailable(accepted, &error),
            Err(_) => {
                let cause = match api.relay.status().spool_write_error {
                    Some(error) => format!(": the spool cannot write to disk ({error})"),
                    None => String::new(),
                };
                let error = format!(
                    "the events were accepted but are not yet durable after {} (ingest.http.ack_timeout){cause}; they will be delivered once they are written, and a retry may duplicate them",
                    humantime::format_duration(api.ack_timeout)
                );
                return unavailable_with(accepted, error, false);
            }
        }
    }
    let status = if decoded.rejected.is_empty() {
        StatusCode::ACCEPTED
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    let answer = Answer {
        accepted,
        rejected: decoded.rejected,
    };
    (status, axum::Json(answer)).into_response()
}

fn unavailable(accepted: usize, error: &EmitError) -> Response {
    let full = matches!(
        error,
        EmitError::Spool(SpoolError::Full { .. } | SpoolError::Unwritable(_))
    );
    unavailable_with(accepted, error.to_string(), full)
}

fn unavailable_with(accepted: usize, error: String, retry_later: bool) -> Response {
    let body = serde_json::json!({ "accepted": accepted, "error": error });
    let mut response = (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response();
    let after = if retry_later { "1" } else { "5" };
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static(after));
    response
}
