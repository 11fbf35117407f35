//! Finding the event a plugin keeps crashing on, as a pure search over a
//! batch's positions: which part to deliver next, how many crashes in a
//! row condemn it, and what a crash of it means. The worker does the
//! calls, the logging and the dead letters ([`Worker::deliver`]).
//!
//! A batch the plugin keeps crashing on (`isolate_after` times) is split in
//! halves, delivered in order, down to the single event that crashes it:
//! one poison event must not stop an instance forever. An event is
//! condemned only on evidence that the plugin works otherwise (another part
//! of the batch went through); without it, the suspect is tried once more
//! after the next part, and if that crashes too the plugin is taken to be
//! broken as a whole and the suspect is retried until it passes, as any
//! batch would be.
//!
//! [`Worker::deliver`]: super::Worker

use std::ops::Range;

/// The next part to deliver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Step {
    /// Positions in the batch.
    pub part: Range<usize>,
    /// Crashes in a row that end the attempt (0: keep trying forever).
    pub confirm: u32,
}

/// What the crash of a part means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Crash {
    /// It is split in halves, each delivered on its own.
    Split,
    /// Is it this event or the plugin? The next part goes first.
    Deferred,
    /// Every part crashes: the plugin is broken as a whole, and this part
    /// is retried until it passes.
    BrokenAsAWhole,
    /// This single event crashes a plugin that works otherwise: set it
    /// aside (or, if that fails, [`PoisonSearch::keep_trying`]).
    Condemned,
}

/// Where the search stands in one batch.
#[derive(Debug)]
pub(super) struct PoisonSearch {
    len: usize,
    isolate_after: u32,
    /// Parts still to deliver; the last is next.
    pending: Vec<Range<usize>>,
    /// Some part went through: the plugin works otherwise.
    evidence: bool,
    /// A suspect has already been put behind the next part once.
    deferred: bool,
    /// The part (by its first position) retried until it passes.
    forever: Option<usize>,
}

impl PoisonSearch {
    /// A search over a batch of `len` events; the whole batch goes first.
    pub fn new(len: usize, isolate_after: u32) -> Self {
        PoisonSearch {
            len,
            isolate_after,
            pending: std::iter::once(0..len).collect(),
            evidence: false,
            deferred: false,
            forever: None,
        }
    }

    /// The next part to deliver; `None` when the batch is handled.
    pub fn next(&mut self) -> Option<Step> {
        let part = self.pending.pop()?;
        // The whole batch and a single suspect must crash `isolate_after`
        // times; a half crashing once is split again.
        let confirm = if self.forever == Some(part.start) {
            0
        } else if part.len() == 1 || part.len() == self.len {
            self.isolate_after
        } else {
            1
        };
        Some(Step { part, confirm })
    }

    /// `part` went through (or was handled otherwise).
    pub fn delivered(&mut self) {
        self.evidence = true;
    }

    /// `part` crashed `confirm` times in a row: what that means, with the
    /// search updated for it.
    pub fn crashed(&mut self, part: Range<usize>) -> Crash {
        if part.len() > 1 {
            let mid = part.start + part.len() / 2;
            self.pending.push(mid..part.end);
            self.pending.push(part.start..mid);
            return Crash::Split;
        }
        if !self.evidence && !self.deferred && !self.pending.is_empty() {
            self.deferred = true;
            let next = self.pending.pop().expect("not empty");
            self.pending.push(part);
            self.pending.push(next);
            return Crash::Deferred;
        }
        if !self.evidence {
            self.keep_trying(part);
            return Crash::BrokenAsAWhole;
        }
        Crash::Condemned
    }

    /// `part` is retried until it passes (it could not be set aside).
    pub fn keep_trying(&mut self, part: Range<usize>) {
        self.forever = Some(part.start);
        self.pending.push(part);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs a search over `len` events against a plugin that crashes on
    /// any part holding a position in `poison` (or on everything, when
    /// `broken`), with dead letters that can be written. What was
    /// delivered, condemned, and how many calls it took.
    fn run(len: usize, poison: &[usize], broken: bool) -> (Vec<usize>, Vec<usize>, usize) {
        let mut search = PoisonSearch::new(len, 3);
        let (mut delivered, mut condemned, mut calls) = (Vec::new(), Vec::new(), 0);
        while let Some(step) = search.next() {
            calls += step.confirm.max(1) as usize;
            assert!(calls < 10_000, "the search does not end");
            let crashes = broken || step.part.clone().any(|i| poison.contains(&i));
            if !crashes {
                delivered.extend(step.part);
                search.delivered();
                continue;
            }
            if step.confirm == 0 {
                // Retried forever: the test ends it here.
                return (delivered, condemned, calls);
            }
            if search.crashed(step.part.clone()) == Crash::Condemned {
                condemned.push(step.part.start);
            }
        }
        (delivered, condemned, calls)
    }

    #[test]
    fn one_poison_event_is_found_and_the_rest_delivered_in_order() {
        for len in [2, 3, 7, 64, 1000] {
            for poison in [0, len / 2, len - 1] {
                let (delivered, condemned, calls) = run(len, &[poison], false);
                assert_eq!(condemned, [poison], "len {len}");
                let rest: Vec<usize> = (0..len).filter(|&i| i != poison).collect();
                assert_eq!(delivered, rest, "len {len}: in order, nothing lost");
                // About two calls per halving, plus the confirmations.
                let depth = usize::BITS - len.leading_zeros();
                assert!(calls <= 4 * depth as usize + 8, "len {len}: {calls} calls");
            }
        }
    }

    #[test]
    fn several_poison_events_are_each_found() {
        let (delivered, condemned, _) = run(100, &[3, 4, 97], false);
        assert_eq!(condemned, [3, 4, 97]);
        assert_eq!(delivered.len(), 97);
        assert!(delivered.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn a_plugin_broken_as_a_whole_condemns_nothing() {
        for len in [1, 2, 9] {
            let (delivered, condemned, _) = run(len, &[], true);
            assert!(delivered.is_empty());
            assert!(condemned.is_empty(), "len {len}: {condemned:?}");
        }
    }

    #[test]
    fn a_lone_event_is_condemned_only_with_evidence() {
        // A batch of one: no other part can show the plugin works.
        let mut search = PoisonSearch::new(1, 3);
        let step = search.next().unwrap();
        assert_eq!(
            step,
            Step {
                part: 0..1,
                confirm: 3
            }
        );
        assert_eq!(search.crashed(0..1), Crash::BrokenAsAWhole);
        assert_eq!(search.next().unwrap().confirm, 0, "retried until it passes");
    }

    #[test]
    fn a_suspect_goes_behind_the_next_part_once() {
        let mut search = PoisonSearch::new(2, 3);
        assert_eq!(search.next().unwrap().part, 0..2);
        assert_eq!(search.crashed(0..2), Crash::Split);
        let first = search.next().unwrap();
        assert_eq!(
            first,
            Step {
                part: 0..1,
                confirm: 3
            }
        );
        assert_eq!(search.crashed(0..1), Crash::Deferred);
        assert_eq!(search.next().unwrap().part, 1..2);
        search.delivered();
        assert_eq!(search.next().unwrap().part, 0..1);
        assert_eq!(search.crashed(0..1), Crash::Condemned);
        assert_eq!(search.next(), None);
    }

    #[test]
    fn an_event_that_cannot_be_set_aside_is_retried_until_it_passes() {
        let mut search = PoisonSearch::new(2, 3);
        search.next();
        search.crashed(0..2);
        search.next();
        search.delivered();
        let suspect = search.next().unwrap();
        assert_eq!(search.crashed(suspect.part.clone()), Crash::Condemned);
        search.keep_trying(suspect.part);
        assert_eq!(
            search.next(),
            Some(Step {
                part: 1..2,
                confirm: 0
            })
        );
    }

    #[test]
    fn an_empty_batch_is_one_part_like_any_other() {
        let mut search = PoisonSearch::new(0, 3);
        assert_eq!(
            search.next(),
            Some(Step {
                part: 0..0,
                confirm: 3
            })
        );
        search.delivered();
        assert_eq!(search.next(), None);
    }
}
