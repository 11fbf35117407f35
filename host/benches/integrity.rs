//! What tamper evidence costs, each next to its baseline in the same run:
//!
//! 1. **Taking an event in.** Validating, encoding and appending a ~1 KB
//!    envelope to the spool (`durability = "none"`, on tmpfs: the CPU, not
//!    the disk) — plain, with the hash chain, and with the default
//!    redaction rules and the chain: the `integrity.chain` and `[[redact]]`
//!    cost per event, one thread.
//! 2. **Verifying.** `verify` reading an export file (on tmpfs) of sealed
//!    events and their checkpoints, one thread — next to the floor it
//!    cannot beat: reading the same file and one SHA-256 over every line.
//! 3. **Checkpoints.** Signing one stream's checkpoint, and opening one
//!    (what `verify` does per checkpoint), next to sealing one event.
//!
//! ```text
//! cargo bench -p auditrelay --bench integrity
//! cargo bench -p auditrelay --bench integrity -- verify   # one part
//! ```

mod common;

use std::hint::black_box;
use std::time::{Duration, Instant};

use auditrelay::envelope::{AuditEventEnvelope, Limits};
use auditrelay::integrity::chain::{self, Head, StreamKey};
use auditrelay::integrity::note::SigningKey;
use auditrelay::integrity::signed::{Round, SignedCheckpoint, Signer};
use auditrelay::integrity::tree::Tree;
use auditrelay::integrity::verify::{Verifier, input};
use auditrelay::internals::{
    DedupWindow, Durability, Record, Spool, SpoolOptions, StartFrom, WhenFull,
};
use auditrelay::redact::Redaction;
use sha2::{Digest, Sha256};

use common::{median, name_filter, quiet_backtraces, scratch_dir, typical};

const INTAKE_EVENTS: usize = 50_000;
const VERIFY_EVENTS: usize = 200_000;
/// A checkpoint per stream after every this many events (a busy minute).
const CHECKPOINT_EVERY: usize = 10_000;
const ROUNDS: usize = 5;

fn main() {
    quiet_backtraces();
    let filter = name_filter();
    if "intake".contains(&filter) || filter.is_empty() {
        intake();
    }
    if "verify".contains(&filter) || filter.is_empty() {
        verify();
    }
    if "checkpoints".contains(&filter) || filter.is_empty() {
        checkpoints();
    }
}

/// ns per event: validate, encode, (redact), append to a spool (sealing).
fn intake_round(
    events: &[AuditEventEnvelope],
    redaction: Option<&Redaction>,
    chain: Option<StreamKey>,
) -> f64 {
    let scratch = scratch_dir();
    let (spool, _) = Spool::open(SpoolOptions {
        dir: scratch.path().join("spool"),
        durability: Durability::None,
        segment_bytes: 256 * 1024 * 1024,
        max_bytes: u64::MAX,
        when_full: WhenFull::Reject,
        block_timeout: Duration::ZERO,
        max_pending_bytes: usize::MAX,
        files: Default::default(),
        chain,
        dedup: DedupWindow::OFF,
    })
    .unwrap();
    spool.consumer("bench", StartFrom::Now, true);
    let limits = Limits::default();
    let started = Instant::now();
    for event in events {
        let mut event = event.clone();
        let mut json = event.to_validated_json(&limits).unwrap();
        if let Some(r) = redaction
            && r.may_apply(&event.source, &event.event_type, &json)
            && !r.apply(&mut event).is_empty()
        {
            json = event.to_validated_json(&limits).unwrap();
        }
        let record = Record::with_json(&event, &json);
        black_box(spool.append(std::slice::from_ref(&record)).unwrap());
    }
    let ns = started.elapsed().as_nanos() as f64 / events.len() as f64;
    spool.finish();
    ns
}

fn intake() {
    let events: Vec<_> = (0..INTAKE_EVENTS).map(typical).collect();
    let size = events[0].to_canonical_json().len();
    let defaults = Redaction::new(true, &[]).unwrap();
    let ways: [(&str, Option<&Redaction>, Option<StreamKey>); 3] = [
        ("plain (no chain, no rules)", None, None),
        ("hash chain", None, Some(StreamKey::Tenant)),
        (
            "default redaction + chain",
            Some(&defaults),
            Some(StreamKey::Tenant),
        ),
    ];
    let mut rounds = vec![Vec::new(); ways.len()];
    for _ in 0..ROUNDS {
        for (i, (_, redaction, chain)) in ways.iter().enumerate() {
            rounds[i].push(intake_round(&events, *redaction, *chain));
        }
    }
    println!(
        "intake: validate + encode + append, {INTAKE_EVENTS} events of ~{size} bytes, median of {ROUNDS} rounds, one thread"
    );
    println!(
        "{:<32} {:>10} {:>10} {:>8}",
        "way", "ns/event", "added ns", "ratio"
    );
    let base = median(rounds[0].clone());
    for (i, (name, _, _)) in ways.iter().enumerate() {
        let ns = median(rounds[i].clone());
        println!(
            "{name:<32} {ns:>10.0} {:>10.0} {:>7.2}x",
            ns - base,
            ns / base
        );
    }
    println!();
}

/// An export as the file exporter writes it: each stream's sealed events
/// in order, and every stream's checkpoint after each
/// [`CHECKPOINT_EVERY`] events.
fn export(signer: &Signer) -> Vec<Vec<u8>> {
    let streams = ["acme", "globex", "initech", "umbrella"];
    let mut heads = vec![Head::default(); streams.len()];
    let mut trees = vec![Tree::default(); streams.len()];
    let mut lines = Vec::with_capacity(VERIFY_EVENTS + VERIFY_EVENTS / CHECKPOINT_EVERY * 4);
    let mut minute = 0;
    let mut previous = None;
    for i in 0..VERIFY_EVENTS {
        let s = i % streams.len();
        let mut event = typical(i);
        event.tenant = Some(streams[s].into());
        let sealed = chain::seal(&event.to_canonical_json(), streams[s], &mut heads[s]);
        trees[s].push(heads[s].hash);
        lines.push(sealed);
        if (i + 1) % CHECKPOINT_EVERY == 0 {
            minute += 1;
            let at = jiff::Timestamp::from_second(1_796_000_000 + minute * 60).unwrap();
            let round = Round::new(at, streams);
            for (s, tree) in trees.iter().enumerate() {
                let signed = signer.sign(
                    streams[s],
                    tree.size,
                    tree.root(),
                    tree.last,
                    &round,
                    previous,
                );
                let carrier = signed.to_envelope(&signer.verifier(), Some(streams[s]));
                lines.push(carrier.to_canonical_json());
            }
            previous = Some(at);
        }
    }
    lines
}

fn verify() {
    let signer = signer();
    let lines = export(&signer);
    let scratch = scratch_dir();
    let path = scratch.path().join("export.ndjson");
    let mut file = Vec::with_capacity(lines.iter().map(|l| l.len() + 1).sum());
    for line in &lines {
        file.extend_from_slice(line);
        file.push(b'\n');
    }
    std::fs::write(&path, &file).unwrap();
    drop(lines);
    let mut floor = Vec::new();
    let mut checked = Vec::new();
    for _ in 0..ROUNDS {
        let started = Instant::now();
        input::read_lines(&path, |_, line| {
            black_box(Sha256::digest(line));
        })
        .unwrap();
        floor.push(started.elapsed().as_secs_f64());

        let started = Instant::now();
        let mut verifier = Verifier::new(vec![signer.verifier()]);
        verifier.read_path(&path);
        let verified = verifier.finish();
        checked.push(started.elapsed().as_secs_f64());
        assert!(verified.report.ok, "{}", verified.report.to_text());
    }
    let (floor, checked) = (median(floor), median(checked));
    let sha_ni = if cfg!(target_arch = "x86_64") && std::arch::is_x86_feature_detected!("sha") {
        "SHA-NI"
    } else {
        "no SHA extensions"
    };
    let lines = VERIFY_EVENTS + VERIFY_EVENTS / CHECKPOINT_EVERY * 4;
    println!(
        "verify: a {} MB file (tmpfs) of {VERIFY_EVENTS} sealed events of ~{} bytes in 4 streams + {} checkpoints, median of {ROUNDS} rounds, one thread ({sha_ni})",
        file.len() / 1_000_000,
        file.len() / lines,
        lines - VERIFY_EVENTS
    );
    println!(
        "{:<36} {:>12} {:>8} {:>8}",
        "way", "events/s", "MB/s", "ratio"
    );
    for (name, seconds) in [
        ("read + SHA-256 of each line (floor)", floor),
        ("auditrelay verify", checked),
    ] {
        println!(
            "{name:<36} {:>12.0} {:>8.0} {:>7.2}x",
            VERIFY_EVENTS as f64 / seconds,
            file.len() as f64 / seconds / 1e6,
            seconds / floor
        );
    }
    println!();
}

fn signer() -> Signer {
    Signer::new(
        SigningKey::generate("audit.example/relay").unwrap(),
        "audit.example/relay".into(),
        Duration::from_secs(60),
    )
}

fn checkpoints() {
    const N: usize = 5_000;
    let signer = signer();
    let keys = [signer.verifier()];
    let content = typical(0).to_canonical_json();
    let mut tree = Tree::default();
    for i in 0..1_000_000u32 {
        tree.push(Sha256::digest(i.to_be_bytes()).into());
    }
    let at = jiff::Timestamp::from_second(1_796_000_000).unwrap();
    let round = Round::new(at, ["acme"]);
    let (mut seal, mut sign, mut open, mut root) = (vec![], vec![], vec![], vec![]);
    let mut note = String::new();
    for _ in 0..ROUNDS {
        let started = Instant::now();
        let mut head = Head::default();
        for _ in 0..N {
            black_box(chain::seal(&content, "acme", &mut head));
        }
        seal.push(started.elapsed().as_nanos() as f64 / N as f64);

        let started = Instant::now();
        for _ in 0..N {
            black_box(tree.root());
        }
        root.push(started.elapsed().as_nanos() as f64 / N as f64);

        let started = Instant::now();
        for _ in 0..N {
            note = signer
                .sign("acme", tree.size, tree.root(), tree.last, &round, None)
                .note;
        }
        sign.push(started.elapsed().as_nanos() as f64 / N as f64);

        let started = Instant::now();
        for _ in 0..N {
            black_box(SignedCheckpoint::open(&note, &keys).unwrap());
        }
        open.push(started.elapsed().as_nanos() as f64 / N as f64);
    }
    let seal = median(seal);
    println!(
        "checkpoints: a stream of {} events, {N} each, median of {ROUNDS} rounds, one thread",
        tree.size
    );
    println!("{:<36} {:>10} {:>12}", "way", "µs", "× one seal");
    for (name, ns) in [
        ("seal one ~1 KB event (baseline)", seal),
        ("tree root (from its frontier)", median(root)),
        ("sign a checkpoint (root + Ed25519)", median(sign)),
        ("open a checkpoint (verify)", median(open)),
    ] {
        println!("{name:<36} {:>10.2} {:>11.1}x", ns / 1000.0, ns / seal);
    }
}
