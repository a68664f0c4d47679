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
                        if let Some(reason) = retried.parked {
                            self.parked[index].reason = reason;
                        }
                    }
                    Err(error) => self.parked[index].reason = error.to_string(),
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
        let (expired, kept) = std::mem::take(&mut self.parked)
            .into_iter()
            .partition(|parked| parked.at_ms < cutoff_ms);
        self.parked = kept;
        expired
    }
}
