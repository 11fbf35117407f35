//! The relay's checkpoints: every `integrity.checkpoint_interval` (and at
//! start and at shutdown) each stream's tree is signed
//! ([`crate::integrity::signed`]), kept in the checkpoint log
//! (`<data_dir>/integrity/checkpoints.ndjson`) and spooled as an event, so
//! that it reaches every plugin next to the events it vouches for.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use auditrelay_plugin_api::envelope::AuditEventEnvelope;
use jiff::Timestamp;
use tokio_util::sync::CancellationToken;

use super::StartError;
use crate::config::Config;
use crate::integrity::chain::StreamKey;
use crate::integrity::keys;
use crate::integrity::note::VerifierKey;
use crate::integrity::signed::{Round, SignedCheckpoint, Signer};
use crate::spool::{Record, Spool};

/// The checkpoint log's file name, in `<data_dir>/integrity`.
pub const LOG_FILE: &str = "checkpoints.ndjson";

/// Signs and spools checkpoints.
pub(super) struct Checkpointer {
    signer: Signer,
    verifier: VerifierKey,
    stream_key: StreamKey,
    interval: std::time::Duration,
    spool: Arc<Spool>,
    log: Mutex<std::fs::File>,
    log_path: PathBuf,
    /// When each stream's last checkpoint was signed and spooled: the
    /// next one names it, so a verifier sees checkpoints removed.
    previous: Mutex<HashMap<String, Timestamp>>,
    /// When the last round was signed: the next is signed later even if
    /// the wall clock stepped back (NTP, a VM resumed), so the order of
    /// rounds in time is the order they were signed in.
    last_round: Mutex<Option<Timestamp>>,
}

impl Checkpointer {
    /// Loads (or, the first time, makes) the signing key and opens the
    /// checkpoint log; `None` when `integrity.chain` is off.
    pub(super) fn open(
        config: &Config,
        spool: Arc<Spool>,
    ) -> Result<Option<Checkpointer>, StartError> {
        let settings = &config.integrity;
        if !settings.chain {
            return Ok(None);
        }
        let key_path = settings.key_path(&config.relay.data_dir);
        let (key, made) = keys::load_or_generate(&key_path, &settings.log)
            .map_err(|e| StartError::Integrity(e.to_string()))?;
        let verifier = key.verifier();
        if made {
            tracing::info!(
                key_file = %key_path.display(),
                public_key = verifier.to_text(),
                "made a checkpoint signing key; give its public key to whoever verifies (`auditrelay keys public`)"
            );
        }
        let dir = config.relay.data_dir.integrity();
        let log_path = dir.join(LOG_FILE);
        let log = std::fs::create_dir_all(&dir)
            .and_then(|()| {
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&log_path)
            })
            .map_err(|e| {
                StartError::Integrity(format!(
                    "cannot open the checkpoint log {}: {e}",
                    log_path.display()
                ))
            })?;
        let previous = last_signed(&log_path);
        let last_round = Mutex::new(previous.values().max().copied());
        let previous = Mutex::new(previous);
        Ok(Some(Checkpointer {
            last_round,
            signer: Signer::new(key, settings.log.clone(), settings.checkpoint_interval),
            verifier,
            previous,
            stream_key: settings.stream,
            interval: settings.checkpoint_interval,
            spool,
            log: Mutex::new(log),
            log_path,
        }))
    }

    /// Signs every stream's tree now: into the spool, and once it is
    /// durable there into the log (so the log, which the next start reads
    /// each stream's previous checkpoint from, never names one the
    /// plugins may not get). Returns how many checkpoints were spooled.
    pub(super) async fn round(&self) -> usize {
        let trees = self.spool.chain_trees();
        if trees.is_empty() {
            return 0;
        }
        let round = Round::new(self.next_time(), trees.iter().map(|tree| &*tree.stream));
        let mut lines = Vec::new();
        let mut records = Vec::with_capacity(trees.len());
        {
            let previous = self.previous.lock().unwrap_or_else(|e| e.into_inner());
            for tree in &trees {
                let before = previous.get(&*tree.stream).copied();
                let signed = self.signer.sign(
                    &tree.stream,
                    tree.size,
                    tree.root,
                    tree.head,
                    &round,
                    before,
                );
                let tenant = (self.stream_key == StreamKey::Tenant).then_some(&*tree.stream);
                let event = signed.to_envelope(&self.verifier, tenant);
                let json = event.to_canonical_json();
                lines.extend_from_slice(&json);
                lines.push(b'\n');
                records.push((event, json));
            }
        }
        let spooled: Vec<Record> = records
            .iter()
            .map(|(event, json)| Record::unsealed(event, json))
            .collect();
        let appended = match self.spool.append_when_room(&spooled).await {
            Ok(appended) => appended,
            Err(error) => {
                tracing::warn!(%error, streams = trees.len(), "cannot spool this round's checkpoints; the next round signs the trees again");
                return 0;
            }
        };
        if appended.durable_end > 0 {
            let confirmation = self.spool.durable(appended.durable_end - 1).await;
            if confirmation != crate::spool::Confirmation::Durable {
                tracing::warn!(
                    ?confirmation,
                    "this round's checkpoints are not durable; the next round names the round before as their predecessor"
                );
                return spooled.len();
            }
        }
        {
            let mut previous = self.previous.lock().unwrap_or_else(|e| e.into_inner());
            for tree in &trees {
                previous.insert(tree.stream.to_string(), round.time);
            }
        }
        if let Err(error) = self.append_to_log(&lines) {
            tracing::warn!(
                log = %self.log_path.display(),
                %error,
                "cannot write checkpoints to the checkpoint log; they are spooled to the plugins"
            );
        }
        spooled.len()
    }

    /// Now, or just after the last round if the clock says otherwise.
    fn next_time(&self) -> Timestamp {
        let mut last = self.last_round.lock().unwrap_or_else(|e| e.into_inner());
        let now = Timestamp::now();
        let time = match *last {
            Some(before) if now <= before => before
                .checked_add(jiff::SignedDuration::from_nanos(1))
                .unwrap_or(before),
            _ => now,
        };
        *last = Some(time);
        time
    }

    fn append_to_log(&self, lines: &[u8]) -> std::io::Result<()> {
        let mut log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        log.write_all(lines)?;
        log.sync_data()
    }

    /// Signs a round at once (covering what the last run wrote), then
    /// every interval until `stopping`.
    pub(super) fn spawn(
        self: &Arc<Self>,
        handle: &tokio::runtime::Handle,
        stopping: CancellationToken,
    ) {
        let this = self.clone();
        handle.spawn(async move {
            let mut ticks = tokio::time::interval(this.interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = ticks.tick() => { this.round().await; }
                    _ = stopping.cancelled() => return,
                }
            }
        });
    }
}

/// When each stream's last checkpoint in the log was signed, by whichever
/// key (after a rotation the new key's first checkpoint names the old
/// key's last, so a verifier given both sees no seam); a log that cannot
/// be read names none, and the next checkpoints start their streams' runs
/// afresh. The log is the relay's own: a line edited there can only make
/// a verifier report a gap that is not one, never hide one.
fn last_signed(log: &Path) -> HashMap<String, Timestamp> {
    let mut last = HashMap::new();
    let Ok(text) = std::fs::read_to_string(log) else {
        return last;
    };
    for line in text.lines() {
        let Ok(event) = AuditEventEnvelope::from_json(line.as_bytes()) else {
            continue;
        };
        let Some(note) = SignedCheckpoint::note_of(&event) else {
            continue;
        };
        if let Ok(signed) = SignedCheckpoint::read_unverified(note) {
            let time = last
                .entry(signed.window.stream)
                .or_insert(signed.window.time);
            *time = (*time).max(signed.window.time);
        }
    }
    last
}

#[cfg(test)]
mod tests {
    use auditrelay_plugin_api::envelope::{Actor, AuditEventEnvelope, Outcome};

    use super::*;
    use crate::integrity::chain::Opened;
    use crate::integrity::merkle;
    use crate::integrity::signed::{Members, SignedCheckpoint};
    use crate::spool::StartFrom;

    fn config(dir: &std::path::Path) -> Config {
        let text = format!(
            "[relay]\ndata_dir = {:?}\n[integrity]\nchain = true\ncheckpoint_interval = \"1s\"\n[plugins.file]\ngrant_dir = \"out\"\n",
            dir.display().to_string()
        );
        Config::parse(&text, "test", &|_| None).unwrap()
    }

    #[tokio::test]
    async fn a_round_signs_each_streams_written_tree_into_the_log_and_the_spool() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path());
        let (spool, _) = Spool::open(super::super::start::spool_options(&config)).unwrap();
        let spool = Arc::new(spool);
        let consumer = spool.consumer("p", StartFrom::Earliest, true);
        let records: Vec<Record> = (0..25)
            .map(|i| {
                let event = AuditEventEnvelope::builder("billing-api", "invoice.paid")
                    .id(format!("e{i}"))
                    .tenant(if i < 10 { "acme" } else { "globex" })
                    .actor(Actor::user("u-1"))
                    .outcome(Outcome::Success)
                    .build()
                    .unwrap();
                Record::with_json(&event, &event.to_canonical_json())
            })
            .collect();
        spool.append(&records).unwrap();
        let next = spool.stats().next_seq;
        let confirmation = spool.durable(next - 1).await;
        assert_eq!(confirmation, crate::spool::Confirmation::Durable);
        assert_eq!(spool.chain_trees().len(), 2, "{:?}", spool.stats());

        let checkpoints = Checkpointer::open(&config, spool.clone()).unwrap().unwrap();
        assert_eq!(checkpoints.round().await, 2);
        // Read once the checkpoints are written too.
        let next = spool.stats().next_seq;
        spool.durable(next - 1).await;

        // The key was made, owner-only, and is nowhere in what was written.
        let key_path = config.integrity.key_path(&config.relay.data_dir);
        let key = keys::load(&key_path).unwrap();
        let secret = key.to_text();
        let secret_part = secret.rsplit('+').next().unwrap();
        let log =
            std::fs::read_to_string(config.relay.data_dir.integrity().join(LOG_FILE)).unwrap();
        assert!(!log.contains(secret_part));

        // What was spooled: the events, sealed, then one checkpoint per stream.
        let mut reader = spool.reader(consumer);
        let batch = reader.read(100, usize::MAX, true).unwrap();
        assert_eq!(batch.len(), 27);
        let mut leaves: std::collections::BTreeMap<String, Vec<merkle::Hash>> = Default::default();
        let mut signed = Vec::new();
        for (_, event) in batch.events() {
            assert!(!String::from_utf8_lossy(event.envelope).contains(secret_part));
            match Opened::read(event.envelope) {
                Some(opened) => {
                    assert!(opened.holds());
                    leaves
                        .entry(opened.stream.to_string())
                        .or_default()
                        .push(merkle::leaf_hash(&opened.hash));
                }
                None => {
                    let envelope = AuditEventEnvelope::from_json(event.envelope).unwrap();
                    let note = SignedCheckpoint::note_of(&envelope).unwrap();
                    signed.push(SignedCheckpoint::open(note, &[key.verifier()]).unwrap());
                }
            }
        }
        assert_eq!(signed.len(), 2);
        assert_eq!(log.lines().count(), 2);
        let mut first_times = std::collections::HashMap::new();
        for checkpoint in signed {
            let stream_leaves = &leaves[&checkpoint.window.stream];
            assert_eq!(checkpoint.checkpoint.size, stream_leaves.len() as u64);
            assert_eq!(checkpoint.checkpoint.root, merkle::root(stream_leaves));
            assert_eq!(checkpoint.window.interval, 1);
            assert_eq!(checkpoint.window.previous, None, "a stream's first");
            first_times.insert(checkpoint.window.stream.clone(), checkpoint.window.time);
        }

        // A relay started again names each stream's last checkpoint in the
        // log as the predecessor of its next.
        let again = Checkpointer::open(&config, spool.clone()).unwrap().unwrap();
        assert_eq!(again.round().await, 2);
        let log =
            std::fs::read_to_string(config.relay.data_dir.integrity().join(LOG_FILE)).unwrap();
        let second: Vec<SignedCheckpoint> = log
            .lines()
            .skip(2)
            .map(|line| {
                let event = AuditEventEnvelope::from_json(line.as_bytes()).unwrap();
                let note = SignedCheckpoint::note_of(&event).unwrap().to_owned();
                SignedCheckpoint::open(&note, &[key.verifier()]).unwrap()
            })
            .collect();
        assert_eq!(second.len(), 2);
        let members = Members::of(["acme", "globex"]);
        for checkpoint in &second {
            assert_eq!(
                checkpoint.window.previous,
                Some(first_times[&checkpoint.window.stream])
            );
            assert_eq!(checkpoint.window.members.as_ref(), Some(&members));
        }

        // After a key rotation (a new key file) the new key's checkpoints
        // still name the old key's last as their predecessor.
        std::fs::remove_file(&key_path).unwrap();
        let rotated = Checkpointer::open(&config, spool.clone()).unwrap().unwrap();
        assert_ne!(rotated.verifier, key.verifier());
        assert_eq!(rotated.round().await, 2);
        let log =
            std::fs::read_to_string(config.relay.data_dir.integrity().join(LOG_FILE)).unwrap();
        for line in log.lines().skip(4) {
            let event = AuditEventEnvelope::from_json(line.as_bytes()).unwrap();
            let note = SignedCheckpoint::note_of(&event).unwrap().to_owned();
            let third =
                SignedCheckpoint::open(&note, std::slice::from_ref(&rotated.verifier)).unwrap();
            let before = second
                .iter()
                .find(|c| c.window.stream == third.window.stream)
                .unwrap();
            assert_eq!(third.window.previous, Some(before.window.time));
        }

        // A wall clock stepped back: the next round is still signed after
        // the last one (verify reads an earlier time as a rollback).
        let ahead = Timestamp::now()
            .checked_add(jiff::SignedDuration::from_hours(1))
            .unwrap();
        *rotated.last_round.lock().unwrap() = Some(ahead);
        assert!(rotated.next_time() > ahead);
        let again = Checkpointer::open(&config, spool.clone()).unwrap().unwrap();
        let last_in_log = *last_signed(&config.relay.data_dir.integrity().join(LOG_FILE))
            .values()
            .max()
            .unwrap();
        assert!(again.next_time() > last_in_log);
        spool.finish();
    }
}
