//! The signatures a webhook source has accepted within its skew window,
//! kept on disk so that a restart does not reopen the window to replays.
//!
//! A signature is *reserved* while its request is being stored and
//! *committed* only once its events are durable: a request that fails (a
//! full spool) leaves its signature usable, so the sender's retry is not
//! refused as a replay and nothing is lost. The file holds one
//! `<signed at> <hex signature>` line per accepted request, appended
//! without `fsync`: a crash may forget the last ones, and then the
//! envelope ids' dedup still stores a replayed body once. Expired
//! signatures are forgotten whenever the cache has doubled since it last
//! looked, and the file is rewritten with the live entries when expired
//! ones outnumber them: both stay within twice what the window holds.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::ingest::lines::open_for_append;

type Signature = [u8; 32];

/// One source's replay cache.
pub struct ReplayCache {
    path: PathBuf,
    /// How long a signature is remembered, in seconds.
    window: i64,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Accepted signatures, by the time they were signed.
    seen: HashMap<Signature, i64>,
    /// Signatures of requests being stored now.
    pending: HashSet<Signature>,
    file: Option<File>,
    /// Lines in the file.
    lines: usize,
    /// Forget expired signatures once `seen` holds this many.
    prune_at: usize,
}

/// A signature held while its request is stored; dropped without
/// [`commit`](Reservation::commit), it is released.
pub struct Reservation {
    cache: Arc<ReplayCache>,
    signature: Signature,
    timestamp: i64,
    committed: bool,
}

/// The signature was used before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replayed {
    /// By a request accepted earlier, signed at this time.
    Accepted(i64),
    /// By a request still being stored.
    InFlight,
}

impl ReplayCache {
    /// The cache in `path`, with what it holds from before `now - window`
    /// forgotten. A damaged line is skipped.
    pub fn open(path: &Path, window_secs: i64, now: i64) -> std::io::Result<Arc<Self>> {
        let mut state = State::default();
        match std::fs::read_to_string(path) {
            Ok(text) => {
                for line in text.lines() {
                    state.lines += 1;
                    let Some((at, hex)) = line.split_once(' ') else {
                        continue;
                    };
                    let (Ok(at), Ok(bytes)) = (at.parse::<i64>(), hex::decode(hex)) else {
                        continue;
                    };
                    if let Ok(signature) = Signature::try_from(bytes.as_slice())
                        && at >= now - window_secs
                    {
                        state.seen.insert(signature, at);
                    }
                }
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Err(error),
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let cache = Arc::new(ReplayCache {
            path: path.to_owned(),
            window: window_secs,
            state: Mutex::new(state),
        });
        cache.compact_if_stale(&mut cache.lock())?;
        Ok(cache)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Holds `signature` (signed at `timestamp`) for a request being
    /// stored, unless it was used before.
    pub fn reserve(
        self: &Arc<Self>,
        signature: Signature,
        timestamp: i64,
        now: i64,
    ) -> Result<Reservation, Replayed> {
        let mut state = self.lock();
        if let Some(&at) = state.seen.get(&signature) {
            return Err(Replayed::Accepted(at));
        }
        if !state.pending.insert(signature) {
            return Err(Replayed::InFlight);
        }
        self.prune(&mut state, now);
        Ok(Reservation {
            cache: self.clone(),
            signature,
            timestamp,
            committed: false,
        })
    }

    /// Signatures remembered now.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.lock().seen.len()
    }

    /// Forgets expired signatures once the cache has doubled since it
    /// last did (amortised: each insert pays for one look at one entry).
    fn prune(&self, state: &mut State, now: i64) {
        if state.seen.len() < state.prune_at.max(1024) {
            return;
        }
        let oldest = now - self.window;
        state.seen.retain(|_, at| *at >= oldest);
        state.prune_at = 2 * state.seen.len();
    }

    fn commit(&self, signature: Signature, timestamp: i64) -> std::io::Result<()> {
        let mut state = self.lock();
        state.pending.remove(&signature);
        state.seen.insert(signature, timestamp);
        self.prune(
            &mut state,
            jiff::Timestamp::now().as_second().max(timestamp),
        );
        let line = format!("{timestamp} {}\n", hex::encode(signature));
        if state.file.is_none() {
            state.file = Some(open_for_append(&self.path)?);
        }
        let written = state
            .file
            .as_mut()
            .expect("opened above")
            .write_all(line.as_bytes());
        if written.is_err() {
            // Maybe a torn line: the next write reopens and ends it.
            state.file = None;
        }
        written?;
        state.lines += 1;
        self.compact_if_stale(&mut state)
    }

    /// Rewrites the file with the live entries once the dead ones
    /// outnumber them (and there are enough to matter).
    fn compact_if_stale(&self, state: &mut State) -> std::io::Result<()> {
        if state.lines < 1024 || state.lines < 2 * state.seen.len() {
            return Ok(());
        }
        let fresh = self.path.with_extension("compacting");
        let mut text = String::with_capacity(state.seen.len() * 80);
        for (signature, at) in &state.seen {
            text.push_str(&format!("{at} {}\n", hex::encode(signature)));
        }
        std::fs::write(&fresh, text)?;
        std::fs::rename(&fresh, &self.path)?;
        state.file = None;
        state.lines = state.seen.len();
        Ok(())
    }
}

impl Reservation {
    /// The request's events are durable: the signature is used.
    pub fn commit(mut self) -> std::io::Result<()> {
        self.committed = true;
        self.cache.commit(self.signature, self.timestamp)
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if !self.committed {
            self.cache.lock().pending.remove(&self.signature);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_764_583_200;

    #[test]
    fn a_signature_is_accepted_once_and_remembered_across_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shop/replay");
        let cache = ReplayCache::open(&path, 300, NOW).unwrap();
        let first = cache.reserve([1; 32], NOW, NOW).unwrap();
        assert_eq!(
            cache.reserve([1; 32], NOW, NOW).err(),
            Some(Replayed::InFlight)
        );
        first.commit().unwrap();
        assert_eq!(
            cache.reserve([1; 32], NOW, NOW).err(),
            Some(Replayed::Accepted(NOW))
        );
        drop(cache);
        let reopened = ReplayCache::open(&path, 300, NOW + 10).unwrap();
        assert_eq!(
            reopened.reserve([1; 32], NOW, NOW + 10).err(),
            Some(Replayed::Accepted(NOW))
        );
        // Past the window it is forgotten (the verifier refuses it as stale).
        let later = ReplayCache::open(&path, 300, NOW + 301).unwrap();
        assert_eq!(later.len(), 0);
    }

    #[test]
    fn a_request_that_was_not_stored_leaves_its_signature_usable() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ReplayCache::open(&dir.path().join("replay"), 300, NOW).unwrap();
        drop(cache.reserve([2; 32], NOW, NOW).unwrap());
        cache.reserve([2; 32], NOW, NOW).unwrap().commit().unwrap();
    }

    #[test]
    fn a_damaged_file_keeps_its_good_lines_and_expired_lines_are_compacted_away() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("replay");
        let mut text = format!("{NOW} {}\ngarbage\n{NOW} zz\n", hex::encode([3; 32]));
        for i in 0..2000u32 {
            let mut signature = [0u8; 32];
            signature[..4].copy_from_slice(&i.to_be_bytes());
            text.push_str(&format!("{} {}\n", NOW - 1000, hex::encode(signature)));
        }
        std::fs::write(&path, text).unwrap();
        let cache = ReplayCache::open(&path, 300, NOW).unwrap();
        assert_eq!(cache.len(), 1);
        assert_eq!(
            cache.reserve([3; 32], NOW, NOW).err(),
            Some(Replayed::Accepted(NOW))
        );
        assert_eq!(
            std::fs::read_to_string(&path).unwrap().lines().count(),
            1,
            "compacted"
        );
    }
}
