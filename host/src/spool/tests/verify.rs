//! What `spool verify` and the report at open say on a bad day: every
//! kind of loss is reported (whatever else is gone with it), it stays
//! reported after the relay has moved on, and a relay running meanwhile
//! does not make it report loss that is not there.

use std::path::Path;
use std::time::Duration;

use super::*;

/// A spool with `count` acknowledged events that instance `stuck` has not
/// handled, closed.
async fn undelivered(dir: &Path, count: u64) {
    let mut options = options(dir);
    options.durability = Durability::Always;
    let (spool, _) = Spool::open(options).unwrap();
    spool.consumer("stuck", StartFrom::Earliest, true);
    spool.append(&records(0..count)).unwrap();
    written(&spool).await;
    spool.finish();
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("segments"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
}

fn cut_records(path: &Path, keep: usize) {
    let bytes = std::fs::read(path).unwrap();
    let key = format::read_segment_header(&bytes).unwrap().1;
    let mut offset = format::SEGMENT_HEADER_LEN;
    for _ in 0..keep {
        let format::Parsed::Frame(frame) = format::parse_frame(&bytes[offset..], key) else {
            panic!("an intact frame")
        };
        offset += frame.len;
    }
    std::fs::write(path, &bytes[..offset]).unwrap();
}

#[tokio::test]
async fn every_kind_of_loss_is_reported_whatever_else_is_damaged() {
    type Harm = fn(&Path);
    // What was done, and the lowest sequence number a new event may get:
    // 5 unless what said so is gone too.
    let harms: [(&str, Harm, u64); 5] = [
        (
            "the segments directory deleted",
            |dir| std::fs::remove_dir_all(dir.join("segments")).unwrap(),
            5,
        ),
        (
            "records cut off, the watermark damaged",
            |dir| {
                cut_records(&segment_files(dir)[0], 2);
                let mut mark = std::fs::read(dir.join("durable")).unwrap();
                mark[9] ^= 1;
                mark[33] ^= 1;
                std::fs::write(dir.join("durable"), mark).unwrap();
            },
            2,
        ),
        (
            "records cut off, the cursors file cut short",
            |dir| {
                cut_records(&segment_files(dir)[0], 2);
                std::fs::write(
                    dir.join("cursors.json"),
                    b"{\"version\":1,\"cursors\":{\"stuck\": 0",
                )
                .unwrap();
            },
            5,
        ),
        (
            "the header zeroed, the watermark emptied",
            |dir| {
                let path = &segment_files(dir)[0];
                let mut bytes = std::fs::read(path).unwrap();
                bytes[..format::SEGMENT_HEADER_LEN].fill(0);
                std::fs::write(path, bytes).unwrap();
                std::fs::write(dir.join("durable"), b"").unwrap();
            },
            5,
        ),
        (
            "the frame key file damaged, records cut off",
            |dir| {
                cut_records(&segment_files(dir)[0], 3);
                std::fs::write(dir.join(KEY_FILE), b"garbage").unwrap();
            },
            5,
        ),
    ];
    for (what, harm, lowest) in harms {
        let dir = tempfile::tempdir().unwrap();
        undelivered(dir.path(), 5).await;
        harm(dir.path());
        let verified = inspect(dir.path()).unwrap().report;
        assert!(
            !verified.is_clean(),
            "{what}: verify said intact: {verified}"
        );
        let (spool, opened) = Spool::open(options(dir.path())).unwrap();
        assert!(!opened.is_clean(), "{what}: open said intact: {opened}");
        // Whatever was found, the spool takes and delivers new events.
        let consumer = spool.consumer("stuck", StartFrom::Earliest, true);
        let n = spool.stats().next_seq;
        let next = spool.append(&records(n..n + 1)).unwrap().seqs;
        assert!(
            next.start >= lowest,
            "{what}: sequence number reused: {next:?}"
        );
        written(&spool).await;
        let seen = drain(&spool, consumer, &mut spool.reader(consumer)).await;
        assert!(seen.contains(&next.start), "{what}: {seen:?}");
    }
}

#[tokio::test]
async fn loss_found_at_open_stays_reported_after_the_relay_moved_on() {
    let dir = tempfile::tempdir().unwrap();
    undelivered(dir.path(), 5).await;
    cut_records(&segment_files(dir.path())[0], 2);
    {
        let (spool, opened) = Spool::open(options(dir.path())).unwrap();
        assert_eq!(opened.lost_records(), 3, "{opened}");
        // The instance delivers what is left and new events; its cursor
        // passes the gap; the segment holding it goes.
        let consumer = spool.consumer("stuck", StartFrom::Earliest, true);
        spool.append(&records(5..400)).unwrap();
        written(&spool).await;
        drain(&spool, consumer, &mut spool.reader(consumer)).await;
        spool.finish();
    }
    let verified = inspect(dir.path()).unwrap().report;
    assert_eq!(verified.lost_records(), 0, "nothing is missing on disk now");
    assert!(
        !verified.is_clean(),
        "but the loss is on record: {verified}"
    );
    assert!(verified.to_string().contains("records 2..5"), "{verified}");
    // Once an operator has dealt with it and moved the record away.
    std::fs::rename(
        dir.path().join(FINDINGS_FILE),
        dir.path().join("findings.handled"),
    )
    .unwrap();
    assert!(inspect(dir.path()).unwrap().report.is_clean());
}

#[tokio::test]
async fn cursors_are_saved_soon_after_delivery_even_when_no_event_follows() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open(options(dir.path())).unwrap();
    let consumer = spool.consumer("p", StartFrom::Earliest, true);
    spool.append(&records(0..200)).unwrap();
    written(&spool).await;
    // Let the writer go idle, then deliver everything.
    tokio::time::sleep(Duration::from_millis(300)).await;
    drain(&spool, consumer, &mut spool.reader(consumer)).await;
    let saved = || {
        cursors::load(&dir.path().join("cursors.json"))
            .0
            .get("p")
            .copied()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    while saved() != Some(200) {
        assert!(
            std::time::Instant::now() < deadline,
            "the cursor was not saved within 2 s of the delivery: {:?}",
            saved()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn verifying_a_busy_spool_never_reports_loss() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open(options(dir.path())).unwrap();
    let spool = std::sync::Arc::new(spool);
    let consumer = spool.consumer("p", StartFrom::Earliest, true);
    let busy = {
        let spool = spool.clone();
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            let mut next = 0;
            let mut reader = spool.reader(consumer);
            while started.elapsed() < Duration::from_secs(3) {
                spool.append(&records(next..next + 50)).unwrap();
                next += 50;
                written(&spool).await;
                drain(&spool, consumer, &mut reader).await;
                tokio::task::yield_now().await;
            }
        })
    };
    let dir_path = dir.path().to_owned();
    let verify = tokio::task::spawn_blocking(move || {
        let mut runs = 0;
        let started = std::time::Instant::now();
        while started.elapsed() < Duration::from_secs(3) {
            let report = inspect(&dir_path).unwrap().report;
            assert_eq!(report.lost_records(), 0, "run {runs}: {report}");
            assert!(report.unreadable.is_empty(), "run {runs}: {report}");
            assert!(report.damaged.is_empty(), "run {runs}: {report}");
            runs += 1;
        }
        runs
    });
    busy.await.unwrap();
    let runs = verify.await.unwrap();
    assert!(runs > 10, "{runs} verifications");
}
