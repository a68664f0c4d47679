//! Parked movements: a movement that refers to a reservation line in a state it cannot act
//! on yet (a fulfilment or return before its sale or shipment, a partial cancellation
//! before its sale, a fulfilment of more units than the line has ordered) is recorded as
//! an event like any other, but its effect waits here, in the SKU's state.
//!
//! Rules:
//! - a parked movement is kept in arrival order, at most [`MAX_PARKED_PER_SKU`] per SKU;
//!   beyond that the movement is refused ([`ApplyError::TooManyParked`]);
//! - right after every applied movement that changes a line, the movements parked for that
//!   line are tried again in arrival order, until none of them applies; the effects of
//!   those that apply are part of that later event (replay reproduces them, since the
//!   parked list is state and snapshots carry it);
//! - a parked movement whose source time is older than the current movement's source time
//!   minus [`ApplyContext::parked_ttl_ms`] expires: it leaves the state and is reported in
//!   [`Applied::expired`] for the dead-letter store (by source time, like the closed-line
//!   retention, so replay expires the same ones at the same event).
//!
//! Only the line states listed above wait; every other refusal is answered at once.

use super::{Applied, ApplyContext, ApplyError, SkuState};
use crate::domain::movement::{Movement, MovementKind};
use serde::{Deserialize, Serialize};

/// Most movements one SKU keeps parked; beyond it a movement that would wait is refused.
pub const MAX_PARKED_PER_SKU: usize = 64;

/// A recorded movement whose effect waits for its reservation line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParkedMovement {
    /// The idempotency key of the movement.
    pub idempotency_key: String,
    /// The movement's source.
    pub source: String,
    /// The event that recorded (and parked) it.
    pub seq: u64,
    /// Its source time (or the time the ledger received it), in milliseconds since the
    /// Unix epoch; the parked TTL counts from here.
    pub at_ms: i64,
    /// Why it waits (the newest reason, after the last retry).
    pub reason: String,
    /// What it does once its line gets there.
    pub kind: MovementKind,
}

/// The parked movements of one SKU, in arrival order: one pointer while there are none
/// (the common case), so an idle SKU's state does not grow. Reads as a slice.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "Vec<ParkedMovement>", into = "Vec<ParkedMovement>")]
// The box is the point: 8 bytes inline instead of a vector's 24 (tests/state_size.rs).
#[allow(clippy::box_collection)]
pub struct ParkedList(Option<Box<Vec<ParkedMovement>>>);

impl ParkedList {
    /// Appends a movement (it waits behind those parked before it).
    pub fn push(&mut self, parked: ParkedMovement) {
        self.0.get_or_insert_with(Box::default).push(parked);
    }

    /// Removes and returns the movement at `index` (panics when out of range).
    pub fn remove(&mut self, index: usize) -> ParkedMovement {
        let list = self.0.as_mut().expect("an index into an empty parked list");
        let parked = list.remove(index);
        if list.is_empty() {
            self.0 = None;
        }
        parked
    }

    /// Forgets every parked movement.
    pub fn clear(&mut self) {
        self.0 = None;
    }

    fn get_mut(&mut self, index: usize) -> Option<&mut ParkedMovement> {
        self.0.as_mut().and_then(|list| list.get_mut(index))
    }

    fn take(&mut self) -> Vec<ParkedMovement> {
        self.0.take().map(|list| *list).unwrap_or_default()
    }
}

impl std::ops::Deref for ParkedList {
    type Target = [ParkedMovement];

    fn deref(&self) -> &[ParkedMovement] {
        self.0.as_deref().map_or(&[], Vec::as_slice)
    }
}

impl From<Vec<ParkedMovement>> for ParkedList {
    fn from(list: Vec<ParkedMovement>) -> Self {
        Self((!list.is_empty()).then(|| Box::new(list)))
    }
}

impl From<ParkedList> for Vec<ParkedMovement> {
    fn from(mut list: ParkedList) -> Self {
        list.take()
    }
}

/// The reservation line a movement refers to, if it refers to one.
pub(super) fn line_of(kind: &MovementKind) -> Option<&str> {
    match kind {
        MovementKind::Sale { reservation, .. }
        | MovementKind::Reservation { reservation, .. }
        | MovementKind::Cancellation { reservation, .. }
        | MovementKind::Fulfilment { reservation, .. }
        | MovementKind::OrderEdit { reservation, .. }
        | MovementKind::Reassign { reservation, .. } => Some(reservation.as_str()),
        MovementKind::Return {
            reservation: Some(reservation),
            ..
        } => Some(reservation.as_str()),
        _ => None,
    }
}

impl SkuState {
    /// An [`Applied`] that parks the movement for `reason` (nothing changed yet).
    pub(super) fn parked_for(reason: String) -> Applied {
        Applied {
            parked: Some(reason),
            ..Self::unchanged()
        }
    }

    /// Keeps `movement` (recorded as event `seq`) waiting for its line.
    ///
    /// Errors: [`ApplyError::TooManyParked`] when the SKU already keeps the most it may.
    pub(super) fn park(
        &mut self,
        movement: &Movement,
        seq: u64,
        at_ms: i64,
        reason: &str,
    ) -> Result<(), ApplyError> {
        if self.parked.len() >= MAX_PARKED_PER_SKU {
            return Err(ApplyError::TooManyParked {
                limit: MAX_PARKED_PER_SKU,
            });
        }
        self.parked.push(ParkedMovement {
            idempotency_key: movement.idempotency_key.clone(),
            source: movement.source.clone(),
            seq,
            at_ms,
            reason: reason.to_owned(),
            kind: movement.kind.clone(),
        });
        Ok(())
    }

    /// Tries the movements parked for the line `changed` refers to, in arrival order, until
    /// none applies; folds the effects of those that do into `applied`.
    pub(super) fn retry_parked(
        &mut self,
        changed: &MovementKind,
        applied: &mut Applied,
        context: &ApplyContext<'_>,
    ) {
        let Some(line) = line_of(changed) else {
            return;
        };
        let line = line.to_owned();
        // Each pass applies at most one parked movement, so at most `parked.len()` passes.
        'passes: loop {
            for index in 0..self.parked.len() {
                if line_of(&self.parked[index].kind) != Some(line.as_str()) {
                    continue;
                }
                let kind = self.parked[index].kind.clone();
                let at_ms = self.parked[index].at_ms;
                match self.apply_kind(&kind, at_ms, context) {
                    Ok(retried) if retried.parked.is_none() => {
                        self.parked.remove(index);
                        applied.levels_changed |= retried.levels_changed;
                        applied.oversold |= retried.oversold;
                        applied.discrepancy =
                            applied.discrepancy.saturating_add(retried.discrepancy);
                        applied.unparked += 1;
                        self.after_line_change(&kind, retried.levels_changed, at_ms);
                        continue 'passes;
                    }
                    Ok(retried) => {
                        if let (Some(reason), Some(parked)) =
                            (retried.parked, self.parked.get_mut(index))
                        {
                            parked.reason = reason;
                        }
                    }
                    Err(error) => {
                        if let Some(parked) = self.parked.get_mut(index) {
                            parked.reason = error.to_string();
                        }
                    }
                }
            }
            break;
        }
    }

    /// Drops the parked movements whose source time is before `cutoff_ms`, returning them.
    pub(super) fn expire_parked(&mut self, cutoff_ms: i64) -> Vec<ParkedMovement> {
        if self.parked.iter().all(|parked| parked.at_ms >= cutoff_ms) {
            return Vec::new();
        }
        let (expired, kept): (Vec<_>, Vec<_>) = self
            .parked
            .take()
            .into_iter()
            .partition(|parked| parked.at_ms < cutoff_ms);
        self.parked = kept.into();
        expired
    }
}
