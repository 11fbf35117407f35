//! Plugins written as an attacker would write them (the `hostile` fixture
//! talks to `wit/` through raw `wit-bindgen`, not through the plugin API):
//! whatever they do, the relay survives, a healthy instance beside them
//! receives every event, what they make the host do stays within its
//! documented bounds, and a secret they were granted appears nowhere —
//! not in the log, the status, the dead letters, the metrics, the spool,
//! or any other plugin's output.

use std::time::{Duration, Instant};

use auditrelay::{Config, Relay};
use auditrelay_tests::{
    HEALTHY_FILE_TABLES, Home, files_under, leaked_form, logs, metric, ndjson_lines,
    sample_envelope,
};

const SECRET: &str = "tok-7Hq2Xv9Lp4Zs8Wm3Kd";

/// A relay with a healthy `file` instance and the given hostile ones
/// (`[plugins.<name>]` tables), `events` events emitted.
async fn with_hostile(hostile: &str, events: usize) -> (Relay, Home, Config, Vec<Vec<u8>>) {
    let home = Home::with_plugins(&["file", "hostile"]);
    let config = home.config(&format!(
        r#"
{HEALTHY_FILE_TABLES}
{hostile}
"#
    ));
    let relay = Relay::start(config.clone()).await.unwrap();
    let mut expected = Vec::new();
    for i in 0..events {
        let event = sample_envelope(i);
        expected.push(event.to_canonical_json());
        relay.emit(event).unwrap();
    }
    (relay, home, config, expected)
}

/// A hostile instance's table.
fn hostile(instance: &str, config: &str, extra: &str) -> String {
    format!(
        r#"
[plugins.{instance}]
plugin = "hostile"
{extra}
[plugins.{instance}.config]
{config}
[plugins.{instance}.batch]
max_wait = "5ms"
[plugins.{instance}.retry]
initial_backoff = "20ms"
max_backoff = "100ms"
"#
    )
}

/// Waits until `instance` has delivered `events`, failing after `patience`.
async fn delivered(relay: &Relay, instance: &str, events: u64, patience: Duration) {
    let deadline = Instant::now() + patience;
    while relay.status().plugin(instance).unwrap().delivered < events {
        assert!(Instant::now() < deadline, "{:#?}", relay.status());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until `healthy` delivered everything and returns how long it took.
async fn healthy_got_everything(relay: &Relay, home: &Home, expected: &[Vec<u8>]) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while ndjson_lines(&home.join("healthy")).len() < expected.len() {
        assert!(
            Instant::now() < deadline,
            "the healthy instance fell behind: {:#?}",
            relay.status()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        ndjson_lines(&home.join("healthy")),
        expected,
        "the healthy instance got every event, in order"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_granted_secret_appears_nowhere_whatever_the_plugin_does_with_it() {
    let logs = logs();
    let secret = format!("secrets.token = \"{SECRET}\"");
    let instances = [
        "leak-retryable",
        "leak-permanent",
        "leak-rejected",
        "leak-panic",
    ]
    .map(|name| {
        hostile(
            name,
            &format!("attack = \"leak\"\nleak_via = \"{}\"", &name[5..]),
            &secret,
        )
    })
    .join("\n")
        + &hostile("leak-init", "attack = \"leak_init\"", &secret);
    let (relay, home, config, expected) = with_hostile(&instances, 20).await;
    healthy_got_everything(&relay, &home, &expected).await;
    // Let every attack run at least once (the failing ones are retried).
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let status = relay.status();
        let tried = ["leak-retryable", "leak-panic"]
            .iter()
            .all(|name| status.plugin(name).unwrap().consecutive_failures >= 2)
            && ["leak-permanent", "leak-rejected"]
                .iter()
                .all(|name| status.plugin(name).unwrap().dead_letters == 20)
            && status.plugin("leak-init").unwrap().consecutive_failures >= 2;
        if tried {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the attacks did not all run: {status:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Where the words went, masked.
    let status = relay.status();
    let status_json = serde_json::to_string_pretty(&status).unwrap();
    assert!(
        status
            .plugin("leak-retryable")
            .unwrap()
            .last_error
            .as_deref()
            .unwrap()
            .contains("***"),
        "{status_json}"
    );
    assert!(
        status
            .plugin("leak-init")
            .unwrap()
            .error
            .as_deref()
            .unwrap()
            .contains("***"),
        "{status_json}"
    );
    let metrics = relay.metrics_text();
    relay.shutdown().await;

    // Everywhere: the log, the status, the metrics, every file the relay
    // wrote (dead letters, spool, cursors), every other plugin's output.
    let mut places: Vec<(String, String)> = vec![
        ("the status".into(), status_json),
        ("the metrics".into(), metrics),
    ];
    places.extend(
        logs.events()
            .into_iter()
            .map(|e| ("the log".to_owned(), e.to_string())),
    );
    for (path, text) in files_under(config.relay.data_dir.path())
        .into_iter()
        .chain(files_under(&home.join("healthy")))
    {
        places.push((path.display().to_string(), text));
    }
    let dead_letters = files_under(&config.relay.data_dir.dead_letters());
    assert!(
        dead_letters.len() >= 2 && dead_letters.iter().all(|(_, t)| t.contains("***")),
        "{dead_letters:?}"
    );
    let mut masked_lines = 0;
    for (place, text) in &places {
        if let Some(form) = leaked_form(text, SECRET) {
            panic!(
                "the secret ({form}) leaked into {place}: {}",
                auditrelay_tests::excerpt(text, 300)
            );
        }
        masked_lines += text.matches("***").count();
    }
    assert!(
        masked_lines >= 20,
        "the leaks were masked, not lost: {masked_lines}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugins_words_are_capped_before_they_are_stored() {
    let logs = logs();
    let instances = hostile("huge-reason", "attack = \"huge\"", "")
        + &hostile(
            "huge-message",
            "attack = \"huge\"\nhuge_via = \"retryable\"",
            "",
        );
    let (relay, home, config, expected) = with_hostile(&instances, 10).await;
    healthy_got_everything(&relay, &home, &expected).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while relay.status().plugin("huge-reason").unwrap().dead_letters < 10
        || relay
            .status()
            .plugin("huge-message")
            .unwrap()
            .consecutive_failures
            < 3
    {
        assert!(Instant::now() < deadline, "{:#?}", relay.status());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let status = serde_json::to_string(&relay.status()).unwrap();
    assert!(
        status.len() < 32 * 1024,
        "the status answered {} bytes",
        status.len()
    );
    relay.shutdown().await;
    // 10 events refused with a 20 MiB reason: the reason is cut to 4 KiB
    // and stored once.
    let dead = std::fs::metadata(
        config
            .relay
            .data_dir
            .dead_letters()
            .join("huge-reason.ndjson"),
    )
    .unwrap()
    .len();
    assert!(
        dead < 16 * 1024,
        "{dead} bytes of dead letters for 10 events"
    );
    for event in logs
        .of_plugin("huge-reason")
        .into_iter()
        .chain(logs.of_plugin("huge-message"))
    {
        let line = event.to_string();
        assert!(line.len() < 16 * 1024, "a {} byte log line", line.len());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn floods_of_log_lines_output_and_metric_names_are_held_to_the_budget() {
    let logs = logs();
    let instances = ["log-flood", "stdout-flood", "metric-flood"]
        .map(|name| {
            hostile(
                name,
                &format!("attack = \"{}\"", name.replace('-', "_")),
                "",
            )
        })
        .join("\n");
    let started = Instant::now();
    let (relay, home, _, expected) = with_hostile(&instances, 5).await;
    healthy_got_everything(&relay, &home, &expected).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while ["log-flood", "stdout-flood", "metric-flood"]
        .iter()
        .any(|name| relay.status().plugin(name).unwrap().delivered < 5)
    {
        assert!(Instant::now() < deadline, "{:#?}", relay.status());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    let metrics = relay.metrics_text();
    relay.shutdown().await;
    // At most a burst of 200 and 100 a second, plus the "suppressed" summaries.
    let allowed = (200.0 + 100.0 * seconds) as usize + 20;
    for name in ["log-flood", "stdout-flood"] {
        let lines = logs.of_plugin(name).len();
        assert!(
            lines <= allowed,
            "{name}: {lines} lines logged in {seconds:.1} s (allowed {allowed})"
        );
        let suppressed = metric(
            &metrics,
            &format!("auditrelay_plugin_log_lines_suppressed_total{{plugin=\"{name}\"}}"),
        );
        assert!(
            suppressed.is_some_and(|n| n >= 90_000.0),
            "{name}: {suppressed:?} suppressed"
        );
        assert!(
            logs.of_plugin(name).iter().any(|e| e["message"]
                .as_str()
                .is_some_and(|m| m.contains("suppressed"))),
            "{name}: the suppression is said"
        );
    }
    let refused = logs
        .of_plugin("metric-flood")
        .into_iter()
        .filter(|e| {
            e["message"]
                .as_str()
                .is_some_and(|m| m.contains("ignored a plugin metric"))
        })
        .count();
    assert!(
        refused <= 16,
        "{refused} warnings about refused metric names for 500,000 refusals"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_filling_its_directory_stops_at_its_quota_and_above_the_reserve() {
    let instances = hostile(
        "filler",
        "attack = \"fill_disk\"",
        "grant_dir = \"{home}/filler\"\ngrant_quota = \"8MiB\"",
    );
    let (relay, home, _, expected) = with_hostile(&instances, 5).await;
    healthy_got_everything(&relay, &home, &expected).await;
    delivered(&relay, "filler", 5, Duration::from_secs(30)).await;
    relay.shutdown().await;
    let used: u64 = files_under(&home.join("filler"))
        .iter()
        .map(|(p, _)| std::fs::metadata(p).unwrap().len())
        .sum();
    assert!(
        used <= 8 * 1024 * 1024,
        "{used} bytes written under an 8 MiB quota"
    );
    assert!(
        used >= 7 * 1024 * 1024,
        "the quota, not something else, stopped it: {used}"
    );

    // However large its quota, a plugin never writes into the free space
    // the relay keeps for the spool (here: more than the disk has).
    let home = Home::with_plugins(&["hostile"]);
    let config = home.config(&format!(
        "[relay]\ndisk_reserve = \"1PiB\"\n{}",
        hostile(
            "filler",
            "attack = \"fill_disk\"",
            "grant_dir = \"{home}/filler\""
        )
    ));
    let relay = Relay::start(config).await.unwrap();
    relay.emit(sample_envelope(1)).unwrap();
    assert!(relay.idle(Duration::from_secs(30)).await);
    relay.shutdown().await;
    let used: u64 = files_under(&home.join("filler"))
        .iter()
        .map(|(p, _)| std::fs::metadata(p).unwrap().len())
        .sum();
    assert_eq!(used, 0, "nothing written into the reserve");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_files_deleted_while_open_and_open_files_are_bounded_too() {
    let quota = "grant_quota = \"4MiB\"";
    let instances = hostile(
        "entries",
        "attack = \"entries_flood\"",
        &format!("grant_dir = \"{{home}}/entries\"\n{quota}"),
    ) + &hostile(
        "unlinker",
        "attack = \"unlink_open\"",
        &format!("grant_dir = \"{{home}}/unlinker\"\n{quota}"),
    ) + &hostile(
        "opener",
        "attack = \"open_many\"",
        "grant_dir = \"{home}/opener\"",
    );
    let (relay, home, _, expected) = with_hostile(&instances, 3).await;
    healthy_got_everything(&relay, &home, &expected).await;
    for instance in ["entries", "unlinker", "opener"] {
        delivered(&relay, instance, 3, Duration::from_secs(60)).await;
    }
    let metrics = relay.metrics_text();
    let custom = |instance: &str, name: &str| {
        metric(
            &metrics,
            &format!("auditrelay_plugin_custom_total{{plugin=\"{instance}\",name=\"{name}\"}}"),
        )
        .unwrap_or(0.0) as u64
    };
    // Each entry counts as 4 KiB: a 4 MiB quota holds about a thousand.
    let entries = files_under(&home.join("entries")).len() as u64
        + std::fs::read_dir(home.join("entries")).unwrap().count() as u64;
    assert!(
        custom("entries", "made") <= 1024 && custom("entries", "made") >= 900,
        "{} entries made under a 4 MiB quota ({entries} on disk)",
        custom("entries", "made")
    );
    // Deleted while open, the bytes still count: three batches of up to
    // twelve 1 MiB files, never more than the quota at once (the first
    // batch's files stay open while the second tries).
    let written = custom("unlinker", "written_mib");
    assert!(
        (3..=4).contains(&written),
        "{written} MiB written under a 4 MiB quota by deleting files while open"
    );
    // At most 16 files open at once, however many it asks for.
    let opened = custom("opener", "opened");
    assert_eq!(opened, 16, "{opened} files held open");
    relay.shutdown().await;
}

/// Runs `attack` as instance `instance` with a 4 MiB `grant_quota` until
/// it has handled 3 events; returns its custom counter `name`, the relay
/// (still running) and the home.
async fn quota_attack(instance: &str, attack: &str, name: &str) -> (f64, Relay, Home) {
    let instances = hostile(
        instance,
        &format!("attack = \"{attack}\""),
        &format!("grant_dir = \"{{home}}/{instance}\"\ngrant_quota = \"4MiB\""),
    );
    let (relay, home, _, expected) = with_hostile(&instances, 3).await;
    healthy_got_everything(&relay, &home, &expected).await;
    delivered(&relay, instance, 3, Duration::from_secs(60)).await;
    let count = metric(
        &relay.metrics_text(),
        &format!("auditrelay_plugin_custom_total{{plugin=\"{instance}\",name=\"{name}\"}}"),
    )
    .unwrap_or(0.0);
    (count, relay, home)
}

/// The safe way to replace a file (write a temporary one, rename it over
/// the old) must not use up the quota: the replaced file's bytes come back
/// at the rename, or when the plugin closes it if it held it open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_replaced_by_a_rename_give_their_quota_back() {
    let (rewrites, relay, home) = quota_attack("rewriter", "atomic_rewrite", "rewrites").await;
    assert!(
        rewrites >= 20.0 && rewrites % 20.0 == 0.0,
        "{rewrites} rewrites of a 1 MiB file: every batch's 20 fit a 4 MiB quota"
    );
    let files: Vec<_> = files_under(&home.join("rewriter"))
        .into_iter()
        .map(|(path, _)| path)
        .collect();
    assert_eq!(files.len(), 1, "only the state file is left: {files:?}");
    relay.shutdown().await;
}

/// A file deleted while only a write stream holds it (its descriptor
/// dropped) keeps counting until the stream goes: otherwise writing
/// through kept streams would fill the disk past the quota.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_held_open_by_a_stream_alone_still_count() {
    let (written, relay, _home) = quota_attack("streamer", "stream_orphans", "stream_mib").await;
    assert!(
        (3.0..=4.0).contains(&written),
        "{written} MiB written under a 4 MiB quota through streams of deleted files"
    );
    relay.shutdown().await;
}

/// A rename that changes nothing (onto itself, or onto a hard link of
/// itself) gives nothing back: otherwise appending and renaming in place
/// would write without limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renames_that_change_nothing_give_no_quota_back() {
    let (appended, relay, home) = quota_attack("renamer", "rename_in_place", "appended_mib").await;
    relay.shutdown().await;
    let on_disk: u64 = files_under(&home.join("renamer"))
        .iter()
        .map(|(p, _)| std::fs::metadata(p).unwrap().len())
        .sum();
    assert!(
        appended <= 4.0,
        "{appended} MiB appended under a 4 MiB quota by renaming in place"
    );
    assert!(
        on_disk <= 8 << 20,
        "{on_disk} bytes on disk (state and its hard link name one file of at most 4 MiB)"
    );
}

/// Descriptors this process has open.
fn open_descriptors() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_cannot_hold_more_connections_than_its_limit() {
    let logs = logs();
    // A destination that takes connections and never answers.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let held = std::thread::spawn(move || {
        let mut sockets = Vec::new();
        for stream in listener.incoming().take(64).flatten() {
            sockets.push(stream);
        }
        sockets
    });
    let before = open_descriptors();
    let instances = hostile(
        "flooder",
        &format!("attack = \"http_flood\"\nurl = \"http://{addr}\""),
        &format!("allowed_hosts = [\"127.0.0.1:{}\"]", addr.port()),
    );
    let (relay, home, _, expected) = with_hostile(&instances, 3).await;
    healthy_got_everything(&relay, &home, &expected).await;
    let said = logs
        .wait_for("flooder", Duration::from_secs(20), |e| {
            e["message"]
                .as_str()
                .is_some_and(|m| m.ends_with("requests refused at once"))
        })
        .expect("the flood ran");
    let states = logs.of_plugin("flooder");
    assert_eq!(
        said["message"], "2992 requests refused at once",
        "8 in flight at most (limits.http_requests): {states:#?}"
    );
    let during = open_descriptors();
    assert!(
        during < before + 60,
        "{before} descriptors before, {during} during the flood"
    );
    relay.shutdown().await;
    drop(held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_cannot_make_the_host_hold_unbounded_resources() {
    let logs = logs();
    let instances = hostile("hoarder", "attack = \"resource_flood\"", "");
    let (relay, home, _, expected) = with_hostile(&instances, 3).await;
    healthy_got_everything(&relay, &home, &expected).await;
    let crashed = logs
        .wait_for("hoarder", Duration::from_secs(30), |e| {
            e["message"].as_str().is_some_and(|m| m.contains("crashed"))
        })
        .unwrap_or_else(|| panic!("{:#?}", logs.of_plugin("hoarder")));
    assert!(
        crashed.to_string().contains("resource"),
        "the fault names the cap: {crashed}"
    );
    assert_eq!(relay.status().plugin("hoarder").unwrap().delivered, 0);
    assert!(
        metric(
            &relay.metrics_text(),
            "auditrelay_plugin_custom_total{plugin=\"hoarder\",name=\"kept\"}"
        )
        .is_none(),
        "a million resources were never held"
    );
    relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_impossible_answer_is_one_fault_and_shutdown_keeps_its_deadline() {
    let logs = logs();
    let instances = hostile("bad-answers", "attack = \"bad_rejections\"", "")
        + &hostile("stuck-shutdown", "attack = \"loop_shutdown\"", "");
    let home = Home::with_plugins(&["file", "hostile"]);
    let config = home.config(&format!(
        "[relay]\nshutdown_timeout = \"1s\"\n[plugins.healthy]\nplugin = \"file\"\ngrant_dir = \"{{home}}/healthy\"\n{instances}"
    ));
    let relay = Relay::start(config).await.unwrap();
    let expected: Vec<Vec<u8>> = (0..10)
        .map(|i| {
            let event = sample_envelope(i);
            let json = event.to_canonical_json();
            relay.emit(event).unwrap();
            json
        })
        .collect();
    healthy_got_everything(&relay, &home, &expected).await;
    let fault = logs
        .wait_for("bad-answers", Duration::from_secs(20), |e| {
            e["message"]
                .as_str()
                .is_some_and(|m| m.contains("impossible rejection list"))
        })
        .expect("the answer is a fault");
    assert!(
        fault["message"]
            .as_str()
            .unwrap()
            .contains("2000000 rejected events for a batch of"),
        "{fault}"
    );
    // A fault like a crash: the instance that answered so is replaced.
    let restarts = "auditrelay_plugin_restarts_total{plugin=\"bad-answers\"}";
    let deadline = Instant::now() + Duration::from_secs(20);
    while metric(&relay.metrics_text(), restarts).unwrap_or(0.0) < 1.0 {
        assert!(
            Instant::now() < deadline,
            "the instance giving impossible answers was never replaced"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let started = Instant::now();
    relay.shutdown().await;
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "shutdown took {took:?} with relay.shutdown_timeout = 1s"
    );
    let lines = logs.of_plugin("bad-answers").len();
    assert!(
        lines < 200,
        "{lines} log lines for 2,000,000 impossible rejections per call"
    );
    assert!(relay.status().plugin("bad-answers").unwrap().delivered == 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_whose_start_fails_is_started_again_until_it_runs() {
    let until = (jiff::Timestamp::now() + Duration::from_secs(3))
        .round(jiff::Unit::Second)
        .unwrap();
    let instances = hostile(
        "late",
        &format!("attack = \"init_fails_until\"\nuntil = \"{until}\""),
        "",
    );
    let (relay, home, _, expected) = with_hostile(&instances, 10).await;
    let early = relay.status();
    let late = early.plugin("late").unwrap();
    assert_eq!(
        late.state,
        auditrelay::status::RunState::Starting,
        "{early:#?}"
    );
    assert!(
        late.error.as_deref().unwrap().contains("not reachable yet"),
        "{late:?}"
    );
    healthy_got_everything(&relay, &home, &expected).await;
    delivered(&relay, "late", 10, Duration::from_secs(30)).await;
    let running = relay.status();
    assert_eq!(
        running.plugin("late").unwrap().state,
        auditrelay::status::RunState::Running
    );
    relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_files_are_bounded_and_never_keep_events_out() {
    let home = Home::with_plugins(&["file"]);
    // 300 MB that nothing enables, and that would take long to compile.
    let big = std::fs::File::create(home.plugin_dir().join("big.wasm")).unwrap();
    big.set_len(300 * 1024 * 1024).unwrap();
    let config = home.config("[plugins.file]\ngrant_dir = \"{home}/out\"\n");
    let started = Instant::now();
    let relay = Relay::open(config.clone()).await.unwrap();
    // Accepted before any plugin has loaded.
    relay.emit(sample_envelope(0)).unwrap();
    relay.ready().await.unwrap();
    assert!(relay.idle(Duration::from_secs(30)).await);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    relay.shutdown().await;
    assert_eq!(ndjson_lines(&home.join("out")).len(), 1);

    // Listing every file: the big one is refused at once, unread.
    let listed = std::process::Command::new(auditrelay_tests::relay_binary())
        .args(["plugins", "--dir", home.plugin_dir().to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&listed.stdout);
    assert!(
        text.contains("big.wasm") && text.contains("relay.max_plugin_size"),
        "{text}"
    );

    // A compile that overruns relay.plugin_load_timeout is stopped.
    let home = Home::with_plugins(&["file"]);
    let config = home.config(&format!(
        "[relay]\nplugin_load_timeout = \"1ms\"\ncache_dir = \"{}/fresh-cache\"\n[plugins.file]\ngrant_dir = \"{{home}}/out\"\n",
        home.path().display()
    ));
    let error = Relay::start(config)
        .await
        .err()
        .expect("the only plugin cannot load")
        .to_string();
    assert!(error.contains("relay.plugin_load_timeout"), "{error}");
}
