//! Reading a request body within its bounds: its size
//! (`ingest.http.max_body_bytes`), its time (`body_timeout`), its pace
//! (`min_body_rate`), and the memory every body being read or decoded
//! shares (`max_body_memory`).
//!
//! Bodies are held whole before decoding (a batch is appended all or
//! nothing), so without a shared budget a thousand clients could make the
//! relay hold a thousand maximal bodies at once. A body that would take the
//! budget past its end is refused with `503` at once; the client retries.
//! A body that trickles in slower than the minimum rate (after a short
//! grace) is refused with `408`, so slow clients cannot hold connections
//! for the whole `body_timeout`.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use http_body_util::BodyExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use super::refuse;

/// How long a body may take to start arriving before its pace counts.
const GRACE: Duration = Duration::from_secs(2);
/// The budget counts in units of this many bytes.
const UNIT: u64 = 1024;

/// The bounds every body is read within.
#[derive(Clone)]
pub(super) struct BodyBounds {
    /// Largest body.
    pub max_bytes: usize,
    /// Longest time to receive one.
    pub timeout: Duration,
    /// Slowest pace, in bytes per second after [`GRACE`] (0: any).
    pub min_rate: u64,
    /// What all bodies being read or decoded may hold together, in units.
    pub budget: Arc<Semaphore>,
    /// The budget's size in bytes, for the message.
    pub budget_bytes: u64,
}

impl BodyBounds {
    /// A budget of `bytes` shared by every body.
    pub fn new(max_bytes: usize, timeout: Duration, min_rate: u64, bytes: u64) -> Self {
        // Rounded up, as each body rounds up what it takes: a budget equal
        // to the largest body always admits it.
        let units = usize::try_from(bytes.div_ceil(UNIT))
            .unwrap_or(usize::MAX)
            .min(Semaphore::MAX_PERMITS);
        BodyBounds {
            max_bytes,
            timeout,
            min_rate,
            budget: Arc::new(Semaphore::new(units)),
            budget_bytes: bytes,
        }
    }

    /// Reads `body` whole. The permit holds its share of the budget: keep
    /// it until the events decoded from the body are dealt with.
    pub async fn read(&self, body: Body) -> Result<(Bytes, OwnedSemaphorePermit), Response> {
        let started = Instant::now();
        let deadline = started + self.timeout;
        let mut body = body;
        let mut bytes = Vec::new();
        let mut held = self
            .budget
            .clone()
            .try_acquire_many_owned(0)
            .expect("zero permits are always there");
        loop {
            // The next piece must come before the pace falls below the
            // minimum, and before the body's deadline.
            let pace_due = match self.min_rate {
                0 => deadline,
                rate => started + GRACE + Duration::from_secs_f64(bytes.len() as f64 / rate as f64),
            };
            let frame = match tokio::time::timeout_at(deadline.min(pace_due), body.frame()).await {
                Ok(Some(Ok(frame))) => frame,
                Ok(None) => break,
                // The client went away or sent nonsense: a 400 if it still
                // listens.
                Ok(Some(Err(error))) => {
                    return Err(refuse(
                        StatusCode::BAD_REQUEST,
                        format!("the body could not be read: {error}"),
                    ));
                }
                Err(_) if pace_due < deadline => {
                    return Err(close(refuse(
                        StatusCode::REQUEST_TIMEOUT,
                        format!(
                            "the body arrives slower than ingest.http.min_body_rate ({} bytes/s); nothing was accepted",
                            self.min_rate
                        ),
                    )));
                }
                Err(_) => {
                    return Err(close(refuse(
                        StatusCode::REQUEST_TIMEOUT,
                        format!(
                            "the body did not arrive within {} (ingest.http.body_timeout); nothing was accepted",
                            humantime::format_duration(self.timeout)
                        ),
                    )));
                }
            };
            let Ok(data) = frame.into_data() else {
                continue; // trailers
            };
            if bytes.len() + data.len() > self.max_bytes {
                return Err(close(refuse(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!(
                        "the body is larger than ingest.http.max_body_bytes ({} bytes): send smaller batches",
                        self.max_bytes
                    ),
                )));
            }
            let units = (bytes.len() + data.len()).div_ceil(UNIT as usize) as u32;
            let more = units.saturating_sub(held.num_permits() as u32);
            if more > 0 {
                match self.budget.clone().try_acquire_many_owned(more) {
                    Ok(permit) => held.merge(permit),
                    Err(_) => {
                        let mut response = close(refuse(
                            StatusCode::SERVICE_UNAVAILABLE,
                            format!(
                                "the relay holds as many request bodies as ingest.http.max_body_memory allows ({} bytes); nothing was accepted: retry",
                                self.budget_bytes
                            ),
                        ));
                        response
                            .headers_mut()
                            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                        return Err(response);
                    }
                }
            }
            bytes.extend_from_slice(&data);
        }
        Ok((Bytes::from(bytes), held))
    }
}

/// Asks the client to close the connection after `response` (its body was
/// not read to the end).
fn close(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}
