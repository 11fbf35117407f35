//! An event acknowledged as durable survives `kill -9`: the relay is
//! killed at random moments under steady load from another process,
//! restarted each time, and at the end every acknowledged event is at the
//! destination. Duplicates are counted and reported; lost must be 0.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use auditrelay_tests::{
    Home, Receiver, RelayProcess, free_port, post_counting, sample_envelope, sink_tables, tally,
};
use rand::Rng;

const KILLS: usize = 12;
const BATCH: usize = 50;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_events_survive_repeated_kill_9() {
    let receiver = Receiver::start().await;
    let home = Home::with_plugins(&["faulty"]);
    let port = free_port();
    let config = home.config_file(&format!(
        "[ingest.http]\nlisten = \"127.0.0.1:{port}\"\n[spool]\ndurability = \"group\"\nsegment_size = \"256KiB\"\n{}",
        sink_tables(&receiver, "fault = \"none\"")
    ));
    let mut relay = RelayProcess::start(&config, &[]);

    // Steady load from this process: batches of new events; an event
    // counts as acknowledged only when its batch got 202 (durable).
    let acknowledged = Arc::new(Mutex::new(HashSet::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let load = tokio::spawn({
        let (acknowledged, stop) = (acknowledged.clone(), stop.clone());
        let url = format!("http://127.0.0.1:{port}/v1/events");
        async move {
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap();
            let mut next = 0;
            let (mut sent, mut refused) = (0usize, 0usize);
            let mut seen = HashSet::new();
            while !stop.load(Ordering::Relaxed) {
                let events: Vec<_> = (next..next + BATCH).map(sample_envelope).collect();
                next += BATCH;
                sent += 1;
                if post_counting(&client, &url, events, &mut seen).await
                    != Some(202.try_into().unwrap())
                {
                    refused += 1;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                acknowledged.lock().unwrap().extend(seen.drain());
            }
            (sent, refused)
        }
    });

    for kill in 0..KILLS {
        let pause = rand::rng().random_range(150..700);
        tokio::time::sleep(Duration::from_millis(pause)).await;
        let before = acknowledged.lock().unwrap().len();
        relay.kill_9();
        assert!(
            before > 0 || kill > 0,
            "no load reached the relay:\n{}",
            relay.log()
        );
        relay = RelayProcess::start(&config, &[]);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let (requests, refused) = load.await.unwrap();

    let acknowledged = acknowledged.lock().unwrap().clone();
    let delivered = receiver
        .wait_for_all(&acknowledged, Duration::from_secs(120))
        .await;
    assert!(
        relay.terminate(),
        "the last relay did not stop cleanly:\n{}",
        relay.log()
    );
    let result = tally(&acknowledged, &receiver.ids());
    eprintln!(
        "kill -9 x{KILLS}: {requests} requests ({refused} not acknowledged while the relay was down), \
         {} events acknowledged durable, {} delivered, {} duplicates, {} lost",
        result.acknowledged, result.distinct, result.duplicates, result.lost
    );
    assert!(
        result.acknowledged > 1000,
        "too little load to prove anything: {result:?}"
    );
    assert!(delivered, "not everything arrived: {result:?}");
    assert_eq!(result.lost, 0, "acknowledged events were lost: {result:?}");
}
