//! `POST /v1/sources/{name}`: a webhook source's requests (see
//! [`webhook`](crate::ingest::webhook) for the steps and the answers).

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::{Api, events, refuse};
use crate::ingest::webhook::Outcome;

pub(super) async fn post_source(
    State(api): State<Api>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Some(webhook) = api.webhooks.get(&name).cloned() else {
        return refuse(
            StatusCode::NOT_FOUND,
            format!(
                "no webhook source named {:?}: configure [ingest.webhook.<name>] (enabled) and send to /v1/sources/<name>",
                name.chars().take(64).collect::<String>()
            ),
        );
    };
    let label = format!("webhook.{}", webhook.name());
    // What the headers tell is checked before the body is read: a sender
    // without credentials holds no body memory.
    if let Err(rejection) = webhook.precheck(&headers) {
        tracing::info!(source = %label, status = rejection.status.as_u16(), "refused a webhook request: {}", rejection.reason);
        return respond(rejection.into());
    }
    let (bytes, budget) = match api.bodies.read(body).await {
        Ok(read) => read,
        Err(refusal) => return refusal,
    };
    let reservation = match webhook.admit(&headers, &bytes) {
        Ok(reservation) => reservation,
        Err(rejection) => {
            tracing::info!(source = %label, status = rejection.status.as_u16(), "refused a webhook request: {}", rejection.reason);
            return respond(rejection.into());
        }
    };
    // Stored in a task of its own, so a client that goes away mid-request
    // cannot cut it short between storing the events and using the
    // signature (a replay would then be taken again).
    let stored = tokio::spawn(async move {
        let _budget = budget;
        let response = if webhook.maps() {
            respond(
                webhook
                    .store_mapped(&api.relay, &headers, bytes, api.ack_timeout)
                    .await,
            )
        } else {
            events::store(&api, headers, bytes, Some(webhook.name())).await
        };
        // Stored (or refused for good): the signature is used. Anything
        // else leaves it usable for the sender's retry.
        let status = response.status();
        if let Some(reservation) = reservation
            && (status == StatusCode::ACCEPTED || status == StatusCode::UNPROCESSABLE_ENTITY)
            && let Err(error) = reservation.commit()
        {
            tracing::warn!(source = %label, "cannot record a used signature (the events' ids still deduplicate a replay): {error}");
        }
        response
    });
    stored.await.unwrap_or_else(|error| {
        refuse(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("storing the request failed in the relay itself (see its log): {error}"),
        )
    })
}

fn respond(outcome: Outcome) -> Response {
    let mut response = (outcome.status, axum::Json(outcome.body)).into_response();
    if let Some(after) = outcome.retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(after));
    }
    response
}
