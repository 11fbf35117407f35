//! Step `partial rejections are well formed`: every `PartiallyRejected`
//! any step sees (through `Run::observe`) lists indices inside the batch,
//! ascending, each once, each with a reason.

use crate::event::RejectedEvent;

/// Why a rejection list cannot be right for a batch of `len`, if so.
pub(super) fn rejection_problem(rejected: &[RejectedEvent], len: usize) -> Option<String> {
    let mut previous: Option<u32> = None;
    for rejection in rejected {
        if rejection.index as usize >= len {
            return Some(format!(
                "rejected index {} is outside the batch of {len}",
                rejection.index
            ));
        }
        if let Some(previous) = previous
            && rejection.index <= previous
        {
            return Some(format!(
                "rejected indices are not ascending and unique: {} after {previous} (list: {:?})",
                rejection.index,
                rejected.iter().map(|r| r.index).collect::<Vec<_>>()
            ));
        }
        if rejection.reason.trim().is_empty() {
            return Some(format!(
                "event {} is rejected without a reason; say why, in words an operator can act on",
                rejection.index
            ));
        }
        previous = Some(rejection.index);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejection_lists_are_checked() {
        let r = |index, reason: &str| RejectedEvent {
            index,
            reason: reason.into(),
        };
        assert_eq!(rejection_problem(&[r(0, "x"), r(2, "y")], 3), None);
        assert!(
            rejection_problem(&[r(3, "x")], 3)
                .unwrap()
                .contains("outside")
        );
        assert!(
            rejection_problem(&[r(2, "x"), r(1, "y")], 3)
                .unwrap()
                .contains("ascending")
        );
        assert!(
            rejection_problem(&[r(1, "x"), r(1, "y")], 3)
                .unwrap()
                .contains("unique")
        );
        assert!(
            rejection_problem(&[r(1, " ")], 3)
                .unwrap()
                .contains("reason")
        );
    }
}
