//! Stock policy: where backorders are allowed and how holds are routed.

use super::{ApplyContext, LocationId, Movement, RoutingPolicy, Sku};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap};

/// The negative-stock and routing rules the ledger applies when it admits a movement.
///
/// Precedence for backorders: a per-SKU × location rule wins over the location's default.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockPolicy {
    /// How a sale or hold without a location picks one of its candidates.
    pub routing: RoutingPolicy,
    /// Locations where holds may go below zero unless a SKU rule says otherwise.
    pub backorder_locations: BTreeSet<LocationId>,
    /// Per-SKU exceptions: the complete set of locations where that SKU may backorder.
    pub backorders_by_sku: HashMap<Sku, BTreeSet<LocationId>>,
    /// A line no single location can serve may be split across at most this many
    /// locations (0 and 1: never split).
    pub max_split_locations: usize,
    /// Multi-line holds try first to place every line at one location that has them all.
    pub prefer_single_location: bool,
    /// Closed reservation lines are forgotten after this long (ms; 0: kept forever).
    pub closed_line_retention_ms: i64,
    /// A parked movement expires into the dead-letter store after this long (ms; 0: never).
    #[serde(default)]
    pub parked_ttl_ms: i64,
    /// The configured locations (`[[locations]]`): a new movement naming any other is
    /// refused with [`ApplyError::UnknownLocation`](super::ApplyError::UnknownLocation).
    /// Empty: every location is accepted (tools and tests without a location list).
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub known_locations: BTreeSet<LocationId>,
}

impl StockPolicy {
    /// Where `sku` may backorder.
    pub fn backorder_locations(&self, sku: &Sku) -> &BTreeSet<LocationId> {
        self.backorders_by_sku
            .get(sku)
            .unwrap_or(&self.backorder_locations)
    }

    /// The context to admit a new movement of `sku` at `now_ms`.
    pub fn context<'a>(&'a self, sku: &Sku, now_ms: i64) -> ApplyContext<'a> {
        ApplyContext {
            now_ms,
            backorder_locations: self.backorder_locations(sku),
            routing: self.routing,
            replay: false,
            max_split_locations: self.max_split_locations.max(1),
            closed_line_retention_ms: self.retention_ms(),
            parked_ttl_ms: self.parked_ttl(),
        }
    }

    /// The first location `movement` names that is not configured, with the JSON field
    /// naming it (`location`, `route/1`, `from`, `to`, `quarantine`); `None` when every one
    /// is configured or no location list is configured.
    pub fn unknown_location(&self, movement: &Movement) -> Option<(String, LocationId)> {
        if self.known_locations.is_empty() {
            return None;
        }
        movement
            .find_location(|location| !self.known_locations.contains(location))
            .map(|(field, location)| (field, location.clone()))
    }

    /// The parked TTL as the context wants it (`i64::MAX`: never expires).
    pub fn parked_ttl(&self) -> i64 {
        if self.parked_ttl_ms > 0 {
            self.parked_ttl_ms
        } else {
            i64::MAX
        }
    }

    /// The retention of closed lines as the context wants it (`i64::MAX`: forever).
    pub fn retention_ms(&self) -> i64 {
        if self.closed_line_retention_ms > 0 {
            self.closed_line_retention_ms
        } else {
            i64::MAX
        }
    }
}
