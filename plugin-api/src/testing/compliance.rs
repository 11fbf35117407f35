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
//! | `secrets never leak` | no granted secret's value appears in a log line, an error or rejection reason, a metric name, stdout, a written file, a URL or a body; and in headers only where [declared](Compliance::secret_in_header) |
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

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use super::{Harness, compare_golden, fixed_events, sample_envelope};
use crate::event::{DeliverError, Delivery, EventBuf, RejectedEvent};
use crate::http::{HttpError, HttpErrorKind, Request, Response, parse_retry_after};
use crate::plugin::{InitError, Plugin};

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

/// Network failures a transport reports; each must be retryable.
const NETWORK_FAILURES: [HttpErrorKind; 5] = [
    HttpErrorKind::Dns,
    HttpErrorKind::Connect,
    HttpErrorKind::Timeout,
    HttpErrorKind::Tls,
    HttpErrorKind::Protocol,
];

/// The least batch size of the "past the limits" delivery.
const LARGE_BATCH: usize = 2_500;

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

/// A request the exporter sent, as the suite hands it to
/// [`events_in`](Compliance::events_in): the body decoded by its
/// `Content-Encoding` (gzip and zstd need plugin-api's `compression`
/// feature, which every exporter that compresses has on).
#[derive(Debug, Clone)]
pub struct Sent {
    request: Request,
    body: Vec<u8>,
}

impl Sent {
    /// Decodes the body of `request`.
    pub fn decode(request: &Request) -> Result<Sent, String> {
        let body = decode_body(request.header_value("content-encoding"), &request.body)?;
        Ok(Sent {
            request: request.clone(),
            body,
        })
    }

    /// The request as sent (its `body` as on the wire).
    pub fn request(&self) -> &Request {
        &self.request
    }

    /// The body, decoded.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// The strings at JSON `pointer` in the body: see [`ids_at`].
    pub fn ids_at(&self, pointer: &str) -> Vec<String> {
        ids_at(&self.body, pointer)
    }
}

/// The string at JSON `pointer` (RFC 6901, e.g. `/audit/id`) in each JSON
/// value of `bytes`: the elements of a top-level array, or each value of
/// an NDJSON or concatenated stream. Values without a string there are
/// skipped; reading stops at the first byte that is not JSON.
///
/// ```
/// use auditrelay_plugin_api::testing::compliance::ids_at;
///
/// assert_eq!(ids_at(br#"[{"e":{"id":"a"}},{"e":{"id":"b"}}]"#, "/e/id"), ["a", "b"]);
/// assert_eq!(ids_at(b"{\"id\":\"a\"}\n{\"id\":\"b\"}\n", "/id"), ["a", "b"]);
/// assert_eq!(ids_at(br#"{"acks":[0]}"#, "/id"), Vec::<String>::new());
/// ```
pub fn ids_at(bytes: &[u8], pointer: &str) -> Vec<String> {
    let mut ids = Vec::new();
    let mut take = |value: &Value| {
        if let Some(id) = value.pointer(pointer).and_then(Value::as_str) {
            ids.push(id.to_owned());
        }
    };
    for value in serde_json::Deserializer::from_slice(bytes).into_iter::<Value>() {
        match value {
            Ok(Value::Array(items)) => items.iter().for_each(&mut take),
            Ok(value) => take(&value),
            Err(_) => break,
        }
    }
    ids
}

/// What a [`Compliance::local`] exporter's reader looks at: the plugin
/// instance of one step and its granted directory.
pub struct Destination<'a, P: Plugin> {
    harness: &'a Harness<P>,
    dir: Option<&'a Path>,
}

impl<P: Plugin> Destination<'_, P> {
    /// The harness the plugin runs in ([`Harness::stdout`],
    /// [`Harness::plugin`], counters, logs).
    pub fn harness(&self) -> &Harness<P> {
        self.harness
    }

    /// The directory granted to this instance.
    ///
    /// # Panics
    ///
    /// If the suite was not asked for one with [`Compliance::granted_dir`].
    pub fn granted_dir(&self) -> &Path {
        self.dir
            .expect("no granted directory: call Compliance::granted_dir()")
    }

    /// Every file under the granted directory (none without one), by
    /// path relative to it, in name order.
    pub fn files(&self) -> Vec<(PathBuf, Vec<u8>)> {
        let mut files = Vec::new();
        if let Some(dir) = self.dir {
            collect_files(dir, dir, &mut files);
        }
        files.sort();
        files
    }
}

fn collect_files(root: &Path, dir: &Path, out: &mut Vec<(PathBuf, Vec<u8>)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect_files(root, &path, out);
        } else if let Ok(bytes) = std::fs::read(&path) {
            let relative = path.strip_prefix(root).unwrap_or(&path).to_path_buf();
            out.push((relative, bytes));
        }
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
        run.step(INIT, Run::init);
        run.step(EMPTY, Run::empty_batch);
        run.step(EXACTLY_ONCE, Run::exactly_once);
        if self.is_http() {
            run.step(ANSWERS, Run::answers);
            run.step(TRANSPORT, Run::transport_errors);
            run.step(DENIED, Run::denied);
            run.step(SPLIT, Run::refused_after_accepted);
            run.step(RETRIES, Run::retries);
            if self.golden.is_some() {
                run.step(GOLDEN, Run::golden);
            }
        }
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
        for Leak {
            key: (step, secret, _),
            first,
            count,
        } in leaks
        {
            let more = match count {
                1 => String::new(),
                n => format!(" (and {} more like it)", n - 1),
            };
            failures.push(format!(
                "{}: step `{SECRETS}` (seen in step `{step}`): the value of secret `{secret}` appears in {first}{more}. Keep secrets out of messages, logs and URLs; send them only in the headers declared with .secret_in_header",
                self.exporter
            ));
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

/// How the fake destination answers, switchable between deliveries.
#[derive(Clone)]
enum Mode {
    /// Every request reaches the suite's server.
    Accept,
    /// The first request gets this reply.
    First(Result<Response, HttpError>),
    /// The event-carrying request number `.0` (from 0) gets this reply.
    NthWithEvents(usize, Result<Response, HttpError>),
}

struct FakeServer {
    server: Arc<Server>,
    events_in: Arc<EventsIn>,
    mode: Mutex<Mode>,
    requests: AtomicUsize,
    event_requests: AtomicUsize,
}

impl FakeServer {
    fn answer(&self, request: &Request) -> Result<Response, HttpError> {
        let n = self.requests.fetch_add(1, Ordering::SeqCst);
        let carries = Sent::decode(request)
            .map(|sent| !(self.events_in)(&sent).is_empty())
            .unwrap_or(false);
        let k = if carries {
            self.event_requests.fetch_add(1, Ordering::SeqCst)
        } else {
            usize::MAX
        };
        let mode = self.mode.lock().unwrap().clone();
        match mode {
            Mode::First(reply) if n == 0 => reply,
            Mode::NthWithEvents(i, reply) if k == i => reply,
            _ => (self.server)(request),
        }
    }

    fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }
}

/// One plugin instance of a step.
struct Instance<P: Plugin> {
    harness: Harness<P>,
    server: Option<Arc<FakeServer>>,
    dir: Option<TempDir>,
}

/// How to set up an instance.
struct Setup<'a> {
    mode: Mode,
    config: Option<&'a Value>,
    without_secret: Option<&'a str>,
    deny_all_hosts: bool,
}

impl Setup<'static> {
    fn accepting() -> Self {
        Setup {
            mode: Mode::Accept,
            config: None,
            without_secret: None,
            deny_all_hosts: false,
        }
    }

    fn with(mode: Mode) -> Self {
        Setup {
            mode,
            ..Setup::accepting()
        }
    }
}

/// The state of one run of the suite.
struct Run<'s, P: Plugin> {
    suite: &'s Compliance<P>,
    report: Report,
    failures: Vec<String>,
    leaks: Vec<Leak>,
    rejections_checked: usize,
    texts_scanned: usize,
}

/// Where a secret was seen: (step, secret, kind of place), the first
/// sighting and how many there were.
struct Leak {
    key: (&'static str, String, String),
    first: String,
    count: usize,
}

type StepResult = Result<(), String>;

impl<P: Plugin> Run<'_, P> {
    fn step(&mut self, name: &'static str, body: fn(&mut Self) -> StepResult) {
        let result = catch_unwind(AssertUnwindSafe(|| body(self)));
        let failure = match result {
            Ok(Ok(())) => return,
            Ok(Err(failure)) => failure,
            Err(panic) => format!(
                "the exporter (or a reader of the test) panicked: {}",
                panic_text(&*panic)
            ),
        };
        self.fail(name, failure);
    }

    fn fail(&mut self, step: &str, what: String) {
        self.failures
            .push(format!("{}: step `{step}`: {what}", self.suite.exporter));
    }

    fn note(&mut self, step: &'static str, detail: impl Into<String>) {
        self.report.steps.push((step, detail.into()));
    }

    fn instance(&mut self, setup: Setup<'_>) -> Result<Instance<P>, InitError> {
        let suite = self.suite;
        let mut builder = Harness::<P>::builder().config(match setup.config {
            Some(config) => config.clone(),
            None => suite.config.clone(),
        });
        for (name, value) in &suite.secrets {
            if setup.without_secret != Some(name.as_str()) {
                builder = builder.secret(name, value);
            }
        }
        let dir = suite
            .granted_dir
            .then(|| TempDir::new(&suite.exporter).expect("a temporary directory"));
        if let Some(dir) = &dir {
            builder = builder.granted_dir(&dir.0);
        }
        let mut server = None;
        if let Some(hosts) = &suite.allowed_hosts {
            if !setup.deny_all_hosts {
                builder = builder.allowed_hosts(hosts.clone());
            }
            let fake = Arc::new(FakeServer {
                server: suite.server.clone().expect("checked in check_declaration"),
                events_in: suite
                    .events_in
                    .clone()
                    .expect("checked in check_declaration"),
                mode: Mutex::new(setup.mode),
                requests: AtomicUsize::new(0),
                event_requests: AtomicUsize::new(0),
            });
            let answering = fake.clone();
            builder = builder.http(move |request| answering.answer(request));
            server = Some(fake);
        }
        let harness = builder.init()?;
        Ok(Instance {
            harness,
            server,
            dir,
        })
    }

    /// An instance with the suite's own config, which must init.
    fn started(&mut self, setup: Setup<'_>) -> Result<Instance<P>, String> {
        self.instance(setup).map_err(|error| {
            format!(
                "init with the suite's config failed: {error}. Fix the config given to Compliance::config (or the exporter's init)"
            )
        })
    }

    // ----- init refuses bad config -----

    fn init(&mut self) -> StepResult {
        let suite = self.suite;
        let instance = self.started(Setup::accepting())?;
        self.scan_instance(INIT, &instance);
        drop(instance);

        let mut cases: Vec<(String, Value, String)> = Vec::new();
        let mut unknown = suite.config.clone();
        unknown[UNKNOWN_KEY] = Value::Bool(true);
        cases.push((
            format!("unknown key `{UNKNOWN_KEY}`"),
            unknown,
            UNKNOWN_KEY.to_owned(),
        ));
        for (patch, key) in &suite.refusals {
            let mut config = suite.config.clone();
            merge_patch(&mut config, patch);
            cases.push((format!("config patched with {patch}"), config, key.clone()));
        }
        let mut problems = Vec::new();
        for (case, config, key) in &cases {
            let setup = Setup {
                config: Some(config),
                ..Setup::accepting()
            };
            match self.instance(setup) {
                Ok(_) => problems.push(format!(
                    "{case}: init succeeded; it must refuse the config naming `{key}` (use #[serde(deny_unknown_fields)] on the config type, and check values in init)"
                )),
                Err(error) => {
                    self.scan(INIT, "an init error", &error.0, &[]);
                    if !error.0.contains(key.as_str()) {
                        problems.push(format!(
                            "{case}: refused with {:?}, which does not name `{key}`; say which key is wrong and how to fix it",
                            error.0
                        ));
                    }
                }
            }
        }
        for name in &suite.required_secrets {
            let setup = Setup {
                without_secret: Some(name),
                ..Setup::accepting()
            };
            match self.instance(setup) {
                Ok(_) => problems.push(format!(
                    "without secret `{name}`: init succeeded; it must refuse to start (settings::required_secret does)"
                )),
                Err(error) => {
                    self.scan(INIT, "an init error", &error.0, &[]);
                    if !error.0.contains(name.as_str()) {
                        problems.push(format!(
                            "without secret `{name}`: refused with {:?}, which does not name the secret",
                            error.0
                        ));
                    }
                }
            }
        }
        self.note(
            INIT,
            format!(
                "the suite's config starts; {} bad config(s) and {} missing secret(s) refused naming the key",
                cases.len(),
                suite.required_secrets.len()
            ),
        );
        problems_to_result(problems)
    }

    // ----- empty batch -----

    fn empty_batch(&mut self) -> StepResult {
        let mut instance = self.started(Setup::accepting())?;
        let outcome = instance.harness.deliver(&[]);
        self.observe(EMPTY, &outcome, 0);
        let mut problems = Vec::new();
        if outcome != Ok(Delivery::Accepted) {
            problems.push(format!(
                "delivering 0 events returned {outcome:?}; it must return Ok(Delivery::Accepted)"
            ));
        }
        let requests = instance.harness.requests();
        if !requests.is_empty() {
            problems.push(format!(
                "delivering 0 events sent {} request(s), first {} {}; send nothing",
                requests.len(),
                requests[0].method.as_str(),
                requests[0].url
            ));
        }
        if self.suite.reader.is_some() {
            let (copies, _) = self.read_destination(&instance);
            if copies > 0 {
                problems.push(format!(
                    "delivering 0 events left {copies} event(s) at the destination"
                ));
            }
        }
        self.scan_instance(EMPTY, &instance);
        self.note(
            EMPTY,
            if self.suite.is_http() {
                "0 events: Accepted, no request sent"
            } else {
                "0 events: Accepted, nothing at the destination"
            },
        );
        problems_to_result(problems)
    }

    // ----- every event exactly once -----

    fn exactly_once(&mut self) -> StepResult {
        let mut problems = Vec::new();
        for (label, batch) in self.batches() {
            if let Err(problem) = self.exactly_once_with(&label, &batch) {
                problems.push(problem);
            }
        }
        problems_to_result(problems)
    }

    /// The batches of the step: 1 event, past the events-per-request
    /// limit, past the bytes-per-request limit.
    fn batches(&self) -> Vec<(String, Vec<EventBuf>)> {
        let limits = self.suite.limits;
        let large = limits
            .events_per_request
            .map_or(LARGE_BATCH, |max| (max * 5 / 2).max(LARGE_BATCH));
        let mut batches = vec![
            ("1 event".to_owned(), events(0..1)),
            (
                match limits.events_per_request {
                    Some(max) => format!("{large} events, past {max} per request"),
                    None => format!("{large} events"),
                },
                events(0..large),
            ),
        ];
        if let Some(max) = limits.request_bytes {
            let batch = events_of_bytes(max + max / 2);
            let bytes: usize = batch.iter().map(|e| e.envelope.len()).sum();
            batches.push((
                format!(
                    "{} events of {bytes} envelope bytes, past {max} bytes per request",
                    batch.len()
                ),
                batch,
            ));
        }
        batches
    }

    fn exactly_once_with(&mut self, label: &str, batch: &[EventBuf]) -> StepResult {
        let mut instance = self.started(Setup::accepting())?;
        let outcome = instance.harness.deliver(batch);
        self.observe(EXACTLY_ONCE, &outcome, batch.len());
        let context = format!("{label}, accepting destination");
        if outcome != Ok(Delivery::Accepted) {
            self.scan_instance(EXACTLY_ONCE, &instance);
            return Err(format!(
                "({context}) delivery returned {outcome:?}; a destination that takes every request must get Ok(Delivery::Accepted)"
            ));
        }
        let mut problems = Vec::new();
        let arrived = if self.suite.is_http() {
            let requests = self.sent(&instance.harness)?;
            problems.extend(self.limit_problems(&requests));
            let mut arrived = Vec::new();
            for (n, sent) in requests.iter().enumerate() {
                for id in self.events_in(sent) {
                    arrived.push((id, Some(n)));
                }
            }
            if requests.is_empty() {
                problems.push("no request was sent".to_owned());
            }
            Some(arrived)
        } else {
            match self.read_destination(&instance) {
                (_, Some(ids)) => Some(ids.into_iter().map(|id| (id, None)).collect()),
                (count, None) => {
                    if count != batch.len() {
                        problems.push(format!(
                            "the destination took {count} events for a batch of {}",
                            batch.len()
                        ));
                    }
                    None
                }
            }
        };
        if let Some(arrived) = arrived {
            problems.extend(once_problems(batch, &arrived));
        }
        if let Err(error) = instance.harness.flush() {
            problems.push(format!("flush after the delivery failed: {error}"));
        }
        instance.harness.shutdown();
        self.scan_instance(EXACTLY_ONCE, &instance);
        if problems.is_empty() {
            let requests = instance.harness.requests().len();
            self.note(
                EXACTLY_ONCE,
                if self.suite.is_http() {
                    format!("{label}: each once, in {requests} request(s) within the limits")
                } else {
                    format!("{label}: each once")
                },
            );
            Ok(())
        } else {
            Err(format!("({context}) {}", problems.join("; ")))
        }
    }

    fn limit_problems(&self, requests: &[Sent]) -> Vec<String> {
        let limits = self.suite.limits;
        let mut problems = Vec::new();
        for (n, sent) in requests.iter().enumerate() {
            if let Some(max) = limits.request_bytes
                && sent.body.len() > max
            {
                problems.push(format!(
                    "request #{n} has {} body bytes (uncompressed), over the declared {max}",
                    sent.body.len()
                ));
            }
            if let Some(max) = limits.events_per_request {
                let count = self.events_in(sent).len();
                if count > max {
                    problems.push(format!(
                        "request #{n} carries {count} events, over the declared {max}"
                    ));
                }
            }
        }
        problems
    }

    // ----- answer mapping -----

    fn answers(&mut self) -> StepResult {
        let suite = self.suite;
        let mut problems = Vec::new();
        for answer in &suite.answers {
            for (case, response, retry_after) in answer_variants(answer) {
                let result = self.answer_case(
                    ANSWERS,
                    &case,
                    Ok(response),
                    answer.expected,
                    retry_after,
                    answer.naming.as_deref(),
                );
                match result {
                    Ok(()) => self.note(ANSWERS, format!("{case} → {:?}", answer.expected)),
                    Err(problem) => problems.push(problem),
                }
            }
        }
        if suite.answers.is_empty() {
            problems.push(
                "no answers declared: add one .answer(response, expected) per row of the README's answer table"
                    .to_owned(),
            );
        }
        problems_to_result(problems)
    }

    /// Delivers one event with `reply` to its first request and checks
    /// the outcome.
    fn answer_case(
        &mut self,
        step: &'static str,
        case: &str,
        reply: Result<Response, HttpError>,
        expected: Expected,
        retry_after: RetryAfter,
        naming: Option<&str>,
    ) -> StepResult {
        let mut instance = self.started(Setup::with(Mode::First(reply)))?;
        let batch = events(0..1);
        let outcome = instance.harness.deliver(&batch);
        self.observe(step, &outcome, batch.len());
        self.scan_instance(step, &instance);
        if instance.harness.requests().is_empty() {
            return Err(format!(
                "({case}) a delivery of 1 event sent no request, so the answer was never given"
            ));
        }
        let problem = outcome_problem(&outcome, expected, retry_after, naming);
        match problem {
            None => Ok(()),
            Some(problem) => Err(format!("({case}) {problem}")),
        }
    }

    // ----- transport errors, allowed_hosts -----

    fn transport_errors(&mut self) -> StepResult {
        let mut problems = Vec::new();
        for kind in NETWORK_FAILURES {
            let reply = Err(HttpError::new(
                kind,
                format!("compliance: simulated {kind:?} failure"),
            ));
            let case = format!("{kind:?} error");
            match self.answer_case(
                TRANSPORT,
                &case,
                reply,
                Expected::Retryable,
                RetryAfter::Any,
                None,
            ) {
                Ok(()) => {}
                Err(problem) => problems.push(format!(
                    "{problem}. Pass HttpError to the relay with `?` (From<HttpError> for DeliverError keeps network failures retryable)"
                )),
            }
        }
        self.note(TRANSPORT, format!("{:?} → Retryable", NETWORK_FAILURES));
        problems_to_result(problems)
    }

    fn denied(&mut self) -> StepResult {
        let mut instance = self.started(Setup {
            deny_all_hosts: true,
            ..Setup::accepting()
        })?;
        let batch = events(0..1);
        let outcome = instance.harness.deliver(&batch);
        self.observe(DENIED, &outcome, 1);
        self.scan_instance(DENIED, &instance);
        match &outcome {
            Err(DeliverError::Permanent(message)) if message.contains("allowed_hosts") => {
                self.note(
                    DENIED,
                    "a refused destination → Permanent, naming allowed_hosts",
                );
                Ok(())
            }
            other => Err(format!(
                "with the destination outside allowed_hosts, delivery returned {other:?}; it must be Err(Permanent) naming allowed_hosts (pass the HttpError on with `?`)"
            )),
        }
    }

    // ----- refused after accepted -----

    fn refused_after_accepted(&mut self) -> StepResult {
        let suite = self.suite;
        let batch = self
            .batches()
            .pop()
            .map(|(_, batch)| batch)
            .expect("there are batches");
        // How many requests carry events on a good day?
        let mut probe = self.started(Setup::accepting())?;
        let outcome = probe.harness.deliver(&batch);
        self.observe(SPLIT, &outcome, batch.len());
        self.scan_instance(SPLIT, &probe);
        let carrying = self
            .sent(&probe.harness)?
            .iter()
            .filter(|sent| !self.events_in(sent).is_empty())
            .count();
        drop(probe);
        if carrying < 2 {
            self.note(
                SPLIT,
                format!(
                    "skipped: a batch of {} events goes out in one request",
                    batch.len()
                ),
            );
            return Ok(());
        }
        let retryable = suite
            .answers
            .iter()
            .find(|a| a.expected == Expected::Retryable);
        let permanent = suite
            .answers
            .iter()
            .find(|a| a.expected == Expected::Permanent);
        let mut problems = Vec::new();
        for (answer, kind) in [
            (retryable, Expected::Retryable),
            (permanent, Expected::Permanent),
        ] {
            let Some(answer) = answer else {
                self.note(
                    SPLIT,
                    format!("skipped for {kind:?}: no such answer declared"),
                );
                continue;
            };
            let case = format!(
                "{} events in {carrying} requests, request 2 answered HTTP {}",
                batch.len(),
                answer.response.status
            );
            match self.refuse_second(&batch, answer, kind) {
                Ok(detail) => self.note(SPLIT, format!("{case}: {detail}")),
                Err(problem) => problems.push(format!("({case}) {problem}")),
            }
        }
        problems_to_result(problems)
    }

    fn refuse_second(
        &mut self,
        batch: &[EventBuf],
        answer: &Answer,
        kind: Expected,
    ) -> Result<String, String> {
        let mut instance = self.started(Setup::with(Mode::NthWithEvents(
            1,
            Ok(answer.response.clone()),
        )))?;
        let outcome = instance.harness.deliver(batch);
        self.observe(SPLIT, &outcome, batch.len());
        let first = self.sent(&instance.harness)?;
        // Which events did the destination take? All but the refused request's.
        let mut accepted: HashSet<String> = HashSet::new();
        let mut k = 0;
        for sent in &first {
            let ids = self.events_in(sent);
            if ids.is_empty() {
                continue;
            }
            if k != 1 {
                accepted.extend(ids);
            }
            k += 1;
        }
        let not_taken: Vec<usize> = batch
            .iter()
            .enumerate()
            .filter(|(_, e)| !accepted.contains(&e.id))
            .map(|(i, _)| i)
            .collect();
        match (&outcome, kind) {
            (Ok(Delivery::Accepted), _) => {
                return Err(format!(
                    "delivery returned Accepted although the destination refused request 2 ({} events never taken): the batch must fail (Retryable, so the relay retries it) or reject the events not taken",
                    not_taken.len()
                ));
            }
            (Err(DeliverError::Retryable { .. }), _) => {}
            (other, Expected::Retryable) => {
                return Err(format!(
                    "delivery returned {}; a retryable refusal of one request must make the batch retryable",
                    describe(other)
                ));
            }
            (Ok(Delivery::PartiallyRejected(rejected)), _) => {
                let listed: HashSet<u32> = rejected.iter().map(|r| r.index).collect();
                let missing: Vec<usize> = not_taken
                    .iter()
                    .copied()
                    .filter(|&i| !listed.contains(&(i as u32)))
                    .collect();
                if !missing.is_empty() {
                    return Err(format!(
                        "delivery returned PartiallyRejected for {} events, but {} events the destination never took are not among them (first at index {}): they would be counted as delivered",
                        rejected.len(),
                        missing.len(),
                        missing[0]
                    ));
                }
            }
            (Err(DeliverError::Permanent(_)), _) => {}
        }
        if kind == Expected::Permanent {
            self.scan_instance(SPLIT, &instance);
            return Ok(format!("not claimed delivered ({})", describe(&outcome)));
        }
        // The relay retries the batch; now the destination takes it.
        let before = instance.harness.requests().len();
        instance
            .server
            .as_ref()
            .expect("HTTP instances have a server")
            .set(Mode::Accept);
        let retried = instance.harness.deliver(batch);
        self.observe(SPLIT, &retried, batch.len());
        self.scan_instance(SPLIT, &instance);
        if retried != Ok(Delivery::Accepted) {
            return Err(format!(
                "the retry, with the destination taking every request, returned {}",
                describe(&retried)
            ));
        }
        let all = self.sent(&instance.harness)?;
        for sent in &all[before..] {
            accepted.extend(self.events_in(sent));
        }
        let lost: Vec<&str> = batch
            .iter()
            .filter(|e| !accepted.contains(&e.id))
            .map(|e| e.id.as_str())
            .collect();
        if !lost.is_empty() {
            return Err(format!(
                "after the refusal and a successful retry, {} events never reached the destination (first: {})",
                lost.len(),
                lost[0]
            ));
        }
        Ok(format!(
            "{} then, on retry, every event delivered",
            describe(&outcome)
        ))
    }

    // ----- retries are idempotent -----

    fn retries(&mut self) -> StepResult {
        if self.suite.retries == Retries::Unchecked {
            self.note(RETRIES, "not checked (Retries::Unchecked)");
            return Ok(());
        }
        let (_, batch) = self.batches().swap_remove(1);
        let mut instance = self.started(Setup::accepting())?;
        let mut attempts = Vec::new();
        for _ in 0..2 {
            let before = instance.harness.requests().len();
            let outcome = instance.harness.deliver(&batch);
            self.observe(RETRIES, &outcome, batch.len());
            let sent = self.sent(&instance.harness)?;
            attempts.push(self.carrying(&sent[before..]));
        }
        self.scan_instance(RETRIES, &instance);
        drop(instance);
        let mut fresh = self.started(Setup::accepting())?;
        let outcome = fresh.harness.deliver(&batch);
        self.observe(RETRIES, &outcome, batch.len());
        let sent = self.sent(&fresh.harness)?;
        attempts.push(self.carrying(&sent));
        self.scan_instance(RETRIES, &fresh);
        let mut problems = Vec::new();
        for (n, what) in [
            (1, "the same instance"),
            (2, "a new instance (as after a crash)"),
        ] {
            if let Some(difference) = first_difference(&attempts[0], &attempts[n]) {
                problems.push(format!(
                    "delivering the batch of {} events again to {what} sent different requests: {difference}. Build requests only from the batch (no clock, counter or random value in the URL or body), or declare Retries::Unchecked and say so in the README",
                    batch.len()
                ));
            }
        }
        if problems.is_empty() {
            self.note(
                RETRIES,
                format!(
                    "{} events delivered 3 times (twice to one instance, once to a new one): the same {} request(s) each time",
                    batch.len(),
                    attempts[0].len()
                ),
            );
        }
        problems_to_result(problems)
    }

    fn carrying(&self, sent: &[Sent]) -> Vec<(String, String, Vec<u8>)> {
        sent.iter()
            .filter(|s| !self.events_in(s).is_empty())
            .map(|s| {
                (
                    s.request.method.as_str().to_owned(),
                    s.request.url.clone(),
                    s.body.clone(),
                )
            })
            .collect()
    }

    // ----- golden requests -----

    fn golden(&mut self) -> StepResult {
        let golden = self.suite.golden.as_ref().expect("only run with a golden");
        let mut config = self.suite.config.clone();
        if let Some(patch) = &golden.patch {
            merge_patch(&mut config, patch);
        }
        let mut instance = self.started(Setup {
            config: Some(&config),
            ..Setup::accepting()
        })?;
        let batch = fixed_events();
        let outcome = instance.harness.deliver(&batch);
        self.observe(GOLDEN, &outcome, batch.len());
        self.scan_instance(GOLDEN, &instance);
        if outcome != Ok(Delivery::Accepted) {
            return Err(format!(
                "the fixed events were not accepted by the accepting destination: {outcome:?}"
            ));
        }
        let sent = self.sent(&instance.harness)?;
        let text = render(&sent, &golden.placeholders);
        compare_golden(&golden.path, &text)?;
        self.note(
            GOLDEN,
            format!("{} request(s) match {}", sent.len(), golden.path.display()),
        );
        Ok(())
    }

    // ----- what every step looks at -----

    fn events_in(&self, sent: &Sent) -> Vec<String> {
        (self
            .suite
            .events_in
            .as_ref()
            .expect("HTTP exporters have events_in"))(sent)
    }

    /// Every request of `harness`, decoded.
    fn sent(&self, harness: &Harness<P>) -> Result<Vec<Sent>, String> {
        harness
            .requests()
            .iter()
            .enumerate()
            .map(|(n, request)| {
                Sent::decode(request).map_err(|e| {
                    format!(
                        "request #{n} ({} {}): {e}",
                        request.method.as_str(),
                        request.url
                    )
                })
            })
            .collect()
    }

    /// What a local destination holds: (copies, ids if it keeps them).
    fn read_destination(&self, instance: &Instance<P>) -> (usize, Option<Vec<String>>) {
        let destination = Destination {
            harness: &instance.harness,
            dir: instance.dir.as_ref().map(|d| d.0.as_path()),
        };
        match self
            .suite
            .reader
            .as_ref()
            .expect("local exporters have a reader")
        {
            Reader::Ids(read) => {
                let ids = read(&destination);
                (ids.len(), Some(ids))
            }
            Reader::Count(count) => (count(&destination) as usize, None),
        }
    }

    /// Checks what a delivery returned wherever it happens: partial
    /// rejections well formed, no secret in the words.
    fn observe(
        &mut self,
        step: &'static str,
        outcome: &Result<Delivery, DeliverError>,
        len: usize,
    ) {
        match outcome {
            Ok(Delivery::Accepted) => {}
            Ok(Delivery::PartiallyRejected(rejected)) => {
                self.rejections_checked += 1;
                if let Some(problem) = rejection_problem(rejected, len) {
                    self.failures.push(format!(
                        "{}: step `{REJECTIONS}` (seen in step `{step}`, batch of {len}): {problem}",
                        self.suite.exporter
                    ));
                }
                for rejection in rejected {
                    self.scan(step, "a rejection reason", &rejection.reason, &[]);
                }
            }
            Err(DeliverError::Retryable { message, .. } | DeliverError::Permanent(message)) => {
                self.scan(step, "a DeliverError message", message, &[]);
            }
        }
    }

    /// Searches `text` for granted secrets other than `allowed`. A leak is
    /// reported once per step, secret and kind of place, with a count.
    fn scan(&mut self, step: &'static str, place: &str, text: &str, allowed: &[&str]) {
        self.texts_scanned += 1;
        for (name, value) in &self.suite.secrets {
            if allowed.contains(&name.as_str()) {
                continue;
            }
            let Some(at) = text.find(value.as_str()) else {
                continue;
            };
            let key = (step, name.clone(), without_numbers(place));
            if let Some(leak) = self.leaks.iter_mut().find(|leak| leak.key == key) {
                leak.count += 1;
                continue;
            }
            let start = text.floor_char_boundary(at.saturating_sub(40));
            let end = text.ceil_char_boundary((at + value.len() + 40).min(text.len()));
            self.leaks.push(Leak {
                key,
                first: format!("{place}: …{}…", &text[start..end]),
                count: 1,
            });
        }
    }

    /// Searches everything an instance emitted: logs, metric names,
    /// stdout, files, requests.
    fn scan_instance(&mut self, step: &'static str, instance: &Instance<P>) {
        if self.suite.secrets.is_empty() {
            return;
        }
        let harness = &instance.harness;
        for (level, line) in harness.logs() {
            self.scan(
                step,
                &format!("a log line ({})", level.as_str()),
                &line,
                &[],
            );
        }
        let names: Vec<String> = {
            let host = &harness.host;
            let mut names: Vec<String> = host.counters.lock().unwrap().keys().cloned().collect();
            names.extend(host.gauges.lock().unwrap().keys().cloned());
            names
        };
        for name in names {
            self.scan(step, "a metric name", &name, &[]);
        }
        let stdout = harness.stdout();
        if !stdout.is_empty() {
            self.scan(step, "stdout", &String::from_utf8_lossy(&stdout), &[]);
        }
        if let Some(dir) = &instance.dir {
            let mut files = Vec::new();
            collect_files(&dir.0, &dir.0, &mut files);
            for (path, bytes) in files {
                let place = format!("the written file {}", path.display());
                self.scan(step, &place, &String::from_utf8_lossy(&bytes), &[]);
            }
        }
        for (n, request) in harness.requests().iter().enumerate() {
            self.scan(step, &format!("the URL of request #{n}"), &request.url, &[]);
            let decoded_url = percent_decode(&request.url);
            if decoded_url != request.url {
                self.scan(step, &format!("the URL of request #{n}"), &decoded_url, &[]);
            }
            for (header, value) in &request.headers {
                let allowed: Vec<&str> = self
                    .suite
                    .secret_headers
                    .iter()
                    .filter(|(_, h)| h.eq_ignore_ascii_case(header))
                    .map(|(name, _)| name.as_str())
                    .collect();
                let place = format!(
                    "header `{header}` of request #{n} (declare it with .secret_in_header if it belongs there)"
                );
                self.scan(step, &place, value, &allowed);
            }
            let place = format!("the body of request #{n}");
            self.scan(step, &place, &String::from_utf8_lossy(&request.body), &[]);
            if let Ok(sent) = Sent::decode(request)
                && sent.body != request.body
            {
                self.scan(step, &place, &String::from_utf8_lossy(&sent.body), &[]);
            }
        }
    }
}

/// What a delivery returned, in a few words.
fn describe(outcome: &Result<Delivery, DeliverError>) -> String {
    match outcome {
        Ok(Delivery::Accepted) => "Accepted".to_owned(),
        Ok(Delivery::PartiallyRejected(r)) => format!("PartiallyRejected ({} events)", r.len()),
        Err(DeliverError::Retryable { message, .. }) => format!("Retryable ({message})"),
        Err(DeliverError::Permanent(message)) => format!("Permanent ({message})"),
    }
}

/// The `retry_after` a case expects.
#[derive(Debug, Clone, Copy)]
enum RetryAfter {
    /// Anything (the answer says nothing about when).
    Any,
    /// Exactly this.
    Exactly(Duration),
    /// This, within a few seconds (an HTTP-date, read a moment later).
    About(Duration),
}

/// The cases one declared answer becomes: itself, and for a retryable
/// answer without `Retry-After`, the same with a delay in each form.
fn answer_variants(answer: &Answer) -> Vec<(String, Response, RetryAfter)> {
    let response = &answer.response;
    let label = |response: &Response| {
        let mut label = format!("HTTP {}", response.status);
        // The body's start on one line, past an XML declaration.
        let text = response.text();
        let mut text = text.trim();
        if text.starts_with("<?xml")
            && let Some(end) = text.find("?>")
        {
            text = text[end + 2..].trim_start();
        }
        let words: Vec<&str> = text.split_whitespace().collect();
        let text = words.join(" ");
        if !text.is_empty() {
            let mut body: String = text.chars().take(40).collect();
            if body.len() < text.len() {
                body.push('…');
            }
            label.push_str(&format!(" {body}"));
        }
        if let Some(value) = response.header("retry-after") {
            label.push_str(&format!(" with Retry-After: {value}"));
        }
        label
    };
    // Retry-After means something on an error (RFC 9110 names 503, RFC
    // 6585 429; services send it with other 4xx and 5xx), not on a 2xx.
    if answer.expected != Expected::Retryable || response.status < 400 {
        return vec![(label(response), response.clone(), RetryAfter::Any)];
    }
    if let Some(value) = response.header("retry-after") {
        let expected = match value.trim().parse::<u64>() {
            Ok(seconds) => RetryAfter::Exactly(Duration::from_secs(seconds)),
            Err(_) => match parse_retry_after(value, jiff::Timestamp::now()) {
                Some(delay) => RetryAfter::About(delay),
                None => RetryAfter::Any,
            },
        };
        return vec![(label(response), response.clone(), expected)];
    }
    let seconds = response.clone().with_header("Retry-After", "7");
    let at = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(120);
    let date = response.clone().with_header(
        "Retry-After",
        at.strftime("%a, %d %b %Y %H:%M:%S GMT").to_string(),
    );
    vec![
        (label(response), response.clone(), RetryAfter::Any),
        (
            label(&seconds),
            seconds,
            RetryAfter::Exactly(Duration::from_secs(7)),
        ),
        (
            format!("{} (an HTTP-date)", label(&date)),
            date,
            RetryAfter::About(Duration::from_secs(120)),
        ),
    ]
}

/// Why `outcome` is not what was expected, if it is not.
fn outcome_problem(
    outcome: &Result<Delivery, DeliverError>,
    expected: Expected,
    retry_after: RetryAfter,
    naming: Option<&str>,
) -> Option<String> {
    let class_matches = matches!(
        (outcome, expected),
        (Ok(Delivery::Accepted), Expected::Delivered)
            | (
                Ok(Delivery::PartiallyRejected(_)),
                Expected::PartiallyRejected
            )
            | (Err(DeliverError::Retryable { .. }), Expected::Retryable)
            | (Err(DeliverError::Permanent(_)), Expected::Permanent)
    );
    if !class_matches {
        return Some(format!(
            "expected {expected:?}, got {}; map this answer as the README's table says (or fix the table)",
            describe(outcome)
        ));
    }
    let words: Vec<&str> = match outcome {
        Ok(Delivery::Accepted) => Vec::new(),
        Ok(Delivery::PartiallyRejected(rejected)) => {
            if rejected.is_empty() {
                return Some(
                    "PartiallyRejected with no rejected event: return Accepted instead".to_owned(),
                );
            }
            rejected.iter().map(|r| r.reason.as_str()).collect()
        }
        Err(DeliverError::Retryable { message, .. } | DeliverError::Permanent(message)) => {
            if message.trim().is_empty() {
                return Some(format!(
                    "{expected:?} with an empty message: say what the destination answered and what to do"
                ));
            }
            vec![message.as_str()]
        }
    };
    if let Some(text) = naming
        && words.iter().any(|w| !w.contains(text))
    {
        return Some(format!(
            "{} does not mention {text:?}; name it so the operator knows what to fix",
            describe(outcome)
        ));
    }
    if let Err(DeliverError::Retryable {
        retry_after: got, ..
    }) = outcome
    {
        let honoured = match retry_after {
            RetryAfter::Any => true,
            RetryAfter::Exactly(want) => *got == Some(want),
            RetryAfter::About(want) => got.is_some_and(|got| {
                let (a, b) = (got.as_secs_f64(), want.as_secs_f64());
                (a - b).abs() <= 5.0
            }),
        };
        if !honoured {
            return Some(format!(
                "retry_after is {got:?}, not {} as the Retry-After header asks; take it from Response::retry_after (Response::deliver_error does)",
                match retry_after {
                    RetryAfter::Any => "any".to_owned(),
                    RetryAfter::Exactly(want) => format!("Some({want:?})"),
                    RetryAfter::About(want) => format!("about Some({want:?})"),
                }
            ));
        }
    }
    None
}

/// Why a rejection list cannot be right for a batch of `len`, if so.
fn rejection_problem(rejected: &[RejectedEvent], len: usize) -> Option<String> {
    let mut previous: Option<u32> = None;
    for rejection in rejected {
        if rejection.index as usize >= len {
            return Some(format!(
                "rejected index {} is outside the batch of {len}",
                rejection.index
            ));
        }
        if let Some(previous) = previous
            && rejection.index <= previous
        {
            return Some(format!(
                "rejected indices are not ascending and unique: {} after {previous} (list: {:?})",
                rejection.index,
                rejected.iter().map(|r| r.index).collect::<Vec<_>>()
            ));
        }
        if rejection.reason.trim().is_empty() {
            return Some(format!(
                "event {} is rejected without a reason; say why, in words an operator can act on",
                rejection.index
            ));
        }
        previous = Some(rejection.index);
    }
    None
}

/// Lost, doubled and unknown events, given where each arrived.
fn once_problems(batch: &[EventBuf], arrived: &[(String, Option<usize>)]) -> Vec<String> {
    let mut copies: HashMap<&str, Vec<Option<usize>>> = HashMap::new();
    for (id, request) in arrived {
        copies.entry(id.as_str()).or_default().push(*request);
    }
    let known: HashSet<&str> = batch.iter().map(|e| e.id.as_str()).collect();
    let lost: Vec<&str> = batch
        .iter()
        .map(|e| e.id.as_str())
        .filter(|id| !copies.contains_key(id))
        .collect();
    let doubled: BTreeMap<&str, &Vec<Option<usize>>> = copies
        .iter()
        .filter(|(_, at)| at.len() > 1)
        .map(|(id, at)| (*id, at))
        .collect();
    let unknown: Vec<&str> = copies
        .keys()
        .copied()
        .filter(|id| !known.contains(id))
        .collect();
    let mut problems = Vec::new();
    if !lost.is_empty() {
        problems.push(format!(
            "{} of {} events never arrived (first: {}); every event of an accepted batch must be sent",
            lost.len(),
            batch.len(),
            lost[0]
        ));
    }
    if let Some((id, at)) = doubled.iter().next() {
        let places: Vec<String> = at
            .iter()
            .map(|n| n.map_or("the destination".to_owned(), |n| format!("request #{n}")))
            .collect();
        problems.push(format!(
            "{} events arrived more than once (first: {id}, in {}); send each event of a batch once",
            doubled.len(),
            places.join(" and ")
        ));
    }
    if !unknown.is_empty() {
        problems.push(format!(
            "{} ids arrived that are not in the batch (first: {:?}); check the events_in/delivered reader",
            unknown.len(),
            unknown[0]
        ));
    }
    problems
}

/// The first difference between two deliveries' requests, in words.
fn first_difference(
    a: &[(String, String, Vec<u8>)],
    b: &[(String, String, Vec<u8>)],
) -> Option<String> {
    if a.len() != b.len() {
        return Some(format!("{} requests, then {}", a.len(), b.len()));
    }
    for (n, (x, y)) in a.iter().zip(b).enumerate() {
        if x.0 != y.0 || x.1 != y.1 {
            return Some(format!(
                "request {n} was {} {}, then {} {}",
                x.0, x.1, y.0, y.1
            ));
        }
        if x.2 != y.2 {
            let at =
                x.2.iter()
                    .zip(&y.2)
                    .position(|(p, q)| p != q)
                    .unwrap_or(x.2.len().min(y.2.len()));
            let show = |body: &[u8]| {
                let start = at.saturating_sub(30);
                String::from_utf8_lossy(&body[start..(at + 30).min(body.len())]).into_owned()
            };
            return Some(format!(
                "the body of request {n} ({} {}) differs at byte {at}: {:?}, then {:?}",
                x.0,
                x.1,
                show(&x.2),
                show(&y.2)
            ));
        }
    }
    None
}

/// The golden rendering of requests.
fn render(sent: &[Sent], placeholders: &[(String, String)]) -> String {
    let mut text = String::new();
    for (n, sent) in sent.iter().enumerate() {
        let request = &sent.request;
        let replacements: Vec<(&str, &str)> = placeholders
            .iter()
            .filter_map(|(header, placeholder)| {
                request
                    .header_value(header)
                    .filter(|v| !v.is_empty())
                    .map(|v| (v, placeholder.as_str()))
            })
            .collect();
        let redact = |text: &str| {
            replacements
                .iter()
                .fold(text.to_owned(), |t, (value, with)| t.replace(value, with))
        };
        if n > 0 {
            text.push('\n');
        }
        text.push_str(&format!(
            "{} {}\n",
            request.method.as_str(),
            redact(&request.url)
        ));
        for (name, value) in &request.headers {
            text.push_str(&format!("{name}: {}\n", redact(value)));
        }
        text.push('\n');
        text.push_str(&String::from_utf8_lossy(&sent.body));
        text.push('\n');
    }
    text
}

/// `n` fresh sample events numbered from `range.start`.
fn events(range: std::ops::Range<usize>) -> Vec<EventBuf> {
    range
        .map(|i| EventBuf::from_envelope(&sample_envelope(i)))
        .collect()
}

/// Sample events whose envelopes add up to more than `bytes`.
fn events_of_bytes(bytes: usize) -> Vec<EventBuf> {
    let probe = events(0..100);
    let average = probe.iter().map(|e| e.envelope.len()).sum::<usize>() / probe.len();
    let mut batch = probe;
    let mut total: usize = batch.iter().map(|e| e.envelope.len()).sum();
    let want = bytes / average.max(1) + 50;
    if want > batch.len() {
        batch.extend(events(batch.len()..want));
        total = batch.iter().map(|e| e.envelope.len()).sum();
    }
    while total <= bytes {
        let more = events(batch.len()..batch.len() + 100);
        total += more.iter().map(|e| e.envelope.len()).sum::<usize>();
        batch.extend(more);
    }
    batch
}

/// Applies a JSON merge patch (RFC 7396) to `target`.
fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(serde_json::Map::new());
    }
    let map = target.as_object_mut().expect("made an object above");
    for (key, value) in patch {
        if value.is_null() {
            map.remove(key);
        } else {
            merge_patch(map.entry(key.clone()).or_insert(Value::Null), value);
        }
    }
}

/// Decodes `body` by its `Content-Encoding`.
fn decode_body(encoding: Option<&str>, body: &[u8]) -> Result<Vec<u8>, String> {
    match encoding.map(|e| e.trim().to_ascii_lowercase()).as_deref() {
        None | Some("") | Some("identity") => Ok(body.to_vec()),
        #[cfg(feature = "compression")]
        Some("gzip") => {
            use std::io::Read as _;
            let mut plain = Vec::new();
            flate2::read::GzDecoder::new(body)
                .read_to_end(&mut plain)
                .map_err(|e| format!("Content-Encoding is gzip but the body is not gzip: {e}"))?;
            Ok(plain)
        }
        #[cfg(feature = "compression")]
        Some("zstd") => {
            use std::io::Read as _;
            let mut plain = Vec::new();
            ruzstd::decoding::StreamingDecoder::new(body)
                .map_err(|e| format!("Content-Encoding is zstd but the body is not zstd: {e}"))?
                .read_to_end(&mut plain)
                .map_err(|e| format!("Content-Encoding is zstd but the body is not zstd: {e}"))?;
            Ok(plain)
        }
        #[cfg(not(feature = "compression"))]
        Some(encoding @ ("gzip" | "zstd")) => Err(format!(
            "the body is {encoding}: enable auditrelay-plugin-api's `compression` feature to let the suite read it"
        )),
        Some(other) => Err(format!("unknown Content-Encoding {other:?}")),
    }
}

/// `%XX` escapes decoded (lossy), for searching URLs.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = text.get(i + 1..i + 3)
            && let Ok(byte) = u8::from_str_radix(hex, 16)
        {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `place` with request numbers taken out, to group sightings.
fn without_numbers(place: &str) -> String {
    place
        .split('#')
        .enumerate()
        .map(|(i, part)| {
            if i == 0 {
                part.to_owned()
            } else {
                part.trim_start_matches(|c: char| c.is_ascii_digit())
                    .to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("#n")
}

fn problems_to_result(problems: Vec<String>) -> StepResult {
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n   "))
    }
}

fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = panic.downcast_ref::<String>() {
        text.clone()
    } else if let Some(text) = panic.downcast_ref::<&str>() {
        (*text).to_owned()
    } else {
        "(a panic without a message)".to_owned()
    }
}

/// A directory removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(label: &str) -> std::io::Result<TempDir> {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let label: String = label
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        loop {
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let path = std::env::temp_dir().join(format!(
                "auditrelay-compliance-{label}-{}-{n}",
                std::process::id()
            ));
            match std::fs::create_dir(&path) {
                Ok(()) => return Ok(TempDir(path)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_patch_sets_replaces_and_removes() {
        let mut config = serde_json::json!({"a": 1, "b": {"c": 2, "d": 3}});
        merge_patch(
            &mut config,
            &serde_json::json!({"a": null, "b": {"c": 5}, "e": true}),
        );
        assert_eq!(
            config,
            serde_json::json!({"b": {"c": 5, "d": 3}, "e": true})
        );
    }

    #[test]
    fn rejection_lists_are_checked() {
        let r = |index, reason: &str| RejectedEvent {
            index,
            reason: reason.into(),
        };
        assert_eq!(rejection_problem(&[r(0, "x"), r(2, "y")], 3), None);
        assert!(
            rejection_problem(&[r(3, "x")], 3)
                .unwrap()
                .contains("outside")
        );
        assert!(
            rejection_problem(&[r(2, "x"), r(1, "y")], 3)
                .unwrap()
                .contains("ascending")
        );
        assert!(
            rejection_problem(&[r(1, "x"), r(1, "y")], 3)
                .unwrap()
                .contains("unique")
        );
        assert!(
            rejection_problem(&[r(1, " ")], 3)
                .unwrap()
                .contains("reason")
        );
    }

    #[test]
    fn lost_doubled_and_unknown_events_are_named() {
        let batch = events(0..3);
        let at = |i: usize, n| (batch[i].id.clone(), Some(n));
        assert!(once_problems(&batch, &[at(0, 0), at(1, 0), at(2, 1)]).is_empty());
        let problems = once_problems(
            &batch,
            &[at(0, 0), at(0, 1), at(1, 1), ("stray".into(), Some(1))],
        );
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].contains(&batch[2].id), "{problems:?}");
        assert!(
            problems[1].contains("request #0 and request #1"),
            "{problems:?}"
        );
        assert!(problems[2].contains("stray"), "{problems:?}");
    }

    #[test]
    fn retry_after_is_compared_in_both_forms() {
        let retry = |after| {
            Err(DeliverError::Retryable {
                message: "busy".into(),
                retry_after: after,
            })
        };
        let seven = RetryAfter::Exactly(Duration::from_secs(7));
        assert_eq!(
            outcome_problem(
                &retry(Some(Duration::from_secs(7))),
                Expected::Retryable,
                seven,
                None
            ),
            None
        );
        assert!(outcome_problem(&retry(None), Expected::Retryable, seven, None).is_some());
        let about = RetryAfter::About(Duration::from_secs(120));
        assert_eq!(
            outcome_problem(
                &retry(Some(Duration::from_secs(118))),
                Expected::Retryable,
                about,
                None
            ),
            None
        );
        assert!(
            outcome_problem(
                &retry(Some(Duration::from_secs(7))),
                Expected::Retryable,
                about,
                None
            )
            .is_some()
        );
        assert!(
            outcome_problem(
                &Ok(Delivery::Accepted),
                Expected::Retryable,
                RetryAfter::Any,
                None
            )
            .is_some()
        );
        let naming = outcome_problem(
            &Err(DeliverError::permanent("HTTP 403")),
            Expected::Permanent,
            RetryAfter::Any,
            Some("api_key"),
        );
        assert!(naming.unwrap().contains("api_key"));
    }

    #[test]
    fn an_http_date_retry_after_variant_is_two_minutes_ahead() {
        let answer = Answer {
            response: Response::new(503, "busy"),
            expected: Expected::Retryable,
            naming: None,
        };
        let variants = answer_variants(&answer);
        assert_eq!(variants.len(), 3);
        let date = variants[2].1.header("retry-after").unwrap();
        assert!(date.ends_with(" GMT"), "{date}");
        let delay = parse_retry_after(date, jiff::Timestamp::now()).unwrap();
        assert!((115..=120).contains(&delay.as_secs()), "{delay:?}");
    }

    #[test]
    fn urls_are_searched_decoded_too() {
        assert_eq!(percent_decode("/a%20b%2Fc%zz"), "/a b/c%zz");
    }
}
