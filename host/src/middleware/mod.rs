//! A [`tower::Layer`](tower_layer::Layer) that audits the requests of an
//! axum service: one envelope per state-changing request, recorded **only
//! once the handler succeeded and, through the outbox, only if its
//! transaction committed**.
//!
//! ```no_run
//! # async fn example(relay: auditrelay::Relay) {
//! use auditrelay::envelope::Actor;
//! use auditrelay::middleware::AuditLayer;
//! use axum::{Router, routing::post};
//!
//! let audit = AuditLayer::new("access-api")
//!     .emit_to(relay)
//!     .actor(|request| {
//!         let user = request.headers().get("x-user")?.to_str().ok()?;
//!         Some(Actor::user(user))
//!     })
//!     .trust_proxies(["10.0.0.0/8"])
//!     .unwrap();
//! let app: Router = Router::new()
//!     .route("/groups/{id}/members", post(|| async { "added" }))
//!     // `route_layer`: after routing, so the route template is known.
//!     .route_layer(audit);
//! # }
//! ```
//!
//! Two ways to record, with different guarantees:
//!
//! - **Through the outbox** (the handler holds a database transaction):
//!   the handler takes the [`Audit`] extension and calls
//!   [`Audit::write_postgres`] / [`Audit::write_sqlite`] on its
//!   transaction before committing. The event exists exactly when the
//!   transaction committed; a rolled-back transaction records nothing.
//! - **After the response** ([`AuditLayer::emit_to`]): for requests whose
//!   handler wrote nothing through the outbox, the layer calls
//!   [`Relay::emit`] once the handler returned, with the outcome its status
//!   says (`2xx`/`3xx` success, `401`/`403` denied, other failure). A crash
//!   between the handler's commit and the emit loses the event; nothing
//!   records a change that did not happen unless the handler answers
//!   success for a change it rolled back.
//!
//! The layer never fails or holds up a response: recording costs a few
//! microseconds on the request's task. A value the client sent that breaks
//! the envelope's rules (a 2 KB user agent, a body nested too deep) is left
//! out of the event, which names it in `metadata.audit_dropped`: a client
//! cannot hide its request that way.
//!
//! What is recorded: the action from method + route template
//! (`POST /api/risks` → `risk.create`; [`AuditLayer::action`] overrides),
//! the actor from the application's extractor (anonymous without one), the
//! client IP (the peer's, or, behind [trusted proxies](AuditLayer::trust_proxies),
//! from the one [forwarding header](AuditLayer::forwarded_header) they write,
//! `X-Forwarded-For` by default), the user agent, `x-request-id`,
//! the outcome and status code, and with [`AuditLayer::capture_bodies`]
//! request and response bodies up to a size. Not recorded: `HEAD`,
//! `OPTIONS`, `GET` (unless the route is [an export](AuditLayer::record_get)),
//! and paths under [`AuditLayer::exclude`] (`/health`, `/healthz`,
//! `/livez`, `/readyz`, `/metrics` by default).

mod action;
mod client_ip;

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::task::{Context, Poll};

use auditrelay_outbox::{Outbox, WriteError};
use auditrelay_plugin_api::envelope::{
    Actor, ActorKind, AuditEventEnvelope, Outcome, Target, ValidationErrors,
};
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, MatchedPath};
use axum::http::{Method, Request, Response, StatusCode};

pub use action::classify;
pub use client_ip::{ForwardedHeader, Network};

use crate::relay::Relay;

/// A method's route templates and their names (`None`: not recorded).
type Templates = HashMap<String, Option<Arc<RouteNames>>>;

/// Finds the actor of a request (from a session, a verified token's
/// claims the application put in the extensions, ...).
type ActorFn = dyn Fn(&Request<Body>) -> Option<Actor> + Send + Sync;

/// The layer: see the [module](self) documentation.
#[derive(Clone)]
pub struct AuditLayer {
    settings: Arc<Settings>,
}

struct Settings {
    source: String,
    relay: Option<Relay>,
    actor: Option<Box<ActorFn>>,
    trusted: Vec<Network>,
    forwarded_header: ForwardedHeader,
    exclude: Vec<String>,
    exports: Vec<String>,
    overrides: HashMap<(Method, String), String>,
    capture: Option<usize>,
    tenant: Option<String>,
    /// Names already derived, by method and route template.
    routes: RwLock<HashMap<Method, Templates>>,
}

impl AuditLayer {
    /// A layer recording events with `source` (the service's name). It
    /// records nothing until [`emit_to`](Self::emit_to) gives it a relay
    /// or a handler writes through the [`Audit`] extension.
    pub fn new(source: impl Into<String>) -> AuditLayer {
        AuditLayer {
            settings: Arc::new(Settings {
                source: source.into(),
                relay: None,
                actor: None,
                trusted: Vec::new(),
                forwarded_header: ForwardedHeader::default(),
                exclude: ["/health", "/healthz", "/livez", "/readyz", "/metrics"]
                    .map(String::from)
                    .to_vec(),
                exports: Vec::new(),
                overrides: HashMap::new(),
                capture: None,
                tenant: None,
                routes: RwLock::new(HashMap::new()),
            }),
        }
    }

    fn with(mut self, change: impl FnOnce(&mut Settings)) -> AuditLayer {
        change(Arc::get_mut(&mut self.settings).expect("configured before it is cloned"));
        self
    }

    /// Emits, after the response, the events handlers did not write
    /// through the outbox.
    pub fn emit_to(self, relay: Relay) -> AuditLayer {
        self.with(|s| s.relay = Some(relay))
    }

    /// How to find a request's actor; `None` from it records the request
    /// as anonymous.
    pub fn actor(
        self,
        find: impl Fn(&Request<Body>) -> Option<Actor> + Send + Sync + 'static,
    ) -> AuditLayer {
        self.with(|s| s.actor = Some(Box::new(find)))
    }

    /// The tenant every event of this service belongs to.
    pub fn tenant(self, tenant: impl Into<String>) -> AuditLayer {
        self.with(|s| s.tenant = Some(tenant.into()))
    }

    /// Proxies (addresses or CIDR networks) whose `Forwarded` /
    /// `X-Forwarded-For` headers are believed. From any other peer the
    /// headers are ignored. An entry that is not a network is an error
    /// naming it.
    pub fn trust_proxies<'a>(
        self,
        networks: impl IntoIterator<Item = &'a str>,
    ) -> Result<AuditLayer, String> {
        let trusted = networks
            .into_iter()
            .map(str::parse)
            .collect::<Result<Vec<Network>, _>>()?;
        Ok(self.with(|s| s.trusted = trusted))
    }

    /// Which header the trusted proxies write: `X-Forwarded-For` unless
    /// told otherwise. Only that one is read.
    pub fn forwarded_header(self, header: ForwardedHeader) -> AuditLayer {
        self.with(|s| s.forwarded_header = header)
    }

    /// Paths not recorded: each is a prefix ending at a segment boundary
    /// (`/health` excludes `/health` and `/health/db`, not `/healthy`).
    /// Replaces the defaults.
    pub fn exclude<'a>(self, prefixes: impl IntoIterator<Item = &'a str>) -> AuditLayer {
        let prefixes = prefixes.into_iter().map(String::from).collect();
        self.with(|s| s.exclude = prefixes)
    }

    /// Records `GET` requests to this route template (an export of data
    /// is worth auditing; other reads are not recorded).
    pub fn record_get(self, template: impl Into<String>) -> AuditLayer {
        self.with(|s| s.exports.push(template.into()))
    }

    /// Names the action of `method` on `template` instead of deriving it.
    pub fn action(
        self,
        method: Method,
        template: impl Into<String>,
        name: impl Into<String>,
    ) -> AuditLayer {
        self.with(|s| {
            s.overrides.insert((method, template.into()), name.into());
        })
    }

    /// Records request and response bodies of at most `max_bytes` (whose
    /// length is known up front) in the payload, as JSON when they are
    /// JSON. Larger or streamed bodies are noted, not read.
    pub fn capture_bodies(self, max_bytes: usize) -> AuditLayer {
        self.with(|s| s.capture = Some(max_bytes))
    }
}

impl<S> tower_layer::Layer<S> for AuditLayer {
    type Service = AuditService<S>;

    fn layer(&self, inner: S) -> AuditService<S> {
        AuditService {
            inner,
            settings: self.settings.clone(),
        }
    }
}

/// The service [`AuditLayer`] wraps around a handler or router.
#[derive(Clone)]
pub struct AuditService<S> {
    inner: S,
    settings: Arc<Settings>,
}

impl<S> tower_service::Service<Request<Body>> for AuditService<S>
where
    S: tower_service::Service<Request<Body>, Response = Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<Body>) -> Self::Future {
        // The clone that was made ready is the one to call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let settings = self.settings.clone();
        let Some(draft) = settings.draft(&request) else {
            return Box::pin(inner.call(request));
        };
        let audit = Audit(Arc::new(Shared {
            settings: settings.clone(),
            draft,
            written: AtomicBool::new(false),
            details: Mutex::new(Details::default()),
        }));
        request.extensions_mut().insert(audit.clone());
        Box::pin(async move {
            let request = match settings.capture {
                Some(max) => {
                    let (request, body) = capture_request(request, max).await;
                    audit.0.details.lock().expect("never poisoned").request_body = Some(body);
                    request
                }
                None => request,
            };
            let response = inner.call(request).await?;
            if audit.0.written.load(Ordering::Acquire) {
                return Ok(response);
            }
            let Some(relay) = &settings.relay else {
                return Ok(response);
            };
            let (response, response_body) = match settings.capture {
                Some(max) => capture_response(response, max).await,
                None => (response, None),
            };
            let status = response.status();
            let event = audit.event(outcome_of(status), Some(status), response_body);
            match event.map(|event| relay.emit(event)) {
                Ok(Ok(_)) => {}
                Ok(Err(error)) => {
                    tracing::warn!(action = %audit.0.draft.names.action, "audit event not recorded: {error}")
                }
                Err(errors) => {
                    tracing::warn!(action = %audit.0.draft.names.action, "audit event not recorded, it is invalid: {errors}")
                }
            }
            Ok(response)
        })
    }
}

impl Settings {
    /// What the layer knows of a request it records; `None` when it does
    /// not record it.
    fn draft(&self, request: &Request<Body>) -> Option<Draft> {
        let method = request.method();
        let path = request.uri().path();
        if self.exclude.iter().any(|prefix| under(path, prefix)) {
            return None;
        }
        let matched = request.extensions().get::<MatchedPath>();
        let template = matched.map_or(path, MatchedPath::as_str);
        if *method == Method::GET && !self.exports.iter().any(|t| t == template) {
            return None;
        }
        let names = self.names(method, template, matched.is_some())?;
        let peer = request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|info| info.0);
        let mut actor = self
            .actor
            .as_ref()
            .and_then(|find| find(request))
            .unwrap_or_else(|| Actor::new(ActorKind::Anonymous, "anonymous"));
        if let Some(ip) = client_ip::client_ip(
            peer,
            request.headers(),
            &self.trusted,
            self.forwarded_header,
        ) {
            actor.ip = Some(ip.to_string());
        }
        let header = |name: &str| {
            request
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        if let Some(agent) = header("user-agent") {
            actor.user_agent = Some(agent);
        }
        Some(Draft {
            names,
            actor,
            request_id: header("x-request-id"),
        })
    }

    /// The names of a route, derived once per route template.
    fn names(&self, method: &Method, template: &str, templated: bool) -> Option<Arc<RouteNames>> {
        if templated
            && let Some(known) = self
                .routes
                .read()
                .expect("never poisoned")
                .get(method)
                .and_then(|routes| routes.get(template))
        {
            return known.clone();
        }
        let action = match self.overrides.get(&(method.clone(), template.to_owned())) {
            Some(name) => Some(name.clone()),
            None => classify(method, template),
        };
        let names = action.map(|action| {
            Arc::new(RouteNames {
                action: action.into(),
                route: format!("{method} {template}").into(),
            })
        });
        // Only templates are kept: raw paths (no matched route) are the
        // client's to choose, and would grow the map without bound.
        if templated {
            let mut routes = self.routes.write().expect("never poisoned");
            let routes = routes.entry(method.clone()).or_default();
            if routes.len() < 4096 {
                routes.insert(template.to_owned(), names.clone());
            }
        }
        names
    }
}

/// Whether `path` is `prefix` or below it.
fn under(path: &str, prefix: &str) -> bool {
    path.strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/') || prefix.ends_with('/'))
}

fn outcome_of(status: StatusCode) -> Outcome {
    match status.as_u16() {
        200..=399 => Outcome::Success,
        401 | 403 => Outcome::Denied,
        _ => Outcome::Failure,
    }
}

/// A route's names: its action and `METHOD template`.
struct RouteNames {
    action: Arc<str>,
    route: Arc<str>,
}

/// What the layer learned from the request.
struct Draft {
    names: Arc<RouteNames>,
    actor: Actor,
    request_id: Option<String>,
}

/// What the handler adds.
#[derive(Default)]
struct Details {
    target: Option<Target>,
    reason: Option<String>,
    payload: Option<serde_json::Value>,
    /// With body capture: what the request brought.
    request_body: Option<serde_json::Value>,
}

struct Shared {
    settings: Arc<Settings>,
    draft: Draft,
    written: AtomicBool,
    details: Mutex<Details>,
}

/// The request's audit record, as a handler sees it (an axum
/// `Extension<Audit>`): add what only the handler knows, and write the
/// event in the handler's own transaction.
#[derive(Clone)]
pub struct Audit(Arc<Shared>);

impl Audit {
    /// What the request acted on.
    pub fn target(&self, target: Target) {
        self.0.details.lock().expect("never poisoned").target = Some(target);
    }

    /// Why (a ticket, a justification).
    pub fn reason(&self, reason: impl Into<String>) {
        self.0.details.lock().expect("never poisoned").reason = Some(reason.into());
    }

    /// Free JSON for the event's payload (merged with captured bodies).
    pub fn payload(&self, payload: serde_json::Value) {
        self.0.details.lock().expect("never poisoned").payload = Some(payload);
    }

    /// The action the layer named.
    pub fn action(&self) -> &str {
        &self.0.draft.names.action
    }

    /// Writes the event (outcome success) on the handler's PostgreSQL
    /// transaction; the layer then emits nothing for this request. The
    /// event exists exactly when that transaction commits.
    pub async fn write_postgres(
        &self,
        outbox: &Outbox,
        transaction: &mut sqlx::PgConnection,
    ) -> Result<(), WriteError> {
        let event = self.event(Outcome::Success, None, None)?;
        outbox.write_postgres(transaction, &event).await?;
        self.0.written.store(true, Ordering::Release);
        Ok(())
    }

    /// [`write_postgres`](Self::write_postgres), on a SQLite transaction.
    pub async fn write_sqlite(
        &self,
        outbox: &Outbox,
        transaction: &mut sqlx::SqliteConnection,
    ) -> Result<(), WriteError> {
        let event = self.event(Outcome::Success, None, None)?;
        outbox.write_sqlite(transaction, &event).await?;
        self.0.written.store(true, Ordering::Release);
        Ok(())
    }

    /// The envelope, as it stands. What the client sent (user agent,
    /// request id, bodies) can break the envelope's rules — too long, a
    /// control character, nested too deep; then the event is recorded
    /// without those values (`metadata.audit_dropped` names them) rather
    /// than not at all: a client must not be able to hide its request.
    fn event(
        &self,
        outcome: Outcome,
        status: Option<StatusCode>,
        response_body: Option<serde_json::Value>,
    ) -> Result<AuditEventEnvelope, ValidationErrors> {
        self.build(outcome, status, response_body, None)
            .or_else(|errors| {
                let fields: Vec<&str> = errors.0.iter().map(|e| e.field.as_str()).collect();
                self.build(outcome, status, None, Some(&fields.join(",")))
            })
    }

    /// The envelope; with `dropped`, without the client's values.
    fn build(
        &self,
        outcome: Outcome,
        status: Option<StatusCode>,
        response_body: Option<serde_json::Value>,
        dropped: Option<&str>,
    ) -> Result<AuditEventEnvelope, ValidationErrors> {
        let (draft, settings) = (&self.0.draft, &self.0.settings);
        let details = self.0.details.lock().expect("never poisoned");
        let mut actor = draft.actor.clone();
        if dropped.is_some() {
            actor.user_agent = None;
        }
        let mut event = AuditEventEnvelope::builder(settings.source.as_str(), &*draft.names.action)
            .actor(actor)
            .action_name(&*draft.names.action)
            .outcome(outcome)
            .metadata("route", &*draft.names.route);
        if let Some(status) = status {
            event = event.status_code(status.as_u16());
        }
        if let Some(tenant) = &settings.tenant {
            event = event.tenant(tenant.as_str());
        }
        if let (Some(id), None) = (&draft.request_id, dropped) {
            event = event.request_id(id.as_str());
        }
        if let Some(target) = &details.target {
            event = event.target(target.clone());
        }
        if let Some(reason) = &details.reason {
            event = event.reason(reason.as_str());
        }
        let mut payload = details.payload.clone();
        let bodies = match dropped {
            None => [details.request_body.clone(), response_body],
            Some(_) => {
                let not_captured = || {
                    details.request_body.as_ref().map(
                        |_| serde_json::json!({ "not_captured": "breaks the envelope's rules" }),
                    )
                };
                [not_captured(), None]
            }
        };
        for (key, body) in ["request_body", "response_body"].into_iter().zip(bodies) {
            if let Some(body) = body {
                let object = payload.get_or_insert_with(|| serde_json::json!({}));
                if let Some(object) = object.as_object_mut() {
                    object.insert(key.into(), body);
                }
            }
        }
        if let Some(payload) = payload {
            event = event.payload(payload);
        }
        if let Some(fields) = dropped {
            event = event.metadata("audit_dropped", fields);
        }
        event.build()
    }
}

/// Reads a request body of known length up to `max`, and puts it back.
async fn capture_request(request: Request<Body>, max: usize) -> (Request<Body>, serde_json::Value) {
    let (parts, body) = request.into_parts();
    let (body, captured) = capture(body, max).await;
    (Request::from_parts(parts, body), captured)
}

/// Reads a response body of known length up to `max`, and puts it back.
async fn capture_response(
    response: Response<Body>,
    max: usize,
) -> (Response<Body>, Option<serde_json::Value>) {
    let (parts, body) = response.into_parts();
    let (body, captured) = capture(body, max).await;
    (Response::from_parts(parts, body), Some(captured))
}

/// The body (read, or untouched) and what the event records of it.
async fn capture(body: Body, max: usize) -> (Body, serde_json::Value) {
    use http_body::Body as _;
    let hint = body.size_hint();
    match hint.exact() {
        Some(length) if length as usize <= max => match axum::body::to_bytes(body, max).await {
            Ok(bytes) => {
                let recorded = describe(&bytes);
                (Body::from(bytes), recorded)
            }
            // The body failed while being read: the handler meets the
            // same error when it reads, as it would have without us.
            Err(error) => {
                let recorded = serde_json::json!({ "not_captured": error.to_string() });
                (Body::new(Failed(Some(error))), recorded)
            }
        },
        Some(length) => (
            body,
            serde_json::json!({ "not_captured": format!("{length} bytes, over the capture limit of {max}") }),
        ),
        None => (
            body,
            serde_json::json!({ "not_captured": "streamed (length not known in advance)" }),
        ),
    }
}

/// A body whose reading failed: yields that error.
struct Failed(Option<axum::Error>);

impl http_body::Body for Failed {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        Poll::Ready(self.0.take().map(Err))
    }
}

/// A body as the payload records it: its JSON, or its text.
fn describe(bytes: &Bytes) -> serde_json::Value {
    if bytes.is_empty() {
        return serde_json::Value::Null;
    }
    serde_json::from_slice(bytes)
        .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(bytes).into_owned()))
}
