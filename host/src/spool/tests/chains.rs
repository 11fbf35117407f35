//! The hash chains the spool seals events into: one writer per stream,
//! continued across restarts and deleted segments, never forked.

use std::collections::BTreeMap;

use auditrelay_plugin_api::envelope::{Actor, AuditEventEnvelope, Outcome};

use super::*;
use crate::integrity::chain::{GENESIS, Opened, StreamKey};
use crate::integrity::merkle;

fn sealed_options(dir: &Path) -> SpoolOptions {
    SpoolOptions {
        chain: Some(StreamKey::Tenant),
        ..options(dir)
    }
}

fn envelope(i: u64) -> Record {
    let event = AuditEventEnvelope::builder("billing-api", "invoice.paid")
        .id(format!("e{i}"))
        .tenant(if i.is_multiple_of(3) {
            "acme"
        } else {
            "globex"
        })
        .actor(Actor::user("u-1"))
        .outcome(Outcome::Success)
        .payload(serde_json::json!({ "n": i }))
        .build()
        .unwrap();
    Record::with_json(&event, &event.to_canonical_json())
}

/// Reads and commits everything written, returning the envelopes' JSON.
async fn deliver(spool: &Spool, consumer: ConsumerId, reader: &mut Reader) -> Vec<Vec<u8>> {
    let mut seen = Vec::new();
    loop {
        let batch = reader.read(100, usize::MAX, true).unwrap();
        if batch.is_empty() {
            return seen;
        }
        seen.extend(batch.events().map(|(_, e)| e.envelope.to_vec()));
        spool.commit(consumer, batch.end_seq());
    }
}

async fn segments_deleted(spool: &Spool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while spool.stats().segments > 1 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(spool.stats().segments, 1);
}

#[tokio::test]
async fn each_stream_chains_on_across_restarts_and_deleted_segments() {
    let dir = tempfile::tempdir().unwrap();
    let mut delivered = Vec::new();
    for round in 0..3u64 {
        let (spool, _) = Spool::open(sealed_options(dir.path())).unwrap();
        let consumer = spool.consumer("p", StartFrom::Earliest, true);
        let mut reader = spool.reader(consumer);
        let first = round * 150;
        spool
            .append(&(first..first + 150).map(envelope).collect::<Vec<_>>())
            .unwrap();
        written(&spool).await;
        delivered.extend(deliver(&spool, consumer, &mut reader).await);
        segments_deleted(&spool).await;
        if round == 1 {
            // As after kill -9: no orderly finish.
            drop(spool);
        } else {
            spool.finish();
        }
    }
    assert!(dir.path().join(crate::spool::chains::CHAINS_FILE).exists());

    let (spool, _) = Spool::open(sealed_options(dir.path())).unwrap();
    let mut streams: BTreeMap<String, Vec<Opened>> = BTreeMap::new();
    for json in &delivered {
        let opened = Opened::read(json).expect("every event is sealed");
        assert!(opened.holds(), "{}", String::from_utf8_lossy(json));
        streams
            .entry(opened.stream.to_string())
            .or_default()
            .push(opened);
    }
    let trees = spool.chain_trees();
    assert_eq!(trees.len(), 2);
    for tree in trees {
        let events = &streams[&*tree.stream];
        assert_eq!(events.len() as u64, tree.size, "{}", tree.stream);
        let mut prev = GENESIS;
        for (i, event) in events.iter().enumerate() {
            assert_eq!(event.seq, i as u64 + 1, "no gap, no reuse");
            assert_eq!(event.prev, prev, "{} seq {}", tree.stream, event.seq);
            prev = event.hash;
        }
        let leaves: Vec<_> = events.iter().map(|e| merkle::leaf_hash(&e.hash)).collect();
        assert_eq!(tree.root, merkle::root(&leaves));
    }
}

#[tokio::test]
async fn records_not_written_when_the_relay_died_leave_no_hole_in_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (spool, _) = Spool::open(sealed_options(dir.path())).unwrap();
        spool
            .append(&(0..30).map(envelope).collect::<Vec<_>>())
            .unwrap();
        written(&spool).await;
        spool.finish();
    }
    // A torn last record: what kill -9 during a write leaves.
    let segments = dir.path().join(SEGMENTS_DIR);
    let last = std::fs::read_dir(&segments)
        .unwrap()
        .map(|e| e.unwrap().path())
        .max()
        .unwrap();
    let len = std::fs::metadata(&last).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&last)
        .unwrap()
        .set_len(len - 10)
        .unwrap();
    let (spool, _) = Spool::open(SpoolOptions {
        durability: Durability::None,
        ..sealed_options(dir.path())
    })
    .unwrap();
    let consumer = spool.consumer("p", StartFrom::Earliest, true);
    spool
        .append(&(30..40).map(envelope).collect::<Vec<_>>())
        .unwrap();
    written(&spool).await;
    let all = deliver(&spool, consumer, &mut spool.reader(consumer)).await;
    let mut last_seq: BTreeMap<String, (u64, [u8; 32])> = BTreeMap::new();
    for json in &all {
        let opened = Opened::read(json).unwrap();
        let (seq, hash) = last_seq
            .get(&*opened.stream)
            .copied()
            .unwrap_or((0, GENESIS));
        assert_eq!(
            (opened.seq, opened.prev),
            (seq + 1, hash),
            "the chain continues from the last record on disk"
        );
        last_seq.insert(opened.stream.to_string(), (opened.seq, opened.hash));
    }
    assert_eq!(all.len(), 39, "the torn record is gone, nothing else");
}

#[tokio::test]
async fn a_copy_read_back_from_disk_is_still_a_copy() {
    let dir = tempfile::tempdir().unwrap();
    let options = || SpoolOptions {
        dedup: DedupWindow {
            ids: 1000,
            age: Duration::from_secs(600),
        },
        ..sealed_options(dir.path())
    };
    let event = envelope(1);
    {
        let (spool, _) = Spool::open(options()).unwrap();
        spool.append(std::slice::from_ref(&event)).unwrap();
        written(&spool).await;
        spool.finish();
    }
    let (spool, _) = Spool::open(options()).unwrap();
    let appended = spool.append(&[event]).unwrap();
    assert_eq!((appended.copies, appended.seqs.is_empty()), (1, true));
}

/// The trees cannot be saved (here: `chains.json.tmp` is a directory, so
/// the save's create fails as on a full or read-only disk): delivered
/// segments must stay, since a restart would need their records to
/// rebuild the trees; once the save works they go, and after a kill the
/// chains go on with no `seq` reused or skipped.
#[tokio::test]
async fn segments_stay_while_the_trees_cannot_be_saved() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir
        .path()
        .join(format!("{}.tmp", crate::spool::chains::CHAINS_FILE));
    std::fs::create_dir_all(blocker.join("in-the-way")).unwrap();
    let mut delivered = Vec::new();
    {
        let (spool, _) = Spool::open(sealed_options(dir.path())).unwrap();
        let consumer = spool.consumer("p", StartFrom::Earliest, true);
        let mut reader = spool.reader(consumer);
        spool
            .append(&(0..300).map(envelope).collect::<Vec<_>>())
            .unwrap();
        written(&spool).await;
        delivered.extend(deliver(&spool, consumer, &mut reader).await);
        let segments = spool.stats().segments;
        assert!(segments > 1, "the test needs several segments");
        // Everything is delivered, and still nothing may go.
        tokio::time::sleep(Duration::from_millis(300)).await;
        spool.append(&[envelope(300)]).unwrap();
        written(&spool).await;
        delivered.extend(deliver(&spool, consumer, &mut reader).await);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            spool.stats().segments >= segments,
            "segments were deleted while the trees could not be saved"
        );
        assert!(!dir.path().join(crate::spool::chains::CHAINS_FILE).exists());

        // The disk recovers: the next deletion saves the trees first.
        std::fs::remove_dir_all(&blocker).unwrap();
        spool.append(&[envelope(301)]).unwrap();
        written(&spool).await;
        delivered.extend(deliver(&spool, consumer, &mut reader).await);
        segments_deleted(&spool).await;
        assert!(dir.path().join(crate::spool::chains::CHAINS_FILE).exists());
        drop(spool); // as after kill -9
    }
    let (spool, _) = Spool::open(sealed_options(dir.path())).unwrap();
    let consumer = spool.consumer("p2", StartFrom::Now, true);
    let mut reader = spool.reader(consumer);
    spool
        .append(&(302..320).map(envelope).collect::<Vec<_>>())
        .unwrap();
    written(&spool).await;
    delivered.extend(deliver(&spool, consumer, &mut reader).await);
    let mut heads: BTreeMap<String, (u64, merkle::Hash)> = BTreeMap::new();
    for json in &delivered {
        let opened = Opened::read(json).expect("sealed");
        assert!(opened.holds());
        let head = heads
            .entry(opened.stream.to_string())
            .or_insert((0, GENESIS));
        assert_eq!(
            opened.seq,
            head.0 + 1,
            "{} after a failed save",
            opened.stream
        );
        assert_eq!(opened.prev, head.1);
        *head = (opened.seq, opened.hash);
    }
    assert_eq!(heads.values().map(|h| h.0).sum::<u64>(), 320);
}
