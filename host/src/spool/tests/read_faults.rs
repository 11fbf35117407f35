//! A reader whose opens and reads fail now and then (the descriptor table
//! is full, the disk returns EIO) loses nothing: every event comes out
//! exactly once, in order, once the calls succeed again.

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::*;
use crate::spool::files::{FaultPlan, FileOp};

/// Fails calls in a fixed pseudo-random pattern: about one in `every`.
struct Flaky {
    calls: AtomicU64,
    every: u64,
    failed: AtomicU64,
}

impl Flaky {
    fn new(every: u64) -> Arc<Self> {
        Arc::new(Flaky {
            calls: AtomicU64::new(0),
            every,
            failed: AtomicU64::new(0),
        })
    }
}

impl FaultPlan for Flaky {
    fn fail(&self, op: FileOp, _path: &Path) -> Option<io::Error> {
        let error = match op {
            FileOp::Open => libc::EMFILE,
            FileOp::Read => libc::EIO,
            FileOp::Write | FileOp::Sync | FileOp::SyncDir => return None,
        };
        let n = self.calls.fetch_add(1, Ordering::Relaxed);
        // A multiplicative hash of the call number: failures are spread
        // over opens and reads alike, and come in runs now and then.
        if n.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 58 >= 64 / self.every {
            return None;
        }
        self.failed.fetch_add(1, Ordering::Relaxed);
        Some(io::Error::from_raw_os_error(error))
    }
}

/// Reads until `count` events came out (or the reader says it has read
/// everything written), retrying every failed read at once, as a worker
/// does after its pause.
fn read_all_through_failures(
    spool: &Spool,
    consumer: ConsumerId,
    reader: &mut Reader,
    count: u64,
) -> (Vec<u64>, usize) {
    let mut seen = Vec::new();
    let mut errors = 0;
    while (seen.len() as u64) < count {
        // What was written *before* the read: read after, a writer still
        // appending could have written more than the empty read could see.
        let written_before = spool.stats().written_seq;
        match reader.read(37, 3000, true) {
            Ok(batch) if batch.is_empty() && reader.caught_up() && written_before >= count => {
                break;
            }
            Ok(batch) => {
                seen.extend(batch.events().map(|(seq, event)| {
                    assert_eq!(event.id, format!("e{seq}"), "{seq} has another's content");
                    seq
                }));
                spool.commit(consumer, batch.end_seq());
            }
            Err(_) => {
                errors += 1;
                assert!(errors < 100_000, "the reader never got past the failures");
            }
        }
    }
    (seen, errors)
}

/// Every sequence number below `count` came out once, in order.
fn assert_exactly_once(seen: &[u64], count: u64) {
    let lost: Vec<u64> = (0..count)
        .filter(|s| seen.binary_search(s).is_err())
        .collect();
    assert!(
        lost.is_empty(),
        "{} events lost, the first: {:?}",
        lost.len(),
        &lost[..lost.len().min(10)]
    );
    assert!(
        seen.windows(2).all(|w| w[0] < w[1]),
        "events repeated or out of order"
    );
    assert_eq!(seen.len() as u64, count);
}

#[tokio::test]
async fn failed_opens_and_reads_never_move_the_reader() {
    let dir = tempfile::tempdir().unwrap();
    let plan = Flaky::new(4);
    let mut options = options(dir.path());
    options.files = SegmentFiles::with_faults(plan.clone());
    let (spool, _) = Spool::open(options).unwrap();
    let consumer = spool.consumer("p", StartFrom::Now, true);
    let mut reader = spool.reader(consumer);
    spool.append(&records(0..5000)).unwrap();
    written(&spool).await;
    assert!(spool.stats().segments > 20, "{:?}", spool.stats());

    let (seen, errors) = read_all_through_failures(&spool, consumer, &mut reader, 5000);
    assert!(
        errors > 100 && plan.failed.load(Ordering::Relaxed) > 100,
        "the plan must actually fail reads: {errors}"
    );
    assert_exactly_once(&seen, 5000);
    assert_eq!(spool.lag(consumer).0, 0);
    assert!(reader.read(10, usize::MAX, true).unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_while_events_keep_coming_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = options(dir.path());
    options.files = SegmentFiles::with_faults(Flaky::new(3));
    let (spool, _) = Spool::open(options).unwrap();
    let spool = Arc::new(spool);
    let consumer = spool.consumer("p", StartFrom::Now, true);
    let mut reader = spool.reader(consumer);
    let writer = {
        let spool = spool.clone();
        std::thread::spawn(move || {
            for start in (0..4000).step_by(40) {
                spool.append(&records(start..start + 40)).unwrap();
                std::thread::sleep(std::time::Duration::from_micros(200));
            }
        })
    };
    let (seen, _) = read_all_through_failures(&spool, consumer, &mut reader, 4000);
    writer.join().unwrap();
    assert_exactly_once(&seen, 4000);
}
