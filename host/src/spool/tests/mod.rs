use std::path::Path;
use std::time::Duration;

use auditrelay_plugin_api::Event;

use super::*;

fn options(dir: &Path) -> SpoolOptions {
    SpoolOptions {
        dir: dir.to_owned(),
        durability: Durability::None,
        segment_bytes: 4096,
        max_bytes: 64 * 1024 * 1024,
        when_full: WhenFull::Reject,
        block_timeout: Duration::from_millis(200),
        max_pending_bytes: 16 * 1024 * 1024,
        files: SegmentFiles::default(),
        chain: None,
        dedup: DedupWindow::OFF,
    }
}

fn record(i: u64) -> Record {
    let json = format!("{{\"n\":{i}}}");
    Record::from_event(Event {
        id: &format!("e{i}"),
        source: "test",
        event_type: "t.x",
        time_unix_nanos: i as i64,
        tenant: None,
        envelope: json.as_bytes(),
    })
}

/// The frame key of the spool in `dir`, to lay out records as it does.
fn spool_key(dir: &Path) -> format::FrameKey {
    key::read(&dir.join(KEY_FILE))
        .unwrap()
        .expect("the spool has a key")
}

fn records(range: Range<u64>) -> Vec<Record> {
    range.map(record).collect()
}

/// Reads everything written so far, committing as it goes.
async fn drain(spool: &Spool, consumer: ConsumerId, reader: &mut Reader) -> Vec<u64> {
    let mut seen = Vec::new();
    loop {
        let batch = reader.read(100, usize::MAX, true).unwrap();
        if batch.is_empty() {
            return seen;
        }
        for (seq, event) in batch.events() {
            assert_eq!(
                event.id,
                format!("e{seq}"),
                "event {seq} has another's content"
            );
            seen.push(seq);
        }
        spool.commit(consumer, batch.end_seq());
    }
}

async fn written(spool: &Spool) {
    let next = spool.stats().next_seq;
    if next > 0 {
        assert_eq!(spool.durable(next - 1).await, Confirmation::Durable);
    }
}

#[tokio::test]
async fn events_flow_across_segments_and_delivered_segments_go() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, report) = Spool::open(options(dir.path())).unwrap();
    assert!(report.is_clean());
    let consumer = spool.consumer("p", StartFrom::Now, true);
    let mut reader = spool.reader(consumer);
    assert_eq!(spool.append(&records(0..500)).unwrap().seqs, 0..500);
    written(&spool).await;
    assert!(
        spool.stats().segments > 5,
        "4 KiB segments: {:?}",
        spool.stats()
    );
    let seen = drain(&spool, consumer, &mut reader).await;
    assert_eq!(seen, (0..500).collect::<Vec<_>>());
    // Deleted once the cursor that passed them is saved.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while spool.stats().segments > 1 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let stats = spool.stats();
    assert_eq!(
        stats.segments, 1,
        "only the segment being written is kept: {stats:?}"
    );
    assert_eq!(spool.lag(consumer).0, 0);
}

#[tokio::test]
async fn a_restart_resumes_each_cursor_and_the_sequence() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (spool, _) = Spool::open(options(dir.path())).unwrap();
        let fast = spool.consumer("fast", StartFrom::Now, true);
        spool.consumer("slow", StartFrom::Now, true);
        spool.append(&records(0..100)).unwrap();
        written(&spool).await;
        let mut reader = spool.reader(fast);
        assert_eq!(drain(&spool, fast, &mut reader).await.len(), 100);
        spool.finish();
    }
    let (spool, report) = Spool::open(options(dir.path())).unwrap();
    assert_eq!((report.records, report.next_seq), (100, 100));
    let fast = spool.consumer("fast", StartFrom::Now, true);
    let slow = spool.consumer("slow", StartFrom::Now, true);
    let newcomer = spool.consumer("new", StartFrom::Earliest, true);
    assert_eq!(spool.append(&records(100..110)).unwrap().seqs, 100..110);
    written(&spool).await;
    assert_eq!(
        drain(&spool, fast, &mut spool.reader(fast)).await,
        (100..110).collect::<Vec<_>>()
    );
    assert_eq!(
        drain(&spool, slow, &mut spool.reader(slow)).await.len(),
        110
    );
    assert_eq!(
        drain(&spool, newcomer, &mut spool.reader(newcomer))
            .await
            .len(),
        110
    );
}

#[tokio::test]
async fn only_one_relay_may_use_a_spool() {
    let dir = tempfile::tempdir().unwrap();
    let (_spool, _) = Spool::open(options(dir.path())).unwrap();
    let err = Spool::open(options(dir.path())).err().unwrap().to_string();
    assert!(err.contains("another relay is using the spool"), "{err}");
}

#[tokio::test]
async fn a_full_spool_refuses_whole_appends_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = options(dir.path());
    opts.max_bytes = 8 * 1024;
    let (spool, _) = Spool::open(opts).unwrap();
    let consumer = spool.consumer("p", StartFrom::Now, true);
    let mut accepted = 0;
    let err = loop {
        match spool.append(&records(accepted..accepted + 10)) {
            Ok(_) => accepted += 10,
            Err(err) => break err,
        }
    };
    assert!(matches!(err, SpoolError::Full { .. }), "{err}");
    written(&spool).await;
    let seen = drain(&spool, consumer, &mut spool.reader(consumer)).await;
    assert_eq!(
        seen.len() as u64,
        accepted,
        "everything accepted is there, nothing of the refused append"
    );
    // Delivered segments are deleted (once the cursors are saved): room again.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while spool.append(&records(accepted..accepted + 10)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "no room after delivery"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn a_blocking_spool_waits_for_room() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, consumer, next) = nearly_full(dir.path(), Duration::from_secs(10)).await;
    let blocked = std::thread::spawn({
        let spool = spool.clone();
        move || spool.append(&records(next..next + 20))
    });
    std::thread::sleep(Duration::from_millis(100));
    assert!(!blocked.is_finished(), "the append waits for room");
    let mut reader = spool.reader(consumer);
    drain(&spool, consumer, &mut reader).await;
    assert_eq!(blocked.join().unwrap().unwrap().seqs, next..next + 20);
}

/// A spool of 8 KiB holding 7 KiB, blocking appends for `block_timeout`;
/// the next sequence number.
async fn nearly_full(dir: &Path, block_timeout: Duration) -> (Arc<Spool>, ConsumerId, u64) {
    let mut opts = options(dir);
    opts.max_bytes = 8 * 1024;
    opts.when_full = WhenFull::Block;
    opts.block_timeout = block_timeout;
    let (spool, _) = Spool::open(opts).unwrap();
    let spool = Arc::new(spool);
    let consumer = spool.consumer("p", StartFrom::Now, true);
    let mut next = 0;
    while spool.stats().disk_bytes + spool.stats().pending_bytes < 7 * 1024 {
        spool.append(&records(next..next + 1)).unwrap();
        next += 1;
    }
    written(&spool).await;
    (spool, consumer, next)
}

/// On a one-thread runtime (an HTTP server's I/O thread), an append
/// waiting for room leaves the thread free: another task keeps running
/// meanwhile, and makes the room the append then takes.
#[tokio::test(flavor = "current_thread")]
async fn an_async_append_waits_for_room_without_holding_its_thread() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, consumer, next) = nearly_full(dir.path(), Duration::from_secs(10)).await;
    let waiting = tokio::spawn({
        let spool = spool.clone();
        async move { spool.append_when_room(&records(next..next + 20)).await }
    });
    let mut ticks = 0;
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(10)).await;
        ticks += 1;
    }
    assert_eq!(ticks, 10, "the thread kept serving other tasks");
    assert!(!waiting.is_finished(), "the append waits for room");
    let mut reader = spool.reader(consumer);
    drain(&spool, consumer, &mut reader).await;
    let appended = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("freed room wakes the append")
        .unwrap();
    assert_eq!(appended.unwrap().seqs, next..next + 20);
}

#[tokio::test(flavor = "current_thread")]
async fn an_async_append_gives_up_at_block_timeout_and_a_closed_spool_wakes_it() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _, next) = nearly_full(dir.path(), Duration::from_millis(150)).await;
    let started = std::time::Instant::now();
    let refused = spool.append_when_room(&records(next..next + 20)).await;
    assert!(
        matches!(refused, Err(SpoolError::Full { .. })),
        "{refused:?}"
    );
    assert!(started.elapsed() >= Duration::from_millis(150));

    let dir = tempfile::tempdir().unwrap();
    let (spool, _, next) = nearly_full(dir.path(), Duration::from_secs(30)).await;
    let waiting = tokio::spawn({
        let spool = spool.clone();
        async move { spool.append_when_room(&records(next..next + 20)).await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    spool.close();
    let closed = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("closing wakes a waiting append")
        .unwrap();
    assert!(matches!(closed, Err(SpoolError::Closed)), "{closed:?}");
}

#[tokio::test]
async fn drop_oldest_makes_room_and_counts_what_it_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = options(dir.path());
    opts.max_bytes = 16 * 1024;
    opts.when_full = WhenFull::DropOldest;
    let (spool, _) = Spool::open(opts).unwrap();
    let consumer = spool.consumer("p", StartFrom::Now, true);
    for i in 0..600 {
        spool.append(&records(i..i + 1)).unwrap();
        written(&spool).await;
    }
    let stats = spool.stats();
    assert!(stats.dropped_events > 0, "{stats:?}");
    let seen = drain(&spool, consumer, &mut spool.reader(consumer)).await;
    assert_eq!(
        seen.len() as u64 + stats.dropped_events,
        600,
        "every event is delivered or counted as dropped"
    );
    assert_eq!(*seen.last().unwrap(), 599);
}

#[tokio::test]
async fn each_durability_mode_says_when_events_are_safe() {
    for durability in [
        Durability::Always,
        Durability::Group(Duration::from_millis(5)),
        Durability::None,
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut opts = options(dir.path());
        opts.durability = durability;
        let (spool, _) = Spool::open(opts).unwrap();
        let seqs = spool.append(&records(0..50)).unwrap().seqs;
        let durable =
            tokio::time::timeout(Duration::from_secs(5), spool.durable(seqs.end - 1)).await;
        assert_eq!(durable, Ok(Confirmation::Durable), "{durability:?}");
        assert!(spool.stats().durable_seq >= 50);
    }
}

#[tokio::test]
async fn readers_are_woken_when_a_batch_is_due_and_on_close() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open(options(dir.path())).unwrap();
    let spool = Arc::new(spool);
    let consumer = spool.consumer("p", StartFrom::Now, true);
    let waiter = tokio::spawn({
        let spool = spool.clone();
        async move { spool.wait_readable(consumer, 9, u64::MAX).await }
    });
    spool.append(&records(0..5)).unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        !waiter.is_finished(),
        "five events do not make a batch of ten"
    );
    spool.append(&records(5..10)).unwrap();
    tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .unwrap()
        .unwrap();

    let waiter = tokio::spawn({
        let spool = spool.clone();
        async move { spool.wait_readable(consumer, 1_000, u64::MAX).await }
    });
    spool.close();
    tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(spool.append(&records(0..1)), Err(SpoolError::Closed));
}

/// Writes 400 events in 4 KiB segments and closes the spool.
async fn filled(dir: &Path) -> Vec<PathBuf> {
    let (spool, _) = Spool::open(options(dir)).unwrap();
    spool.append(&records(0..400)).unwrap();
    written(&spool).await;
    spool.finish();
    let mut segments: Vec<PathBuf> = std::fs::read_dir(dir.join("segments"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    segments.sort();
    segments
}

#[tokio::test]
async fn flipped_bytes_in_a_middle_segment_cost_only_the_damaged_records() {
    let dir = tempfile::tempdir().unwrap();
    let segments = filled(dir.path()).await;
    let middle = &segments[segments.len() / 2];
    let mut bytes = std::fs::read(middle).unwrap();
    let at = bytes.len() / 2;
    for byte in &mut bytes[at..at + 8] {
        *byte ^= 0x5a;
    }
    std::fs::write(middle, &bytes).unwrap();

    let (spool, report) = Spool::open(options(dir.path())).unwrap();
    assert!(!report.is_clean());
    assert_eq!(report.damaged.len(), 1, "{report}");
    let damage = &report.damaged[0];
    assert_eq!(&damage.segment, middle);
    let lost = damage.lost.clone().expect("the lost records are known");
    assert!((1..=2).contains(&(lost.end - lost.start)), "{report}");
    assert!(report.to_string().contains("damaged"), "{report}");

    let consumer = spool.consumer("p", StartFrom::Earliest, true);
    let seen = drain(&spool, consumer, &mut spool.reader(consumer)).await;
    let expected: Vec<u64> = (0..400).filter(|s| !lost.contains(s)).collect();
    assert_eq!(seen, expected, "every undamaged event is still delivered");
}

#[tokio::test]
async fn a_missing_segment_file_is_skipped_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let segments = filled(dir.path()).await;
    std::fs::remove_file(&segments[1]).unwrap();
    let (spool, report) = Spool::open(options(dir.path())).unwrap();
    assert_eq!(report.missing.len(), 1, "{report}");
    let consumer = spool.consumer("p", StartFrom::Earliest, true);
    let seen = drain(&spool, consumer, &mut spool.reader(consumer)).await;
    assert_eq!(seen.len() as u64 + report.lost_records(), 400);
    assert_eq!(*seen.last().unwrap(), 399);
}

#[tokio::test]
async fn a_torn_write_is_cut_and_appends_continue_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let segments = filled(dir.path()).await;
    // The relay died half way through writing record 400, which nobody
    // had been told was durable.
    let last = segments.last().unwrap();
    let mut frame = Vec::new();
    format::write_frame(
        &mut frame,
        spool_key(dir.path()),
        400,
        record(400).encoded(),
    );
    let mut bytes = std::fs::read(last).unwrap();
    bytes.extend_from_slice(&frame[..frame.len() / 2]);
    std::fs::write(last, bytes).unwrap();
    let (spool, report) = Spool::open(options(dir.path())).unwrap();
    assert!(report.is_clean(), "{report}");
    assert!(report.torn_tail.is_some());
    assert_eq!(report.next_seq, 400);
    let consumer = spool.consumer("p", StartFrom::Earliest, true);
    assert_eq!(spool.append(&records(400..401)).unwrap().seqs, 400..401);
    written(&spool).await;
    let seen = drain(&spool, consumer, &mut spool.reader(consumer)).await;
    assert_eq!(seen, (0..401).collect::<Vec<_>>());
}

#[tokio::test]
async fn acknowledged_records_torn_off_the_end_are_reported_lost_and_never_reused() {
    let dir = tempfile::tempdir().unwrap();
    let segments = filled(dir.path()).await;
    let last = segments.last().unwrap();
    let len = std::fs::metadata(last).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(last)
        .unwrap()
        .set_len(len - 5)
        .unwrap();
    let (spool, report) = Spool::open(options(dir.path())).unwrap();
    assert!(!report.is_clean(), "{report}");
    assert_eq!(report.lost_tail, Some(399..400), "{report}");
    assert_eq!(report.lost_records(), 1);
    let consumer = spool.consumer("p", StartFrom::Earliest, true);
    // One that reads nothing keeps every segment, and the gap with them.
    spool.consumer("slow", StartFrom::Earliest, true);
    // A reader goes past the lost record even before anything new comes.
    let mut reader = spool.reader(consumer);
    assert_eq!(drain(&spool, consumer, &mut reader).await.len(), 399);
    assert!(reader.read(10, usize::MAX, true).unwrap().is_empty());
    assert_eq!(reader.next_seq(), 400, "past the lost record");
    assert_eq!(
        spool.append(&records(400..401)).unwrap().seqs,
        400..401,
        "the lost record's number is not given to another event"
    );
    written(&spool).await;
    assert_eq!(drain(&spool, consumer, &mut reader).await, [400]);
    spool.finish();
    drop(spool);
    // Reported again on the next start, as a gap between segments, for
    // the instance that still needs it.
    let (_, again) = Spool::open(options(dir.path())).unwrap();
    assert_eq!(again.missing, vec![399..400], "{again}");
}

#[tokio::test]
async fn large_events_and_byte_budgets() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open(options(dir.path())).unwrap();
    let consumer = spool.consumer("p", StartFrom::Now, true);
    let big = "x".repeat(3 * 1024 * 1024);
    let event = Record::from_event(Event {
        id: "big",
        source: "test",
        event_type: "t",
        time_unix_nanos: 0,
        tenant: None,
        envelope: big.as_bytes(),
    });
    spool
        .append(&[record(0), event, record(2), record(3)])
        .unwrap();
    written(&spool).await;
    let mut reader = spool.reader(consumer);
    let first = reader.read(100, 1024, true).unwrap();
    assert_eq!(first.len(), 1, "the byte budget stops before the big event");
    let second = reader.read(100, 1024, true).unwrap();
    assert_eq!(
        (second.len(), second.event(0).id),
        (1, "big"),
        "a big event still goes, alone"
    );
    assert_eq!(reader.read(100, 1024 * 1024, false).unwrap().len(), 2);
    assert!(
        reader.read(100, 1024, false).unwrap().is_empty(),
        "nothing left"
    );
}

#[tokio::test]
async fn disk_use_falls_back_near_zero_once_everything_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = options(dir.path());
    opts.segment_bytes = 64 * 1024 * 1024;
    let (spool, _) = Spool::open(opts).unwrap();
    let consumer = spool.consumer("p", StartFrom::Now, true);
    let payload = "x".repeat(4096);
    let events: Vec<Record> = (0..600)
        .map(|i| {
            Record::from_event(Event {
                id: &format!("e{i}"),
                source: "test",
                event_type: "t",
                time_unix_nanos: 0,
                tenant: None,
                envelope: payload.as_bytes(),
            })
        })
        .collect();
    spool.append(&events).unwrap();
    written(&spool).await;
    assert!(spool.stats().disk_bytes > 2 * 1024 * 1024);
    assert_eq!(
        drain(&spool, consumer, &mut spool.reader(consumer))
            .await
            .len(),
        600
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while spool.stats().disk_bytes > 1024 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let stats = spool.stats();
    assert!(stats.disk_bytes <= 1024, "{stats:?}");
    // And it goes on working from the fresh segment.
    spool.append(&records(600..601)).unwrap();
    written(&spool).await;
    assert_eq!(
        drain(&spool, consumer, &mut spool.reader(consumer)).await,
        [600]
    );
}

/// The writer sleeps, lingers and is woken by appends; a lost wakeup would
/// leave an append never durable. Bursts with pauses between them, from
/// several threads, in every mode, must all become durable promptly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_append_is_left_unwritten_whatever_the_timing() {
    for durability in [
        Durability::None,
        Durability::Always,
        Durability::Group(Duration::from_millis(2)),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut opts = options(dir.path());
        opts.durability = durability;
        let (spool, _) = Spool::open(opts).unwrap();
        let spool = Arc::new(spool);
        let threads: Vec<_> = (0..3u64)
            .map(|t| {
                let spool = spool.clone();
                std::thread::spawn(move || {
                    let mut last = 0;
                    for burst in 0..40u64 {
                        for i in 0..(burst % 7) + 1 {
                            last = spool
                                .append(&records(
                                    t * 10_000 + burst * 10 + i..t * 10_000 + burst * 10 + i + 1,
                                ))
                                .unwrap()
                                .seqs
                                .start;
                        }
                        std::thread::sleep(Duration::from_micros(50 * (burst % 5)));
                    }
                    last
                })
            })
            .collect();
        for thread in threads {
            let last = thread.join().unwrap();
            let durable = tokio::time::timeout(Duration::from_secs(5), spool.durable(last)).await;
            assert_eq!(
                durable,
                Ok(Confirmation::Durable),
                "{durability:?}: an append was never written"
            );
        }
    }
}

mod chains;
mod dedup;
mod read_faults;
mod recovery_fuzz;
mod verify;
mod write_faults;

/// A last segment the writer cannot go on with (another key) and that
/// holds no record: the next roll takes its file name. The spool must
/// then know one segment there, not two — deleting the stale entry once
/// its records (none) are delivered would delete the live file, and every
/// record written into it after would be lost at the next start.
#[tokio::test]
async fn a_segment_rolled_over_an_empty_unusable_one_is_never_deleted_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open(options(dir.path())).unwrap();
    let consumer = spool.consumer("p", StartFrom::Earliest, true);
    spool.append(&records(0..5)).unwrap();
    written(&spool).await;
    drain(&spool, consumer, &mut spool.reader(consumer)).await;
    spool.finish();
    drop(spool);
    let stale = dir.path().join("segments").join(Segment::file_name(5));
    std::fs::write(
        &stale,
        format::segment_header(5, format::FrameKey::from_bytes(*b"otherkey")),
    )
    .unwrap();

    let (spool, _) = Spool::open(options(dir.path())).unwrap();
    let consumer = spool.consumer("p", StartFrom::Earliest, true);
    let mut reader = spool.reader(consumer);
    spool.append(&records(5..10)).unwrap();
    written(&spool).await;
    assert_eq!(
        drain(&spool, consumer, &mut reader).await,
        (5..10).collect::<Vec<_>>()
    );
    // Let the cursors be saved and the delivered segments deleted.
    tokio::time::sleep(Duration::from_millis(300)).await;
    spool.append(&records(10..20)).unwrap();
    written(&spool).await;
    spool.finish();
    drop(spool);

    let (spool, report) = Spool::open(options(dir.path())).unwrap();
    assert!(report.is_clean(), "{report}");
    let consumer = spool.consumer("p", StartFrom::Earliest, true);
    let seen = drain(&spool, consumer, &mut spool.reader(consumer)).await;
    assert_eq!(seen, (10..20).collect::<Vec<_>>());
}
