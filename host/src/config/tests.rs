use super::*;

fn env(name: &str) -> Option<String> {
    (name == "HEC_TOKEN").then(|| "0123456789abcdef-secret".to_owned())
}

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, "relay.toml", &env)
}

const MINIMAL: &str = "[plugins.file]\ngrant_dir = \"out\"\n";

#[test]
fn embedded_default_is_valid_and_enables_the_file_plugin() {
    let config = Config::embedded_default();
    let enabled: Vec<&str> = config.enabled_plugins().map(|(name, _)| name).collect();
    assert_eq!(enabled, ["file"]);
    assert!(config.plugins["file"].grant_dir.is_some());
}

#[test]
fn defaults_fill_every_table() {
    let config = parse(MINIMAL).unwrap();
    let file = &config.plugins["file"];
    assert_eq!(file.batch.max_events, 1000);
    assert_eq!(file.limits.memory, ByteSize::mib(64));
    assert_eq!(file.retry.circuit_after, 5);
    assert_eq!(config.ingest.http.listen.port(), 8686);
}

#[test]
fn unknown_key_names_file_line_and_key() {
    let err = parse("[plugins.file]\ngrant_dir = \"out\"\n[plugins.file.batch]\nmax_event = 5\n")
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("relay.toml: "), "{err}");
    assert!(err.contains("line 4"), "{err}");
    assert!(err.contains("unknown field `max_event`"), "{err}");
    assert!(err.contains("max_events"), "suggests the valid keys: {err}");
}

#[test]
fn bad_units_are_explained() {
    let err = parse("[plugins.file.limits]\ntimeout = \"soon\"\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("line 2"), "{err}");
    assert!(err.contains("\"soon\" is not a duration"), "{err}");

    let err = parse("[plugins.file.limits]\nmemory = \"lots\"\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("line 2"), "{err}");
}

#[test]
fn env_references_expand_and_missing_ones_are_named() {
    let config = parse(
        "[plugins.hec]\nallowed_hosts = [\"hec.example.com\"]\n[plugins.hec.secrets]\ntoken = \"${HEC_TOKEN}\"\n[plugins.hec.config]\nurl = \"https://${HOST:-hec.example.com}/x\"\n",
    )
    .unwrap();
    let hec = &config.plugins["hec"];
    assert_eq!(hec.secrets["token"].expose(), "0123456789abcdef-secret");
    assert_eq!(
        hec.config["url"].as_str(),
        Some("https://hec.example.com/x")
    );

    let err = parse("[plugins.hec.secrets]\ntoken = \"${NOPE}\"\n")
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "relay.toml: plugins.hec.secrets.token: environment variable NOPE is not set (export it, or write ${NOPE:-default})"
    );
}

/// A source's secret, its mapper's secrets and config and a file source's
/// paths are templated like a plugin's: a literal `${WEBHOOK_SECRET}`
/// would otherwise be the HMAC key (it is long enough to pass the check).
#[test]
fn source_secrets_mapper_settings_and_paths_expand() {
    let config = parse(&format!(
        "[ingest.webhook.shop]\nauth = \"hmac\"\nsecret = \"${{HEC_TOKEN}}\"\n[ingest.webhook.shop.mapper]\nplugin = \"json-map\"\n[ingest.webhook.shop.mapper.secrets]\nkey = \"${{HEC_TOKEN}}\"\n[ingest.webhook.shop.mapper.config]\ntenant = \"${{TENANT:-acme}}\"\n[ingest.file.app]\npaths = [\"${{LOGS:-/var/log}}/audit.log\"]\n[ingest.file.app.mapper]\nplugin = \"json-map\"\n[ingest.file.app.mapper.secrets]\nkey = \"${{HEC_TOKEN}}\"\n{MINIMAL}"
    ))
    .unwrap();
    let shop = &config.ingest.webhook["shop"];
    assert_eq!(shop.secret.expose(), "0123456789abcdef-secret");
    let mapper = shop.mapper.as_ref().unwrap();
    assert_eq!(mapper.secrets["key"].expose(), "0123456789abcdef-secret");
    assert_eq!(mapper.config["tenant"].as_str(), Some("acme"));
    let file = &config.ingest.file["app"];
    assert_eq!(file.paths[0], std::path::Path::new("/var/log/audit.log"));
    let file_mapper = file.mapper.as_ref().unwrap();
    assert_eq!(
        file_mapper.secrets["key"].expose(),
        "0123456789abcdef-secret"
    );

    let err = parse(&format!(
        "[ingest.webhook.shop]\nauth = \"bearer\"\nsecret = \"${{NOPE}}\"\n{MINIMAL}"
    ))
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("ingest.webhook.shop.secret: environment variable NOPE is not set"),
        "{err}"
    );
}

#[test]
fn secrets_never_show_in_debug_output() {
    let config = parse(
        "[ingest.http]\nauth_token = \"${HEC_TOKEN}\"\n[plugins.hec.secrets]\ntoken = \"${HEC_TOKEN}\"\n",
    )
    .unwrap();
    let dump = format!("{config:?}");
    assert!(!dump.contains("0123456789abcdef-secret"), "{dump}");
    assert!(dump.contains("Secret(***)"));
}

#[test]
fn public_listener_requires_a_token() {
    let err = parse(&format!(
        "[ingest.http]\nlisten = \"0.0.0.0:8686\"\n{MINIMAL}"
    ))
    .unwrap_err()
    .to_string();
    assert!(err.contains("ingest.http.auth_token: is required"), "{err}");
    let err = parse(&format!("[ingest.http]\nauth_token = \"short\"\n{MINIMAL}"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("at least 16 characters"), "{err}");
}

#[test]
fn semantic_errors_name_the_key() {
    let cases = [
        (
            "[plugins.x]\nallowed_hosts = [\"https://a.com/x\"]\n",
            "plugins.x.allowed_hosts[0]",
        ),
        (
            "[plugins.x.batch]\nmax_events = 0\n",
            "plugins.x.batch.max_events",
        ),
        (
            "[plugins.x.limits]\nmemory = \"1MiB\"\n",
            "plugins.x.limits.memory",
        ),
        (
            "[plugins.x.filter]\ntypes = [\"a*b\"]\n",
            "plugins.x.filter.types[0]",
        ),
        ("[plugins.Bad]\n", "plugins.Bad"),
        ("[plugins.x]\nplugin = \"x.wasm\"\n", "plugins.x.plugin"),
        (
            "[plugins.x]\nenabled = false\n",
            "plugins: no plugin is enabled",
        ),
    ];
    for (text, key) in cases {
        let err = parse(text).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("relay.toml: {key}")),
            "{text}: {err}"
        );
    }
}

#[test]
fn host_patterns_accept_ports_and_wildcards() {
    parse(
        "[plugins.x]\nallowed_hosts = [\"a.example.com\", \"*.example.com\", \"127.0.0.1:9000\"]\n",
    )
    .unwrap();
}

#[test]
fn relative_paths_follow_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("relay.toml");
    std::fs::write(&path, MINIMAL).unwrap();
    let config = Config::load(&path).unwrap();
    assert_eq!(
        config.plugins["file"].grant_dir.as_deref(),
        Some(dir.path().join("out").as_path())
    );
    assert_eq!(config.relay.plugin_dir, dir.path().join("plugins"));
}

/// `docs/configuration.md` is the operator's reference: each of its tables
/// must list exactly the keys serde reads for that section, and each
/// default written as TOML (in backticks) must be what the code uses when
/// the key is left out.
#[test]
fn the_configuration_reference_documents_every_key_with_its_real_default() {
    use auditrelay_plugin_api::testing::config_docs::struct_fields;
    let sections: [(&str, &[&str]); 21] = [
        ("redact", struct_fields::<crate::redact::RedactRule>()),
        ("integrity", struct_fields::<IntegritySettings>()),
        ("relay", struct_fields::<RelaySettings>()),
        ("spool", struct_fields::<SpoolSettings>()),
        ("ingest.http", struct_fields::<HttpIngestSettings>()),
        ("ingest.outbox.<name>", struct_fields::<OutboxSettings>()),
        ("ingest.webhook.<name>", struct_fields::<WebhookSettings>()),
        (
            "ingest.webhook.<name>.mapper",
            struct_fields::<MapperSettings>(),
        ),
        (
            "ingest.webhook.<name>.mapper.limits",
            struct_fields::<MapperLimits>(),
        ),
        ("ingest.file.<name>", struct_fields::<FileSettings>()),
        (
            "ingest.file.<name>.mapper",
            struct_fields::<MapperSettings>(),
        ),
        (
            "ingest.file.<name>.mapper.limits",
            struct_fields::<MapperLimits>(),
        ),
        ("ingest.poll.<name>", struct_fields::<PollSettings>()),
        ("ingest.poll.<name>.cursor", struct_fields::<FieldCursor>()),
        (
            "ingest.poll.<name>.mapper",
            struct_fields::<MapperSettings>(),
        ),
        (
            "ingest.poll.<name>.mapper.limits",
            struct_fields::<MapperLimits>(),
        ),
        ("plugins.<name>", struct_fields::<PluginSettings>()),
        ("plugins.<name>.limits", struct_fields::<LimitSettings>()),
        ("plugins.<name>.batch", struct_fields::<BatchSettings>()),
        ("plugins.<name>.filter", struct_fields::<FilterSettings>()),
        ("plugins.<name>.retry", struct_fields::<RetrySettings>()),
    ];
    let tables = reference_tables(include_str!("../../../docs/configuration.md"));
    let baseline = format!("{:?}", parse(MINIMAL).unwrap());
    let outbox = "[ingest.outbox.app]\nurl = \"sqlite:///var/lib/app/app.db\"\n";
    let outbox_baseline = format!("{:?}", parse(&format!("{outbox}{MINIMAL}")).unwrap());
    let webhook = "[ingest.webhook.shop]\nauth = \"hmac\"\nsecret = \"0123456789abcdef\"\n";
    let webhook_baseline = format!("{:?}", parse(&format!("{webhook}{MINIMAL}")).unwrap());
    let mapper = "[ingest.webhook.shop.mapper]\nplugin = \"json-map\"\n";
    let mapper_baseline = format!(
        "{:?}",
        parse(&format!("{webhook}{mapper}{MINIMAL}")).unwrap()
    );
    let file = "[ingest.file.app]\npaths = [\"/var/log/app/audit.log\"]\n";
    let file_baseline = format!("{:?}", parse(&format!("{file}{MINIMAL}")).unwrap());
    let file_mapper = "[ingest.file.app.mapper]\nplugin = \"json-map\"\n";
    let file_mapper_baseline = format!(
        "{:?}",
        parse(&format!("{file}{file_mapper}{MINIMAL}")).unwrap()
    );
    let poll = "[ingest.poll.idp]\nurl = \"https://idp.example/api/events\"\nnext = \"/next\"\n";
    let poll_baseline = format!("{:?}", parse(&format!("{poll}{MINIMAL}")).unwrap());
    let poll_cursor = "[ingest.poll.idp]\nurl = \"https://idp.example/api/events\"\n[ingest.poll.idp.cursor]\nfield = \"/created\"\nparam = \"created__gte\"\n";
    let poll_cursor_baseline = format!("{:?}", parse(&format!("{poll_cursor}{MINIMAL}")).unwrap());
    let poll_mapper = "[ingest.poll.idp.mapper]\nplugin = \"json-map\"\n";
    let poll_mapper_baseline = format!(
        "{:?}",
        parse(&format!("{poll}{poll_mapper}{MINIMAL}")).unwrap()
    );
    const REDACT_RULE: &str = "[[redact]]\nname = \"r\"\nkeys = [\"k\"]\n";
    let redact_baseline = format!("{:?}", parse(&format!("{REDACT_RULE}{MINIMAL}")).unwrap());
    let mut problems = Vec::new();
    for (section, fields) in sections {
        let Some(rows) = tables
            .iter()
            .find(|(name, _)| name == section)
            .map(|(_, r)| r)
        else {
            problems.push(format!("no table for `[{section}]`"));
            continue;
        };
        for field in fields {
            let subsection = format!("{section}.{field}");
            let documented = rows.iter().any(|(key, _)| key == field)
                || tables.iter().any(|(name, _)| *name == subsection);
            if !documented {
                problems.push(format!("`[{section}]` key `{field}` is not documented"));
            }
        }
        for (key, default) in rows {
            if !fields.contains(&key.as_str()) {
                problems.push(format!(
                    "`[{section}]` documents `{key}`, which the code does not read"
                ));
                continue;
            }
            // A default in backticks is TOML; `<...>` marks a template
            // ("<data_dir>/cache") and words describe a derived value.
            let Some(toml) = default.strip_prefix('`').and_then(|d| d.split('`').next()) else {
                continue;
            };
            if toml.contains('<') {
                continue;
            }
            let (text, baseline) = match section.strip_prefix("plugins.<name>") {
                Some("") => (
                    format!("[plugins.file]\ngrant_dir = \"out\"\n{key} = {toml}\n"),
                    &baseline,
                ),
                Some(sub) => (
                    format!("{MINIMAL}[plugins.file{sub}]\n{key} = {toml}\n"),
                    &baseline,
                ),
                None if section == "redact" => (
                    format!("{REDACT_RULE}{key} = {toml}\n{MINIMAL}"),
                    &redact_baseline,
                ),
                None if section == "ingest.webhook.<name>" => (
                    format!("{webhook}{key} = {toml}\n{MINIMAL}"),
                    &webhook_baseline,
                ),
                None if section == "ingest.webhook.<name>.mapper" => (
                    format!("{webhook}{mapper}{key} = {toml}\n{MINIMAL}"),
                    &mapper_baseline,
                ),
                None if section == "ingest.webhook.<name>.mapper.limits" => (
                    format!(
                        "{webhook}{mapper}[ingest.webhook.shop.mapper.limits]\n{key} = {toml}\n{MINIMAL}"
                    ),
                    &mapper_baseline,
                ),
                None if section == "ingest.file.<name>" => {
                    (format!("{file}{key} = {toml}\n{MINIMAL}"), &file_baseline)
                }
                None if section == "ingest.file.<name>.mapper" => (
                    format!("{file}{file_mapper}{key} = {toml}\n{MINIMAL}"),
                    &file_mapper_baseline,
                ),
                None if section == "ingest.file.<name>.mapper.limits" => (
                    format!(
                        "{file}{file_mapper}[ingest.file.app.mapper.limits]\n{key} = {toml}\n{MINIMAL}"
                    ),
                    &file_mapper_baseline,
                ),
                None if section == "ingest.poll.<name>" => {
                    (format!("{poll}{key} = {toml}\n{MINIMAL}"), &poll_baseline)
                }
                None if section == "ingest.poll.<name>.cursor" => (
                    format!("{poll_cursor}{key} = {toml}\n{MINIMAL}"),
                    &poll_cursor_baseline,
                ),
                None if section == "ingest.poll.<name>.mapper" => (
                    format!("{poll}{poll_mapper}{key} = {toml}\n{MINIMAL}"),
                    &poll_mapper_baseline,
                ),
                None if section == "ingest.poll.<name>.mapper.limits" => (
                    format!(
                        "{poll}{poll_mapper}[ingest.poll.idp.mapper.limits]\n{key} = {toml}\n{MINIMAL}"
                    ),
                    &poll_mapper_baseline,
                ),
                None if section == "ingest.outbox.<name>" => (
                    format!("{outbox}{key} = {toml}\n{MINIMAL}"),
                    &outbox_baseline,
                ),
                None => (format!("[{section}]\n{key} = {toml}\n{MINIMAL}"), &baseline),
            };
            match parse(&text) {
                Err(error) => {
                    problems.push(format!("`[{section}]` {key} = {toml} is refused: {error}"))
                }
                Ok(config) if format!("{config:?}") != *baseline => problems.push(format!(
                    "`[{section}]` {key}: the documented default {toml} is not what the code uses"
                )),
                Ok(_) => {}
            }
        }
    }
    assert!(
        problems.is_empty(),
        "docs/configuration.md:\n  - {}",
        problems.join("\n  - ")
    );
}

/// The key tables of the configuration reference: for each heading naming
/// a section (`` ## `[spool]`: ... ``), its rows as (key, default column).
fn reference_tables(doc: &str) -> Vec<(String, Vec<(String, String)>)> {
    let mut tables: Vec<(String, Vec<(String, String)>)> = Vec::new();
    for line in doc.lines() {
        if line.starts_with('#') {
            // A heading naming no section (`allowed_hosts` patterns) ends
            // the last one's table too.
            // `[[redact]]` names the section `redact`, as `[spool]` does.
            let section = line
                .split("`[")
                .nth(1)
                .and_then(|s| s.trim_start_matches('[').split(']').next());
            tables.push((section.unwrap_or_default().to_owned(), Vec::new()));
        } else if let Some(row) = line.strip_prefix("| `") {
            let cells: Vec<&str> = row.split(" | ").collect();
            if let (Some((_, rows)), [key, default, ..]) = (tables.last_mut(), cells.as_slice()) {
                rows.push((key.trim_end_matches('`').to_owned(), (*default).to_owned()));
            }
        }
    }
    tables
}

#[test]
fn every_unusable_value_is_reported_at_once() {
    let error = parse(
        "[relay]\nplugin_threads = 0\n[spool]\ngroup_commit = \"0s\"\n\
         [plugins.file]\ngrant_dir = \"out\"\n[plugins.file.batch]\nmax_events = 0\n\
         [plugins.file.filter]\ntypes = [\"a*b\"]\n",
    )
    .unwrap_err();
    let ConfigError::Several { problems, .. } = &error else {
        panic!("expected every problem, got {error}");
    };
    let keys: Vec<&str> = problems.iter().map(|(key, _)| key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "relay.plugin_threads",
            "spool.group_commit",
            "plugins.file.batch.max_events",
            "plugins.file.filter.types[0]",
        ]
    );
    let text = error.to_string();
    assert!(
        text.starts_with(
            "relay.toml: 4 problems:\n  - relay.plugin_threads: must be between 1 and 256\n"
        ),
        "{text}"
    );
}

#[test]
fn absurd_sizes_are_refused_by_name_not_overflowed() {
    for (text, key) in [
        ("[spool]\nsegment_size = \"9EiB\"\n", "spool.segment_size"),
        ("[relay]\nmax_event_bytes = \"100EiB\"\n", "spool.max_size"),
    ] {
        let error = parse(&format!("{text}{MINIMAL}")).unwrap_err().to_string();
        assert!(error.contains(key), "{error}");
    }
}

/// Every problem of an outbox table is named at once, by key, and the URL
/// (a secret) is never quoted back.
#[test]
fn outbox_problems_are_named_together_and_the_url_is_not_shown() {
    let text = format!(
        "{MINIMAL}[ingest.outbox.Orders]\nurl = \"mysql://app:s3cret-pw@db/app\"\ntable = \"orders; drop\"\nbatch = 0\npoll_interval = \"0s\"\n\
         [ingest.outbox.mem]\nurl = \"sqlite::memory:\"\n"
    );
    let error = parse(&text).unwrap_err().to_string();
    for key in [
        "ingest.outbox.Orders: outbox names use lower-case",
        "ingest.outbox.Orders.url: must start with postgres://",
        "ingest.outbox.Orders.table: outbox table name \"orders; drop\" is not allowed",
        "ingest.outbox.Orders.batch: must be between 1 and 10000",
        "ingest.outbox.Orders.poll_interval: must be between 1ms and 60s",
        "ingest.outbox.mem.url: names an in-memory SQLite database",
    ] {
        assert!(error.contains(key), "{key} missing from:\n{error}");
    }
    assert!(!error.contains("s3cret"), "{error}");
    let ok = format!(
        "{MINIMAL}[ingest.outbox.app]\nurl = \"postgres://app:${{PW}}@db/app\"\non_spooled = \"mark_done\"\n"
    );
    let config = Config::parse(&ok, "relay.toml", &|name| {
        (name == "PW").then(|| "pw".into())
    })
    .unwrap();
    let outbox = &config.ingest.outbox["app"];
    assert_eq!(outbox.url.expose(), "postgres://app:pw@db/app");
    assert_eq!(outbox.on_spooled, OnSpooled::MarkDone);
    assert!(
        !format!("{config:?}").contains("app:pw"),
        "Debug shows the URL"
    );
}

#[test]
fn a_webhook_source_is_checked_whole_and_its_secret_never_shown() {
    let text = format!(
        r#"
[ingest.webhook.Shop]
auth = "hmac"
secret = "short-secret"
signature_header = "X-Sig"
max_skew = "2h"
metadata_headers = ["authorization", "x-webhook-timestamp", "x-shop-topic", "X-Bad"]
[ingest.webhook.Shop.mapper]
plugin = ""
[ingest.webhook.Shop.mapper.limits]
memory = "1MiB"
timeout = "1ms"
{MINIMAL}"#
    );
    let error = parse(&text).unwrap_err().to_string();
    for problem in [
        "ingest.webhook.Shop: source names use lower-case letters",
        "ingest.webhook.Shop.secret: must be at least 16 bytes",
        "ingest.webhook.Shop.signature_header: \"X-Sig\" is not a lower-case header name",
        "ingest.webhook.Shop.max_skew: must be between 1s and 1h",
        "ingest.webhook.Shop.metadata_headers: \"authorization\" carries credentials",
        "ingest.webhook.Shop.metadata_headers: \"x-webhook-timestamp\" carries credentials",
        "ingest.webhook.Shop.metadata_headers: \"X-Bad\" is not a lower-case header name",
        "ingest.webhook.Shop.mapper.plugin: names no mapper",
        "ingest.webhook.Shop.mapper.limits.memory: must be between 4MiB and 4GiB",
        "ingest.webhook.Shop.mapper.limits.timeout: must be at least 10ms",
    ] {
        assert!(error.contains(problem), "{problem:?} in:\n{error}");
    }
    assert!(!error.contains("x-shop-topic"), "{error}");
    assert!(!error.contains("short-secret"), "{error}");
    let unknown = parse(&format!(
        "[ingest.webhook.shop]\nauth = \"hmac-v1\"\nsecret = \"0123456789abcdef\"\n{MINIMAL}"
    ))
    .unwrap_err()
    .to_string();
    assert!(
        unknown.contains("bearer") && unknown.contains("hub-signature"),
        "{unknown}"
    );
}

/// A file source's problems are named together, each with its key.
#[test]
fn poller_problems_are_named_together() {
    let err = parse(&format!(
        "[ingest.poll.Bad]\nurl = \"ftp://x\"\ninterval = \"1ms\"\nmax_pages = 0\ntimeout = \"1h\"\nmax_page_bytes = \"1B\"\nrecords = \"results\"\n\
         [ingest.poll.idp]\nurl = \"http://idp.example/api\"\nauth = \"bearer\"\nsecret = \"t0ken-t0ken-t0ken\"\nnext = \"next\"\nusername = \"u\"\n\
         [ingest.poll.idp.secret_headers]\nAuthorization = \"Bearer x\"\n\"bad header\" = \"v\"\n[ingest.poll.idp.cursor]\nfield = \"created\"\nparam = \"\"\n\
         [ingest.poll.creds]\nurl = \"https://u:p@idp.example/api\"\nauth = \"basic\"\n[ingest.poll.creds.cursor]\nfield = \"/pk\"\nparam = \"pk__gt\"\n\
         [ingest.poll.loop]\nurl = \"http://127.0.0.1:9/api\"\nsecret = \"s3cret-s3cret\"\nnext = \"link-header\"\n\
         [ingest.file.loop]\npaths = [\"/var/log/a.log\"]\n{MINIMAL}"
    ))
    .unwrap_err()
    .to_string();
    for wanted in [
        "ingest.poll.Bad: source names use lower-case",
        "ingest.poll.Bad.url: uses \"ftp\"; only https://",
        "ingest.poll.Bad: says neither how to page nor where it stopped",
        "ingest.poll.Bad.records: \"results\" is not a JSON pointer",
        "ingest.poll.Bad.interval: must be between 100ms and 24h",
        "ingest.poll.Bad.max_pages: must be between 1 and 10000",
        "ingest.poll.Bad.timeout: must be between 100ms and 10m",
        "ingest.poll.Bad.max_page_bytes: must be between 1KiB and 256MiB",
        "ingest.poll.idp.url: is plain http:// to another machine, and the requests carry credentials",
        "ingest.poll.idp: sets both cursor and next",
        "ingest.poll.idp.cursor.field: \"created\" is not a JSON pointer",
        "ingest.poll.idp.cursor.param: names no query parameter",
        "ingest.poll.idp.next: \"next\" is neither a JSON pointer",
        "ingest.poll.idp.username: is only used with auth = \"basic\"",
        "ingest.poll.idp.secret_headers.Authorization: is set by auth already",
        "ingest.poll.idp.secret_headers.bad header: is not a header name",
        "ingest.poll.creds.url: holds credentials",
        "ingest.poll.creds.secret: is missing",
        "ingest.poll.creds.username: is missing",
        "ingest.poll.loop.secret: is set but auth = \"none\"",
        "ingest.poll.loop: [ingest.file.loop] has the same name",
    ] {
        assert!(err.contains(wanted), "{wanted:?} missing from:\n{err}");
    }
    // Neither the secrets nor the URL's password are quoted back.
    for secret in ["t0ken-t0ken-t0ken", "s3cret-s3cret", "Bearer x"] {
        assert!(!err.contains(secret), "{secret} in:\n{err}");
    }
}

/// A poller's URL, user name, secret and header values expand.
#[test]
fn poller_settings_expand() {
    let config = parse(&format!(
        "[ingest.poll.idp]\nurl = \"https://${{IDP:-idp.example}}/api/v3/events/events/\"\nauth = \"basic\"\nusername = \"${{TENANT:-relay}}\"\nsecret = \"${{HEC_TOKEN}}\"\nnext = \"/next\"\n[ingest.poll.idp.headers]\nAccept = \"${{ACCEPT:-application/json}}\"\n[ingest.poll.idp.secret_headers]\nX-Api-Key = \"${{HEC_TOKEN}}\"\n{MINIMAL}"
    ))
    .unwrap();
    let idp = &config.ingest.poll["idp"];
    assert_eq!(idp.url, "https://idp.example/api/v3/events/events/");
    assert_eq!(idp.username.as_deref(), Some("relay"));
    assert_eq!(
        idp.secret.as_ref().unwrap().expose(),
        "0123456789abcdef-secret"
    );
    assert_eq!(idp.headers["Accept"], "application/json");
    assert_eq!(
        idp.secret_headers["X-Api-Key"].expose(),
        "0123456789abcdef-secret"
    );
}

#[test]
fn file_source_problems_are_named_together() {
    let err = parse(&format!(
        "[ingest.file.Bad]\npaths = []\nformat = \"lines\"\nbatch = 0\nmax_line_bytes = \"10B\"\npoll_interval = \"1ms\"\n[ingest.file.app]\npaths = [\"logs/\", \"a[.log\", \"logs/**/*.log\"]\n[ingest.webhook.app]\nauth = \"bearer\"\nsecret = \"0123456789abcdef\"\n{MINIMAL}"
    ))
    .unwrap_err()
    .to_string();
    for wanted in [
        "ingest.file.Bad: source names use lower-case",
        "ingest.file.Bad.paths: names no file",
        "ingest.file.Bad.format: \"lines\" (plain text) needs a mapper",
        "ingest.file.Bad.batch: must be between 1 and 100000",
        "ingest.file.Bad.max_line_bytes: must be between 1KiB and 64MiB",
        "ingest.file.Bad.poll_interval: must be between 10ms and 1h",
        "ingest.file.app.paths[0]: \"logs/\" is a directory",
        "ingest.file.app.paths[1]: \"a[.log\" is not a glob",
        "ingest.file.app.paths[2]: \"logs/**/*.log\": recursive globs (**) are not followed",
        "ingest.file.app: [ingest.webhook.app] has the same name",
    ] {
        assert!(err.contains(wanted), "{wanted:?} missing from:\n{err}");
    }
}
