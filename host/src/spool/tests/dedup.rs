//! The dedup window as the spool keeps it: copies are not spooled, are
//! durable only with their first copy, survive a restart and a crash, and
//! the window never costs an event or fills the spool.

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::*;
use crate::spool::files::{FaultPlan, FileOp};

fn with_window(dir: &Path, ids: usize) -> SpoolOptions {
    SpoolOptions {
        dedup: DedupWindow {
            ids,
            age: Duration::from_secs(600),
        },
        ..options(dir)
    }
}

/// Every event the spool holds from `from` on, as (seq, id).
async fn spooled(spool: &Spool) -> Vec<(u64, String)> {
    let consumer = spool.consumer("check", StartFrom::Earliest, false);
    let mut reader = spool.reader(consumer);
    let mut all = Vec::new();
    written(spool).await;
    loop {
        let batch = reader.read(1000, usize::MAX, true).unwrap();
        if batch.is_empty() {
            return all;
        }
        all.extend(batch.events().map(|(seq, e)| (seq, e.id.to_owned())));
    }
}

#[tokio::test]
async fn a_copy_is_acknowledged_not_spooled_and_durable_with_its_first() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open(with_window(dir.path(), 1000)).unwrap();
    let first = spool.append(&records(0..10)).unwrap();
    assert_eq!((first.seqs.clone(), first.copies), (0..10, 0));
    // A retry of part of it, with two new events and a copy of one of them.
    let mut retry = records(5..12);
    retry.push(record(11));
    let again = spool.append(&retry).unwrap();
    assert_eq!(again.seqs, 10..12, "only the new ones are spooled");
    assert_eq!(again.copies, 6);
    assert_eq!(again.durable_end, 12);
    // Copies only: durable once the newest first copy is.
    let copies = spool.append(&records(2..4)).unwrap();
    assert_eq!((copies.seqs.count(), copies.copies), (0, 2));
    assert_eq!(copies.durable_end, 4);
    assert_eq!(
        spool.durable(copies.durable_end - 1).await,
        Confirmation::Durable
    );
    let ids: Vec<u64> = spooled(&spool).await.iter().map(|(s, _)| *s).collect();
    assert_eq!(ids, (0..12).collect::<Vec<_>>());
    assert_eq!(spool.stats().dedup_ids, 12);
}

#[tokio::test]
async fn other_content_under_a_known_identity_is_spooled_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open(with_window(dir.path(), 1000)).unwrap();
    spool.append(&records(0..3)).unwrap();
    let changed = Record::from_event(Event {
        id: "e1",
        source: "test",
        event_type: "t.x",
        time_unix_nanos: 1,
        tenant: None,
        envelope: b"{\"n\":\"changed\"}",
    });
    let appended = spool.append(&[record(0), changed.clone()]).unwrap();
    assert_eq!(appended.seqs, 3..4);
    assert_eq!((appended.copies, appended.conflicts), (1, 1));
    assert_eq!(appended.first_conflict, Some(1));
    // From then on the newer content is the one whose copies collapse.
    let again = spool.append(&[changed]).unwrap();
    assert_eq!((again.copies, again.durable_end), (1, 4));
}

#[tokio::test]
async fn the_window_survives_a_restart_and_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let crashed = tempfile::tempdir().unwrap();
    {
        let (spool, _) = Spool::open(with_window(dir.path(), 1000)).unwrap();
        spool.append(&records(0..300)).unwrap();
        written(&spool).await;
        spool.finish();
    }
    {
        let (spool, _) = Spool::open(with_window(dir.path(), 1000)).unwrap();
        assert_eq!(spool.stats().dedup_ids, 300);
        let retry = spool.append(&records(250..310)).unwrap();
        assert_eq!((retry.seqs.clone(), retry.copies), (300..310, 50));
        written(&spool).await;
        // A crash: the files as they are now, with no shutdown.
        copy_dir(dir.path(), crashed.path());
    }
    let (spool, _) = Spool::open(with_window(crashed.path(), 1000)).unwrap();
    let retry = spool.append(&records(0..310)).unwrap();
    assert_eq!((retry.seqs.count(), retry.copies), (0, 310));
}

/// What a `kill -9` leaves of a running spool: its files as they are.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[tokio::test]
async fn only_the_last_ids_are_read_back_and_kept_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open(with_window(dir.path(), 100)).unwrap();
    let consumer = spool.consumer("p", StartFrom::Earliest, true);
    let mut reader = spool.reader(consumer);
    spool.append(&records(0..2000)).unwrap();
    written(&spool).await;
    drain(&spool, consumer, &mut reader).await;
    // The writer deletes what neither the instance nor the window needs.
    let deadline = Instant::now() + Duration::from_secs(5);
    while spool.stats().first_seq < 1900 - 40 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let stats = spool.stats();
    assert!(
        stats.first_seq <= 1900,
        "the window's events stay on disk: {stats:?}"
    );
    assert!(
        stats.first_seq > 1500,
        "what left the window is deleted: {stats:?}"
    );
    spool.finish();
    drop(spool);
    let (spool, _) = Spool::open(with_window(dir.path(), 100)).unwrap();
    assert_eq!(spool.stats().dedup_ids, 100);
    let retry = spool.append(&records(1890..1910)).unwrap();
    assert_eq!(
        retry.copies, 10,
        "1900..1910 were in the window, 1890..1900 not"
    );
}

/// A 256 KiB spool whose window would keep far more, with one instance.
const SMALL_SPOOL: u64 = 256 * 1024;

fn small_spool_big_window(dir: &Path) -> (Spool, ConsumerId, Reader) {
    let opts = SpoolOptions {
        max_bytes: SMALL_SPOOL,
        ..with_window(dir, 1_000_000)
    };
    let (spool, _) = Spool::open(opts).unwrap();
    let consumer = spool.consumer("p", StartFrom::Earliest, true);
    let reader = spool.reader(consumer);
    (spool, consumer, reader)
}

#[tokio::test]
async fn the_window_never_keeps_more_than_its_share_of_the_spool() {
    let dir = tempfile::tempdir().unwrap();
    let max_bytes = SMALL_SPOOL;
    let (spool, consumer, mut reader) = small_spool_big_window(dir.path());
    // Ten times what the spool holds, delivered as it comes: the window
    // wants all of it, and gets a quarter of the spool.
    for chunk in 0..100u64 {
        let appended = spool.append(&records(chunk * 400..(chunk + 1) * 400));
        assert!(appended.is_ok(), "chunk {chunk}: {appended:?}");
        written(&spool).await;
        drain(&spool, consumer, &mut reader).await;
        let deadline = Instant::now() + Duration::from_secs(5);
        while spool.stats().disk_bytes > max_bytes / DEDUP_SHARE + 2 * 4096
            && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let stats = spool.stats();
        assert!(
            stats.disk_bytes <= max_bytes / DEDUP_SHARE + 2 * 4096,
            "chunk {chunk}: {stats:?}"
        );
    }
    // In memory the window still has them all.
    assert_eq!(spool.stats().dedup_ids, 40_000);
}

#[tokio::test]
async fn identities_age_out_with_no_event_coming_and_their_segments_go() {
    let dir = tempfile::tempdir().unwrap();
    let opts = SpoolOptions {
        dedup: DedupWindow {
            ids: 1000,
            age: Duration::from_secs(1),
        },
        ..options(dir.path())
    };
    let (spool, _) = Spool::open(opts).unwrap();
    let consumer = spool.consumer("p", StartFrom::Earliest, true);
    let mut reader = spool.reader(consumer);
    spool.append(&records(0..500)).unwrap();
    written(&spool).await;
    drain(&spool, consumer, &mut reader).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(spool.stats().segments > 2, "{:?}", spool.stats());
    let deadline = Instant::now() + Duration::from_secs(6);
    while spool.stats().dedup_ids > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stats = spool.stats();
    assert_eq!(stats.dedup_ids, 0, "{stats:?}");
    assert!(stats.segments <= 2, "{stats:?}");
    assert_eq!(spool.append(&records(0..1)).unwrap().copies, 0);
}

#[test]
fn copies_arriving_at_once_on_many_threads_are_spooled_once() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open(with_window(dir.path(), 100_000)).unwrap();
    let spool = Arc::new(spool);
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let spool = spool.clone();
            std::thread::spawn(move || {
                let mut spooled = 0;
                for round in 0..200u64 {
                    // Every thread sends the same events, in shifted batches.
                    let start = round * 10 + (t % 3);
                    spooled += spool
                        .append(&records(start..start + 10))
                        .unwrap()
                        .seqs
                        .count();
                }
                spooled
            })
        })
        .collect();
    let spooled: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert_eq!(spooled, 2002, "each of 0..2002 once");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut ids: Vec<String> = runtime
        .block_on(spooled_ids(&spool))
        .into_iter()
        .map(|(_, id)| id)
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 2002);
}

async fn spooled_ids(spool: &Spool) -> Vec<(u64, String)> {
    spooled(spool).await
}

#[tokio::test]
async fn copies_need_no_room() {
    let dir = tempfile::tempdir().unwrap();
    let opts = SpoolOptions {
        max_bytes: 64 * 1024,
        ..with_window(dir.path(), 10_000)
    };
    let (spool, _) = Spool::open(opts).unwrap();
    // An instance that reads nothing: every event is still needed.
    spool.consumer("p", StartFrom::Earliest, true);
    let mut accepted = 0;
    let full = loop {
        match spool.append(&records(accepted..accepted + 10)) {
            Ok(_) => accepted += 10,
            Err(error) => break error,
        }
    };
    assert!(matches!(full, SpoolError::Full { .. }), "{full}");
    // A retry of what was accepted is still acknowledged; with one new
    // event among the copies, the whole append is refused, all or none.
    let retry = spool.append(&records(0..20)).unwrap();
    assert_eq!((retry.copies, retry.durable_end), (20, 20));
    let mut mixed = records(0..20);
    mixed.extend(records(accepted..accepted + 10));
    assert!(matches!(spool.append(&mixed), Err(SpoolError::Full { .. })));
    assert_eq!(
        spool.stats().dedup_ids as u64,
        accepted,
        "the refused append left no trace"
    );
}

#[tokio::test]
async fn copies_need_no_working_disk_and_a_refused_event_is_not_remembered() {
    let dir = tempfile::tempdir().unwrap();
    let failing = Arc::new(FailWrites(AtomicBool::new(false)));
    let opts = SpoolOptions {
        durability: Durability::Always,
        files: SegmentFiles::with_faults(failing.clone()),
        chain: None,
        ..with_window(dir.path(), 10_000)
    };
    let (spool, _) = Spool::open(opts).unwrap();
    spool.append(&records(0..20)).unwrap();
    written(&spool).await;
    failing.0.store(true, Ordering::SeqCst);
    // A fire-and-forget append meets the failing disk, and waits in memory.
    let waiting = spool.append(&records(20..21)).unwrap();
    assert!(matches!(
        spool.durable(waiting.durable_end - 1).await,
        Confirmation::Failing(_)
    ));
    // A retry of durable events is acknowledged, and durable at once.
    let retry = spool.append_when_room(&records(0..20)).await.unwrap();
    assert_eq!(retry.copies, 20);
    assert_eq!(
        spool.durable(retry.durable_end - 1).await,
        Confirmation::Durable
    );
    // A copy of the waiting one waits with it: not durable yet.
    let copy = spool.append(&records(20..21)).unwrap();
    assert_eq!(copy.copies, 1);
    assert!(matches!(
        spool.durable(copy.durable_end - 1).await,
        Confirmation::Failing(_)
    ));
    // A new event is refused, and nothing of it is remembered: it is
    // spooled once the disk works.
    assert!(matches!(
        spool.append_when_room(&[record(5000)]).await,
        Err(SpoolError::Unwritable(_))
    ));
    failing.0.store(false, Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(10);
    while spool.write_error().is_some() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        spool.durable(copy.durable_end - 1).await,
        Confirmation::Durable
    );
    let later = spool.append_when_room(&[record(5000)]).await.unwrap();
    assert_eq!((later.seqs, later.copies), (21..22, 0));
}

struct FailWrites(AtomicBool);

impl FaultPlan for FailWrites {
    fn fail(&self, op: FileOp, _path: &Path) -> Option<io::Error> {
        (matches!(op, FileOp::Write | FileOp::Sync) && self.0.load(Ordering::SeqCst))
            .then(|| io::Error::from_raw_os_error(libc::EIO))
    }
}

#[tokio::test]
async fn a_read_back_that_fails_costs_duplicates_never_the_start() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (spool, _) = Spool::open(with_window(dir.path(), 1000)).unwrap();
        spool.append(&records(0..100)).unwrap();
        written(&spool).await;
        spool.finish();
    }
    struct FailReads;
    impl FaultPlan for FailReads {
        fn fail(&self, op: FileOp, _path: &Path) -> Option<io::Error> {
            matches!(op, FileOp::Open | FileOp::Read)
                .then(|| io::Error::from_raw_os_error(libc::EIO))
        }
    }
    let opts = SpoolOptions {
        files: SegmentFiles::with_faults(Arc::new(FailReads)),
        chain: None,
        ..with_window(dir.path(), 1000)
    };
    let (spool, _) = Spool::open(opts).unwrap();
    assert_eq!(spool.stats().dedup_ids, 0);
    let appended = spool.append(&records(0..10)).unwrap();
    assert_eq!((appended.seqs, appended.copies), (100..110, 0));
}

#[tokio::test]
async fn a_full_spool_takes_back_the_window_s_share_before_refusing() {
    let dir = tempfile::tempdir().unwrap();
    let max_bytes = SMALL_SPOOL;
    let (spool, consumer, mut reader) = small_spool_big_window(dir.path());
    // Delivered events the window keeps: a quarter of the spool.
    spool.append(&records(0..1200)).unwrap();
    written(&spool).await;
    drain(&spool, consumer, &mut reader).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let kept = spool.stats().disk_bytes;
    assert!(kept > max_bytes / DEDUP_SHARE / 2, "{:?}", spool.stats());
    // Then the instance stops reading: undelivered events fill the spool,
    // all of it, not three quarters.
    let frame = (format::FRAME_HEADER_LEN + record(0).encoded().len()) as u64;
    let mut next = 1200;
    while spool.append(&records(next..next + 1)).is_ok() {
        next += 1;
    }
    let stats = spool.stats();
    assert!(
        stats.first_seq > 1200 - 100,
        "every segment only the window kept is gone: {stats:?}"
    );
    // (Frames grow with the numbers in them: `frame` is the smallest.)
    let undelivered = (next - 1200) * frame;
    assert!(
        undelivered > max_bytes * 9 / 10,
        "{undelivered} of {max_bytes} bytes hold undelivered events: {stats:?}"
    );
    // The window still knows the delivered ones in memory.
    assert_eq!(spool.append(&records(0..10)).unwrap().copies, 10);
    // And nothing that went reads as lost: every saved cursor was past it.
    spool.finish();
    let verified = inspect(dir.path()).unwrap();
    assert!(verified.report.is_clean(), "{}", verified.report);
}

/// A disabled instance's saved cursor lies below everything: the window's
/// share still comes back when the spool fills (through the writer, which
/// saves the cursors first).
#[tokio::test]
async fn a_dormant_cursor_does_not_keep_the_full_spool_from_taking_back_the_window() {
    let dir = tempfile::tempdir().unwrap();
    let max_bytes = 256 * 1024;
    let opts = || SpoolOptions {
        max_bytes,
        ..with_window(dir.path(), 1_000_000)
    };
    {
        let (spool, _) = Spool::open(opts()).unwrap();
        spool.consumer("disabled", StartFrom::Now, true);
        spool.finish();
    }
    let (spool, _) = Spool::open(opts()).unwrap();
    let consumer = spool.consumer("p", StartFrom::Earliest, true);
    let mut reader = spool.reader(consumer);
    spool.append(&records(0..1200)).unwrap();
    written(&spool).await;
    drain(&spool, consumer, &mut reader).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(
        spool.stats().disk_bytes > max_bytes / DEDUP_SHARE / 2,
        "{:?}",
        spool.stats()
    );
    let frame = (format::FRAME_HEADER_LEN + record(0).encoded().len()) as u64;
    let mut next = 1200;
    // A refusal asks the writer to take the share back; a retry soon after
    // finds the room.
    let mut refusals = 0;
    while refusals < 5 {
        match spool.append(&records(next..next + 1)) {
            Ok(_) => next += 1,
            Err(_) => {
                refusals += 1;
                tokio::time::sleep(Duration::from_millis(150)).await;
            }
        }
    }
    let stats = spool.stats();
    let undelivered = (next - 1200) * frame;
    assert!(
        stats.first_seq > 1200 - 100 && undelivered > max_bytes * 9 / 10,
        "refused with only {undelivered} of {max_bytes} bytes undelivered: {stats:?}"
    );
    spool.finish();
    let verified = inspect(dir.path()).unwrap();
    assert!(verified.report.is_clean(), "{}", verified.report);
}

struct CountSyncs(std::sync::atomic::AtomicU64);

impl FaultPlan for CountSyncs {
    fn fail(&self, op: FileOp, _path: &Path) -> Option<io::Error> {
        if op == FileOp::Sync {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
        None
    }
}

/// After a `kill -9`, what was written but never synced is read back
/// into the window: it is synced at open, before a copy of it can be
/// acknowledged as durable.
#[tokio::test]
async fn a_copy_of_an_event_a_crash_left_unsynced_is_durable_only_after_a_sync() {
    let dir = tempfile::tempdir().unwrap();
    let crashed = tempfile::tempdir().unwrap();
    {
        let opts = SpoolOptions {
            durability: Durability::Group(Duration::from_secs(3600)),
            ..with_window(dir.path(), 1000)
        };
        let (spool, _) = Spool::open(opts).unwrap();
        assert_eq!(spool.append(&records(0..5)).unwrap().seqs, 0..5);
        let deadline = Instant::now() + Duration::from_secs(5);
        while spool.stats().written_seq < 5 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(spool.stats().durable_seq, 0, "written, not synced");
        copy_dir(dir.path(), crashed.path());
    }
    let syncs = Arc::new(CountSyncs(std::sync::atomic::AtomicU64::new(0)));
    let opts = SpoolOptions {
        durability: Durability::Always,
        files: SegmentFiles::with_faults(syncs.clone()),
        chain: None,
        ..with_window(crashed.path(), 1000)
    };
    let (spool, _) = Spool::open(opts).unwrap();
    let synced_at_open = syncs.0.load(Ordering::SeqCst);
    assert!(synced_at_open > 0, "the unsynced tail is synced at open");
    let retry = spool.append_when_room(&records(0..5)).await.unwrap();
    assert_eq!(retry.copies, 5);
    assert_eq!(
        spool.durable(retry.durable_end - 1).await,
        Confirmation::Durable
    );
}

/// `drop_oldest` pushes events out: their identities go with them, so a
/// retry is spooled and delivered, not acknowledged onto nothing.
#[tokio::test]
async fn a_retry_of_an_event_drop_oldest_pushed_out_is_spooled_again() {
    let dir = tempfile::tempdir().unwrap();
    let opts = SpoolOptions {
        max_bytes: 64 * 1024,
        when_full: WhenFull::DropOldest,
        ..with_window(dir.path(), 100_000)
    };
    let (spool, _) = Spool::open(opts).unwrap();
    let consumer = spool.consumer("p", StartFrom::Earliest, true);
    let mut next = 0;
    while spool.stats().dropped_events == 0 {
        spool.append(&records(next..next + 10)).unwrap();
        next += 10;
        written(&spool).await;
    }
    let retry = spool.append_when_room(&records(0..1)).await.unwrap();
    assert_eq!(
        (retry.copies, retry.seqs.clone().count()),
        (0, 1),
        "{retry:?}"
    );
    // Readers see what is written: wait for the retry to be, or a loaded
    // machine reads an empty batch first and stops.
    written(&spool).await;
    let mut reader = spool.reader(consumer);
    let mut seen = Vec::new();
    loop {
        let batch = reader.read(100, usize::MAX, true).unwrap();
        if batch.is_empty() {
            break;
        }
        seen.extend(batch.events().map(|(_, e)| e.id.to_owned()));
        spool.commit(consumer, batch.end_seq());
    }
    assert!(seen.contains(&"e0".to_owned()), "the retry is delivered");
}

/// `when_full = "block"`: room the window's share gives comes at once,
/// not after `block_timeout`.
#[tokio::test]
async fn a_blocked_append_gets_the_room_the_window_gives_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let max_bytes = 256 * 1024;
    let opts = SpoolOptions {
        max_bytes,
        when_full: WhenFull::Block,
        block_timeout: Duration::from_secs(3),
        ..with_window(dir.path(), 1_000_000)
    };
    let (spool, _) = Spool::open(opts).unwrap();
    let spool = Arc::new(spool);
    let consumer = spool.consumer("p", StartFrom::Earliest, true);
    let frame = (format::FRAME_HEADER_LEN + record(100_000).encoded().len()) as u64;
    let mut next = 0;
    loop {
        let s = spool.stats();
        if s.disk_bytes + s.pending_bytes + 2 * frame > max_bytes {
            break;
        }
        // The stats can lag the writer by a record under load: full a
        // record early is full all the same.
        match spool.append(&records(next..next + 1)) {
            Ok(_) => next += 1,
            Err(SpoolError::Full { .. }) => break,
            Err(error) => panic!("{error}"),
        }
    }
    written(&spool).await;
    let mut reader = spool.reader(consumer);
    let batch = reader.read(400, usize::MAX, true).unwrap();
    spool.commit(consumer, batch.end_seq());
    let started = Instant::now();
    let blocked = {
        let spool = spool.clone();
        let batch = records(next..next + 10);
        tokio::task::spawn_blocking(move || spool.append(&batch))
            .await
            .unwrap()
    };
    assert!(blocked.is_ok(), "{blocked:?}");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "waited {:?} for room delivered segments could give at once",
        started.elapsed()
    );
}
