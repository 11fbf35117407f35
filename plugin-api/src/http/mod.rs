//! A small blocking HTTP client for plugins.
//!
//! Inside the sandbox requests go through `wasi:http`; the relay lets them
//! out only to the hosts listed in the instance's `allowed_hosts`. Under the
//! [test harness](crate::testing) they go to the fake server the test
//! installs.
//!
//! ```no_run
//! use auditrelay_plugin_api::http::Request;
//! use std::time::Duration;
//!
//! let response = Request::post("https://hec.example.com/services/collector/event")
//!     .header("Authorization", "Splunk 00000000-0000-0000-0000-000000000000")
//!     .body(b"{\"event\":\"hello\"}".to_vec())
//!     .timeout(Duration::from_secs(30))
//!     .send()?;
//! if !response.is_success() {
//!     return Err(response.into_deliver_error("Splunk HEC").into());
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod allow_list;
#[cfg(all(not(target_arch = "wasm32"), feature = "native-http"))]
pub(crate) mod native;
#[cfg(target_arch = "wasm32")]
mod wasi;

pub use allow_list::AllowList;

use std::fmt;
use std::time::Duration;

use crate::event::DeliverError;

/// An HTTP method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// GET
    Get,
    /// HEAD
    Head,
    /// POST
    Post,
    /// PUT
    Put,
    /// DELETE
    Delete,
    /// PATCH
    Patch,
}

impl Method {
    /// The method's name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
            Method::Patch => "PATCH",
        }
    }
}

/// An outbound request. Build it, then [`send`](Request::send) it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "a request does nothing until sent"]
pub struct Request {
    /// The method.
    pub method: Method,
    /// Absolute `http://` or `https://` URL.
    pub url: String,
    /// Headers in order; names as given.
    pub headers: Vec<(String, String)>,
    /// The body (empty for none).
    pub body: Vec<u8>,
    /// Limit for connecting.
    pub connect_timeout: Duration,
    /// Limit for the first response byte and between later ones.
    pub timeout: Duration,
}

impl Request {
    /// A request with the given method and URL; 10 s to connect, 30 s per
    /// response read.
    pub fn new(method: Method, url: impl Into<String>) -> Self {
        Request {
            method,
            url: url.into(),
            headers: Vec::new(),
            body: Vec::new(),
            connect_timeout: Duration::from_secs(10),
            timeout: Duration::from_secs(30),
        }
    }

    /// A GET request.
    pub fn get(url: impl Into<String>) -> Self {
        Self::new(Method::Get, url)
    }

    /// A POST request.
    pub fn post(url: impl Into<String>) -> Self {
        Self::new(Method::Post, url)
    }

    /// A PUT request.
    pub fn put(url: impl Into<String>) -> Self {
        Self::new(Method::Put, url)
    }

    /// Adds a header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// Sets the limit for the first response byte and between later ones.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets the limit for connecting.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The first header with this name (case-insensitive).
    pub fn header_value(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    /// Sends the request and reads the whole response.
    ///
    /// `Content-Length` is added when absent; `Host` comes from the URL
    /// (wasi:http does not let a plugin set it).
    pub fn send(&self) -> Result<Response, HttpError> {
        #[cfg(target_arch = "wasm32")]
        {
            wasi::send(self)
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            crate::host::backend::http(self)
        }
    }
}

/// A complete response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Headers in order; names lower-case.
    pub headers: Vec<(String, String)>,
    /// The whole body.
    pub body: Vec<u8>,
}

impl Response {
    /// A response with a status and body, for fakes in tests.
    pub fn new(status: u16, body: impl Into<Vec<u8>>) -> Self {
        Response {
            status,
            headers: Vec::new(),
            body: body.into(),
        }
    }

    /// Adds a header (for fakes in tests).
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers
            .push((name.into().to_ascii_lowercase(), value.into()));
        self
    }

    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The first header with this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    /// The body as text (lossy).
    pub fn text(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(&self.body)
    }

    /// The delay a `Retry-After` header asks for (delta-seconds or an
    /// HTTP-date).
    pub fn retry_after(&self) -> Option<Duration> {
        parse_retry_after(self.header("retry-after")?, jiff::Timestamp::now())
    }

    /// Classifies a non-success response the way most HTTP APIs mean it:
    /// 408, 429 and 5xx (except 501) are retryable, honouring
    /// `Retry-After`; other statuses are permanent. `destination` names the
    /// service in the message.
    pub fn into_deliver_error(self, destination: &str) -> DeliverError {
        let excerpt: String = self.text().chars().take(300).collect();
        self.deliver_error(format!(
            "{destination} answered HTTP {}: {excerpt}",
            self.status
        ))
    }

    /// Like [`into_deliver_error`](Self::into_deliver_error), with the
    /// exporter's own `message` (naming the setting to fix, decoding the
    /// service's error body). Exporters whose services put more in the body
    /// than the status classify those cases first.
    pub fn deliver_error(&self, message: String) -> DeliverError {
        match self.status {
            408 | 429 => DeliverError::Retryable {
                message,
                retry_after: self.retry_after(),
            },
            501 => DeliverError::Permanent(message),
            500..=599 => DeliverError::Retryable {
                message,
                retry_after: self.retry_after(),
            },
            _ => DeliverError::Permanent(message),
        }
    }
}

fn find_header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Decodes `%XX` escapes (what a URL's path and query carry); anything
/// else, a `%` not followed by two hex digits included, stays as it is.
/// Bytes that do not form UTF-8 become U+FFFD.
///
/// ```
/// use auditrelay_plugin_api::http::percent_decode;
/// assert_eq!(percent_decode("a%20b%2Fc"), "a b/c");
/// assert_eq!(percent_decode("100% %zz %€"), "100% %zz %€");
/// assert_eq!(percent_decode("x%e2%82%ac"), "x€");
/// ```
pub fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        // `get`, not indexing: a `%` before a multi-byte character is kept
        // instead of slicing through the character.
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

/// Parses a `Retry-After` value relative to `now`.
pub fn parse_retry_after(value: &str, now: jiff::Timestamp) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    // HTTP-date, e.g. "Wed, 21 Oct 2015 07:28:00 GMT" (RFC 9110 IMF-fixdate).
    let at = jiff::fmt::rfc2822::parse(value).ok()?.timestamp();
    let wait = at.as_millisecond() - now.as_millisecond();
    Some(Duration::from_millis(wait.max(0) as u64))
}

/// Why a request got no response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpError {
    /// What kind of failure.
    pub kind: HttpErrorKind,
    /// Details.
    pub message: String,
}

/// Kinds of [`HttpError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpErrorKind {
    /// The relay refused the request: the host is not in `allowed_hosts`.
    Denied,
    /// The URL or a header is malformed.
    InvalidRequest,
    /// DNS lookup failed.
    Dns,
    /// The connection was refused or reset.
    Connect,
    /// A connect or read timeout expired.
    Timeout,
    /// TLS failed (certificate, protocol).
    Tls,
    /// The peer broke the HTTP protocol.
    Protocol,
    /// Anything else.
    Other,
}

impl HttpError {
    /// An error of the given kind.
    pub fn new(kind: HttpErrorKind, message: impl Into<String>) -> Self {
        HttpError {
            kind,
            message: message.into(),
        }
    }

    /// The error with the request's destination in front: method, scheme
    /// and authority, never the path (it may carry secrets). Both
    /// transports word their errors this way.
    #[cfg_attr(
        not(any(target_arch = "wasm32", feature = "native-http")),
        allow(dead_code)
    )]
    pub(crate) fn naming_destination_of(mut self, request: &Request) -> Self {
        if let Ok(uri) = request.url.parse::<http::Uri>()
            && let Some(authority) = uri.authority()
        {
            self.message = format!(
                "{} {}://{authority}: {}",
                request.method.as_str(),
                uri.scheme_str().unwrap_or("?"),
                self.message
            );
        }
        self
    }

    /// Whether the relay's sandbox refused the destination.
    pub fn is_denied(&self) -> bool {
        self.kind == HttpErrorKind::Denied
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for HttpError {}

impl From<HttpError> for DeliverError {
    /// A denied host or a malformed request is permanent (a config fix is
    /// needed); everything else is transient.
    fn from(error: HttpError) -> Self {
        match error.kind {
            HttpErrorKind::Denied | HttpErrorKind::InvalidRequest => {
                DeliverError::Permanent(error.message)
            }
            _ => DeliverError::retryable(error.message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_accepts_seconds_and_dates() {
        let now: jiff::Timestamp = "2015-10-21T07:27:00Z".parse().unwrap();
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now),
            Some(Duration::from_secs(60))
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn statuses_are_classified() {
        let retry = Response::new(503, "busy").with_header("Retry-After", "7");
        assert_eq!(
            retry.into_deliver_error("X"),
            DeliverError::Retryable {
                message: "X answered HTTP 503: busy".into(),
                retry_after: Some(Duration::from_secs(7)),
            }
        );
        assert!(
            !Response::new(403, "no")
                .into_deliver_error("X")
                .is_retryable()
        );
        assert!(
            !Response::new(501, "")
                .into_deliver_error("X")
                .is_retryable()
        );
        assert!(
            Response::new(429, "")
                .into_deliver_error("X")
                .is_retryable()
        );
    }
}
