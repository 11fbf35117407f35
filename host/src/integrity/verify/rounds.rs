//! Rounds: what the checkpoints of *all* streams say together.
//!
//! The relay signs every stream it has at one time (a round) and names
//! them all in each checkpoint ([`Members`]). A verifier holds each round
//! the relay knew was durable to those members, and each stream to every
//! such round after it began — which is what shows a stream removed
//! whole, or its checkpoints removed since some time, when everything left
//! is consistent.
//!
//! Rounds are grouped into **lineages**: the rounds of one relay, however
//! often its key changed. A lineage starts as the rounds of one log name
//! and key, and two join when a checkpoint of one names a round of the
//! other as its `previous` (the relay names its last durable round
//! whichever key signed it). Two relays that kept the default log name
//! never name each other's rounds, so they stay apart.
//!
//! Which rounds are held: those a later checkpoint names as `previous`
//! (the relay knew them durable in full) and each lineage's newest. A
//! crash can tear a round as it is written; the relay then names the one
//! before, so that round is never held. When does a stream begin: at its
//! first checkpoint in the export — or, if that one names a predecessor,
//! at that predecessor, so cutting a stream's first rounds out of a window
//! (`--partial`) shows too.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use jiff::Timestamp;

use super::report::{Kind, Problem};
use crate::integrity::note::VerifierKey;
use crate::integrity::signed::{Members, SignedCheckpoint};

/// Every round of checkpoints an export holds.
#[derive(Debug, Default)]
pub(super) struct Rounds {
    /// `(log, key)` → time → the round as the export holds it.
    by_key: HashMap<(String, String), BTreeMap<Timestamp, RoundSeen>>,
    /// The times some checkpoint names as its `previous`.
    named: HashSet<Timestamp>,
}

/// One round as the export holds it.
#[derive(Debug, Default, Clone)]
struct RoundSeen {
    /// What its checkpoints say it signed (one value, unless two relays
    /// sign with one log name and key).
    members: HashSet<Members>,
    /// The streams whose checkpoint of the round is there, with the
    /// predecessor each names.
    streams: BTreeMap<String, Option<Timestamp>>,
}

/// What the rounds are checked against.
pub(super) struct Expect<'e> {
    /// The streams the export holds when it holds only some (`--streams`):
    /// rounds are then not held to their members' count.
    pub streams: Option<&'e BTreeSet<String>>,
    /// Whether the export is a window (`--partial`): a round at its start
    /// may be cut by the window, which the report then says.
    pub partial: bool,
    /// When some checkpoint must have been signed by (`--until`).
    pub until: Option<Timestamp>,
}

impl Rounds {
    /// Adds one checkpoint whose signature `key` verified.
    pub(super) fn add(&mut self, signed: &SignedCheckpoint, key: &VerifierKey) {
        let round = self
            .by_key
            .entry((log_of(signed), key.name_and_id()))
            .or_default()
            .entry(signed.window.time)
            .or_default();
        if let Some(members) = &signed.window.members {
            round.members.insert(members.clone());
        }
        round
            .streams
            .insert(signed.window.stream.clone(), signed.window.previous);
        if let Some(previous) = signed.window.previous {
            self.named.insert(previous);
        }
    }

    /// The lineages: each one relay's rounds, by time, with its log name.
    fn lineages(&self) -> Vec<(String, BTreeMap<Timestamp, RoundSeen>)> {
        let mut keys: Vec<&(String, String)> = self.by_key.keys().collect();
        keys.sort();
        let index: HashMap<&(String, String), usize> =
            keys.iter().enumerate().map(|(i, k)| (*k, i)).collect();
        let mut parent: Vec<usize> = (0..keys.len()).collect();
        fn root(parent: &mut [usize], mut i: usize) -> usize {
            while parent[i] != i {
                parent[i] = parent[parent[i]];
                i = parent[i];
            }
            i
        }
        // A group whose checkpoint names a round of another group of the
        // same log is the same relay, after a new key.
        let mut by_time: HashMap<(&str, Timestamp), Vec<usize>> = HashMap::new();
        for key in &keys {
            for time in self.by_key[*key].keys() {
                by_time.entry((&key.0, *time)).or_default().push(index[key]);
            }
        }
        for key in &keys {
            let i = index[key];
            for round in self.by_key[*key].values() {
                for previous in round.streams.values().flatten() {
                    for &j in by_time
                        .get(&(key.0.as_str(), *previous))
                        .into_iter()
                        .flatten()
                    {
                        let (a, b) = (root(&mut parent, i), root(&mut parent, j));
                        parent[a] = b;
                    }
                }
            }
        }
        let mut lineages: BTreeMap<usize, (String, BTreeMap<Timestamp, RoundSeen>)> =
            BTreeMap::new();
        for key in &keys {
            let r = root(&mut parent, index[key]);
            let (_, rounds) = lineages
                .entry(r)
                .or_insert_with(|| (key.0.clone(), BTreeMap::new()));
            for (time, round) in &self.by_key[*key] {
                let merged = rounds.entry(*time).or_default();
                merged.members.extend(round.members.iter().cloned());
                merged
                    .streams
                    .extend(round.streams.iter().map(|(s, p)| (s.clone(), *p)));
            }
        }
        lineages.into_values().collect()
    }

    /// Every gap the rounds show (see the module).
    pub(super) fn check(&self, expect: &Expect<'_>, problems: &mut Vec<Problem>) {
        let gap = |stream: Option<&str>, detail: String| Problem {
            kind: Kind::Gap,
            stream: stream.map(str::to_owned),
            seqs: None,
            ids: Vec::new(),
            at: Vec::new(),
            detail,
        };
        // Each stream with checkpoints is held to `until` on its own; an
        // export with none must fail it too.
        if let Some(until) = expect.until
            && self.by_key.is_empty()
        {
            problems.push(gap(None, format!(
                "the export holds no signed checkpoint, and --until says one was signed by {until}: its checkpoints, and the events they covered, were removed"
            )));
        }
        if let Some(expected) = expect.streams {
            let present: HashSet<&str> = self
                .by_key
                .values()
                .flat_map(|times| times.values())
                .flat_map(|round| round.streams.keys().map(String::as_str))
                .collect();
            for name in expected.iter().filter(|n| !present.contains(n.as_str())) {
                problems.push(gap(Some(name), "no signed checkpoint of this stream (--streams) is in the export: its checkpoints, and likely its events, were removed".into()));
            }
        }
        for (log, times) in self.lineages() {
            self.check_lineage(&log, &times, expect, problems, &gap);
        }
    }

    fn check_lineage(
        &self,
        log: &str,
        times: &BTreeMap<Timestamp, RoundSeen>,
        expect: &Expect<'_>,
        problems: &mut Vec<Problem>,
        gap: &dyn Fn(Option<&str>, String) -> Problem,
    ) {
        let first_round = times.keys().next().copied();
        let newest = times.keys().next_back().copied();
        let required = |t: &Timestamp| self.named.contains(t) || Some(*t) == newest;
        // When each stream began: its first checkpoint here, or the
        // predecessor that one names.
        let mut since: HashMap<&str, Timestamp> = HashMap::new();
        for (time, round) in times {
            for (stream, previous) in &round.streams {
                since
                    .entry(stream)
                    .or_insert_with(|| previous.unwrap_or(*time).min(*time));
            }
        }
        // Said where a short round may be the edge of a window or a crash.
        let edge = |time: &Timestamp| {
            let mut why = String::new();
            if expect.partial && Some(*time) == first_round {
                why.push_str(
                    " (or the window begins inside this round: include the files before it)",
                );
            }
            if Some(*time) == newest {
                why.push_str(" (or, for the newest round, the relay stopped while writing it)");
            }
            why
        };
        let mut absent: BTreeMap<&str, Vec<Timestamp>> = BTreeMap::new();
        for (time, round) in times {
            if !required(time) {
                continue;
            }
            let known_absent: Vec<&str> = since
                .iter()
                .filter(|(s, began)| **began <= *time && !round.streams.contains_key(**s))
                .map(|(s, _)| *s)
                .collect();
            for stream in &known_absent {
                absent.entry(stream).or_default().push(*time);
            }
            if expect.streams.is_some() {
                continue;
            }
            let mut members = round.members.iter();
            let (Some(members), None) = (members.next(), members.next()) else {
                if round.members.len() > 1 {
                    problems.push(Problem {
                        kind: Kind::ChainBreak,
                        ..gap(None, format!("the checkpoints {log} signed at {time} disagree on the streams of their round: two relays sign with one log name and key (give each its own integrity.log and key)"))
                    });
                }
                continue;
            };
            let seen = round.streams.len() as u64;
            // Streams seen begin before are reported by name below; the
            // rest of the shortfall were never seen at all.
            let unseen = members
                .count
                .saturating_sub(seen)
                .saturating_sub(known_absent.len() as u64);
            let plural = |n: u64, one: &'static str, many: &'static str| {
                if n == 1 { one } else { many }
            };
            if unseen > 0 {
                problems.push(gap(None, format!(
                    "the round of checkpoints {log} signed at {time} covered {} streams and the export holds {seen} of them: {unseen} stream{} no other round shows had {} checkpoints, and likely {} events, removed whole{} (an export a plugin filtered to some tenants: name them with --streams)",
                    members.count,
                    plural(unseen, "", "s"),
                    plural(unseen, "its", "their"),
                    plural(unseen, "its", "their"),
                    edge(time),
                )));
            } else if seen == members.count
                && Members::of(round.streams.keys().map(String::as_str)) != *members
            {
                problems.push(gap(None, format!(
                    "the round of checkpoints {log} signed at {time} names other streams than the {seen} the export holds it for"
                )));
            }
        }
        for (stream, times) in absent {
            let (Some(from), Some(to)) = (times.first(), times.last()) else {
                continue;
            };
            let mut why = edge(from);
            if from != to {
                why.push_str(&edge(to));
            }
            problems.push(gap(
                Some(stream),
                format!(
                    "{} round{} of checkpoints {log} signed ({from} to {to}) {} none of this stream: its checkpoints were removed{why}",
                    times.len(),
                    if times.len() == 1 { "" } else { "s" },
                    if times.len() == 1 { "has" } else { "have" },
                ),
            ));
        }
    }
}

/// The log a checkpoint is of: its origin without `/<stream>` (the whole
/// origin for the stream `""`).
fn log_of(checkpoint: &SignedCheckpoint) -> String {
    let origin = &checkpoint.checkpoint.origin;
    let stream = &checkpoint.window.stream;
    if stream.is_empty() {
        return origin.clone();
    }
    origin
        .strip_suffix(stream.as_str())
        .and_then(|log| log.strip_suffix('/'))
        .unwrap_or(origin)
        .to_owned()
}
