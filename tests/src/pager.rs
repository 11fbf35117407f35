//! A local HTTP API that pages audit records the way three real ones do,
//! and fails the way real ones do. It is a mock (none of these products
//! runs here), faithful to their documented paging:
//!
//! - `/api/v3/events/events/`: Authentik's events API — `ordering=created`,
//!   the `created__gte` filter, `page_size`; the answer is
//!   `{"pagination": {…}, "results": […]}`;
//! - `/drf/events/`: Django REST framework's `PageNumberPagination` —
//!   `page`, `page_size`; `{"count", "next" (a URL or null), "previous",
//!   "results"}`;
//! - `/orgs/acme/audit-log`: GitHub's audit log — `per_page`, an `after`
//!   cursor, the records as the body and the next page in an RFC 8288
//!   `Link: <…>; rel="next"` header.
//!
//! Every route wants `Authorization: Bearer <token>`. With a fault rate
//! set, a request fails instead, in one of the ways APIs do: a 500 whose
//! body echoes the credentials it got, a 429 with `Retry-After`, a 503, a
//! body that breaks off, an answer slower than the poller's timeout, a
//! `200` that is an HTML error page.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rand::Rng;
use serde_json::{Value, json};

/// The bearer token the pager wants.
pub const TOKEN: &str = "ak-api-7Qm2xV9pLr4sT8wZ-poller";

/// The pager's records and behaviour, changed by the test as it runs.
#[derive(Default)]
pub struct PagerState {
    /// Every record, oldest first (as appended).
    pub records: Vec<Value>,
    /// Share of requests answered with a fault (0 to 1).
    pub fault_rate: f64,
    /// Serve only this kind of fault (`"echo-500"`, `"429"`, `"503"`,
    /// `"cut"`, `"slow"`, `"html-200"`); none: any.
    pub only: Option<&'static str>,
    /// Faults served, by kind.
    pub faults: std::collections::BTreeMap<&'static str, usize>,
    /// Requests answered with records.
    pub pages: usize,
    /// Authentik: answer newest first (an API asked the wrong way).
    pub newest_first: bool,
    /// DRF: the `next` links point to this origin instead of the pager.
    pub next_origin: Option<String>,
    /// Every request is redirected here (302).
    pub redirect_to: Option<String>,
}

/// A running pager on 127.0.0.1.
pub struct Pager {
    /// Where it listens.
    pub addr: SocketAddr,
    /// What it serves.
    pub state: Arc<Mutex<PagerState>>,
}

impl Pager {
    /// Starts one on a free port (needs a Tokio runtime).
    pub async fn start() -> Pager {
        let state = Arc::new(Mutex::new(PagerState::default()));
        let app = axum::Router::new()
            .route("/api/v3/events/events/", axum::routing::get(authentik))
            .route("/drf/events/", axum::routing::get(drf))
            .route("/orgs/acme/audit-log", axum::routing::get(github))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Pager { addr, state }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Appends `count` more Authentik events.
    pub fn append(&self, count: usize) {
        let mut state = self.state.lock().unwrap();
        let from = state.records.len();
        state
            .records
            .extend((from..from + count).map(authentik_event));
    }

    /// How many records it holds.
    pub fn len(&self) -> usize {
        self.state.lock().unwrap().records.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Changes what it does.
    pub fn set(&self, change: impl FnOnce(&mut PagerState)) {
        change(&mut self.state.lock().unwrap());
    }
}

/// Authentik event `n`, shaped as its events API returns them: three
/// events share each millisecond (so paging by time meets ties), and the
/// time is written with as many fraction digits as it needs (so text
/// order is not time order).
pub fn authentik_event(n: usize) -> Value {
    let action = ["login", "logout", "model_updated", "password_set"][n % 4];
    let created = jiff::Timestamp::from_millisecond(1_780_000_000_000 + (n / 3) as i64).unwrap();
    json!({
        "pk": format!("00000000-0000-4000-8000-{n:012}"),
        "user": {"pk": n % 7, "username": format!("user{}", n % 7), "email": format!("user{}@example.com", n % 7)},
        "action": action,
        "app": "authentik.events.signals",
        "context": {"http_request": {"method": "GET", "path": "/if/flow/default-authentication-flow/"}},
        "client_ip": format!("10.0.{}.{}", n / 250 % 250, n % 250),
        "created": created.to_string(),
        "expires": "2027-06-01T00:00:00Z",
    })
}

/// The id of Authentik event `n` (its `pk`).
pub fn authentik_id(n: usize) -> String {
    format!("00000000-0000-4000-8000-{n:012}")
}

/// Checks the token and maybe serves a fault; `None`: serve the page.
async fn gate(state: &Arc<Mutex<PagerState>>, headers: &HeaderMap) -> Option<Response> {
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    if authorization != format!("Bearer {TOKEN}") {
        return Some(
            (
                StatusCode::UNAUTHORIZED,
                axum::Json(json!({"detail": "Authentication credentials were not provided."})),
            )
                .into_response(),
        );
    }
    let (fault, redirect) = {
        let mut state = state.lock().unwrap();
        let mut rng = rand::rng();
        let fault = (rng.random::<f64>() < state.fault_rate).then(|| {
            let kind = state.only.unwrap_or(
                ["echo-500", "429", "503", "cut", "slow", "html-200"][rng.random_range(0..6)],
            );
            *state.faults.entry(kind).or_default() += 1;
            kind
        });
        (fault, state.redirect_to.clone())
    };
    if let Some(to) = redirect {
        return Some((StatusCode::FOUND, [(header::LOCATION, to)]).into_response());
    }
    Some(match fault? {
        // As a careless error page does: the request's headers quoted back.
        "echo-500" => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("Internal Server Error. Request headers: Authorization: {authorization}"),
        )
            .into_response(),
        "429" => (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, "1")],
            "slow down",
        )
            .into_response(),
        "503" => StatusCode::SERVICE_UNAVAILABLE.into_response(),
        "cut" => {
            let chunks: Vec<Result<&'static str, std::io::Error>> = vec![
                Ok(
                    r#"{"pagination": {"next": 2}, "results": [{"pk": "00000000-0000-4000-8000-0000"#,
                ),
                Err(std::io::Error::other("connection reset")),
            ];
            Response::builder()
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from_stream(futures_stream(chunks)))
                .unwrap()
        }
        "slow" => {
            tokio::time::sleep(Duration::from_secs(3)).await;
            return None;
        }
        _ => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/html")],
            "<html><body>502 Bad Gateway</body></html>",
        )
            .into_response(),
    })
}

/// A stream of the given chunks (the error ends it, as a reset does).
fn futures_stream(
    chunks: Vec<Result<&'static str, std::io::Error>>,
) -> impl futures_core::Stream<Item = Result<&'static str, std::io::Error>> {
    struct Chunks(std::vec::IntoIter<Result<&'static str, std::io::Error>>);
    impl futures_core::Stream for Chunks {
        type Item = Result<&'static str, std::io::Error>;
        fn poll_next(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Self::Item>> {
            std::task::Poll::Ready(self.0.next())
        }
    }
    Chunks(chunks.into_iter())
}

fn number(query: &std::collections::HashMap<String, String>, key: &str, default: usize) -> usize {
    query
        .get(key)
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn authentik(
    State(state): State<Arc<Mutex<PagerState>>>,
    headers: HeaderMap,
    Query(query): Query<std::collections::HashMap<String, String>>,
) -> Response {
    if let Some(refused) = gate(&state, &headers).await {
        return refused;
    }
    let size = number(&query, "page_size", 100);
    let since = query
        .get("created__gte")
        .map(|t| t.parse::<jiff::Timestamp>());
    let since = match since {
        Some(Err(_)) => {
            return (
                StatusCode::BAD_REQUEST,
                axum::Json(json!({"created__gte": ["Enter a valid date/time."]})),
            )
                .into_response();
        }
        Some(Ok(t)) => Some(t),
        None => None,
    };
    let mut state = state.lock().unwrap();
    state.pages += 1;
    let mut matching: Vec<Value> = state
        .records
        .iter()
        .filter(|r| {
            since.is_none_or(|since| {
                r["created"]
                    .as_str()
                    .unwrap()
                    .parse::<jiff::Timestamp>()
                    .unwrap()
                    >= since
            })
        })
        .cloned()
        .collect();
    if state.newest_first {
        matching.reverse();
    }
    let count = matching.len();
    let results: Vec<Value> = matching.into_iter().take(size).collect();
    axum::Json(json!({
        "pagination": {
            "next": if count > size { 2 } else { 0 },
            "previous": 0,
            "count": count,
            "current": 1,
            "total_pages": count.div_ceil(size.max(1)),
            "start_index": 1,
            "end_index": results.len(),
        },
        "results": results,
    }))
    .into_response()
}

async fn drf(
    State(state): State<Arc<Mutex<PagerState>>>,
    headers: HeaderMap,
    Query(query): Query<std::collections::HashMap<String, String>>,
) -> Response {
    if let Some(refused) = gate(&state, &headers).await {
        return refused;
    }
    let (page, size) = (
        number(&query, "page", 1).max(1),
        number(&query, "page_size", 100),
    );
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let mut state = state.lock().unwrap();
    state.pages += 1;
    let count = state.records.len();
    let from = ((page - 1) * size).min(count);
    let results: Vec<Value> = state.records[from..(from + size).min(count)].to_vec();
    let origin = state
        .next_origin
        .clone()
        .unwrap_or_else(|| format!("http://{host}"));
    let next = (page * size < count)
        .then(|| format!("{origin}/drf/events/?page={}&page_size={size}", page + 1));
    axum::Json(json!({"count": count, "next": next, "previous": null, "results": results}))
        .into_response()
}

async fn github(
    State(state): State<Arc<Mutex<PagerState>>>,
    headers: HeaderMap,
    Query(query): Query<std::collections::HashMap<String, String>>,
) -> Response {
    if let Some(refused) = gate(&state, &headers).await {
        return refused;
    }
    let (after, size) = (number(&query, "after", 0), number(&query, "per_page", 30));
    let mut state = state.lock().unwrap();
    state.pages += 1;
    let count = state.records.len();
    let from = after.min(count);
    let to = (from + size).min(count);
    let results: Vec<Value> = state.records[from..to].to_vec();
    let mut response = axum::Json(results).into_response();
    if to < count {
        let link = format!(
            "</orgs/acme/audit-log?per_page={size}&after={to}>; rel=\"next\", </orgs/acme/audit-log?per_page={size}>; rel=\"first\""
        );
        response
            .headers_mut()
            .insert(header::LINK, link.parse().unwrap());
    }
    response
}
