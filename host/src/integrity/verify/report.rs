//! What `verify` found: a summary per stream and every problem, by kind,
//! for people (text) and machines (`--json`).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use jiff::Timestamp;
use serde::Serialize;

/// What kind of problem: each names a different thing someone did (or
/// something that went wrong), so an auditor knows what to look for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// An event's content no longer hashes to its seal, or events no longer
    /// hash to a signed checkpoint: edited after the relay sealed them.
    Modified,
    /// Sequence numbers no event in the export holds: deleted (or never
    /// exported).
    Missing,
    /// An event no chain vouches for: without a seal, or claiming a
    /// sequence number the chain gives another event.
    Inserted,
    /// An event read out of its stream's order.
    Reordered,
    /// Checkpoints the next one names as its predecessor are not there: a
    /// window's checkpoints were removed.
    Gap,
    /// A checkpoint a known key signed no longer verifies: changed or forged.
    BadSignature,
    /// A checkpoint signed by no key given.
    UnknownKey,
    /// Links that do not hold: an event re-sealed by someone, two writers
    /// of one stream, or signed checkpoints that disagree (a fork).
    ChainBreak,
    /// A line that is no audit event, or a file that cannot be read.
    Unreadable,
}

impl Kind {
    /// The kind's name as `--json` and the text report spell it.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Modified => "modified",
            Kind::Missing => "missing",
            Kind::Inserted => "inserted",
            Kind::Reordered => "reordered",
            Kind::Gap => "gap",
            Kind::BadSignature => "bad-signature",
            Kind::UnknownKey => "unknown-key",
            Kind::ChainBreak => "chain-break",
            Kind::Unreadable => "unreadable",
        }
    }
}

/// One problem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// Its kind.
    pub kind: Kind,
    /// The stream it is in (`None`: a line that names none).
    pub stream: Option<String>,
    /// The first and last sequence numbers concerned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seqs: Option<(u64, u64)>,
    /// The ids of the events (or checkpoint events) concerned.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ids: Vec<String>,
    /// Where they were read (`file:line`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub at: Vec<String>,
    /// What was found, in a sentence.
    pub detail: String,
}

/// One stream, in numbers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StreamSummary {
    /// Its name (`""`: events without a tenant, or one stream for all).
    pub stream: String,
    /// How many events it should hold: its highest sequence number, from
    /// the events or the checkpoints (with `--partial`, from the first
    /// present on).
    pub expected: u64,
    /// How many distinct events of it were read.
    pub present: u64,
    /// How many of those no problem concerns.
    pub valid: u64,
    /// Distinct checkpoints whose signature verified.
    pub checkpoints: u64,
    /// When the newest of them was signed: what an export cut short at
    /// its end would move back (compare it with when the export was
    /// taken, or give `--until`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub newest_checkpoint: Option<Timestamp>,
    /// Checkpoints that could not be held against the events, because
    /// events they cover are missing.
    pub unchecked_checkpoints: u64,
    /// Extra copies of events (at-least-once delivery; not tampering).
    pub duplicates: u64,
    /// Extra copies of checkpoints.
    pub checkpoint_duplicates: u64,
    /// Events after the last checkpoint (first and last seq): nothing
    /// signed vouches for them yet.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uncovered: Option<(u64, u64)>,
    /// Windows the relay signed no checkpoint in because it was not
    /// running (its next checkpoint names the one before): not tampering.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pauses: Vec<(Timestamp, Timestamp)>,
}

/// Everything `verify` found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Whether no problem was found.
    pub ok: bool,
    /// Lines read (blank ones left out).
    pub lines: u64,
    /// Each stream, by name.
    pub streams: Vec<StreamSummary>,
    /// How many problems of each kind.
    pub counts: BTreeMap<Kind, u64>,
    /// Every problem, by kind, then stream, then sequence number.
    pub problems: Vec<Problem>,
    /// The files that could not be read to their end (each also an
    /// `unreadable` problem): the export was not checked whole, so
    /// `verify` exits 2, not 1.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unread_files: Vec<String>,
}

/// How many problems of a kind the text report lists (`--json` lists all).
const LISTED: usize = 20;

impl Report {
    /// The report of `problems`, and of `unlisted` more of some kinds that
    /// were counted but not kept (see [`super::MAX_KEPT`]).
    pub(super) fn new(
        lines: u64,
        streams: Vec<StreamSummary>,
        mut problems: Vec<Problem>,
        unlisted: &BTreeMap<Kind, u64>,
    ) -> Self {
        problems.sort_by(|a, b| {
            (a.kind, &a.stream, a.seqs, &a.at).cmp(&(b.kind, &b.stream, b.seqs, &b.at))
        });
        let mut counts = unlisted.clone();
        for problem in &problems {
            *counts.entry(problem.kind).or_insert(0) += 1;
        }
        Report {
            ok: counts.is_empty(),
            lines,
            streams,
            counts,
            problems,
            unread_files: Vec::new(),
        }
    }

    /// The problems of one kind.
    pub fn of(&self, kind: Kind) -> impl Iterator<Item = &Problem> {
        self.problems.iter().filter(move |p| p.kind == kind)
    }

    /// The report as people read it.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for stream in &self.streams {
            let _ = write!(
                out,
                "stream {}: {}/{} events valid, {} checkpoint{}, {} duplicate{}",
                display_stream(&stream.stream),
                thousands(stream.valid),
                thousands(stream.expected),
                thousands(stream.checkpoints),
                plural(stream.checkpoints),
                thousands(stream.duplicates),
                plural(stream.duplicates),
            );
            if stream.present != stream.expected {
                let _ = write!(out, " ({} present)", thousands(stream.present));
            }
            if let Some(newest) = stream.newest_checkpoint {
                let _ = write!(out, "; last checkpoint {newest}");
            }
            out.push('\n');
            if let Some((first, last)) = stream.uncovered {
                let _ = writeln!(
                    out,
                    "  note: {} event{} after the last checkpoint (seq {}) are not covered by a signed checkpoint yet",
                    thousands(last - first + 1),
                    plural(last - first + 1),
                    range(first, last)
                );
            }
            if stream.unchecked_checkpoints > 0 {
                let _ = writeln!(
                    out,
                    "  note: {} checkpoint{} could not be held against the events (events they cover are missing)",
                    stream.unchecked_checkpoints,
                    plural(stream.unchecked_checkpoints)
                );
            }
            for (from, to) in &stream.pauses {
                let _ = writeln!(
                    out,
                    "  note: no checkpoints from {from} to {to}: the relay was not running (its next checkpoint names the one before)"
                );
            }
        }
        if self.ok {
            let _ = writeln!(out, "ok: no problems in {} lines", thousands(self.lines));
            return out;
        }
        let counts: Vec<String> = self
            .counts
            .iter()
            .map(|(kind, n)| format!("{n} {}", kind.name()))
            .collect();
        let _ = writeln!(out, "PROBLEMS: {}", counts.join(", "));
        for (kind, count) in &self.counts {
            let _ = writeln!(out, "{}:", kind.name());
            for problem in self.of(*kind).take(LISTED) {
                let _ = write!(out, "  ");
                if let Some(stream) = &problem.stream {
                    let _ = write!(out, "stream {} ", display_stream(stream));
                }
                if let Some((first, last)) = problem.seqs {
                    let _ = write!(out, "seq {} ", range(first, last));
                }
                if !problem.ids.is_empty() {
                    let _ = write!(out, "id {} ", problem.ids.join(", "));
                }
                if !problem.at.is_empty() {
                    let _ = write!(out, "({}) ", problem.at.join(", "));
                }
                let _ = writeln!(out, "— {}", problem.detail);
            }
            if *count as usize > LISTED {
                let _ = writeln!(
                    out,
                    "  … and {} more (--json lists all)",
                    *count as usize - LISTED
                );
            }
        }
        out
    }
}

fn display_stream(stream: &str) -> String {
    if stream.is_empty() {
        "\"\"".into()
    } else {
        stream.to_owned()
    }
}

fn range(first: u64, last: u64) -> String {
    if first == last {
        first.to_string()
    } else {
        format!("{first}–{last}")
    }
}

fn plural(n: u64) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// `15000` as `15,000`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}
