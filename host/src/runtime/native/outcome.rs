//! A native call's status code and sink bytes, read as the outcome every
//! runtime reports. In-process instances and the plugin runner's replies
//! go through the same reading.

use std::time::Duration;

use auditrelay_plugin_api::native::{RetryableOutcome, Status};

use crate::runtime::services::cut;
use crate::runtime::{CallError, Delivery, Fault, FaultKind, RejectedEvent};

/// What a `deliver` call's status and sink bytes mean.
pub fn delivery(status: i32, payload: &[u8]) -> Result<Delivery, CallError> {
    if status == Status::PartiallyRejected as i32 {
        let rejected: Vec<RejectedEvent> = serde_json::from_slice(payload).map_err(|e| {
            unreadable(
                status,
                payload,
                &format!("a JSON list of {{index, reason}} ({e})"),
            )
        })?;
        // Whether the indexes are possible is checked for every kind of
        // plugin in one place (runtime::admit).
        return Ok(Delivery::PartiallyRejected(rejected));
    }
    completion(status, payload).map(|()| Delivery::Accepted)
}

/// What a `flush` call's (or a `deliver` call's, other than partial
/// rejection) status and sink bytes mean.
pub fn completion(status: i32, payload: &[u8]) -> Result<(), CallError> {
    let text = || String::from_utf8_lossy(payload).into_owned();
    match status {
        s if s == Status::Accepted as i32 => Ok(()),
        s if s == Status::Retryable as i32 => {
            let outcome: RetryableOutcome = serde_json::from_slice(payload).map_err(|e| {
                unreadable(
                    status,
                    payload,
                    &format!("JSON {{message, retry_after_ms}} ({e})"),
                )
            })?;
            Err(CallError::Retryable {
                message: outcome.message,
                retry_after: outcome.retry_after_ms.map(Duration::from_millis),
            })
        }
        s if s == Status::Permanent as i32 => Err(CallError::Permanent(text())),
        s if s == Status::Panicked as i32 => {
            Err(CallError::Fault(Fault::new(FaultKind::Panic, text())))
        }
        other => Err(CallError::Fault(Fault::new(
            FaultKind::Other,
            format!(
                "returned status {other}, which ABI version {} does not define (0 to 4)",
                auditrelay_plugin_api::native::ABI_VERSION
            ),
        ))),
    }
}

fn unreadable(status: i32, payload: &[u8], expected: &str) -> CallError {
    CallError::Fault(Fault::new(
        FaultKind::Other,
        format!(
            "returned status {status} with an unreadable payload (expected {expected}): {:?}",
            cut(&String::from_utf8_lossy(payload), 200)
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_reads_as_its_outcome() {
        assert_eq!(delivery(0, b""), Ok(Delivery::Accepted));
        assert_eq!(
            delivery(1, br#"[{"index":2,"reason":"bad"}]"#),
            Ok(Delivery::PartiallyRejected(vec![RejectedEvent {
                index: 2,
                reason: "bad".into()
            }]))
        );
        assert_eq!(
            delivery(2, br#"{"message":"busy","retry_after_ms":1500}"#),
            Err(CallError::Retryable {
                message: "busy".into(),
                retry_after: Some(Duration::from_millis(1500))
            })
        );
        assert_eq!(
            delivery(3, b"bad token"),
            Err(CallError::Permanent("bad token".into()))
        );
        assert!(matches!(
            delivery(4, b"boom"),
            Err(CallError::Fault(Fault { kind: FaultKind::Panic, ref message, .. })) if message == "boom"
        ));
    }

    #[test]
    fn nonsense_is_a_fault_naming_what_was_expected() {
        for (status, payload, expected) in [
            (1, &b"nope"[..], "unreadable payload"),
            (2, b"busy", "retry_after_ms"),
            (9, b"", "status 9"),
        ] {
            match delivery(status, payload) {
                Err(CallError::Fault(fault)) => {
                    assert!(fault.message.contains(expected), "{fault}")
                }
                other => panic!("{status}: {other:?}"),
            }
        }
    }
}
