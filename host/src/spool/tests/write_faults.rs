//! A disk that stops taking writes or syncs: nobody waiting on durability
//! is kept waiting or told their events are safe, appends that need
//! durability are refused at once, and everything is written once the
//! disk recovers.

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::*;
use crate::spool::files::{FaultPlan, FileOp};

/// Fails every `op` while switched on.
struct Broken {
    op: FileOp,
    on: AtomicBool,
}

impl FaultPlan for Broken {
    fn fail(&self, op: FileOp, _path: &Path) -> Option<io::Error> {
        (op == self.op && self.on.load(Ordering::SeqCst))
            .then(|| io::Error::from_raw_os_error(libc::ENOSPC))
    }
}

async fn broken_spool(dir: &Path, op: FileOp, durability: Durability) -> (Spool, Arc<Broken>) {
    let plan = Arc::new(Broken {
        op,
        on: AtomicBool::new(false),
    });
    let mut options = options(dir);
    options.durability = durability;
    options.files = SegmentFiles::with_faults(plan.clone());
    let (spool, _) = Spool::open(options).unwrap();
    // A first event goes through, so a segment exists.
    spool.append(&records(0..1)).unwrap();
    written(&spool).await;
    (spool, plan)
}

async fn wait_until_writable(spool: &Spool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while spool.write_error().is_some() {
        assert!(
            std::time::Instant::now() < deadline,
            "the writer never recovered"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn confirmation(spool: &Spool, seq: u64) -> Confirmation {
    tokio::time::timeout(Duration::from_secs(5), spool.durable(seq))
        .await
        .expect("durable() answers well within its wait, not after it")
}

#[tokio::test]
async fn a_failing_write_answers_waiters_at_once_and_refuses_durable_appends() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, plan) = broken_spool(
        dir.path(),
        FileOp::Write,
        Durability::Group(Duration::from_millis(5)),
    )
    .await;
    plan.on.store(true, Ordering::SeqCst);
    let seqs = spool.append(&records(1..11)).unwrap().seqs;
    match confirmation(&spool, seqs.end - 1).await {
        Confirmation::Failing(reason) => assert!(reason.contains("No space left"), "{reason}"),
        other => panic!("the events are in memory only, yet: {other:?}"),
    }
    match spool.append_when_room(&records(11..12)).await {
        Err(SpoolError::Unwritable(reason)) => assert!(reason.contains("No space left")),
        other => panic!("an append that needs durability must be refused: {other:?}"),
    }
    // Fire-and-forget appends still wait in memory.
    assert_eq!(spool.append(&records(11..12)).unwrap().seqs, 11..12);

    plan.on.store(false, Ordering::SeqCst);
    wait_until_writable(&spool).await;
    assert_eq!(confirmation(&spool, 11).await, Confirmation::Durable);
    assert_eq!(
        spool.append_when_room(&records(12..13)).await.unwrap().seqs,
        12..13
    );
    let consumer = spool.consumer("p", StartFrom::Earliest, true);
    written(&spool).await;
    let seen = drain(&spool, consumer, &mut spool.reader(consumer)).await;
    assert_eq!(
        seen,
        (0..13).collect::<Vec<_>>(),
        "everything is written after the disk recovers"
    );
}

#[tokio::test]
async fn a_failing_sync_is_never_announced_as_durable() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, plan) = broken_spool(dir.path(), FileOp::Sync, Durability::Always).await;
    plan.on.store(true, Ordering::SeqCst);
    let seqs = spool.append(&records(1..6)).unwrap().seqs;
    match confirmation(&spool, seqs.end - 1).await {
        Confirmation::Failing(reason) => assert!(reason.contains("cannot sync"), "{reason}"),
        other => panic!("a failed sync must not count as durable: {other:?}"),
    }
    assert!(spool.stats().durable_seq < seqs.end);
    plan.on.store(false, Ordering::SeqCst);
    // The writer retries the sync by itself; nothing else is appended.
    wait_until_writable(&spool).await;
    assert_eq!(
        confirmation(&spool, seqs.end - 1).await,
        Confirmation::Durable
    );
    assert!(spool.write_error().is_none());
    assert_eq!(
        spool.append_when_room(&records(6..7)).await.unwrap().seqs,
        6..7
    );
}

#[tokio::test]
async fn a_segment_roll_that_fails_half_way_leaves_nothing_in_the_way() {
    // The directory sync after creating a segment fails once (EMFILE from a
    // starved descriptor table, say): the half-made file must not block
    // every retry.
    let dir = tempfile::tempdir().unwrap();
    let (spool, plan) = broken_spool(dir.path(), FileOp::SyncDir, Durability::Always).await;
    plan.on.store(true, Ordering::SeqCst);
    // Enough to need new segments (4 KiB each).
    let seqs = spool.append(&records(1..200)).unwrap().seqs;
    assert!(matches!(
        confirmation(&spool, seqs.end - 1).await,
        Confirmation::Failing(_)
    ));
    plan.on.store(false, Ordering::SeqCst);
    wait_until_writable(&spool).await;
    assert_eq!(
        confirmation(&spool, seqs.end - 1).await,
        Confirmation::Durable
    );
    assert_eq!(
        spool
            .append_when_room(&records(200..201))
            .await
            .unwrap()
            .seqs,
        200..201
    );
    let consumer = spool.consumer("p", StartFrom::Earliest, true);
    written(&spool).await;
    let seen = drain(&spool, consumer, &mut spool.reader(consumer)).await;
    assert_eq!(seen, (0..201).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_file_where_the_next_segment_goes_is_moved_aside_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open(options(dir.path())).unwrap();
    spool.append(&records(0..1)).unwrap();
    written(&spool).await;
    // Something else created the file the next segment will be (a copy, a
    // tool): it holds bytes, so it is kept, out of the way.
    let mut next = 1;
    while spool.stats().segments < 2 {
        let squatter = dir
            .path()
            .join("segments")
            .join(Segment::file_name(spool.stats().next_seq));
        std::fs::write(&squatter, vec![7u8; 100]).unwrap();
        spool.append(&records(next..next + 20)).unwrap();
        next += 20;
        written(&spool).await;
    }
    assert!(spool.write_error().is_none());
    let strays: Vec<_> = std::fs::read_dir(dir.path().join("strays"))
        .unwrap()
        .collect();
    assert!(!strays.is_empty(), "the squatter is kept");
    let consumer = spool.consumer("p", StartFrom::Earliest, true);
    let seen = drain(&spool, consumer, &mut spool.reader(consumer)).await;
    assert_eq!(seen, (0..next).collect::<Vec<_>>());
}

#[tokio::test]
async fn records_a_failed_sync_dropped_are_never_called_durable() {
    // Linux may drop the pages a failed sync could not write ("fsyncgate"):
    // a later sync then succeeds without them. The writer writes what it
    // wrote since the last good sync again first, checked: here the
    // kernel "dropped" them (the file no longer holds them), so they must
    // never be called durable.
    let dir = tempfile::tempdir().unwrap();
    let (spool, plan) = broken_spool(dir.path(), FileOp::Sync, Durability::Always).await;
    let segment = dir.path().join("segments").join(Segment::file_name(0));
    let synced = std::fs::metadata(&segment).unwrap().len();
    plan.on.store(true, Ordering::SeqCst);
    let seqs = spool.append(&records(1..6)).unwrap().seqs;
    assert!(matches!(
        confirmation(&spool, seqs.end - 1).await,
        Confirmation::Failing(_)
    ));
    let mut bytes = std::fs::read(&segment).unwrap();
    assert!(bytes.len() as u64 > synced, "the records were written");
    bytes[synced as usize..].fill(0);
    std::fs::write(&segment, bytes).unwrap();
    plan.on.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(spool.stats().durable_seq < seqs.end, "{:?}", spool.stats());
    let error = spool.write_error().expect("still failing");
    assert!(error.contains("lost after a failed sync"), "{error}");
    assert!(matches!(
        spool.append_when_room(&records(6..7)).await,
        Err(SpoolError::Unwritable(_))
    ));
}
