//! Stock per location: on-hand, reserved and in transit ([`LocationStock`]), absolute
//! counts (their basis, the journal that lets a count add back what it could not have seen,
//! and the late movements a count already includes), purchase-order (inbound) lines,
//! transfers between locations (with units rejected at receipt), the write-off of units a
//! cancellation released, and the levels published from them.
//!
//! Depends on the movement contract and on the open lines of `reservations` (read only:
//! a book count adds back the lines its source has booked).

use super::{Applied, ApplyError, SkuState, to_i64};
use crate::domain::LocationId;
use crate::domain::movement::{CountBasis, MovementKind};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, VecDeque};

/// A count watermark at or above this value (milliseconds since the Unix epoch: September
/// 2001) is read as a time; below it, as the source's own sequence number. Only a time
/// watermark tells which later-arriving movements happened before the count.
pub const WATERMARK_TIME_FROM_MS: i64 = 1_000_000_000_000;

/// An optional count watermark in 8 bytes: `i64::MIN` stands for none (a count at
/// `i64::MIN` is older than every other and reads as none). Serialised as `Option<i64>`,
/// so stored snapshots keep their shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "Option<i64>", into = "Option<i64>")]
pub struct CountWatermark(i64);

impl CountWatermark {
    /// The watermark, if a count was applied.
    pub fn get(self) -> Option<i64> {
        (self.0 != i64::MIN).then_some(self.0)
    }

    /// Whether no count was applied.
    pub fn is_none(&self) -> bool {
        self.0 == i64::MIN
    }
}

impl Default for CountWatermark {
    fn default() -> Self {
        Self(i64::MIN)
    }
}

impl From<Option<i64>> for CountWatermark {
    fn from(watermark: Option<i64>) -> Self {
        Self(watermark.unwrap_or(i64::MIN))
    }
}

impl From<CountWatermark> for Option<i64> {
    fn from(watermark: CountWatermark) -> Self {
        watermark.get()
    }
}

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
    /// Watermark of the last applied absolute count, if any (8 bytes, not an option's 16).
    #[serde(default, skip_serializing_if = "CountWatermark::is_none")]
    pub last_count_watermark: CountWatermark,
    /// The authority of the last applied count when it was physical: a stable 64-bit hash
    /// ([`authority`]) of its `source` (0: none, or a book count). A movement from the same
    /// source that happened at or before a time watermark is already inside the figure.
    /// A hash, not the name, so that a location stays small.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub last_count_authority: u64,
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
    /// Units received so far, accepted and rejected (never more than `quantity`).
    pub received: u64,
    /// Of `received`, units rejected at receipt (quarantined or written off).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub rejected: u64,
}

fn is_zero(units: &u64) -> bool {
    *units == 0
}

/// The stable, never-zero 64-bit hash (FNV-1a) of a count source's name that
/// [`LocationStock::last_count_authority`] holds.
pub fn authority(source: &str) -> u64 {
    let hash = source
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
        });
    hash.max(1)
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

    /// An absolute count at `location` taken at `watermark` by `source`: on-hand becomes
    /// the physical figure plus the journaled changes after the watermark; a stale count
    /// changes nothing. A `book` figure is made physical first by adding back the open units
    /// of the lines the source has booked (`booked`; absent: every committed open line at
    /// the location, that is every line that is not a hold with an expiry), so that their
    /// later shipment does not take them a second time.
    pub(super) fn count(
        &mut self,
        location: &LocationId,
        counted: u64,
        watermark: i64,
        basis: CountBasis,
        booked: Option<&[String]>,
        source: &str,
    ) -> Applied {
        if self
            .locations
            .get(location)
            .and_then(|stock| stock.last_count_watermark.get())
            .is_some_and(|w| watermark <= w)
        {
            return Self::unchanged();
        }
        let booked_back = match basis {
            CountBasis::Physical => 0,
            CountBasis::Book => self.booked_open_units(location, booked),
        };
        let stock = self.stock_mut(location);
        // What the counter could not have seen: on-hand changes after the watermark.
        stock.journal.retain(|(at, _)| *at > watermark);
        if stock.journal.len() <= stock.journal.capacity() / 2 {
            stock
                .journal
                .shrink_to(stock.journal.len() + stock.journal.len() / 4);
        }
        let unseen: i64 = stock.journal.iter().map(|(_, delta)| delta).sum();
        stock.last_count_watermark = CountWatermark::from(Some(watermark));
        stock.last_count_authority = match basis {
            CountBasis::Physical => authority(source),
            CountBasis::Book => 0,
        };
        stock.on_hand = to_i64(counted)
            .saturating_add(booked_back)
            .saturating_add(unseen);
        self.changed(location)
    }

    /// Open units at `location` of the lines a book count's source has deducted: those
    /// named in `booked` (a split line by its first id), or every line that is not a hold
    /// with an expiry when `booked` is absent.
    pub(super) fn booked_open_units(
        &self,
        location: &LocationId,
        booked: Option<&[String]>,
    ) -> i64 {
        let named: Option<BTreeSet<&str>> =
            booked.map(|ids| ids.iter().map(String::as_str).collect());
        self.reservations
            .iter()
            .filter(|(_, line)| &line.location == location)
            .filter(|(id, line)| match &named {
                Some(named) => {
                    let base = id.split_once('~').map_or(id.as_str(), |(base, _)| base);
                    named.contains(id.as_str()) || named.contains(base)
                }
                None => line.expires_at_ms.is_none(),
            })
            .fold(0_i64, |sum, (_, line)| {
                sum.saturating_add(to_i64(line.open()))
            })
    }

    /// The locations whose last count already includes a movement of `kind` from `source`
    /// that happened at `at_ms`: a physical count taken by the same source (authority),
    /// whose watermark is a time (see [`WATERMARK_TIME_FROM_MS`]) at or after `at_ms`. A book
    /// count is not read this way: it added back the open lines, so their late shipments
    /// (also those implied by a return) must still take on-hand. Each location comes with
    /// its on-hand now. Cheap when no location was counted by `source`.
    pub(super) fn counted_before(
        &self,
        source: &str,
        at_ms: i64,
        kind: &MovementKind,
    ) -> Vec<(LocationId, i64)> {
        if matches!(
            kind,
            MovementKind::Count { .. }
                | MovementKind::Sale { .. }
                | MovementKind::Reservation { .. }
                | MovementKind::Inbound { .. }
        ) {
            return Vec::new();
        }
        let source = authority(source);
        self.locations
            .iter()
            .filter(|(_, stock)| {
                stock.last_count_authority == source
                    && stock
                        .last_count_watermark
                        .get()
                        .is_some_and(|w| w >= WATERMARK_TIME_FROM_MS && at_ms <= w)
            })
            .map(|(location, stock)| (location.clone(), stock.on_hand))
            .collect()
    }

    /// Undoes the on-hand changes a late movement made at the locations whose count
    /// already includes it (`counted`: each with its on-hand before the movement); other
    /// effects (reserved, in transit, the line's shipped units) stay. Their journal keeps
    /// nothing at or before the count's watermark. Returns whether any on-hand was restored.
    pub(super) fn keep_counted_on_hand(&mut self, counted: &[(LocationId, i64)]) -> bool {
        let mut restored = false;
        for (location, on_hand) in counted {
            let Some(stock) = self.locations.get_mut(location) else {
                continue;
            };
            if stock.on_hand != *on_hand {
                stock.on_hand = *on_hand;
                restored = true;
            }
            if let Some(watermark) = stock.last_count_watermark.get() {
                stock.journal.retain(|(at, _)| *at > watermark);
            }
        }
        restored
    }

    /// Writes off what a cancellation released: on-hand drops by the units reserved before
    /// it (`reserved_before`, per location) that it released, journaled at `at_ms`.
    pub(super) fn write_off_released(&mut self, reserved_before: &[(LocationId, i64)], at_ms: i64) {
        for (location, before) in reserved_before {
            let Some(stock) = self.locations.get_mut(location) else {
                continue;
            };
            let released = before.saturating_sub(stock.reserved);
            if released > 0 {
                stock.change_on_hand(at_ms, -released);
            }
        }
    }

    /// Reserved units per location now (what [`SkuState::write_off_released`] compares with).
    pub(super) fn reserved_by_location(&self) -> Vec<(LocationId, i64)> {
        self.locations
            .iter()
            .map(|(location, stock)| (location.clone(), stock.reserved))
            .collect()
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
                rejected: 0,
            },
        );
        Ok(self.changed(from))
    }

    /// Goods of a dispatched transfer arrive: in transit at its destination drops by the
    /// accepted and the rejected units; the accepted ones become on-hand there, the rejected
    /// ones on-hand at `quarantine` (which must be another location) or, without one, are
    /// written off. Refused when more arrive than are still in transit.
    pub(super) fn receive_transfer(
        &mut self,
        transfer: &str,
        quantity: u64,
        rejected: u64,
        quarantine: Option<&LocationId>,
        at_ms: i64,
    ) -> Result<Applied, ApplyError> {
        let Some(line) = self.transfers.get(transfer) else {
            return Err(ApplyError::UnknownTransfer {
                transfer: transfer.to_owned(),
            });
        };
        let in_transit = line.quantity - line.received;
        let arrived = quantity.checked_add(rejected);
        if arrived.is_none_or(|arrived| arrived > in_transit) {
            return Err(ApplyError::OverReceipt {
                transfer: transfer.to_owned(),
                in_transit,
                requested: arrived.unwrap_or(u64::MAX),
            });
        }
        let arrived = arrived.unwrap_or(u64::MAX);
        let to = line.to.clone();
        if rejected > 0 && quarantine == Some(&to) {
            return Err(ApplyError::Invalid(format!(
                "transfer {transfer}: the quarantine for rejected units must not be the receiving location {to}"
            )));
        }
        if let Some(line) = self.transfers.get_mut(transfer) {
            line.received += arrived;
            line.rejected += rejected;
        }
        let stock = self.stock_mut(&to);
        stock.in_transit -= to_i64(arrived);
        if quantity > 0 {
            stock.change_on_hand(at_ms, to_i64(quantity));
        }
        if rejected > 0
            && let Some(quarantine) = quarantine
        {
            self.stock_mut(quarantine)
                .change_on_hand(at_ms, to_i64(rejected));
        }
        Ok(self.changed(&to))
    }
}
