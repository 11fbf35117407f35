//! File sources as logrotate and a crashing relay meet them: a writer in
//! this process appends envelopes to a log that is rotated (rename +
//! create, and copytruncate, in turn) while the relay is killed with
//! SIGKILL and restarted; every line must reach the destination. What
//! arrived is counted in the file exporter's output, not in what the relay
//! reports.

use std::collections::HashSet;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use auditrelay_tests::webhooks::ARCHIVE;
use auditrelay_tests::{Home, RelayProcess, free_port, ndjson_values, sample_envelope, tally};
use rand::Rng;
use serde_json::{Value, json};

use crate::sources::Sources;

/// Lines the writer appends.
const LINES: usize = 100_000;
/// Rotations while it writes (every `LINES / ROTATIONS` lines).
const ROTATIONS: usize = 20;
/// SIGKILLs of the relay while it writes.
const KILLS: usize = 5;

/// Envelope `n` as one line, with an id this test can count.
fn line(n: usize) -> String {
    let mut event = serde_json::to_value(sample_envelope(n)).unwrap();
    event["id"] = format!("line-{n:06}").into();
    let mut text = serde_json::to_string(&event).unwrap();
    text.push('\n');
    text
}

fn append(path: &Path, bytes: &[u8]) {
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    file.write_all(bytes).unwrap();
}

/// Writes [`LINES`] lines to `dir/audit.log` in chunks, a partial line
/// at the end of some chunks, rotating every `LINES / ROTATIONS` lines,
/// by rename + create and by copytruncate in turn (as logrotate does, whole
/// lines: a partial line is finished first).
fn write(dir: &Path, written: &AtomicUsize) {
    let live = dir.join("audit.log");
    let mut rng = rand::rng();
    let mut pending: Option<String> = None;
    let mut rotations = 0;
    let mut n = 0;
    while n < LINES {
        let mut chunk = pending.take().unwrap_or_default();
        let count = rng.random_range(200..800).min(LINES - n);
        for _ in 0..count {
            n += 1;
            chunk.push_str(&line(n));
        }
        if rng.random_bool(0.3) && n < LINES {
            n += 1;
            let whole = line(n);
            let cut = rng.random_range(1..whole.len() - 1);
            chunk.push_str(&whole[..cut]);
            pending = Some(whole[cut..].to_owned());
        }
        append(&live, chunk.as_bytes());
        written.store(n, Ordering::Relaxed);
        if n / (LINES / ROTATIONS) > rotations && rotations < ROTATIONS {
            if let Some(rest) = pending.take() {
                append(&live, rest.as_bytes());
            }
            rotations += 1;
            let rotated = dir.join(format!("audit.log.{rotations}"));
            if rotations % 2 == 1 {
                std::fs::rename(&live, &rotated).unwrap();
                append(&live, b"");
            } else {
                std::fs::copy(&live, &rotated).unwrap();
                OpenOptions::new()
                    .write(true)
                    .open(&live)
                    .unwrap()
                    .set_len(0)
                    .unwrap();
            }
        }
        std::thread::sleep(Duration::from_millis(rng.random_range(5..40)));
    }
    if let Some(rest) = pending {
        append(&live, rest.as_bytes());
    }
    assert_eq!(rotations, ROTATIONS);
}

/// The ids in the exporter's output, copies included.
fn arrived(home: &Home) -> Vec<String> {
    ndjson_values(&home.join("out"))
        .iter()
        .filter_map(|event| event["id"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_line_arrives_through_rotations_and_kill_9() {
    let home = Home::with_plugins(&["file"]);
    let logs = home.join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let port = free_port();
    let config = home.config_file(&format!(
        "[ingest.http]\nlisten = \"127.0.0.1:{port}\"\n[spool]\ndurability = \"group\"\n\
         [ingest.file.access-api]\npaths = [\"{{home}}/logs/audit.log*\"]\npoll_interval = \"100ms\"\nrotate_wait = \"1s\"\n{ARCHIVE}"
    ));
    let mut relay = RelayProcess::start(&config, &[]);
    let written = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let writer = std::thread::spawn({
        let (logs, written, done) = (logs.clone(), written.clone(), done.clone());
        move || {
            write(&logs, &written);
            done.store(true, Ordering::Relaxed);
        }
    });
    // Kills spread over the writing.
    let mut kills = 0;
    while kills < KILLS {
        let at = (kills + 1) * LINES / (KILLS + 1);
        while written.load(Ordering::Relaxed) < at && !done.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        relay.kill_9();
        kills += 1;
        relay = RelayProcess::start(&config, &[]);
    }
    writer.join().unwrap();
    let wrote = Instant::now();

    let expected: HashSet<String> = (1..=LINES).map(|n| format!("line-{n:06}")).collect();
    let started = Instant::now();
    let mut result = tally(&expected, &arrived(&home));
    while result.lost > 0 && started.elapsed() < Duration::from_secs(180) {
        tokio::time::sleep(Duration::from_millis(250)).await;
        result = tally(&expected, &arrived(&home));
    }
    eprintln!(
        "all arrived {:?} after the writer finished",
        wrote.elapsed()
    );
    assert!(
        relay.terminate(),
        "the last relay did not stop cleanly:\n{}",
        relay.log()
    );
    let result = tally(&expected, &arrived(&home));
    eprintln!(
        "file tail: {LINES} lines, {ROTATIONS} rotations (rename and copytruncate), {KILLS} SIGKILLs: \
         {} arrived, {} duplicates, {} lost",
        result.distinct, result.duplicates, result.lost
    );
    assert_eq!(
        result.lost,
        0,
        "lines were lost, e.g. {:?}\n{}",
        {
            let got: HashSet<String> = arrived(&home).into_iter().collect();
            let mut lost: Vec<&String> = expected.difference(&got).collect();
            lost.sort();
            lost.into_iter().take(10).cloned().collect::<Vec<_>>()
        },
        relay.log()
    );
    assert_eq!(result.distinct, LINES, "events arrived that no line holds");
}

/// Appends `text` to the test's `logs/app.log`.
fn append_app(sources: &Sources, text: &str) {
    append(&sources.home.join("logs/app.log"), text.as_bytes());
}

fn home_with_logs(plugins: &[&str]) -> Home {
    let home = Home::with_plugins(plugins);
    std::fs::create_dir_all(home.join("logs")).unwrap();
    home
}

/// Lines of another system's shape, through json-map: the mapped ones are
/// stored with the file they came from, a line the mapper refuses and a
/// line too long are kept with why, a type not allowed is dropped, and a
/// partial last line waits for its end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lines_are_mapped_and_what_is_refused_is_kept_with_why() {
    let home = home_with_logs(&["file", "json-map"]);
    let tailing = Sources::start(
        home,
        &format!(
            r#"{ARCHIVE}
[ingest.file.crm]
paths = ["{{home}}/logs/*.log"]
poll_interval = "20ms"
max_line_bytes = "1KiB"
[ingest.file.crm.mapper]
plugin = "json-map"
[ingest.file.crm.mapper.config]
fields = {{ id = "/uid", type = "/kind", time = "/at", "actor.id" = "/user", "metadata.file" = "@file.path" }}
constants = {{ "action.outcome" = "success" }}
values.type = {{ UserSignedIn = "user.login", Other = "other.thing" }}
types = ["user.*"]
"#
        ),
    )
    .await;
    let event = |uid: &str, kind: &str| {
        json!({"uid": uid, "kind": kind, "at": "2026-12-01T10:00:00Z", "user": "alice"}).to_string()
    };
    let long = format!("{{\"uid\":\"u-long\",\"pad\":\"{}\"}}", "x".repeat(2000));
    let last = event("u3", "UserSignedIn");
    append_app(
        &tailing,
        &format!(
            "{}\nnot json at all\n{long}\n{}\n{}",
            event("u1", "UserSignedIn"),
            event("u2", "Other"),
            &last[..10]
        ),
    );
    // The counts are reported as the lines are stored, the files and the
    // bytes pending once the cycle is over: wait for both.
    let status = tailing
        .until("file.crm", |s| {
            s.spooled_events == 1 && s.refused_records == 2 && s.pending_bytes == Some(10)
        })
        .await;
    assert_eq!(status.dropped_records, 1, "{status:?}");
    assert_eq!(status.files, Some(1));
    assert_eq!(status.state, "reading");
    // The partial line is not read: its bytes are what is pending.
    assert_eq!(status.pending_bytes, Some(10), "{status:?}");
    append_app(&tailing, &format!("{}\n", &last[10..]));
    tailing.until("file.crm", |s| s.spooled_events == 2).await;

    let stored = tailing.stored().await;
    let ids: Vec<&str> = stored.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["u1", "u3"]);
    let path = tailing.home.join("logs/app.log").display().to_string();
    assert_eq!(stored[0]["metadata"]["file"], path.as_str());
    assert_eq!(stored[0]["source"], "crm");

    let refused = tailing.refused("crm");
    assert_eq!(refused.len(), 2, "{refused:?}");
    assert_eq!(refused[0]["data"], "not json at all");
    assert!(
        refused[0]["reason"]
            .as_str()
            .unwrap()
            .starts_with("the mapper refused it"),
        "{refused:?}"
    );
    assert_eq!(refused[0]["metadata"][0], json!(["file.path", path]));
    let offset = (event("u1", "UserSignedIn").len() + 1).to_string();
    assert_eq!(refused[0]["metadata"][1], json!(["file.offset", offset]));
    assert!(
        refused[1]["reason"]
            .as_str()
            .unwrap()
            .contains("longer than max_line_bytes"),
        "{refused:?}"
    );
    assert!(
        refused[1]["data"]
            .as_str()
            .unwrap()
            .starts_with("{\"uid\":\"u-long\"")
    );
    tailing.stop().await;
}

/// Without a mapper each line is an envelope of this source: a line that
/// is not one, or claims another source, is kept with why; the others flow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envelope_lines_are_held_to_the_envelope_rules_and_their_own_source() {
    let home = home_with_logs(&["file"]);
    let tailing = Sources::start(
        home,
        &format!(
            "{ARCHIVE}\n[ingest.file.access-api]\npaths = [\"{{home}}/logs/app.log\"]\npoll_interval = \"20ms\"\n"
        ),
    )
    .await;
    let mut other = serde_json::to_value(sample_envelope(2)).unwrap();
    other["source"] = "billing".into();
    append_app(
        &tailing,
        &format!("{}{{\"id\":\"x\"}}\n{other}\n{}", line(1), line(3)),
    );
    tailing
        .until("file.access-api", |s| {
            s.spooled_events == 2 && s.refused_records == 2
        })
        .await;
    let stored = tailing.stored().await;
    let ids: Vec<&str> = stored.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["line-000001", "line-000003"]);
    let refused = tailing.refused("access-api");
    let reasons: Vec<&str> = refused
        .iter()
        .map(|r| r["reason"].as_str().unwrap())
        .collect();
    assert!(
        reasons[0].starts_with("not a valid envelope: "),
        "{reasons:?}"
    );
    assert!(
        reasons[0].contains("source"),
        "every missing field is named: {reasons:?}"
    );
    assert!(
        reasons[1].contains("takes only events of source \"access-api\""),
        "{reasons:?}"
    );
    tailing.stop().await;
}

/// When a refused line cannot be kept (`refused.ndjson` at its cap), the
/// source stops where it is — nothing after that line is spooled, nothing
/// is skipped — and goes on once the file is moved away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_whose_refused_lines_cannot_be_kept_stops_where_it_is_and_loses_nothing() {
    let home = home_with_logs(&["file"]);
    let tailing = Sources::start(
        home,
        &format!(
            "{ARCHIVE}\n[ingest.file.access-api]\npaths = [\"{{home}}/logs/app.log\"]\npoll_interval = \"20ms\"\nbatch = 1\nmax_refused_bytes = \"3KiB\"\n"
        ),
    )
    .await;
    // Each kept line is about 2 KiB: one fits, two do not.
    let bad = |n: &str| format!("bad line {n} {}\n", "z".repeat(1500));
    append_app(&tailing, &format!("{}{}", line(1), bad("one")));
    tailing
        .until("file.access-api", |s| s.refused_records == 1)
        .await;
    append_app(&tailing, &format!("{}{}", bad("two"), line(2)));
    let status = tailing
        .until("file.access-api", |s| s.state == "failing")
        .await;
    let error = status.error.unwrap();
    assert!(
        error.contains("refused.ndjson") && error.contains("max_refused_bytes"),
        "{error}"
    );
    let ids = |stored: Vec<Value>| -> Vec<String> {
        stored
            .iter()
            .map(|e| e["id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        ids(tailing.stored().await),
        ["line-000001"],
        "nothing past the stuck line"
    );
    let kept = tailing.home.join("data/sources/access-api/refused.ndjson");
    std::fs::rename(&kept, tailing.home.join("refused-moved-away.ndjson")).unwrap();
    let status = tailing
        .until("file.access-api", |s| {
            s.spooled_events == 2 && s.state == "reading"
        })
        .await;
    assert_eq!(status.refused_records, 2);
    assert_eq!(ids(tailing.stored().await), ["line-000001", "line-000002"]);
    tailing.stop().await;
}

/// A cursor that cannot be read is moved aside, not trusted: every line is
/// read again, and what was stored already is recognised by its id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_cursor_costs_copies_never_lines() {
    let tables = format!(
        "{ARCHIVE}\n[ingest.file.access-api]\npaths = [\"{{home}}/logs/app.log\"]\npoll_interval = \"20ms\"\nstart_at = \"end\"\n"
    );
    let home = home_with_logs(&["file"]);
    let tailing = Sources::start(home, &tables).await;
    tailing
        .until("file.access-api", |s| s.files == Some(0))
        .await;
    append_app(&tailing, &format!("{}{}", line(1), line(2)));
    tailing
        .until("file.access-api", |s| s.spooled_events == 2)
        .await;
    let home = tailing.stop().await;
    let cursor = home.join("data/sources/access-api/cursor.json");
    std::fs::write(&cursor, b"{\"version\":1,\"files\":[{\"dev\":").unwrap();
    append(&home.join("logs/app.log"), line(3).as_bytes());

    let tailing = Sources::start(home, &tables).await;
    tailing
        .until("file.access-api", |s| s.spooled_events == 1)
        .await;
    let stored = tailing.stored().await;
    let ids: Vec<&str> = stored.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(
        ids,
        ["line-000001", "line-000002", "line-000003"],
        "read again, stored once"
    );
    let aside: Vec<_> = std::fs::read_dir(cursor.parent().unwrap())
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("cursor.json.unreadable-")
        })
        .collect();
    assert_eq!(aside.len(), 1, "the unreadable cursor is kept for a look");
    tailing.stop().await;
}
