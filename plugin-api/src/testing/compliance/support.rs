//! Small helpers the steps share: sample events, JSON merge patches,
//! outcomes and problems in words, panic text, a temporary directory.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::Value;

use super::steps::StepResult;
use crate::event::{DeliverError, Delivery, EventBuf};
use crate::testing::sample_envelope;

/// `n` fresh sample events numbered from `range.start`.
pub(super) fn events(range: std::ops::Range<usize>) -> Vec<EventBuf> {
    range
        .map(|i| EventBuf::from_envelope(&sample_envelope(i)))
        .collect()
}

/// Sample events whose envelopes add up to more than `bytes`.
pub(super) fn events_of_bytes(bytes: usize) -> Vec<EventBuf> {
    let probe = events(0..100);
    let average = probe.iter().map(|e| e.envelope.len()).sum::<usize>() / probe.len();
    let mut batch = probe;
    let mut total: usize = batch.iter().map(|e| e.envelope.len()).sum();
    let want = bytes / average.max(1) + 50;
    if want > batch.len() {
        batch.extend(events(batch.len()..want));
        total = batch.iter().map(|e| e.envelope.len()).sum();
    }
    while total <= bytes {
        let more = events(batch.len()..batch.len() + 100);
        total += more.iter().map(|e| e.envelope.len()).sum::<usize>();
        batch.extend(more);
    }
    batch
}

/// Applies a JSON merge patch (RFC 7396) to `target`.
pub(super) fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(serde_json::Map::new());
    }
    let map = target.as_object_mut().expect("made an object above");
    for (key, value) in patch {
        if value.is_null() {
            map.remove(key);
        } else {
            merge_patch(map.entry(key.clone()).or_insert(Value::Null), value);
        }
    }
}

/// What a delivery returned, in a few words.
pub(super) fn describe(outcome: &Result<Delivery, DeliverError>) -> String {
    match outcome {
        Ok(Delivery::Accepted) => "Accepted".to_owned(),
        Ok(Delivery::PartiallyRejected(r)) => format!("PartiallyRejected ({} events)", r.len()),
        Err(DeliverError::Retryable { message, .. }) => format!("Retryable ({message})"),
        Err(DeliverError::Permanent(message)) => format!("Permanent ({message})"),
    }
}

pub(super) fn problems_to_result(problems: Vec<String>) -> StepResult {
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n   "))
    }
}

pub(super) fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = panic.downcast_ref::<String>() {
        text.clone()
    } else if let Some(text) = panic.downcast_ref::<&str>() {
        (*text).to_owned()
    } else {
        "(a panic without a message)".to_owned()
    }
}

/// A directory removed when dropped.
pub(super) struct TempDir(pub(super) PathBuf);

impl TempDir {
    pub(super) fn new(label: &str) -> std::io::Result<TempDir> {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let label: String = label
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        loop {
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let path = std::env::temp_dir().join(format!(
                "auditrelay-compliance-{label}-{}-{n}",
                std::process::id()
            ));
            match std::fs::create_dir(&path) {
                Ok(()) => return Ok(TempDir(path)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_patch_sets_replaces_and_removes() {
        let mut config = serde_json::json!({"a": 1, "b": {"c": 2, "d": 3}});
        merge_patch(
            &mut config,
            &serde_json::json!({"a": null, "b": {"c": 5}, "e": true}),
        );
        assert_eq!(
            config,
            serde_json::json!({"b": {"c": 5, "d": 3}, "e": true})
        );
    }
}
