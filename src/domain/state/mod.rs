//! The SKU state machine: `apply(movement) -> Result<Applied, ApplyError>`.
//!
//! Split by concern: this file holds [`SkuState`] itself, what an application depends on
//! ([`ApplyContext`]) and reports ([`Applied`]), and the dispatch of each movement kind;
//! `location` owns stock per location, the count journal, inbound lines and transfers;
//! `reservations` owns order lines and holds, routing, splitting, cancellation, shipment
//! and closed-line retention; `error` the refusals; `invariants` the checks run after
//! every transition.

mod error;
mod invariants;
mod location;
mod reservations;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_counts;

pub use error::{ApplyError, InvariantViolation};
pub use location::{
    InboundLevel, InboundLine, JOURNAL_LIMIT, LocationLevel, LocationStock, TransferLine,
};
pub use reservations::{Reservation, RoutingPolicy};

use super::movement::{Movement, MovementKind};
use super::vec_map::VecMap;
use super::{LocationId, Sku};
use serde::{Deserialize, Serialize};
use smol_str::SmolStr;
use std::collections::{BTreeSet, VecDeque};

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
#[derive(Clone, Debug, PartialEq, Eq)]
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

    /// The transition itself: [`SkuState::apply_with`] without the checks.
    fn transition(
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
        movement
            .validate()
            .map_err(|problems| ApplyError::Invalid(problems.join("; ")))?;
        let at_ms = movement.occurred_at_ms.unwrap_or(context.now_ms);
        // A movement that happened before a count by the same source, arriving after it,
        // is already inside the counted figure: its on-hand change is undone there.
        let counted = self.counted_before(&movement.source, at_ms, &movement.kind);
        let applied = self.apply_kind(&movement.kind, at_ms, &movement.source, context)?;
        if !counted.is_empty() {
            self.keep_counted_on_hand(&counted);
        }
        self.seq = seq;
        // Only these can close a line: a shipment, a release, a return, or a sale or hold
        // that was cancelled before it arrived (it then changes no level).
        let may_close = match &movement.kind {
            MovementKind::Cancellation { .. }
            | MovementKind::Fulfilment { .. }
            | MovementKind::Return { .. } => true,
            MovementKind::Sale { .. } | MovementKind::Reservation { .. } => !applied.levels_changed,
            _ => false,
        };
        if may_close {
            self.mark_closed_lines(&movement.kind, at_ms);
        }
        self.prune_closed_lines(at_ms.saturating_sub(context.closed_line_retention_ms));
        Ok(applied)
    }

    fn changed(&self, location: &LocationId) -> Applied {
        Applied {
            levels_changed: true,
            oversold: self.available_at(location) < 0,
            routed_to: None,
            split_across: None,
        }
    }

    fn unchanged() -> Applied {
        Applied {
            levels_changed: false,
            oversold: false,
            routed_to: None,
            split_across: None,
        }
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
                ..
            } => self.fulfil(reservation, *quantity, at_ms),
            MovementKind::OrderEdit { .. } | MovementKind::Reassign { .. } => Err(
                ApplyError::Invalid(format!("{} is not supported yet", kind.name())),
            ),
            MovementKind::Return {
                location,
                quantity,
                reservation,
                ..
            } => {
                let location = match (location, reservation) {
                    (Some(location), _) => location.clone(),
                    (None, Some(id)) => match self.reservations.get(id.as_str()) {
                        Some(line) => line.location.clone(),
                        None => {
                            return Err(ApplyError::UnknownReservation {
                                reservation: id.clone(),
                            });
                        }
                    },
                    (None, None) => {
                        return Err(ApplyError::Invalid(
                            "a return without location must name its reservation".to_owned(),
                        ));
                    }
                };
                let location = &location;
                self.ship_unreported(reservation.as_deref(), *quantity, at_ms);
                self.stock_mut(location)
                    .change_on_hand(at_ms, to_i64(*quantity));
                Ok(self.changed(location))
            }
        }
    }
}

/// Quantities beyond `i64::MAX` units are not physical; saturate rather than wrap.
fn to_i64(quantity: u64) -> i64 {
    i64::try_from(quantity).unwrap_or(i64::MAX)
}
