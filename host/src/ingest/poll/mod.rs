//! Pollers (`[ingest.poll.<name>]`): HTTP APIs of other systems, asked on
//! an interval for the audit records they have gained.
//!
//! One poll reads pages until it has caught up or read `max_pages`. Each
//! page: ask for it (where the cursor says), read its records
//! ([`page`]), make them events the way every source does
//! ([`Door`](crate::ingest::foreign::Door): mapped, sorted out, refused
//! records kept with why), **wait until the events are durable**, and only
//! then move the cursor and save it
//! ([`CursorFile`](crate::ingest::cursor::CursorFile)). A crash or a
//! failed request anywhere before the save asks for the same page again;
//! the records read twice are stored once, by their `(source, id)`.
//!
//! Two ways to page, as APIs do:
//!
//! - **by a field** of the records (`created`, `pk`): the greatest value
//!   seen is sent back in a query parameter (`created__gte=…`), which is
//!   also how a poll continues past a page;
//! - **by the next-page link** each page gives, in its body (`/next`) or
//!   in a `Link` header: the link is followed only to the configured
//!   server, and the last page is asked for again on the next poll, to see
//!   what it has gained.
//!
//! The credentials (a bearer token, a basic password, header values) are
//! sent only to the configured server, never with a redirect (none is
//! followed), and masked out of everything the API answers before it is
//! stored, logged or reported.

pub mod page;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use reqwest::Url;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::config::{LINK_HEADER, PollAuth, PollSettings};
use crate::dispatch::backoff::Backoff;
use crate::ingest::cursor::{CursorFile, CursorState, Loaded};
use crate::ingest::foreign::{Door, start_mapper};
use crate::ingest::refused::RefusedRecords;
use crate::metrics::Via;
use crate::relay::{Relay, SourceMapper, SourceReport};
use crate::runtime::mask::SecretMask;
use crate::runtime::wasm::{ForeignRecord, RecordBatch};

/// The longest a page waits for its events to be durable (the cursor
/// stays; the page is asked for again).
const DURABLE_WITHIN: Duration = Duration::from_secs(30);
/// The longest a page waits on the mapper.
const MAP_WITHIN: Duration = Duration::from_secs(300);
/// Most records mapped and spooled at once (a page may hold more).
const BATCH: usize = 1000;
/// Bytes of an error answer quoted in the status.
const QUOTED: usize = 300;
/// Most record digests a cursor keeps (a page with more relies on the
/// spool's dedup window for the rest).
const SEEN: usize = 10_000;

/// Where a poller is: kept in `<data_dir>/sources/<name>/cursor.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PollCursor {
    /// The configured `url` it belongs to: another URL starts over.
    pub url: String,
    /// How it pages (`records`, `cursor`, `next`): another way starts over
    /// (a saved time sent as an id would wedge the poller).
    #[serde(default)]
    pub paging: String,
    /// Paging by a field: the greatest value stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<Value>,
    /// Paging by links: the page to ask for next (the last page read, when
    /// it linked to none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
    /// Digests of the records stored at the position — those sharing
    /// `after`, or the last page's — which the next poll is answered
    /// again: they are skipped, however long the API stays quiet (the
    /// spool's dedup window forgets; this does not).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub seen: Vec<String>,
}

impl CursorState for PollCursor {
    const VERSION: u32 = 1;
}

/// One configured poller, polling until stopped.
pub struct PollIngest {
    relay: Relay,
    name: String,
    label: String,
    settings: PollSettings,
    /// The configured first page (checked when the config was loaded).
    origin: Url,
    /// The credentials' masks, for everything the API answers.
    mask: SecretMask,
    /// The credentials by the key that holds them (`secret`,
    /// `secret_headers.<name>`): a next-page link that carries one (as
    /// some APIs' do) is saved with a placeholder in its place.
    secrets: Vec<(String, String)>,
    cursor: CursorFile<PollCursor>,
    refused: RefusedRecords,
    report: SourceReport,
    /// The most records a page has held: a page that long whose records
    /// all share the value it was asked from is where a field cursor
    /// cannot move on.
    longest_page: std::sync::atomic::AtomicUsize,
}

/// Why a page was not stored, or its cursor not saved: the poll stops and
/// is tried again (from the saved cursor). Its text is masked.
#[derive(Debug)]
struct Failure {
    text: String,
    /// What the API asked for (`Retry-After`).
    retry_after: Option<Duration>,
}

impl Failure {
    fn new(text: impl Into<String>) -> Self {
        Failure {
            text: text.into(),
            retry_after: None,
        }
    }
}

/// A page as the API answered it.
struct Answer {
    page: Value,
    /// The `Link` header's `rel="next"` target.
    link: Option<String>,
}

/// What one page did to the poll.
enum Step {
    /// There may be more: ask for the next page now.
    More,
    /// Caught up: wait for the next poll.
    CaughtUp,
}

impl PollIngest {
    /// The poller `name`, its state in `<data_dir>/sources/<name>`;
    /// registers it in the relay's status. `settings` must have passed the
    /// config's checks (its URL parses).
    pub fn new(relay: Relay, name: &str, settings: &PollSettings, state_dir: &Path) -> PollIngest {
        let dir = state_dir.join(name);
        let label = format!("poll.{name}");
        let report = relay.register_source(label.clone());
        let mut secrets: Vec<&str> = settings
            .secret_headers
            .values()
            .map(|s| s.expose())
            .collect();
        secrets.extend(settings.secret.as_ref().map(|s| s.expose()));
        let mut named: Vec<(String, String)> = settings
            .secret_headers
            .iter()
            .map(|(name, value)| (format!("secret_headers.{name}"), value.expose().to_owned()))
            .collect();
        named.extend(
            settings
                .secret
                .as_ref()
                .map(|s| ("secret".to_owned(), s.expose().to_owned())),
        );
        PollIngest {
            origin: Url::parse(&settings.url).expect("the config's checks parse the url"),
            mask: SecretMask::new(secrets),
            secrets: named,
            relay,
            name: name.to_owned(),
            label,
            settings: settings.clone(),
            cursor: CursorFile::new(&dir),
            refused: RefusedRecords::new(&dir, name, settings.max_refused_bytes.as_u64()),
            report,
            longest_page: Default::default(),
        }
    }

    /// Polls until `stop`; the page under way when it comes is finished
    /// first (its cursor saved).
    pub async fn run(self, stop: CancellationToken) {
        let key = format!("ingest.poll.{}", self.name);
        let Ok(mapper) = start_mapper(
            &self.relay,
            &key,
            &self.label,
            self.settings.mapper.as_ref(),
            &self.report,
            "the API is not polled",
        )
        .await
        else {
            return;
        };
        let client = match self.client() {
            Ok(client) => client,
            Err(error) => {
                let error = format!("cannot make an HTTP client: {error}");
                tracing::error!(source = self.label, "{error}");
                self.report.update(|s| {
                    s.state = "failing";
                    s.error = Some(error);
                });
                return;
            }
        };
        let Some(mut at) = self.open() else {
            return;
        };
        self.report.update(|s| {
            s.state = "reading";
            s.error = None;
        });
        // After a failure: soon (at most a second), then less often, up to
        // the interval (or a second, for a short one).
        let second = Duration::from_secs(1);
        let interval = self.settings.interval;
        let backoff = Backoff::new(interval.min(second), interval.max(second));
        let mut failures = 0u32;
        while !stop.is_cancelled() {
            let pause = match self.poll(&client, &mut at, mapper.as_ref(), &stop).await {
                Ok(()) => {
                    if failures > 0 {
                        failures = 0;
                        tracing::info!(source = self.label, "polling again");
                        self.report.update(|s| {
                            s.state = "reading";
                            s.error = None;
                        });
                    }
                    self.settings.interval
                }
                Err(failure) => {
                    failures += 1;
                    tracing::warn!(source = self.label, "{}; trying again", failure.text);
                    self.report.update(|s| {
                        s.state = "failing";
                        s.error = Some(failure.text);
                    });
                    // The API's Retry-After wins over the backoff's cap: asking
                    // a rate-limited API sooner risks the token.
                    let delay = backoff.delay(failures, None);
                    delay.max(failure.retry_after.unwrap_or_default())
                }
            };
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                () = stop.cancelled() => {}
            }
        }
    }

    /// The client: no redirects (a redirect would carry the credentials
    /// wherever the server says), the configured timeout.
    fn client(&self) -> reqwest::Result<reqwest::Client> {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(self.settings.timeout)
            .connect_timeout(self.settings.timeout)
            .user_agent(concat!("auditrelay/", env!("CARGO_PKG_VERSION")))
            .build()
    }

    /// The saved cursor, or a fresh one; `None` when it cannot be read.
    fn open(&self) -> Option<PollCursor> {
        let fresh = PollCursor {
            url: self.settings.url.clone(),
            paging: self.paging(),
            ..PollCursor::default()
        };
        match self.cursor.load() {
            Ok(Loaded::Fresh) => Some(fresh),
            Ok(Loaded::Cursor(cursor))
                if cursor.url == fresh.url && cursor.paging == fresh.paging =>
            {
                Some(cursor)
            }
            Ok(Loaded::Cursor(cursor)) => {
                let changed = if cursor.url == fresh.url {
                    "how it pages"
                } else {
                    "the url"
                };
                tracing::warn!(
                    source = self.label,
                    "{changed} changed since the cursor was saved; polling from the first page (records read again are stored once)"
                );
                Some(fresh)
            }
            Ok(Loaded::Unreadable { error, aside }) => {
                tracing::error!(
                    source = self.label,
                    "the cursor cannot be read ({error}); it was moved to {} and the API is polled from its first page (copies, not a loss)",
                    aside.display()
                );
                Some(fresh)
            }
            Err(error) => {
                let error = format!(
                    "cannot read the cursor {}: {error}; the API is not polled until it can be",
                    self.cursor.path().display()
                );
                tracing::error!(source = self.label, "{error}");
                self.report.update(|s| {
                    s.state = "failing";
                    s.error = Some(error);
                });
                None
            }
        }
    }

    /// How the source pages, as the cursor records it.
    fn paging(&self) -> String {
        let cursor = self
            .settings
            .cursor
            .as_ref()
            .map(|c| format!(" cursor={} param={}", c.field, c.param))
            .unwrap_or_default();
        let next = self
            .settings
            .next
            .as_ref()
            .map(|n| format!(" next={n}"))
            .unwrap_or_default();
        format!("records={:?}{cursor}{next}", self.settings.records)
    }

    /// One poll: pages until caught up, `max_pages`, or `stop`.
    async fn poll(
        &self,
        client: &reqwest::Client,
        at: &mut PollCursor,
        mapper: Option<&SourceMapper>,
        stop: &CancellationToken,
    ) -> Result<(), Failure> {
        let mut visited = std::collections::HashSet::new();
        for _ in 0..self.settings.max_pages {
            if stop.is_cancelled() {
                break;
            }
            if let Step::CaughtUp = self.page(client, at, mapper, &mut visited, stop).await? {
                break;
            }
        }
        Ok(())
    }

    /// Asks for one page, stores its records (those not stored already),
    /// moves and saves the cursor. `visited`: the pages this poll read.
    async fn page(
        &self,
        client: &reqwest::Client,
        at: &mut PollCursor,
        mapper: Option<&SourceMapper>,
        visited: &mut std::collections::HashSet<Url>,
        stop: &CancellationToken,
    ) -> Result<Step, Failure> {
        let url = self.request_url(at)?;
        // Nothing is stored before the answer is whole: a stop abandons
        // the request safely (the page is asked for again).
        let answer = tokio::select! {
            answer = self.fetch(client, &url) => answer?,
            () = stop.cancelled() => return Ok(Step::CaughtUp),
        };
        let Answer { mut page, link } = answer;
        visited.insert(url.clone());
        // Where the poll goes next is read before the records are taken
        // out of the page, and acted on only once they are stored.
        let next = match &self.settings.next {
            None => None,
            Some(how) if how == LINK_HEADER => link,
            Some(pointer) => page::next_in_body(&page, pointer).map_err(Failure::new)?,
        };
        let mut records = page::records(&mut page, &self.settings.records).map_err(Failure::new)?;
        let mut masked = false;
        for record in &mut records {
            masked |= mask_value(&self.mask, record);
        }
        if masked {
            tracing::warn!(
                source = self.label,
                "a page from {} holds a credential of this source; it was masked before anything was stored",
                self.mask.mask(url.as_str())
            );
        }
        let datas: Vec<Vec<u8>> = records
            .iter()
            .map(|r| serde_json::to_vec(r).expect("a JSON value serializes"))
            .collect();
        let digests: Vec<String> = datas.iter().map(|d| digest(d)).collect();
        let seen: std::collections::HashSet<&String> = at.seen.iter().collect();
        let fresh: Vec<Vec<u8>> = datas
            .into_iter()
            .zip(&digests)
            .filter(|(_, d)| !seen.contains(d))
            .map(|(data, _)| data)
            .collect();
        drop(seen);
        let read = records.len();
        let longest = self
            .longest_page
            .fetch_max(read, std::sync::atomic::Ordering::Relaxed)
            .max(read);
        let stored_new = fresh.len();
        self.store(fresh, &url, mapper).await?;

        let before = at.clone();
        let step = match &self.settings.cursor {
            Some(cursor) => {
                let since = at
                    .after
                    .clone()
                    .or_else(|| cursor.start.as_deref().map(start_value));
                // Stored, and then refused to move: records newest first
                // must not move the cursor past the ones not seen.
                let greatest = page::greatest(&records, &cursor.field, since.as_ref())
                    .map_err(Failure::new)?;
                if let Some(since) = &since
                    && let Some(older) = page::first_before(&records, &cursor.field, since)
                {
                    return Err(Failure::new(format!(
                        "the API answered a record with {} {older}, before the {since} it was asked from: does it read {}? The cursor stays",
                        cursor.field, cursor.param
                    )));
                }
                let progress = greatest.is_some() && greatest != since;
                let at_value = |record: &Value| {
                    record.pointer(&cursor.field).filter(|v| !v.is_null()) == greatest.as_ref()
                };
                let here = records.iter().zip(&digests).filter(|(r, _)| at_value(r));
                if progress {
                    at.seen = here.map(|(_, d)| d.clone()).collect();
                } else {
                    at.seen.extend(here.map(|(_, d)| d.clone()));
                    at.seen.sort();
                    at.seen.dedup();
                    if read > 1
                        && stored_new == 0
                        && read >= longest
                        && records.iter().all(at_value)
                    {
                        return Err(Failure::new(format!(
                            "every record of a full page ({read}) has {} {}, and all were stored already: more records share it than a page holds, so paging by {} cannot get past them; page by a unique field (or ask for larger pages)",
                            cursor.field,
                            greatest.as_ref().map(Value::to_string).unwrap_or_default(),
                            cursor.field
                        )));
                    }
                }
                at.after = greatest;
                if read > 0 && progress {
                    Step::More
                } else {
                    Step::CaughtUp
                }
            }
            None => match next {
                Some(link) => {
                    let next = page::follow(&url, &link, &self.origin)
                        .map_err(|e| Failure::new(self.mask.mask(&e).into_owned()))?;
                    if next == url {
                        // A page that links to itself is the last one.
                        at.next = Some(self.seal(&url)?);
                        at.seen = digests;
                        Step::CaughtUp
                    } else if visited.contains(&next) {
                        return Err(Failure::new(format!(
                            "the API's next-page links go in a circle: {} was read already in this poll; the poll stops there (its records are stored)",
                            self.mask.mask(next.as_str())
                        )));
                    } else {
                        at.next = Some(self.seal(&next)?);
                        at.seen.clear();
                        Step::More
                    }
                }
                // The last page: asked for again next time, for what it gains.
                None => {
                    at.next = Some(self.seal(&url)?);
                    at.seen = digests;
                    Step::CaughtUp
                }
            },
        };
        at.seen.truncate(SEEN);
        if *at != before {
            let (file, state) = (self.cursor.clone(), at.clone());
            let saved = tokio::task::spawn_blocking(move || file.save(&state))
                .await
                .map_err(|e| Failure::new(format!("the cursor's save did not run: {e}")))?;
            if let Err(error) = saved {
                // The page's events are durable; asked for again after a
                // restart, they are stored once.
                return Err(Failure::new(format!(
                    "cannot save the cursor {}: {error} (the page is asked for again)",
                    self.cursor.path().display()
                )));
            }
        }
        Ok(step)
    }

    /// `url` as the cursor keeps it: each credential it carries (a next
    /// link with `access_token=…`) replaced by a placeholder naming its
    /// key, so that no credential is written to disk. A credential in a
    /// form the placeholder cannot stand for (cut, encoded otherwise)
    /// fails the poll rather than being saved.
    fn seal(&self, url: &Url) -> Result<String, Failure> {
        let mut text = url.as_str().to_owned();
        for (key, value) in &self.secrets {
            let placeholder = format!("%7Bauditrelay:{key}%7D");
            for form in [value.clone(), percent_encode(value)] {
                if !form.is_empty() {
                    text = text.replace(&form, &placeholder);
                }
            }
        }
        if self.mask.mask(&text) != text.as_str() {
            return Err(Failure::new(format!(
                "the next-page link ({}) holds a credential of this source in a form that cannot be kept out of the cursor file; it is not saved: ask the API to page without it",
                self.mask.mask(&text)
            )));
        }
        Ok(text)
    }

    /// A URL the cursor keeps, its credentials put back.
    fn unseal(&self, stored: &str) -> String {
        let mut text = stored.to_owned();
        for (key, value) in &self.secrets {
            text = text.replace(&format!("%7Bauditrelay:{key}%7D"), &percent_encode(value));
        }
        text
    }

    /// The page the cursor points at.
    fn request_url(&self, at: &PollCursor) -> Result<Url, Failure> {
        if let Some(cursor) = &self.settings.cursor {
            let since = at
                .after
                .clone()
                .or_else(|| cursor.start.as_deref().map(start_value));
            return Ok(match since {
                Some(value) => {
                    let text = page::query_text(&value).map_err(Failure::new)?;
                    page::with_param(&self.origin, &cursor.param, &text)
                }
                None => self.origin.clone(),
            });
        }
        match &at.next {
            // Checked when it was followed; checked again, as the file
            // may have been edited.
            Some(next) => page::follow(&self.origin, &self.unseal(next), &self.origin)
                .map_err(|e| Failure::new(self.mask.mask(&e).into_owned())),
            None => Ok(self.origin.clone()),
        }
    }

    /// `GET url`, its answer read whole (at most `max_page_bytes`), masked
    /// and parsed.
    async fn fetch(&self, client: &reqwest::Client, url: &Url) -> Result<Answer, Failure> {
        let shown = self.mask.mask(url.as_str()).into_owned();
        let mut response = client
            .get(url.clone())
            .headers(self.headers())
            .send()
            .await
            .map_err(|error| {
                Failure::new(format!(
                    "GET {shown}: {}",
                    self.mask.mask(&error_chain(&error.without_url()))
                ))
            })?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(|seconds| Duration::from_secs(seconds.min(3600)));
        let link = page::next_in_link_header(
            response
                .headers()
                .get_all(reqwest::header::LINK)
                .iter()
                .filter_map(|v| v.to_str().ok()),
        );
        let max = self.settings.max_page_bytes.as_u64() as usize;
        let too_large = || {
            Failure::new(format!(
                "GET {shown}: the page is larger than max_page_bytes ({}): ask the API for smaller pages (e.g. a page_size parameter in url)",
                self.settings.max_page_bytes
            ))
        };
        if response
            .content_length()
            .is_some_and(|len| len > max as u64)
        {
            return Err(too_large());
        }
        let mut body = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    if body.len() + chunk.len() > max {
                        return Err(too_large());
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(error) => {
                    return Err(Failure::new(format!(
                        "GET {shown}: the answer broke off after {} bytes: {}",
                        body.len(),
                        self.mask.mask(&error_chain(&error.without_url()))
                    )));
                }
            }
        }
        let text = String::from_utf8_lossy(&body);
        if !status.is_success() {
            // A JSON error answer is masked as parsed too: an escaped
            // credential (`\u0026`) is not found in its text.
            let quoted = match serde_json::from_str::<Value>(&text) {
                Ok(mut error) => {
                    mask_value(&self.mask, &mut error);
                    self.mask.admit(&error.to_string(), QUOTED)
                }
                Err(_) => self.mask.admit(&text, QUOTED),
            };
            let hint = match status.as_u16() {
                401 | 403 => " (check auth, username and secret)",
                300..=399 => " (redirects are not followed: set url to where it points)",
                404 => " (check url)",
                _ => "",
            };
            return Err(Failure {
                text: format!("GET {shown} answered {status}{hint}: {quoted}"),
                retry_after,
            });
        }
        // Masked once parsed, string by string (see `page`): masking the
        // text could break its JSON, and misses escaped credentials.
        let page = serde_json::from_str::<Value>(&text).map_err(|error| {
            Failure::new(format!(
                "GET {shown}: the page is not JSON ({error}); is url an API endpoint? It begins: {}",
                self.mask.admit(&text, 80)
            ))
        })?;
        Ok(Answer { page, link })
    }

    /// The request headers: the configured ones, then the credentials,
    /// each marked sensitive (kept out of debug output).
    fn headers(&self) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            reqwest::header::ACCEPT,
            HeaderValue::from_static("application/json"),
        );
        for (name, value) in &self.settings.headers {
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value),
            ) {
                headers.insert(name, value);
            }
        }
        let mut insert = |name: HeaderName, value: &str| {
            if let Ok(mut value) = HeaderValue::from_str(value) {
                value.set_sensitive(true);
                headers.insert(name, value);
            }
        };
        for (name, value) in &self.settings.secret_headers {
            if let Ok(name) = HeaderName::from_bytes(name.as_bytes()) {
                insert(name, value.expose());
            }
        }
        let secret = self
            .settings
            .secret
            .as_ref()
            .map(|s| s.expose())
            .unwrap_or_default();
        match self.settings.auth {
            PollAuth::None => {}
            PollAuth::Bearer => insert(reqwest::header::AUTHORIZATION, &format!("Bearer {secret}")),
            PollAuth::Basic => {
                use base64::Engine;
                let user = self.settings.username.as_deref().unwrap_or_default();
                let pair =
                    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{secret}"));
                insert(reqwest::header::AUTHORIZATION, &format!("Basic {pair}"));
            }
        }
        headers
    }

    /// Makes events of a page's `records` (their JSON, in batches), keeps
    /// what is refused, waits until the events are durable.
    async fn store(
        &self,
        records: Vec<Vec<u8>>,
        url: &Url,
        mapper: Option<&SourceMapper>,
    ) -> Result<(), Failure> {
        let shown = self.mask.mask(url.as_str()).into_owned();
        // Canonical JSON can be longer than the record: a sixth of the
        // spool's limit always fits (as for file lines).
        let max_bytes = self.relay.max_batch_bytes() / 6;
        let mut records = records.into_iter().map(|data| ForeignRecord {
            data,
            metadata: vec![("poll.url".to_owned(), shown.clone())],
        });
        let mut next = records.next();
        while next.is_some() {
            let mut batch = Vec::new();
            let mut bytes = 0;
            while let Some(record) = next.take() {
                if !batch.is_empty()
                    && (batch.len() >= BATCH || bytes + record.data.len() > max_bytes)
                {
                    next = Some(record);
                    break;
                }
                bytes += record.data.len();
                batch.push(record);
                next = records.next();
            }
            self.store_batch(batch, mapper).await?;
        }
        Ok(())
    }

    async fn store_batch(
        &self,
        records: Vec<ForeignRecord>,
        mapper: Option<&SourceMapper>,
    ) -> Result<(), Failure> {
        let batch = Arc::new(RecordBatch {
            source: self.name.clone(),
            content_type: "application/json".to_owned(),
            records,
        });
        let door = Door {
            name: &self.name,
            label: &self.label,
            mapper,
            refused: &self.refused,
            via: Via::Poll,
        };
        let stored = door
            .store(
                &self.relay,
                batch,
                Vec::new(),
                MAP_WITHIN,
                (DURABLE_WITHIN, "the poller's wait for the spool (30s)"),
            )
            .await
            .map_err(|error| Failure::new(error.to_string()))?;
        self.report.update(|s| {
            s.spooled_events += (stored.accepted - stored.copies) as u64;
            s.refused_records += stored.newly_kept as u64;
            s.dropped_records += stored.dropped as u64;
        });
        Ok(())
    }
}

/// Masks every string (and key) of `value` in place; whether any changed.
fn mask_value(mask: &SecretMask, value: &mut Value) -> bool {
    match value {
        Value::String(text) => match mask.mask(text) {
            std::borrow::Cow::Owned(masked) => {
                *text = masked;
                true
            }
            std::borrow::Cow::Borrowed(_) => false,
        },
        Value::Array(items) => items
            .iter_mut()
            .fold(false, |changed, item| mask_value(mask, item) | changed),
        Value::Object(map) => {
            let mut changed = false;
            let keys: Vec<String> = map.keys().cloned().collect();
            for key in keys {
                let masked = mask.mask(&key).into_owned();
                let mut item = map.remove(&key).expect("a key just listed");
                changed |= mask_value(mask, &mut item) | (masked != key);
                map.insert(masked, item);
            }
            changed
        }
        _ => false,
    }
}

/// `text` percent-encoded as a query value (everything but RFC 3986's
/// unreserved characters).
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// A record's digest, as the cursor keeps it: 16 bytes of SHA-256, hex.
fn digest(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(&sha2::Sha256::digest(data)[..16])
}

/// `start` as a cursor value: a number where it reads as one.
fn start_value(text: &str) -> Value {
    match serde_json::from_str::<Value>(text) {
        Ok(number @ Value::Number(_)) => number,
        _ => Value::String(text.to_owned()),
    }
}

/// An error and its causes, as one line (reqwest's own text says only
/// "error sending request").
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        cause = inner.source();
    }
    text
}
