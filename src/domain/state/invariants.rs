//! Invariants of a SKU's state, and of each transition, checked after every movement.
//!
//! [`SkuState::check_invariants`] states what must hold of any state:
//! - per location: reserved ≥ 0, in transit ≥ 0, at most [`JOURNAL_LIMIT`] journal entries;
//! - reserved at a location equals the open units of the lines held there (so the SKU's
//!   reserved total is the sum of its open lines);
//! - per line: shipped + cancelled ≤ ordered, returned ≤ shipped, and a line marked
//!   closed has no open units;
//! - at most [`MAX_PARKED_PER_SKU`](super::MAX_PARKED_PER_SKU) parked movements;
//! - no id is both a known line and a cancellation waiting for its sale;
//! - in transit to a location equals what its transfers have not yet delivered, and no
//!   transfer received more than was dispatched;
//! - every open purchase-order line still expects units.
//!
//! [`Before`] states what must hold of one transition: each total (on-hand, reserved, in
//! transit, summed over locations) changes by exactly the movement's effect (a receipt of
//! `q` adds `q` on hand and nothing else; a shipment of `q` takes `q` from on-hand and from
//! reserved; a return of `q` adds `q` to on-hand − reserved; …), a count leaves on-hand at
//! the counted units plus what its journal says happened after the watermark, and a refused
//! or parked movement changes no total. An event that also applied parked movements
//! (`Applied::unparked` > 0) is checked against the state invariants only: its totals
//! include the parked movements' effects.
//!
//! [`SkuState::apply_with`] runs both in debug builds (every unit, property and integration
//! test) and panics on a violation. Release builds skip them: the state check costs a pass
//! over every open line per movement, which the hot path avoids on purpose (closed lines
//! are queued rather than scanned), and a violation found after the state has changed could
//! not be turned into a clean refusal anyway. The check is public so tools and tests can
//! run it on any state, for example one loaded from a snapshot.

// The transition check (`Before`, `Effect`) runs in debug builds only (`SkuState::apply_with`).
#![cfg_attr(not(debug_assertions), allow(dead_code))]

use super::{Applied, ApplyError, InvariantViolation, JOURNAL_LIMIT, SkuState, to_i64};
use crate::domain::LocationId;
use crate::domain::movement::MovementKind;
use std::collections::BTreeMap;

impl SkuState {
    /// Checks the invariants every state must satisfy (see the module docs); the first
    /// violation found, in a fixed order, is returned.
    ///
    /// Costs one pass over locations, lines, transfers and purchase-order lines.
    pub fn check_invariants(&self) -> Result<(), InvariantViolation> {
        for (location, stock) in &self.locations {
            if stock.reserved < 0 {
                return Err(InvariantViolation::NegativeReserved {
                    location: location.clone(),
                    reserved: stock.reserved,
                });
            }
            if stock.in_transit < 0 {
                return Err(InvariantViolation::NegativeInTransit {
                    location: location.clone(),
                    in_transit: stock.in_transit,
                });
            }
            if stock.journal.len() > JOURNAL_LIMIT {
                return Err(InvariantViolation::JournalOverflow {
                    location: location.clone(),
                    entries: stock.journal.len(),
                });
            }
        }
        let mut open_at: BTreeMap<&LocationId, i128> = BTreeMap::new();
        for (id, line) in &self.reservations {
            let closed = line.fulfilled.checked_add(line.released);
            if closed.is_none_or(|closed| closed > line.quantity) {
                return Err(InvariantViolation::OverclosedLine {
                    reservation: id.to_string(),
                    quantity: line.quantity,
                    fulfilled: line.fulfilled,
                    released: line.released,
                });
            }
            if line.returned > line.fulfilled {
                return Err(InvariantViolation::OverReturnedLine {
                    reservation: id.to_string(),
                    fulfilled: line.fulfilled,
                    returned: line.returned,
                });
            }
            let open = line.open();
            if line.closed_at_ms.is_some() && open > 0 {
                return Err(InvariantViolation::ClosedLineOpen {
                    reservation: id.to_string(),
                    open,
                });
            }
            if self.cancelled_in_advance.contains_key(id) {
                return Err(InvariantViolation::CancelledInAdvanceAndKnown {
                    reservation: id.to_string(),
                });
            }
            *open_at.entry(&line.location).or_default() += i128::from(open);
        }
        for (location, stock) in &self.locations {
            let open = open_at.remove(location).unwrap_or(0);
            if i128::from(stock.reserved) != open {
                return Err(InvariantViolation::ReservedMismatch {
                    location: location.clone(),
                    reserved: stock.reserved,
                    open,
                });
            }
        }
        // Lines at a location the state has no stock entry for must hold nothing.
        if let Some((location, open)) = open_at.into_iter().find(|(_, open)| *open != 0) {
            return Err(InvariantViolation::ReservedMismatch {
                location: location.clone(),
                reserved: 0,
                open,
            });
        }
        if self.parked.len() > super::MAX_PARKED_PER_SKU {
            return Err(InvariantViolation::TooManyParked {
                parked: self.parked.len(),
            });
        }
        let mut carried_to: BTreeMap<&LocationId, i128> = BTreeMap::new();
        for (id, transfer) in &self.transfers {
            if transfer.received > transfer.quantity {
                return Err(InvariantViolation::OverReceivedTransfer {
                    transfer: id.to_string(),
                    quantity: transfer.quantity,
                    received: transfer.received,
                });
            }
            *carried_to.entry(&transfer.to).or_default() +=
                i128::from(transfer.quantity - transfer.received);
        }
        for (location, stock) in &self.locations {
            let expected = carried_to.remove(location).unwrap_or(0);
            if i128::from(stock.in_transit) != expected {
                return Err(InvariantViolation::InTransitMismatch {
                    location: location.clone(),
                    in_transit: stock.in_transit,
                    expected,
                });
            }
        }
        if let Some((location, expected)) = carried_to.into_iter().find(|(_, units)| *units != 0) {
            return Err(InvariantViolation::InTransitMismatch {
                location: location.clone(),
                in_transit: 0,
                expected,
            });
        }
        if let Some((id, _)) = self.inbound.iter().find(|(_, line)| line.quantity == 0) {
            return Err(InvariantViolation::EmptyInboundLine {
                purchase_order: id.to_string(),
            });
        }
        Ok(())
    }
}

/// A cheap summary of a state taken before a movement is applied, to check the transition
/// against the movement's effect afterwards. Costs one pass over the locations.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Before {
    seq: u64,
    on_hand: i128,
    reserved: i128,
    in_transit: i128,
    lines: usize,
    cancelled_in_advance: usize,
    inbound: usize,
    transfers: usize,
}

/// What a movement must do to one total: change it by exactly this much, or move it in
/// one direction only (by an amount another total or the lines account for), or change it
/// freely (a count, checked on its own).
enum Effect {
    Any,
    Exactly(i128),
    AtLeastZero,
    AtMostZero,
}

impl Effect {
    fn holds(&self, change: i128) -> bool {
        match self {
            Effect::Any => true,
            Effect::Exactly(units) => change == *units,
            Effect::AtLeastZero => change >= 0,
            Effect::AtMostZero => change <= 0,
        }
    }

    fn describe(&self) -> String {
        match self {
            Effect::Any => "any".to_owned(),
            Effect::Exactly(units) => units.to_string(),
            Effect::AtLeastZero => "at least 0".to_owned(),
            Effect::AtMostZero => "at most 0".to_owned(),
        }
    }
}

fn units(quantity: u64) -> i128 {
    i128::from(to_i64(quantity))
}

impl Before {
    /// The summary of `state` now.
    pub(super) fn of(state: &SkuState) -> Self {
        let mut summary = Self {
            seq: state.seq,
            on_hand: 0,
            reserved: 0,
            in_transit: 0,
            lines: state.reservations.len(),
            cancelled_in_advance: state.cancelled_in_advance.len(),
            inbound: state.inbound.len(),
            transfers: state.transfers.len(),
        };
        for stock in state.locations.values() {
            summary.on_hand += i128::from(stock.on_hand);
            summary.reserved += i128::from(stock.reserved);
            summary.in_transit += i128::from(stock.in_transit);
        }
        summary
    }

    /// Checks the transition from this summary to `after` by `kind` with `outcome`: a
    /// refused movement changed nothing; an applied one changed each total by its effect
    /// and left a state that satisfies [`SkuState::check_invariants`].
    pub(super) fn check(
        &self,
        after: &SkuState,
        kind: &MovementKind,
        outcome: Result<&Applied, &ApplyError>,
    ) -> Result<(), InvariantViolation> {
        let now = Self::of(after);
        let Ok(applied) = outcome else {
            if now != *self {
                return Err(InvariantViolation::RefusedButChanged {
                    movement: kind.name(),
                });
            }
            return Ok(());
        };
        let reserved_change = now.reserved - self.reserved;
        if applied.unparked > 0 {
            return after.check_invariants();
        }
        let none = Effect::Exactly(0);
        let parked = applied.parked.is_some() || applied.ignored.is_some();
        let (on_hand, reserved, in_transit) = match kind {
            MovementKind::Receipt { quantity, .. }
            | MovementKind::InboundReceipt { quantity, .. } => {
                (Effect::Exactly(units(*quantity)), none, Effect::Exactly(0))
            }
            MovementKind::Adjustment { delta, .. } => (
                Effect::Exactly(i128::from(*delta)),
                none,
                Effect::Exactly(0),
            ),
            MovementKind::Count {
                location,
                on_hand: counted,
                ..
            } => {
                if applied.levels_changed
                    && let Some(counted) = counted
                {
                    check_count(after, location, *counted)?;
                }
                // A count sets one location's on-hand: its change is whatever it corrects,
                // checked above against the count and its journal.
                let on_hand = match applied.levels_changed {
                    true => Effect::Any,
                    false => Effect::Exactly(0),
                };
                (on_hand, none, Effect::Exactly(0))
            }
            MovementKind::Inbound { .. } => (Effect::Exactly(0), none, Effect::Exactly(0)),
            MovementKind::TransferDispatch { quantity, .. } => (
                Effect::Exactly(-units(*quantity)),
                none,
                Effect::Exactly(units(*quantity)),
            ),
            MovementKind::TransferReceipt { quantity, .. } => (
                Effect::Exactly(units(*quantity)),
                none,
                Effect::Exactly(-units(*quantity)),
            ),
            MovementKind::Sale { .. } | MovementKind::Reservation { .. } => {
                (Effect::Exactly(0), Effect::AtLeastZero, Effect::Exactly(0))
            }
            MovementKind::Cancellation { .. } => {
                (Effect::Exactly(0), Effect::AtMostZero, Effect::Exactly(0))
            }
            MovementKind::OrderEdit { .. } => (Effect::Exactly(0), Effect::Any, Effect::Exactly(0)),
            MovementKind::Reassign { .. } => {
                (Effect::Exactly(0), Effect::Exactly(0), Effect::Exactly(0))
            }
            _ if parked => (Effect::Exactly(0), none, Effect::Exactly(0)),
            // Open units leave reserved; units taken from cancelled ones were not reserved.
            MovementKind::Fulfilment { quantity, .. } => (
                Effect::Exactly(-units(*quantity)),
                Effect::Exactly(units(applied.from_cancelled) - units(*quantity)),
                Effect::Exactly(0),
            ),
            // A restocked return adds its units on hand; reserved never changes.
            MovementKind::Return {
                quantity, restock, ..
            } => {
                let on_hand = match (*restock, applied.levels_changed) {
                    (true, true) => units(*quantity),
                    _ => 0,
                };
                (Effect::Exactly(on_hand), none, Effect::Exactly(0))
            }
        };
        for (total, effect, change) in [
            ("on_hand", on_hand, now.on_hand - self.on_hand),
            ("reserved", reserved, reserved_change),
            ("in_transit", in_transit, now.in_transit - self.in_transit),
        ] {
            if !effect.holds(change) {
                return Err(InvariantViolation::EffectMismatch {
                    movement: kind.name(),
                    total,
                    expected: effect.describe(),
                    actual: change,
                });
            }
        }
        after.check_invariants()
    }
}

/// After a count that changed levels, on-hand at its location is the counted units plus
/// the on-hand changes journaled after its watermark (the journal keeps only those).
fn check_count(
    after: &SkuState,
    location: &LocationId,
    counted: u64,
) -> Result<(), InvariantViolation> {
    let stock = after.locations.get(location);
    let on_hand = stock.map_or(0, |stock| stock.on_hand);
    let unseen: i64 = stock.map_or(0, |stock| {
        stock.journal.iter().map(|(_, delta)| delta).sum()
    });
    if on_hand != to_i64(counted) + unseen {
        return Err(InvariantViolation::CountMismatch {
            location: location.clone(),
            on_hand,
            counted,
            unseen,
        });
    }
    Ok(())
}
