//! A relay in this process with the sources of its config running (file
//! sources and pollers), for the tests of sources that read other systems.

use std::time::{Duration, Instant};

use auditrelay::Relay;
use auditrelay::sources::{FileIngest, PollIngest};
use auditrelay::status::SourceStatus;
use auditrelay_tests::{Home, ndjson_values};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

/// A relay of `tables`, its file and poll sources running.
pub struct Sources {
    pub relay: Relay,
    pub home: Home,
    stop: CancellationToken,
    sources: Vec<tokio::task::JoinHandle<()>>,
}

impl Sources {
    pub async fn start(home: Home, tables: &str) -> Sources {
        let config = home.config(tables);
        let relay = Relay::start(config.clone()).await.unwrap();
        let stop = CancellationToken::new();
        let state = config.relay.data_dir.sources();
        let files = config.ingest.file.iter().map(|(name, settings)| {
            let source = FileIngest::new(relay.clone(), name, settings, &state);
            tokio::spawn(source.run(stop.clone()))
        });
        let polls = config.ingest.poll.iter().map(|(name, settings)| {
            let source = PollIngest::new(relay.clone(), name, settings, &state);
            tokio::spawn(source.run(stop.clone()))
        });
        let sources = files.chain(polls).collect();
        Sources {
            relay,
            home,
            stop,
            sources,
        }
    }

    /// The status of `label` (`file.<name>`, `poll.<name>`).
    pub fn status(&self, label: &str) -> SourceStatus {
        self.relay
            .status()
            .sources
            .into_iter()
            .find(|s| s.name == label)
            .expect("the source is in the status")
    }

    /// Waits until `done` holds of the source's status (at most 30 s).
    pub async fn until(&self, label: &str, done: impl Fn(&SourceStatus) -> bool) -> SourceStatus {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let status = self.status(label);
            if done(&status) {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the source never got there: {status:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// What the archive holds, once the relay is idle.
    pub async fn stored(&self) -> Vec<Value> {
        assert!(self.relay.idle(Duration::from_secs(30)).await);
        ndjson_values(&self.home.join("out"))
    }

    /// The records source `name` refused, as kept.
    pub fn refused(&self, name: &str) -> Vec<Value> {
        std::fs::read_to_string(
            self.home
                .join(&format!("data/sources/{name}/refused.ndjson")),
        )
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
    }

    /// Stops the sources (each finishes what it is doing) and the relay.
    pub async fn stop(self) -> Home {
        self.stop.cancel();
        for source in self.sources {
            source.await.unwrap();
        }
        self.relay.shutdown().await;
        self.home
    }
}
