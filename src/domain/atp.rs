//! Available-to-promise (ATP): what one channel may sell now, derived from location levels.
//!
//! Order of operations for each channel (DESIGN.md §2):
//! 1. pool = Σ over its feeding locations of max(0, available) — a negative location never
//!    cancels stock held elsewhere — minus units ring-fenced for other channels;
//! 2. allocation: all of the pool, a percentage share (rounded down), a fixed quantity, or
//!    (for a ring-fenced channel) exactly the units fenced for it;
//! 3. minus safety stock (floored at 0);
//! 4. plus inbound purchase-order units expected within the pre-order window, up to its cap;
//! 5. capped at the maximum listed quantity;
//! 6. shown as 0 when below the "show zero below" threshold.

use super::{AvailabilityChange, InboundLevel, LocationId, LocationLevel};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

/// Every channel's ATP rule plus per-SKU safety-stock overrides: what propagation and the
/// API use to turn one SKU's levels into each channel's ATP.
///
/// Safety-stock precedence (highest first): an override for this SKU and this channel, an
/// override for this SKU on every channel, the channel's own `safety_stock`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AllocationPolicy {
    /// The channels' default rules, in config order.
    pub channels: Vec<ChannelStockRule>,
    /// (SKU, channel or `None` for all) → safety stock.
    pub safety_overrides: HashMap<(String, Option<String>), u64>,
}

impl AllocationPolicy {
    /// The rules that apply to `sku`, in channel order.
    pub fn rules_for(&self, sku: &str) -> Vec<ChannelStockRule> {
        self.channels
            .iter()
            .map(|rule| {
                let specific = self
                    .safety_overrides
                    .get(&(sku.to_owned(), Some(rule.channel.clone())));
                let general = self.safety_overrides.get(&(sku.to_owned(), None));
                match specific.or(general) {
                    Some(safety_stock) => ChannelStockRule {
                        safety_stock: *safety_stock,
                        ..rule.clone()
                    },
                    None => rule.clone(),
                }
            })
            .collect()
    }

    /// Every channel's ATP for one SKU's levels at `now_ms`, in channel order.
    pub fn allocate(&self, change: &AvailabilityChange, now_ms: i64) -> Vec<AtpBreakdown> {
        allocate(
            &change.locations,
            &change.inbound,
            &self.rules_for(change.sku.as_str()),
            now_ms,
        )
    }
}

/// A channel's share of the pool of its feeding locations.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Allocation {
    /// Everything in the pool (shared with other channels).
    #[default]
    All,
    /// `percent` % of the pool, rounded down; all shares together are at most 100 %.
    Share {
        /// Percentage, 0–100.
        percent: u8,
    },
    /// At most `quantity` units of the pool.
    Fixed {
        /// Units.
        quantity: u64,
    },
    /// `quantity` units reserved for this channel alone: taken from its locations in order
    /// before any other channel's pool is computed, and invisible to other channels.
    RingFenced {
        /// Units.
        quantity: u64,
    },
}

/// How one channel derives its ATP for a SKU.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelStockRule {
    /// The channel id (for explanations).
    #[serde(default)]
    pub channel: String,
    /// Locations that feed the channel.
    pub locations: Vec<LocationId>,
    /// Units held back from the channel (safety/buffer stock).
    pub safety_stock: u64,
    /// The most the channel may list, if capped.
    pub max_listed_quantity: Option<u64>,
    /// Below this the channel is shown 0.
    #[serde(default)]
    pub show_zero_below: u64,
    /// The channel's share of the pool.
    #[serde(default)]
    pub allocation: Allocation,
    /// Inbound expected within this many milliseconds from now counts (pre-orders); `None`
    /// disables pre-orders.
    #[serde(default)]
    pub preorder_window_ms: Option<i64>,
    /// At most this many inbound units are added.
    #[serde(default)]
    pub preorder_cap: u64,
}

/// The ATP and how it was reached, for the API's explanation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AtpBreakdown {
    /// The channel id.
    pub channel: String,
    /// Feeding locations with their available units (negative ones count as 0).
    pub fed_by: Vec<(LocationId, i64)>,
    /// Units of the feeding locations ring-fenced for other channels.
    pub fenced_for_others: u64,
    /// Σ max(0, available) over the feeding locations, minus `fenced_for_others`.
    pub pooled_available: u64,
    /// The allocation rule that applied.
    pub allocation: Allocation,
    /// Units after the allocation rule.
    pub allocated: u64,
    /// Units held back.
    pub safety_stock: u64,
    /// Inbound units added by the pre-order window.
    pub preorder_inbound: u64,
    /// The cap that applied, if it lowered the figure.
    pub capped_at: Option<u64>,
    /// Whether the "show zero below" threshold turned the figure into 0.
    pub shown_as_zero: bool,
    /// The ATP pushed to the channel.
    pub atp: u64,
}

/// One channel's ATP on its own: no other channel ring-fences anything, no inbound.
pub fn channel_atp(levels: &[LocationLevel], rule: &ChannelStockRule) -> AtpBreakdown {
    allocate(levels, &[], std::slice::from_ref(rule), 0)
        .pop()
        .expect("one rule gives one breakdown")
}

/// Every channel's ATP for one SKU at `now_ms`, in the order of `rules` (all channels
/// together, because ring-fenced pools of one channel shrink the others').
pub fn allocate(
    levels: &[LocationLevel],
    inbound: &[InboundLevel],
    rules: &[ChannelStockRule],
    now_ms: i64,
) -> Vec<AtpBreakdown> {
    let available = |location: &LocationId| {
        levels
            .iter()
            .find(|level| &level.location == location)
            .map(LocationLevel::available)
            .unwrap_or(0)
    };
    // Units still free per location after ring fences, and what each fenced channel got.
    let mut free: BTreeMap<&LocationId, u64> = BTreeMap::new();
    for rule in rules {
        for location in &rule.locations {
            free.entry(location)
                .or_insert_with(|| u64::try_from(available(location)).unwrap_or(0));
        }
    }
    let before_fences = free.clone();
    let mut fenced_for: Vec<Option<u64>> = vec![None; rules.len()];
    for (index, rule) in rules.iter().enumerate() {
        if let Allocation::RingFenced { quantity } = rule.allocation {
            let mut wanted = quantity;
            for location in &rule.locations {
                let units = free.get_mut(location).expect("seeded above");
                let take = (*units).min(wanted);
                *units -= take;
                wanted -= take;
            }
            fenced_for[index] = Some(quantity - wanted);
        }
    }
    rules
        .iter()
        .enumerate()
        .map(|(index, rule)| {
            let fed_by: Vec<(LocationId, i64)> = rule
                .locations
                .iter()
                .map(|location| (location.clone(), available(location)))
                .collect();
            let gross: u64 = rule.locations.iter().map(|l| before_fences[l]).sum();
            let (pooled_available, allocated) = match (rule.allocation, fenced_for[index]) {
                (Allocation::RingFenced { .. }, Some(took)) => (took, took),
                (allocation, _) => {
                    let pool: u64 = rule.locations.iter().map(|l| free[l]).sum();
                    let allocated = match allocation {
                        Allocation::All | Allocation::RingFenced { .. } => pool,
                        Allocation::Share { percent } => {
                            u64::try_from(u128::from(pool) * u128::from(percent.min(100)) / 100)
                                .unwrap_or(u64::MAX)
                        }
                        Allocation::Fixed { quantity } => pool.min(quantity),
                    };
                    (pool, allocated)
                }
            };
            let fenced_for_others = match fenced_for[index] {
                Some(took) => gross
                    .saturating_sub(took)
                    .saturating_sub(rule.locations.iter().map(|l| free[l]).sum::<u64>()),
                None => gross.saturating_sub(pooled_available),
            };
            let after_safety = allocated.saturating_sub(rule.safety_stock);
            let preorder_inbound = match rule.preorder_window_ms {
                Some(window) => inbound
                    .iter()
                    .filter(|line| rule.locations.contains(&line.location))
                    .filter(|line| line.expected_at_ms <= now_ms.saturating_add(window))
                    .map(|line| line.quantity)
                    .sum::<u64>()
                    .min(rule.preorder_cap),
                None => 0,
            };
            let before_cap = after_safety.saturating_add(preorder_inbound);
            let (capped, capped_at) = match rule.max_listed_quantity {
                Some(cap) if before_cap > cap => (cap, Some(cap)),
                _ => (before_cap, None),
            };
            let shown_as_zero = capped > 0 && capped < rule.show_zero_below;
            AtpBreakdown {
                channel: rule.channel.clone(),
                fed_by,
                fenced_for_others,
                pooled_available,
                allocation: rule.allocation,
                allocated,
                safety_stock: rule.safety_stock,
                preorder_inbound,
                capped_at,
                shown_as_zero,
                atp: if shown_as_zero { 0 } else { capped },
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn level(location: &str, on_hand: i64, reserved: i64) -> LocationLevel {
        LocationLevel {
            location: location.into(),
            on_hand,
            reserved,
            in_transit: 0,
            inbound: 0,
        }
    }

    fn rule(channel: &str, locations: &[&str]) -> ChannelStockRule {
        ChannelStockRule {
            channel: channel.into(),
            locations: locations.iter().map(|l| (*l).into()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn a_negative_location_never_cancels_stock_elsewhere() {
        let atp = channel_atp(
            &[level("A", 0, 3), level("B", 5, 0)],
            &rule("c", &["A", "B"]),
        );
        assert_eq!(atp.atp, 5);
    }

    #[test]
    fn safety_stock_and_cap_apply_in_order_and_floor_at_zero() {
        let rule = ChannelStockRule {
            safety_stock: 2,
            max_listed_quantity: Some(10),
            ..rule("c", &["A"])
        };
        assert_eq!(channel_atp(&[level("A", 50, 0)], &rule).atp, 10);
        assert_eq!(channel_atp(&[level("A", 7, 0)], &rule).atp, 5);
        assert_eq!(channel_atp(&[level("A", 1, 0)], &rule).atp, 0);
    }

    #[test]
    fn locations_that_do_not_feed_the_channel_are_ignored() {
        let atp = channel_atp(&[level("A", 1, 0), level("Z", 100, 0)], &rule("c", &["A"]));
        assert_eq!(atp.atp, 1);
    }

    #[test]
    fn shares_round_down_and_ring_fences_shrink_the_shared_pool() {
        let rules = vec![
            ChannelStockRule {
                allocation: Allocation::RingFenced { quantity: 3 },
                ..rule("b2b", &["A"])
            },
            ChannelStockRule {
                allocation: Allocation::Share { percent: 50 },
                ..rule("web", &["A"])
            },
            ChannelStockRule {
                allocation: Allocation::Share { percent: 50 },
                ..rule("market", &["A"])
            },
            ChannelStockRule {
                allocation: Allocation::Fixed { quantity: 2 },
                ..rule("outlet", &["A"])
            },
        ];
        let atps = allocate(&[level("A", 10, 0)], &[], &rules, 0);
        let figures: Vec<u64> = atps.iter().map(|a| a.atp).collect();
        // 10 on hand: 3 fenced for b2b; 7 left: 50 % → 3 (rounded down) twice; fixed 2.
        assert_eq!(figures, vec![3, 3, 3, 2]);
        assert_eq!(atps[1].fenced_for_others, 3);
        let shared: u64 = figures[1] + figures[2];
        assert!(
            figures[0] + shared <= 10,
            "shares plus the fence never exceed stock"
        );
    }

    #[test]
    fn a_ring_fence_takes_only_what_exists() {
        let rules = vec![
            ChannelStockRule {
                allocation: Allocation::RingFenced { quantity: 8 },
                ..rule("b2b", &["A"])
            },
            rule("web", &["A", "B"]),
        ];
        let atps = allocate(&[level("A", 5, 0), level("B", 2, 0)], &[], &rules, 0);
        assert_eq!((atps[0].atp, atps[1].atp), (5, 2));
    }

    #[test]
    fn preorders_add_inbound_inside_the_window_up_to_the_cap() {
        let day = 86_400_000;
        let rule = ChannelStockRule {
            preorder_window_ms: Some(7 * day),
            preorder_cap: 10,
            ..rule("web", &["A"])
        };
        let inbound = vec![
            InboundLevel {
                location: "A".into(),
                quantity: 6,
                expected_at_ms: 3 * day,
            },
            InboundLevel {
                location: "A".into(),
                quantity: 6,
                expected_at_ms: 5 * day,
            },
            InboundLevel {
                location: "A".into(),
                quantity: 50,
                expected_at_ms: 30 * day,
            },
            InboundLevel {
                location: "Z".into(),
                quantity: 50,
                expected_at_ms: day,
            },
        ];
        let atp = &allocate(
            &[level("A", 2, 0)],
            &inbound,
            std::slice::from_ref(&rule),
            0,
        )[0];
        assert_eq!((atp.preorder_inbound, atp.atp), (10, 12));
        let without = channel_atp(&[level("A", 2, 0)], &rule);
        assert_eq!(without.atp, 2, "no inbound known, no pre-order units");
    }

    #[test]
    fn per_sku_safety_stock_wins_over_the_channel_default() {
        let policy = AllocationPolicy {
            channels: vec![
                ChannelStockRule {
                    safety_stock: 1,
                    ..rule("web", &["A"])
                },
                ChannelStockRule {
                    safety_stock: 1,
                    ..rule("market", &["A"])
                },
            ],
            safety_overrides: HashMap::from([
                (("SKU-1".to_owned(), None), 2),
                (("SKU-1".to_owned(), Some("market".to_owned())), 4),
            ]),
        };
        let change = |sku: &str| AvailabilityChange {
            sku: sku.into(),
            seq: 1,
            locations: vec![level("A", 10, 0)],
            inbound: Vec::new(),
        };
        let atps: Vec<u64> = policy
            .allocate(&change("SKU-1"), 0)
            .iter()
            .map(|a| a.atp)
            .collect();
        assert_eq!(atps, vec![8, 6]);
        let atps: Vec<u64> = policy
            .allocate(&change("SKU-2"), 0)
            .iter()
            .map(|a| a.atp)
            .collect();
        assert_eq!(atps, vec![9, 9]);
    }

    #[test]
    fn below_the_threshold_the_channel_shows_zero() {
        let rule = ChannelStockRule {
            show_zero_below: 3,
            ..rule("web", &["A"])
        };
        assert_eq!(channel_atp(&[level("A", 2, 0)], &rule).atp, 0);
        assert!(channel_atp(&[level("A", 2, 0)], &rule).shown_as_zero);
        assert_eq!(channel_atp(&[level("A", 3, 0)], &rule).atp, 3);
    }
}
