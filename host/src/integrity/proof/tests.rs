//! Proofs made from random logs sealed and signed by the relay's own code
//! must check with the public key alone, and any change to a proof, its
//! event or its checkpoints must make it fail with a reason.

use std::time::Duration;

use auditrelay_plugin_api::envelope::{Actor, AuditEventEnvelope, Outcome};
use jiff::Timestamp;
use proptest::prelude::*;

use super::*;
use crate::integrity::chain::{self, Head};
use crate::integrity::note::SigningKey;
use crate::integrity::signed::{Round, Signer};
use crate::integrity::tree::Tree;
use crate::integrity::verify::Verifier;

/// A log of `events` events of stream `stream`, with a checkpoint after
/// each size in `checkpoints`: its lines, as a file exporter writes them.
fn log(signer: &Signer, stream: &str, events: u64, checkpoints: &[u64]) -> Vec<String> {
    log_by(signer, "u-7", stream, events, checkpoints)
}

/// [`log`], with the events done by `actor`.
fn log_by(
    signer: &Signer,
    actor: &str,
    stream: &str,
    events: u64,
    checkpoints: &[u64],
) -> Vec<String> {
    let mut head = Head::default();
    let mut tree = Tree::default();
    let mut lines = Vec::new();
    let mut previous = None;
    for seq in 1..=events {
        let event = AuditEventEnvelope::builder("orders", "order.placed")
            .id(format!("{stream}-{seq}"))
            .tenant(stream)
            .actor(Actor::user(actor))
            .outcome(Outcome::Success)
            .build()
            .unwrap();
        let sealed = chain::seal(&event.to_canonical_json(), stream, &mut head);
        tree.push(head.hash);
        lines.push(String::from_utf8(sealed).unwrap());
        if checkpoints.contains(&seq) {
            let at = Timestamp::from_second(1_796_000_000 + seq as i64 * 60).unwrap();
            let signed = signer.sign(
                stream,
                tree.size,
                tree.root(),
                tree.last,
                &Round::new(at, [stream]),
                previous,
            );
            previous = Some(at);
            let carrier = signed.to_envelope(&signer.verifier(), Some(stream));
            lines.push(String::from_utf8(carrier.to_canonical_json()).unwrap());
        }
    }
    lines
}

fn signer() -> Signer {
    Signer::new(
        SigningKey::generate("audit.example/relay").unwrap(),
        "audit.example/relay".into(),
        Duration::from_secs(60),
    )
}

/// Verifies `lines`, keeping event `id` of stream `stream` if asked.
fn verify(
    signer: &Signer,
    lines: &[String],
    want: Option<&str>,
) -> crate::integrity::verify::Verified {
    let mut verifier = Verifier::new(vec![signer.verifier()]);
    if let Some(id) = want {
        verifier.want("orders", id);
    }
    verifier.read_lines("log", lines);
    verifier.finish()
}

fn inclusion(signer: &Signer, lines: &[String], id: &str) -> Result<Proof, String> {
    let verified = verify(signer, lines, Some(id));
    assert!(verified.report.ok, "{}", verified.report.to_text());
    let found = verified
        .found
        .into_iter()
        .next()
        .expect("the event is in the log");
    Proof::inclusion(&verified.ledgers[&found.stream], &found)
}

fn proof_hashes(proof: &mut Proof) -> &mut Vec<String> {
    match proof {
        Proof::Inclusion { proof, .. } | Proof::Consistency { proof, .. } => proof,
    }
}

fn failure(proof: &Proof, keys: &[VerifierKey]) -> String {
    proof
        .check(keys)
        .expect_err("the proof must fail")
        .join("; ")
}

#[test]
fn an_inclusion_proof_checks_alone_and_names_the_event() {
    let signer = signer();
    let lines = log(&signer, "acme", 23, &[5, 23]);
    let proof = inclusion(&signer, &lines, "acme-17").unwrap();
    let Proof::Inclusion { index, size, .. } = &proof else {
        panic!("{proof:?}")
    };
    // The newest checkpoint covering seq 17 is the one of size 23.
    assert_eq!((*index, *size), (16, 23));
    // Through JSON, as a file handed to an auditor.
    let text = serde_json::to_string(&proof).unwrap();
    assert!(
        text.starts_with(r#"{"kind":"inclusion","event":"#),
        "{text}"
    );
    let read: Proof = serde_json::from_str(&text).unwrap();
    let proven = read.check(&[signer.verifier()]).unwrap();
    assert_eq!(
        proven.0,
        "event orders/acme-17 (stream \"acme\", seq 17) is in the tree of 23 events signed by audit.example/relay at 2026-11-30T01:16:20Z"
    );
}

#[test]
fn an_event_no_checkpoint_covers_yet_has_no_proof() {
    let signer = signer();
    let lines = log(&signer, "acme", 12, &[10]);
    let error = inclusion(&signer, &lines, "acme-11").unwrap_err();
    assert!(
        error.contains("no valid checkpoint of stream \"acme\" covers seq 11"),
        "{error}"
    );
}

#[test]
fn a_changed_inclusion_proof_fails_with_its_reason() {
    let signer = signer();
    let keys = [signer.verifier()];
    let lines = log(&signer, "acme", 40, &[40]);
    let good = inclusion(&signer, &lines, "acme-9").unwrap();

    // A hash of the path changed.
    let mut bad = good.clone();
    let first = &mut proof_hashes(&mut bad)[0];
    *first = format!("{:0>64}", "1");
    assert!(failure(&bad, &keys).contains("does not lead from the event to the root"));

    // A path hash dropped, and one that is not hex.
    let mut bad = good.clone();
    proof_hashes(&mut bad).pop();
    assert!(failure(&bad, &keys).contains("does not lead"));
    let mut bad = good.clone();
    proof_hashes(&mut bad)[1] = "zz".into();
    assert!(failure(&bad, &keys).contains("proof[1] is not a hash"));

    // The event edited (its seal no longer holds), and the claimed leaf moved.
    let Proof::Inclusion {
        event,
        checkpoint,
        index,
        size,
        proof,
    } = good.clone()
    else {
        unreachable!()
    };
    let edited = Proof::Inclusion {
        event: event.replace("u-7", "u-8"),
        checkpoint: checkpoint.clone(),
        index,
        size,
        proof: proof.clone(),
    };
    assert!(failure(&edited, &keys).contains("was changed after it was sealed"));
    let moved = Proof::Inclusion {
        event: event.clone(),
        checkpoint: checkpoint.clone(),
        index: index + 1,
        size,
        proof: proof.clone(),
    };
    assert!(failure(&moved, &keys).contains("the event's seq is 9"));
    let resized = Proof::Inclusion {
        event: event.clone(),
        checkpoint: checkpoint.clone(),
        index,
        size: size + 1,
        proof: proof.clone(),
    };
    assert!(failure(&resized, &keys).contains("the checkpoint signs size 40"));

    // The checkpoint's size changed (its signature breaks), or signed by
    // a key the auditor was not given.
    let forged = Proof::Inclusion {
        event: event.clone(),
        checkpoint: checkpoint.replacen("\n40\n", "\n41\n", 1),
        index,
        size,
        proof: proof.clone(),
    };
    assert!(failure(&forged, &keys).contains("does not verify"));
    let other = signer_with_other_key();
    assert!(failure(&good, &[other.verifier()]).contains("no signature by a known key"));

    // An event of another stream, sealed by the relay, with this proof.
    let elsewhere = log(&signer, "globex", 9, &[]);
    let foreign = Proof::Inclusion {
        event: elsewhere[8].clone(),
        checkpoint,
        index,
        size,
        proof,
    };
    let reason = failure(&foreign, &keys);
    assert!(
        reason.contains("of stream \"globex\", the checkpoint of stream \"acme\""),
        "{reason}"
    );
}

fn signer_with_other_key() -> Signer {
    Signer::new(
        SigningKey::generate("audit.example/relay").unwrap(),
        "audit.example/relay".into(),
        Duration::from_secs(60),
    )
}

#[test]
fn a_consistency_proof_shows_the_log_only_grew() {
    let signer = signer();
    let keys = [signer.verifier()];
    let lines = log(&signer, "acme", 50, &[7, 32, 50]);
    let verified = verify(&signer, &lines, None);
    let ledger = &verified.ledgers["acme"];
    let proof = Proof::consistency(ledger, 7, None).unwrap();
    assert_eq!(
        proof.check(&keys).unwrap().0,
        "stream \"acme\": the tree of 50 events signed at 2026-11-30T01:43:20Z only appended to the tree of 7 signed at 2026-11-30T01:00:20Z"
    );
    let between = Proof::consistency(ledger, 7, Some(32)).unwrap();
    between.check(&keys).unwrap();

    // Old and new swapped, a path hash changed, a size no checkpoint has.
    let Proof::Consistency {
        old,
        new,
        proof: path,
    } = between.clone()
    else {
        unreachable!()
    };
    let swapped = Proof::Consistency {
        old: new.clone(),
        new: old.clone(),
        proof: path.clone(),
    };
    assert!(failure(&swapped, &keys).contains("larger than the new one"));
    let mut bad = between.clone();
    proof_hashes(&mut bad)[0] = hex::encode([7u8; 32]);
    assert!(
        failure(&bad, &keys).contains("does not show the tree of 32 beginning with the tree of 7")
    );
    let error = Proof::consistency(ledger, 8, None).unwrap_err();
    assert!(
        error.contains("valid checkpoint sizes: 7, 32, 50"),
        "{error}"
    );

    // Two checkpoints of a rewritten log: the relay's key signed both, but
    // the second tree does not begin with the first.
    let rewritten = log_by(&signer, "u-9", "acme", 40, &[40]);
    let rewritten = verify(&signer, &rewritten, None);
    let rewritten_new = rewritten.ledgers["acme"].checkpoints[0].note.clone();
    let forked = Proof::Consistency {
        old: old.clone(),
        new: rewritten_new,
        proof: path,
    };
    assert!(failure(&forked, &keys).contains("does not show the tree"));
}

#[test]
fn proof_files_that_are_not_proofs_are_refused_by_serde() {
    for text in [
        r#"{"kind":"inclusion"}"#,
        r#"{"kind":"exclusion","proof":[]}"#,
        r#"{"kind":"consistency","old":"a","new":"b","proof":[],"extra":1}"#,
    ] {
        assert!(serde_json::from_str::<Proof>(text).is_err(), "{text}");
    }
    let junk = Proof::Consistency {
        old: "not a note".into(),
        new: "nor this".into(),
        proof: vec![],
    };
    let reasons = junk.check(&[signer().verifier()]).unwrap_err();
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert!(
        reasons[0].starts_with("the old checkpoint: not a signed note"),
        "{reasons:?}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// For random trees (random sizes, random checkpoint points), every
    /// inclusion proof and every consistency proof the relay's ledger
    /// makes checks; a one-bit change to any proof hash fails it.
    #[test]
    fn random_trees_prove_every_event_and_every_pair(
        events in 1u64..130,
        cuts in proptest::collection::vec(1u64..130, 1..5),
        flip in any::<(usize, u8)>(),
    ) {
        let signer = signer();
        let keys = [signer.verifier()];
        let mut cuts: Vec<u64> = cuts.into_iter().map(|c| c.min(events)).collect();
        cuts.push(events);
        cuts.sort_unstable();
        cuts.dedup();
        let lines = log(&signer, "acme", events, &cuts);
        let verified = verify(&signer, &lines, None);
        prop_assert!(verified.report.ok, "{}", verified.report.to_text());
        let ledger = &verified.ledgers["acme"];
        for seq in 1..=events {
            let found = Found {
                stream: "acme".into(),
                seq,
                line: lines.iter().find(|l| l.contains(&format!("\"id\":\"acme-{seq}\""))).unwrap().clone().into_bytes(),
            };
            let mut proof = Proof::inclusion(ledger, &found).unwrap();
            prop_assert!(proof.check(&keys).is_ok());
            let path = proof_hashes(&mut proof);
            if !path.is_empty() {
                let i = flip.0 % path.len();
                let mut bytes = hex::decode(&path[i]).unwrap();
                bytes[flip.1 as usize % 32] ^= 1;
                path[i] = hex::encode(bytes);
                prop_assert!(proof.check(&keys).is_err());
            }
        }
        for (i, &old) in cuts.iter().enumerate() {
            for &new in &cuts[i..] {
                let proof = Proof::consistency(ledger, old, Some(new)).unwrap();
                prop_assert!(proof.check(&keys).is_ok(), "{old} → {new}");
            }
        }
    }
}
