//! Attacks an outside review made on `verify` and `prove` with only the
//! exported files in hand (no key): each must be named, never pass as
//! `ok`, never panic and never take unbounded time.

use super::*;

/// The line of an event of `stream` at `seq` after `prev`, sealed by
/// anyone (SHA-256 needs no key); any `seq`, 0 and u64::MAX included.
fn seal_at(content: &[u8], stream: &str, seq: u64, prev: Hash) -> String {
    let one = String::from_utf8(chain::seal(
        content,
        stream,
        &mut Head { seq: 0, hash: prev },
    ))
    .unwrap();
    let good = Opened::read(one.as_bytes()).unwrap();
    let hash = chain::link(&good.digest, &prev, seq, stream);
    one.replacen(&hex::encode(good.hash), &hex::encode(hash), 1)
        .replacen("\"seq\":1,", &format!("\"seq\":{seq},"), 1)
}

/// `content(seq)` with its amount changed: an edit worth hiding.
fn edited(seq: u64) -> Vec<u8> {
    String::from_utf8(content(seq))
        .unwrap()
        .replacen(&format!("\"amount\":{}", seq * 3), "\"amount\":0", 1)
        .into_bytes()
}

/// Re-seals seq `from..=EVENTS` of the export (seq `from` edited) into a
/// consistent chain, as anyone can.
fn reseal_from(export: &mut Export, from: u64) {
    let prev = Opened::read(export.event(from).as_bytes()).unwrap().prev;
    let mut head = Head {
        seq: from - 1,
        hash: prev,
    };
    for seq in from..=EVENTS {
        let body = if seq == from {
            edited(seq)
        } else {
            content(seq)
        };
        *export.event(seq) = String::from_utf8(chain::seal(&body, STREAM, &mut head)).unwrap();
    }
}

fn no_panic(f: impl FnOnce() + std::panic::UnwindSafe) -> Result<(), String> {
    std::panic::catch_unwind(f).map_err(|e| {
        e.downcast_ref::<String>()
            .cloned()
            .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default()
    })
}

// ---------------------------------------------------------------- 1

/// One extra line — a self-sealed event at seq 0 — empties the ledger
/// prefix (`prefix` needs chosen[0].seq == 1), so no checkpoint root is
/// checked any more, and the whole stream can then be re-sealed at will.
#[test]
fn a_seq_0_event_cannot_switch_off_the_checkpoint_roots() {
    let mut export = export();
    reseal_from(&mut export, 7); // seq 7 edited, 7..=40 re-chained
    // Without the seq-0 line this is caught (chain is consistent, roots are not):
    let caught = export.verify();
    assert!(
        caught.of(Kind::Modified).count() == 1,
        "{}",
        caught.to_text()
    );
    // With it, the export verifies clean.
    let decoy = seal_at(&content(0), STREAM, 0, GENESIS);
    export.lines.insert(0, decoy);
    let report = export.verify();
    assert!(
        !report.ok,
        "seq 7 edited and the stream re-sealed, yet verify says ok:\n{}",
        report.to_text()
    );
}

// ---------------------------------------------------------------- 2

/// A stream with no checkpoint at all is "ok": delete every checkpoint
/// of a stream and its events can be rewritten, deleted or invented.
#[test]
fn a_stream_whose_checkpoints_were_all_removed_is_a_gap() {
    let mut export = export();
    reseal_from(&mut export, 3);
    let checkpoints = export.checkpoints.clone();
    export.delete(&checkpoints);
    let report = export.verify();
    assert!(
        !report.ok,
        "rewritten stream without checkpoints verifies:\n{}",
        report.to_text()
    );
}

/// The same for a stream invented whole, next to a genuine export.
#[test]
fn an_invented_stream_without_checkpoints_is_a_gap() {
    let mut export = export();
    let mut head = Head::default();
    for seq in 1..=5 {
        let body = String::from_utf8(content(seq))
            .unwrap()
            .replace("\"acme\"", "\"evilcorp\"");
        export
            .lines
            .push(String::from_utf8(chain::seal(body.as_bytes(), "evilcorp", &mut head)).unwrap());
    }
    let report = export.verify();
    assert!(
        !report.ok,
        "an invented stream verifies:\n{}",
        report.to_text()
    );
}

// ---------------------------------------------------------------- 3

/// Truncating the log — the last checkpoint and the events after the one
/// before it — looks like a shorter log from the export alone: the report
/// says how far its checkpoints go, and `--until` holds it to when the
/// auditor knows the log went on.
#[test]
fn a_truncated_tail_shows_in_the_last_checkpoint_time_and_fails_until() {
    let mut export = export();
    let mut cut: Vec<usize> = (31..=EVENTS)
        .map(|s| export.events[s as usize - 1])
        .collect();
    cut.push(export.checkpoints[3]);
    export.delete(&cut);
    let report = export.verify();
    let text = report.to_text();
    assert!(
        text.contains(&format!("last checkpoint {}", time(3))),
        "{text}"
    );
    let mut verifier = Verifier::new(vec![export.signer.verifier()]).until(Some(time(4)));
    verifier.read_lines("x", export.lines);
    let report = verifier.finish().report;
    assert_eq!(report.of(Kind::Gap).count(), 1, "{}", report.to_text());
}

// ---------------------------------------------------------------- 4

/// Copies of a checkpoint note skip every check (`seen` dedupe happens
/// before `payload_differs`), so an attacker can add unsealed events of
/// source `auditrelay`/type `auditrelay.checkpoint` with any content as
/// long as `payload.note` repeats a genuine note.
#[test]
fn a_forged_checkpoint_event_carrying_a_copied_note_is_modified() {
    let mut export = export();
    let genuine = export.lines[export.checkpoints[0]].clone();
    let mut forged: serde_json::Value = serde_json::from_str(&genuine).unwrap();
    forged["id"] = json!("checkpoint-forged");
    forged["payload"]["size"] = json!(999_999);
    forged["payload"]["root"] = json!("00".repeat(32));
    forged["payload"]["stream"] = json!("othercorp");
    forged["actor"]["id"] = json!("mallory");
    forged["tenant"] = json!("othercorp");
    let forged = AuditEventEnvelope::from_value(forged, &Default::default()).unwrap();
    export
        .lines
        .push(String::from_utf8(forged.to_canonical_json()).unwrap());
    let report = export.verify();
    assert!(
        !report.ok,
        "a forged checkpoint event went unnoticed:\n{}",
        report.to_text()
    );
}

/// Even the first copy is only compared on size/root/stream/origin: the
/// event's tenant, time, actor and payload.key can be changed freely.
#[test]
fn a_checkpoint_events_tenant_time_and_key_are_checked() {
    let mut export = export();
    let at = export.checkpoints[0];
    let mut event: serde_json::Value = serde_json::from_str(&export.lines[at]).unwrap();
    event["tenant"] = json!("othercorp");
    event["time"] = json!("2001-01-01T00:00:00Z");
    event["payload"]["key"] = json!("someone-else+deadbeef");
    let event = AuditEventEnvelope::from_value(event, &Default::default()).unwrap();
    export.lines[at] = String::from_utf8(event.to_canonical_json()).unwrap();
    let report = export.verify();
    assert!(
        !report.ok,
        "edited checkpoint event went unnoticed:\n{}",
        report.to_text()
    );
}

// ---------------------------------------------------------------- 5

/// `--partial` never checks a root (no seq 1, so the ledger prefix is
/// empty): a window re-sealed end to end verifies clean.
#[test]
fn partial_mode_finds_a_resealed_window() {
    let mut export = export();
    reseal_from(&mut export, 12);
    let mut head_lines: Vec<usize> = export.events[..10].to_vec();
    head_lines.push(export.checkpoints[0]);
    export.delete(&head_lines);
    let report = verify_lines(&export.lines, export.signer.verifier(), true);
    assert!(
        !report.ok,
        "re-sealed window passes --partial:\n{}",
        report.to_text()
    );
}

// ---------------------------------------------------------------- 6

/// Extreme sequence numbers overflow (debug builds panic; release wraps).
#[test]
fn seq_u64_max_does_not_panic() {
    let export = export();
    let mut lines = export.lines.clone();
    lines.push(seal_at(&content(41), STREAM, u64::MAX, [7; 32]));
    let key = export.signer.verifier();
    no_panic(move || {
        let _ = verify_lines(&lines, key, false);
    })
    .unwrap();
}

#[test]
fn seq_0_with_partial_does_not_panic() {
    let mut export = export();
    let last = export.checkpoints[3];
    export.delete(&[last]); // so that some events are "uncovered"
    let mut lines = export.lines.clone();
    lines.insert(0, seal_at(&content(0), STREAM, 0, GENESIS));
    let key = export.signer.verifier();
    no_panic(move || {
        let _ = verify_lines(&lines, key, true);
    })
    .unwrap();
}

/// A seq-0 event is forged (the relay counts from 1): named, never found
/// for a proof.
#[test]
fn a_seq_0_event_is_inserted_and_never_proven() {
    let export = export();
    let mut lines = export.lines.clone();
    lines.insert(0, seal_at(&content(0), STREAM, 0, GENESIS));
    let mut verifier = Verifier::new(vec![export.signer.verifier()]);
    verifier.want("billing-api", "e0");
    verifier.read_lines("x", lines);
    let verified = verifier.finish();
    assert!(
        verified.found.is_empty(),
        "a seq-0 event is no event of the chain"
    );
    assert_eq!(
        verified.report.of(Kind::Inserted).count(),
        1,
        "{}",
        verified.report.to_text()
    );
}

/// `verify --proof` with `"index": u64::MAX` (an attacker's proof file).
#[test]
fn a_proof_with_index_u64_max_fails_without_panic() {
    let export = export();
    let key = export.signer.verifier();
    let note = export.lines[export.checkpoints[0]].clone();
    let note: serde_json::Value = serde_json::from_str(&note).unwrap();
    let proof = crate::integrity::proof::Proof::Inclusion {
        event: export.lines[export.events[0]].clone(),
        checkpoint: note["payload"]["note"].as_str().unwrap().to_owned(),
        index: u64::MAX,
        size: 10,
        proof: vec![],
    };
    no_panic(move || {
        let _ = proof.check(&[key]);
    })
    .unwrap();
}

// ---------------------------------------------------------------- 7

/// Many distinct events claiming one seq: `group` (find over variants)
/// and `choose` (contains over the next group's prevs) are quadratic.
#[test]
fn many_variants_of_one_seq_take_linear_time() {
    let export = export();
    let prev = Opened::read(export.lines[export.events[14]].as_bytes())
        .unwrap()
        .prev;
    let timed = |n: u64| {
        let mut lines = export.lines.clone();
        for i in 0..n {
            let body = String::from_utf8(content(15)).unwrap().replacen(
                "\"amount\":45",
                &format!("\"amount\":{}", 1000 + i),
                1,
            );
            lines.push(seal_at(body.as_bytes(), STREAM, 15, prev));
        }
        let start = std::time::Instant::now();
        let report = verify_lines(&lines, export.signer.verifier(), false);
        assert!(!report.ok);
        start.elapsed()
    };
    let small = timed(5_000);
    let big = timed(20_000);
    eprintln!("5k variants: {small:?}, 20k variants: {big:?}");
    // Linear would be ~4x; quadratic ~16x.
    assert!(big < small * 8, "5k: {small:?}, 20k: {big:?}");
}

// ---------------------------------------------------------------- 8

/// A self-sealed impostor with the id of a genuine event, placed before
/// it: both are found, and only the genuine one is proven.
#[test]
fn an_impostor_with_the_same_id_does_not_block_the_genuine_proof() {
    let mut export = export();
    let prev = Opened::read(export.event(15).as_bytes()).unwrap().prev;
    export
        .lines
        .insert(0, seal_at(&edited(15), STREAM, 15, prev));
    let mut verifier = Verifier::new(vec![export.signer.verifier()]);
    verifier.want("billing-api", "e15");
    verifier.read_lines("x", export.lines);
    let verified = verifier.finish();
    assert_eq!(verified.found.len(), 2, "the impostor and the genuine one");
    let proofs: Vec<_> = verified
        .found
        .iter()
        .map(|found| {
            crate::integrity::proof::Proof::inclusion(&verified.ledgers[&found.stream], found)
        })
        .collect();
    assert!(
        proofs[0].is_ok(),
        "the genuine e15 is in the log, covered, and first: {proofs:?}"
    );
    assert!(proofs[1].is_err(), "the impostor has no proof");
}

/// More impostors than lines are kept, all before the genuine event: the
/// genuine one still comes first, its line read again from the file.
#[test]
fn a_crowd_of_impostors_does_not_hide_the_genuine_event() {
    let mut export = export();
    let original = export.event(15).clone();
    let prev = Opened::read(original.as_bytes()).unwrap().prev;
    for i in 0..(KEPT_LINES as u64 * 2) {
        let body = String::from_utf8(edited(15)).unwrap().replacen(
            "\"amount\":0",
            &format!("\"amount\":{}", 1000 + i),
            1,
        );
        export
            .lines
            .insert(0, seal_at(body.as_bytes(), STREAM, 15, prev));
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("export.ndjson");
    std::fs::write(&path, export.lines.join("\n") + "\n").unwrap();
    let mut verifier = Verifier::new(vec![export.signer.verifier()]);
    verifier.want("billing-api", "e15");
    verifier.read_path(&path);
    let verified = verifier.finish();
    assert_eq!(verified.found.len(), KEPT_LINES + 1);
    let genuine = &verified.found[0];
    assert_eq!(genuine.line, original.as_bytes());
    crate::integrity::proof::Proof::inclusion(&verified.ledgers[STREAM], genuine).unwrap();
}

// ---------------------------------------------------------------- 9

/// Removed checkpoints are reported as `unknown-key` (one junk note with
/// the removed checkpoint's time) instead of `gap`: the wrong problem.
#[test]
fn a_junk_note_does_not_hide_a_gap() {
    let mut export = export();
    let removed = export.checkpoints[1];
    let other = Signer::new(key(), "audit.example/relay".into(), Duration::from_secs(60));
    let junk = export.signed_by(&other, 1);
    export.delete(&[removed]);
    export.lines.push(
        String::from_utf8(
            junk.to_envelope(&other.verifier(), Some(STREAM))
                .to_canonical_json(),
        )
        .unwrap(),
    );
    let report = export.verify();
    assert!(
        report.of(Kind::Gap).count() == 1,
        "deleted checkpoint not reported as gap:\n{}",
        report.to_text()
    );
}

// ---------------------------------------------------------------- defeated

/// Duplicate keys, unicode escapes, whitespace: the slow path reads
/// strictly; a harmless reformat is a duplicate, a duplicate key is not ok.
#[test]
fn reformatting_and_duplicate_keys() {
    // Reformatted (spaces, an escape): same event, a duplicate.
    let mut export = export();
    let line = export.event(5).clone();
    let spaced = line
        .replacen("\"invoice.paid\"", "\"invoice\\u002epaid\"", 1)
        .replacen(",", " , ", 3);
    export.lines.push(spaced);
    let report = export.verify();
    assert!(
        report.ok && report.streams[0].duplicates == 1,
        "{}",
        report.to_text()
    );
    // A duplicate key (forged value first, genuine last, as last-wins readers keep): refused.
    let mut export = self::export();
    let line = export.event(5).clone();
    *export.event(5) = line.replacen("\"amount\":15", "\"amount\":9999,\"amount\":15", 1);
    let report = export.verify();
    assert!(!report.ok, "{}", report.to_text());
    // Inside the seal member itself.
    let mut export = self::export();
    let line = export.event(6).clone();
    *export.event(6) = line.replacen("\"seq\":6,", "\"seq\":6,\"seq\":6,", 1);
    assert!(!export.verify().ok);
}

/// Moving an event to another stream (its seal's stream edited, or the
/// event re-sealed in the other stream) is caught.
#[test]
fn moving_an_event_between_streams() {
    let mut export = export();
    let line = export.event(8).clone();
    *export.event(8) = line.replacen("\"stream\":\"acme\"", "\"stream\":\"beta\"", 1);
    let report = export.verify();
    assert!(!report.ok, "{}", report.to_text());
    let kinds: Vec<_> = report
        .problems
        .iter()
        .map(|p| (p.kind, p.stream.clone(), p.seqs))
        .collect();
    eprintln!("{kinds:?}");
}

/// A replayed old checkpoint is a harmless duplicate; a (relay-signed)
/// later checkpoint of size 0 is reported as a rollback.
#[test]
fn replayed_and_rolled_back_checkpoints() {
    // Replay: exact copy later in the file is a duplicate.
    let mut export = export();
    let old = export.lines[export.checkpoints[0]].clone();
    export.lines.push(old);
    assert!(export.verify().ok);
    // A later size-0 checkpoint: the tree shrank.
    let mut export = self::export();
    export.push_checkpoint(
        0,
        crate::integrity::merkle::root(&[]),
        time(99),
        Some(time(4)),
    );
    let report = export.verify();
    assert_eq!(
        report.of(Kind::ChainBreak).count(),
        1,
        "rollback to 0: {}",
        report.to_text()
    );
}

/// Non-UTF-8, very long lines, huge numbers: unreadable, never ok.
#[test]
fn junk_lines() {
    for junk in [
        b"\xff\xfe{\"id\":1}".to_vec(),
        vec![b'['; 100_000],
        br#"{"integrity":{"hash":"x","prev":"y","seq":99999999999999999999999,"stream":"acme"}}"#
            .to_vec(),
    ] {
        let export = export();
        let mut verifier = Verifier::new(vec![export.signer.verifier()]);
        let lines = export.lines.iter().map(|l| l.as_bytes());
        verifier.read_lines("x", lines.chain([junk.as_slice()]));
        let report = verifier.finish().report;
        assert_eq!(
            report.of(Kind::Unreadable).count(),
            1,
            "{}",
            report.to_text()
        );
    }
    // A sealed event whose seq is beyond u64 in the seal: not ok either.
    let mut export = export();
    let line = export.event(3).clone();
    *export.event(3) = line.replacen("\"seq\":3,", "\"seq\":18446744073709551619,", 1);
    assert!(!export.verify().ok);
}

// ---------------------------------------------------------------- 10

/// A .zst file is read up to the end of its first frame: whatever follows
/// (a second frame — which `zstd -d`/`zstdcat` decode — or garbage) is
/// ignored without a word, so events only other readers see pass.
#[test]
fn every_zstd_frame_is_read() {
    let export = export();
    let dir = tempfile::tempdir().unwrap();
    let genuine = export.lines.join("\n") + "\n";
    let forged = String::from_utf8(content(99)).unwrap() + "\n"; // unsealed: "inserted"
    let mut bytes = ruzstd::encoding::compress_to_vec(
        genuine.as_bytes(),
        ruzstd::encoding::CompressionLevel::Fastest,
    );
    bytes.extend(ruzstd::encoding::compress_to_vec(
        forged.as_bytes(),
        ruzstd::encoding::CompressionLevel::Fastest,
    ));
    let path = dir.path().join("export.ndjson.zst");
    std::fs::write(&path, bytes).unwrap();
    let mut verifier = Verifier::new(vec![export.signer.verifier()]);
    verifier.read_path(&path);
    let report = verifier.finish().report;
    assert!(
        !report.ok,
        "the second frame's forged event went unseen:\n{}",
        report.to_text()
    );
}

/// A file of junk lines (a tiny gzip can hold millions) is counted, not
/// kept line by line: memory stays bounded, and every line still counts.
#[test]
fn junk_lines_are_counted_beyond_the_kept_ones() {
    let export = export();
    let mut verifier = Verifier::new(vec![export.signer.verifier()]);
    let file = verifier.file("junk");
    let junk = MAX_KEPT as u32 + 2_500;
    for line in 1..=junk {
        verifier.line(At { file, line }, b"x");
    }
    let report = verifier.finish().report;
    assert_eq!(report.problems.len(), MAX_KEPT);
    assert_eq!(report.counts[&Kind::Unreadable], u64::from(junk));
    assert!(!report.ok);
}

/// Only regular files are read: a link to a device inside a directory is
/// skipped (reading /dev/zero would never end), a device given by name is
/// refused by name, and a link loop is not followed.
#[test]
fn only_regular_files_are_read() {
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink("/dev/zero", dir.path().join("b.ndjson")).unwrap();
    std::os::unix::fs::symlink(dir.path(), dir.path().join("loop")).unwrap();
    std::fs::write(dir.path().join("a.ndjson"), "").unwrap();
    let files = input::expand(&[dir.path().to_owned()]).unwrap();
    assert_eq!(files, [dir.path().join("a.ndjson")]);
    let errors = input::expand(&["/dev/zero".into()]).unwrap_err();
    assert!(errors[0].contains("not a regular file"), "{errors:?}");
}

/// `pzstd` and seekable-format writers put skippable frames between data
/// frames: stepped over (every data frame still read), a torn one is an
/// unreadable file.
#[test]
fn zstd_skippable_frames_are_stepped_over() {
    let export = export();
    let dir = tempfile::tempdir().unwrap();
    let genuine = export.lines.join("\n") + "\n";
    let (first, second) = genuine.split_at(genuine.find("\n").unwrap() + 1);
    let skippable = |magic: u8, body: &[u8]| {
        let mut frame = vec![magic, 0x2a, 0x4d, 0x18];
        frame.extend((body.len() as u32).to_le_bytes());
        frame.extend(body);
        frame
    };
    let compress = |text: &str| {
        ruzstd::encoding::compress_to_vec(
            text.as_bytes(),
            ruzstd::encoding::CompressionLevel::Fastest,
        )
    };
    let mut bytes = skippable(0x50, b"seek table, or anything");
    bytes.extend(compress(first));
    bytes.extend(skippable(0x5f, &[0; 300]));
    bytes.extend(compress(second));
    let path = dir.path().join("export.zst");
    std::fs::write(&path, &bytes).unwrap();
    let mut verifier = Verifier::new(vec![export.signer.verifier()]);
    verifier.read_path(&path);
    let report = verifier.finish().report;
    assert!(report.ok, "{}", report.to_text());
    assert_eq!(report.lines, export.lines.len() as u64);

    bytes.extend(skippable(0x51, &[0; 50])[..20].to_vec());
    std::fs::write(&path, &bytes).unwrap();
    let mut verifier = Verifier::new(vec![export.signer.verifier()]);
    verifier.read_path(&path);
    let report = verifier.finish().report;
    assert_eq!(report.unread_files.len(), 1, "{}", report.to_text());
    assert!(
        report
            .of(Kind::Unreadable)
            .any(|p| p.detail.contains("skippable"))
    );
}
