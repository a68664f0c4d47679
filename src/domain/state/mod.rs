//! The SKU state machine: `apply(movement) -> Result<Applied, ApplyError>`.
//!
//! Split by concern: this file holds [`SkuState`] itself, what an application depends on
//! ([`ApplyContext`]) and reports ([`Applied`]), and the dispatch of each movement kind;
//! `location` owns stock per location, the count journal, inbound lines and transfers;
//! `reservations` owns order lines and holds, routing, splitting, cancellation, shipment
//! and closed-line retention; `lines` owns the per-line lifecycle added for issue 9 (order
//! edits, reassignment, returns against a line's shipments); `parking` owns movements that
//! wait for their line ([`ParkedMovement`]); `error` the refusals; `invariants` the checks
//! run after every transition.
//!
//! May depend on: `domain` only (pure and synchronous).

mod error;
mod invariants;
mod lines;
mod location;
mod parking;
mod reservations;

#[cfg(test)]
mod lines_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_counts;

pub use error::{ApplyError, InvariantViolation};
pub use location::{
    CountWatermark, InboundLevel, InboundLine, JOURNAL_LIMIT, LocationLevel, LocationStock,
    TransferLine,
};
pub use parking::{MAX_PARKED_PER_SKU, ParkedList, ParkedMovement};
pub use reservations::{Reservation, RoutingPolicy};

use super::movement::{Movement, MovementKind};
use super::vec_map::VecMap;
use super::{LocationId, Sku};
use serde::{Deserialize, Serialize};
use smol_str::SmolStr;
use std::collections::{BTreeSet, VecDeque};

/// The largest magnitude any stock figure of a SKU (on-hand, reserved or in transit, per
/// location) may reach: 10^15 units. A movement that would carry a figure past
/// it is refused with [`ApplyError::Overflow`]. Chosen a million times above
/// [`MAX_QUANTITY`](super::movement::MAX_QUANTITY), so only a runaway producer reaches it,
/// and about nine thousand times below `i64::MAX`, so sums over locations, lines and the
/// parked movements of one event never overflow the arithmetic (recorded movements are
/// replayed with quantities up to this figure, see [`Movement::validate_recorded`]).
pub const MAX_STOCK_LEVEL: i64 = 1_000_000_000_000_000;

/// The newest levels of one SKU after a durable change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AvailabilityChange {
    /// The SKU.
    pub sku: Sku,
    /// Ledger sequence number of the last event included.
    pub seq: u64,
    /// Levels per location, sorted by location id.
    pub locations: Vec<LocationLevel>,
    /// Open purchase-order units by location and expected date (for pre-order ATP).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inbound: Vec<InboundLevel>,
}

/// What applying a movement did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// Whether any level changed (false for a stale count or a sale cancelled in advance).
    pub levels_changed: bool,
    /// Whether the movement left a location's available below zero (an oversell).
    pub oversold: bool,
    /// The location a sale or hold was routed to when the movement named none; the ledger
    /// records it in the event, so replay never re-decides.
    pub routed_to: Option<LocationId>,
    /// When a line was split across locations, those locations in order; the ledger
    /// records them as the movement's route (and no location), and replay splits the same.
    pub split_across: Option<Vec<LocationId>>,
    /// The movement was recorded but left the levels alone on purpose (an order edit whose
    /// version is not newer than the line's): why. The ledger answers it as `ignored`.
    pub ignored: Option<String>,
    /// The movement refers to a line in a state it cannot act on yet (a fulfilment before
    /// its sale, a return before its shipment): it was recorded and parked in the state,
    /// and is applied when the line gets there. Why it waits. The ledger answers `parked`.
    pub parked: Option<String>,
    /// Units an order edit put below what the line has already shipped: they need a return
    /// and are reported as a discrepancy, never restocked. 0 for every other movement.
    pub discrepancy: u64,
    /// Units a fulfilment shipped from the line's cancelled units (the cancellation lost
    /// the race with the shipment: they leave on-hand but were not reserved).
    pub from_cancelled: u64,
    /// Parked movements that applied as part of this event (their effects are included).
    pub unparked: usize,
    /// Parked movements that waited longer than the context's parked TTL and were dropped
    /// from the state by this event; the ledger moves them to the dead-letter store.
    pub expired: Vec<ParkedMovement>,
}

/// What a decision depends on besides the state: the time, where backorders are allowed,
/// and the routing policy. Recorded events are replayed with [`ApplyContext::replay`].
#[derive(Clone, Copy, Debug)]
pub struct ApplyContext<'a> {
    /// Now, in milliseconds since the Unix epoch (used when a movement has no source time).
    pub now_ms: i64,
    /// Locations where a hold may take available below zero (a backorder debt).
    pub backorder_locations: &'a BTreeSet<LocationId>,
    /// How holds and sales without a location are routed.
    pub routing: RoutingPolicy,
    /// Replaying recorded events: admission checks are skipped (they passed once).
    pub replay: bool,
    /// A line without a location that no single candidate can serve may be split across
    /// at most this many candidates (1: never split).
    pub max_split_locations: usize,
    /// Closed reservation lines older than this (ms, by source time) are forgotten, so a
    /// SKU's state does not grow with its order history; `i64::MAX` keeps them forever.
    /// The ledger uses the idempotency-key TTL: past it a redelivered line could not be
    /// recognised by its key either.
    pub closed_line_retention_ms: i64,
    /// A parked movement older than this (ms, by its source time) expires: it is dropped
    /// from the state and reported in [`Applied::expired`]; `i64::MAX` keeps it forever.
    pub parked_ttl_ms: i64,
}

static NO_BACKORDERS: BTreeSet<LocationId> = BTreeSet::new();

impl ApplyContext<'static> {
    /// No backorders anywhere, priority routing, source time or 0.
    pub fn strict() -> Self {
        Self {
            now_ms: 0,
            backorder_locations: &NO_BACKORDERS,
            routing: RoutingPolicy::Priority,
            replay: false,
            max_split_locations: 1,
            closed_line_retention_ms: i64::MAX,
            parked_ttl_ms: i64::MAX,
        }
    }

    /// For replaying recorded events (a recorded split is re-made over its recorded route).
    pub fn replay() -> Self {
        Self {
            replay: true,
            max_split_locations: usize::MAX,
            ..Self::strict()
        }
    }
}

/// Everything the ledger knows about one SKU, derived from its movement log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkuState {
    /// The SKU.
    pub sku: Sku,
    /// Sequence number of the last applied movement (0 = none).
    pub seq: u64,
    /// Stock per location.
    pub locations: VecMap<LocationId, LocationStock>,
    /// Open reservations by id.
    pub reservations: VecMap<SmolStr, Reservation>,
    /// Reservation ids that were cancelled before their sale arrived, so the late sale
    /// reserves nothing (out-of-order deliveries, scenario S3).
    #[serde(default)]
    pub cancelled_in_advance: VecMap<SmolStr, u64>,
    /// Open purchase-order lines by id.
    #[serde(default, skip_serializing_if = "VecMap::is_empty")]
    pub inbound: VecMap<SmolStr, InboundLine>,
    /// Transfers by id (kept once fully received, for idempotent replays).
    #[serde(default, skip_serializing_if = "VecMap::is_empty")]
    pub transfers: VecMap<SmolStr, TransferLine>,
    /// Closed reservation lines in closing order, (closed at ms, id): forgotten from the
    /// front once older than the retention.
    #[serde(default, skip_serializing_if = "VecDeque::is_empty")]
    pub closed_lines: VecDeque<(i64, SmolStr)>,
    /// Movements waiting for their line, in arrival order (at most [`MAX_PARKED_PER_SKU`]).
    #[serde(default, skip_serializing_if = "<[ParkedMovement]>::is_empty")]
    pub parked: ParkedList,
}

impl SkuState {
    /// An empty state: no locations, no reservations, seq 0.
    pub fn new(sku: Sku) -> Self {
        Self {
            sku,
            seq: 0,
            locations: VecMap::new(),
            reservations: VecMap::new(),
            cancelled_in_advance: VecMap::new(),
            inbound: VecMap::new(),
            transfers: VecMap::new(),
            closed_lines: VecDeque::new(),
            parked: ParkedList::default(),
        }
    }

    /// The change to publish for the current state.
    pub fn availability(&self) -> AvailabilityChange {
        AvailabilityChange {
            sku: self.sku.clone(),
            seq: self.seq,
            locations: self.levels(),
            inbound: self.inbound_levels(),
        }
    }

    /// Applies one movement as event number `seq` (must be `self.seq + 1`).
    ///
    /// On `Ok` the state has advanced to `seq` and the movement must be recorded; on `Err`
    /// nothing changed and nothing is recorded.
    pub fn apply(&mut self, movement: &Movement, seq: u64) -> Result<Applied, ApplyError> {
        self.apply_with(movement, seq, &ApplyContext::strict())
    }

    /// Applies one movement as event `seq` under `context` (time, backorder locations,
    /// routing policy, replay). Same contract as [`SkuState::apply`].
    ///
    /// In debug builds the transition is checked afterwards (see
    /// [`SkuState::check_invariants`]) and a violation panics: it is a bug, not bad input.
    pub fn apply_with(
        &mut self,
        movement: &Movement,
        seq: u64,
        context: &ApplyContext<'_>,
    ) -> Result<Applied, ApplyError> {
        #[cfg(debug_assertions)]
        let before = invariants::Before::of_movement(self, movement, context);
        let outcome = self.transition(movement, seq, context);
        #[cfg(debug_assertions)]
        if let Err(violation) = before.check(self, &movement.kind, outcome.as_ref()) {
            panic!(
                "invariant violated by {} {} (seq {seq}) on {}: {violation}",
                movement.kind.name(),
                movement.idempotency_key,
                self.sku
            );
        }
        outcome
    }

    /// [`SkuState::transition`] kept within [`MAX_STOCK_LEVEL`]: when a figure is within
    /// half the limit before (always, in practice), no single event can carry any figure
    /// past the limit, let alone out of `i64` (every quantity is at most
    /// [`MAX_QUANTITY`](super::movement::MAX_QUANTITY) and one event applies at most
    /// [`MAX_PARKED_PER_SKU`] + 1 movements), so the transition runs as is. Otherwise the
    /// state is copied first and restored, with [`ApplyError::Overflow`], when a figure
    /// ends beyond the limit; decreases of a figure near the limit still apply.
    fn transition(
        &mut self,
        movement: &Movement,
        seq: u64,
        context: &ApplyContext<'_>,
    ) -> Result<Applied, ApplyError> {
        if self.largest_figure().map_or(0, |(_, _, value)| value) <= MAX_STOCK_LEVEL / 2 {
            return self.transition_unguarded(movement, seq, context);
        }
        let before = self.clone();
        let applied = self.transition_unguarded(movement, seq, context)?;
        match self.largest_figure() {
            Some((figure, location, value)) if value > MAX_STOCK_LEVEL => {
                let location = location.clone();
                *self = before;
                Err(ApplyError::Overflow {
                    figure,
                    location,
                    value,
                    limit: MAX_STOCK_LEVEL,
                })
            }
            _ => Ok(applied),
        }
    }

    /// The figure of largest magnitude over every location: (which, where, magnitude).
    fn largest_figure(&self) -> Option<(&'static str, &LocationId, i64)> {
        let mut largest: Option<(&'static str, &LocationId, i64)> = None;
        let mut consider = |figure, location, value: i64| {
            let value = value.saturating_abs();
            if largest.is_none_or(|(_, _, top)| value > top) {
                largest = Some((figure, location, value));
            }
        };
        for (location, stock) in self.locations.iter() {
            consider("on_hand", location, stock.on_hand);
            consider("reserved", location, stock.reserved);
            consider("in_transit", location, stock.in_transit);
        }
        largest
    }

    /// The transition itself: [`SkuState::apply_with`] without the checks.
    fn transition_unguarded(
        &mut self,
        movement: &Movement,
        seq: u64,
        context: &ApplyContext<'_>,
    ) -> Result<Applied, ApplyError> {
        debug_assert_eq!(seq, self.seq + 1, "events are applied in sequence");
        if movement.sku != self.sku {
            return Err(ApplyError::WrongSku {
                expected: self.sku.clone(),
                got: movement.sku.clone(),
            });
        }
        let valid = if context.replay {
            movement.validate_recorded()
        } else {
            movement.validate()
        };
        valid.map_err(|problems| ApplyError::Invalid(problems.join("; ")))?;
        let at_ms = movement.occurred_at_ms.unwrap_or(context.now_ms);
        // A movement that happened before a count by the same source, arriving after it,
        // is already inside the counted figure: its on-hand change is undone there.
        let counted = self.counted_before(&movement.source, at_ms, &movement.kind);
        let mut applied = self.apply_kind(&movement.kind, at_ms, &movement.source, context)?;
        if !counted.is_empty() {
            self.keep_counted_on_hand(&counted);
        }
        if let Some(reason) = &applied.parked {
            self.park(movement, seq, at_ms, reason)?;
        }
        self.seq = seq;
        if applied.parked.is_none() && applied.ignored.is_none() {
            self.after_line_change(&movement.kind, applied.levels_changed, at_ms);
            if !self.parked.is_empty() {
                self.retry_parked(&movement.kind, &mut applied, context);
            }
        }
        self.prune_closed_lines(at_ms.saturating_sub(context.closed_line_retention_ms));
        if !self.parked.is_empty() {
            applied.expired = self.expire_parked(at_ms.saturating_sub(context.parked_ttl_ms));
        }
        Ok(applied)
    }

    /// Stamps closed lines after `kind` applied (only a shipment, a release, a return, an
    /// edit, or a sale or hold cancelled before it arrived can close one).
    fn after_line_change(&mut self, kind: &MovementKind, levels_changed: bool, at_ms: i64) {
        let may_close = match kind {
            MovementKind::Cancellation { .. }
            | MovementKind::Fulfilment { .. }
            | MovementKind::Return { .. }
            | MovementKind::OrderEdit { .. }
            | MovementKind::Reassign { .. } => true,
            MovementKind::Sale { .. } | MovementKind::Reservation { .. } => !levels_changed,
            _ => false,
        };
        if may_close {
            self.mark_closed_lines(kind, at_ms);
        }
    }

    fn changed(&self, location: &LocationId) -> Applied {
        Applied {
            levels_changed: true,
            oversold: self.available_at(location) < 0,
            ..Self::unchanged()
        }
    }

    fn unchanged() -> Applied {
        Applied::default()
    }

    fn apply_kind(
        &mut self,
        kind: &MovementKind,
        at_ms: i64,
        source: &str,
        context: &ApplyContext<'_>,
    ) -> Result<Applied, ApplyError> {
        match kind {
            MovementKind::Receipt { location, quantity } => {
                self.stock_mut(location)
                    .change_on_hand(at_ms, to_i64(*quantity));
                Ok(self.changed(location))
            }
            MovementKind::Adjustment {
                location, delta, ..
            } => {
                self.stock_mut(location).change_on_hand(at_ms, *delta);
                Ok(self.changed(location))
            }
            MovementKind::Count {
                location,
                on_hand,
                watermark,
                basis,
                booked,
            } => match on_hand {
                Some(on_hand) => Ok(self.count(
                    location,
                    *on_hand,
                    *watermark,
                    // Unresolved (the ledger records the source's basis): physical.
                    basis.unwrap_or_default(),
                    booked.as_deref(),
                    source,
                )),
                // Not tracked at the source: ignored (never read as 0); the ledger logs it.
                None => Ok(Self::unchanged()),
            },
            MovementKind::Inbound {
                purchase_order,
                location,
                quantity,
                expected_at_ms,
            } => Ok(self.expect_inbound(purchase_order, location, *quantity, *expected_at_ms)),
            MovementKind::InboundReceipt {
                purchase_order,
                quantity,
            } => self.receive_inbound(purchase_order, *quantity, at_ms),
            MovementKind::TransferDispatch {
                transfer,
                from,
                to,
                quantity,
            } => self.dispatch_transfer(transfer, from, to, *quantity, at_ms),
            MovementKind::TransferReceipt {
                transfer,
                quantity,
                rejected,
                quarantine,
                ..
            } => self.receive_transfer(transfer, *quantity, *rejected, quarantine.as_ref(), at_ms),
            MovementKind::Sale {
                reservation,
                quantity,
                location,
                route,
            } => self.reserve(
                reservation,
                *quantity,
                location.as_ref(),
                route,
                None,
                context,
            ),
            MovementKind::Reservation {
                reservation,
                quantity,
                location,
                route,
                expires_at_ms,
            } => self.reserve(
                reservation,
                *quantity,
                location.as_ref(),
                route,
                Some(*expires_at_ms),
                context,
            ),
            MovementKind::Cancellation {
                reservation,
                quantity,
                write_off,
                ..
            } => {
                if !*write_off {
                    return Ok(self.cancel(reservation, *quantity));
                }
                // The units cannot be found: what the cancellation releases is also
                // written off where it was held.
                let reserved_before = self.reserved_by_location();
                let applied = self.cancel(reservation, *quantity);
                self.write_off_released(&reserved_before, at_ms);
                Ok(applied)
            }
            MovementKind::Fulfilment {
                reservation,
                quantity,
                location,
            } => self.fulfil(reservation, *quantity, location.as_ref(), at_ms),
            MovementKind::OrderEdit {
                reservation,
                quantity,
                version,
                location,
                route,
            } => self.edit_line(
                reservation,
                *quantity,
                *version,
                location.as_ref(),
                route,
                context,
            ),
            MovementKind::Reassign { reservation, to } => self.reassign(reservation, to, context),
            MovementKind::Return {
                location,
                quantity,
                reservation,
                restock,
            } => self.return_units(
                location.as_ref(),
                *quantity,
                reservation.as_deref(),
                *restock,
                at_ms,
            ),
        }
    }
}

/// Quantities beyond `i64::MAX` units are not physical; saturate rather than wrap.
fn to_i64(quantity: u64) -> i64 {
    i64::try_from(quantity).unwrap_or(i64::MAX)
}
