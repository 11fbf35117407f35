//! The HTTP endpoint, for applications in any language.
//!
//! | route | does |
//! |---|---|
//! | `POST /v1/events` | accepts events (formats in [`super::decode`]) |
//! | `GET /v1/status` | every plugin instance's state, as JSON |
//! | `GET /healthz` | liveness: `200` while the relay runs |
//! | `GET /metrics` | Prometheus text format |
//!
//! `POST /v1/events` answers:
//!
//! | status | when | body |
//! |---|---|---|
//! | `202` | every event was accepted | `{"accepted": n, "rejected": []}` |
//! | `422` | some events broke the rules; **the others were accepted** | `{"accepted": n, "rejected": [{"index", "id", "errors": [{"field", "problem"}]}]}` |
//! | `400` | the body is not JSON of the expected shape; nothing accepted | `{"accepted": 0, "error": "..."}` |
//! | `401` | missing or wrong bearer token | `{"accepted": 0, "error": "..."}` |
//! | `413` | body larger than `ingest.http.max_body_bytes` | `{"accepted": 0, "error": "..."}` |
//! | `415` | unsupported `Content-Type` | `{"accepted": 0, "error": "..."}` |
//! | `503` | spool full or relay shutting down; nothing accepted; retry (`Retry-After`) | `{"accepted": 0, "error": "..."}` |
//!
//! Events accepted by one request are appended together: either all the
//! valid events of a request are in the spool, or none are.

use std::future::Future;
use std::net::SocketAddr;

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;
use tokio::net::TcpListener;

use super::decode::{self, Format, Rejection};
use crate::config::{HttpIngestSettings, Secret};
use crate::metrics::Via;
use crate::relay::{EmitError, Relay};
use crate::spool::SpoolError;

#[derive(Clone)]
struct Ingest {
    relay: Relay,
    token: Option<Secret>,
    max_body_bytes: usize,
}

#[derive(Serialize)]
struct IngestResponse {
    accepted: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    rejected: Option<Vec<Rejection>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// A bound HTTP listener, ready to serve.
pub struct HttpIngest {
    listener: TcpListener,
    router: Router,
}

impl HttpIngest {
    /// Binds `settings.listen` (port 0 picks a free port).
    pub async fn bind(relay: Relay, settings: &HttpIngestSettings) -> std::io::Result<Self> {
        let listener = TcpListener::bind(settings.listen).await.map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!(
                    "cannot listen on {} (ingest.http.listen): {e}",
                    settings.listen
                ),
            )
        })?;
        Ok(HttpIngest {
            listener,
            router: router(relay, settings),
        })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` resolves, then lets open requests finish.
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        axum::serve(self.listener, self.router)
            .with_graceful_shutdown(shutdown)
            .await
    }
}

/// The routes, for serving or testing.
pub fn router(relay: Relay, settings: &HttpIngestSettings) -> Router {
    let state = Ingest {
        relay,
        token: settings.auth_token.clone(),
        max_body_bytes: usize::try_from(settings.max_body_bytes.as_u64()).unwrap_or(usize::MAX),
    };
    Router::new()
        .route("/v1/events", post(post_events))
        .route("/v1/status", get(get_status))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        // Bodies are read with our own limit, to answer with a useful error.
        .layer(DefaultBodyLimit::disable())
        .with_state(state)
}

fn refuse(status: StatusCode, error: String) -> Response {
    let body = IngestResponse {
        accepted: 0,
        rejected: None,
        error: Some(error),
    };
    (status, axum::Json(body)).into_response()
}

impl Ingest {
    /// The response to send if the request is not authorised.
    fn refusal(&self, headers: &HeaderMap) -> Option<Response> {
        let token = self.token.as_ref()?;
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if constant_time_eq(presented.as_bytes(), token.expose().as_bytes()) {
            return None;
        }
        let mut response = refuse(
            StatusCode::UNAUTHORIZED,
            "missing or wrong bearer token: send Authorization: Bearer <ingest.http.auth_token>"
                .into(),
        );
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"auditrelay\""),
        );
        Some(response)
    }
}

async fn post_events(State(ingest): State<Ingest>, headers: HeaderMap, body: Body) -> Response {
    if let Some(refusal) = ingest.refusal(&headers) {
        return refusal;
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let format = match Format::from_content_type(content_type) {
        Ok(format) => format,
        Err(error) => return refuse(StatusCode::UNSUPPORTED_MEDIA_TYPE, error),
    };
    let bytes = match axum::body::to_bytes(body, ingest.max_body_bytes).await {
        Ok(bytes) => bytes,
        Err(_) => {
            return refuse(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "the body is larger than ingest.http.max_body_bytes ({} bytes): send smaller batches",
                    ingest.max_body_bytes
                ),
            );
        }
    };
    let relay = ingest.relay.clone();
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
        tracing::debug!(
            rejected = decoded.rejected.len(),
            accepted,
            "refused invalid events at the HTTP endpoint"
        );
        ingest
            .relay
            .count_rejected(Via::Http, "invalid", decoded.rejected.len() as u64);
    }
    if accepted > 0
        && let Err(error) = ingest.relay.accept(decoded.records, Via::Http)
    {
        let mut response = refuse(StatusCode::SERVICE_UNAVAILABLE, error.to_string());
        if matches!(error, EmitError::Spool(SpoolError::Full { .. })) {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        return response;
    }
    let status = if decoded.rejected.is_empty() {
        StatusCode::ACCEPTED
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    let body = IngestResponse {
        accepted,
        rejected: Some(decoded.rejected),
        error: None,
    };
    (status, axum::Json(body)).into_response()
}

async fn get_status(State(ingest): State<Ingest>, headers: HeaderMap) -> Response {
    if let Some(refusal) = ingest.refusal(&headers) {
        return refusal;
    }
    axum::Json(ingest.relay.status()).into_response()
}

async fn healthz(State(ingest): State<Ingest>) -> Response {
    let status = ingest.relay.status();
    let running = status
        .plugins
        .iter()
        .filter(|p| p.state == crate::dispatch::RunState::Running)
        .count();
    let body = serde_json::json!({
        "status": "ok",
        "plugins_running": running,
        "plugins_total": status.plugins.len(),
    });
    axum::Json(body).into_response()
}

async fn metrics(State(ingest): State<Ingest>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        ingest.relay.metrics_text(),
    )
        .into_response()
}

/// Compares without stopping at the first difference, so response time
/// does not reveal how much of a guessed token was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
