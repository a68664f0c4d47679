//! Per-location listings (issue 16): a channel that lists stock per location of its own
//! (Shopify with several `location_map` entries) gets one listing per (SKU, channel
//! location), keyed `SKU@LOCATION` ([`listing_key`]). This module divides the channel's one
//! ATP figure across those locations.
//!
//! The rule, chosen so that a multi-location channel never lists more than the same channel
//! would list at one location:
//! 1. the channel's ATP is computed exactly as for one location, over every location that
//!    feeds the channel: safety stock, allocation shares, ring-fencing, pre-order windows
//!    and `max_listed_quantity` all apply to that total, once;
//! 2. the total is divided across the channel's locations in proportion to each one's
//!    **pool**: the units available (on-hand minus reserved, never below 0) at the
//!    locations of ours that feed it;
//! 3. rounding by largest remainder (ties to the earlier location in config order), so the
//!    parts sum to the total exactly; a location never gets more than its pool while the
//!    total fits in the pools;
//! 4. when every pool is 0 (the total comes from inbound stock alone, a pre-order), the
//!    first location lists it all.
//!
//! So safety stock and `max_listed_quantity` lower the parts in proportion, and the sum over
//! the channel's locations is the single-location figure, never more (a proptest below).
//!
//! May depend on: `domain`, and `channels` for the [`ListingLocation`] type.

use crate::channels::ListingLocation;
pub use crate::channels::{listing_key, split_listing_key};
use crate::domain::LocationLevel;

/// The pool of a channel location: units available (never below 0 each) at the locations of
/// ours in `feeds`, from the SKU's `levels`.
pub fn pool(levels: &[LocationLevel], feeds: &[String]) -> u64 {
    levels
        .iter()
        .filter(|level| feeds.iter().any(|feed| feed == level.location.as_str()))
        .map(|level| u64::try_from(level.on_hand.saturating_sub(level.reserved)).unwrap_or(0))
        .fold(0u64, u64::saturating_add)
}

/// Units reserved at the locations of ours in `feeds` (never below 0 each).
pub fn reserved(levels: &[LocationLevel], feeds: &[String]) -> u64 {
    levels
        .iter()
        .filter(|level| feeds.iter().any(|feed| feed == level.location.as_str()))
        .map(|level| u64::try_from(level.reserved).unwrap_or(0))
        .fold(0u64, u64::saturating_add)
}

/// Divides `total` across locations with these `pools` (in config order), by the rule in
/// the module docs. Returns one part per pool; the parts sum to `total` (an empty `pools`
/// gives an empty result).
pub fn divide(total: u64, pools: &[u64]) -> Vec<u64> {
    if pools.is_empty() {
        return Vec::new();
    }
    let sum: u128 = pools.iter().map(|pool| u128::from(*pool)).sum();
    let mut parts = vec![0u64; pools.len()];
    if sum == 0 {
        parts[0] = total;
        return parts;
    }
    let total_wide = u128::from(total);
    let mut remainders: Vec<(u128, usize)> = Vec::with_capacity(pools.len());
    let mut given: u128 = 0;
    for (index, pool) in pools.iter().enumerate() {
        let exact = total_wide * u128::from(*pool);
        let whole = exact / sum;
        given += whole;
        // `whole` ≤ total, so it fits in u64.
        parts[index] = u64::try_from(whole).unwrap_or(u64::MAX);
        remainders.push((exact % sum, index));
    }
    // Largest remainder first; ties to the earlier location.
    remainders.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    let mut left = total_wide - given;
    for (_, index) in remainders {
        if left == 0 {
            break;
        }
        parts[index] = parts[index].saturating_add(1);
        left -= 1;
    }
    parts
}

/// [`divide`] of a channel's `total` across its `locations`, with pools from the SKU's
/// `levels`: (location, part) in config order.
pub fn divide_for<'a>(
    total: u64,
    levels: &[LocationLevel],
    locations: &'a [ListingLocation],
) -> Vec<(&'a ListingLocation, u64)> {
    let pools: Vec<u64> = locations
        .iter()
        .map(|location| pool(levels, &location.feeds))
        .collect();
    locations.iter().zip(divide(total, &pools)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn level(location: &str, on_hand: i64, reserved: i64) -> LocationLevel {
        LocationLevel {
            location: location.into(),
            on_hand,
            reserved,
            in_transit: 0,
            inbound: 0,
        }
    }

    #[test]
    fn keys_split_on_the_last_at_before_a_number() {
        assert_eq!(listing_key("TEE-M", "61000000002"), "TEE-M@61000000002");
        assert_eq!(
            split_listing_key("TEE-M@61000000002"),
            ("TEE-M", Some("61000000002"))
        );
        assert_eq!(split_listing_key("a@b@7"), ("a@b", Some("7")));
        assert_eq!(split_listing_key("mail@shop"), ("mail@shop", None));
        assert_eq!(split_listing_key("TEE-M"), ("TEE-M", None));
        assert_eq!(split_listing_key("@7"), ("@7", None));
    }

    #[test]
    fn pools_count_available_stock_of_the_feeds_only() {
        let levels = [
            level("WH", 10, 3),
            level("STORE", 2, 5),
            level("OTHER", 9, 0),
        ];
        assert_eq!(pool(&levels, &["WH".into()]), 7);
        assert_eq!(pool(&levels, &["STORE".into()]), 0, "oversold counts as 0");
        assert_eq!(pool(&levels, &["WH".into(), "STORE".into()]), 7);
        assert_eq!(reserved(&levels, &["WH".into(), "STORE".into()]), 8);
    }

    #[test]
    fn the_total_is_divided_in_proportion_with_largest_remainders() {
        assert_eq!(divide(10, &[6, 4]), vec![6, 4]);
        // Safety stock 2 on 6 + 4: 8 divided 4.8 / 3.2 → 5 / 3.
        assert_eq!(divide(8, &[6, 4]), vec![5, 3]);
        // A tie goes to the earlier location.
        assert_eq!(divide(1, &[3, 3]), vec![1, 0]);
        assert_eq!(divide(5, &[0, 7]), vec![0, 5]);
        // Pre-order only: the first location lists it.
        assert_eq!(divide(4, &[0, 0]), vec![4, 0]);
        assert_eq!(divide(0, &[5, 5]), vec![0, 0]);
        assert!(divide(3, &[]).is_empty());
    }

    proptest! {
        /// The parts sum to the total (so never more than the single-location figure), and
        /// no location lists more than its pool (rounded up by one) while the total fits.
        #[test]
        fn parts_sum_to_the_total_and_stay_within_their_pools(
            total in 0u64..10_000,
            pools in proptest::collection::vec(0u64..5_000, 1..8),
        ) {
            let parts = divide(total, &pools);
            prop_assert_eq!(parts.len(), pools.len());
            prop_assert_eq!(parts.iter().sum::<u64>(), total);
            let sum: u64 = pools.iter().sum();
            if total <= sum {
                for (part, pool) in parts.iter().zip(&pools) {
                    prop_assert!(part <= pool, "part {} over pool {}", part, pool);
                }
            }
        }

        /// Division is monotone in the total: more stock never lowers a location's part
        /// by more than the one unit a remainder can move.
        #[test]
        fn a_larger_total_never_takes_more_than_one_unit_from_a_location(
            total in 0u64..5_000,
            pools in proptest::collection::vec(0u64..2_000, 1..6),
        ) {
            let before = divide(total, &pools);
            let after = divide(total + 1, &pools);
            for (b, a) in before.iter().zip(&after) {
                prop_assert!(a + 1 >= *b);
            }
        }
    }
}
