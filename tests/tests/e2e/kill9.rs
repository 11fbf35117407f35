//! An event acknowledged as durable survives `kill -9`: the relay is
//! killed at random moments under steady load from another process,
//! restarted each time, and at the end every acknowledged event is at the
//! destination. Duplicates are counted and reported; lost must be 0.
//! With the hash chain on, the destination's copy must also verify with
//! the public key: no fork, no reused or skipped sequence number — only
//! duplicates.

use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use auditrelay_tests::{
    Home, Receiver, RelayProcess, free_port, ndjson_lines, post_counting, relay_binary,
    sample_envelope, sink_tables, tally,
};
use rand::Rng;

const BATCH: usize = 50;

/// Batches of new events posted from this process until stopped; an event
/// counts as acknowledged only when its batch got 202 (durable).
struct Load {
    acknowledged: Arc<Mutex<HashSet<String>>>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<(usize, usize)>,
}

impl Load {
    fn start(port: u16) -> Load {
        let acknowledged = Arc::new(Mutex::new(HashSet::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn({
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
        Load {
            acknowledged,
            stop,
            task,
        }
    }

    /// Kills the relay `kills` times at random moments, restarting it each
    /// time, then lets the load run half a second more.
    async fn kill_repeatedly(&self, relay: &mut RelayProcess, config: &Path, kills: usize) {
        for kill in 0..kills {
            let pause = rand::rng().random_range(150..700);
            tokio::time::sleep(Duration::from_millis(pause)).await;
            let before = self.acknowledged.lock().unwrap().len();
            relay.kill_9();
            assert!(
                before > 0 || kill > 0,
                "no load reached the relay:\n{}",
                relay.log()
            );
            *relay = RelayProcess::start(config, &[]);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    /// Stops the load: requests sent, requests not acknowledged, and the
    /// ids acknowledged.
    async fn stop(self) -> (usize, usize, HashSet<String>) {
        self.stop.store(true, Ordering::Relaxed);
        let (requests, refused) = self.task.await.unwrap();
        let acknowledged = self.acknowledged.lock().unwrap().clone();
        (requests, refused, acknowledged)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_events_survive_repeated_kill_9() {
    const KILLS: usize = 12;
    let receiver = Receiver::start().await;
    let home = Home::with_plugins(&["faulty"]);
    let port = free_port();
    let config = home.config_file(&format!(
        "[ingest.http]\nlisten = \"127.0.0.1:{port}\"\n[spool]\ndurability = \"group\"\nsegment_size = \"256KiB\"\n{}",
        sink_tables(&receiver, "fault = \"none\"")
    ));
    let mut relay = RelayProcess::start(&config, &[]);
    let load = Load::start(port);
    load.kill_repeatedly(&mut relay, &config, KILLS).await;
    let (requests, refused, acknowledged) = load.stop().await;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chain_survives_repeated_kill_9_and_the_destination_verifies_with_only_duplicates() {
    const KILLS: usize = 10;
    let home = Home::with_plugins(&["file"]);
    let port = free_port();
    let config = home.config_file(&format!(
        "[ingest.http]\nlisten = \"127.0.0.1:{port}\"\n[spool]\ndurability = \"group\"\nsegment_size = \"256KiB\"\n\
         [integrity]\nchain = true\ncheckpoint_interval = \"1s\"\n\
         [plugins.file]\ngrant_dir = \"{{home}}/out\"\n[plugins.file.batch]\nmax_wait = \"50ms\"\n"
    ));
    let mut relay = RelayProcess::start(&config, &[]);
    let load = Load::start(port);
    load.kill_repeatedly(&mut relay, &config, KILLS).await;
    let (requests, refused, acknowledged) = load.stop().await;
    // A last checkpoint round covers everything; then a clean stop.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(
        relay.terminate(),
        "the last relay did not stop cleanly:\n{}",
        relay.log()
    );

    // What the destination holds, counted by this test, not the relay.
    let out = home.join("out");
    let lines = ndjson_lines(&out);
    let arrived: Vec<String> = lines
        .iter()
        .map(|line| serde_json::from_slice::<serde_json::Value>(line).unwrap())
        .filter(|event| event["source"] != "auditrelay")
        .map(|event| event["id"].as_str().unwrap().to_owned())
        .collect();
    let result = tally(&acknowledged, &arrived);
    assert!(
        result.acknowledged > 1000,
        "too little load to prove anything: {result:?}"
    );
    assert_eq!(result.lost, 0, "acknowledged events were lost: {result:?}");

    // The public key alone, from a file: as an auditor would hold it.
    let public = std::process::Command::new(relay_binary())
        .args(["keys", "public", "-c", config.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(public.status.success());
    let key = home.join("relay.pub");
    std::fs::write(&key, &public.stdout).unwrap();
    let verify = std::process::Command::new(relay_binary())
        .args(["verify", "--json", "--key", key.to_str().unwrap()])
        .arg(&out)
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&verify.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&verify.stderr)));
    assert_eq!(
        verify.status.code(),
        Some(0),
        "verify found problems after {KILLS} kills: {report:#}"
    );
    assert_eq!(report["problems"], serde_json::json!([]), "{report:#}");
    let streams = report["streams"].as_array().unwrap();
    let valid: u64 = streams.iter().map(|s| s["valid"].as_u64().unwrap()).sum();
    let duplicates: u64 = streams
        .iter()
        .map(|s| s["duplicates"].as_u64().unwrap())
        .sum();
    let checkpoints: u64 = streams
        .iter()
        .map(|s| s["checkpoints"].as_u64().unwrap())
        .sum();
    // Every event the destination holds is one link of one chain: as many
    // valid sealed events as distinct ids arrived, copies apart.
    assert_eq!(valid, result.distinct as u64, "{report:#}");
    assert_eq!(duplicates, result.duplicates as u64, "{report:#}");
    assert!(
        checkpoints >= KILLS as u64,
        "a checkpoint at least per start: {report:#}"
    );
    eprintln!(
        "kill -9 x{KILLS} with the chain on: {requests} requests ({refused} refused), {} acknowledged, \
         {valid} sealed events valid, {duplicates} duplicates, {checkpoints} checkpoints, 0 problems",
        result.acknowledged
    );

    // One acknowledged event proven alone: the proof checks with the key,
    // and fails once the event in it is edited.
    let id = acknowledged.iter().min().unwrap();
    let source = sample_envelope(0).source;
    let prove = auditrelay(
        &["prove", &source, id, "--key", key.to_str().unwrap(), "--in"],
        &[&out],
    );
    assert!(
        prove.status.success(),
        "{}",
        String::from_utf8_lossy(&prove.stderr)
    );
    let proof = home.join("proof.json");
    std::fs::write(&proof, &prove.stdout).unwrap();
    let check = auditrelay(
        &["verify", "--key", key.to_str().unwrap(), "--proof"],
        &[&proof],
    );
    let said = String::from_utf8_lossy(&check.stdout);
    assert!(check.status.success(), "{said}");
    assert!(
        said.starts_with(&format!("ok: event {source}/{id} (stream ")),
        "{said}"
    );
    let mut edited: serde_json::Value = serde_json::from_slice(&prove.stdout).unwrap();
    let event = edited["event"].as_str().unwrap().replacen(
        "\"outcome\":\"success\"",
        "\"outcome\":\"failure\"",
        1,
    );
    edited["event"] = event.into();
    std::fs::write(&proof, edited.to_string()).unwrap();
    let check = auditrelay(
        &["verify", "--key", key.to_str().unwrap(), "--proof"],
        &[&proof],
    );
    assert_eq!(check.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&check.stdout).contains("was changed after it was sealed"));

    // The destination's copy edited in place: verify exits 1 and names it.
    let file = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .min()
        .unwrap();
    let text = std::fs::read_to_string(&file).unwrap();
    let edited: Vec<String> = text
        .lines()
        .scan(false, |done, line| {
            let event = line.contains(&format!("\"source\":\"{source}\""));
            let edit = event && !std::mem::replace(done, *done || event);
            Some(if edit {
                line.replacen("\"success\"", "\"failure\"", 1)
            } else {
                line.to_owned()
            })
        })
        .collect();
    std::fs::write(&file, edited.join("\n") + "\n").unwrap();
    let verify = auditrelay(&["verify", "--key", key.to_str().unwrap()], &[&out]);
    let said = String::from_utf8_lossy(&verify.stdout);
    assert_eq!(verify.status.code(), Some(1), "{said}");
    assert!(
        said.contains("PROBLEMS") && said.contains("modified"),
        "{said}"
    );
}

/// Runs the `auditrelay` binary with `args`, then `paths`.
fn auditrelay(args: &[&str], paths: &[&Path]) -> std::process::Output {
    std::process::Command::new(relay_binary())
        .args(args)
        .args(paths)
        .output()
        .unwrap()
}
