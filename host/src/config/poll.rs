//! `[ingest.poll.<name>]`: an HTTP API of another system, polled on an
//! interval for the audit events it has gained, page by page, from where
//! the last poll stopped (a field of the last record, or the next-page
//! link), each record mapped to envelopes by a mapper plugin (or read as an
//! envelope when the source names none).

use std::collections::BTreeMap;
use std::time::Duration;

use bytesize::ByteSize;
use serde::Deserialize;

use super::webhook::{MapperSettings, default_max_refused_bytes};
use super::{Secret, default_true, units};

/// `[ingest.poll.<name>]`: an HTTP API polled for records.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PollSettings {
    /// Whether `auditrelay run` polls it.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// The first page: `https://` (or `http://` to a loopback address),
    /// with the query that selects and orders the records
    /// (`…/events/?ordering=created`). `${ENV}` is expanded.
    pub url: String,
    /// The wait between two polls (a poll reads pages until it has caught
    /// up or read `max_pages`).
    #[serde(default = "default_interval", with = "units::duration")]
    pub interval: Duration,
    /// Where the records are in a page: a JSON pointer (`/results`), or
    /// `""` when the page is the array itself.
    #[serde(default)]
    pub records: String,
    /// Page by a field of the records: the greatest value seen is sent
    /// back in a query parameter. Either this or `next`.
    #[serde(default)]
    pub cursor: Option<FieldCursor>,
    /// Page by the link each page gives to the next one: a JSON pointer
    /// into the page (`/next`), or `link-header` for an RFC 8288 `Link`
    /// header with `rel="next"`. Either this or `cursor`.
    #[serde(default)]
    pub next: Option<String>,
    /// Most pages read in one poll; the rest wait for the next one.
    #[serde(default = "default_max_pages")]
    pub max_pages: usize,
    /// How requests prove who sends them.
    #[serde(default)]
    pub auth: PollAuth,
    /// `basic`: the user name.
    #[serde(default)]
    pub username: Option<String>,
    /// `bearer`: the token; `basic`: the password (usually `"${ENV}"`);
    /// never logged or reported, and masked out of what the API answers.
    #[serde(default)]
    pub secret: Option<Secret>,
    /// More request headers, sent as they are and shown as they are
    /// (`Accept = "application/vnd.github+json"`).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Request headers that carry credentials (`X-Api-Key = "${KEY}"`):
    /// never logged or reported, and masked out of what the API answers,
    /// as `secret` is.
    #[serde(default)]
    pub secret_headers: BTreeMap<String, Secret>,
    /// The longest a request may take, answer included.
    #[serde(default = "default_timeout", with = "units::duration")]
    pub timeout: Duration,
    /// The largest page read; a larger one fails the poll (ask the API for
    /// smaller pages).
    #[serde(default = "default_max_page_bytes")]
    pub max_page_bytes: ByteSize,
    /// The most `<data_dir>/sources/<name>/refused.ndjson` may hold; past
    /// it, the source stops (its cursor where it was) until it is moved.
    #[serde(default = "default_max_refused_bytes")]
    pub max_refused_bytes: ByteSize,
    /// The mapper that turns a record into envelopes; none: each record is
    /// an envelope.
    #[serde(default)]
    pub mapper: Option<MapperSettings>,
}

/// `[ingest.poll.<name>.cursor]`: paging by a field of the records.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldCursor {
    /// JSON pointer to the field in each record (`/created`, `/pk`): a
    /// number, or a string (RFC 3339 timestamps are compared as times).
    pub field: String,
    /// The query parameter the next request sends the greatest value seen
    /// in (`created__gte`). Prefer a "greater or equal" parameter: records
    /// that share the last value are read again (and stored once, by
    /// their id), where "greater than" could skip one.
    pub param: String,
    /// The value to start from on the very first poll; none: from the
    /// first record the API has.
    #[serde(default)]
    pub start: Option<String>,
}

/// `[ingest.poll.<name>] auth`
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PollAuth {
    /// No credentials (or only those in `secret_headers`).
    #[default]
    None,
    /// `Authorization: Bearer <secret>`.
    Bearer,
    /// `Authorization: Basic <username:secret>`.
    Basic,
}

/// `next = "link-header"`: the next page is in the `Link` header.
pub const LINK_HEADER: &str = "link-header";

fn default_interval() -> Duration {
    Duration::from_secs(60)
}
fn default_max_pages() -> usize {
    10
}
fn default_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_max_page_bytes() -> ByteSize {
    ByteSize::mib(16)
}
