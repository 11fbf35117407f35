//! A third outside review of `verify` (rounds, `--streams`, `--partial`,
//! key rotation, checkpoints without `members`, zstd framing, memory).
//! Each test was a reproducer that failed on the code as reviewed; the
//! verifier was then changed to pass it (one, a window beginning inside a
//! round, cannot be told from an attack: it is reported with the way out).

use super::relays::{Relay, without_tenant};
use super::*;

fn check(
    keys: &[VerifierKey],
    lines: &[String],
    partial: bool,
    streams: Option<&[&str]>,
) -> Report {
    let mut verifier = Verifier::new(keys.to_vec())
        .partial(partial)
        .streams(streams.map(|s| s.iter().map(|s| s.to_string()).collect()));
    verifier.read_lines("export.ndjson", lines);
    verifier.finish().report
}

fn is_checkpoint_of(line: &str, tenant: &str) -> bool {
    line.contains("auditrelay.checkpoint") && line.contains(&format!("\"tenant\":\"{tenant}\""))
}

/// Three tenants, three rounds under a first key; a rotation; two more
/// rounds under the second. Returns the relay and the old key.
fn rotated(members: bool) -> (Relay, VerifierKey) {
    let mut relay = Relay::new("audit.example/relay");
    relay.members = members;
    relay.rounds(3, &[("acme", 4), ("globex", 2), ("initech", 3)]);
    let old = relay.rotate();
    relay.file();
    relay.rounds(2, &[("acme", 4), ("globex", 2), ("initech", 3)]);
    (relay, old)
}

/// globex's part after the rotation cut: its events in the second file
/// and every checkpoint the new key signed for it.
fn without_globex_after_rotation(relay: &Relay) -> Vec<String> {
    let new_key = relay.verifier().name_and_id();
    let mut lines = relay.files[0].clone();
    lines.extend(without_tenant(&relay.files[1], "globex"));
    assert!(
        lines
            .iter()
            .all(|l| !(is_checkpoint_of(l, "globex") && l.contains(&new_key)))
    );
    lines
}

/// FINDING 1 (hole). `--streams` holds each named stream to "every round
/// after its first" — but `first` is per (log, key): after a key rotation
/// the new key's rounds never saw the stream, so its whole tail since the
/// rotation (events and checkpoints) can be cut, and with `--streams` the
/// rounds' counts are not looked at: `ok`.
#[test]
fn review3_streams_hides_a_tenants_tail_cut_at_a_key_rotation() {
    let (relay, old) = rotated(true);
    let keys = [old, relay.verifier()];
    // The export a plugin filtered to acme and globex.
    let filtered = without_tenant(&relay.lines(), "initech");
    let honest = check(&keys, &filtered, false, Some(&["acme", "globex"]));
    assert!(honest.ok, "{}", honest.to_text());

    let cut = without_tenant(&without_globex_after_rotation(&relay), "initech");
    let report = check(&keys, &cut, false, Some(&["acme", "globex"]));
    // The same cut without a rotation is a gap (see below): it must be one here.
    assert!(
        !report.ok,
        "globex's events and checkpoints since the rotation were removed, yet:\n{}",
        report.to_text()
    );
}

/// Control for finding 1: without a rotation the same cut is caught.
#[test]
fn review3_control_streams_tail_cut_without_rotation_is_caught() {
    let mut relay = Relay::new("audit.example/relay");
    relay.rounds(3, &[("acme", 4), ("globex", 2)]);
    relay.file();
    relay.rounds(2, &[("acme", 4), ("globex", 2)]);
    let mut lines = relay.files[0].clone();
    lines.extend(without_tenant(&relay.files[1], "globex"));
    let report = check(
        &[relay.verifier()],
        &lines,
        false,
        Some(&["acme", "globex"]),
    );
    assert!(!report.ok, "{}", report.to_text());
}

/// FINDING 1b (hole, same cause). Checkpoints without `members` (a relay
/// from before rounds were signed) still promise "a stream is missing from
/// a round after its first" is a gap; across a key rotation it is not.
#[test]
fn review3_legacy_checkpoints_hide_a_tenants_tail_cut_at_a_key_rotation() {
    let (relay, old) = rotated(false);
    let keys = [old, relay.verifier()];
    let honest = check(&keys, &relay.lines(), false, None);
    assert!(honest.ok, "{}", honest.to_text());
    let cut = without_globex_after_rotation(&relay);
    let report = check(&keys, &cut, false, None);
    assert!(
        !report.ok,
        "globex's events and checkpoints since the rotation were removed, yet:\n{}",
        report.to_text()
    );
}

/// FINDING 2. `--partial` checks a window, e.g. one day's objects of a
/// bucket. A round's checkpoint events may be split over two objects, so
/// a window can begin inside a round. From the window alone that cannot
/// be told from a stream's part of its first round removed (finding 6):
/// it is a gap, and the report says a window may begin there.
#[test]
fn review3_partial_window_beginning_inside_a_round_says_so() {
    let mut relay = Relay::new("audit.example/relay");
    relay.rounds(4, &[("acme", 4), ("globex", 2), ("initech", 3)]);
    let lines = relay.lines();
    // The window starts at initech's checkpoint of round 2: the object
    // before it (acme's and globex's) belongs to the day before.
    let round_2_initech = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| is_checkpoint_of(l, "initech"))
        .nth(1)
        .unwrap()
        .0;
    let window = &lines[round_2_initech..];
    let report = check(&[relay.verifier()], window, true, None);
    assert!(!report.ok, "{}", report.to_text());
    for gap in report.of(Kind::Gap) {
        assert!(
            gap.detail.contains("the window begins inside this round"),
            "{}",
            gap.detail
        );
    }
    // Given from the round's start, the window is whole.
    let round_2_acme = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| is_checkpoint_of(l, "acme"))
        .nth(1)
        .unwrap()
        .0;
    let report = check(&[relay.verifier()], &lines[round_2_acme..], true, None);
    assert!(report.ok, "{}", report.to_text());
}

/// FINDING 3 (false alarm). A crash while round 4 is written (only acme's
/// checkpoint reaches the spool; the relay never names it) and a restart
/// with a new key file: the new key's first round names round 3, and the
/// export is honest. But rounds are grouped by key, so the torn round is
/// the newest of the old key's and held to its members.
#[test]
fn review3_a_round_torn_by_a_crash_before_a_key_rotation_is_no_gap() {
    let mut relay = Relay::new("audit.example/relay");
    relay.rounds(3, &[("acme", 4), ("globex", 2), ("initech", 3)]);
    relay.events("acme", 2);
    relay.round_writing(&["acme"], false);
    let old = relay.rotate();
    relay.events("globex", 1);
    relay.round();
    relay.events("initech", 1);
    relay.round();
    let report = check(&[old, relay.verifier()], &relay.lines(), false, None);
    assert!(report.ok, "an honest export:\n{}", report.to_text());
}

/// FINDING 4 (false "could not read", exit 2). After a zstd frame the
/// reader looks at `fill_buf()` to tell the next frame: when 1-3 bytes of
/// the 1 MiB buffer are left, those are not 4 bytes of magic and the file
/// is declared to have junk after its last frame. Any multi-frame file
/// (pzstd, seekable) whose frame boundary lands there is unreadable.
#[test]
fn review3_a_zstd_frame_starting_at_the_end_of_the_read_buffer_reads() {
    let export = export();
    let text = export.lines.join("\n") + "\n";
    let dir = tempfile::tempdir().unwrap();
    for left in 1..=3usize {
        // A skippable frame that ends `left` bytes before 1 MiB.
        let body = (1usize << 20) - 8 - left;
        let mut bytes = vec![0x50, 0x2a, 0x4d, 0x18];
        bytes.extend((body as u32).to_le_bytes());
        bytes.extend(std::iter::repeat_n(0u8, body));
        bytes.extend(ruzstd::encoding::compress_to_vec(
            text.as_bytes(),
            ruzstd::encoding::CompressionLevel::Fastest,
        ));
        let path = dir.path().join(format!("export-{left}.zst"));
        std::fs::write(&path, &bytes).unwrap();
        let mut lines = 0;
        let result = input::read_lines(&path, |_, _| lines += 1);
        assert!(
            result.is_ok(),
            "{left} bytes left in the buffer: {result:?} after {lines} lines"
        );
        assert_eq!(lines, export.lines.len());
    }
}

/// FINDING 5 (memory). Sealed events cost ~110 bytes each however long
/// their line; every copy of a checkpoint line is kept whole (note and
/// parsed event) until `finish`. Copies are what at-least-once delivery
/// makes, and anyone can make a billion: memory grows with the bytes of
/// the export, several times over, not with its distinct checkpoints.
#[test]
fn review3_copies_of_a_checkpoint_are_not_kept_whole() {
    let export = export();
    let line = export.lines[export.checkpoints[0]].clone();
    let mut verifier = Verifier::new(vec![export.signer.verifier()]);
    let copies = 20_000;
    verifier.read_lines("copies.ndjson", std::iter::repeat_n(&line, copies));
    let kept: usize = verifier
        .notes
        .iter()
        .map(|n| n.note.len() + serde_json::to_vec(&n.event).unwrap().len())
        .sum();
    assert!(
        verifier.notes.len() < 100,
        "{} copies of one checkpoint line ({} bytes) keep {} notes, {kept} bytes of text (before parse overhead)",
        copies,
        line.len(),
        verifier.notes.len()
    );
}

/// FINDING 6 (hole). With `--partial`, a stream's first checkpoint in the
/// window may name a predecessor that is not there (the window's start);
/// with `--streams` the rounds' counts are not looked at either. So one
/// named stream's start of the window — its events and checkpoints of the
/// first rounds — can be cut alone, though the rounds it was signed in are
/// in the export for the other streams (and its first checkpoint left
/// names one of them): `ok`.
#[test]
fn review3_partial_with_streams_hides_one_streams_start_of_the_window() {
    let mut relay = Relay::new("audit.example/relay");
    for round in 0..6 {
        for (tenant, n) in [("acme", 4), ("globex", 2)] {
            relay.events(tenant, n);
        }
        relay.round();
        if round == 2 {
            relay.file();
        }
    }
    // The window: the second file (rounds 4 to 6), as a day's objects.
    let window = relay.files[1].clone();
    let streams: &[&str] = &["acme", "globex"];
    let honest = check(&[relay.verifier()], &window, true, Some(streams));
    assert!(honest.ok, "{}", honest.to_text());
    // globex's events and checkpoint of round 4 removed; rounds 5 and 6 left.
    let globex: Vec<usize> = window
        .iter()
        .enumerate()
        .filter(|(_, l)| l.contains("\"tenant\":\"globex\""))
        .map(|(i, _)| i)
        .collect();
    let first_checkpoint = globex
        .iter()
        .position(|&i| window[i].contains("auditrelay.checkpoint"))
        .unwrap();
    let cut: Vec<String> = window
        .iter()
        .enumerate()
        .filter(|(i, _)| !globex[..=first_checkpoint].contains(i))
        .map(|(_, l)| l.clone())
        .collect();
    // Without --streams the rounds' members catch it.
    let members = check(&[relay.verifier()], &cut, true, None);
    assert!(!members.ok, "{}", members.to_text());
    let report = check(&[relay.verifier()], &cut, true, Some(streams));
    assert!(
        !report.ok,
        "globex's part of round 4 was removed; its round-5 checkpoint names round 4, which the export holds for acme, yet:\n{}",
        report.to_text()
    );
}

// FINDING 7 (a wall clock stepped back makes a later round's time earlier,
// which `verify` reads as a rollback) is fixed where the time is made: the
// relay never signs a round at or before the one before it
// (`relay::checkpoints::tests`).
