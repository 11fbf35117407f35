//! Proofs an auditor can check alone: one event is in a signed tree
//! (inclusion), or a later signed tree only appended to an earlier one
//! (consistency) — without the rest of the log.
//!
//! A proof is one JSON object carrying everything it rests on: the event
//! line exactly as exported, the signed checkpoint note(s), and the RFC
//! 9162 audit path in hex. Checking it needs only the public key:
//!
//! ```json
//! {"kind":"inclusion","event":"{…the event…}","checkpoint":"auditrelay/acme\n40\n…",
//!  "index":16,"size":40,"proof":["5f2b…","c001…"]}
//! {"kind":"consistency","old":"auditrelay/acme\n10\n…","new":"auditrelay/acme\n40\n…",
//!  "proof":["…"]}
//! ```
//!
//! [`Proof::inclusion`] and [`Proof::consistency`] make them from what
//! [`super::verify`] rebuilt of an export; [`Proof::check`] checks one.

use auditrelay_plugin_api::envelope::EnvelopeView;
use serde::{Deserialize, Serialize};

use super::chain::{Opened, parse_hash};
use super::merkle::{self, Hash};
use super::note::VerifierKey;
use super::signed::SignedCheckpoint;
use super::verify::{Found, Ledger};

/// A proof, as `auditrelay prove` prints it and `verify --proof` reads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Proof {
    /// One event is leaf `index` of the tree a checkpoint signs.
    Inclusion {
        /// The event's line, exactly as exported.
        event: String,
        /// The signed checkpoint note.
        checkpoint: String,
        /// The event's leaf: its `seq` − 1.
        index: u64,
        /// The checkpoint's tree size.
        size: u64,
        /// The audit path, leaf to root, in hex.
        proof: Vec<String>,
    },
    /// The tree `new` signs begins with the tree `old` signs.
    Consistency {
        /// The earlier signed checkpoint note.
        old: String,
        /// The later signed checkpoint note.
        new: String,
        /// The consistency proof, in hex.
        proof: Vec<String>,
    },
}

/// What a proof that holds shows, in a sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proven(pub String);

impl Proof {
    /// The inclusion proof of `event` (read by the verifier) in the
    /// newest checkpoint of `ledger` that covers it.
    pub fn inclusion(ledger: &Ledger, event: &Found) -> Result<Proof, String> {
        let index = event
            .seq
            .checked_sub(1)
            .ok_or("the event's seal claims seq 0, which the relay never assigns")?;
        let held = ledger.hashes.get(index as usize).ok_or_else(|| {
            format!(
                "the export does not hold every event of stream {:?} up to seq {}: no tree to prove it in (run `auditrelay verify` on it for what is missing)",
                event.stream, event.seq
            )
        })?;
        let line = String::from_utf8(event.line.clone())
            .map_err(|_| "the event's line is not UTF-8".to_owned())?;
        let opened = Opened::read(line.as_bytes()).ok_or("the event carries no seal")?;
        if opened.hash != *held {
            return Err(format!(
                "the event read is not the one stream {:?}'s chain holds at seq {} (another event with its id: run `auditrelay verify`)",
                event.stream, event.seq
            ));
        }
        let checkpoint = ledger
            .checkpoints
            .iter()
            .filter(|c| c.checkpoint.size > index)
            .max_by_key(|c| (c.checkpoint.size, c.window.time))
            .ok_or_else(|| {
                format!(
                    "no valid checkpoint of stream {:?} covers seq {} yet (the next one the relay signs will)",
                    event.stream, event.seq
                )
            })?;
        let size = checkpoint.checkpoint.size;
        let leaves = leaves(&ledger.hashes, size)?;
        let proof =
            merkle::inclusion_proof(&leaves, index as usize).expect("the index is below the size");
        Ok(Proof::Inclusion {
            event: line,
            checkpoint: checkpoint.note.clone(),
            index,
            size,
            proof: proof.iter().map(hex::encode).collect(),
        })
    }

    /// The consistency proof between the checkpoints of `ledger` of size
    /// `old` and of size `new` (the largest when `None`).
    pub fn consistency(ledger: &Ledger, old: u64, new: Option<u64>) -> Result<Proof, String> {
        let sizes = || {
            let mut sizes: Vec<String> = ledger
                .checkpoints
                .iter()
                .map(|c| c.checkpoint.size.to_string())
                .collect();
            sizes.dedup();
            if sizes.is_empty() {
                "none".to_owned()
            } else {
                sizes.join(", ")
            }
        };
        let find = |size: u64| {
            ledger
                .checkpoints
                .iter()
                .filter(|c| c.checkpoint.size == size)
                .max_by_key(|c| c.window.time)
                .ok_or_else(|| {
                    format!(
                        "no valid checkpoint of size {size} (valid checkpoint sizes: {})",
                        sizes()
                    )
                })
        };
        let first = find(old)?;
        let second = match new {
            Some(size) => find(size)?,
            None => ledger
                .checkpoints
                .iter()
                .max_by_key(|c| (c.checkpoint.size, c.window.time))
                .ok_or("no valid checkpoint")?,
        };
        let (old, new) = (first.checkpoint.size, second.checkpoint.size);
        if old > new {
            return Err(format!(
                "the checkpoint of size {old} is larger than that of size {new}: give the smaller with --from"
            ));
        }
        let proof = if old == new || old == 0 {
            Vec::new()
        } else {
            merkle::consistency_proof(&leaves(&ledger.hashes, new)?, old as usize)
                .expect("0 < old < new ≤ leaves")
        };
        Ok(Proof::Consistency {
            old: first.note.clone(),
            new: second.note.clone(),
            proof: proof.iter().map(hex::encode).collect(),
        })
    }

    /// Checks the proof with `keys` alone; what it shows, or every reason
    /// it does not hold.
    pub fn check(&self, keys: &[VerifierKey]) -> Result<Proven, Vec<String>> {
        match self {
            Proof::Inclusion {
                event,
                checkpoint,
                index,
                size,
                proof,
            } => check_inclusion(keys, event, checkpoint, *index, *size, proof),
            Proof::Consistency { old, new, proof } => check_consistency(keys, old, new, proof),
        }
    }
}

/// The leaf hashes of the first `size` chain hashes.
fn leaves(hashes: &[Hash], size: u64) -> Result<Vec<Hash>, String> {
    let size = usize::try_from(size).map_err(|_| "the tree is too large".to_owned())?;
    let hashes = hashes
        .get(..size)
        .ok_or("the export does not hold every event the checkpoint covers")?;
    Ok(hashes.iter().map(|h| merkle::leaf_hash(h)).collect())
}

fn open(keys: &[VerifierKey], note: &str, what: &str) -> Result<SignedCheckpoint, String> {
    SignedCheckpoint::open(note, keys).map_err(|error| format!("the {what}: {error}"))
}

fn hashes(proof: &[String]) -> Result<Vec<Hash>, String> {
    proof
        .iter()
        .enumerate()
        .map(|(i, text)| {
            parse_hash(text)
                .ok_or_else(|| format!("proof[{i}] is not a hash (64 lower-case hex digits)"))
        })
        .collect()
}

fn check_inclusion(
    keys: &[VerifierKey],
    event: &str,
    checkpoint: &str,
    index: u64,
    size: u64,
    proof: &[String],
) -> Result<Proven, Vec<String>> {
    let mut problems = Vec::new();
    let signed = open(keys, checkpoint, "checkpoint").map_err(|e| problems.push(e));
    let opened = Opened::read(event.as_bytes());
    let path = hashes(proof).map_err(|e| problems.push(e));
    match &opened {
        None => problems.push("the event carries no seal (or is not an audit event)".into()),
        Some(opened) if !opened.holds() => problems.push(format!(
            "event {} was changed after it was sealed: it does not hash to its seal",
            opened.id
        )),
        Some(opened) if index.checked_add(1) != Some(opened.seq) => problems.push(format!(
            "the proof is for leaf {index} but the event's seq is {}",
            opened.seq
        )),
        Some(_) => {}
    }
    let (Ok(signed), Some(opened), Ok(path)) = (signed, opened, path) else {
        return Err(problems);
    };
    if signed.window.stream != *opened.stream {
        problems.push(format!(
            "the event is of stream {:?}, the checkpoint of stream {:?}",
            opened.stream, signed.window.stream
        ));
    }
    if signed.checkpoint.size != size {
        problems.push(format!(
            "the proof says size {size}, the checkpoint signs size {}",
            signed.checkpoint.size
        ));
    }
    if problems.is_empty()
        && !merkle::verify_inclusion(
            &merkle::leaf_hash(&opened.hash),
            index,
            size,
            &path,
            &signed.checkpoint.root,
        )
    {
        problems.push(format!(
            "the audit path does not lead from the event to the root the checkpoint signs: event {} is not proven in the tree of {size}",
            opened.id
        ));
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let source = EnvelopeView::read_json(event.as_bytes())
        .map(|view| view.source.into_owned())
        .unwrap_or_default();
    Ok(Proven(format!(
        "event {source}/{} (stream {:?}, seq {}) is in the tree of {} events signed by {} at {}",
        opened.id,
        signed.window.stream,
        opened.seq,
        size,
        signer(&signed),
        signed.window.time
    )))
}

fn check_consistency(
    keys: &[VerifierKey],
    old: &str,
    new: &str,
    proof: &[String],
) -> Result<Proven, Vec<String>> {
    let mut problems = Vec::new();
    let first = open(keys, old, "old checkpoint").map_err(|e| problems.push(e));
    let second = open(keys, new, "new checkpoint").map_err(|e| problems.push(e));
    let path = hashes(proof).map_err(|e| problems.push(e));
    let (Ok(first), Ok(second), Ok(path)) = (first, second, path) else {
        return Err(problems);
    };
    if first.checkpoint.origin != second.checkpoint.origin {
        problems.push(format!(
            "the checkpoints are of two logs: {:?} and {:?}",
            first.checkpoint.origin, second.checkpoint.origin
        ));
    }
    let (m, n) = (first.checkpoint.size, second.checkpoint.size);
    if m > n {
        problems.push(format!(
            "the old checkpoint (size {m}) is larger than the new one (size {n})"
        ));
    }
    if problems.is_empty()
        && !merkle::verify_consistency(m, n, &first.checkpoint.root, &second.checkpoint.root, &path)
    {
        problems.push(format!(
            "the proof does not show the tree of {n} beginning with the tree of {m}: the log was rewritten, or the proof is wrong"
        ));
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(Proven(format!(
        "stream {:?}: the tree of {n} events signed at {} only appended to the tree of {m} signed at {}",
        second.window.stream, second.window.time, first.window.time
    )))
}

/// The name of the key that signed a checkpoint (first signature line).
fn signer(signed: &SignedCheckpoint) -> &str {
    signed
        .note
        .rsplit("\n\n")
        .next()
        .and_then(|signatures| signatures.strip_prefix("\u{2014} "))
        .and_then(|line| line.split(' ').next())
        .unwrap_or("?")
}

#[cfg(test)]
mod tests;
