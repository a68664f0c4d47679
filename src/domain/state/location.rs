//! Stock per location: on-hand, reserved and in transit ([`LocationStock`]), the count
//! journal that lets an absolute count add back what it could not have seen, purchase-order
//! (inbound) lines and transfers between locations, and the levels published from them.

use super::{Applied, ApplyError, SkuState, to_i64};
use crate::domain::LocationId;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

/// Stock at one location. `available()` is derived, never stored.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocationStock {
    /// Units physically at the location (negative only when the source reports a debt).
    pub on_hand: i64,
    /// Units promised to open order lines and holds, not yet shipped.
    pub reserved: i64,
    /// Units dispatched to this location by transfers and not yet received (not available).
    #[serde(default)]
    pub in_transit: i64,
    /// Watermark of the last applied absolute count, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_count_watermark: Option<i64>,
    /// Recent on-hand changes as (source time in ms, delta), newest last, so that a count
    /// taken at watermark W can add back what happened after W (see [`crate::domain::MovementKind::Count`]).
    /// Entries at or before the last count's watermark are dropped; at most
    /// [`JOURNAL_LIMIT`] are kept.
    #[serde(default, skip_serializing_if = "VecDeque::is_empty")]
    pub journal: VecDeque<(i64, i64)>,
}

/// Most recent on-hand changes remembered per location for count reconciliation; a count
/// whose watermark is older than the oldest kept entry treats everything before it as seen.
pub const JOURNAL_LIMIT: usize = 256;

impl LocationStock {
    pub(super) fn change_on_hand(&mut self, at_ms: i64, delta: i64) {
        self.on_hand += delta;
        if self.journal.len() == JOURNAL_LIMIT {
            self.journal.pop_front();
        } else if self.journal.len() == self.journal.capacity() {
            // Grow by a quarter (at least one entry), not double: most SKUs see few changes
            // between counts, and the room is allocated only once one is journaled.
            let room = (self.journal.len() / 4).clamp(1, JOURNAL_LIMIT - self.journal.len());
            self.journal.reserve_exact(room);
        }
        self.journal.push_back((at_ms, delta));
    }
}

impl LocationStock {
    /// on-hand − reserved; negative means a backorder debt or an oversell.
    pub fn available(&self) -> i64 {
        self.on_hand - self.reserved
    }
}

/// One location's levels as published to propagation and the API.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocationLevel {
    /// The location.
    pub location: LocationId,
    /// Units on hand.
    pub on_hand: i64,
    /// Units reserved.
    pub reserved: i64,
    /// Units in transit to this location (transfers dispatched, not yet received).
    #[serde(default)]
    pub in_transit: i64,
    /// Units expected on open purchase-order lines at this location.
    #[serde(default)]
    pub inbound: i64,
}

/// Outstanding purchase-order units at one location, by expected date.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboundLevel {
    /// Where the goods will arrive.
    pub location: LocationId,
    /// Units still expected.
    pub quantity: u64,
    /// Expected arrival, in milliseconds since the Unix epoch.
    pub expected_at_ms: i64,
}

/// An open purchase-order line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboundLine {
    /// Where the goods will arrive.
    pub location: LocationId,
    /// Units still expected.
    pub quantity: u64,
    /// Expected arrival, in milliseconds since the Unix epoch.
    pub expected_at_ms: i64,
}

/// A transfer between two locations.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferLine {
    /// Sending location.
    pub from: LocationId,
    /// Receiving location.
    pub to: LocationId,
    /// Units dispatched.
    pub quantity: u64,
    /// Units received so far.
    pub received: u64,
}

impl LocationLevel {
    /// on-hand − reserved.
    pub fn available(&self) -> i64 {
        self.on_hand - self.reserved
    }
}

impl SkuState {
    /// The stock at `location`, zero if never seen.
    pub fn location(&self, location: &LocationId) -> LocationStock {
        self.locations.get(location).cloned().unwrap_or_default()
    }

    /// on-hand − reserved at `location` (0 if never seen), without copying its journal.
    pub fn available_at(&self, location: &LocationId) -> i64 {
        self.locations
            .get(location)
            .map_or(0, LocationStock::available)
    }

    /// Levels per location, sorted by location id.
    pub fn levels(&self) -> Vec<LocationLevel> {
        let mut levels: Vec<LocationLevel> = self
            .locations
            .iter()
            .map(|(location, stock)| LocationLevel {
                location: location.clone(),
                on_hand: stock.on_hand,
                reserved: stock.reserved,
                in_transit: stock.in_transit,
                inbound: 0,
            })
            .collect();
        for line in self.inbound.values() {
            match levels
                .iter_mut()
                .find(|level| level.location == line.location)
            {
                Some(level) => level.inbound += to_i64(line.quantity),
                None => levels.push(LocationLevel {
                    location: line.location.clone(),
                    on_hand: 0,
                    reserved: 0,
                    in_transit: 0,
                    inbound: to_i64(line.quantity),
                }),
            }
        }
        levels.sort_by(|a, b| a.location.cmp(&b.location));
        levels
    }

    /// Open purchase-order units by location and expected date.
    pub fn inbound_levels(&self) -> Vec<InboundLevel> {
        self.inbound
            .values()
            .filter(|line| line.quantity > 0)
            .map(|line| InboundLevel {
                location: line.location.clone(),
                quantity: line.quantity,
                expected_at_ms: line.expected_at_ms,
            })
            .collect()
    }

    pub(super) fn stock_mut(&mut self, location: &LocationId) -> &mut LocationStock {
        self.locations
            .get_or_insert_with(location, || (location.clone(), LocationStock::default()))
    }

    /// An absolute count at `location` taken at `watermark`: on-hand becomes the counted
    /// units plus the journaled changes after the watermark; a stale count changes nothing.
    pub(super) fn count(&mut self, location: &LocationId, on_hand: u64, watermark: i64) -> Applied {
        let stock = self.stock_mut(location);
        if stock.last_count_watermark.is_some_and(|w| watermark <= w) {
            return Self::unchanged();
        }
        // What the counter could not have seen: on-hand changes after the watermark.
        stock.journal.retain(|(at, _)| *at > watermark);
        if stock.journal.len() <= stock.journal.capacity() / 2 {
            stock
                .journal
                .shrink_to(stock.journal.len() + stock.journal.len() / 4);
        }
        let unseen: i64 = stock.journal.iter().map(|(_, delta)| delta).sum();
        stock.last_count_watermark = Some(watermark);
        stock.on_hand = to_i64(on_hand) + unseen;
        self.changed(location)
    }

    /// A purchase-order line expected at `location` (quantity 0 closes it).
    pub(super) fn expect_inbound(
        &mut self,
        purchase_order: &str,
        location: &LocationId,
        quantity: u64,
        expected_at_ms: i64,
    ) -> Applied {
        if quantity == 0 {
            let removed = self.inbound.remove(purchase_order).is_some();
            return if removed {
                self.changed(location)
            } else {
                Self::unchanged()
            };
        }
        self.inbound.insert(
            purchase_order.into(),
            InboundLine {
                location: location.clone(),
                quantity,
                expected_at_ms,
            },
        );
        self.changed(location)
    }

    /// Goods received against an open purchase-order line.
    pub(super) fn receive_inbound(
        &mut self,
        purchase_order: &str,
        quantity: u64,
        at_ms: i64,
    ) -> Result<Applied, ApplyError> {
        let Some(line) = self.inbound.get_mut(purchase_order) else {
            return Err(ApplyError::UnknownPurchaseOrder {
                purchase_order: purchase_order.to_owned(),
            });
        };
        line.quantity = line.quantity.saturating_sub(quantity);
        let location = line.location.clone();
        if line.quantity == 0 {
            self.inbound.remove(purchase_order);
        }
        self.stock_mut(&location)
            .change_on_hand(at_ms, to_i64(quantity));
        Ok(self.changed(&location))
    }

    /// Goods leave `from` for `to`: on-hand at `from` drops, in transit at `to` rises.
    pub(super) fn dispatch_transfer(
        &mut self,
        transfer: &str,
        from: &LocationId,
        to: &LocationId,
        quantity: u64,
        at_ms: i64,
    ) -> Result<Applied, ApplyError> {
        if self.transfers.contains_key(transfer) {
            return Err(ApplyError::DuplicateTransfer {
                transfer: transfer.to_owned(),
            });
        }
        self.stock_mut(from)
            .change_on_hand(at_ms, -to_i64(quantity));
        self.stock_mut(to).in_transit += to_i64(quantity);
        self.transfers.insert(
            transfer.into(),
            TransferLine {
                from: from.clone(),
                to: to.clone(),
                quantity,
                received: 0,
            },
        );
        Ok(self.changed(from))
    }

    /// Goods of a dispatched transfer arrive: in transit becomes on-hand at its destination.
    pub(super) fn receive_transfer(
        &mut self,
        transfer: &str,
        quantity: u64,
        at_ms: i64,
    ) -> Result<Applied, ApplyError> {
        let Some(line) = self.transfers.get_mut(transfer) else {
            return Err(ApplyError::UnknownTransfer {
                transfer: transfer.to_owned(),
            });
        };
        let in_transit = line.quantity - line.received;
        if quantity > in_transit {
            return Err(ApplyError::OverReceipt {
                transfer: transfer.to_owned(),
                in_transit,
                requested: quantity,
            });
        }
        line.received += quantity;
        let to = line.to.clone();
        let stock = self.stock_mut(&to);
        stock.in_transit -= to_i64(quantity);
        stock.change_on_hand(at_ms, to_i64(quantity));
        Ok(self.changed(&to))
    }
}
