//! Checks that go beyond types: ranges, name syntax, combinations.

use super::{
    AllowList, Config, ConfigError, FileSettings, LineFormat, MapperSettings, OutboxSettings,
    PluginSettings, PollSettings, WebhookAuth, WebhookSettings,
};

/// Most identities the dedup window may remember (about 7 GB of memory).
const MAX_DEDUP_IDS: u64 = 100_000_000;
/// Smallest memory cap a Rust plugin can start in (stack + heap + data).
const MIN_PLUGIN_MEMORY: u64 = 4 * 1024 * 1024;

impl Config {
    /// Every problem found, at once (one [`ConfigError::Invalid`], or
    /// [`ConfigError::Several`]).
    pub(super) fn check(&self) -> Result<(), ConfigError> {
        let mut problems = Problems::default();
        let relay = &self.relay;
        if relay.plugin_threads == 0 || relay.plugin_threads > 256 {
            problems.add("relay.plugin_threads", "must be between 1 and 256");
        }
        if relay.max_event_bytes.as_u64() < 1024 {
            problems.add("relay.max_event_bytes", "must be at least 1KiB");
        }
        if relay.max_buffered_bytes < relay.max_event_bytes {
            problems.add(
                "relay.max_buffered_bytes",
                "must be at least relay.max_event_bytes",
            );
        }
        let spool = &self.spool;
        if spool.group_commit.is_zero() || spool.group_commit > std::time::Duration::from_secs(10) {
            problems.add("spool.group_commit", "must be between 1ms and 10s");
        }
        if spool.segment_size.as_u64() < 64 * 1024
            || spool.segment_size.as_u64() > 1024 * 1024 * 1024
        {
            problems.add("spool.segment_size", "must be between 64KiB and 1GiB");
        }
        if spool.max_size.as_u64() < spool.segment_size.as_u64().saturating_mul(2) {
            problems.add(
                "spool.max_size",
                "must be at least twice spool.segment_size (a full spool must be able to move on)",
            );
        }
        if spool.max_size.as_u64() < relay.max_event_bytes.as_u64().saturating_mul(4) {
            problems.add(
                "spool.max_size",
                "must hold at least four of the largest events",
            );
        }
        if spool.dedup_ids > MAX_DEDUP_IDS {
            problems.add(
                "spool.dedup_ids",
                format!("must be at most {MAX_DEDUP_IDS} (each costs about 75 bytes of memory)"),
            );
        }
        if spool.dedup_ids > 0
            && (spool.dedup_age < std::time::Duration::from_secs(1)
                || spool.dedup_age > std::time::Duration::from_secs(7 * 24 * 3600))
        {
            problems.add("spool.dedup_age", "must be between 1s and 7d");
        }
        if let Err(found) = crate::redact::Redaction::new(relay.redact_defaults, &self.redact) {
            for (key, message) in found {
                problems.add(&key, message);
            }
        }
        let integrity = &self.integrity;
        if integrity.chain {
            if integrity.checkpoint_interval < std::time::Duration::from_secs(1)
                || integrity.checkpoint_interval > std::time::Duration::from_secs(24 * 3600)
            {
                problems.add("integrity.checkpoint_interval", "must be between 1s and 1d");
            }
            if let Err(error) = crate::integrity::keys::check_log_name(&integrity.log) {
                problems.add("integrity.log", error);
            }
            if let Some(file) = &integrity.key_file
                && let Err(error) = crate::integrity::keys::load(file)
            {
                problems.add("integrity.key_file", error.to_string());
            }
        }
        let http = &self.ingest.http;
        if http.max_connections == 0 {
            problems.add("ingest.http.max_connections", "must be at least 1");
        }
        if http.max_body_memory.as_u64() < http.max_body_bytes.as_u64() {
            problems.add(
                "ingest.http.max_body_memory",
                format!(
                    "must be at least ingest.http.max_body_bytes ({}), or the largest body could never be read",
                    http.max_body_bytes
                ),
            );
        }
        for (key, value) in [
            ("ingest.http.header_timeout", http.header_timeout),
            ("ingest.http.body_timeout", http.body_timeout),
            ("ingest.http.ack_timeout", http.ack_timeout),
        ] {
            if value.is_zero() {
                problems.add(key, "must be longer than 0s");
            }
        }
        if http.enabled && http.auth_token.is_none() && !http.listen.ip().is_loopback() {
            problems.add(
                "ingest.http.auth_token",
                format!(
                    "is required when listening on {} (a non-loopback address): set it, e.g. to \"${{AUDITRELAY_TOKEN}}\"",
                    http.listen
                ),
            );
        }
        if http
            .auth_token
            .as_ref()
            .is_some_and(|t| t.expose().len() < 16)
        {
            problems.add(
                "ingest.http.auth_token",
                "must be at least 16 characters (use a random token)",
            );
        }

        for (name, outbox) in &self.ingest.outbox {
            check_outbox(name, outbox, &mut problems);
        }
        for (name, webhook) in &self.ingest.webhook {
            check_webhook(name, webhook, &mut problems);
        }
        for (name, file) in &self.ingest.file {
            check_file(name, file, &mut problems);
        }
        for (name, poll) in &self.ingest.poll {
            check_poll(name, poll, &mut problems);
        }
        // A source's name is the `source` of its events and the directory
        // of its state: one name, one source.
        let kinds: [(&str, Vec<&String>); 3] = [
            ("webhook", self.ingest.webhook.keys().collect()),
            ("file", self.ingest.file.keys().collect()),
            ("poll", self.ingest.poll.keys().collect()),
        ];
        for (i, (kind, names)) in kinds.iter().enumerate() {
            for name in names {
                if let Some((first, _)) = kinds[..i].iter().find(|(_, n)| n.contains(name)) {
                    problems.add(
                        format!("ingest.{kind}.{name}"),
                        format!("[ingest.{first}.{name}] has the same name; sources write their name into their events, so each needs its own: rename one"),
                    );
                }
            }
        }
        for (name, settings) in &self.plugins {
            if !is_instance_name(name) {
                problems.add(
                    format!("plugins.{name}"),
                    "instance names use lower-case letters, digits, '-' and '_' (at most 64)",
                );
            }
            self.check_plugin(name, settings, &mut problems);
        }
        if self.enabled_plugins().next().is_none() {
            problems.add(
                "plugins",
                "no plugin is enabled, so events would have nowhere to go: add a [plugins.<name>] table",
            );
        }
        problems.into_result(&self.origin)
    }

    fn check_plugin(&self, name: &str, p: &PluginSettings, problems: &mut Problems) {
        let key = |rest: &str| format!("plugins.{name}.{rest}");
        if p.limits.memory.as_u64() < MIN_PLUGIN_MEMORY {
            problems.add(key("limits.memory"), "must be at least 4MiB");
        }
        if p.limits.memory.as_u64() > 4 * 1024 * 1024 * 1024 {
            problems.add(
                key("limits.memory"),
                "must be at most 4GiB (the wasm32 address space)",
            );
        }
        if !(1..=256).contains(&p.limits.http_requests) {
            problems.add(key("limits.http_requests"), "must be between 1 and 256");
        }
        if p.limits.timeout.as_millis() < 10 {
            problems.add(key("limits.timeout"), "must be at least 10ms");
        }
        if !(1..=100_000).contains(&p.batch.max_events) {
            problems.add(key("batch.max_events"), "must be between 1 and 100000");
        }
        if p.batch.max_bytes.as_u64() < 1024 {
            problems.add(key("batch.max_bytes"), "must be at least 1KiB");
        }
        if p.retry.initial_backoff.is_zero() || p.retry.initial_backoff > p.retry.max_backoff {
            problems.add(
                key("retry.initial_backoff"),
                "must be greater than zero and at most retry.max_backoff",
            );
        }
        if p.retry.circuit_after == 0 {
            problems.add(key("retry.circuit_after"), "must be at least 1");
        }
        if let Err((i, message)) = AllowList::parse(&p.allowed_hosts) {
            problems.add(key(&format!("allowed_hosts[{i}]")), message);
        }
        for secret in p.secrets.keys() {
            if secret.is_empty()
                || !secret
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                problems.add(
                    key(&format!("secrets.{secret}")),
                    "secret names use letters, digits, '-' and '_'",
                );
            }
        }
        for (list, patterns) in [
            ("filter.types", &p.filter.types),
            ("filter.tenants", &p.filter.tenants),
        ] {
            for (i, pattern) in patterns.iter().enumerate() {
                if pattern.trim_end_matches('*').contains('*') {
                    problems.add(
                        key(&format!("{list}[{i}]")),
                        "'*' is only allowed at the end (e.g. \"group.*\")",
                    );
                }
            }
        }
        if let Some(plugin) = &p.plugin
            && (plugin.contains('/') || plugin.ends_with(".wasm"))
        {
            problems.add(
                key("plugin"),
                "names a plugin by its file stem (e.g. \"file\"); use `path` for a file path",
            );
        }
    }
}

/// The problems found so far, each as (dotted key, what to do).
#[derive(Default)]
struct Problems(Vec<(String, String)>);

impl Problems {
    fn add(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.0.push((key.into(), message.into()));
    }

    fn into_result(mut self, origin: &str) -> Result<(), ConfigError> {
        match self.0.len() {
            0 => Ok(()),
            1 => {
                let (key, message) = self.0.remove(0);
                Err(ConfigError::Invalid {
                    origin: origin.to_owned(),
                    key,
                    message,
                })
            }
            _ => Err(ConfigError::Several {
                origin: origin.to_owned(),
                problems: self.0,
            }),
        }
    }
}

fn check_webhook(name: &str, webhook: &WebhookSettings, problems: &mut Problems) {
    use super::webhook::{CREDENTIAL_HEADERS, MIN_SECRET_BYTES};
    let key = |rest: &str| format!("ingest.webhook.{name}.{rest}");
    if !is_instance_name(name) {
        problems.add(
            format!("ingest.webhook.{name}"),
            "source names use lower-case letters, digits, '-' and '_' (at most 64)",
        );
    }
    if webhook.secret.expose().len() < MIN_SECRET_BYTES {
        problems.add(
            key("secret"),
            format!("must be at least {MIN_SECRET_BYTES} bytes (use a random value, e.g. from openssl rand -hex 32)"),
        );
    }
    let is_header = |h: &str| {
        !h.is_empty()
            && h.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    };
    if webhook.auth == WebhookAuth::Hmac {
        for (field, header) in [
            ("signature_header", &webhook.signature_header),
            ("timestamp_header", &webhook.timestamp_header),
        ] {
            if !is_header(header) {
                problems.add(
                    key(field),
                    format!("{header:?} is not a lower-case header name"),
                );
            }
        }
        if webhook.max_skew < std::time::Duration::from_secs(1)
            || webhook.max_skew > std::time::Duration::from_secs(3600)
        {
            problems.add(key("max_skew"), "must be between 1s and 1h");
        }
    }
    for header in &webhook.metadata_headers {
        let credential = CREDENTIAL_HEADERS.contains(&header.as_str())
            || (webhook.auth == WebhookAuth::Hmac
                && (header == &webhook.signature_header || header == &webhook.timestamp_header));
        if !is_header(header) {
            problems.add(
                key("metadata_headers"),
                format!("{header:?} is not a lower-case header name"),
            );
        } else if credential {
            problems.add(
                key("metadata_headers"),
                format!(
                    "{header:?} carries credentials and is never handed to a mapper; remove it"
                ),
            );
        }
    }
    if let Some(mapper) = &webhook.mapper {
        check_mapper(&format!("ingest.webhook.{name}"), mapper, problems);
    }
}

fn check_mapper(source: &str, mapper: &MapperSettings, problems: &mut Problems) {
    let key = |rest: &str| format!("{source}.mapper.{rest}");
    if mapper.plugin.is_empty() {
        problems.add(
            key("plugin"),
            "names no mapper: set it, e.g. to \"json-map\"",
        );
    }
    let memory = mapper.limits.memory.as_u64();
    if !(4 << 20..=4 << 30).contains(&memory) {
        problems.add(key("limits.memory"), "must be between 4MiB and 4GiB");
    }
    if mapper.limits.timeout < std::time::Duration::from_millis(10) {
        problems.add(key("limits.timeout"), "must be at least 10ms");
    }
}

fn check_file(name: &str, file: &FileSettings, problems: &mut Problems) {
    use std::time::Duration;
    let key = |rest: &str| format!("ingest.file.{name}.{rest}");
    if !is_instance_name(name) {
        problems.add(
            format!("ingest.file.{name}"),
            "source names use lower-case letters, digits, '-' and '_' (at most 64)",
        );
    }
    if file.paths.is_empty() {
        problems.add(
            key("paths"),
            "names no file: list the files or globs to tail, e.g. [\"/var/log/app/audit.log*\"]",
        );
    }
    for (i, path) in file.paths.iter().enumerate() {
        let at = key(&format!("paths[{i}]"));
        match path.to_str() {
            None => problems.add(at, "is not UTF-8; globs must be text"),
            Some(text) if text.ends_with('/') => problems.add(
                at,
                format!("{text:?} is a directory: name the files in it, e.g. \"{text}*.log\""),
            ),
            Some(text) if text.contains("**") => problems.add(
                at,
                format!("{text:?}: recursive globs (**) are not followed (a symlink loop would never end); name the directories, e.g. \"/var/log/*/audit.log\""),
            ),
            Some(text) => {
                if let Err(error) = glob::Pattern::new(text) {
                    problems.add(at, format!("{text:?} is not a glob: {error}"));
                }
            }
        }
    }
    if file.mapper.is_none() && file.format == LineFormat::Lines {
        problems.add(
            key("format"),
            "\"lines\" (plain text) needs a mapper to make envelopes of them: name one in [ingest.file.<name>.mapper], or use format = \"json-lines\" for lines that are envelopes",
        );
    }
    if !(1..=100_000).contains(&file.batch) {
        problems.add(key("batch"), "must be between 1 and 100000");
    }
    if !(1 << 10..=64 << 20).contains(&file.max_line_bytes.as_u64()) {
        problems.add(key("max_line_bytes"), "must be between 1KiB and 64MiB");
    }
    if file.poll_interval < Duration::from_millis(10)
        || file.poll_interval > Duration::from_secs(3600)
    {
        problems.add(key("poll_interval"), "must be between 10ms and 1h");
    }
    if file.rotate_wait > Duration::from_secs(86_400) {
        problems.add(key("rotate_wait"), "must be at most 24h");
    }
    if let Some(mapper) = &file.mapper {
        check_mapper(&format!("ingest.file.{name}"), mapper, problems);
    }
}

fn check_poll(name: &str, poll: &PollSettings, problems: &mut Problems) {
    use super::poll::{LINK_HEADER, PollAuth};
    use std::time::Duration;
    let key = |rest: &str| format!("ingest.poll.{name}.{rest}");
    if !is_instance_name(name) {
        problems.add(
            format!("ingest.poll.{name}"),
            "source names use lower-case letters, digits, '-' and '_' (at most 64)",
        );
    }
    let credentials = poll.secret.is_some() || !poll.secret_headers.is_empty();
    match reqwest::Url::parse(&poll.url) {
        Err(error) => problems.add(
            key("url"),
            format!("{:?} is not a URL ({error}); e.g. \"https://idp.example.com/api/v3/events/events/?ordering=created\"", poll.url),
        ),
        Ok(url) if !matches!(url.scheme(), "http" | "https") => problems.add(
            key("url"),
            format!("uses {:?}; only https:// (or http:// to a loopback address) is polled", url.scheme()),
        ),
        Ok(url) if !url.username().is_empty() || url.password().is_some() => problems.add(
            key("url"),
            "holds credentials: put them in auth, username and secret (a URL is logged and reported)",
        ),
        Ok(url) if url.scheme() == "http" && credentials && !is_loopback(&url) => problems.add(
            key("url"),
            "is plain http:// to another machine, and the requests carry credentials: use https://",
        ),
        Ok(_) => {}
    }
    match (&poll.cursor, &poll.next) {
        (Some(_), Some(_)) => problems.add(
            format!("ingest.poll.{name}"),
            "sets both cursor and next: page either by a field of the records ([ingest.poll.<name>.cursor]) or by the link to the next page (next), not both",
        ),
        (None, None) => problems.add(
            format!("ingest.poll.{name}"),
            "says neither how to page nor where it stopped: set [ingest.poll.<name>.cursor] (field = \"/created\", param = \"created__gte\") or next = \"/next\" (or \"link-header\")",
        ),
        _ => {}
    }
    if let Some(cursor) = &poll.cursor {
        if !is_pointer(&cursor.field) || cursor.field.is_empty() {
            problems.add(
                key("cursor.field"),
                format!(
                    "{:?} is not a JSON pointer to a field of a record: e.g. \"/created\"",
                    cursor.field
                ),
            );
        }
        if cursor.param.is_empty() {
            problems.add(
                key("cursor.param"),
                "names no query parameter: e.g. \"created__gte\"",
            );
        }
    }
    if let Some(next) = &poll.next
        && next != LINK_HEADER
        && (!is_pointer(next) || next.is_empty())
    {
        problems.add(
            key("next"),
            format!(
                "{next:?} is neither a JSON pointer into the page (\"/next\") nor \"{LINK_HEADER}\""
            ),
        );
    }
    if !is_pointer(&poll.records) {
        problems.add(
            key("records"),
            format!(
                "{:?} is not a JSON pointer: e.g. \"/results\", or \"\" when the page is the array",
                poll.records
            ),
        );
    }
    match (poll.auth, &poll.secret) {
        (PollAuth::None, Some(_)) => problems.add(
            key("secret"),
            "is set but auth = \"none\": say how to send it (auth = \"bearer\" or \"basic\")",
        ),
        (PollAuth::Bearer | PollAuth::Basic, None) => problems.add(
            key("secret"),
            "is missing: the token (bearer) or password (basic), usually \"${ENV}\"",
        ),
        _ => {}
    }
    match (poll.auth, &poll.username) {
        (PollAuth::Basic, None) => problems.add(key("username"), "is missing (auth = \"basic\")"),
        (PollAuth::None | PollAuth::Bearer, Some(_)) => {
            problems.add(key("username"), "is only used with auth = \"basic\"")
        }
        _ => {}
    }
    let headers = poll
        .headers
        .iter()
        .map(|(name, value)| ("headers", name, value.as_str()))
        .chain(
            poll.secret_headers
                .iter()
                .map(|(name, value)| ("secret_headers", name, value.expose())),
        );
    for (table, header, value) in headers {
        let at = key(&format!("{table}.{header}"));
        match http::HeaderName::from_bytes(header.as_bytes()) {
            Err(_) => problems.add(at.clone(), "is not a header name"),
            Ok(name) if name == http::header::AUTHORIZATION && poll.auth != PollAuth::None => {
                problems.add(at.clone(), "is set by auth already: drop it, or set auth = \"none\"")
            }
            Ok(name) if name == http::header::HOST || name == http::header::CONTENT_LENGTH => {
                problems.add(at.clone(), "is set by the relay itself")
            }
            Ok(name) if table == "headers" && name == http::header::AUTHORIZATION => problems.add(
                at.clone(),
                "carries credentials: move it to secret_headers (or use auth and secret), so it is never shown",
            ),
            Ok(_) => {}
        }
        if poll.headers.contains_key(header)
            && poll.secret_headers.contains_key(header)
            && table == "secret_headers"
        {
            problems.add(at.clone(), "is also in headers: keep one");
        }
        if http::HeaderValue::from_str(value).is_err() {
            problems.add(at, "holds characters a header value cannot (a line break?)");
        }
    }
    if !(Duration::from_millis(100)..=Duration::from_secs(86_400)).contains(&poll.interval) {
        problems.add(key("interval"), "must be between 100ms and 24h");
    }
    if !(1..=10_000).contains(&poll.max_pages) {
        problems.add(key("max_pages"), "must be between 1 and 10000");
    }
    if !(Duration::from_millis(100)..=Duration::from_secs(600)).contains(&poll.timeout) {
        problems.add(key("timeout"), "must be between 100ms and 10m");
    }
    if !(1 << 10..=256 << 20).contains(&poll.max_page_bytes.as_u64()) {
        problems.add(key("max_page_bytes"), "must be between 1KiB and 256MiB");
    }
    if let Some(mapper) = &poll.mapper {
        check_mapper(&format!("ingest.poll.{name}"), mapper, problems);
    }
}

/// A JSON pointer (RFC 6901): empty, or `/`-separated tokens.
fn is_pointer(text: &str) -> bool {
    text.is_empty() || text.starts_with('/')
}

/// Whether `url` names this machine.
fn is_loopback(url: &reqwest::Url) -> bool {
    let host = url.host_str().unwrap_or_default();
    host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn check_outbox(name: &str, outbox: &OutboxSettings, problems: &mut Problems) {
    let key = |rest: &str| format!("ingest.outbox.{name}.{rest}");
    if !is_instance_name(name) {
        problems.add(
            format!("ingest.outbox.{name}"),
            "outbox names use lower-case letters, digits, '-' and '_' (at most 64)",
        );
    }
    // The URL is a secret: a problem names its scheme, never the rest.
    let url = outbox.url.expose();
    match auditrelay_outbox::Dialect::of_url(url) {
        Some(auditrelay_outbox::Dialect::Sqlite) if is_memory_sqlite(url) => problems.add(
            key("url"),
            "names an in-memory SQLite database, which no application can share with the relay: name the application's database file (sqlite:///path/app.db)",
        ),
        Some(auditrelay_outbox::Dialect::Postgres) if !userinfo_is_encoded(url) => problems.add(
            key("url"),
            "has a user or password holding a character a URL cannot carry as it is (@ / ? # or a space): percent-encode it (@ is %40, / is %2F, ? is %3F, # is %23, space is %20) — also when it comes from ${ENV}",
        ),
        Some(_) => {}
        None => problems.add(
            key("url"),
            "must start with postgres://, postgresql:// or sqlite: (the application's database)",
        ),
    }
    if let Err(error) =
        auditrelay_outbox::Outbox::with_table(auditrelay_outbox::Dialect::Postgres, &outbox.table)
    {
        problems.add(key("table"), error.to_string());
    }
    if !(1..=10_000).contains(&outbox.batch) {
        problems.add(key("batch"), "must be between 1 and 10000");
    }
    if outbox.poll_interval < std::time::Duration::from_millis(1)
        || outbox.poll_interval > std::time::Duration::from_secs(60)
    {
        problems.add(key("poll_interval"), "must be between 1ms and 60s");
    }
}

/// Lower-case letters, digits, `-` and `_`, at most 64: names that label
/// metrics and logs.
fn is_instance_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

/// Whether the `user:password@` part of a URL needs no more encoding:
/// taken up to the last `@`, it holds none of the characters that would
/// end it early (and have the password read as the host, or the path).
fn userinfo_is_encoded(url: &str) -> bool {
    let Some((_, rest)) = url.split_once("://") else {
        return true;
    };
    match rest.rfind('@') {
        Some(at) => !rest[..at].contains(['@', '/', '?', '#', ' ']),
        None => true,
    }
}

fn is_memory_sqlite(url: &str) -> bool {
    url.contains(":memory:") || url.contains("mode=memory")
}
