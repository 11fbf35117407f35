//! Outages, poison events and damaged spools: nothing accepted is lost.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use auditrelay::Relay;
use auditrelay_tests::{
    Home, Mode, Receiver, RelayProcess, free_port, post_counting, relay_binary, sample_envelope,
    sink_tables, tally,
};

/// A relay whose `sink` instance POSTs to `receiver` through the fixture;
/// `spool` holds `[spool]` settings.
fn sink_config(
    home: &Home,
    receiver: &Receiver,
    extra_config: &str,
    spool: &str,
) -> auditrelay::Config {
    home.config(&format!(
        "[spool]\n{spool}\n{}",
        sink_tables(receiver, extra_config)
    ))
}

/// An outage seen from outside: `auditrelay run` as its own process takes
/// HTTP load from this one while its destination is fine, refuses with
/// 503, is unreachable, and is fine again; what counts as acknowledged is
/// what this client saw answered 202, and what counts as delivered is what
/// the destination recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_loses_nothing_and_the_spool_empties_afterwards() {
    let receiver = Receiver::start().await;
    let home = Home::with_plugins(&["faulty"]);
    let port = free_port();
    let config = home.config_file(&format!(
        "[ingest.http]\nlisten = \"127.0.0.1:{port}\"\n[spool]\nsegment_size = \"256KiB\"\ndedup_ids = 100\n{}",
        sink_tables(&receiver, "fault = \"none\"")
    ));
    let mut relay = RelayProcess::start(&config, &[]);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let spool_bytes = async || -> u64 {
        auditrelay_tests::status(&client, &base).await["spool_bytes"]
            .as_u64()
            .unwrap()
    };

    // Four seconds of steady load: fine, refusing with 503, unreachable, fine.
    let started = Instant::now();
    let mut acknowledged = HashSet::new();
    let mut peak_spool = 0;
    let mut phase = 0;
    let mut next = 0;
    while started.elapsed() < Duration::from_secs(4) {
        let wanted = match started.elapsed().as_millis() {
            0..800 => 0,
            800..1800 => 1,
            1800..3000 => 2,
            _ => 3,
        };
        if wanted != phase {
            phase = wanted;
            receiver
                .set_mode([Mode::Accept, Mode::Fail(503), Mode::Down, Mode::Accept][phase])
                .await;
        }
        let events: Vec<_> = (next..next + 50).map(sample_envelope).collect();
        next += 50;
        post_counting(
            &client,
            &format!("{base}/v1/events"),
            events,
            &mut acknowledged,
        )
        .await;
        peak_spool = peak_spool.max(spool_bytes().await);
    }

    let delivered = receiver
        .wait_for_all(&acknowledged, Duration::from_secs(60))
        .await;
    let result = tally(&acknowledged, &receiver.ids());
    eprintln!(
        "outage: {} events acknowledged (202) to this client, {} delivered, {} duplicates, {} lost; spool peaked at {} bytes",
        result.acknowledged, result.distinct, result.duplicates, result.lost, peak_spool,
    );
    assert!(delivered, "{result:?}");
    assert_eq!(result.lost, 0, "{result:?}");
    assert!(result.acknowledged > 5000, "too little load: {result:?}");
    assert!(
        peak_spool > 1024 * 1024,
        "the outage should have filled the spool: {peak_spool}"
    );
    // Delivered segments are deleted: what stays is the one being written
    // and, at most, the one before it holding the dedup window's last 100.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut after = spool_bytes().await;
    while after > 512 * 1024 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
        after = spool_bytes().await;
    }
    assert!(after <= 512 * 1024, "the spool still holds {after} bytes");
    assert!(relay.terminate(), "{}", relay.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_that_crashes_the_plugin_is_isolated_and_the_rest_delivered_in_order() {
    let receiver = Receiver::start().await;
    let home = Home::with_plugins(&["faulty"]);
    let config = sink_config(
        &home,
        &receiver,
        "fault = \"none\"\npanic_type = \"poison.pill\"",
        "",
    );
    let relay = Relay::start(config).await.unwrap();
    let mut expected = Vec::new();
    let mut pill = String::new();
    let mut batch = Vec::new();
    for i in 0..200 {
        let mut event = sample_envelope(i);
        if i == 137 {
            event.event_type = "poison.pill".into();
            pill = event.id.clone();
        } else {
            expected.push(event.id.clone());
        }
        batch.push(event);
    }
    // One batch of 200: the plugin panics on every attempt until the pill
    // is found.
    relay.emit_batch(batch).unwrap();
    let expected_set: HashSet<String> = expected.iter().cloned().collect();
    assert!(
        receiver
            .wait_for_all(&expected_set, Duration::from_secs(60))
            .await,
        "everything but the pill arrives"
    );
    assert!(relay.idle(Duration::from_secs(30)).await);
    let arrived = receiver.ids();
    let first_copies: Vec<String> = {
        let mut seen = HashSet::new();
        arrived
            .into_iter()
            .filter(|id| seen.insert(id.clone()))
            .collect()
    };
    assert_eq!(first_copies, expected, "in spool order, the pill left out");
    let dead = relay.dead_letters("sink").unwrap().list(0, 10).unwrap();
    assert_eq!(dead.total, 1);
    assert_eq!(dead.events[0]["event"]["id"], pill.as_str());
    let reason = dead.events[0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("crashed on this event 3 times in a row while it delivered the rest")
            && reason.contains("poison pill"),
        "{reason}"
    );
    relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_event_is_set_aside_and_replayed_once_the_plugin_is_fixed() {
    let receiver = Receiver::start().await;
    let home = Home::with_plugins(&["faulty"]);
    let poisoned = sink_config(
        &home,
        &receiver,
        "fault = \"none\"\nreject_type = \"poison.event\"",
        "",
    );
    let relay = Relay::start(poisoned).await.unwrap();
    let mut all = HashSet::new();
    let mut poison = HashSet::new();
    for i in 0..100 {
        let mut event = sample_envelope(i);
        if i % 10 == 3 {
            event.event_type = "poison.event".into();
            poison.insert(event.id.clone());
        }
        all.insert(event.id.clone());
        relay.emit(event).unwrap();
    }
    assert!(relay.idle(Duration::from_secs(30)).await);
    // The plugin moved on: everything else arrived.
    let healthy: HashSet<String> = all.difference(&poison).cloned().collect();
    assert!(
        receiver
            .wait_for_all(&healthy, Duration::from_secs(10))
            .await
    );
    let dead = relay.dead_letters("sink").unwrap().list(0, 100).unwrap();
    assert_eq!(dead.total, 10);
    assert!(
        dead.events
            .iter()
            .all(|e| e["reason"] == "fixture: poison.event events are refused")
    );
    let dead_ids: HashSet<String> = dead
        .events
        .iter()
        .map(|e| e["event"]["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(dead_ids, poison);
    let status = relay.status();
    assert_eq!(
        (
            status.plugin("sink").unwrap().delivered,
            status.plugin("sink").unwrap().dead_letters
        ),
        (90, 10)
    );
    relay.shutdown().await;
    drop(relay);

    // The operator fixes the plugin's config, restarts, and replays.
    let fixed = sink_config(&home, &receiver, "fault = \"none\"", "");
    let relay = Relay::start(fixed).await.unwrap();
    assert!(relay.replay_dead_letters("sink"));
    assert!(
        receiver.wait_for_all(&all, Duration::from_secs(30)).await,
        "the replay did not deliver"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while relay
        .dead_letters("sink")
        .unwrap()
        .list(0, 0)
        .unwrap()
        .total
        > 0
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let after = relay.dead_letters("sink").unwrap().list(0, 0).unwrap();
    assert_eq!(
        (after.total, after.replaying),
        (0, false),
        "replayed dead letters are gone"
    );
    relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_spool_is_reported_and_every_undamaged_event_delivered() {
    let receiver = Receiver::start().await;
    let home = Home::with_plugins(&["faulty"]);
    // First the destination is out of reach for good: events stay spooled.
    let stuck = sink_config(
        &home,
        &receiver,
        "fault = \"retryable\"",
        "segment_size = \"64KiB\"\nmax_size = \"64MiB\"\ndurability = \"always\"",
    );
    let relay = Relay::start(stuck.clone()).await.unwrap();
    let events: Vec<_> = (0..600).map(sample_envelope).collect();
    let ids: Vec<String> = events.iter().map(|e| e.id.clone()).collect();
    let receipt = relay.emit_batch(events).unwrap();
    relay.durable(&receipt).await.unwrap();
    relay.shutdown().await;
    drop(relay);

    // Damage: flip bytes inside one segment, delete another, tear the last.
    let segments_dir = stuck.relay.data_dir.spool().join("segments");
    let mut segments: Vec<_> = std::fs::read_dir(&segments_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    segments.sort();
    assert!(segments.len() >= 6, "{segments:?}");
    let flipped = &segments[1];
    let mut bytes = std::fs::read(flipped).unwrap();
    let middle = bytes.len() / 2;
    for byte in &mut bytes[middle..middle + 16] {
        *byte ^= 0xa5;
    }
    std::fs::write(flipped, bytes).unwrap();
    std::fs::remove_file(&segments[3]).unwrap();
    let last = segments.last().unwrap();
    let len = std::fs::metadata(last).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(last)
        .unwrap()
        .set_len(len - 10)
        .unwrap();

    // `spool verify` names the damage and fails.
    let config_file = home.config_file(&format!(
        "[spool]\nsegment_size = \"64KiB\"\n[plugins.sink]\nplugin = \"faulty\"\n[plugins.sink.config]\nfault = \"none\"\nurl = \"{}\"\n",
        receiver.url()
    ));
    let verify = std::process::Command::new(relay_binary())
        .args(["spool", "verify", "-c", config_file.to_str().unwrap()])
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&verify.stdout);
    assert_eq!(verify.status.code(), Some(1), "{report}");
    assert!(report.contains("damaged"), "{report}");
    assert!(report.contains("a segment file is missing"), "{report}");
    assert!(
        report.contains(&flipped.file_name().unwrap().to_string_lossy().to_string()),
        "{report}"
    );

    // The relay starts anyway, reports, and delivers every undamaged event.
    let healthy = sink_config(
        &home,
        &receiver,
        "fault = \"none\"",
        "segment_size = \"64KiB\"",
    );
    let relay = Relay::start(healthy).await.unwrap();
    let recovery = relay.recovery().clone();
    assert!(!recovery.is_clean());
    assert!(recovery.torn_tail.is_some(), "{recovery}");
    // The torn record had been acknowledged as durable: lost, not torn.
    assert_eq!(
        recovery.lost_tail.as_ref().map(|r| r.end - r.start),
        Some(1),
        "{recovery}"
    );
    assert_eq!(recovery.missing.len(), 1, "{recovery}");
    assert_eq!(recovery.damaged.len(), 1, "{recovery}");
    assert!(relay.idle(Duration::from_secs(30)).await);
    relay.shutdown().await;
    let arrived = receiver.ids();
    let distinct: HashSet<&String> = arrived.iter().collect();
    // Every event is either delivered or counted in the report.
    let expected = ids.len() as u64 - recovery.lost_records();
    assert_eq!(distinct.len() as u64, expected, "{recovery}");
    assert!(ids.iter().filter(|id| distinct.contains(id)).count() as u64 == expected);
}
