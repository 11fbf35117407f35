//! A strict Datadog Logs intake: `POST /api/v2/logs` with `DD-API-KEY`, a
//! JSON array of at most 1000 log objects, at most 5 MB uncompressed, each
//! log at most 1 MB; `202 {}` on success, Datadog's error shapes otherwise.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

use super::{Refusal, decode_body, serve};

/// Datadog's documented limits.
const MAX_ENTRIES: usize = 1000;
const MAX_LOG_BYTES: usize = 1_000_000;
const STATUSES: [&str; 9] = [
    "emerg", "alert", "critical", "error", "warning", "notice", "info", "debug", "ok",
];

#[derive(Default)]
struct DatadogState {
    api_key: String,
    max_payload_bytes: usize,
    logs: Vec<Value>,
    /// Per accepted request: entries and uncompressed bytes.
    requests: Vec<(usize, usize)>,
    refusals: VecDeque<Refusal>,
    too_large: usize,
    /// Benchmarks: check framing and count, keep nothing.
    count_only: bool,
    counted: usize,
}

/// A strict Datadog Logs intake on 127.0.0.1.
#[derive(Clone)]
pub struct Datadog {
    /// `http://127.0.0.1:port/api/v2/logs`.
    pub url: String,
    state: Arc<Mutex<DatadogState>>,
}

impl Datadog {
    /// An intake taking `api_key`, refusing (413) payloads over
    /// `max_payload_bytes` uncompressed (Datadog's is 5 MB).
    pub fn start(api_key: &str, max_payload_bytes: usize) -> Self {
        let state = Arc::new(Mutex::new(DatadogState {
            api_key: api_key.to_owned(),
            max_payload_bytes,
            ..DatadogState::default()
        }));
        let app = axum::Router::new()
            .route("/api/v2/logs", post(logs))
            .with_state(state.clone());
        let addr = serve(app);
        Datadog {
            url: format!("http://{addr}/api/v2/logs"),
            state,
        }
    }

    /// The next `count` requests are answered with `refusal`.
    pub fn refuse_next(&self, count: usize, refusal: Refusal) {
        let mut state = self.state.lock().unwrap();
        state.refusals.extend(std::iter::repeat_n(refusal, count));
    }

    /// For benchmarks: from now on check the key, encoding, size and
    /// framing, count the logs and keep nothing (per-field checks cost more
    /// than the exporter being measured).
    pub fn count_only(&self) {
        self.state.lock().unwrap().count_only = true;
    }

    /// Logs accepted in [`count_only`](Self::count_only) mode.
    pub fn counted(&self) -> usize {
        self.state.lock().unwrap().counted
    }

    /// Every accepted log, in arrival order.
    pub fn logs(&self) -> Vec<Value> {
        self.state.lock().unwrap().logs.clone()
    }

    /// Entries and uncompressed bytes of every accepted request.
    pub fn requests(&self) -> Vec<(usize, usize)> {
        self.state.lock().unwrap().requests.clone()
    }

    /// How many requests were refused as too large (413).
    pub fn too_large(&self) -> usize {
        self.state.lock().unwrap().too_large
    }
}

fn error(status: u16, detail: &str) -> Response {
    let status = StatusCode::from_u16(status).unwrap();
    (
        status,
        axum::Json(json!({ "errors": [{
            "status": status.as_u16().to_string(),
            "title": status.canonical_reason().unwrap_or(""),
            "detail": detail,
        }]})),
    )
        .into_response()
}

async fn logs(
    State(state): State<Arc<Mutex<DatadogState>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut state = state.lock().unwrap();
    match headers.get("dd-api-key").and_then(|v| v.to_str().ok()) {
        None => return error(401, "API key is missing"),
        Some(key) if key != state.api_key => return error(403, "Forbidden"),
        Some(_) => {}
    }
    if let Some(refusal) = state.refusals.pop_front() {
        return refusal.into_response();
    }
    if headers.get("content-type").and_then(|v| v.to_str().ok()) != Some("application/json") {
        return error(400, "Content-Type must be application/json");
    }
    let encoding = headers
        .get("content-encoding")
        .and_then(|v| v.to_str().ok());
    let plain = match decode_body(encoding, &body) {
        Ok(plain) => plain,
        Err(e) => return error(400, &e),
    };
    if plain.len() > state.max_payload_bytes {
        state.too_large += 1;
        return error(413, "Payload too large");
    }
    if state.count_only {
        let Ok(entries) = serde_json::from_slice::<Vec<serde::de::IgnoredAny>>(&plain) else {
            return error(400, "Body must be a JSON array of log objects");
        };
        if entries.is_empty() || entries.len() > MAX_ENTRIES {
            return error(400, "A request holds 1 to 1000 log entries");
        }
        state.counted += entries.len();
        return (StatusCode::ACCEPTED, axum::Json(json!({}))).into_response();
    }
    let Ok(Value::Array(entries)) = serde_json::from_slice::<Value>(&plain) else {
        return error(400, "Body must be a JSON array of log objects");
    };
    if entries.is_empty() || entries.len() > MAX_ENTRIES {
        return error(400, "A request holds 1 to 1000 log entries");
    }
    for entry in &entries {
        let Some(log) = entry.as_object() else {
            return error(400, "Each entry must be a JSON object");
        };
        if serde_json::to_vec(entry).unwrap().len() > MAX_LOG_BYTES {
            return error(400, "A log entry is over 1 MB");
        }
        for key in ["ddsource", "ddtags", "hostname", "service", "message"] {
            if log.get(key).is_some_and(|v| !v.is_string()) {
                return error(400, &format!("`{key}` must be a string"));
            }
        }
        if let Some(status) = log.get("status")
            && !status.as_str().is_some_and(|s| STATUSES.contains(&s))
        {
            return error(400, "`status` is not a Datadog log status");
        }
        if let Some(tags) = log.get("ddtags").and_then(Value::as_str)
            && tags.split(',').any(|t| t.is_empty() || t.contains(' '))
        {
            return error(400, "`ddtags` must be comma-separated tags without spaces");
        }
        if log.get("timestamp").is_some_and(|t| !t.is_i64()) {
            return error(400, "`timestamp` must be milliseconds since the epoch");
        }
    }
    state.requests.push((entries.len(), plain.len()));
    state.logs.extend(entries);
    (StatusCode::ACCEPTED, axum::Json(json!({}))).into_response()
}
