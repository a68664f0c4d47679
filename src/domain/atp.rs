//! Available-to-promise (ATP): what one channel may sell now, derived from location levels.

use super::{LocationId, LocationLevel};
use serde::{Deserialize, Serialize};

/// How one channel derives its ATP for a SKU (DESIGN.md §2).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelStockRule {
    /// Locations that feed the channel.
    pub locations: Vec<LocationId>,
    /// Units held back from the channel (safety/buffer stock).
    pub safety_stock: u64,
    /// The most the channel may list, if capped.
    pub max_listed_quantity: Option<u64>,
}

/// The ATP and how it was reached, for the API's explanation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AtpBreakdown {
    /// Σ max(0, available) over the feeding locations.
    pub pooled_available: u64,
    /// Feeding locations with their available units (negative ones counted as 0).
    pub fed_by: Vec<(LocationId, i64)>,
    /// Units held back.
    pub safety_stock: u64,
    /// The cap that applied, if it lowered the figure.
    pub capped_at: Option<u64>,
    /// The ATP pushed to the channel.
    pub atp: u64,
}

/// ATP = Σ over feeding locations of max(0, available) − safety stock, capped at the
/// channel's maximum listed quantity, floored at 0. A negative location never cancels stock
/// held elsewhere.
pub fn channel_atp(levels: &[LocationLevel], rule: &ChannelStockRule) -> AtpBreakdown {
    let fed_by: Vec<(LocationId, i64)> = rule
        .locations
        .iter()
        .map(|location| {
            let available = levels
                .iter()
                .find(|level| &level.location == location)
                .map(LocationLevel::available)
                .unwrap_or(0);
            (location.clone(), available)
        })
        .collect();
    let pooled_available: u64 = fed_by
        .iter()
        .map(|(_, available)| u64::try_from(*available).unwrap_or(0))
        .sum();
    let after_safety = pooled_available.saturating_sub(rule.safety_stock);
    let (atp, capped_at) = match rule.max_listed_quantity {
        Some(cap) if after_safety > cap => (cap, Some(cap)),
        _ => (after_safety, None),
    };
    AtpBreakdown {
        pooled_available,
        fed_by,
        safety_stock: rule.safety_stock,
        capped_at,
        atp,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn level(location: &str, on_hand: i64, reserved: i64) -> LocationLevel {
        LocationLevel {
            location: location.into(),
            on_hand,
            reserved,
        }
    }

    #[test]
    fn a_negative_location_never_cancels_stock_elsewhere() {
        let rule = ChannelStockRule {
            locations: vec!["A".into(), "B".into()],
            ..Default::default()
        };
        let atp = channel_atp(&[level("A", 0, 3), level("B", 5, 0)], &rule);
        assert_eq!(atp.atp, 5);
    }

    #[test]
    fn safety_stock_and_cap_apply_in_order_and_floor_at_zero() {
        let rule = ChannelStockRule {
            locations: vec!["A".into()],
            safety_stock: 2,
            max_listed_quantity: Some(10),
        };
        assert_eq!(channel_atp(&[level("A", 50, 0)], &rule).atp, 10);
        assert_eq!(channel_atp(&[level("A", 7, 0)], &rule).atp, 5);
        assert_eq!(channel_atp(&[level("A", 1, 0)], &rule).atp, 0);
    }

    #[test]
    fn locations_that_do_not_feed_the_channel_are_ignored() {
        let rule = ChannelStockRule {
            locations: vec!["A".into()],
            ..Default::default()
        };
        assert_eq!(
            channel_atp(&[level("A", 1, 0), level("Z", 100, 0)], &rule).atp,
            1
        );
    }
}
