//! The dedup window, from outside: a client re-posting what the relay
//! already acknowledged — before and after a `kill -9` — is answered
//! `202` for every event, and the destination receives each event once.
//! Counted at a real HTTP destination, not from what the relay reports.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use auditrelay::envelope::AuditEventEnvelope;
use auditrelay_tests::{Home, Receiver, RelayProcess, free_port, sample_envelope, sink_tables};

struct Setup {
    receiver: Receiver,
    config: std::path::PathBuf,
    url: String,
    client: reqwest::Client,
    _home: Home,
}

async fn setup(spool_settings: &str) -> Setup {
    let receiver = Receiver::start().await;
    let home = Home::with_plugins(&["faulty"]);
    let port = free_port();
    let config = home.config_file(&format!(
        "[ingest.http]\nlisten = \"127.0.0.1:{port}\"\n[spool]\n{spool_settings}\n{}",
        sink_tables(&receiver, "fault = \"none\"")
    ));
    Setup {
        receiver,
        config,
        url: format!("http://127.0.0.1:{port}/v1/events"),
        client: reqwest::Client::new(),
        _home: home,
    }
}

impl Setup {
    /// Posts `events`; the answer's status and body.
    async fn post(&self, events: &[AuditEventEnvelope]) -> (u16, serde_json::Value) {
        let response = self
            .client
            .post(&self.url)
            .json(events)
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.json().await.unwrap())
    }

    /// Waits until every event of `events` arrived, then a little longer
    /// for anything that would arrive twice.
    async fn arrived(&self, events: &[AuditEventEnvelope]) -> HashMap<String, usize> {
        let ids: HashSet<String> = events.iter().map(|e| e.id.clone()).collect();
        assert!(
            self.receiver
                .wait_for_all(&ids, Duration::from_secs(30))
                .await,
            "not everything arrived"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        let mut counts = HashMap::new();
        for id in self.receiver.ids() {
            *counts.entry(id).or_insert(0) += 1;
        }
        counts
    }
}

fn batch(from: usize, count: usize) -> Vec<AuditEventEnvelope> {
    (from..from + count).map(sample_envelope).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_post_is_delivered_once_also_across_a_kill_9() {
    let setup = setup("").await;
    let mut relay = RelayProcess::start(&setup.config, &[]);
    let first = batch(0, 100);
    let (status, answer) = setup.post(&first).await;
    assert_eq!(
        (status, &answer["accepted"]),
        (202, &100.into()),
        "{answer}"
    );
    // The answer was lost, the client retries: acknowledged again, all copies.
    let (status, answer) = setup.post(&first).await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(
        (&answer["accepted"], &answer["copies"]),
        (&100.into(), &100.into())
    );
    let counts = setup.arrived(&first).await;
    // Delivered, and its cursor saved (every 100 ms), before the kill.
    tokio::time::sleep(Duration::from_millis(300)).await;
    relay.kill_9();
    relay = RelayProcess::start(&setup.config, &[]);

    // After the crash: the same events again, half of them with new ones.
    let (status, answer) = setup.post(&first).await;
    assert_eq!(status, 202, "{answer}\n{}", relay.log());
    assert_eq!(answer["copies"], 100, "{answer}");
    let mut mixed = first[50..].to_vec();
    let fresh = batch(100, 20);
    mixed.extend(fresh.iter().cloned());
    let (status, answer) = setup.post(&mixed).await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(
        (&answer["accepted"], &answer["copies"]),
        (&70.into(), &50.into())
    );

    let mut all = first.clone();
    all.extend(fresh);
    let counts_after = setup.arrived(&all).await;
    assert_eq!(counts.len(), 100);
    let twice: Vec<_> = counts_after.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "delivered more than once: {twice:?}");
    assert_eq!(counts_after.len(), 120);
    assert!(relay.terminate(), "{}", relay.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_window_a_retry_is_delivered_again() {
    // The control: the same retry with `dedup_ids = 0` arrives twice, so
    // the test above proves the window, not the destination.
    let setup = setup("dedup_ids = 0").await;
    let mut relay = RelayProcess::start(&setup.config, &[]);
    let first = batch(0, 30);
    for _ in 0..2 {
        let (status, answer) = setup.post(&first).await;
        assert_eq!(status, 202, "{answer}");
        assert!(answer.get("copies").is_none(), "{answer}");
    }
    let counts = setup.arrived(&first).await;
    assert!(counts.values().all(|n| *n == 2), "{counts:?}");
    assert!(relay.terminate(), "{}", relay.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_different_event_under_a_known_identity_is_delivered_and_counted() {
    let setup = setup("").await;
    let mut relay = RelayProcess::start(&setup.config, &[]);
    let first = batch(0, 1);
    let (status, _) = setup.post(&first).await;
    assert_eq!(status, 202);
    let mut other = first[0].clone();
    other.reason = Some("a different reason".into());
    let (status, answer) = setup.post(&[other]).await;
    assert_eq!(status, 202);
    assert!(answer.get("copies").is_none(), "not a copy: {answer}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let counts = setup.arrived(&first).await;
    assert_eq!(counts[&first[0].id], 2, "both versions are delivered");
    let metrics =
        auditrelay_tests::metrics(&setup.client, &setup.url.replace("/v1/events", "")).await;
    assert_eq!(
        auditrelay_tests::metric(
            &metrics,
            "auditrelay_duplicate_events_total{content=\"different\"}"
        ),
        Some(1.0),
        "{metrics}"
    );
    assert!(relay.terminate(), "{}", relay.log());
    assert!(
        relay.log().contains("different content"),
        "the conflict is logged:\n{}",
        relay.log()
    );
}
