//! Exports of relays with several streams, signed round by round as the
//! relay signs them (every stream at one time, `previous` advanced only
//! once a round is durable): a second outside review's attacks and false
//! alarms — a tenant removed whole, S3 objects read out of write order,
//! two relays with one log name, a round torn by a crash, a key rotation,
//! a log name ending in `/`.

use std::collections::{BTreeMap, HashMap};

use super::*;
use crate::integrity::signed::{Members, Window};

/// A relay's streams and the files its plugin wrote, signed round by round
/// as the relay signs them: events are written to the current file, and
/// [`Relay::file`] starts the next (an S3 object). It signs notes itself
/// so that a round can be signed without `members` (a relay from before
/// they existed) and the key can be swapped (a rotation at a restart).
pub(super) struct Relay {
    pub(super) log: String,
    pub(super) key: SigningKey,
    /// Whether rounds sign their members (false: an older relay).
    pub(super) members: bool,
    pub(super) chains: BTreeMap<String, (Head, Tree)>,
    pub(super) previous: HashMap<String, Timestamp>,
    pub(super) files: Vec<Vec<String>>,
    pub(super) minute: i64,
    pub(super) count: u64,
}

impl Relay {
    pub(super) fn new(log: &str) -> Relay {
        Relay {
            log: log.into(),
            key: SigningKey::generate(log).unwrap(),
            members: true,
            chains: BTreeMap::new(),
            previous: HashMap::new(),
            files: vec![Vec::new()],
            minute: 0,
            count: 0,
        }
    }

    pub(super) fn verifier(&self) -> VerifierKey {
        self.key.verifier()
    }

    /// A restart with a new key file: the log is read back, so the next
    /// round names the last durable one whichever key signed it.
    pub(super) fn rotate(&mut self) -> VerifierKey {
        let old = self.verifier();
        self.key = SigningKey::generate(&self.log).unwrap();
        old
    }

    pub(super) fn events(&mut self, stream: &str, n: u64) {
        for _ in 0..n {
            self.count += 1;
            let mut builder = AuditEventEnvelope::builder("billing-api", "invoice.paid")
                .id(format!("e{}", self.count))
                .actor(Actor::user("u-1"))
                .outcome(Outcome::Success);
            if !stream.is_empty() {
                builder = builder.tenant(stream);
            }
            let body = builder.build().unwrap().to_canonical_json();
            let (head, tree) = self.chains.entry(stream.to_owned()).or_default();
            let sealed = chain::seal(&body, stream, head);
            tree.push(head.hash);
            self.write(String::from_utf8(sealed).unwrap());
        }
    }

    pub(super) fn write(&mut self, line: String) {
        self.files.last_mut().unwrap().push(line);
    }

    pub(super) fn file(&mut self) {
        self.files.push(Vec::new());
    }

    pub(super) fn round(&mut self) -> Timestamp {
        let streams: Vec<String> = self.chains.keys().cloned().collect();
        self.round_writing(
            &streams.iter().map(String::as_str).collect::<Vec<_>>(),
            true,
        )
    }

    /// A round of every stream of which only `kept`'s checkpoints were
    /// written; `durable`: whether the relay saw it durable (and names it).
    pub(super) fn round_writing(&mut self, kept: &[&str], durable: bool) -> Timestamp {
        self.minute += 1;
        let at = time(self.minute);
        let members = Members::of(self.chains.keys().map(String::as_str));
        let mut lines = Vec::new();
        for (stream, (head, tree)) in &self.chains {
            let window = Window {
                head: (tree.size > 0).then(|| hex::encode(head.hash)),
                interval: 60,
                members: self.members.then(|| members.clone()),
                previous: self.previous.get(stream).copied(),
                stream: stream.clone(),
                time: at,
            };
            let checkpoint = Checkpoint {
                origin: if stream.is_empty() {
                    self.log.clone()
                } else {
                    format!("{}/{stream}", self.log)
                },
                size: tree.size,
                root: tree.root(),
                extensions: vec![format!(
                    "auditrelay {}",
                    serde_json::to_string(&window).unwrap()
                )],
            };
            let note = self.key.sign(&checkpoint.to_text()).unwrap();
            let signed = SignedCheckpoint {
                checkpoint,
                window,
                note,
            };
            let tenant = (!stream.is_empty()).then_some(stream.as_str());
            let event = signed.to_envelope(&self.key.verifier(), tenant);
            if kept.contains(&stream.as_str()) {
                lines.push(String::from_utf8(event.to_canonical_json()).unwrap());
            }
        }
        for line in lines {
            self.write(line);
        }
        if durable {
            for stream in self.chains.keys() {
                self.previous.insert(stream.clone(), at);
            }
        }
        at
    }

    /// `rounds` rounds, each after `tenants`' events (`(tenant, how many)`).
    pub(super) fn rounds(&mut self, rounds: usize, tenants: &[(&str, u64)]) {
        for _ in 0..rounds {
            for (tenant, n) in tenants {
                self.events(tenant, *n);
            }
            self.round();
        }
    }

    pub(super) fn lines(&self) -> Vec<String> {
        self.files.concat()
    }

    pub(super) fn verify(&self) -> Report {
        verify_lines(&self.lines(), self.verifier(), false)
    }
}

/// A relay of three tenants over three rounds.
fn three_tenants() -> Relay {
    let mut relay = Relay::new("audit.example/relay");
    relay.rounds(3, &[("acme", 4), ("globex", 2), ("initech", 3)]);
    relay
}

pub(super) fn without_tenant(lines: &[String], tenant: &str) -> Vec<String> {
    let mark = format!("\"tenant\":\"{tenant}\"");
    lines
        .iter()
        .filter(|line| !line.contains(&mark))
        .cloned()
        .collect()
}

#[test]
fn three_tenants_verify_clean() {
    let report = three_tenants().verify();
    assert!(report.ok, "{}", report.to_text());
}

/// Every event and checkpoint of one tenant removed: what is left is three
/// consistent streams, and only the rounds' signed members show the loss.
#[test]
fn a_tenant_removed_whole_is_a_gap_in_every_round() {
    let relay = three_tenants();
    let lines = without_tenant(&relay.lines(), "globex");
    let report = verify_lines(&lines, relay.verifier(), false);
    assert!(!report.ok, "{}", report.to_text());
    let gaps: Vec<&Problem> = report.of(Kind::Gap).collect();
    assert_eq!(gaps.len(), 3, "one per round:\n{}", report.to_text());
    assert!(
        gaps[0]
            .detail
            .contains("covered 3 streams and the export holds 2 of them"),
        "{}",
        gaps[0].detail
    );
    assert_eq!(report.problems.len(), 3, "{}", report.to_text());

    // --until cannot stand in for it: the other streams are up to date.
    let mut verifier = Verifier::new(vec![relay.verifier()]).until(Some(time(3)));
    verifier.read_lines("x", &lines);
    assert_eq!(verifier.finish().report.of(Kind::Gap).count(), 3);
}

/// A plugin filtered to some tenants exports only theirs: the auditor says
/// which with `--streams`, and each of those must be there, whole.
#[test]
fn an_export_filtered_to_some_tenants_is_held_to_the_named_ones() {
    let relay = three_tenants();
    let lines = without_tenant(&relay.lines(), "globex");
    let check = |streams: &[&str], lines: &[String]| {
        let mut verifier = Verifier::new(vec![relay.verifier()])
            .streams(Some(streams.iter().map(|s| s.to_string()).collect()));
        verifier.read_lines("x", lines);
        verifier.finish().report
    };
    let report = check(&["acme", "initech"], &lines);
    assert!(report.ok, "{}", report.to_text());
    // A named stream that is not there is a gap.
    let report = check(&["acme", "globex"], &lines);
    let problem = only(&report, Kind::Gap);
    assert_eq!(problem.stream.as_deref(), Some("globex"));
    // A named stream whose last round was removed is one too.
    let mut cut = lines.clone();
    let last_acme_checkpoint = cut
        .iter()
        .rposition(|l| l.contains("auditrelay.checkpoint") && l.contains("\"tenant\":\"acme\""))
        .unwrap();
    cut.remove(last_acme_checkpoint);
    let report = check(&["acme", "initech"], &cut);
    let problem = only(&report, Kind::Gap);
    assert_eq!(
        problem.stream.as_deref(),
        Some("acme"),
        "{}",
        problem.detail
    );
}

/// An empty export (or one whose every checkpoint was removed with every
/// event) holds nothing to check; with `--until` it is a gap.
#[test]
fn an_empty_export_fails_until() {
    let relay = three_tenants();
    let report = verify_lines(&[], relay.verifier(), false);
    assert!(report.ok, "{}", report.to_text());
    let mut verifier = Verifier::new(vec![relay.verifier()]).until(Some(time(1)));
    verifier.read_lines("x", Vec::<String>::new());
    let report = verifier.finish().report;
    only(&report, Kind::Gap);
}

/// S3 object keys carry the time of their first event, so a bucket read in
/// name order can hold a later batch before an earlier one: that is no
/// reordering. Within one file it is.
#[test]
fn files_read_in_any_order_are_not_reordered_but_lines_within_one_are() {
    let mut relay = Relay::new("audit.example/relay");
    for _ in 0..4 {
        relay.events("acme", 5);
        relay.file();
    }
    relay.round();
    let key = relay.verifier();
    let mut verifier = Verifier::new(vec![key.clone()]);
    for (i, file) in relay.files.iter().enumerate().rev() {
        verifier.read_lines(format!("part-{i}.ndjson"), file);
    }
    let report = verifier.finish().report;
    assert!(report.ok, "{}", report.to_text());

    let mut files = relay.files.clone();
    files[1].swap(1, 2);
    let mut verifier = Verifier::new(vec![key]);
    for (i, file) in files.iter().enumerate() {
        verifier.read_lines(format!("part-{i}.ndjson"), file);
    }
    let report = verifier.finish().report;
    let problem = only(&report, Kind::Reordered);
    assert!(
        problem.at[0].starts_with("part-1.ndjson:"),
        "{}",
        report.to_text()
    );
}

/// Two relays that keep the default log name, each with its own key and
/// tenants, exporting to one place: their rounds are told apart by key.
#[test]
fn two_relays_with_one_log_name_are_told_apart_by_their_keys() {
    let mut a = Relay::new("auditrelay");
    let mut b = Relay::new("auditrelay");
    b.minute = 100; // signs at other times
    for _ in 0..3 {
        a.events("acme", 2);
        a.round();
        b.events("globex", 3);
        b.round();
    }
    let mut lines = a.lines();
    lines.extend(b.lines());
    let mut verifier = Verifier::new(vec![a.verifier(), b.verifier()]);
    verifier.read_lines("x", &lines);
    let report = verifier.finish().report;
    assert!(report.ok, "{}", report.to_text());
}

/// A crash while a round is written leaves some of its checkpoints and
/// not the others; the relay never names that round, so it is not held
/// to its members — unless it is the newest, where it may as well be
/// removal: then the report says both.
#[test]
fn a_round_torn_by_a_crash_is_no_gap_once_a_later_round_follows() {
    let mut relay = three_tenants();
    relay.events("acme", 2);
    relay.round_writing(&["acme"], false);
    let newest = relay.verify();
    let gaps: Vec<&Problem> = newest.of(Kind::Gap).collect();
    assert_eq!(gaps.len(), 2, "{}", newest.to_text());
    assert_eq!(newest.problems.len(), 2, "{}", newest.to_text());
    for gap in gaps {
        assert!(
            gap.detail.contains("stopped while writing"),
            "{}",
            gap.detail
        );
    }
    relay.events("globex", 1);
    relay.round();
    let report = relay.verify();
    assert!(report.ok, "{}", report.to_text());
}

/// A forged note claiming a removed checkpoint's stream and time fails its
/// signature — and does not stand in for the checkpoint in its round.
#[test]
fn a_bad_signature_does_not_fill_a_removed_round() {
    let relay = three_tenants();
    let mut lines = relay.lines();
    let at = lines
        .iter()
        .position(|l| l.contains("auditrelay.checkpoint") && l.contains("\"tenant\":\"globex\""))
        .map(|first| {
            // globex's second checkpoint.
            first
                + 1
                + lines[first + 1..]
                    .iter()
                    .position(|l| {
                        l.contains("auditrelay.checkpoint") && l.contains("\"tenant\":\"globex\"")
                    })
                    .unwrap()
        })
        .unwrap();
    // The note's size edited: the signature no longer holds.
    lines[at] = lines[at].replacen("\\n4\\n", "\\n3\\n", 1);
    let report = verify_lines(&lines, relay.verifier(), false);
    assert_eq!(
        report.of(Kind::BadSignature).count(),
        1,
        "{}",
        report.to_text()
    );
    assert!(
        report
            .of(Kind::Gap)
            .any(|p| p.stream.as_deref() == Some("globex")),
        "{}",
        report.to_text()
    );
}

/// After a key rotation the new key's first checkpoints name the old
/// key's last (the relay reads its log whichever key signed it): given
/// both keys, the export verifies clean, and a stream's tail cut at the
/// seam still shows.
#[test]
fn a_key_rotation_leaves_no_seam() {
    let mut relay = three_tenants();
    let old = relay.rotate();
    relay.events("acme", 3);
    relay.round();
    relay.events("globex", 1);
    relay.round();
    let keys = vec![old.clone(), relay.verifier()];
    let check = |lines: &[String]| {
        let mut verifier = Verifier::new(keys.clone());
        verifier.read_lines("x", lines);
        verifier.finish().report
    };
    let report = check(&relay.lines());
    assert!(report.ok, "{}", report.to_text());

    // globex's checkpoints under the new key removed, with its new event.
    let new_key_name = relay.verifier().name_and_id();
    let lines: Vec<String> = relay
        .lines()
        .into_iter()
        .filter(|l| {
            !(l.contains("\"tenant\":\"globex\"")
                && (l.contains(&new_key_name) || l.contains("\"id\":\"e31\"")))
        })
        .collect();
    let report = check(&lines);
    let problem = only(&report, Kind::Gap);
    assert_eq!(problem.stream.as_deref(), Some("globex"));
    assert!(problem.detail.starts_with("2 rounds"), "{}", problem.detail);
}

/// A log named with a trailing `/` groups the stream `""` (origin: the
/// log) with the others (origin: `log/stream`).
#[test]
fn a_log_name_ending_in_a_slash_keeps_its_streams_together() {
    let mut relay = Relay::new("audit.example/");
    for _ in 0..3 {
        relay.events("", 2);
        relay.events("acme", 2);
        relay.round();
    }
    let report = relay.verify();
    assert!(report.ok, "{}", report.to_text());
    // And removing the untenanted stream's last checkpoint shows.
    let mut lines = relay.lines();
    let last = lines
        .iter()
        .rposition(|l| l.contains("auditrelay.checkpoint") && !l.contains("\"tenant\""))
        .unwrap();
    lines.remove(last);
    let report = verify_lines(&lines, relay.verifier(), false);
    assert!(!report.ok, "{}", report.to_text());
}
