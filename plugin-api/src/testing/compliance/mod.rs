//! The exporter compliance suite: what every exporter must do, checked
//! from one test.
//!
//! An exporter declares what its README promises — which hosts it talks
//! to, how its destination answers and what each answer means, its
//! per-request limits, where its secrets may travel — and
//! [`Compliance::run`] checks it against the real plugin code, under the
//! same [`Harness`] a unit test uses (so every batch goes through the
//! relay's batch encoding). Each check is a named step; a failure names
//! the step, the exporter, what was seen and what to fix. All steps run
//! even when one fails, so the first run of a new exporter lists
//! everything at once.
//!
//! | step | what it checks |
//! |---|---|
//! | `init refuses bad config` | an unknown config key is refused naming it; so is every declared [bad config](Compliance::refuses) and [missing secret](Compliance::refuses_without_secret) |
//! | `empty batch` | 0 events: `Accepted`, and nothing sent or written |
//! | `every event exactly once` | batches of 1 event, of 2,500 or more (past the events-per-request limit) and past the bytes-per-request limit: with an accepting destination the answer is `Accepted`, every event arrives exactly once (none lost, none doubled), every request stays within the declared [`Limits`] (bytes counted decoded: gzip and zstd bodies are decompressed), and `flush` succeeds |
//! | `answer mapping` | each declared [answer](Compliance::answer) gives its [`Expected`] outcome (compared by class); a retryable error answer honours `Retry-After`, given as delta-seconds and as an HTTP-date |
//! | `transport errors are retryable` | DNS, connect, timeout, TLS and protocol failures are retryable |
//! | `allowed_hosts refusal` | a destination the relay refuses is a permanent failure that names `allowed_hosts` |
//! | `refused after accepted` | a batch split into several requests whose second one is refused (with a declared retryable, then a declared permanent answer) is not claimed delivered; after the retryable refusal, a retry leaves no event lost |
//! | `retries are idempotent` | with [`Retries::SameRequests`], delivering a batch again — to the same instance, or to a new one as after a crash — sends the same requests (method, URL, decoded body) |
//! | `golden requests` | [`fixed_events`] produce exactly the requests in the [golden file](Compliance::golden) |
//! | `partial rejections are well formed` | every `PartiallyRejected` seen in any step lists indices inside the batch, ascending, each once, each with a reason |
//! | `secrets never leak` | no granted secret's value — as it is, base64 (standard or URL-safe, at any alignment, as in a Basic credential) or hex — appears in a log line, an error or rejection reason, a metric name, stdout, a written file, a URL or a body; and in headers only where [declared](Compliance::secret_in_header) |
//!
//! HTTP exporters ([`Compliance::http`]) say which events a request
//! carries with [`events_in`](Compliance::events_in); other exporters
//! ([`Compliance::local`]: files, stdout, nothing) say what the
//! destination holds with [`delivered`](Compliance::delivered) or
//! [`counted`](Compliance::counted). The steps about requests (answers,
//! transport, limits, retries, golden) apply to HTTP exporters only.
//!
//! Good to know when writing one:
//!
//! - Every step starts a new instance (and, with
//!   [`granted_dir`](Compliance::granted_dir), a new directory); the
//!   [`server`](Compliance::server) is shared by all of them, so a fake
//!   with state (acknowledgement ids) keeps it behind a `Mutex`.
//! - The large batches are `max(2,500, 2.5 × the events-per-request
//!   limit)` events, and events whose envelopes add up to 1.5 × the
//!   bytes-per-request limit; a run takes a few seconds in a debug build.
//! - A passing run prints what each step checked: see it with
//!   `cargo test -- --nocapture`.
//!
//! # Example
//!
//! A small exporter that posts NDJSON, at most 100 events a request, with
//! a bearer token — and its whole compliance test:
//!
//! ```
//! use auditrelay_plugin_api::http::{Request, Response};
//! use auditrelay_plugin_api::prelude::*;
//! use auditrelay_plugin_api::testing::compliance::{Compliance, Expected, Limits};
//!
//! struct Collector { url: String, token: String }
//!
//! #[derive(serde::Deserialize)]
//! #[serde(deny_unknown_fields)]
//! struct Config { url: String }
//!
//! impl Plugin for Collector {
//!     type Config = Config;
//!     fn info() -> PluginInfo { PluginInfo::new("collector", "0.1.0", "posts NDJSON") }
//!     fn init(config: Config, _ctx: &InitContext) -> Result<Self, InitError> {
//!         let token = settings::required_secret("collector_token", "the collector's token")?;
//!         Ok(Collector { url: config.url, token })
//!     }
//!     fn deliver(&mut self, events: &[Event<'_>]) -> Result<Delivery, DeliverError> {
//!         for chunk in events.chunks(100) {
//!             let mut body = Vec::new();
//!             for event in chunk {
//!                 body.extend_from_slice(event.envelope);
//!                 body.push(b'\n');
//!             }
//!             let response = Request::post(&self.url)
//!                 .header("authorization", format!("Bearer {}", self.token))
//!                 .body(body)
//!                 .send()?;
//!             if !response.is_success() {
//!                 return Err(response.into_deliver_error("the collector"));
//!             }
//!         }
//!         Ok(Delivery::Accepted)
//!     }
//! }
//!
//! Compliance::<Collector>::http(["collector.test"])
//!     .config(serde_json::json!({"url": "https://collector.test/ingest"}))
//!     .secret("collector_token", "tok-5f1c9a7e-compliance")
//!     .secret_in_header("collector_token", "authorization")
//!     .refuses_without_secret("collector_token")
//!     .refuses(serde_json::json!({"url": null}), "url")
//!     .server(|_request| Ok(Response::new(200, "ok")))
//!     .events_in(|sent| sent.ids_at("/id"))
//!     .limits(Limits::none().max_events_per_request(100))
//!     .answer(Response::new(200, "ok"), Expected::Delivered)
//!     .answer(Response::new(401, "unknown token"), Expected::Permanent)
//!     .answer(Response::new(503, "busy"), Expected::Retryable)
//!     .run();
//! ```
//!
//! The first-party exporters' `tests/compliance.rs` are fuller examples:
//! `plugins/datadog` and `plugins/splunk-hec` (HTTP, compression, a
//! golden file), `plugins/s3` (one object per key prefix),
//! `plugins/file` (a granted directory), `plugins/stdout` and
//! `plugins/blackhole`.

// This file is what an exporter declares ([`Compliance`] and its
// vocabulary) and [`Compliance::run`]. `steps/` holds the [`Run`] and one
// file per step (or group of steps) of the table above; `instance.rs`
// starts a step's plugin and its fake destination; `sent.rs` is what the
// destination saw, as the exporter's readers get it; `support.rs` has
// small helpers.
mod instance;
mod sent;
mod steps;
mod support;

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use serde_json::Value;

pub use self::sent::{Destination, Sent, ids_at};
use self::steps::Run;
#[cfg(doc)] // only named in doc links
use super::{Harness, fixed_events};
use crate::http::{HttpError, Request, Response};
use crate::plugin::Plugin;

const INIT: &str = "init refuses bad config";
const EMPTY: &str = "empty batch";
const EXACTLY_ONCE: &str = "every event exactly once";
const ANSWERS: &str = "answer mapping";
const TRANSPORT: &str = "transport errors are retryable";
const DENIED: &str = "allowed_hosts refusal";
const SPLIT: &str = "refused after accepted";
const RETRIES: &str = "retries are idempotent";
const GOLDEN: &str = "golden requests";
const REJECTIONS: &str = "partial rejections are well formed";
const SECRETS: &str = "secrets never leak";

/// The config key the suite adds to check that unknown keys are refused.
pub const UNKNOWN_KEY: &str = "compliance_unknown_key";

type Server = dyn Fn(&Request) -> Result<Response, HttpError> + Send + Sync;
type EventsIn = dyn Fn(&Sent) -> Vec<String> + Send + Sync;
type IdReader<P> = dyn Fn(&Destination<'_, P>) -> Vec<String>;
type CountReader<P> = dyn Fn(&Destination<'_, P>) -> u64;

/// What a delivery of one event must end in, compared by class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expected {
    /// `Ok(Delivery::Accepted)`.
    Delivered,
    /// `Err(DeliverError::Retryable)`, with `retry_after` taken from a
    /// `Retry-After` header when the answer has one. For an error status
    /// (4xx, 5xx) the suite also sends the answer with `Retry-After: 7` and
    /// with an HTTP-date two minutes ahead, and expects each honoured.
    Retryable,
    /// `Err(DeliverError::Permanent)`.
    Permanent,
    /// `Ok(Delivery::PartiallyRejected)`, well formed and not empty.
    PartiallyRejected,
}

/// How a retried batch must look, as the exporter's README promises.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retries {
    /// Delivering a batch again sends the same requests (method, URL,
    /// decoded body), whether to the same instance or to a new one (as
    /// after a crash): a destination that keys what it stores by name
    /// overwrites its own copy, and one that deduplicates can. The
    /// default for HTTP exporters.
    SameRequests,
    /// Not checked: a retry may land again in another form (appended to
    /// a file, printed). The default for [`Compliance::local`] exporters.
    Unchecked,
}

/// An exporter's per-request limits, as its README states them; the
/// suite checks every request it sends against them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    events_per_request: Option<usize>,
    request_bytes: Option<usize>,
}

impl Limits {
    /// No limits.
    pub fn none() -> Limits {
        Limits::default()
    }

    /// At most `events` events in one request.
    pub fn max_events_per_request(mut self, events: usize) -> Limits {
        self.events_per_request = Some(events.max(1));
        self
    }

    /// At most `bytes` in one request body, uncompressed.
    pub fn max_request_bytes(mut self, bytes: usize) -> Limits {
        self.request_bytes = Some(bytes.max(1));
        self
    }
}

/// The golden-file step: the requests [`fixed_events`] become, pinned in
/// a file so any change to the wire format shows up in review.
///
/// Each request is written as its request line (`METHOD URL`), its
/// headers as sent, a blank line and its body (decoded when it has a
/// `Content-Encoding`), then a newline; requests are separated by a blank
/// line. `UPDATE_GOLDEN=1 cargo test` (re)writes the file.
#[derive(Debug, Clone)]
pub struct Golden {
    path: PathBuf,
    patch: Option<Value>,
    placeholders: Vec<(String, String)>,
}

impl Golden {
    /// The golden file at `path`, relative to the package root (the
    /// directory `cargo test` runs tests in).
    pub fn new(path: impl Into<PathBuf>) -> Golden {
        Golden {
            path: path.into(),
            patch: None,
            placeholders: Vec::new(),
        }
    }

    /// Changes to the suite's [config](Compliance::config) for this step,
    /// as a JSON merge patch (RFC 7396: a key set to `null` is removed).
    pub fn config(mut self, patch: Value) -> Golden {
        self.patch = Some(patch);
        self
    }

    /// Writes `text` in place of the value of `header` wherever that value
    /// appears in a request's URL or headers: for what changes on every
    /// run (a channel id, a date, a signature).
    pub fn placeholder(mut self, header: impl Into<String>, text: impl Into<String>) -> Golden {
        self.placeholders.push((header.into(), text.into()));
        self
    }
}

enum Reader<P: Plugin> {
    Ids(Box<IdReader<P>>),
    Count(Box<CountReader<P>>),
}

struct Answer {
    response: Response,
    expected: Expected,
    naming: Option<String>,
}

/// Runs an exporter through the compliance suite; see the
/// [module docs](self).
#[must_use = "call run() to check the exporter"]
pub struct Compliance<P: Plugin> {
    exporter: String,
    allowed_hosts: Option<Vec<String>>,
    config: Value,
    secrets: Vec<(String, String)>,
    secret_headers: Vec<(String, String)>,
    granted_dir: bool,
    server: Option<Arc<Server>>,
    events_in: Option<Arc<EventsIn>>,
    reader: Option<Reader<P>>,
    limits: Limits,
    answers: Vec<Answer>,
    retries: Retries,
    refusals: Vec<(Value, String)>,
    required_secrets: Vec<String>,
    golden: Option<Golden>,
}

impl<P: Plugin> Compliance<P> {
    fn new(allowed_hosts: Option<Vec<String>>, retries: Retries) -> Self {
        Compliance {
            exporter: P::info().name,
            allowed_hosts,
            config: serde_json::json!({}),
            secrets: Vec::new(),
            secret_headers: Vec::new(),
            granted_dir: false,
            server: None,
            events_in: None,
            reader: None,
            limits: Limits::none(),
            answers: Vec::new(),
            retries,
            refusals: Vec::new(),
            required_secrets: Vec::new(),
            golden: None,
        }
    }

    /// An exporter that delivers over HTTP to the given hosts (the
    /// instance's `allowed_hosts`). Declare the accepting
    /// [`server`](Self::server) and [`events_in`](Self::events_in).
    pub fn http<I, S>(allowed_hosts: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self::new(
            Some(allowed_hosts.into_iter().map(Into::into).collect()),
            Retries::SameRequests,
        )
    }

    /// An exporter that delivers somewhere other than HTTP (a granted
    /// directory, stdout, nowhere). Declare what the destination holds
    /// with [`delivered`](Self::delivered) or [`counted`](Self::counted).
    pub fn local() -> Self {
        Self::new(None, Retries::Unchecked)
    }

    /// The plugin's `config` table, as JSON (an object); every step
    /// starts from it.
    pub fn config(mut self, config: Value) -> Self {
        self.config = config;
        self
    }

    /// Grants a secret. Give each a distinctive value (8 characters or
    /// more, found nowhere else): the suite searches everything the
    /// exporter emits for it.
    pub fn secret(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.secrets.push((name.into(), value.into()));
        self
    }

    /// Declares that the secret `name` may be sent in request header
    /// `header` (`Authorization`, `DD-API-KEY`, ...). Anywhere else it is
    /// a leak.
    pub fn secret_in_header(mut self, name: impl Into<String>, header: impl Into<String>) -> Self {
        self.secret_headers
            .push((name.into(), header.into().to_ascii_lowercase()));
        self
    }

    /// Declares that init without the secret `name` must fail, naming it.
    pub fn refuses_without_secret(mut self, name: impl Into<String>) -> Self {
        self.required_secrets.push(name.into());
        self
    }

    /// Declares that init with the suite's config changed by `patch` (a
    /// JSON merge patch: a key set to `null` is removed) must fail with an
    /// error that names `key`.
    pub fn refuses(mut self, patch: Value, key: impl Into<String>) -> Self {
        self.refusals.push((patch, key.into()));
        self
    }

    /// Gives every instance a fresh, empty granted directory (removed
    /// after the step).
    pub fn granted_dir(mut self) -> Self {
        self.granted_dir = true;
        self
    }

    /// The destination on a good day: answers every request the way the
    /// real service answers one it takes. Steps that test bad days
    /// replace some answers and leave the rest to it. Faithful answers
    /// matter: an exporter that parses them (acknowledgement ids, error
    /// codes) is only as tested as they are true.
    pub fn server(
        mut self,
        server: impl Fn(&Request) -> Result<Response, HttpError> + Send + Sync + 'static,
    ) -> Self {
        self.server = Some(Arc::new(server));
        self
    }

    /// The ids of the events a request carries (empty for a request that
    /// carries none, such as an acknowledgement poll); most exporters use
    /// [`Sent::ids_at`].
    pub fn events_in(
        mut self,
        events_in: impl Fn(&Sent) -> Vec<String> + Send + Sync + 'static,
    ) -> Self {
        self.events_in = Some(Arc::new(events_in));
        self
    }

    /// For a [`local`](Self::local) exporter: the ids of every event the
    /// destination holds (one entry per copy), read after each delivery
    /// of a step. Each step starts with a new instance and directory.
    pub fn delivered(
        mut self,
        reader: impl Fn(&Destination<'_, P>) -> Vec<String> + 'static,
    ) -> Self {
        self.reader = Some(Reader::Ids(Box::new(reader)));
        self
    }

    /// For a [`local`](Self::local) exporter that keeps no ids (a sink):
    /// how many events the destination took.
    pub fn counted(mut self, reader: impl Fn(&Destination<'_, P>) -> u64 + 'static) -> Self {
        self.reader = Some(Reader::Count(Box::new(reader)));
        self
    }

    /// The exporter's per-request limits.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Declares what `response` to a delivery of one event means: one row
    /// of the README's answer table. The response is given to the first
    /// request of the delivery; later ones (an acknowledgement poll, the
    /// halves of a refused request) reach the [`server`](Self::server).
    pub fn answer(mut self, response: Response, expected: Expected) -> Self {
        self.answers.push(Answer {
            response,
            expected,
            naming: None,
        });
        self
    }

    /// Like [`answer`](Self::answer), and the error (or each rejection
    /// reason) must contain `text`, such as the setting to fix.
    pub fn answer_naming(
        mut self,
        response: Response,
        expected: Expected,
        text: impl Into<String>,
    ) -> Self {
        self.answers.push(Answer {
            response,
            expected,
            naming: Some(text.into()),
        });
        self
    }

    /// How a retried batch must look (default: [`Retries::SameRequests`]
    /// for HTTP exporters).
    pub fn retries(mut self, retries: Retries) -> Self {
        self.retries = retries;
        self
    }

    /// Checks the requests of [`fixed_events`] against a golden file.
    pub fn golden(mut self, golden: Golden) -> Self {
        self.golden = Some(golden);
        self
    }

    /// Runs every step and returns what each checked.
    ///
    /// # Panics
    ///
    /// If a step fails, after all steps ran: the message lists each
    /// failure with its step, the exporter, what was seen and the fix.
    /// Also if the declaration itself cannot work (no server for an HTTP
    /// exporter, a secret too short to search for), saying what to add.
    pub fn run(self) -> Report {
        self.check_declaration();
        let mut run = Run {
            suite: &self,
            report: Report {
                exporter: self.exporter.clone(),
                steps: Vec::new(),
            },
            failures: Vec::new(),
            leaks: Vec::new(),
            rejections_checked: 0,
            texts_scanned: 0,
        };
        run.all_steps();
        let checked = run.rejections_checked;
        run.report.steps.push((
            REJECTIONS,
            format!("{checked} partial rejection(s) seen across the steps, each checked"),
        ));
        let scanned = run.texts_scanned;
        run.report.steps.push((
            SECRETS,
            format!(
                "{} secret(s) searched for in {scanned} texts: log lines, errors, reasons, metric names, outputs, URLs, headers, bodies",
                self.secrets.len()
            ),
        ));
        let Run {
            report,
            mut failures,
            leaks,
            ..
        } = run;
        for leak in &leaks {
            failures.push(leak.failure(&self.exporter));
        }
        if !failures.is_empty() {
            let mut text = format!(
                "the {} exporter fails {} compliance check(s):\n",
                self.exporter,
                failures.len()
            );
            for (i, failure) in failures.iter().enumerate() {
                text.push_str(&format!("\n{}. {failure}\n", i + 1));
            }
            text.push_str(&format!("\nSteps run:\n{report}"));
            panic!("{text}");
        }
        println!("{report}");
        report
    }

    fn is_http(&self) -> bool {
        self.allowed_hosts.is_some()
    }

    fn check_declaration(&self) {
        let exporter = &self.exporter;
        assert!(
            self.config.is_object(),
            "compliance: {exporter}: config must be a JSON object (the plugin's config table), not {}",
            self.config
        );
        if self.is_http() {
            assert!(
                self.server.is_some(),
                "compliance: {exporter}: declare the accepting destination with .server(|request| ...)"
            );
            assert!(
                self.events_in.is_some(),
                "compliance: {exporter}: declare which events a request carries with .events_in(|sent| ...)"
            );
            assert!(
                self.reader.is_none(),
                "compliance: {exporter}: .delivered/.counted are for Compliance::local exporters; HTTP exporters use .events_in"
            );
        } else {
            assert!(
                self.reader.is_some(),
                "compliance: {exporter}: declare what the destination holds with .delivered(|destination| ids) or .counted(|destination| n)"
            );
            assert!(
                self.limits == Limits::none() && self.answers.is_empty() && self.golden.is_none(),
                "compliance: {exporter}: limits, answers and golden files are about requests; use Compliance::http for an exporter that sends them"
            );
        }
        let config_text = self.config.to_string();
        for (name, value) in &self.secrets {
            assert!(
                value.chars().count() >= 8,
                "compliance: {exporter}: secret `{name}` = {value:?} is too short to search for; give it a distinctive value of 8 characters or more"
            );
            assert!(
                !config_text.contains(value.as_str()),
                "compliance: {exporter}: secret `{name}`'s value also appears in the config; give it a distinctive value"
            );
        }
        for (name, header) in &self.secret_headers {
            assert!(
                self.secrets.iter().any(|(n, _)| n == name),
                "compliance: {exporter}: .secret_in_header({name:?}, {header:?}) names a secret that is not granted; add .secret({name:?}, ...)"
            );
        }
        for name in &self.required_secrets {
            assert!(
                self.secrets.iter().any(|(n, _)| n == name),
                "compliance: {exporter}: .refuses_without_secret({name:?}) names a secret that is not granted; add .secret({name:?}, ...)"
            );
        }
    }
}

/// What a passing run checked, step by step; printed by
/// [`Compliance::run`] (see it with `cargo test -- --nocapture`).
#[derive(Debug, Clone)]
pub struct Report {
    exporter: String,
    steps: Vec<(&'static str, String)>,
}

impl Report {
    /// The exporter's name, from its [`PluginInfo`](crate::PluginInfo).
    pub fn exporter(&self) -> &str {
        &self.exporter
    }

    /// The names of the steps that ran, in order (a step may appear once
    /// per case it checked).
    pub fn steps(&self) -> Vec<&'static str> {
        let mut names: Vec<&'static str> = Vec::new();
        for (name, _) in &self.steps {
            if !names.contains(name) {
                names.push(name);
            }
        }
        names
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "compliance of the {} exporter:", self.exporter)?;
        for (name, detail) in &self.steps {
            writeln!(f, "  {name}: {detail}")?;
        }
        Ok(())
    }
}
