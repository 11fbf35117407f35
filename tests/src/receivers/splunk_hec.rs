//! A strict Splunk HTTP Event Collector: `/services/collector/event` and
//! `/services/collector/ack`, answering with HEC's documented status codes
//! and JSON (`{"text": ..., "code": n}`).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

use super::{Refusal, decode_body, serve};

/// One event the collector accepted.
#[derive(Debug, Clone)]
pub struct HecEvent {
    /// The whole HEC event object.
    pub object: Value,
    /// Size of the uncompressed request it came in.
    pub request_bytes: usize,
}

#[derive(Default)]
struct HecState {
    token: String,
    indexes: Vec<String>,
    ack_enabled: bool,
    max_content_length: usize,
    events: Vec<HecEvent>,
    refusals: VecDeque<Refusal>,
    refused: usize,
    /// Per channel: next ack id, and ids not yet acknowledged with the
    /// polls they still need.
    channels: HashMap<String, (u64, HashMap<u64, u32>)>,
    polls_before_ack: u32,
    requests: usize,
    /// Benchmarks: check framing and count, keep nothing.
    count_only: bool,
    counted: usize,
}

/// A strict HEC on 127.0.0.1.
#[derive(Clone)]
pub struct SplunkHec {
    /// `http://127.0.0.1:port`.
    pub endpoint: String,
    state: Arc<Mutex<HecState>>,
}

impl SplunkHec {
    /// A collector taking `token`, writing only to `indexes` (plus events
    /// without an index), refusing bodies over `max_content_length`
    /// uncompressed, with indexer acknowledgement on or off.
    pub fn start(
        token: &str,
        indexes: &[&str],
        ack_enabled: bool,
        max_content_length: usize,
    ) -> Self {
        let state = Arc::new(Mutex::new(HecState {
            token: token.to_owned(),
            indexes: indexes.iter().map(|s| s.to_string()).collect(),
            ack_enabled,
            max_content_length,
            polls_before_ack: 1,
            ..HecState::default()
        }));
        let app = axum::Router::new()
            .route("/services/collector/event", post(event))
            .route("/services/collector/ack", post(ack))
            .with_state(state.clone());
        let addr = serve(app);
        SplunkHec {
            endpoint: format!("http://{addr}"),
            state,
        }
    }

    /// The next `count` event requests are answered with `refusal`.
    pub fn refuse_next(&self, count: usize, refusal: Refusal) {
        let mut state = self.state.lock().unwrap();
        state.refusals.extend(std::iter::repeat_n(refusal, count));
    }

    /// How many ack polls an ack id needs before it reads `true`
    /// (`u32::MAX`: never).
    pub fn set_polls_before_ack(&self, polls: u32) {
        self.state.lock().unwrap().polls_before_ack = polls;
    }

    /// For benchmarks: from now on check the token, encoding and framing,
    /// count the events and keep nothing (per-field checks cost more than
    /// the exporter being measured).
    pub fn count_only(&self) {
        self.state.lock().unwrap().count_only = true;
    }

    /// Events accepted in [`count_only`](Self::count_only) mode.
    pub fn counted(&self) -> usize {
        self.state.lock().unwrap().counted
    }

    /// Every accepted event, in arrival order.
    pub fn events(&self) -> Vec<HecEvent> {
        self.state.lock().unwrap().events.clone()
    }

    /// How many event requests were answered with a scripted refusal.
    pub fn refused(&self) -> usize {
        self.state.lock().unwrap().refused
    }

    /// How many event requests arrived.
    pub fn requests(&self) -> usize {
        self.state.lock().unwrap().requests
    }
}

fn reply(status: u16, code: i64, text: &str) -> Response {
    (
        StatusCode::from_u16(status).unwrap(),
        axum::Json(json!({ "text": text, "code": code })),
    )
        .into_response()
}

/// A HEC refusal: status, code, text.
type HecError = (u16, i64, &'static str);

/// HEC's token check: codes 2 (missing), 3 (malformed), 4 (wrong).
fn check_token(state: &HecState, headers: &HeaderMap) -> Result<(), HecError> {
    let Some(value) = headers.get("authorization").and_then(|v| v.to_str().ok()) else {
        return Err((401, 2, "Token is required"));
    };
    let Some(token) = value.strip_prefix("Splunk ") else {
        return Err((401, 3, "Invalid authorization"));
    };
    if token != state.token {
        return Err((403, 4, "Invalid token"));
    }
    Ok(())
}

fn channel(
    state: &HecState,
    headers: &HeaderMap,
    query: &HashMap<String, String>,
) -> Result<Option<String>, HecError> {
    let channel = headers
        .get("x-splunk-request-channel")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| query.get("channel").cloned());
    match channel {
        None if state.ack_enabled => Err((400, 10, "Data channel is missing")),
        Some(c) if uuid_like(&c) => Ok(Some(c)),
        Some(_) => Err((400, 11, "Invalid data channel")),
        None => Ok(None),
    }
}

fn uuid_like(text: &str) -> bool {
    let parts: Vec<&str> = text.split('-').collect();
    parts.iter().map(|p| p.len()).collect::<Vec<_>>() == [8, 4, 4, 4, 12]
        && text.chars().all(|c| c == '-' || c.is_ascii_hexdigit())
}

async fn event(
    State(state): State<Arc<Mutex<HecState>>>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut state = state.lock().unwrap();
    state.requests += 1;
    if let Err((status, code, text)) = check_token(&state, &headers) {
        return reply(status, code, text);
    }
    let channel = match channel(&state, &headers, &query) {
        Ok(c) => c,
        Err((status, code, text)) => return reply(status, code, text),
    };
    if let Some(refusal) = state.refusals.pop_front() {
        state.refused += 1;
        return refusal.into_response();
    }
    let encoding = headers
        .get("content-encoding")
        .and_then(|v| v.to_str().ok());
    let plain = match decode_body(encoding, &body) {
        Ok(plain) => plain,
        Err(e) => return reply(400, 6, &format!("Invalid data format: {e}")),
    };
    if plain.len() > state.max_content_length {
        return reply(413, 27, "Content too large");
    }
    if plain.iter().all(u8::is_ascii_whitespace) {
        return reply(400, 5, "No data");
    }
    if state.count_only {
        let stream =
            serde_json::Deserializer::from_slice(&plain).into_iter::<serde::de::IgnoredAny>();
        let mut count = 0;
        for event in stream {
            if event.is_err() {
                return reply(400, 6, "Invalid data format");
            }
            count += 1;
        }
        state.counted += count;
        return reply(200, 0, "Success");
    }
    let mut accepted = Vec::new();
    let stream = serde_json::Deserializer::from_slice(&plain).into_iter::<Value>();
    for (number, object) in stream.enumerate() {
        let invalid = |code: i64, text: &str| {
            (
                StatusCode::BAD_REQUEST,
                axum::Json(json!({ "text": text, "code": code, "invalid-event-number": number })),
            )
                .into_response()
        };
        let Ok(Value::Object(object)) = object else {
            return invalid(6, "Invalid data format");
        };
        for key in object.keys() {
            if ![
                "time",
                "host",
                "source",
                "sourcetype",
                "index",
                "event",
                "fields",
            ]
            .contains(&key.as_str())
            {
                return invalid(6, "Invalid data format");
            }
        }
        match object.get("event") {
            None => return invalid(12, "Event field is required"),
            Some(Value::Null) => return invalid(13, "Event field cannot be blank"),
            Some(Value::String(s)) if s.trim().is_empty() => {
                return invalid(13, "Event field cannot be blank");
            }
            Some(_) => {}
        }
        if object.get("time").is_some_and(|t| !t.is_number()) {
            return invalid(6, "Invalid data format");
        }
        for key in ["host", "source", "sourcetype", "index"] {
            if object.get(key).is_some_and(|v| !v.is_string()) {
                return invalid(6, "Invalid data format");
            }
        }
        if let Some(index) = object.get("index").and_then(Value::as_str)
            && !state.indexes.iter().any(|i| i == index)
        {
            return invalid(7, "Incorrect index");
        }
        if let Some(fields) = object.get("fields") {
            let flat = fields.as_object().is_some_and(|f| {
                f.values().all(|v| {
                    v.is_string() || v.as_array().is_some_and(|a| a.iter().all(Value::is_string))
                })
            });
            if !flat {
                return invalid(15, "Error in handling indexed fields");
            }
        }
        accepted.push(HecEvent {
            object: Value::Object(object),
            request_bytes: plain.len(),
        });
    }
    state.events.extend(accepted);
    if !state.ack_enabled {
        return reply(200, 0, "Success");
    }
    let polls = state.polls_before_ack;
    let (next, pending) = state
        .channels
        .entry(channel.expect("checked above"))
        .or_default();
    let id = *next;
    *next += 1;
    pending.insert(id, polls);
    (
        StatusCode::OK,
        axum::Json(json!({ "text": "Success", "code": 0, "ackId": id })),
    )
        .into_response()
}

async fn ack(
    State(state): State<Arc<Mutex<HecState>>>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut state = state.lock().unwrap();
    if let Err((status, code, text)) = check_token(&state, &headers) {
        return reply(status, code, text);
    }
    if !state.ack_enabled {
        return reply(400, 14, "ACK is disabled");
    }
    let channel = match channel(&state, &headers, &query) {
        Ok(Some(c)) => c,
        Ok(None) => return reply(400, 10, "Data channel is missing"),
        Err((status, code, text)) => return reply(status, code, text),
    };
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return reply(400, 6, "Invalid data format");
    };
    let Some(ids) = request["acks"].as_array() else {
        return reply(400, 6, "Invalid data format");
    };
    let (_, pending) = state.channels.entry(channel).or_default();
    let mut acks = serde_json::Map::new();
    for id in ids {
        let Some(id) = id.as_u64() else {
            return reply(400, 6, "Invalid data format");
        };
        let done = match pending.get_mut(&id) {
            Some(0) => {
                pending.remove(&id);
                true
            }
            Some(left) => {
                *left = left.saturating_sub(1);
                false
            }
            // Unknown or already reported: Splunk answers false.
            None => false,
        };
        acks.insert(id.to_string(), Value::Bool(done));
    }
    (StatusCode::OK, axum::Json(json!({ "acks": acks }))).into_response()
}
