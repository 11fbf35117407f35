//! The hash chains, kept where the log's order is decided.
//!
//! An event is sealed ([`crate::integrity::chain`]) as it is appended,
//! under the spool's lock: so its `seq` in its stream follows the spool's
//! order, one writer per stream, and a plugin receives each stream's
//! events in chain order. The stream's Merkle tree grows only as records
//! are *written*, so a checkpoint never commits to an event a crash could
//! still take back.
//!
//! What survives a restart: the trees, saved to `chains.json` (as of a
//! spool sequence number) before any segment is deleted, plus every
//! record after that, which the segments still hold and [`read_back`]
//! replays at open. So after kill -9 a stream goes on from its last
//! written event — no sequence number is used twice, none skipped.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;

use auditrelay_plugin_api::Event;
use serde::{Deserialize, Serialize};

use super::{Reader, Record, Shared};
use crate::integrity::chain::{self, Head, StreamKey};
use crate::integrity::merkle::Hash;
use crate::integrity::tree::Tree;

/// The chains file, in the spool's directory.
pub(super) const CHAINS_FILE: &str = "chains.json";

/// One stream's tree as the signer sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamTree {
    /// The stream.
    pub stream: Arc<str>,
    /// Its events so far (written to the spool).
    pub size: u64,
    /// Its tree hash.
    pub root: Hash,
    /// The chain hash of its last written event.
    pub head: Hash,
}

/// The chains of every stream.
pub(super) struct Chains {
    /// Which field names an event's stream; `None`: nothing is sealed.
    key: Option<StreamKey>,
    /// Each stream's last sealed event, written or not.
    heads: HashMap<Arc<str>, Head>,
    /// Each stream's tree of written events.
    trees: HashMap<Arc<str>, Tree>,
    /// Sealed, not yet written, in spool order.
    unwritten: VecDeque<Leaf>,
    /// Streams whose chain did not continue its saved tree at open: sealed
    /// on, never checkpointed again.
    broken: HashSet<Arc<str>>,
    /// The spool sequence number `chains.json` accounts for up to.
    saved_through: u64,
    path: PathBuf,
    sync: bool,
}

/// A replayed record's place in its chain.
struct Sealed {
    seq: u64,
    prev: Hash,
    hash: Hash,
}

struct Leaf {
    spool_seq: u64,
    stream: Arc<str>,
    hash: Hash,
}

#[derive(Serialize, Deserialize)]
struct ChainsFile {
    version: u32,
    /// Every record below this spool sequence number is in the trees.
    through: u64,
    streams: HashMap<String, Tree>,
}

impl Chains {
    /// The chains saved in the spool at `dir`, and a warning if the file
    /// could not be read (the chains then restart from what the segments
    /// hold: `auditrelay verify` will report the fork).
    pub(super) fn load(
        dir: &std::path::Path,
        key: Option<StreamKey>,
        sync: bool,
    ) -> (Chains, Option<String>) {
        let path = dir.join(CHAINS_FILE);
        let mut chains = Chains {
            key,
            heads: HashMap::new(),
            trees: HashMap::new(),
            unwritten: VecDeque::new(),
            broken: HashSet::new(),
            saved_through: 0,
            path,
            sync,
        };
        let bytes = match std::fs::read(&chains.path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return (chains, None),
            Err(error) => return (chains, Some(format!("cannot read {CHAINS_FILE}: {error}"))),
        };
        let file: ChainsFile = match serde_json::from_slice(&bytes) {
            Ok(file) => file,
            Err(error) => return (chains, Some(format!("{CHAINS_FILE} is damaged: {error}"))),
        };
        if let Some((stream, _)) = file.streams.iter().find(|(_, tree)| !tree.is_whole()) {
            return (
                chains,
                Some(format!(
                    "{CHAINS_FILE} is damaged: stream {stream:?}'s tree does not fit its size"
                )),
            );
        }
        chains.saved_through = file.through;
        for (stream, tree) in file.streams {
            let stream: Arc<str> = stream.into();
            chains.heads.insert(stream.clone(), tree.head());
            chains.trees.insert(stream, tree);
        }
        (chains, None)
    }

    /// Whether events are sealed.
    pub(super) fn enabled(&self) -> bool {
        self.key.is_some()
    }

    /// At most how many bytes sealing adds to `record`.
    pub(super) fn growth(&self, record: &Record) -> usize {
        match self.key {
            Some(key) if record.is_sealable() => {
                let event = record.as_event();
                chain::member_len_bound(key.stream(event.tenant, event.source))
            }
            _ => 0,
        }
    }

    /// `record` sealed as the next event of its stream, to be spooled at
    /// `spool_seq`; `None` if it is not to be sealed.
    pub(super) fn seal(&mut self, record: &Record, spool_seq: u64) -> Option<Record> {
        let key = self.key.filter(|_| record.is_sealable())?;
        let event = record.as_event();
        let name = key.stream(event.tenant, event.source);
        let stream = match self.heads.get_key_value(name) {
            Some((stream, _)) => stream.clone(),
            None => {
                let stream: Arc<str> = name.into();
                self.heads.insert(stream.clone(), Head::default());
                stream
            }
        };
        let head = self.heads.get_mut(name).expect("inserted above");
        let sealed = chain::seal(event.envelope, name, head);
        self.unwritten.push_back(Leaf {
            spool_seq,
            stream,
            hash: head.hash,
        });
        Some(Record::from_event(Event {
            envelope: &sealed,
            ..event
        }))
    }

    /// Records before `written_seq` are on disk: their events join their
    /// trees.
    pub(super) fn wrote(&mut self, written_seq: u64) {
        while self
            .unwritten
            .front()
            .is_some_and(|leaf| leaf.spool_seq < written_seq)
        {
            let leaf = self.unwritten.pop_front().expect("checked above");
            if !self.broken.contains(&leaf.stream) {
                self.trees.entry(leaf.stream).or_default().push(leaf.hash);
            }
        }
    }

    /// Saves the trees before the records below `deleting_before` are
    /// deleted (they could not be replayed after). An error means the
    /// records must stay.
    pub(super) fn save_before_deleting(
        &mut self,
        deleting_before: u64,
        written_seq: u64,
    ) -> std::io::Result<()> {
        if !self.enabled() || self.saved_through >= deleting_before {
            return Ok(());
        }
        let through = self
            .unwritten
            .front()
            .map_or(written_seq, |leaf| leaf.spool_seq.min(written_seq));
        let file = ChainsFile {
            version: 1,
            through,
            streams: self
                .trees
                .iter()
                .map(|(stream, tree)| (stream.to_string(), tree.clone()))
                .collect(),
        };
        let json = serde_json::to_vec(&file).expect("trees serialize");
        super::files::replace_whole(&self.path, &json, self.sync)?;
        self.saved_through = through;
        Ok(())
    }

    /// Each stream's tree of written events.
    pub(super) fn trees(&self) -> Vec<StreamTree> {
        let mut trees: Vec<StreamTree> = self
            .trees
            .iter()
            .map(|(stream, tree)| StreamTree {
                stream: stream.clone(),
                size: tree.size,
                root: tree.root(),
                head: tree.last,
            })
            .collect();
        trees.sort_by(|a, b| a.stream.cmp(&b.stream));
        trees
    }

    /// Replays a record read back at open: its event, if sealed and newer
    /// than its stream's tree, joins it.
    fn replay(&mut self, json: &[u8]) {
        // The spool's own records: canonical as written, their seal read in
        // place (checked by `auditrelay verify`, not here).
        let Some((stream, seq, prev, hash)) = chain::seal_of(json) else {
            return;
        };
        let opened = Sealed { seq, prev, hash };
        let stream: &str = &stream;
        if self.broken.contains(stream) {
            if let Some(head) = self.heads.get_mut(stream) {
                *head = Head {
                    seq: opened.seq,
                    hash: opened.hash,
                };
            }
            return;
        }
        let tree = match self.trees.get_mut(stream) {
            Some(tree) => tree,
            None => self.trees.entry(Arc::from(stream)).or_default(),
        };
        if opened.seq <= tree.size {
            return;
        }
        let head = Head {
            seq: opened.seq,
            hash: opened.hash,
        };
        if opened.seq != tree.size + 1 || opened.prev != tree.head().hash {
            // A tree cannot skip leaves: the stream's tree is gone (no more
            // checkpoints for it), its chain goes on after this event.
            tracing::error!(
                stream,
                seq = opened.seq,
                after = tree.size,
                "the spool's hash chain does not continue where its saved tree ends (was chains.json replaced or deleted?); the stream's events stay sealed, but it gets no more checkpoints, and `auditrelay verify` will report the break"
            );
            let stream: Arc<str> = stream.into();
            self.trees.remove(&stream);
            self.broken.insert(stream.clone());
            self.heads.insert(stream, head);
            return;
        }
        tree.push(opened.hash);
        let stream: Arc<str> = match self.heads.get_key_value(stream) {
            Some((stream, _)) => stream.clone(),
            None => stream.into(),
        };
        self.heads.insert(stream, head);
    }
}

/// Replays the records after `chains.json` into the trees of a spool just
/// opened. A read that fails is an error the open reports: sealing on
/// from a head that is not the last would fork the chain.
pub(super) fn read_back(shared: &Arc<Shared>) -> std::io::Result<()> {
    let from = {
        let state = shared.lock();
        if !state.chains.enabled() {
            return Ok(());
        }
        state.chains.saved_through.max(state.first_seq())
    };
    let mut reader = Reader::from_seq(shared.clone(), from);
    loop {
        let batch = reader.read(4096, 16 * 1024 * 1024, true)?;
        if batch.is_empty() {
            return Ok(());
        }
        let mut state = shared.lock();
        for (_, event) in batch.events() {
            state.chains.replay(event.envelope);
        }
    }
}
