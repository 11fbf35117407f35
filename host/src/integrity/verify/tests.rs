//! Every mutation the issue lists, made to a real export (events sealed
//! and checkpoints signed by the relay's own code), must be named — that
//! problem, those sequence numbers — and nothing else; the untouched
//! export verifies clean; and malformed input never panics.

use std::time::Duration;

use auditrelay_plugin_api::envelope::{Actor, AuditEventEnvelope, Outcome};
use jiff::Timestamp;
use proptest::prelude::*;
use serde_json::json;

use super::*;
use crate::integrity::chain::{self, Head};
use crate::integrity::note::SigningKey;
use crate::integrity::signed::{Round, Signer};

const STREAM: &str = "acme";
/// Events in the export, and a checkpoint after every this many.
const EVENTS: u64 = 40;
const EVERY: u64 = 10;

fn time(minute: i64) -> Timestamp {
    Timestamp::from_second(1_796_000_000 + minute * 60).unwrap()
}

fn content(seq: u64) -> Vec<u8> {
    AuditEventEnvelope::builder("billing-api", "invoice.paid")
        .id(format!("e{seq}"))
        .tenant(STREAM)
        .actor(Actor::user("u-1"))
        .outcome(Outcome::Success)
        .payload(json!({"amount": seq * 3, "lines": [{"sku": "a"}, {"sku": "b"}]}))
        .build()
        .unwrap()
        .to_canonical_json()
}

/// What the relay would have exported: events, and a checkpoint event
/// after every [`EVERY`] of them (one a minute, each naming the last).
struct Export {
    signer: Signer,
    lines: Vec<String>,
    /// Where the event of `seq` is in `lines` (index `seq - 1`).
    events: Vec<usize>,
    /// Where each checkpoint event is.
    checkpoints: Vec<usize>,
    /// Each checkpoint's size, time and previous.
    signed: Vec<(u64, Timestamp, Option<Timestamp>, Hash)>,
}

fn key() -> SigningKey {
    SigningKey::generate("audit.example/relay").unwrap()
}

fn export_with(signer: Signer) -> Export {
    let mut head = Head::default();
    let mut tree = Tree::default();
    let mut export = Export {
        signer,
        lines: Vec::new(),
        events: Vec::new(),
        checkpoints: Vec::new(),
        signed: Vec::new(),
    };
    let mut previous = None;
    for seq in 1..=EVENTS {
        let sealed = chain::seal(&content(seq), STREAM, &mut head);
        tree.push(head.hash);
        export.events.push(export.lines.len());
        export.lines.push(String::from_utf8(sealed).unwrap());
        if seq % EVERY == 0 {
            let at = time((seq / EVERY) as i64);
            export.push_checkpoint(tree.size, tree.root(), at, previous);
            previous = Some(at);
        }
    }
    export
}

fn export() -> Export {
    export_with(Signer::new(
        key(),
        "audit.example/relay".into(),
        Duration::from_secs(60),
    ))
}

impl Export {
    fn push_checkpoint(
        &mut self,
        size: u64,
        root: Hash,
        at: Timestamp,
        previous: Option<Timestamp>,
    ) {
        let head = self.head(size);
        let signed = self.signer.sign(
            STREAM,
            size,
            root,
            head,
            &Round::new(at, [STREAM]),
            previous,
        );
        let event = signed.to_envelope(&self.signer.verifier(), Some(STREAM));
        self.checkpoints.push(self.lines.len());
        self.lines
            .push(String::from_utf8(event.to_canonical_json()).unwrap());
        self.signed.push((size, at, previous, root));
    }

    /// Checkpoint `i` again, as `other` signs it (another key's).
    fn signed_by(&self, other: &Signer, i: usize) -> SignedCheckpoint {
        let (size, at, previous, root) = self.signed[i];
        other.sign(
            STREAM,
            size,
            root,
            self.head(size),
            &Round::new(at, [STREAM]),
            previous,
        )
    }

    /// The chain hash of the event at `seq` (zeros if there is none).
    fn head(&self, seq: u64) -> Hash {
        (seq as usize)
            .checked_sub(1)
            .and_then(|i| self.events.get(i))
            .and_then(|&at| Opened::read(self.lines[at].as_bytes()))
            .map_or(GENESIS, |opened| opened.hash)
    }

    fn event(&mut self, seq: u64) -> &mut String {
        &mut self.lines[self.events[seq as usize - 1]]
    }

    fn verify(&self) -> Report {
        verify_lines(&self.lines, self.signer.verifier(), false)
    }

    /// Removes the lines at `indices`.
    fn delete(&mut self, indices: &[usize]) {
        let mut i = 0;
        self.lines.retain(|_| {
            i += 1;
            !indices.contains(&(i - 1))
        });
    }
}

fn verify_lines(lines: &[String], key: VerifierKey, partial: bool) -> Report {
    let mut verifier = Verifier::new(vec![key]).partial(partial);
    verifier.read_lines("export.ndjson", lines);
    verifier.finish().report
}

/// The one problem the report holds, which must be of `kind`.
fn only(report: &Report, kind: Kind) -> Problem {
    assert_eq!(report.problems.len(), 1, "{}", report.to_text());
    let problem = report.problems[0].clone();
    assert_eq!(problem.kind, kind, "{}", report.to_text());
    assert!(!report.ok);
    problem
}

#[test]
fn an_untouched_export_verifies_clean() {
    let export = export();
    let report = export.verify();
    assert!(report.ok, "{}", report.to_text());
    assert_eq!(
        report.to_text(),
        "stream acme: 40/40 events valid, 4 checkpoints, 0 duplicates; last checkpoint 2026-11-30T00:57:20Z\nok: no problems in 44 lines\n"
    );
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["ok"], true);
    assert_eq!(json["streams"][0]["valid"], 40);
}

#[test]
fn an_edited_field_is_modified_at_its_seq() {
    let mut export = export();
    let line = export.event(7);
    *line = line.replacen(r#""amount":21"#, r#""amount":2100"#, 1);
    let problem = only(&export.verify(), Kind::Modified);
    assert_eq!(problem.seqs, Some((7, 7)));
    assert_eq!(problem.ids, ["e7"]);
    assert_eq!(problem.at, ["export.ndjson:7"]);
}

#[test]
fn a_deleted_event_is_missing() {
    let mut export = export();
    let at = export.events[11];
    export.delete(&[at]);
    let report = export.verify();
    let problem = only(&report, Kind::Missing);
    assert_eq!(problem.seqs, Some((12, 12)));
    assert!(
        report.to_text().contains("stream acme: 39/40 events valid"),
        "{}",
        report.to_text()
    );
}

#[test]
fn a_deleted_window_is_missing_as_one_range() {
    let mut export = export();
    let window: Vec<usize> = (11..=20).map(|seq| export.events[seq - 1]).collect();
    export.delete(&window);
    let problem = only(&export.verify(), Kind::Missing);
    assert_eq!(problem.seqs, Some((11, 20)));
    assert!(
        problem.detail.starts_with("10 events"),
        "{}",
        problem.detail
    );
}

#[test]
fn a_forged_event_is_inserted() {
    // A forger copies seq 15's seal onto an event of their own and
    // recomputes the hash, as anyone can: sha-256 needs no key.
    let mut export = export();
    let genuine = Opened::read(export.event(15).as_bytes()).unwrap();
    let mut forged_content = content(15);
    forged_content = String::from_utf8(forged_content)
        .unwrap()
        .replacen(r#""amount":45"#, r#""amount":0"#, 1)
        .into_bytes();
    let mut head = Head {
        seq: 14,
        hash: genuine.prev,
    };
    let forged = String::from_utf8(chain::seal(&forged_content, STREAM, &mut head)).unwrap();
    let at = export.events[14] + 1;
    export.lines.insert(at, forged);
    let problem = only(&export.verify(), Kind::Inserted);
    assert_eq!(problem.seqs, Some((15, 15)));
    assert_eq!(problem.at, [format!("export.ndjson:{}", at + 1)]);

    // An event with no seal at all is inserted too.
    let mut export = self::export();
    let plain = String::from_utf8(content(99)).unwrap();
    export.lines.insert(3, plain);
    let problem = only(&export.verify(), Kind::Inserted);
    assert_eq!(problem.ids, ["e99"]);
    assert!(problem.detail.contains("no seal"), "{}", problem.detail);
}

#[test]
fn two_swapped_events_are_reordered() {
    let mut export = export();
    let (a, b) = (export.events[4], export.events[5]);
    export.lines.swap(a, b);
    let problem = only(&export.verify(), Kind::Reordered);
    let mut named: Vec<&str> = problem.ids.iter().map(String::as_str).collect();
    named.sort();
    assert_eq!(named, ["e5", "e6"], "{problem:?}");

    // Far apart: both are named, each on its own.
    let mut export = self::export();
    let (a, b) = (export.events[2], export.events[30]);
    export.lines.swap(a, b);
    let report = export.verify();
    let seqs: Vec<_> = report.of(Kind::Reordered).map(|p| p.seqs).collect();
    assert_eq!(seqs, [Some((3, 3)), Some((31, 31))], "{}", report.to_text());
    assert_eq!(report.problems.len(), 2);
}

#[test]
fn a_replaced_checkpoint_has_a_bad_signature() {
    let mut export = export();
    let at = export.checkpoints[1];
    // The size changed in the note and the payload alike.
    export.lines[at] = export.lines[at]
        .replace(r#"\n20\n"#, r#"\n19\n"#)
        .replace(r#""size":20"#, r#""size":19"#);
    let problem = only(&export.verify(), Kind::BadSignature);
    assert_eq!(problem.stream.as_deref(), Some(STREAM));
    assert_eq!(problem.at, [format!("export.ndjson:{}", at + 1)]);
}

#[test]
fn a_checkpoint_signed_with_another_key_is_unknown() {
    let mut export = export();
    let other = Signer::new(key(), "audit.example/relay".into(), Duration::from_secs(60));
    let forged = export.signed_by(&other, 2);
    let line = export.checkpoints[2];
    export.lines[line] = String::from_utf8(
        forged
            .to_envelope(&other.verifier(), Some(STREAM))
            .to_canonical_json(),
    )
    .unwrap();
    // Ours is gone (a gap: the next names it) and the other key's is
    // named as such.
    let report = export.verify();
    assert_eq!(report.problems.len(), 2, "{}", report.to_text());
    let problem = report.of(Kind::UnknownKey).next().unwrap();
    assert!(
        problem.detail.contains("audit.example/relay+"),
        "{}",
        problem.detail
    );
    assert_eq!(report.of(Kind::Gap).count(), 1, "{}", report.to_text());
}

#[test]
fn dropped_checkpoints_of_a_period_are_a_gap() {
    let mut export = export();
    let period = [export.checkpoints[1], export.checkpoints[2]];
    export.delete(&period);
    let problem = only(&export.verify(), Kind::Gap);
    let (_, third, _, _) = export.signed[2];
    assert!(
        problem.detail.contains(&third.to_string()),
        "{}",
        problem.detail
    );
    assert_eq!(problem.seqs, Some((11, 40)));
}

#[test]
fn a_duplicated_event_is_a_duplicate_not_a_problem() {
    let mut export = export();
    let copy = export.event(9).clone();
    export.lines.push(copy);
    let copy = export.lines[export.checkpoints[0]].clone();
    export.lines.push(copy);
    let report = export.verify();
    assert!(report.ok, "{}", report.to_text());
    assert_eq!(report.streams[0].duplicates, 1);
    assert_eq!(report.streams[0].checkpoint_duplicates, 1);
    assert!(
        report
            .to_text()
            .starts_with("stream acme: 40/40 events valid, 4 checkpoints, 1 duplicate; last")
    );
}

#[test]
fn a_re_sealed_event_breaks_the_chain_and_its_checkpoint() {
    // Whoever edits an event and recomputes its seal keeps its own hash
    // right; the next event's link and the signed root give it away.
    let mut export = export();
    let genuine = Opened::read(export.event(7).as_bytes()).unwrap();
    let edited =
        String::from_utf8(content(7))
            .unwrap()
            .replacen(r#""amount":21"#, r#""amount":0"#, 1);
    let mut head = Head {
        seq: 6,
        hash: genuine.prev,
    };
    *export.event(7) =
        String::from_utf8(chain::seal(edited.as_bytes(), STREAM, &mut head)).unwrap();
    let report = export.verify();
    let broken: Vec<_> = report.of(Kind::ChainBreak).map(|p| p.seqs).collect();
    assert_eq!(broken, [Some((7, 8))], "{}", report.to_text());
    let modified: Vec<_> = report.of(Kind::Modified).map(|p| p.seqs).collect();
    assert_eq!(modified, [Some((1, 10))], "{}", report.to_text());
    assert_eq!(report.problems.len(), 2);
}

#[test]
fn a_relay_that_was_not_running_is_a_pause_not_a_gap() {
    let mut export = export();
    let (size, at, _, root) = *export.signed.last().unwrap();
    let later = at.checked_add(jiff::SignedDuration::from_mins(30)).unwrap();
    export.push_checkpoint(size, root, later, Some(at));
    let report = export.verify();
    assert!(report.ok, "{}", report.to_text());
    assert_eq!(report.streams[0].pauses, [(at, later)]);
    assert!(report.to_text().contains("the relay was not running"));
}

#[test]
fn events_after_the_last_checkpoint_are_noted_as_uncovered() {
    let mut export = export();
    let last = export.checkpoints[3];
    export.delete(&[last]);
    let report = export.verify();
    assert!(report.ok, "{}", report.to_text());
    assert_eq!(report.streams[0].uncovered, Some((31, 40)));
    assert!(
        report
            .to_text()
            .contains("10 events after the last checkpoint (seq 31–40)")
    );
}

#[test]
fn a_window_of_the_stream_verifies_with_partial() {
    let mut export = export();
    let mut head_lines: Vec<usize> = export.events[..10].to_vec();
    head_lines.push(export.checkpoints[0]);
    export.delete(&head_lines);
    // Checked whole, the head is missing and so is the first checkpoint
    // (the second names it).
    let strict = export.verify();
    let kinds: Vec<_> = strict.problems.iter().map(|p| (p.kind, p.seqs)).collect();
    assert_eq!(
        kinds,
        [(Kind::Missing, Some((1, 10))), (Kind::Gap, Some((1, 20)))],
        "{}",
        strict.to_text()
    );
    let partial = verify_lines(&export.lines, export.signer.verifier(), true);
    assert!(partial.ok, "{}", partial.to_text());
    assert_eq!(partial.streams[0].expected, 30);
}

#[test]
fn an_edited_checkpoint_payload_is_modified_and_the_note_still_counts() {
    let mut export = export();
    let at = export.checkpoints[0];
    export.lines[at] = export.lines[at].replace(r#""size":10"#, r#""size":11"#);
    let problem = only(&export.verify(), Kind::Modified);
    assert!(
        problem.detail.contains("size 11 where the note says 10"),
        "{}",
        problem.detail
    );
}

#[test]
fn files_gzip_zstd_and_directories_read_alike() {
    use std::io::Write;
    let export = export();
    let dir = tempfile::tempdir().unwrap();
    let text = export.lines.join("\n") + "\n";
    let (first, second) = text.split_at(text.len() / 2);
    let cut = first.rfind('\n').unwrap() + 1;
    let (first, second) = (&text[..cut], format!("{}{second}", &first[cut..]));
    std::fs::create_dir(dir.path().join("2026")).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(first.as_bytes()).unwrap();
    // A bucket mirror may lose extensions: compression is told by magic.
    std::fs::write(dir.path().join("2026/a.ndjson.gz"), gz.finish().unwrap()).unwrap();
    let zst = ruzstd::encoding::compress_to_vec(
        second.as_bytes(),
        ruzstd::encoding::CompressionLevel::Fastest,
    );
    std::fs::write(dir.path().join("2026/b.ndjson"), zst).unwrap();
    std::fs::write(dir.path().join("2026/.hidden.ndjson"), "junk").unwrap();
    std::fs::write(dir.path().join("README.txt"), "not an export").unwrap();

    let files = input::expand(&[dir.path().to_owned()]).unwrap();
    assert_eq!(files.len(), 2, "{files:?}");
    let mut verifier = Verifier::new(vec![export.signer.verifier()]);
    for file in &files {
        verifier.read_path(file);
    }
    let report = verifier.finish().report;
    assert!(report.ok, "{}", report.to_text());
    assert_eq!(report.streams[0].valid, 40);

    let missing =
        input::expand(&[dir.path().join("nope"), dir.path().join("neither")]).unwrap_err();
    assert_eq!(missing.len(), 2, "every unreadable path is named at once");
}

#[test]
fn a_truncated_gzip_file_is_unreadable_and_its_lines_still_count() {
    use std::io::Write;
    let export = export();
    let dir = tempfile::tempdir().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all((export.lines.join("\n") + "\n").as_bytes())
        .unwrap();
    let bytes = gz.finish().unwrap();
    let path = dir.path().join("cut.ndjson.gz");
    std::fs::write(&path, &bytes[..bytes.len() * 2 / 3]).unwrap();
    let mut verifier = Verifier::new(vec![export.signer.verifier()]);
    verifier.read_path(&path);
    let report = verifier.finish().report;
    let unreadable = only(&report, Kind::Unreadable);
    assert!(
        unreadable.detail.starts_with("cannot read the file"),
        "{}",
        unreadable.detail
    );
    // What came before the cut is checked; the lost tail is as if not yet
    // exported (after the last checkpoint read).
    let stream = &report.streams[0];
    assert!(stream.present > 0 && stream.present == stream.valid);
    assert!(stream.uncovered.is_some());
}

#[test]
fn the_longest_increasing_run_is_kept() {
    assert_eq!(longest_increasing(&[1, 2, 3]), [true, true, true]);
    assert_eq!(
        longest_increasing(&[2, 1, 3])
            .iter()
            .filter(|k| !**k)
            .count(),
        1
    );
    assert_eq!(
        longest_increasing(&[1, 9, 3, 4, 5, 2, 10]),
        [true, false, true, true, true, false, true]
    );
    assert!(longest_increasing(&[]).is_empty());
}

/// A mutation of an export's lines.
#[derive(Debug, Clone)]
enum Mutation {
    Flip { line: usize, at: usize, byte: u8 },
    Delete(usize),
    Duplicate(usize),
    Swap(usize, usize),
    Truncate { line: usize, at: usize },
    Junk(Vec<u8>),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), any::<usize>(), any::<u8>()).prop_map(|(line, at, byte)| Mutation::Flip {
            line,
            at,
            byte
        }),
        any::<usize>().prop_map(Mutation::Delete),
        any::<usize>().prop_map(Mutation::Duplicate),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Mutation::Swap(a, b)),
        (any::<usize>(), any::<usize>()).prop_map(|(line, at)| Mutation::Truncate { line, at }),
        proptest::collection::vec(any::<u8>(), 0..300).prop_map(Mutation::Junk),
    ]
}

fn apply(lines: &mut Vec<Vec<u8>>, mutation: &Mutation) {
    let n = lines.len();
    match *mutation {
        Mutation::Flip { line, at, byte } => {
            let line = &mut lines[line % n];
            let at = at % line.len();
            line[at] = byte;
        }
        Mutation::Delete(i) => {
            lines.remove(i % n);
        }
        Mutation::Duplicate(i) => lines.push(lines[i % n].clone()),
        Mutation::Swap(a, b) => lines.swap(a % n, b % n),
        Mutation::Truncate { line, at } => {
            let line = &mut lines[line % n];
            line.truncate(at % line.len());
        }
        Mutation::Junk(ref bytes) => lines.push(bytes.clone()),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Whatever is done to an export, the verifier reports, never panics.
    #[test]
    fn mutated_exports_never_panic(mutations in proptest::collection::vec(mutation(), 1..6)) {
        let export = export();
        let mut lines: Vec<Vec<u8>> = export.lines.iter().map(|l| l.clone().into_bytes()).collect();
        for m in &mutations {
            if lines.is_empty() { break; }
            apply(&mut lines, m);
        }
        let mut verifier = Verifier::new(vec![export.signer.verifier()]);
        let file = verifier.file("fuzz");
        for (i, line) in lines.iter().enumerate() {
            verifier.line(At { file, line: i as u32 + 1 }, line);
        }
        let verified = verifier.finish();
        let _ = verified.report.to_text();
        let _ = serde_json::to_string(&verified.report).unwrap();
    }

    /// Any byte of an event's line changed is found.
    #[test]
    fn any_changed_byte_of_an_event_is_found(seq in 1..=EVENTS, at in any::<usize>(), byte in any::<u8>()) {
        let mut export = export();
        let line = export.event(seq);
        let at = at % line.len();
        prop_assume!(line.as_bytes()[at] != byte);
        let mut bytes = std::mem::take(line).into_bytes();
        bytes[at] = byte;
        let lines: Vec<Vec<u8>> = export.lines.iter().map(|l| l.clone().into_bytes())
            .enumerate()
            .map(|(i, l)| if i == export.events[seq as usize - 1] { bytes.clone() } else { l })
            .collect();
        let mut verifier = Verifier::new(vec![export.signer.verifier()]);
        let file = verifier.file("fuzz");
        for (i, line) in lines.iter().enumerate() {
            verifier.line(At { file, line: i as u32 + 1 }, line);
        }
        let report = verifier.finish().report;
        prop_assert!(!report.ok, "byte {} of seq {} set to {:?} went unnoticed", at, seq, byte as char);
    }

    /// Arbitrary notes in checkpoint events are refused, not trusted.
    #[test]
    fn arbitrary_notes_are_refused(note in ".{0,400}") {
        let key = key();
        let event = AuditEventEnvelope::builder(crate::integrity::signed::SOURCE, crate::integrity::signed::EVENT_TYPE)
            .id("c")
            .actor(Actor::new(auditrelay_plugin_api::envelope::ActorKind::System, "x"))
            .outcome(Outcome::Success)
            .payload(json!({"note": note}))
            .build()
            .unwrap();
        let mut verifier = Verifier::new(vec![key.verifier()]);
        let file = verifier.file("fuzz");
        verifier.line(At { file, line: 1 }, &event.to_canonical_json());
        let report = verifier.finish().report;
        prop_assert!(!report.ok);
    }
}

mod attacks;
mod relays;
mod review3;
