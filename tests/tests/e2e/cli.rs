//! The `auditrelay` binary, as an operator uses it.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use auditrelay_tests::{Home, compile_c_plugin, ndjson_lines, relay_binary, sample_envelope};

fn auditrelay(args: &[&str]) -> Output {
    Command::new(relay_binary())
        .args(args)
        .env("RUST_LOG", "info")
        .output()
        .expect("running auditrelay")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn help_lists_every_command() {
    let output = auditrelay(&["--help"]);
    assert!(output.status.success());
    let help = text(&output.stdout);
    for command in ["run", "check", "plugins", "emit", "tail", "demo", "outbox"] {
        assert!(help.contains(&format!("  {command}")), "{help}");
    }
}

#[test]
fn check_passes_a_good_config_and_names_what_is_wrong_in_a_bad_one() {
    let home = Home::with_plugins(&["file"]);
    let good = home.config_file("[plugins.file]\ngrant_dir = \"{home}/out\"\n");
    let output = auditrelay(&["check", "-c", good.to_str().unwrap()]);
    assert!(
        output.status.success(),
        "{}{}",
        text(&output.stdout),
        text(&output.stderr)
    );
    assert!(text(&output.stdout).contains("ok   [plugins.file]: file 0.1.0 starts"));

    // An unknown key: the file, the line, the key.
    let typo = home.join("typo.toml");
    std::fs::write(
        &typo,
        "[plugins.file]\ngrant_dir = \"out\"\n[plugins.file.batch]\nmax_event = 5\n",
    )
    .unwrap();
    let output = auditrelay(&["check", "-c", typo.to_str().unwrap()]);
    assert!(!output.status.success());
    let error = text(&output.stderr);
    assert!(error.contains("typo.toml"), "{error}");
    assert!(error.contains("line 4"), "{error}");
    assert!(error.contains("unknown field `max_event`"), "{error}");

    // A config the plugin's init refuses: the instance and the key.
    let refused = home.config_file("[plugins.file]\ngrant_dir = \"{home}/out\"\n[plugins.file.config]\nrotate_bytes = \"lots\"\n");
    let output = auditrelay(&["check", "-c", refused.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    let report = text(&output.stdout);
    assert!(report.contains("FAIL [plugins.file]"), "{report}");
    assert!(report.contains("config.rotate_bytes"), "{report}");
}

#[test]
fn check_starts_each_sources_mapper_and_names_what_it_refuses() {
    let home = Home::with_plugins(&["file", "json-map"]);
    let webhook = |fields: &str| {
        home.config_file(&format!(
            "[plugins.file]\ngrant_dir = \"{{home}}/out\"\n\
             [ingest.webhook.shop]\nauth = \"bearer\"\nsecret = \"0123456789abcdef\"\n\
             [ingest.webhook.shop.mapper]\nplugin = \"json-map\"\n\
             [ingest.webhook.shop.mapper.config]\nconstants = {{ \"action.outcome\" = \"success\" }}\n{fields}\n"
        ))
    };
    let good = webhook("fields = { type = \"/kind\", time = \"/at\", \"actor.id\" = \"/user\" }");
    let output = auditrelay(&["check", "-c", good.to_str().unwrap()]);
    let report = text(&output.stdout);
    assert!(output.status.success(), "{report}{}", text(&output.stderr));
    assert!(
        report.contains("ok   [ingest.webhook.shop.mapper]: json-map starts"),
        "{report}"
    );
    let bad = webhook("fields = { type = \"kind\" }");
    let output = auditrelay(&["check", "-c", bad.to_str().unwrap()]);
    let report = text(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{report}");
    assert!(
        report.contains("FAIL [ingest.webhook.shop.mapper]"),
        "{report}"
    );
    assert!(
        report.contains("config.fields.type: \"kind\" is not a JSON pointer"),
        "{report}"
    );
    assert!(report.contains("nothing fills `actor.id`"), "{report}");

    // A file source's mapper is started the same way.
    let file = home.config_file(
        "[plugins.file]\ngrant_dir = \"{home}/out\"\n\
         [ingest.file.ocis]\npaths = [\"{home}/logs/*.log\"]\n\
         [ingest.file.ocis.mapper]\nplugin = \"json-map\"\n\
         [ingest.file.ocis.mapper.config]\nfields = { type = \"kind\" }\n",
    );
    let output = auditrelay(&["check", "-c", file.to_str().unwrap()]);
    let report = text(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{report}");
    assert!(
        report.contains("FAIL [ingest.file.ocis.mapper]"),
        "{report}"
    );
}

#[test]
fn plugins_lists_each_file_with_its_kind_interface_isolation_and_hash() {
    let home = Home::with_plugins(&["file", "json-map"]);
    home.add_native_plugin("auditrelay_plugin_file");
    compile_c_plugin("wrong_abi.c", &home.plugin_dir());
    std::fs::write(home.plugin_dir().join("broken.wasm"), b"nope").unwrap();
    let config = home.config_file(
        "[plugins.archive]\nplugin = \"file\"\nkind = \"wasm\"\ngrant_dir = \"{home}/out\"\n\
         [plugins.fast]\nplugin = \"file\"\nkind = \"native\"\nisolation = \"in-process\"\n",
    );
    let output = auditrelay(&["plugins", "-c", config.to_str().unwrap()]);
    assert!(output.status.success());
    let listing = text(&output.stdout);
    for expected in [
        "file 0.1.0 - Appends events as NDJSON",
        "kind:      wasm (sandboxed: only what its instance is granted)",
        "interface: auditrelay:plugin@1.1.0, world exporter-plugin (WIT)",
        "json-map 0.1.0 - ",
        "interface: auditrelay:plugin@1.1.0, world mapper-plugin (WIT)",
        "used by:   [plugins.archive] (enabled)",
        "kind:      native (trusted code with full network and filesystem access",
        "interface: native ABI 1 (include/auditrelay_plugin.h)",
        "used by:   [plugins.fast] (enabled, isolation in-process)",
        "rotate_bytes",
        "broken.wasm: is not a WebAssembly file",
        "libwrong_abi.so: implements native plugin ABI version 2, but this relay speaks ABI version 1",
    ] {
        assert!(listing.contains(expected), "{expected:?} in:\n{listing}");
    }

    let output = auditrelay(&["plugins", "--json", "-c", config.to_str().unwrap()]);
    let entries: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let native = entries
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "native")
        .unwrap();
    assert_eq!(native["name"], "file");
    assert_eq!(native["trusted"], true);
    let library = home.plugin_dir().join("libauditrelay_plugin_file.so");
    let sum = std::process::Command::new("sha256sum")
        .arg(&library)
        .output()
        .unwrap();
    assert_eq!(
        native["sha256"].as_str().unwrap(),
        text(&sum.stdout).split_whitespace().next().unwrap()
    );
}

/// `auditrelay run` as a child process, with the address it listens on.
struct Running {
    child: Child,
    url: String,
}

fn start_relay(config: &std::path::Path) -> Running {
    let mut child = Command::new(relay_binary())
        .args(["run", "-c", config.to_str().unwrap()])
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting auditrelay run");
    let stderr = child.stderr.take().unwrap();
    let (lines, found) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = lines.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let Ok(line) = found.recv_timeout(Duration::from_millis(100)) else {
            continue;
        };
        if let Some(rest) = line.split("accepting events at ").nth(1) {
            let url = rest.split("/v1/events").next().unwrap().to_owned();
            return Running { child, url };
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("auditrelay run did not start listening");
}

#[test]
fn run_takes_events_from_emit_and_delivers_them_before_exiting_on_sigterm() {
    let home = Home::with_plugins(&["file"]);
    let config = home.config_file(
        "[plugins.file]\ngrant_dir = \"{home}/out\"\n[plugins.file.batch]\nmax_wait = \"1h\"\n",
    );
    let mut relay = start_relay(&config);

    let events = home.join("events.ndjson");
    let mut file = std::fs::File::create(&events).unwrap();
    for i in 0..100 {
        writeln!(
            file,
            "{}",
            String::from_utf8(sample_envelope(i).to_canonical_json()).unwrap()
        )
        .unwrap();
    }
    drop(file);
    let output = auditrelay(&[
        "emit",
        events.to_str().unwrap(),
        "--url",
        &relay.url,
        "--batch-size",
        "30",
    ]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(text(&output.stdout).trim(), "100 accepted, 0 refused");
    // The same file again: acknowledged, and said to be copies.
    let output = auditrelay(&["emit", events.to_str().unwrap(), "--url", &relay.url]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(
        text(&output.stdout).trim(),
        "100 accepted (100 of them copies of events the relay already had, not spooled again), 0 refused"
    );

    // A refused event: named on stderr, non-zero exit.
    let bad = home.join("bad.json");
    std::fs::write(&bad, r#"{"id":"e1","source":"s","type":"t","time":"2026-01-01T00:00:00Z","actor":{},"action":{"outcome":"success"}}"#).unwrap();
    let output = auditrelay(&["emit", bad.to_str().unwrap(), "--url", &relay.url]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        text(&output.stderr).contains("event 0 (id e1) refused: actor.id: missing field `id`"),
        "{}",
        text(&output.stderr)
    );

    // Many requests in flight: refusals still come in the input's order,
    // with their place in the whole input.
    let mixed = home.join("mixed.ndjson");
    let lines: Vec<String> = (0..100)
        .map(|i| {
            let line = String::from_utf8(sample_envelope(1000 + i).to_canonical_json()).unwrap();
            if [5, 37, 93].contains(&i) {
                line.replace("\"kind\":\"user\"", "\"kind\":\"robot\"")
            } else {
                line
            }
        })
        .collect();
    std::fs::write(&mixed, lines.join("\n")).unwrap();
    let output = auditrelay(&[
        "emit",
        mixed.to_str().unwrap(),
        "--url",
        &relay.url,
        "--batch-size",
        "7",
        "--in-flight",
        "8",
    ]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(text(&output.stdout).trim(), "97 accepted, 3 refused");
    let refused: Vec<String> = text(&output.stderr)
        .lines()
        .filter_map(|l| l.split(" (id").next().map(str::to_owned))
        .collect();
    assert_eq!(
        refused,
        ["event 5", "event 37", "event 93"],
        "{}",
        text(&output.stderr)
    );

    // SIGTERM: the relay delivers the batch it was still filling, then exits 0.
    let killed = Command::new("kill")
        .args(["-TERM", &relay.child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = relay.child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    assert_eq!(ndjson_lines(&home.join("out")).len(), 197);
}

/// Runs `auditrelay` until `output` contains `wanted` (or 30 s pass).
fn until_output(args: &[&str], wanted: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let output = auditrelay(args);
        let stdout = text(&output.stdout);
        if stdout.contains(wanted) || Instant::now() > deadline {
            return stdout;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn operators_see_status_dead_letters_and_spool_health_running_or_stopped() {
    let home = Home::with_plugins(&["faulty"]);
    let config = home.config_file(
        "[plugins.sink]\nplugin = \"faulty\"\n[plugins.sink.config]\nfault = \"permanent\"\n[plugins.sink.batch]\nmax_wait = \"10ms\"\n",
    );
    let c = config.to_str().unwrap();
    let mut relay = auditrelay_tests::RelayProcess::start(&config, &[]);
    let url = relay
        .log()
        .lines()
        .find_map(|l| {
            l.split("accepting events at ")
                .nth(1)
                .map(|u| u.split("/v1").next().unwrap().to_owned())
        })
        .unwrap();
    let events = home.join("events.ndjson");
    let lines: Vec<String> = (0..5)
        .map(|i| String::from_utf8(sample_envelope(i).to_canonical_json()).unwrap())
        .collect();
    std::fs::write(&events, lines.join("\n")).unwrap();
    let sent = auditrelay(&["emit", events.to_str().unwrap(), "--url", &url]);
    assert!(sent.status.success(), "{}", text(&sent.stderr));

    // Running: dead letters appear, status comes from the relay itself.
    let list = until_output(&["dlq", "list", "-c", c], "sink: 5 dead letter(s)");
    assert!(list.contains("sink: 5 dead letter(s)"), "{list}");
    let status = text(&auditrelay(&["status", "-c", c]).stdout);
    assert!(status.starts_with("relay: running"), "{status}");
    assert!(
        status
            .lines()
            .any(|l| l.starts_with("sink") && l.contains("running")),
        "{status}"
    );
    // A replay through the running relay: still refused, so back they come.
    let replay = auditrelay(&["dlq", "replay", "sink", "-c", c]);
    assert!(
        text(&replay.stdout).contains("replaying its dead letters now"),
        "{}",
        text(&replay.stderr)
    );
    let list = until_output(&["dlq", "list", "-c", c], "sink: 5 dead letter(s)\n");
    assert!(list.contains("sink: 5 dead letter(s)\n"), "{list}");
    assert!(relay.terminate());

    // Stopped: the same commands work on the files.
    let status = text(&auditrelay(&["status", "-c", c]).stdout);
    assert!(status.starts_with("relay: stopped"), "{status}");
    let show = text(&auditrelay(&["dlq", "show", "sink", "--limit", "2", "-c", c]).stdout);
    assert_eq!(
        show.matches("reason: fixture: destination refuses this batch")
            .count(),
        2,
        "{show}"
    );
    let refused = auditrelay(&["dlq", "purge", "sink", "-c", c]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        text(&refused.stderr).contains("add --yes"),
        "{}",
        text(&refused.stderr)
    );
    let purged = text(&auditrelay(&["dlq", "purge", "sink", "--yes", "-c", c]).stdout);
    assert!(purged.contains("deleted 5 dead letter(s)"), "{purged}");
    let verify = auditrelay(&["spool", "verify", "-c", c]);
    assert!(verify.status.success(), "{}", text(&verify.stdout));
    assert!(text(&verify.stdout).contains("the spool is intact"));
}

/// `spool verify` is exact both ways: a stray file named like a segment
/// is ignored and loses nothing, acknowledged records cut off the newest
/// segment are loss (exit 1), not "a torn write".
#[test]
fn spool_verify_tells_lost_acknowledged_records_from_strays() {
    let home = Home::with_plugins(&["faulty"]);
    // The destination never takes anything: the events stay spooled.
    let config = home.config_file(
        "[relay]\nshutdown_timeout = \"100ms\"\n[plugins.sink]\nplugin = \"faulty\"\n[plugins.sink.config]\nfault = \"retryable\"\n",
    );
    let c = config.to_str().unwrap();
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let relay = auditrelay::Relay::start(auditrelay::Config::load(&config).unwrap())
            .await
            .unwrap();
        for i in 0..50 {
            relay.emit_durable(sample_envelope(i)).await.unwrap();
        }
        relay.shutdown().await;
    });
    let segments = home.join("data/spool/segments");
    let newest = std::fs::read_dir(&segments)
        .unwrap()
        .map(|e| e.unwrap().path())
        .max()
        .unwrap();

    // A copy of a segment under another name is not one of this spool's:
    // ignored, and the spool is intact.
    std::fs::copy(&newest, segments.join("00000000000000000007.seg")).unwrap();
    let verify = auditrelay(&["spool", "verify", "-c", c]);
    let report = text(&verify.stdout);
    assert!(verify.status.success(), "{report}");
    assert!(
        report.contains("ignored") && report.contains("the spool is intact"),
        "{report}"
    );
    // Junk under a segment's name could be a segment whose header is gone:
    // damage (exit 1), though no record is missing.
    std::fs::write(
        segments.join("00000000000000000007.seg"),
        b"an old copy, truncated",
    )
    .unwrap();
    let verify = auditrelay(&["spool", "verify", "-c", c]);
    let report = text(&verify.stdout);
    assert_eq!(verify.status.code(), Some(1), "{report}");
    assert!(
        report.contains("no record a plugin instance still needs was lost"),
        "{report}"
    );
    std::fs::remove_file(segments.join("00000000000000000007.seg")).unwrap();

    let len = std::fs::metadata(&newest).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&newest)
        .unwrap()
        .set_len(len - 5)
        .unwrap();
    let verify = auditrelay(&["spool", "verify", "-c", c]);
    let report = text(&verify.stdout);
    assert_eq!(verify.status.code(), Some(1), "{report}");
    assert!(
        report.contains("records 49..50 were acknowledged as durable but are gone"),
        "{report}"
    );
    assert!(
        report.contains("1 record(s) that a plugin instance still needed are lost"),
        "{report}"
    );
}

/// `outbox schema` prints DDL that `sqlite3` applies as it is, and
/// `outbox check` says what is wrong with a database (naming the fix) and
/// that it is fine once the DDL ran; neither shows the URL's password.
#[test]
fn outbox_schema_creates_what_outbox_check_wants() {
    let home = Home::with_plugins(&["file"]);
    let db = home.join("app.db");
    let config = home.config_file(&format!(
        "[ingest.outbox.app]\nurl = \"sqlite://{}\"\n[ingest.outbox.orders]\nurl = \"postgres://app:S3cret-pw-91@127.0.0.1:1/app\"\n[plugins.file]\ngrant_dir = \"{{home}}/out\"\n",
        db.display()
    ));
    let config = config.to_str().unwrap();

    // No database file yet: a wrong path, said as such.
    let output = auditrelay(&["outbox", "check", "-c", config, "app"]);
    assert!(!output.status.success());
    let said = text(&output.stdout);
    assert!(said.contains("ingest.outbox.app: sqlite"), "{said}");

    // What `... | sqlite3 app.db` would do, without needing the sqlite3
    // program: the printed text run as one script.
    let sqlite = |sql: &str| {
        use sqlx::Connection;
        let url = format!("sqlite://{}?mode=rwc", db.display());
        let sql = sqlx::AssertSqlSafe(sql.to_owned());
        tokio::runtime::Runtime::new().unwrap().block_on(async {
            let mut db = sqlx::SqliteConnection::connect(&url).await.unwrap();
            sqlx::raw_sql(sql).execute(&mut db).await.unwrap();
        });
    };
    sqlite("CREATE TABLE unrelated (x)");
    let output = auditrelay(&["outbox", "check", "-c", config, "app"]);
    assert!(!output.status.success());
    let said = text(&output.stdout);
    assert!(
        said.contains("table auditrelay_outbox does not exist")
            && said.contains("auditrelay outbox schema --dialect sqlite"),
        "{said}"
    );

    let schema = auditrelay(&["outbox", "schema", "--dialect", "sqlite"]);
    assert!(schema.status.success());
    sqlite(&text(&schema.stdout));
    let output = auditrelay(&["outbox", "check", "-c", config, "app"]);
    assert!(output.status.success(), "{}", text(&output.stdout));
    assert!(text(&output.stdout).contains("ingest.outbox.app: ok"));

    // All outboxes: the unreachable PostgreSQL one fails, without its password.
    let output = auditrelay(&["outbox", "check", "-c", config]);
    assert!(!output.status.success());
    let said = format!("{}{}", text(&output.stdout), text(&output.stderr));
    assert!(
        said.contains("ingest.outbox.orders: postgres 127.0.0.1:1/app"),
        "{said}"
    );
    assert!(!said.contains("S3cret"), "{said}");
}

/// Found by an outside review: a literal password containing `${` (random passwords do) makes
/// `${ENV}` interpolation fail, and its message quotes the whole URL,
/// password included, on stderr of every command that loads the config.
#[test]
fn an_interpolation_error_in_the_outbox_url_never_shows_the_password() {
    let home = Home::with_plugins(&["file"]);
    let password = "Zq9${Vx7-Secret-Tail";
    let config = home.config_file(&format!(
        "[ingest.outbox.app]\nurl = \"postgres://app:{password}@db.internal:5432/app\"\n\
         [plugins.file]\ngrant_dir = \"{{home}}/events\"\n"
    ));
    for args in [["check", "-c"], ["run", "-c"]] {
        let mut args = args.to_vec();
        args.push(config.to_str().unwrap());
        let output = auditrelay(&args);
        assert!(!output.status.success());
        let all = format!("{}{}", text(&output.stdout), text(&output.stderr));
        assert!(
            !all.contains("Secret-Tail"),
            "`auditrelay {}` shows the password:\n{all}",
            args[0]
        );
    }
}

/// `auditrelay tail` prints the events of a type as they come, and goes on
/// across a restart of the relay without printing one twice or missing one
/// (it reconnects with `Last-Event-ID`).
#[test]
fn tail_prints_filtered_events_across_a_relay_restart() {
    let home = Home::with_plugins(&["file"]);
    let port = auditrelay_tests::free_port();
    let config = home.config_file(&format!(
        "[ingest.http]\nlisten = \"127.0.0.1:{port}\"\n[plugins.file]\ngrant_dir = \"{{home}}/out\"\n"
    ));
    let mut relay = start_relay(&config);
    let config_arg = config.to_str().unwrap();
    let mut tail = Command::new(relay_binary())
        .args([
            "tail",
            "-c",
            config_arg,
            "--type",
            "group.*",
            "--earliest",
            "--json",
            "--count",
            "4",
        ])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let emit = |relay: &Running, events: &[(usize, &str)]| {
        let path = home.join("tail-events.ndjson");
        let lines: Vec<String> = events
            .iter()
            .map(|(n, event_type)| {
                let mut event = sample_envelope(*n);
                event.id = format!("tail-{n}");
                event.event_type = (*event_type).to_owned();
                String::from_utf8(event.to_canonical_json()).unwrap()
            })
            .collect();
        std::fs::write(&path, lines.join("\n")).unwrap();
        let output = auditrelay(&["emit", path.to_str().unwrap(), "--url", &relay.url]);
        assert!(output.status.success(), "{}", text(&output.stderr));
    };
    emit(
        &relay,
        &[
            (1, "group.created"),
            (2, "user.login"),
            (3, "group.member_added"),
        ],
    );
    std::thread::sleep(Duration::from_millis(500));
    let stopped = Command::new("kill")
        .args(["-TERM", &relay.child.id().to_string()])
        .status()
        .unwrap();
    assert!(stopped.success());
    assert!(relay.child.wait().unwrap().success());
    relay = start_relay(&config);
    emit(
        &relay,
        &[
            (4, "group.deleted"),
            (5, "role.granted"),
            (6, "group.renamed"),
        ],
    );

    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = tail.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = tail.kill();
            panic!("tail did not print 4 events");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let output = tail.wait_with_output().unwrap();
    assert!(status.success(), "{}", text(&output.stderr));
    let ids: Vec<String> = text(&output.stdout)
        .lines()
        .map(|line| {
            serde_json::from_str::<serde_json::Value>(line).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(
        ids,
        ["tail-1", "tail-3", "tail-4", "tail-6"],
        "{}",
        text(&output.stderr)
    );
    let said = text(&output.stderr);
    assert!(
        said.contains("ended the stream")
            || said.contains("broke off")
            || said.contains("cannot reach"),
        "{said}"
    );
    let _ = Command::new("kill")
        .args(["-TERM", &relay.child.id().to_string()])
        .status();
    let _ = relay.child.wait();
}
