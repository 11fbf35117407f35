//! Unit-test a plugin natively, with fake secrets, HTTP and a temp directory.
//!
//! The harness runs the same code paths as the relay: the config goes
//! through JSON exactly as the relay passes it, host services (log, secrets,
//! metrics, stdout, HTTP) go to a fake host that records everything, and
//! requests to hosts outside `allowed_hosts` fail as they would in the
//! sandbox.
//!
//! For an exporter, [`compliance`] runs the checks every exporter must
//! pass (every event once, limits, answer mapping, retries, secrets,
//! golden requests) from one declaration of what its README promises.
//!
//! ```
//! use auditrelay_plugin_api::http::{Request, Response};
//! use auditrelay_plugin_api::testing::{Harness, sample_events};
//! use auditrelay_plugin_api::prelude::*;
//!
//! struct Ping { url: String }
//!
//! #[derive(serde::Deserialize)]
//! struct Config { url: String }
//!
//! impl Plugin for Ping {
//!     type Config = Config;
//!     fn info() -> PluginInfo { PluginInfo::new("ping", "0.1.0", "posts a count") }
//!     fn init(config: Config, _ctx: &InitContext) -> Result<Self, InitError> {
//!         Ok(Ping { url: config.url })
//!     }
//!     fn deliver(&mut self, events: &[Event<'_>]) -> Result<Delivery, DeliverError> {
//!         let response = Request::post(&self.url).body(events.len().to_string()).send()?;
//!         if !response.is_success() {
//!             return Err(response.into_deliver_error("ping"));
//!         }
//!         Ok(Delivery::Accepted)
//!     }
//! }
//!
//! let mut harness = Harness::<Ping>::builder()
//!     .config(serde_json::json!({"url": "http://collector.test/in"}))
//!     .allowed_hosts(["collector.test"])
//!     .http(|_request| Ok(Response::new(200, "ok")))
//!     .init()
//!     .unwrap();
//! assert_eq!(harness.deliver(&sample_events(3)), Ok(Delivery::Accepted));
//! assert_eq!(harness.requests()[0].body, b"3");
//! ```

pub mod compliance;
pub mod config_docs;
mod mapper;

pub use mapper::MapperHarness;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::batch::{BatchBuilder, read_batch};
use crate::envelope::{Actor, AuditEventEnvelope, Outcome, Severity, Target};
use crate::event::{DeliverError, Delivery, Event, EventBuf};
use crate::host::{HostServices, Level, backend};
use crate::http::{AllowList, HttpError, HttpErrorKind, Request, Response};
use crate::plugin::{InitContext, InitError, Plugin, parse_config};

type HttpHandler = dyn Fn(&Request) -> Result<Response, HttpError> + Send + Sync;

/// The fake host: records what the plugin did.
#[derive(Default)]
struct FakeHost {
    secrets: HashMap<String, String>,
    allowed_hosts: Vec<String>,
    http: Option<Box<HttpHandler>>,
    logs: Mutex<Vec<(Level, String)>>,
    requests: Mutex<Vec<Request>>,
    counters: Mutex<BTreeMap<String, u64>>,
    gauges: Mutex<BTreeMap<String, f64>>,
    stdout: Mutex<Vec<u8>>,
}

impl HostServices for FakeHost {
    fn log(&self, level: Level, message: &str) {
        self.logs.lock().unwrap().push((level, message.to_owned()));
    }

    fn secret(&self, name: &str) -> Option<String> {
        self.secrets.get(name).cloned()
    }

    fn counter_add(&self, name: &str, delta: u64) {
        *self
            .counters
            .lock()
            .unwrap()
            .entry(name.to_owned())
            .or_default() += delta;
    }

    fn gauge_set(&self, name: &str, value: f64) {
        self.gauges.lock().unwrap().insert(name.to_owned(), value);
    }

    fn write_stdout(&self, bytes: &[u8]) -> std::io::Result<()> {
        self.stdout.lock().unwrap().extend_from_slice(bytes);
        Ok(())
    }

    fn http(&self, request: &Request) -> Result<Response, HttpError> {
        let uri: http::Uri = request.url.parse().map_err(|e| {
            HttpError::new(
                HttpErrorKind::InvalidRequest,
                format!("bad URL {:?}: {e}", request.url),
            )
        })?;
        let allowed = AllowList::parse(&self.allowed_hosts).map_err(|(_, e)| {
            HttpError::new(HttpErrorKind::InvalidRequest, format!("allowed_hosts: {e}"))
        })?;
        if !allowed.allows(
            uri.scheme_str().unwrap_or_default(),
            uri.host().unwrap_or_default(),
            uri.port_u16(),
        ) {
            return Err(HttpError::new(
                HttpErrorKind::Denied,
                "the relay denied this request: the destination host is not in this plugin's allowed_hosts",
            ));
        }
        self.requests.lock().unwrap().push(request.clone());
        match &self.http {
            Some(handler) => handler(request),
            None => Err(HttpError::new(
                HttpErrorKind::Connect,
                "no fake HTTP server installed: call HarnessBuilder::http",
            )),
        }
    }
}

/// Configures a [`Harness`]; created by [`Harness::builder`].
#[must_use = "call init() to create the plugin"]
pub struct HarnessBuilder<P: Plugin> {
    instance: String,
    config: serde_json::Value,
    granted_dir: Option<PathBuf>,
    host: FakeHost,
    _plugin: std::marker::PhantomData<P>,
}

impl<P: Plugin> HarnessBuilder<P> {
    /// The plugin's `config` table, as JSON.
    pub fn config(mut self, config: serde_json::Value) -> Self {
        self.config = config;
        self
    }

    /// The instance name (default `test`).
    pub fn instance(mut self, name: impl Into<String>) -> Self {
        self.instance = name.into();
        self
    }

    /// Grants a secret.
    pub fn secret(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.host.secrets.insert(name.into(), value.into());
        self
    }

    /// Hosts the plugin may reach: the relay's `allowed_hosts` patterns,
    /// matched the same way.
    pub fn allowed_hosts<I, S>(mut self, hosts: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.host.allowed_hosts = hosts.into_iter().map(Into::into).collect();
        self
    }

    /// The fake server answering every allowed request.
    pub fn http(
        mut self,
        handler: impl Fn(&Request) -> Result<Response, HttpError> + Send + Sync + 'static,
    ) -> Self {
        self.host.http = Some(Box::new(handler));
        self
    }

    /// Grants a directory (the relay's `grant_dir`).
    pub fn granted_dir(mut self, dir: impl AsRef<Path>) -> Self {
        self.granted_dir = Some(dir.as_ref().to_path_buf());
        self
    }

    /// Runs `init` and returns the harness, or the plugin's init error.
    pub fn init(self) -> Result<Harness<P>, InitError> {
        let host = Arc::new(self.host);
        // Init is not the hot path: a clone keeps `host` free to move.
        let installed = host.clone();
        let _guard = backend::install_for_thread(&*installed);
        let config = parse_config::<P>(&self.config.to_string())?;
        let ctx = InitContext {
            instance: self.instance,
            granted_dir: self.granted_dir,
        };
        let plugin = P::init(config, &ctx)?;
        Ok(Harness { plugin, host })
    }
}

/// A plugin instance running natively against a fake host.
pub struct Harness<P: Plugin> {
    plugin: P,
    host: Arc<FakeHost>,
}

impl<P: Plugin> Harness<P> {
    /// Starts configuring a harness for plugin `P`.
    pub fn builder() -> HarnessBuilder<P> {
        HarnessBuilder {
            instance: "test".into(),
            config: serde_json::json!({}),
            granted_dir: None,
            host: FakeHost::default(),
            _plugin: std::marker::PhantomData,
        }
    }

    fn with_host<R>(&mut self, f: impl FnOnce(&mut P) -> R) -> R {
        let _guard = backend::install_for_thread(&*self.host);
        f(&mut self.plugin)
    }

    /// Calls `deliver` with owned events (e.g. from [`sample_events`]).
    pub fn deliver(&mut self, events: &[EventBuf]) -> Result<Delivery, DeliverError> {
        let views: Vec<Event<'_>> = events.iter().map(EventBuf::as_event).collect();
        self.deliver_events(&views)
    }

    /// Calls `deliver` with borrowed events, as the relay does: encoded
    /// into one batch buffer and read back with the same decoder the WASM
    /// and native entry points use, so what the plugin sees is exactly
    /// what it would see from the relay.
    pub fn deliver_events(&mut self, events: &[Event<'_>]) -> Result<Delivery, DeliverError> {
        let batch: BatchBuilder = events.iter().copied().collect();
        let events = read_batch(batch.data(), batch.count())
            .expect("a batch the builder encoded always reads back");
        self.with_host(|plugin| plugin.deliver(&events))
    }

    /// Calls `flush`.
    pub fn flush(&mut self) -> Result<(), DeliverError> {
        self.with_host(|plugin| plugin.flush())
    }

    /// Calls `shutdown`.
    pub fn shutdown(&mut self) {
        self.with_host(|plugin| plugin.shutdown())
    }

    /// The plugin itself.
    pub fn plugin(&self) -> &P {
        &self.plugin
    }

    /// Every HTTP request the plugin sent to an allowed host.
    pub fn requests(&self) -> Vec<Request> {
        self.host.requests.lock().unwrap().clone()
    }

    /// Every line the plugin logged.
    pub fn logs(&self) -> Vec<(Level, String)> {
        self.host.logs.lock().unwrap().clone()
    }

    /// The current value of a plugin counter.
    pub fn counter(&self, name: &str) -> u64 {
        self.host
            .counters
            .lock()
            .unwrap()
            .get(name)
            .copied()
            .unwrap_or(0)
    }

    /// The current value of a plugin gauge.
    pub fn gauge(&self, name: &str) -> Option<f64> {
        self.host.gauges.lock().unwrap().get(name).copied()
    }

    /// Everything the plugin wrote with [`host::write_stdout`](crate::host::write_stdout).
    pub fn stdout(&self) -> Vec<u8> {
        self.host.stdout.lock().unwrap().clone()
    }
}

/// `n` valid, distinct events as the relay would deliver them.
pub fn sample_events(n: usize) -> Vec<EventBuf> {
    (0..n)
        .map(|i| EventBuf::from_envelope(&sample_envelope(i)))
        .collect()
}

/// Compares `actual` with the golden file at `path` (typically under the
/// plugin's `tests/golden/`); with `UPDATE_GOLDEN` set in the environment,
/// (re)writes the file first. Pin a plugin's exact requests this way, so a
/// change to the wire format shows up in review.
///
/// # Panics
///
/// If the file is missing or differs, naming it and how to update it.
pub fn assert_golden(path: impl AsRef<Path>, actual: &str) {
    if let Err(problem) = compare_golden(path.as_ref(), actual) {
        panic!("{problem}");
    }
}

/// [`assert_golden`]'s comparison, with the problem as text.
fn compare_golden(path: &Path, actual: &str) -> Result<(), String> {
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(path, actual)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    let expected = std::fs::read_to_string(path).map_err(|e| {
        format!(
            "cannot read golden file {}: {e} (UPDATE_GOLDEN=1 cargo test writes it)",
            path.display()
        )
    })?;
    if actual == expected {
        Ok(())
    } else {
        Err(format!(
            "{} changed; if on purpose, run UPDATE_GOLDEN=1 cargo test\n--- expected\n{expected}\n--- actual\n{actual}",
            path.display()
        ))
    }
}

/// Three events with fixed ids and times, for golden-file tests: a
/// successful action, a denied high-severity one without a tenant, and one
/// whose fields need JSON escaping. Equal on every call.
pub fn fixed_events() -> Vec<EventBuf> {
    let time = |s: &str| s.parse::<jiff::Timestamp>().expect("a valid time");
    let envelopes = [
        AuditEventEnvelope::builder("access-api", "group.member_added")
            .id("01936f5e-8c2a-7000-8000-000000000001")
            .time(time("2026-11-23T10:00:00.123456Z"))
            .actor(
                Actor::user("u-1")
                    .email("ada@example.test")
                    .ip("203.0.113.7"),
            )
            .outcome(Outcome::Success)
            .action_name("add_member")
            .target(Target::new("group", "g-7").name("payments-oncall"))
            .tenant("acme")
            .reason("on-call rotation")
            .payload(serde_json::json!({"member": "u-2", "role": "member"})),
        AuditEventEnvelope::builder("billing", "invoice.deleted")
            .id("01936f5e-8c2a-7000-8000-000000000002")
            .time(time("2026-11-23T10:00:01Z"))
            .actor(Actor::service("cron-purge"))
            .outcome(Outcome::Denied)
            .severity(Severity::High)
            .status_code(403)
            .target(Target::new("invoice", "inv-42")),
        AuditEventEnvelope::builder("access-api", "user.renamed")
            .id("01936f5e-8c2a-7000-8000-000000000003")
            .time(time("2026-11-23T10:00:02.5Z"))
            .actor(Actor::user("u-\"quoted\"").user_agent("curl/8.5 (x86_64)"))
            .outcome(Outcome::Failure)
            .action_name("rename")
            .tenant("globex, inc")
            .payload(serde_json::json!({"from": "Zoë", "to": "line\nbreak"})),
    ];
    envelopes
        .into_iter()
        .map(|builder| EventBuf::from_envelope(&builder.build().expect("fixed events are valid")))
        .collect()
}

/// A valid envelope numbered `i`, with a realistic spread of fields. Each
/// call mints a fresh UUIDv7 id and takes the current time, so two calls
/// with the same `i` give different events.
pub fn sample_envelope(i: usize) -> AuditEventEnvelope {
    let tenants = ["acme", "globex", "initech"];
    AuditEventEnvelope::builder("access-api", "group.member_added")
        .actor(
            Actor::user(format!("u-{}", i % 97))
                .email(format!("user{}@example.test", i % 97))
                .ip("203.0.113.7"),
        )
        .outcome(Outcome::Success)
        .action_name("add_member")
        .target(Target::new("group", format!("g-{}", i % 13)).name("payments-oncall"))
        .tenant(tenants[i % tenants.len()])
        .reason("on-call rotation")
        .request_id(format!("req-{i}"))
        .payload(serde_json::json!({"member": format!("u-{}", (i * 7) % 101), "role": "member", "seq": i}))
        .build()
        .expect("sample envelopes are valid")
}

/// One edit of [`mutate`]: at a position (a fraction of the length, as a
/// `u16` share of 65,536), replace, insert or remove a byte.
#[derive(Debug, Clone, Copy)]
pub enum Edit {
    /// Replace the byte at the position.
    Replace(u16, u8),
    /// Insert a byte before the position.
    Insert(u16, u8),
    /// Remove the byte at the position.
    Remove(u16),
}

/// `bytes` with `edits` applied in turn, for fuzzing decoders with input
/// that is almost right.
pub fn mutate(mut bytes: Vec<u8>, edits: &[Edit]) -> Vec<u8> {
    let at = |share: u16, len: usize| (share as usize * len) >> 16;
    for edit in edits {
        match *edit {
            Edit::Replace(share, byte) if !bytes.is_empty() => {
                let i = at(share, bytes.len());
                bytes[i] = byte;
            }
            Edit::Insert(share, byte) => {
                let i = at(share, bytes.len() + 1);
                bytes.insert(i, byte);
            }
            Edit::Remove(share) if !bytes.is_empty() => {
                let i = at(share, bytes.len());
                bytes.remove(i);
            }
            _ => {}
        }
    }
    bytes
}
