//! The sequence filter: propagation never takes an older availability of a SKU after a
//! newer one (issue 13 §4). With several instances a SKU's changes can reach the channel's
//! leader from two writers around an ownership move (the previous owner's late change
//! forwarded after the new owner's), so every change carries the SKU's ledger `seq` and a
//! change whose `seq` is below the newest seen for its SKU is dropped.
//!
//! Invariant: only tracked SKUs (listed by some channel, or components of a bundle) are
//! remembered, so the memory is bounded by the listings and the bills of materials. A
//! change with the same `seq` as the newest (a re-publish after a rules change, a queue
//! rebuild) passes.

use std::collections::HashMap;

/// The newest ledger `seq` seen per tracked SKU.
#[derive(Debug, Default)]
pub(crate) struct SeqFilter {
    newest: HashMap<String, u64>,
}

impl SeqFilter {
    /// True when a change of `sku` at `seq` may be taken (and then remembered when
    /// `tracked`); false when a newer change of the SKU was already taken.
    pub fn admit(&mut self, sku: &str, seq: u64, tracked: bool) -> bool {
        match self.newest.get_mut(sku) {
            Some(newest) if seq < *newest => false,
            Some(newest) => {
                *newest = seq;
                true
            }
            None => {
                if tracked {
                    self.newest.insert(sku.to_owned(), seq);
                }
                true
            }
        }
    }

    /// SKUs remembered.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.newest.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn an_older_change_is_dropped_and_an_equal_or_newer_one_taken() {
        let mut filter = SeqFilter::default();
        assert!(filter.admit("A", 5, true));
        assert!(
            !filter.admit("A", 4, true),
            "the previous owner's late change"
        );
        assert!(filter.admit("A", 5, true), "a re-publish of the same state");
        assert!(filter.admit("A", 9, true));
        assert!(!filter.admit("A", 8, true));
        // Untracked SKUs (listed nowhere) pass and are not remembered.
        assert!(filter.admit("B", 3, false));
        assert!(filter.admit("B", 1, false));
        assert_eq!(filter.len(), 1);
    }

    proptest! {
        /// Whatever order the changes of several SKUs arrive in, the sequence of taken
        /// changes of each SKU never goes back, and the newest of each is always taken.
        #[test]
        fn taken_changes_never_go_back(
            changes in proptest::collection::vec((0usize..4, 0u64..50), 0..200)
        ) {
            let mut filter = SeqFilter::default();
            let mut last: HashMap<usize, u64> = HashMap::new();
            let mut newest: HashMap<usize, u64> = HashMap::new();
            let mut newest_taken: HashMap<usize, bool> = HashMap::new();
            for (sku, seq) in &changes {
                let taken = filter.admit(&format!("S{sku}"), *seq, true);
                if taken {
                    prop_assert!(last.get(sku).is_none_or(|previous| previous <= seq));
                    last.insert(*sku, *seq);
                }
                let best = newest.entry(*sku).or_insert(0);
                if *seq >= *best {
                    *best = *seq;
                    newest_taken.insert(*sku, taken);
                }
            }
            prop_assert!(newest_taken.values().all(|taken| *taken));
            prop_assert!(filter.len() <= 4);
        }
    }
}
