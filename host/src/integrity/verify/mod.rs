//! Checking an export with the public key alone: what `auditrelay verify`
//! and `auditrelay prove` run on.
//!
//! A [`Verifier`] is fed every line of an export ([`input`] reads files,
//! gzip, zstd and directories) and keeps, per stream, each event's seal —
//! not the events — then [`Verifier::finish`] checks it all at once:
//!
//! 1. each event against its own seal (edited → `modified`);
//! 2. copies of one event (`duplicate`, not a problem), and different
//!    events claiming one `seq`: the one its neighbours link to is the
//!    relay's, the others `inserted`;
//! 3. each link `prev` → the event before (a break is `chain-break`, or
//!    `modified` when one event links to neither neighbour);
//! 4. the sequence numbers no event holds (`missing`), and the events
//!    read out of order (`reordered`: those off the longest run in order);
//! 5. every checkpoint's signature (`bad-signature`, `unknown-key`), each
//!    checkpoint's root against the tree of the events it covers
//!    (`modified`: re-sealed events no chain check can see), sizes that
//!    shrink or roots that fork (`chain-break`), and the predecessor each
//!    checkpoint names (absent → `gap`; long before → a pause, not a
//!    problem).
//!
//! Nothing here trusts the export: every line is bounded, every number
//! checked, and malformed input is a problem reported, never a panic
//! (fuzzed in the tests).

pub mod input;
mod report;
mod rounds;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};
use std::path::Path;

use sha2::Digest as _;

use auditrelay_plugin_api::envelope::{AuditEventEnvelope, EnvelopeView};
use jiff::Timestamp;

pub use report::{Kind, Problem, Report, StreamSummary, thousands};

use super::chain::{GENESIS, Opened};
use super::checkpoint::Checkpoint;
use super::merkle::Hash;
use super::note::{NoteError, VerifierKey};
use super::signed::{CheckpointPayload, SignedCheckpoint};
use super::tree::Tree;

/// The largest `seq` taken for the relay's (2^53: a billion events a
/// second for 285 years); larger ones are forged, and bounding them keeps
/// every `seq ± 1` below from overflowing.
const MAX_SEQ: u64 = 1 << 53;

/// Problems found line by line (unreadable lines, unsealed events) kept
/// at most per kind; the rest are counted only. A file of junk lines must
/// not fill memory with their reports.
const MAX_KEPT: usize = 10_000;

/// Where a line was read: a file (by its index) and a line number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct At {
    /// The file's index, as [`Verifier::file`] gave it.
    pub file: u32,
    /// The line, from 1.
    pub line: u32,
}

/// Reads an export line by line, then checks it ([`finish`](Self::finish)).
#[derive(Debug)]
pub struct Verifier {
    keys: Vec<VerifierKey>,
    partial: bool,
    files: Vec<String>,
    lines: u64,
    streams: HashMap<String, Vec<Entry>>,
    notes: Vec<NoteSeen>,
    /// Where each distinct checkpoint event (by the digest of its
    /// canonical JSON) is in `notes`.
    carriers: HashMap<Hash, usize>,
    problems: Vec<Problem>,
    wanted: Option<(String, String)>,
    candidates: HashMap<Hash, Candidate>,
    /// When each stream's checkpoints whose signature failed say they were
    /// signed (reported already: not a gap too).
    untrusted: HashMap<String, HashSet<Timestamp>>,
    /// Every stream must have a checkpoint signed at or after this.
    until: Option<Timestamp>,
    /// The streams the export is meant to hold, when it holds only some of
    /// the relay's (a plugin's tenant filter): rounds are then held to
    /// these instead of to the number of streams they signed.
    expected: Option<std::collections::BTreeSet<String>>,
    /// Problems found line by line and kept, by kind.
    kept: HashMap<Kind, usize>,
    /// Files that could not be read to their end.
    unread: Vec<String>,
    /// Problems found line by line but not kept ([`MAX_KEPT`]), by kind.
    unlisted: std::collections::BTreeMap<Kind, u64>,
}

/// One sealed event as read.
#[derive(Debug)]
struct Entry {
    seq: u64,
    hash: Hash,
    prev: Hash,
    /// Whether its content hashes to its seal.
    holds: bool,
    /// Its place in the reading order.
    order: u64,
    at: At,
    id: Box<str>,
}

/// One checkpoint note as read (from an event or the checkpoint log).
#[derive(Debug)]
struct NoteSeen {
    /// More lines that carried exactly this event (canonically): copies,
    /// counted rather than kept.
    copies: u64,
    note: String,
    /// The event that carried it, canonically: it must be exactly what
    /// the relay builds from the note.
    event: AuditEventEnvelope,
    at: At,
}

/// Distinct events with the id [`Verifier::want`] asked for that are kept
/// at most (all but one forged, if there are this many).
const MAX_CANDIDATES: usize = 1 << 20;

/// Of those, how many keep their line as read.
const KEPT_LINES: usize = 64;

/// One event with the id [`Verifier::want`] asked for, as read.
#[derive(Debug)]
struct Candidate {
    stream: String,
    seq: u64,
    hash: Hash,
    at: At,
    line: Option<Vec<u8>>,
}

/// The event [`Verifier::want`] asked for, as read.
#[derive(Debug, Clone)]
pub struct Found {
    /// Its stream.
    pub stream: String,
    /// Its sequence number.
    pub seq: u64,
    /// Its line, exactly.
    pub line: Vec<u8>,
}

/// A checked stream's leaves and checkpoints: what proofs are made from.
#[derive(Debug, Default)]
pub struct Ledger {
    /// The chain hashes of `seq` 1, 2, … as far as the export holds every
    /// one (and the chain links).
    pub hashes: Vec<Hash>,
    /// Its checkpoints whose signature verified and whose root the
    /// events above hash to, by size.
    pub checkpoints: Vec<SignedCheckpoint>,
}

/// What [`Verifier::finish`] returns.
#[derive(Debug)]
pub struct Verified {
    /// The report.
    pub report: Report,
    /// Each stream's ledger.
    pub ledgers: HashMap<String, Ledger>,
    /// The events [`Verifier::want`] asked for, as read (sealed, their
    /// seal holding): usually one; more when copies were edited, or
    /// forged with its id — the one the chain holds is the relay's, and
    /// comes first.
    pub found: Vec<Found>,
}

impl Verifier {
    /// A verifier trusting checkpoints signed by `keys`.
    pub fn new(keys: Vec<VerifierKey>) -> Self {
        Verifier {
            keys,
            partial: false,
            files: Vec::new(),
            lines: 0,
            streams: HashMap::new(),
            notes: Vec::new(),
            carriers: HashMap::new(),
            problems: Vec::new(),
            wanted: None,
            candidates: HashMap::new(),
            untrusted: HashMap::new(),
            until: None,
            expected: None,
            kept: HashMap::new(),
            unread: Vec::new(),
            unlisted: Default::default(),
        }
    }

    /// Checks a window of each stream rather than all of it: sequence
    /// numbers before the first present are not reported missing, nor is
    /// the predecessor of the first checkpoint.
    pub fn partial(mut self, partial: bool) -> Self {
        self.partial = partial;
        self
    }

    /// Requires every stream to have a checkpoint signed at or after
    /// `time` (the export's end, as the auditor knows it): the only way
    /// to see the newest checkpoints of every stream removed together
    /// with the events after them.
    pub fn until(mut self, time: Option<Timestamp>) -> Self {
        self.until = time;
        self
    }

    /// Says which streams the export holds when it holds only some of the
    /// relay's (a plugin whose `filter.tenants` lets only these through):
    /// each must be there and in every round, and a round is no longer
    /// required to hold as many streams as it signed. `None`: all of them.
    pub fn streams(mut self, streams: Option<Vec<String>>) -> Self {
        self.expected = streams.map(|names| names.into_iter().collect());
        self
    }

    /// Keeps the line of the event `source`/`id` (for a proof).
    pub fn want(&mut self, source: &str, id: &str) {
        self.wanted = Some((source.to_owned(), id.to_owned()));
    }

    /// Names the next file read; its lines are then given with its index.
    pub fn file(&mut self, name: impl Into<String>) -> u32 {
        self.files.push(name.into());
        u32::try_from(self.files.len() - 1).unwrap_or(u32::MAX)
    }

    /// Reads one file or directory (see [`input`]); a file that cannot be
    /// read is an `unreadable` problem, and the lines before the failure
    /// still count.
    pub fn read_path(&mut self, path: &Path) {
        let file = self.file(path.display().to_string());
        let result = input::read_lines(path, |line, bytes| self.line(At { file, line }, bytes));
        if let Err(error) = result {
            self.unread.push(self.files[file as usize].clone());
            self.keep(Problem {
                kind: Kind::Unreadable,
                stream: None,
                seqs: None,
                ids: Vec::new(),
                at: vec![self.files[file as usize].clone()],
                detail: format!("cannot read the file: {error}"),
            });
        }
    }

    /// Reads the lines of one export file held in memory, named `name`.
    pub fn read_lines<L: AsRef<[u8]>>(
        &mut self,
        name: impl Into<String>,
        lines: impl IntoIterator<Item = L>,
    ) {
        let file = self.file(name);
        for (i, line) in lines.into_iter().enumerate() {
            let line_number = u32::try_from(i + 1).unwrap_or(u32::MAX);
            self.line(
                At {
                    file,
                    line: line_number,
                },
                line.as_ref(),
            );
        }
    }

    /// Reads one line of an export.
    pub fn line(&mut self, at: At, bytes: &[u8]) {
        let bytes = bytes.trim_ascii();
        if bytes.is_empty() {
            return;
        }
        self.lines += 1;
        if let Some(opened) = Opened::read(bytes) {
            if !(1..=MAX_SEQ).contains(&opened.seq) {
                let at = self.at(at);
                self.keep(Problem {
                    kind: Kind::Inserted,
                    stream: Some(opened.stream.into_owned()),
                    seqs: None,
                    ids: vec![opened.id.into_owned()],
                    at: vec![at],
                    detail: format!(
                        "its seal claims seq {}, which the relay never assigns (it counts from 1): forged",
                        opened.seq
                    ),
                });
                return;
            }
            let holds = opened.holds();
            if holds {
                self.look_for(&opened, bytes, at);
            }
            let entry = Entry {
                seq: opened.seq,
                hash: opened.hash,
                prev: opened.prev,
                holds,
                order: self.lines,
                at,
                // Shown in problems only: a forged 16 MiB id must not be
                // kept whole per event.
                id: shown_id(&opened.id),
            };
            match self.streams.get_mut(&*opened.stream) {
                Some(entries) => entries.push(entry),
                None => {
                    self.streams.insert(opened.stream.into_owned(), vec![entry]);
                }
            }
            return;
        }
        let at_text = self.at(at);
        match AuditEventEnvelope::from_json(bytes) {
            Ok(event) => match SignedCheckpoint::note_of(&event) {
                Some(note) => {
                    // At-least-once delivery makes copies, and anyone can
                    // make a billion: each distinct carrier is kept once.
                    let digest: Hash =
                        sha2::Sha256::digest(event.to_canonical_json()).into();
                    let next = self.notes.len();
                    match self.carriers.entry(digest) {
                        std::collections::hash_map::Entry::Occupied(seen) => {
                            self.notes[*seen.get()].copies += 1;
                        }
                        std::collections::hash_map::Entry::Vacant(new) => {
                            new.insert(next);
                            self.notes.push(NoteSeen {
                                copies: 0,
                                note: note.to_owned(),
                                event,
                                at,
                            });
                        }
                    }
                }
                None => self.keep(Problem {
                    kind: Kind::Inserted,
                    stream: None,
                    seqs: None,
                    ids: vec![event.id.clone()],
                    at: vec![at_text],
                    detail: format!(
                        "event {}/{} carries no seal: no chain vouches for it (forged, or sent before integrity.chain was on)",
                        event.source, event.id
                    ),
                }),
            },
            Err(error) => self.keep(Problem {
                kind: Kind::Unreadable,
                stream: None,
                seqs: None,
                ids: Vec::new(),
                at: vec![at_text],
                detail: format!("not an audit event: {error}"),
            }),
        }
    }

    /// Keeps a problem found while reading, or only counts it once
    /// [`MAX_KEPT`] of its kind are kept.
    fn keep(&mut self, problem: Problem) {
        let kept = self.kept.entry(problem.kind).or_default();
        if *kept < MAX_KEPT {
            *kept += 1;
            self.problems.push(problem);
        } else {
            *self.unlisted.entry(problem.kind).or_default() += 1;
        }
    }

    fn look_for(&mut self, opened: &Opened<'_>, bytes: &[u8], at: At) {
        let Some((source, id)) = &self.wanted else {
            return;
        };
        if *opened.id != **id || self.candidates.len() >= MAX_CANDIDATES {
            return;
        }
        let same_source = EnvelopeView::read_json(bytes).is_ok_and(|view| *view.source == **source);
        if !same_source || self.candidates.contains_key(&opened.hash) {
            return;
        }
        // Bounded: an export full of forgeries of one id must not fill
        // memory with their lines; beyond the first few only where each
        // was read is kept, and `finish` reads the genuine one's again.
        let line = (self.candidates.len() < KEPT_LINES).then(|| bytes.to_vec());
        self.candidates.insert(
            opened.hash,
            Candidate {
                stream: opened.stream.to_string(),
                seq: opened.seq,
                hash: opened.hash,
                at,
                line,
            },
        );
    }

    /// The events [`want`](Self::want) asked for, the one each stream's
    /// chain holds first; its line is read again if it was not kept (a
    /// file given by [`read_path`](Self::read_path)).
    fn found(&mut self, ledgers: &HashMap<String, Ledger>) -> Vec<Found> {
        let mut candidates: Vec<Candidate> =
            std::mem::take(&mut self.candidates).into_values().collect();
        let held = |c: &Candidate| {
            ledgers.get(&c.stream).is_some_and(|ledger| {
                c.seq
                    .checked_sub(1)
                    .and_then(|i| ledger.hashes.get(usize::try_from(i).ok()?))
                    == Some(&c.hash)
            })
        };
        candidates.sort_by_key(|c| (!held(c), c.at));
        if let Some(genuine) = candidates.first_mut().filter(|c| c.line.is_none())
            && held(genuine)
        {
            genuine.line = self.line_again(genuine.at);
        }
        candidates
            .into_iter()
            .filter_map(|c| {
                Some(Found {
                    stream: c.stream,
                    seq: c.seq,
                    line: c.line?,
                })
            })
            .collect()
    }

    /// The line at `at` of a file read from disk, read again.
    fn line_again(&self, at: At) -> Option<Vec<u8>> {
        let path = Path::new(self.files.get(at.file as usize)?);
        let mut line = None;
        input::read_lines(path, |number, bytes| {
            if number == at.line {
                line = Some(bytes.trim_ascii().to_vec());
            }
        })
        .ok()?;
        line
    }

    fn at(&self, at: At) -> String {
        let file = self.files.get(at.file as usize).map_or("-", String::as_str);
        format!("{file}:{}", at.line)
    }

    /// Checks everything read.
    pub fn finish(mut self) -> Verified {
        let mut problems = std::mem::take(&mut self.problems);
        let Checkpoints {
            mut by_stream,
            copies: checkpoint_duplicates,
            rounds,
        } = self.open_checkpoints(&mut problems);
        let mut names: Vec<String> = self.streams.keys().cloned().collect();
        names.extend(
            by_stream
                .keys()
                .filter(|s| !self.streams.contains_key(*s))
                .cloned(),
        );
        names.sort();
        rounds.check(
            &rounds::Expect {
                streams: self.expected.as_ref(),
                partial: self.partial,
                until: self.until,
            },
            &mut problems,
        );
        let mut summaries = Vec::with_capacity(names.len());
        let mut ledgers = HashMap::new();
        for name in names {
            let entries = self.streams.remove(&name).unwrap_or_default();
            let checkpoints = by_stream.remove(&name).unwrap_or_default();
            self.coverage(&name, &entries, &checkpoints, &mut problems);
            let check = StreamCheck {
                name: &name,
                partial: self.partial,
                verifier: &self,
            };
            let (mut summary, ledger) = check.run(entries, checkpoints, &mut problems);
            summary.checkpoint_duplicates = checkpoint_duplicates.get(&name).copied().unwrap_or(0);
            summaries.push(summary);
            ledgers.insert(name, ledger);
        }
        let mut report = Report::new(self.lines, summaries, problems, &self.unlisted);
        report.unread_files = std::mem::take(&mut self.unread);
        Verified {
            found: self.found(&ledgers),
            report,
            ledgers,
        }
    }

    /// Opens each distinct note: the valid ones by stream, the rest as
    /// problems; and how many copies each stream's checkpoints had. Every
    /// checkpoint event, copies too, must be exactly the one the relay
    /// builds from its note: nothing else in it is signed.
    fn open_checkpoints(&mut self, problems: &mut Vec<Problem>) -> Checkpoints {
        let mut by_stream: HashMap<String, Vec<SignedCheckpoint>> = HashMap::new();
        let mut copies: HashMap<String, u64> = HashMap::new();
        let mut rounds = rounds::Rounds::default();
        // Each distinct note, opened once: its checkpoint and signer.
        let mut opened: HashMap<String, Option<(SignedCheckpoint, VerifierKey)>> = HashMap::new();
        for seen_note in std::mem::take(&mut self.notes) {
            let window = unverified_window(&seen_note.note);
            let stream = window.as_ref().map(|(stream, _)| stream.clone());
            if seen_note.copies > 0 {
                *copies
                    .entry(stream.clone().unwrap_or_default())
                    .or_default() += seen_note.copies;
            }
            let at_text = self.at(seen_note.at);
            let problem = |kind, detail: String| Problem {
                kind,
                stream: stream.clone(),
                seqs: None,
                ids: vec![seen_note.event.id.clone()],
                at: vec![at_text.clone()],
                detail,
            };
            // Each carrier here is distinct (copies were counted as read):
            // another carrier of a note already opened is only checked.
            if let Some(known) = opened.get(&seen_note.note) {
                if let Some((signed, key)) = known
                    && let Some(why) = carrier_differs(&seen_note.event, signed, key)
                {
                    problems.push(problem(Kind::Modified, why));
                }
                continue;
            }
            let result = SignedCheckpoint::open(&seen_note.note, &self.keys);
            // A changed or forged checkpoint of ours is reported already;
            // it should not be reported missing too. A note of another key
            // says nothing about ours: it hides no gap.
            if matches!(result, Err(NoteError::BadSignature(_)))
                && let Some((stream, Some(time))) = window.clone()
            {
                self.untrusted.entry(stream).or_default().insert(time);
            }
            match result {
                Ok(signed) => {
                    let key = self
                        .keys
                        .iter()
                        .find(|k| {
                            SignedCheckpoint::open(&seen_note.note, std::slice::from_ref(k)).is_ok()
                        })
                        .expect("one of the keys verified it")
                        .clone();
                    if let Some(why) = carrier_differs(&seen_note.event, &signed, &key) {
                        problems.push(problem(Kind::Modified, why));
                    }
                    rounds.add(&signed, &key);
                    by_stream
                        .entry(signed.window.stream.clone())
                        .or_default()
                        .push(signed.clone());
                    opened.insert(seen_note.note, Some((signed, key)));
                }
                Err(error) => {
                    problems.push(match error {
                        NoteError::UnknownKey(signers) => problem(
                            Kind::UnknownKey,
                            format!("the checkpoint is signed by {signers}, no key given (--key) is one of them"),
                        ),
                        NoteError::BadSignature(key) => problem(
                            Kind::BadSignature,
                            format!("the signature of {key} on the checkpoint does not verify: the checkpoint was changed or forged"),
                        ),
                        error => problem(
                            Kind::Unreadable,
                            format!("the checkpoint cannot be read: {error}"),
                        ),
                    });
                    opened.insert(seen_note.note, None);
                }
            }
        }
        Checkpoints {
            by_stream,
            copies,
            rounds,
        }
    }
}

/// The checkpoints of an export, opened.
struct Checkpoints {
    /// Those whose signature verified, by stream.
    by_stream: HashMap<String, Vec<SignedCheckpoint>>,
    /// How many copies of each stream's checkpoints there were.
    copies: HashMap<String, u64>,
    /// Their rounds.
    rounds: rounds::Rounds,
}

impl Verifier {
    /// What must vouch for a stream: some checkpoint at all, and one at or
    /// after `until`.
    fn coverage(
        &self,
        name: &str,
        entries: &[Entry],
        checkpoints: &[SignedCheckpoint],
        problems: &mut Vec<Problem>,
    ) {
        let problem = |detail: String| Problem {
            kind: Kind::Gap,
            stream: Some(name.to_owned()),
            seqs: None,
            ids: Vec::new(),
            at: Vec::new(),
            detail,
        };
        if checkpoints.is_empty() {
            if !entries.is_empty() {
                problems.push(problem(format!(
                    "no signed checkpoint vouches for the {} events of this stream: its checkpoints were removed, or it began after the last one was signed (verify again after the next)",
                    entries.len()
                )));
            }
            return;
        }
        let newest = checkpoints.iter().map(|c| c.window.time).max();
        if let (Some(until), Some(newest)) = (self.until, newest)
            && newest < until
        {
            problems.push(problem(format!(
                "its newest checkpoint was signed at {newest}, before {until} (--until): the checkpoints after it, and the events they covered, were removed"
            )));
        }
    }
}

/// The stream and time a note says it is of, before anyone checked its
/// signature (to name where a bad one belongs, and so that the checkpoint
/// after it does not report it missing as well).
fn unverified_window(note: &str) -> Option<(String, Option<Timestamp>)> {
    let split = note.rfind("\n\n")?;
    let checkpoint = Checkpoint::parse(&note[..split + 1]).ok()?;
    checkpoint.extensions.iter().find_map(|line| {
        let json = line.strip_prefix("auditrelay ")?;
        let window: serde_json::Value = serde_json::from_str(json).ok()?;
        let time = window.get("time")?.as_str()?.parse().ok();
        Some((window.get("stream")?.as_str()?.to_owned(), time))
    })
}

/// How a checkpoint event differs from the one the relay builds from its
/// note (signed by `key`), if it does.
fn carrier_differs(
    event: &AuditEventEnvelope,
    signed: &SignedCheckpoint,
    key: &VerifierKey,
) -> Option<String> {
    let payload = serde_json::from_value::<CheckpointPayload>(event.payload.clone()).ok();
    if let Some(why) = payload_differs(payload.as_ref(), signed) {
        return Some(format!(
            "the checkpoint event's payload was changed: {why} (its signed note is what counts)"
        ));
    }
    let expected = signed.to_envelope(key, event.tenant.as_deref().map(|_| &*signed.window.stream));
    let (got, want) = (
        serde_json::to_value(event).ok()?,
        serde_json::to_value(&expected).ok()?,
    );
    if got == want {
        return None;
    }
    let mut fields: Vec<&str> = match (got.as_object(), want.as_object()) {
        (Some(got), Some(want)) => got
            .keys()
            .chain(want.keys())
            .filter(|k| got.get(*k) != want.get(*k))
            .map(String::as_str)
            .collect(),
        _ => Vec::new(),
    };
    fields.sort_unstable();
    fields.dedup();
    Some(format!(
        "the checkpoint event is not the one the relay makes from its signed note ({} differ): it was changed or made by someone else",
        fields.join(", ")
    ))
}

/// How a checkpoint event's payload differs from its note, if it does.
fn payload_differs(
    payload: Option<&CheckpointPayload>,
    signed: &SignedCheckpoint,
) -> Option<String> {
    let Some(payload) = payload else {
        return Some("it is not a checkpoint payload".into());
    };
    let root = hex::encode(signed.checkpoint.root);
    if payload.size != signed.checkpoint.size {
        Some(format!(
            "size {} where the note says {}",
            payload.size, signed.checkpoint.size
        ))
    } else if payload.root != root {
        Some(format!("root {} where the note says {root}", payload.root))
    } else if payload.stream != signed.window.stream {
        Some(format!(
            "stream {:?} where the note says {:?}",
            payload.stream, signed.window.stream
        ))
    } else if payload.origin != signed.checkpoint.origin {
        Some(format!(
            "origin {:?} where the note says {:?}",
            payload.origin, signed.checkpoint.origin
        ))
    } else {
        None
    }
}

/// The relay's event at one `seq`, as the checks settled it.
#[derive(Debug, Clone, Copy)]
struct Chosen {
    seq: u64,
    hash: Hash,
    prev: Hash,
    /// Its first copy in the stream's entries.
    entry: usize,
}

/// One distinct event claiming a `seq`.
#[derive(Debug, Clone, Copy)]
struct Variant {
    hash: Hash,
    prev: Hash,
    entry: usize,
}

/// The checks of one stream.
struct StreamCheck<'v> {
    name: &'v str,
    partial: bool,
    verifier: &'v Verifier,
}

impl StreamCheck<'_> {
    fn problem(
        &self,
        kind: Kind,
        seqs: Option<(u64, u64)>,
        entries: &[&Entry],
        detail: String,
    ) -> Problem {
        Problem {
            kind,
            stream: Some(self.name.to_owned()),
            seqs,
            ids: entries.iter().map(|e| e.id.to_string()).collect(),
            at: entries.iter().map(|e| self.verifier.at(e.at)).collect(),
            detail,
        }
    }

    fn run(
        &self,
        mut entries: Vec<Entry>,
        mut checkpoints: Vec<SignedCheckpoint>,
        problems: &mut Vec<Problem>,
    ) -> (StreamSummary, Ledger) {
        entries.sort_unstable_by_key(|e| (e.seq, e.order));
        let mut bad: Vec<(u64, u64)> = Vec::new();
        let (groups, duplicates) = self.group(&entries, problems, &mut bad);
        let chosen = self.choose(&entries, &groups, problems);
        self.links(&entries, &chosen, problems, &mut bad);
        self.reordered(&entries, &chosen, problems);

        // Checkpoints by size (then time): valid signatures only.
        checkpoints.sort_by(|a, b| {
            (a.checkpoint.size, a.window.time).cmp(&(b.checkpoint.size, b.window.time))
        });
        let covered = checkpoints.last().map_or(0, |c| c.checkpoint.size);
        let top = chosen.last().map_or(0, |c| c.seq).max(covered);
        let start = if self.partial {
            chosen.first().map_or(1, |c| c.seq)
        } else {
            1
        };
        self.missing(&chosen, start, top, problems);
        let hashes = prefix(&chosen);
        let (held, _) = self.roots(&hashes, &checkpoints, problems, &mut bad);
        let ends = self.heads(
            &chosen,
            &checkpoints,
            hashes.len() as u64,
            problems,
            &mut bad,
        );
        let unchecked = checkpoints
            .iter()
            .filter(|c| {
                c.checkpoint.size > hashes.len() as u64 && !ends.contains(&c.checkpoint.size)
            })
            .count() as u64;
        self.windows(&checkpoints, problems);
        let pauses = pauses(&checkpoints);

        let valid = chosen.iter().filter(|c| !within(&bad, c.seq)).count() as u64;
        let uncovered = chosen
            .last()
            .filter(|last| last.seq > covered)
            .map(|last| (covered.max(start - 1) + 1, last.seq));
        let summary = StreamSummary {
            stream: self.name.to_owned(),
            expected: if top >= start { top - start + 1 } else { 0 },
            present: chosen.len() as u64,
            valid,
            checkpoints: checkpoints.len() as u64,
            newest_checkpoint: checkpoints.iter().map(|c| c.window.time).max(),
            unchecked_checkpoints: unchecked,
            duplicates,
            checkpoint_duplicates: 0,
            uncovered,
            pauses,
        };
        (
            summary,
            Ledger {
                hashes,
                checkpoints: held,
            },
        )
    }

    /// The distinct events at each `seq` (edited ones reported and left
    /// out, unless nothing else claims their `seq`), and how many copies.
    fn group(
        &self,
        entries: &[Entry],
        problems: &mut Vec<Problem>,
        bad: &mut Vec<(u64, u64)>,
    ) -> (Vec<(u64, Vec<Variant>)>, u64) {
        let mut groups = Vec::new();
        let mut duplicates = 0;
        let mut start = 0;
        for run in entries.chunk_by(|a, b| a.seq == b.seq) {
            let seq = run[0].seq;
            let mut variants: Vec<Variant> = Vec::new();
            let mut hashes: HashSet<Hash> = HashSet::new();
            for (offset, entry) in run.iter().enumerate() {
                if !entry.holds {
                    bad.push((seq, seq));
                    problems.push(self.problem(
                        Kind::Modified,
                        Some((seq, seq)),
                        &[entry],
                        "its content does not hash to its seal: the event was edited after the relay sealed it".into(),
                    ));
                    continue;
                }
                if hashes.insert(entry.hash) {
                    variants.push(Variant {
                        hash: entry.hash,
                        prev: entry.prev,
                        entry: start + offset,
                    });
                } else {
                    duplicates += 1;
                }
            }
            if variants.is_empty() {
                // Only edited copies: the hash they claim stands in for
                // the chain's checks (it is likely the relay's).
                variants.push(Variant {
                    hash: run[0].hash,
                    prev: run[0].prev,
                    entry: start,
                });
            }
            groups.push((seq, variants));
            start += run.len();
        }
        (groups, duplicates)
    }

    /// The relay's event at each `seq`: the only one, or the one its
    /// neighbours link to; the others are inserted (or, when the chain
    /// cannot tell, a fork).
    fn choose(
        &self,
        entries: &[Entry],
        groups: &[(u64, Vec<Variant>)],
        problems: &mut Vec<Problem>,
    ) -> Vec<Chosen> {
        let mut chosen: Vec<Chosen> = Vec::with_capacity(groups.len());
        for (g, (seq, variants)) in groups.iter().enumerate() {
            let seq = *seq;
            let pick = if variants.len() == 1 {
                Some(0)
            } else {
                let next: HashSet<Hash> = groups
                    .get(g + 1)
                    .filter(|(next, _)| *next == seq + 1)
                    .map(|(_, vs)| vs.iter().map(|v| v.prev).collect())
                    .unwrap_or_default();
                let before = match chosen.last() {
                    _ if seq == 1 => Some(GENESIS),
                    Some(last) if last.seq + 1 == seq => Some(last.hash),
                    _ => None,
                };
                let by_next: Vec<usize> = (0..variants.len())
                    .filter(|&i| next.contains(&variants[i].hash))
                    .collect();
                let by_before: Vec<usize> = (0..variants.len())
                    .filter(|&i| Some(variants[i].prev) == before)
                    .collect();
                match (by_next.as_slice(), by_before.as_slice()) {
                    ([one], _) | ([], [one]) => Some(*one),
                    _ => None,
                }
            };
            let picked = pick.unwrap_or(0);
            for (i, variant) in variants.iter().enumerate() {
                if i == picked {
                    continue;
                }
                let entry = &entries[variant.entry];
                problems.push(match pick {
                    Some(_) => self.problem(
                        Kind::Inserted,
                        Some((seq, seq)),
                        &[entry],
                        format!("another event holds seq {seq} and the chain links to that one: this one was added"),
                    ),
                    None => self.problem(
                        Kind::ChainBreak,
                        Some((seq, seq)),
                        &[&entries[variants[picked].entry], entry],
                        format!("{} events claim seq {seq} and the chain does not tell which is the relay's: the stream forked (two writers, or a relay that lost its chain state)", variants.len()),
                    ),
                });
            }
            let v = variants[picked];
            chosen.push(Chosen {
                seq,
                hash: v.hash,
                prev: v.prev,
                entry: v.entry,
            });
        }
        chosen
    }

    /// Each event's `prev` against the hash of the event before it.
    fn links(
        &self,
        entries: &[Entry],
        chosen: &[Chosen],
        problems: &mut Vec<Problem>,
        bad: &mut Vec<(u64, u64)>,
    ) {
        let broken: Vec<usize> = (0..chosen.len())
            .filter(|&i| {
                let c = &chosen[i];
                let expected = if c.seq == 1 {
                    Some(GENESIS)
                } else if i > 0 && chosen[i - 1].seq + 1 == c.seq {
                    Some(chosen[i - 1].hash)
                } else {
                    None
                };
                expected.is_some_and(|hash| hash != c.prev)
            })
            .collect();
        let mut i = 0;
        while i < broken.len() {
            let at = broken[i];
            let c = chosen[at];
            let replaced = broken.get(i + 1) == Some(&(at + 1));
            if replaced {
                bad.push((c.seq, c.seq));
                problems.push(self.problem(
                    Kind::Modified,
                    Some((c.seq, c.seq)),
                    &[&entries[c.entry]],
                    "it links to neither neighbour: the event was replaced, seal and all".into(),
                ));
                i += 2;
            } else {
                let first = if c.seq == 1 { 1 } else { c.seq - 1 };
                bad.push((first, c.seq));
                let mut concerned = vec![&entries[c.entry]];
                if at > 0 && c.seq > 1 {
                    concerned.insert(0, &entries[chosen[at - 1].entry]);
                }
                problems.push(self.problem(
                    Kind::ChainBreak,
                    Some((first, c.seq)),
                    &concerned,
                    if c.seq == 1 {
                        "the stream's first event does not start the chain (its prev is not 64 zeros)".into()
                    } else {
                        format!("seq {} does not link to seq {}: one of them was re-sealed after the relay sealed it, or the stream had two writers", c.seq, c.seq - 1)
                    },
                ));
                i += 1;
            }
        }
    }

    /// The events off the longest run read in `seq` order, file by file:
    /// a file holds its events in the order the relay sealed them, but
    /// files have no order of their own (S3 object keys, for one, carry
    /// the time of their first event, which two plugin batches may share
    /// or invert).
    fn reordered(&self, entries: &[Entry], chosen: &[Chosen], problems: &mut Vec<Problem>) {
        let mut by_file: std::collections::BTreeMap<u32, Vec<Chosen>> = Default::default();
        for c in chosen {
            by_file
                .entry(entries[c.entry].at.file)
                .or_default()
                .push(*c);
        }
        for in_file in by_file.values() {
            self.reordered_in(entries, in_file, problems);
        }
    }

    /// [`reordered`](Self::reordered) in one file's events, by `seq`.
    fn reordered_in(&self, entries: &[Entry], chosen: &[Chosen], problems: &mut Vec<Problem>) {
        let orders: Vec<u64> = chosen.iter().map(|c| entries[c.entry].order).collect();
        let in_order = longest_increasing(&orders);
        if in_order.iter().all(|&keep| keep) {
            return;
        }
        let mut by_order: Vec<usize> = (0..chosen.len()).collect();
        by_order.sort_unstable_by_key(|&i| orders[i]);
        let mut place = vec![0; chosen.len()];
        for (p, &i) in by_order.iter().enumerate() {
            place[i] = p;
        }
        for (i, keep) in in_order.iter().enumerate() {
            if *keep {
                continue;
            }
            let c = chosen[i];
            let before = place[i].checked_sub(1).map(|p| chosen[by_order[p]]);
            let after = by_order.get(place[i] + 1).map(|&j| chosen[j]);
            let (other, relation) = match (before, after) {
                (Some(b), _) if b.seq > c.seq => (b, "after"),
                (_, Some(a)) if a.seq < c.seq => (a, "before"),
                (Some(b), _) => (b, "after"),
                (None, Some(a)) => (a, "before"),
                (None, None) => continue,
            };
            problems.push(self.problem(
                Kind::Reordered,
                Some((c.seq, c.seq)),
                &[&entries[c.entry], &entries[other.entry]],
                format!(
                    "seq {} was read {relation} seq {}, out of the order the relay sealed them in",
                    c.seq, other.seq
                ),
            ));
        }
    }

    /// The sequence numbers from `start` to `top` no event holds.
    fn missing(&self, chosen: &[Chosen], start: u64, top: u64, problems: &mut Vec<Problem>) {
        let mut expect = start;
        let mut report = |first: u64, last: u64| {
            let n = last - first + 1;
            problems.push(self.problem(
                Kind::Missing,
                Some((first, last)),
                &[],
                format!(
                    "{} event{} the relay sealed {} not in the export",
                    thousands(n),
                    if n == 1 { "" } else { "s" },
                    if n == 1 { "is" } else { "are" }
                ),
            ));
        };
        for c in chosen.iter().filter(|c| c.seq >= start) {
            if c.seq > expect {
                report(expect, c.seq - 1);
            }
            expect = c.seq + 1;
        }
        if top >= expect {
            report(expect, top);
        }
    }

    /// Each checkpoint's root against the tree of the events it covers;
    /// returns those that hold, and how many could not be checked.
    fn roots(
        &self,
        hashes: &[Hash],
        checkpoints: &[SignedCheckpoint],
        problems: &mut Vec<Problem>,
        bad: &mut Vec<(u64, u64)>,
    ) -> (Vec<SignedCheckpoint>, u64) {
        let mut tree = Tree::default();
        let mut held: Vec<SignedCheckpoint> = Vec::new();
        let mut unchecked = 0;
        let mut last_good = 0u64;
        let mut failing: Option<(u64, u64, usize)> = None;
        let mut roots_by_size: HashMap<u64, Hash> = HashMap::new();
        for checkpoint in checkpoints {
            let size = checkpoint.checkpoint.size;
            if let Some(root) = roots_by_size.insert(size, checkpoint.checkpoint.root)
                && root != checkpoint.checkpoint.root
            {
                problems.push(self.problem(
                    Kind::ChainBreak,
                    Some((size, size)),
                    &[],
                    format!(
                        "two signed checkpoints of size {size} disagree on the root: the log forked"
                    ),
                ));
            }
            if size > hashes.len() as u64 {
                unchecked += 1;
                continue;
            }
            while tree.size < size {
                tree.push(hashes[tree.size as usize]);
            }
            if tree.root() == checkpoint.checkpoint.root {
                if failing.is_none() {
                    last_good = size;
                }
                held.push(checkpoint.clone());
            } else {
                match &mut failing {
                    Some((_, _, later)) => *later += 1,
                    None => failing = Some((last_good + 1, size, 0)),
                }
            }
        }
        if let Some((first, last, later)) = failing {
            bad.push((first, last));
            let time = checkpoints
                .iter()
                .find(|c| c.checkpoint.size == last)
                .map(|c| c.window.time.to_string())
                .unwrap_or_default();
            problems.push(self.problem(
                Kind::Modified,
                Some((first, last)),
                &[],
                format!(
                    "the events up to seq {last} do not hash to the checkpoint signed at {time}{}: an event in this range was changed and re-sealed{}",
                    if first > 1 { format!(" (those up to seq {} do)", first - 1) } else { String::new() },
                    if later > 0 { format!(" ({later} later checkpoints fail with it)") } else { String::new() }
                ),
            ));
        }
        (held, unchecked)
    }

    /// Each checkpoint's head against the event at its size: the chain up
    /// to there must end where the relay signed it did, which holds a
    /// window of the stream (`--partial`, no seq 1) to a signature too.
    /// Returns the sizes whose head held; a failing one is reported only
    /// where the roots could not be held (`rooted`: the leaves from seq 1
    /// the export has), which already name it otherwise.
    fn heads(
        &self,
        chosen: &[Chosen],
        checkpoints: &[SignedCheckpoint],
        rooted: u64,
        problems: &mut Vec<Problem>,
        bad: &mut Vec<(u64, u64)>,
    ) -> HashSet<u64> {
        let mut held = HashSet::new();
        let mut failed: Option<&SignedCheckpoint> = None;
        for checkpoint in checkpoints {
            let size = checkpoint.checkpoint.size;
            let Some(head) = checkpoint
                .window
                .head
                .as_deref()
                .and_then(super::chain::parse_hash)
            else {
                continue;
            };
            let Ok(i) = chosen.binary_search_by_key(&size, |c| c.seq) else {
                continue;
            };
            if chosen[i].hash == head {
                held.insert(size);
            } else if failed.is_none() && size > rooted {
                failed = Some(checkpoint);
            }
        }
        if let Some(checkpoint) = failed {
            let size = checkpoint.checkpoint.size;
            let first = chosen.first().map_or(1, |c| c.seq);
            bad.push((first, size));
            problems.push(self.problem(
                Kind::Modified,
                Some((first, size)),
                &[],
                format!(
                    "the event at seq {size} is not the one the checkpoint signed at {} ends with: events up to it were changed and re-sealed",
                    checkpoint.window.time
                ),
            ));
        }
        held
    }

    /// Checkpoints in time: removed ones (a predecessor named but absent)
    /// and a tree that shrank.
    fn windows(&self, checkpoints: &[SignedCheckpoint], problems: &mut Vec<Problem>) {
        let mut by_time: Vec<&SignedCheckpoint> = checkpoints.iter().collect();
        by_time.sort_by_key(|c| c.window.time);
        let mut times: HashSet<_> = by_time.iter().map(|c| c.window.time).collect();
        if let Some(untrusted) = self.verifier.untrusted.get(self.name) {
            times.extend(untrusted);
        }
        let mut largest: Option<&SignedCheckpoint> = None;
        for (i, checkpoint) in by_time.iter().enumerate() {
            if let Some(previous) = checkpoint.window.previous
                && !times.contains(&previous)
                && !(self.partial && i == 0)
            {
                let before = by_time[..i]
                    .iter()
                    .rev()
                    .find(|c| c.window.time < previous)
                    .map_or(0, |c| c.checkpoint.size);
                let size = checkpoint.checkpoint.size;
                problems.push(self.problem(
                    Kind::Gap,
                    (size > before).then_some((before + 1, size)),
                    &[],
                    format!(
                        "the checkpoints signed from {previous} until {} are missing: the one at {} names its predecessor at {previous}, which is not in the export",
                        checkpoint.window.time, checkpoint.window.time
                    ),
                ));
            }
            if let Some(big) = largest
                && checkpoint.checkpoint.size < big.checkpoint.size
            {
                problems.push(self.problem(
                    Kind::ChainBreak,
                    Some((checkpoint.checkpoint.size + 1, big.checkpoint.size)),
                    &[],
                    format!(
                        "the checkpoint signed at {} covers {} events, fewer than the {} of the one signed at {}: the log was rolled back",
                        checkpoint.window.time, checkpoint.checkpoint.size, big.checkpoint.size, big.window.time
                    ),
                ));
            }
            if largest.is_none_or(|big| checkpoint.checkpoint.size >= big.checkpoint.size) {
                largest = Some(checkpoint);
            }
        }
    }
}

/// Windows with no checkpoint because the relay was not running: the
/// checkpoint after names the one before, more than two intervals back.
fn pauses(checkpoints: &[SignedCheckpoint]) -> Vec<(Timestamp, Timestamp)> {
    let times: HashSet<_> = checkpoints.iter().map(|c| c.window.time).collect();
    let mut pauses: Vec<_> = checkpoints
        .iter()
        .filter_map(|c| {
            let previous = c.window.previous.filter(|p| times.contains(p))?;
            let gap = c.window.time.duration_since(previous).as_secs();
            let interval = i64::try_from(c.window.interval).unwrap_or(i64::MAX);
            (gap > interval.saturating_mul(2)).then_some((previous, c.window.time))
        })
        .collect();
    pauses.sort();
    pauses.dedup();
    pauses
}

/// The chain hashes of `seq` 1, 2, … while every one is present.
fn prefix(chosen: &[Chosen]) -> Vec<Hash> {
    chosen
        .iter()
        .enumerate()
        .take_while(|(i, c)| c.seq == *i as u64 + 1)
        .map(|(_, c)| c.hash)
        .collect()
}

/// An event's id as problems show it: at most 128 characters (the
/// envelope's limit), so a forged long one costs no more to keep.
fn shown_id(id: &str) -> Box<str> {
    match id.char_indices().nth(128) {
        Some((cut, _)) => format!("{}…", &id[..cut]).into(),
        None => id.into(),
    }
}

/// Whether `seq` is in one of `ranges`.
fn within(ranges: &[(u64, u64)], seq: u64) -> bool {
    ranges
        .iter()
        .any(|&(first, last)| (first..=last).contains(&seq))
}

/// Which of `values` are on one longest strictly increasing subsequence
/// (patience sorting, O(n log n)).
fn longest_increasing(values: &[u64]) -> Vec<bool> {
    // tails[k]: the index of the smallest last value of a run of k + 1.
    let mut tails: Vec<usize> = Vec::new();
    let mut parent: Vec<Option<usize>> = vec![None; values.len()];
    for (i, &value) in values.iter().enumerate() {
        let k = tails.partition_point(|&t| values[t] < value);
        parent[i] = k.checked_sub(1).map(|k| tails[k]);
        if k == tails.len() {
            tails.push(i);
        } else {
            tails[k] = i;
        }
    }
    let mut keep = vec![false; values.len()];
    let mut at = tails.last().copied();
    while let Some(i) = at {
        keep[i] = true;
        at = parent[i];
    }
    keep
}
