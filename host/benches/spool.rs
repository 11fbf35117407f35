//! How close is the spool to the disk's own limit? For each durability
//! mode, events appended to the spool until durable, next to raw
//! sequential writes of the same bytes with the same sync policy, to the
//! same disk, in the same run.
//!
//! ```text
//! cargo bench -p auditrelay --bench spool
//! cargo bench -p auditrelay --bench spool -- group   # one mode
//! ```
//!
//! The spool path: one thread appends pre-encoded events (what `emit`
//! hands the spool after validating and encoding), timing each append;
//! throughput runs until the last event is durable. The raw path: one
//! thread writes the same framed bytes through a 64 KiB buffer — `none`:
//! never synced; `group`: `fdatasync` every 5 ms; `always`: `fdatasync`
//! after every event, the literal "sync every write" (the spool's
//! `always` syncs each write of whatever has accumulated, so it can beat
//! that). The embedded-store path: the same events into a redb table,
//! one transaction per 5 ms of events for `group`, one per event for
//! `always`, unsynced commits for `none` — what building the spool on a
//! proven embedded database would cost. The spool runs with the default
//! dedup window (500,000 ids, 10 minutes) and, next to it, without one:
//! what remembering every identity costs an append.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use auditrelay::internals::{
    Confirmation, DedupWindow, Durability, Record, Spool, SpoolOptions, StartFrom, WhenFull, format,
};
use auditrelay_plugin_api::testing::sample_envelope;

use common::name_filter;

const EVENTS: usize = 200_000;
/// `always` on a real disk does a few thousand syncs a second.
const ALWAYS_EVENTS: usize = 20_000;
const GROUP: Duration = Duration::from_millis(5);
/// The relay's default window (`spool.dedup_ids`, `spool.dedup_age`).
const DEFAULT_WINDOW: DedupWindow = DedupWindow {
    ids: 500_000,
    age: Duration::from_secs(600),
};

fn main() {
    // SAFETY: no other thread exists yet.
    unsafe {
        std::env::remove_var("RUST_BACKTRACE");
        std::env::set_var("RUST_LIB_BACKTRACE", "0");
    }
    // On the project's disk, not tmpfs: syncing is what is measured.
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    std::fs::create_dir_all(&target).unwrap();
    let scratch = tempfile::tempdir_in(&target).unwrap();
    let records: Vec<Record> = (0..EVENTS)
        .map(|i| Record::from_envelope(&sample_envelope(i), &Default::default()).unwrap())
        .collect();
    let size = records.iter().map(|r| r.encoded().len()).sum::<usize>() / EVENTS;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let filter = name_filter();
    println!(
        "{EVENTS} events of ~{size} bytes ({ALWAYS_EVENTS} for always), on {}",
        scratch.path().display()
    );
    println!();
    println!(
        "{:<8} {:>12} {:>12} {:>12} {:>12} {:>9} {:>10} {:>11} {:>11} {:>11}",
        "mode",
        "spool ev/s",
        "no window",
        "raw ev/s",
        "redb ev/s",
        "spool/raw",
        "spool/redb",
        "append p50",
        "append p99",
        "append max"
    );
    for (name, durability, count) in [
        ("none", Durability::None, EVENTS),
        ("group", Durability::Group(GROUP), EVENTS),
        ("always", Durability::Always, ALWAYS_EVENTS),
    ] {
        if !name.contains(&filter) {
            continue;
        }
        let dir = scratch.path().join(name);
        let raw = raw_writes(&dir.join("raw"), &records[..count], durability);
        let redb = redb_writes(&dir.join("redb"), &records[..count], durability);
        let (spool_rate, latencies) = runtime.block_on(spool_writes(
            &dir.join("spool"),
            &records[..count],
            durability,
            DEFAULT_WINDOW,
        ));
        let (no_window, _) = runtime.block_on(spool_writes(
            &dir.join("spool-no-window"),
            &records[..count],
            durability,
            DedupWindow::OFF,
        ));
        println!(
            "{:<8} {:>12.0} {:>12.0} {:>12.0} {:>12.0} {:>8.2}x {:>9.2}x {:>11?} {:>11?} {:>11?}",
            name,
            spool_rate,
            no_window,
            raw,
            redb,
            spool_rate / raw,
            spool_rate / redb,
            latencies[latencies.len() / 2],
            latencies[latencies.len() * 99 / 100],
            latencies[latencies.len() - 1],
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// Appends every event, one call each, then waits until the last is
/// durable; returns events/s and the sorted append latencies.
async fn spool_writes(
    dir: &Path,
    records: &[Record],
    durability: Durability,
    dedup: DedupWindow,
) -> (f64, Vec<Duration>) {
    let (spool, _) = Spool::open(SpoolOptions {
        dir: dir.to_owned(),
        durability,
        segment_bytes: 64 * 1024 * 1024,
        max_bytes: u64::MAX,
        when_full: WhenFull::Reject,
        block_timeout: Duration::ZERO,
        max_pending_bytes: usize::MAX,
        files: Default::default(),
        chain: None,
        dedup,
    })
    .unwrap();
    // A reader that never reads keeps every segment, as a plugin lagging
    // behind would; retention is not what is measured here.
    spool.consumer("bench", StartFrom::Now, true);
    let mut latencies = Vec::with_capacity(records.len());
    let started = Instant::now();
    let mut last = 0;
    for i in 0..records.len() {
        let call = Instant::now();
        last = spool.append(&records[i..i + 1]).unwrap().seqs.end - 1;
        latencies.push(call.elapsed());
    }
    assert_eq!(spool.durable(last).await, Confirmation::Durable);
    let elapsed = started.elapsed();
    spool.finish();
    latencies.sort();
    (records.len() as f64 / elapsed.as_secs_f64(), latencies)
}

/// Writes the same framed bytes sequentially with the same sync policy.
fn raw_writes(dir: &Path, records: &[Record], durability: Durability) -> f64 {
    std::fs::create_dir_all(dir).unwrap();
    let file = std::fs::File::create(dir.join("raw.log")).unwrap();
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, file);
    let mut frame = Vec::new();
    let key = format::FrameKey::random();
    let started = Instant::now();
    let mut last_sync = Instant::now();
    for (seq, record) in records.iter().enumerate() {
        frame.clear();
        format::write_frame(&mut frame, key, seq as u64, record.encoded());
        out.write_all(&frame).unwrap();
        let sync = match durability {
            Durability::Always => true,
            Durability::Group(interval) => last_sync.elapsed() >= interval,
            Durability::None => false,
        };
        if sync {
            out.flush().unwrap();
            out.get_ref().sync_data().unwrap();
            last_sync = Instant::now();
        }
    }
    out.flush().unwrap();
    if durability != Durability::None {
        out.get_ref().sync_data().unwrap();
    }
    records.len() as f64 / started.elapsed().as_secs_f64()
}

/// Inserts the same events into a redb table with the same sync policy.
fn redb_writes(dir: &Path, records: &[Record], durability: Durability) -> f64 {
    const EVENTS_TABLE: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("events");
    std::fs::create_dir_all(dir).unwrap();
    let db = redb::Database::create(dir.join("events.redb")).unwrap();
    let (window, commit) = match durability {
        Durability::Always => (Duration::ZERO, redb::Durability::Immediate),
        Durability::Group(interval) => (interval, redb::Durability::Immediate),
        Durability::None => (GROUP, redb::Durability::None),
    };
    let started = Instant::now();
    let mut next = 0;
    while next < records.len() {
        let mut tx = db.begin_write().unwrap();
        tx.set_durability(commit);
        {
            let mut table = tx.open_table(EVENTS_TABLE).unwrap();
            let until = Instant::now() + window;
            loop {
                table.insert(next as u64, records[next].encoded()).unwrap();
                next += 1;
                if next == records.len() || Instant::now() >= until {
                    break;
                }
            }
        }
        tx.commit().unwrap();
    }
    records.len() as f64 / started.elapsed().as_secs_f64()
}
