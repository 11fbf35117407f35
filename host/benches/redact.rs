//! What redaction adds to taking an event in: the intake's own work
//! (validate, encode canonical JSON) next to the same with the built-in
//! rules, for a ~1 KB envelope with nothing to redact (the quick look
//! only), one with a secret key and a card number in it (the walk, the
//! masks, a second encoding), and with a `paths` rule that walks every
//! event (hashing `actor.email`). One thread, in one run; ratios to the
//! plain intake. First, the quick look alone over canonical JSON, with
//! how many clean events it would send to the walk anyway.
//!
//! ```text
//! cargo bench -p auditrelay --bench redact
//! ```

mod common;

use std::hint::black_box;
use std::time::Instant;

use auditrelay::envelope::{AuditEventEnvelope, Limits};
use auditrelay::redact::{RedactAction, RedactRule, Redaction};

use common::{median, quiet_backtraces, typical};

const EVENTS: usize = 20_000;
const ROUNDS: usize = 7;

fn with_secrets(i: usize) -> AuditEventEnvelope {
    let mut event = typical(i);
    event.payload["request"]["body"]["password"] = "hunter2-Pa55".into();
    event.payload["request"]["body"]["comment"] = "card 4111 1111 1111 1111 on file".into();
    event
}

/// ns per event of what the intake does with `redaction` (none: nothing).
fn intake(events: &[AuditEventEnvelope], redaction: Option<&Redaction>) -> f64 {
    let limits = Limits::default();
    let started = Instant::now();
    for event in events {
        let mut event = event.clone();
        let json = event.to_validated_json(&limits).unwrap();
        let json = match redaction {
            Some(r) if r.may_apply(&event.source, &event.event_type, &json) => {
                if r.apply(&mut event).is_empty() {
                    json
                } else {
                    event.to_validated_json(&limits).unwrap()
                }
            }
            _ => json,
        };
        black_box(json);
    }
    started.elapsed().as_nanos() as f64 / events.len() as f64
}

fn main() {
    quiet_backtraces();
    let clean: Vec<_> = (0..EVENTS).map(typical).collect();
    let dirty: Vec<_> = (0..EVENTS).map(with_secrets).collect();
    let size = clean[0].to_canonical_json().len();
    let defaults = Redaction::new(true, &[]).unwrap();
    let hashing = Redaction::new(
        true,
        &[RedactRule {
            paths: vec!["actor.email".into()],
            action: RedactAction::Hash,
            hash_key: Some(serde_json::from_str("\"0123456789abcdef0123\"").unwrap()),
            hash_key_id: Some("k1".into()),
            ..RedactRule::named("keys")
        }],
    )
    .unwrap();
    let keys_only = Redaction::new(
        false,
        &[RedactRule {
            keys: auditrelay::redact::DEFAULT_KEYS
                .iter()
                .map(|k| (*k).to_owned())
                .collect(),
            ..RedactRule::named("patterns")
        }],
    )
    .unwrap();
    let patterns_only = Redaction::new(
        false,
        &[RedactRule {
            patterns: [
                "bearer_token",
                "jwt",
                "aws_access_key_id",
                "aws_secret_key",
                "private_key",
                "card_number",
                "iban",
            ]
            .map(str::to_owned)
            .to_vec(),
            ..RedactRule::named("pseudonymize")
        }],
    )
    .unwrap();
    let ways: [(&str, &[AuditEventEnvelope], Option<&Redaction>); 7] = [
        ("plain intake (no rules)", &clean, None),
        ("defaults, nothing to redact", &clean, Some(&defaults)),
        ("  of which key names", &clean, Some(&keys_only)),
        ("  of which value patterns", &clean, Some(&patterns_only)),
        ("defaults, key + card number", &dirty, Some(&defaults)),
        ("plain intake, secrets event", &dirty, None),
        ("defaults + hash actor.email", &clean, Some(&hashing)),
    ];
    for (name, r) in [
        ("keys", &keys_only),
        ("patterns", &patterns_only),
        ("defaults", &defaults),
    ] {
        let jsons: Vec<Vec<u8>> = clean.iter().map(|e| e.to_canonical_json()).collect();
        let started = Instant::now();
        let mut hits = 0;
        for json in &jsons {
            hits += usize::from(r.may_apply("billing-api", "x", json));
        }
        println!(
            "the quick look alone ({name}): {:.0} ns/event, {hits} of {} would be walked",
            started.elapsed().as_nanos() as f64 / jsons.len() as f64,
            jsons.len()
        );
    }
    let mut rounds = vec![Vec::new(); ways.len()];
    for _ in 0..ROUNDS {
        for (i, (_, events, redaction)) in ways.iter().enumerate() {
            rounds[i].push(intake(events, *redaction));
        }
    }
    println!("{EVENTS} events of ~{size} bytes, median of {ROUNDS} rounds, one thread");
    println!(
        "{:<32} {:>10} {:>10} {:>8}",
        "way", "ns/event", "added ns", "ratio"
    );
    let base = |i: usize| median(rounds[i].clone());
    for (i, (name, _, _)) in ways.iter().enumerate() {
        let baseline = if i == 4 { base(5) } else { base(0) };
        let ns = base(i);
        println!(
            "{name:<32} {ns:>10.0} {:>10.0} {:>7.2}x",
            ns - baseline,
            ns / baseline
        );
    }
}
