//! How fast does a file source read? The same file of envelope lines
//! (and the same lines as another system's records, mapped by `json-map`)
//! tailed by a fresh relay until every line's event is durable in the
//! spool, next to `cat` of the file to `/dev/null` (reading the bytes and
//! nothing else) in the same run.
//!
//! ```text
//! scripts/bench file_tail
//! ```
//!
//! The files and the relay's data live on tmpfs where there is one, with
//! `durability = "none"`: the figures are the relay's CPU (scan, split,
//! validate or map, encode, append, cursor saves), not the disk's. Each
//! row is the median of its rounds; rounds alternate between the ways.

mod common;

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use auditrelay::sources::FileIngest;
use auditrelay::{Config, Relay};
use auditrelay_plugin_api::testing::sample_envelope;
use tokio_util::sync::CancellationToken;

use common::{median, plugin_dir, quiet_backtraces, scratch_dir};

/// Lines in the file.
const LINES: usize = 200_000;
/// Rounds per way; the median is reported.
const ROUNDS: usize = 3;

fn main() {
    quiet_backtraces();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let scratch = scratch_dir();
    let envelopes = scratch.path().join("envelopes.log");
    let records = scratch.path().join("records.log");
    write_lines(&envelopes, |n| {
        let mut event = serde_json::to_value(sample_envelope(n)).unwrap();
        event["id"] = format!("line-{n}").into();
        event.to_string()
    });
    write_lines(&records, |n| {
        serde_json::json!({
            "uid": format!("evt-{n}"), "kind": "OrderCancelled", "at": "2026-12-01T10:00:00Z",
            "user": {"id": format!("u-{}", n % 97)}, "order": format!("o-{n}"),
            "note": "cancelled by the customer before shipping",
        })
        .to_string()
    });
    let size = |p: &Path| std::fs::metadata(p).unwrap().len() as f64;
    println!(
        "{LINES} lines until durable in the spool (durability none, tmpfs), median of {ROUNDS} rounds"
    );
    println!(
        "{:<34} {:>10} {:>12} {:>10} {:>10}",
        "way", "ms", "lines/s", "MB/s", "vs cat"
    );
    for (file, mapped) in [(&envelopes, false), (&records, true)] {
        let (mut cat, mut tail) = (Vec::new(), Vec::new());
        for round in 0..ROUNDS {
            cat.push(time_cat(file).as_secs_f64());
            tail.push(
                runtime
                    .block_on(time_tail(scratch.path(), file, mapped, round))
                    .as_secs_f64(),
            );
        }
        let (cat, tail) = (median(cat), median(tail));
        let label = if mapped {
            "records, json-map"
        } else {
            "envelopes"
        };
        for (way, seconds) in [
            (format!("cat > /dev/null ({label})"), cat),
            (format!("file source ({label})"), tail),
        ] {
            println!(
                "{:<34} {:>10.1} {:>12.0} {:>10.1} {:>9.1}×",
                way,
                seconds * 1e3,
                LINES as f64 / seconds,
                size(file) / seconds / 1e6,
                seconds / cat
            );
        }
    }
}

fn write_lines(path: &Path, line: impl Fn(usize) -> String) {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    for n in 0..LINES {
        writeln!(out, "{}", line(n)).unwrap();
    }
    out.flush().unwrap();
}

fn time_cat(file: &Path) -> Duration {
    let started = Instant::now();
    let status = std::process::Command::new("cat")
        .arg(file)
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    started.elapsed()
}

/// A fresh relay tailing `file` from its beginning: the time from the
/// source's start until every line's event is durable.
async fn time_tail(scratch: &Path, file: &Path, mapped: bool, round: usize) -> Duration {
    let dir = scratch.join(format!("relay-{mapped}-{round}"));
    let name = if mapped { "shop" } else { "access-api" };
    let mapper = if mapped {
        r#"[ingest.file.shop.mapper]
plugin = "json-map"
[ingest.file.shop.mapper.config]
fields = { id = "/uid", type = "/kind", time = "/at", "actor.id" = "/user/id", "target.id" = "/order" }
constants = { "action.outcome" = "success", "target.kind" = "order" }
"#
    } else {
        ""
    };
    let config = Config::parse(
        &format!(
            r#"
[relay]
plugin_dir = {:?}
data_dir = {:?}
max_buffered_bytes = "1GiB"
[spool]
durability = "none"
max_size = "8GiB"
[ingest.http]
enabled = false
[plugins.sink]
plugin = "blackhole"
[ingest.file.{name}]
paths = [{file:?}]
batch = 5000
{mapper}"#,
            plugin_dir(),
            dir.join("data"),
        ),
        "bench",
        &|_| None,
    )
    .unwrap();
    let relay = Relay::start(config.clone()).await.unwrap();
    let source = FileIngest::new(
        relay.clone(),
        name,
        &config.ingest.file[name],
        &config.relay.data_dir.sources(),
    );
    let stop = CancellationToken::new();
    let started = Instant::now();
    let task = tokio::spawn(source.run(stop.clone()));
    loop {
        let status = relay.status();
        let spooled = status
            .sources
            .iter()
            .find(|s| s.name == format!("file.{name}"))
            .map_or(0, |s| s.spooled_events);
        if spooled as usize >= LINES {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "the source never read the file: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let elapsed = started.elapsed();
    stop.cancel();
    task.await.unwrap();
    relay.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
    elapsed
}
