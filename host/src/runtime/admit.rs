//! A plugin's answers, checked before the host acts on them.
//!
//! Whatever a plugin returns — from a sandbox, a runner process or the
//! relay's own process — passes here before the dispatcher sees it: every
//! message and reason is masked and capped ([`PluginServices::admit`]),
//! and an answer that cannot be right (rejected indexes outside the batch
//! or given twice, more rejections than events) is a plugin fault,
//! checked in work bounded by the batch size and reported in one line, so
//! a plugin cannot make the host loop over millions of entries or write
//! a warning for each.

use super::services::PluginServices;
use super::{CallError, Delivery, Fault, FaultKind, RejectedEvent};

impl PluginServices {
    /// The answer to a `deliver` of `count` events, as the host may act on
    /// it.
    pub fn admit_delivery(
        &self,
        count: usize,
        answer: Result<Delivery, CallError>,
    ) -> Result<Delivery, CallError> {
        match answer {
            Ok(Delivery::Accepted) => Ok(Delivery::Accepted),
            Ok(Delivery::PartiallyRejected(rejected)) => {
                check_rejections(count, &rejected).map_err(CallError::Fault)?;
                Ok(Delivery::PartiallyRejected(
                    rejected
                        .into_iter()
                        .map(|r| RejectedEvent {
                            index: r.index,
                            reason: self.admit(&r.reason),
                        })
                        .collect(),
                ))
            }
            Err(error) => Err(self.admit_error(error)),
        }
    }

    /// A failed call, with the plugin's words masked and capped.
    pub fn admit_error(&self, error: CallError) -> CallError {
        match error {
            CallError::Retryable {
                message,
                retry_after,
            } => CallError::Retryable {
                message: self.admit(&message),
                retry_after,
            },
            CallError::Permanent(reason) => CallError::Permanent(self.admit(&reason)),
            CallError::Fault(fault) => CallError::Fault(self.admit_fault(fault)),
        }
    }

    /// A fault, with what the plugin printed masked and capped.
    pub fn admit_fault(&self, fault: Fault) -> Fault {
        Fault {
            kind: fault.kind,
            message: self.admit(&fault.message),
            backtrace: fault.backtrace.map(|b| self.admit(&b)),
        }
    }
}

/// Whether `rejected` can be the answer for a batch of `count` events:
/// each index inside it, none twice. One pass, at most `count` steps.
fn check_rejections(count: usize, rejected: &[RejectedEvent]) -> Result<(), Fault> {
    let wrong = |problem: String| {
        Err(Fault::new(
            FaultKind::Other,
            format!("answered deliver with an impossible rejection list: {problem}"),
        ))
    };
    if rejected.len() > count {
        return wrong(format!(
            "{} rejected events for a batch of {count}",
            rejected.len()
        ));
    }
    let mut seen = vec![false; count];
    for r in rejected {
        match seen.get_mut(r.index as usize) {
            Some(flag) if !*flag => *flag = true,
            Some(_) => return wrong(format!("event {} rejected twice", r.index)),
            None => {
                return wrong(format!("index {} in a batch of {count} events", r.index));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::secret::Secret;

    fn services() -> PluginServices {
        PluginServices::new(
            "p",
            BTreeMap::from([("token".to_owned(), Secret::new("hunter2-hunter2"))]),
            None,
        )
    }

    fn rejected(indexes: impl IntoIterator<Item = u32>) -> Result<Delivery, CallError> {
        Ok(Delivery::PartiallyRejected(
            indexes
                .into_iter()
                .map(|index| RejectedEvent {
                    index,
                    reason: format!("bad hunter2-hunter2 {}", "x".repeat(10_000)),
                })
                .collect(),
        ))
    }

    fn fault_message(answer: Result<Delivery, CallError>) -> String {
        match answer {
            Err(CallError::Fault(fault)) => fault.message,
            other => panic!("expected a fault, got {other:?}"),
        }
    }

    #[test]
    fn impossible_rejections_are_one_fault_found_in_bounded_work() {
        let s = services();
        let many = fault_message(s.admit_delivery(3, rejected(0..2_000_000)));
        assert!(
            many.contains("2000000 rejected events for a batch of 3"),
            "{many}"
        );
        let outside = fault_message(s.admit_delivery(3, rejected([0, 7])));
        assert!(outside.contains("index 7 in a batch of 3"), "{outside}");
        let twice = fault_message(s.admit_delivery(3, rejected([1, 1])));
        assert!(twice.contains("event 1 rejected twice"), "{twice}");
    }

    #[test]
    fn reasons_and_messages_are_masked_and_capped() {
        let s = services();
        let Ok(Delivery::PartiallyRejected(kept)) = s.admit_delivery(3, rejected([2])) else {
            panic!("a valid rejection passes")
        };
        assert!(
            kept[0].reason.starts_with("bad *** xxx"),
            "{}",
            kept[0].reason
        );
        assert!(kept[0].reason.len() < 4200);
        let error = s.admit_error(CallError::Permanent("token hunter2-hunter2".into()));
        assert_eq!(error, CallError::Permanent("token ***".into()));
    }
}
