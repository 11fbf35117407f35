//! The operator's routes: status, dead letters, health, metrics.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::{Api, refuse};
use crate::dispatch::RunState;

pub(super) async fn status(State(api): State<Api>, headers: HeaderMap) -> Response {
    if let Some(refusal) = api.refusal(&headers) {
        return refusal;
    }
    axum::Json(api.relay.status()).into_response()
}

#[derive(Deserialize)]
pub(super) struct Page {
    #[serde(default = "default_limit")]
    limit: usize,
    #[serde(default)]
    offset: usize,
}

fn default_limit() -> usize {
    100
}

fn no_such_instance(instance: &str) -> Response {
    refuse(
        StatusCode::NOT_FOUND,
        format!("no enabled plugin instance is named {instance:?}"),
    )
}

pub(super) async fn list_dead_letters(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(instance): Path<String>,
    Query(page): Query<Page>,
) -> Response {
    if let Some(refusal) = api.refusal(&headers) {
        return refusal;
    }
    let Some(store) = api.relay.dead_letters(&instance) else {
        return no_such_instance(&instance);
    };
    match store.list(page.offset, page.limit) {
        Ok(listing) => axum::Json(listing).into_response(),
        Err(error) => refuse(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot read the dead letters: {error}"),
        ),
    }
}

pub(super) async fn replay_dead_letters(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(instance): Path<String>,
) -> Response {
    if let Some(refusal) = api.refusal(&headers) {
        return refusal;
    }
    if api.relay.dead_letters(&instance).is_none() {
        return no_such_instance(&instance);
    }
    if !api.relay.replay_dead_letters(&instance) {
        return refuse(
            StatusCode::CONFLICT,
            format!(
                "{instance} is not running, so it cannot replay; fix it and restart the relay (a replay asked for while stopped runs at start)"
            ),
        );
    }
    (
        StatusCode::ACCEPTED,
        axum::Json(serde_json::json!({ "replaying": instance })),
    )
        .into_response()
}

pub(super) async fn purge_dead_letters(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(instance): Path<String>,
) -> Response {
    if let Some(refusal) = api.refusal(&headers) {
        return refusal;
    }
    let Some(store) = api.relay.dead_letters(&instance) else {
        return no_such_instance(&instance);
    };
    match store.purge() {
        Ok(purged) => axum::Json(serde_json::json!({ "purged": purged })).into_response(),
        Err(error) => refuse(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot purge the dead letters: {error}"),
        ),
    }
}

pub(super) async fn healthz(State(api): State<Api>) -> Response {
    let status = api.relay.status();
    let running = status
        .plugins
        .iter()
        .filter(|p| p.state == RunState::Running)
        .count();
    let body = serde_json::json!({
        "status": "ok",
        "plugins_running": running,
        "plugins_total": status.plugins.len(),
        "spool_write_error": status.spool_write_error,
    });
    axum::Json(body).into_response()
}

pub(super) async fn metrics(State(api): State<Api>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        api.relay.metrics_text(),
    )
        .into_response()
}
