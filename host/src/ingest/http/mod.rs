//! The HTTP endpoint: events from applications in any language, and the
//! operator's view of the relay.
//!
//! | route | does |
//! |---|---|
//! | `POST /v1/events` | accepts events ([`events`]) |
//! | `POST /v1/sources/{name}` | a webhook source's requests, with its own authentication ([`webhook`](crate::ingest::webhook)) |
//! | `GET /v1/stream` | the durable events as they come, as Server-Sent Events ([`stream`]) |
//! | `GET /v1/status` | every plugin instance's state, as JSON |
//! | `GET /v1/dead-letters/{instance}` | an instance's dead letters (`?limit=`, `?offset=`) |
//! | `POST /v1/dead-letters/{instance}/replay` | delivers them again |
//! | `DELETE /v1/dead-letters/{instance}` | deletes them |
//! | `GET /healthz` | liveness: `200` while the relay runs |
//! | `GET /metrics` | Prometheus text format |
//!
//! With `ingest.http.auth_token` set, every route but `/healthz`,
//! `/metrics` and the webhook sources (which check their own secret) needs `Authorization: Bearer <token>` (the scheme in any
//! letter case, RFC 7235 §2.1). Tokens are compared as SHA-256 digests in
//! constant time, so neither the time taken nor anything else tells how
//! much of a guess was right, or how long the token is.
//!
//! Every connection is bounded in time and all of them in number; see
//! [`server`] for the table of bounds.

mod admin;
mod body;
mod connections;
pub mod events;
pub mod server;
mod sources;
pub mod stream;

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, Secret};
use crate::ingest::webhook::Webhooks;
use crate::relay::Relay;

/// What every handler shares.
#[derive(Clone)]
struct Api {
    relay: Relay,
    /// SHA-256 of `ingest.http.auth_token`.
    token: Option<[u8; 32]>,
    /// How bodies are read, and the memory they share.
    bodies: body::BodyBounds,
    ack_timeout: Duration,
    webhooks: Webhooks,
    streams: stream::Streams,
}

/// A bound HTTP listener, ready to serve.
pub struct HttpIngest {
    listener: TcpListener,
    router: Router,
    bounds: server::Bounds,
    metrics: std::sync::Arc<crate::metrics::Metrics>,
    /// Ends the live streams when serving stops (they never end by
    /// themselves, and the server waits for busy answers).
    streams_stop: CancellationToken,
}

impl HttpIngest {
    /// Binds `ingest.http.listen` (port 0 picks a free port) and opens the
    /// webhook sources of `config`. The connection cap is
    /// `ingest.http.max_connections`, or less if the process's descriptor
    /// limit leaves room for fewer once the relay's own needs are set
    /// aside.
    pub async fn bind(relay: Relay, config: &Config) -> std::io::Result<Self> {
        let settings = &config.ingest.http;
        let listener = TcpListener::bind(settings.listen).await.map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!(
                    "cannot listen on {} (ingest.http.listen): {e}",
                    settings.listen
                ),
            )
        })?;
        let mut max_connections = settings.max_connections;
        if let Some((room, limit)) = server::descriptor_budget(relay.reserved_descriptors()) {
            let room = usize::try_from(room).unwrap_or(usize::MAX);
            if room < max_connections {
                max_connections = room.max(1);
                tracing::warn!(
                    max_connections,
                    configured = settings.max_connections,
                    descriptor_limit = limit,
                    "the open-file limit leaves room for fewer HTTP connections than ingest.http.max_connections; raise the limit (ulimit -n) to allow more"
                );
            }
        }
        let streams_stop = CancellationToken::new();
        Ok(HttpIngest {
            listener,
            metrics: relay.metrics().clone(),
            router: routes(relay, config, streams_stop.clone())?,
            streams_stop,
            bounds: server::Bounds {
                max_connections,
                header_timeout: settings.header_timeout,
                body_timeout: settings.body_timeout,
            },
        })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The most connections served at once.
    pub fn max_connections(&self) -> usize {
        self.bounds.max_connections
    }

    /// Serves until `shutdown` resolves, then lets busy requests finish
    /// (for up to `ingest.http.body_timeout`).
    pub async fn serve(self, shutdown: impl Future<Output = ()> + Send + 'static) {
        let stop = CancellationToken::new();
        let trigger = stop.clone();
        let streams = self.streams_stop;
        tokio::spawn(async move {
            shutdown.await;
            streams.cancel();
            trigger.cancel();
        });
        server::serve(self.listener, self.router, self.bounds, self.metrics, stop).await
    }
}

/// The routes, for serving or testing (live streams end when the relay
/// stops).
pub fn router(relay: Relay, config: &Config) -> std::io::Result<Router> {
    routes(relay, config, CancellationToken::new())
}

/// The routes; `streams_stop` ends the live streams.
fn routes(
    relay: Relay,
    config: &Config,
    streams_stop: CancellationToken,
) -> std::io::Result<Router> {
    let settings = &config.ingest.http;
    let webhooks = Webhooks::open(&relay, config)?;
    let api = Api {
        relay,
        token: settings.auth_token.as_ref().map(digest),
        bodies: body::BodyBounds::new(
            usize::try_from(settings.max_body_bytes.as_u64()).unwrap_or(usize::MAX),
            settings.body_timeout,
            settings.min_body_rate.as_u64(),
            settings.max_body_memory.as_u64(),
        ),
        ack_timeout: settings.ack_timeout,
        webhooks,
        streams: stream::Streams::new(settings.max_streams, settings.stream_stall, streams_stop),
    };
    Ok(Router::new()
        .route("/v1/events", post(events::post_events))
        .route("/v1/sources/{name}", post(sources::post_source))
        .route("/v1/stream", get(stream::stream))
        .route("/v1/status", get(admin::status))
        .route(
            "/v1/dead-letters/{instance}",
            get(admin::list_dead_letters).delete(admin::purge_dead_letters),
        )
        .route(
            "/v1/dead-letters/{instance}/replay",
            post(admin::replay_dead_letters),
        )
        .route("/healthz", get(admin::healthz))
        .route("/metrics", get(admin::metrics))
        // Bodies are read with our own limit, to answer with a useful error.
        .layer(DefaultBodyLimit::disable())
        .with_state(api))
}

/// A JSON error answer: `{"accepted": 0, "error": "..."}`.
fn refuse(status: StatusCode, error: String) -> Response {
    let body = serde_json::json!({ "accepted": 0, "error": error });
    (status, axum::Json(body)).into_response()
}

impl Api {
    /// The response to send if the request is not authorised.
    fn refusal(&self, headers: &HeaderMap) -> Option<Response> {
        let token = self.token.as_ref()?;
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| bearer(v.as_bytes()))
            .unwrap_or_default();
        if constant_time_eq(&sha256(presented), token) {
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

/// The credentials of an `Authorization: Bearer <token>` value: the
/// scheme matched in any case, then one or more spaces.
pub(crate) fn bearer(value: &[u8]) -> Option<&[u8]> {
    let scheme = value.get(..6)?;
    if !scheme.eq_ignore_ascii_case(b"bearer") || value.get(6) != Some(&b' ') {
        return None;
    }
    let token = value[6..].trim_ascii_start();
    (!token.is_empty()).then_some(token)
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes).into()
}

fn digest(token: &Secret) -> [u8; 32] {
    sha256(token.expose().as_bytes())
}

/// Compares two digests without stopping at the first difference.
pub(crate) fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bearer_scheme_is_matched_in_any_case() {
        assert_eq!(bearer(b"Bearer abc"), Some(&b"abc"[..]));
        assert_eq!(bearer(b"bearer  abc"), Some(&b"abc"[..]));
        assert_eq!(bearer(b"BEARER abc"), Some(&b"abc"[..]));
        assert_eq!(bearer(b"Bearerabc"), None);
        assert_eq!(bearer(b"Basic abc"), None);
        assert_eq!(bearer(b"Bearer "), None);
        assert!(constant_time_eq(&sha256(b"abc"), &sha256(b"abc")));
        assert!(!constant_time_eq(&sha256(b"abc"), &sha256(b"abd")));
    }
}
